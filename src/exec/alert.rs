//! Owner alerts: a failed run, or deliveries (or email recipients) that failed for good,
//! are told to the task's `owners` through `alerts.channel`, at most once per task per
//! `alerts.every`; the next alert counts the failures held back meanwhile.
//!
//! Called at the end of a run (for what failed during it) and by `ferry serve`'s delivery
//! worker (for deliveries that fail for good on a later retry, hours after the run).

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::deliver::{Item, Tried, attempt};
use crate::config::{TaskSpec, format_duration};
use crate::notify::{Message, RunReport};
use crate::store::{
    DeliveryKey, DeliveryRecord, DeliveryStatus, Owner, RecipientStatus, StoreError,
};
use crate::template::MessageTemplate;

/// The variables an alert template has besides those of a report
/// ([`RunReport::variables`]).
pub const ALERT_VARIABLES: [&str; 4] = ["held", "last_alert_at", "failed_deliveries", "owners"];

/// The variables of an alert template (what `ferry validate` accepts in one).
pub fn alert_variables() -> Vec<String> {
    let mut v = RunReport::variables();
    v.extend(ALERT_VARIABLES.iter().map(|s| s.to_string()));
    v
}

/// The occurrence of an alert sent after the run's own: the Unix second `now`, so that
/// each later alert of a run has a Message-ID and outbox file of its own.
pub fn later_occurrence(now: DateTime<Utc>) -> usize {
    usize::try_from(now.timestamp()).unwrap_or(2).max(2)
}

/// One line per delivery, or per email recipient, that failed for good.
pub fn failed_deliveries(deliveries: &[DeliveryRecord]) -> Vec<String> {
    deliveries
        .iter()
        .flat_map(|d| {
            if d.status == DeliveryStatus::Failed {
                return vec![format!(
                    "notify `{}`: {}",
                    d.channel,
                    d.error.as_deref().unwrap_or("failed")
                )];
            }
            d.recipients
                .iter()
                .filter(|r| r.status == RecipientStatus::Failed)
                .map(|r| {
                    format!(
                        "notify `{}`: {}: {}",
                        d.channel,
                        r.recipient,
                        r.error.as_deref().unwrap_or("failed")
                    )
                })
                .collect()
        })
        .collect()
}

/// Tells the task's owners about `report` and `failed_deliveries`, unless an alert for
/// the task went out within `alerts.every`. Returns a warning for the run when the alert
/// could not be sent. `occurrence` tells the alerts of one run apart (Message-ID, outbox
/// file name): 1 for the alert at the end of the run, [`later_occurrence`] after it.
pub async fn alert_owners(
    env: super::deliver::Env<'_>,
    task: &TaskSpec,
    report: RunReport,
    failed_deliveries: &[String],
    occurrence: usize,
) -> Result<Option<String>, StoreError> {
    let super::deliver::Env {
        store,
        config,
        channels,
        clock,
    } = env;
    let Some(alerts) = &config.alerts else {
        return Ok(None);
    };
    let (Some(spec), Some(notifier)) = (
        config.channels.get(&alerts.channel),
        channels.get(&alerts.channel),
    ) else {
        return Ok(Some(format!(
            "owner alert: channel `{}` is not defined",
            alerts.channel
        )));
    };
    let caps = notifier.capabilities();
    if caps.mailboxes && task.owners.is_empty() {
        return Ok(None);
    }
    let now = clock.now();
    let Some(admission) = store.admit_alert(&task.name, now, alerts.every).await? else {
        info!(task = %task.name, "owner alert held back (one per {})", format_duration(alerts.every));
        return Ok(None);
    };
    let run_id = report.run_id.clone();
    let ctx = minijinja::context! {
        held => admission.held,
        last_alert_at => admission.last_sent_at.map(|t| {
            t.with_timezone(&task.timezone).format("%Y-%m-%d %H:%M:%S").to_string()
        }),
        failed_deliveries => failed_deliveries.to_vec(),
        owners => task.owners.clone(),
        ..report.context()
    };
    let tpl = MessageTemplate::locate(&config.templates_dir, &alerts.template);
    let rendered = tpl.render(&ctx).and_then(|(subject, body)| {
        let html = if caps.html {
            tpl.render_html(&ctx)?
        } else {
            None
        };
        Ok((subject, body, html))
    });
    let (subject, body, html) = match rendered {
        Ok(m) => m,
        Err(e) => return Ok(Some(format!("owner alert: {e}"))),
    };
    // A label of its own, so that the alert never takes the place of the run's report on
    // the same channel (ledger key, outbox file name, Message-ID).
    let label = format!("{}-alert", alerts.channel);
    let message = Message {
        task: task.name.clone(),
        run_id: run_id.clone(),
        channel: label.clone(),
        via: Some(alerts.channel.clone()),
        thread: None,
        occurrence,
        recipients: if caps.mailboxes {
            task.owners.clone()
        } else {
            spec.recipients.clone()
        },
        subject,
        body,
        html,
        ..Message::default()
    };
    // Recorded in the ledger first, as a delivery of the run: a failed attempt stays
    // `pending` for the delivery worker's retries, and history shows it.
    let json = message.to_ledger();
    let owner = Owner {
        node: config.node_name.clone(),
        pid: std::process::id(),
    };
    let occurrence = u32::try_from(occurrence).unwrap_or(u32::MAX);
    if !store
        .enqueue_alert(&run_id, &label, occurrence, &json, &owner, now)
        .await?
    {
        return Ok(None);
    }
    let item = Item {
        key: DeliveryKey {
            run_id,
            channel: label,
            occurrence,
        },
        from: DeliveryStatus::Pending,
        attempts: 0,
        message: json,
        takeovers: 0,
    };
    match attempt(env, Some(task), &item, &owner, None).await? {
        Some(Tried {
            outcome: Ok(receipt),
            ..
        }) => {
            info!(task = %task.name, channel = %alerts.channel, %receipt, "owners alerted");
            Ok(None)
        }
        Some(Tried {
            outcome: Err(e), ..
        }) => {
            warn!(task = %task.name, channel = %alerts.channel, error = %e, "owner alert failed");
            Ok(Some(format!(
                "owner alert through `{}`: {e}",
                alerts.channel
            )))
        }
        None => Ok(None),
    }
}
