//! Sending the messages recorded in the delivery ledger, with retries.
//!
//! A run renders all its messages first and records them as `pending` together with its
//! outcome, in one store transaction; then each is attempted here. An attempt marks the
//! delivery `sending` (fenced: of two processes only one gets it), sends the recorded
//! message, and records `sent`, `failed` (permanent error, or retries exhausted) or
//! `pending` with the time of the next attempt.
//!
//! - Inside the run ([`deliver_in_run`]) a retryable failure is tried again up to
//!   [`IN_RUN_ATTEMPTS`] times in all, after [`backoff`] delays growing from about 1 s, at
//!   most [`IN_RUN_BUDGET`] of waiting per delivery. Channels are sent concurrently and
//!   independently; the entries of one channel go in `notify` order.
//! - What still fails stays `pending`; `ferry serve`'s delivery worker ([`deliver_due`])
//!   tries it again when it is due, with the backoff growing to an hour, up to
//!   [`MAX_ATTEMPTS`] in all, then `failed`. A delivery (or email recipient) that fails for
//!   good there alerts the task's owners ([`super::alert`]), as a failure in the run does.
//! - A delivery left `sending` by a process that died may have gone out: it is tried once
//!   more and recorded `maybe_duplicate` (email keeps its Message-ID, so clients can tell
//!   the copies apart); if that try fails it is `failed`, never retried again.
//! - The message is never rendered again and the query never re-run: the ledger holds the
//!   rendered message. Only the channel's settings (server, credentials) are looked up again,
//!   so no secret is kept in the ledger.
//! - Email is tracked per recipient and part ([`per_recipient_end`]): each attempt sends
//!   only to the recipients the ledger does not record as delivered or refused for good,
//!   and the delivery's state is derived from theirs. A recipient whose send was lost
//!   after the message's final `.` (`unconfirmed`) gets one more try, then is
//!   `maybe_duplicate` or `failed`. Other channels have one recipient: the delivery.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tracing::{info, warn};

use super::Stop;
use crate::clock::Clock;
use crate::config::{Config, TaskSpec, format_duration};
use crate::notify::attempt::{self, Attempted, RcptOutcome};
use crate::notify::{Message, NotifyError, Registry};
use crate::store::instances::process_counts_alive;
use crate::store::{
    AttemptEnd, DeliveryKey, DeliveryStatus, DueDelivery, InstanceRecord, Owner, RecipientRecord,
    RecipientStatus, Store, StoreError,
};

/// Attempts made inside the run before a delivery is left to the delivery worker.
pub const IN_RUN_ATTEMPTS: u32 = 3;
/// The most a run waits between the attempts of one delivery, in all.
pub const IN_RUN_BUDGET: Duration = Duration::from_secs(30);
/// Attempts in all before a retryable failure becomes `failed`.
pub const MAX_ATTEMPTS: u32 = 10;
/// The first in-run delay; each further one doubles.
const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The first delay after the in-run attempts; each further one doubles.
const LATER_DELAY: Duration = Duration::from_secs(60);
/// The longest delay between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Each delay is moved by up to this fraction either way, so that deliveries failing
/// together do not retry together.
const JITTER: f64 = 0.1;

/// The delay before the next attempt after `failed` attempts (≥ 1) have failed, with
/// `unit` in `[0, 1)` choosing the jitter: 1 s, 2 s inside the run, then 1 min, 2 min, …
/// capped at 1 h, each ±10 %.
pub fn backoff(failed: u32, unit: f64) -> Duration {
    let failed = failed.max(1);
    let base = if failed < IN_RUN_ATTEMPTS {
        FIRST_DELAY.saturating_mul(1 << (failed - 1).min(20))
    } else {
        LATER_DELAY.saturating_mul(1 << (failed - IN_RUN_ATTEMPTS).min(20))
    }
    .min(MAX_DELAY);
    base.mul_f64(1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0))
}

/// A random number in `[0, 1)` for the jitter.
fn jitter_unit() -> f64 {
    getrandom::u32()
        .map(|v| f64::from(v) / (f64::from(u32::MAX) + 1.0))
        .unwrap_or(0.5)
}

/// What sending needs: the store (the ledger), the config as last loaded, its channels,
/// and the clock.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub store: &'a dyn Store,
    pub config: &'a Config,
    pub channels: &'a Registry,
    pub clock: &'a dyn Clock,
}

/// One delivery to attempt, as last read from the ledger.
#[derive(Debug, Clone)]
pub struct Item {
    pub key: DeliveryKey,
    /// `pending`, or `sending` for one left by a process that died.
    pub from: DeliveryStatus,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The rendered message (JSON).
    pub message: String,
    /// How often it was taken over from a process that died while sending it.
    pub takeovers: u32,
}

/// What one attempt did.
#[derive(Debug, Clone)]
pub struct Tried {
    pub outcome: Result<String, NotifyError>,
    /// What was recorded.
    pub end: AttemptEnd,
    /// Set when the caller keeps the delivery and tries again after this delay.
    pub retry_in: Option<Duration>,
}

/// Attempts one delivery once. `budget` is what is left of the caller's in-run waiting
/// budget (`None` for the delivery worker); when the next attempt fits in it, the delivery
/// stays held by `owner` and [`Tried::retry_in`] says when to try again. `Ok(None)`: another
/// process took the delivery first.
pub async fn attempt(
    env: Env<'_>,
    task: Option<&TaskSpec>,
    item: &Item,
    owner: &Owner,
    budget: Option<Duration>,
) -> Result<Option<Tried>, StoreError> {
    let Env { store, clock, .. } = env;
    let now = clock.now().trunc_subsecs(3);
    let message = Message::from_ledger(&item.message);
    // An owner alert names the channel it goes through; it has no task `notify` entry.
    let via = message.as_ref().ok().and_then(|m| m.via.clone());
    let notifier = match &via {
        Some(channel) => env.channels.for_entry(env.config, None, channel, 1),
        None => env
            .channels
            .for_entry(env.config, task, &item.key.channel, item.key.occurrence),
    };
    let per_recipient = notifier
        .as_ref()
        .is_ok_and(|n| n.capabilities().per_recipient);
    // A channel tracked per recipient (email): read what earlier attempts did before the
    // delivery is taken, so that a failing store leaves it as it was.
    let known = if per_recipient {
        store.recipients(&item.key).await?
    } else {
        Vec::new()
    };
    if !store
        .begin_attempt(&item.key, item.from, item.attempts, owner, now)
        .await?
    {
        return Ok(None);
    }
    let ambiguous = item.from == DeliveryStatus::Sending;
    let n = item.attempts + 1;
    let sent = match (message, notifier) {
        // The one resend after an interrupted attempt was interrupted too: a third copy
        // is never sent.
        _ if ambiguous && item.takeovers >= 1 => {
            Sent::Whole(Err(NotifyError::Permanent(INTERRUPTED_TWICE.to_string())))
        }
        (Ok(message), Ok(notifier)) => match notifier.send(&message, &known).await {
            Ok(attempted) if per_recipient => Sent::PerRecipient(known, attempted),
            Ok(attempted) => Sent::Whole(attempted.into_result()),
            Err(e) => Sent::Whole(Err(e)),
        },
        (Err(e), _) => Sent::Whole(Err(NotifyError::Permanent(e))),
        (_, Err(e)) => Sent::Whole(Err(e)),
    };
    let at = clock.now().trunc_subsecs(3);
    let channel = &item.key.channel;
    let (mut end, outcome) = match sent {
        Sent::Whole(outcome) => (whole_end(&outcome, ambiguous, n, at), outcome),
        Sent::PerRecipient(known, attempted) => {
            per_recipient_end(&known, attempted, ambiguous, n, at)
        }
    };
    let mut retry_in = None;
    match &outcome {
        Ok(receipt) if end.status == DeliveryStatus::MaybeDuplicate => {
            warn!(%channel, %receipt, attempts = n, "sent again after an interrupted attempt: the recipient may have it twice");
        }
        Ok(receipt) => info!(%channel, %receipt, attempts = n, "notified"),
        Err(e) if end.status == DeliveryStatus::Pending => {
            // Never sooner than the service asked for (a robot's pause, `Retry-After`).
            let delay = backoff(n, jitter_unit()).max(e.wait_at_least().unwrap_or_default());
            end.next_attempt_at =
                Some(at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX));
            if let Some(left) = budget
                && n < IN_RUN_ATTEMPTS
                && delay <= left
            {
                end.keep_owner = true;
                retry_in = Some(delay);
            }
            warn!(%channel, error = %e, attempts = n, retry_in = %format_duration(delay), "notification failed, will retry");
        }
        Err(e) => warn!(%channel, error = %e, attempts = n, "notification failed"),
    }
    record_end(store, &item.key, &end, owner, n).await?;
    Ok(Some(Tried {
        outcome,
        end,
        retry_in,
    }))
}

/// Records the end of attempt `n`, trying the store again briefly if it fails (a busy
/// database must not leave the delivery `sending`, which would make a restart treat it as
/// possibly sent). A delivery taken over meanwhile by another process is left to it.
async fn record_end(
    store: &dyn Store,
    key: &DeliveryKey,
    end: &AttemptEnd,
    owner: &Owner,
    n: u32,
) -> Result<(), StoreError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match store.end_attempt(key, end, owner, n).await {
            Ok(true) => return Ok(()),
            Ok(false) => {
                warn!(channel = %key.channel, run_id = %key.run_id, attempts = n, "the delivery was taken over by another process during this attempt; its attempt is recorded, not this one");
                return Ok(());
            }
            Err(e) if tries < 5 => {
                warn!(channel = %key.channel, error = %e, "cannot record the attempt yet; trying again");
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What an attempt sent: one message to the channel, or an email per recipient (with
/// the recipients as the ledger had them before).
enum Sent {
    Whole(Result<String, NotifyError>),
    PerRecipient(Vec<RecipientRecord>, Attempted),
}

/// Added to a failure after an interrupted attempt: the message may be there already.
const NOT_AGAIN: &str = "an earlier attempt was interrupted mid-send and may have been delivered, so ferry does not try again";

/// Why a delivery whose resend was interrupted too is not sent again.
pub const INTERRUPTED_TWICE: &str = "an attempt was interrupted, and so was the one resend after it: the message may have arrived (once or twice) or not at all; it is not sent a third time";

/// How an attempt of a whole message ended (`next_attempt_at` is set by the caller).
fn whole_end(
    outcome: &Result<String, NotifyError>,
    ambiguous: bool,
    n: u32,
    at: DateTime<Utc>,
) -> AttemptEnd {
    let mut end = AttemptEnd {
        status: DeliveryStatus::Failed,
        retryable: false,
        receipt: None,
        error: None,
        next_attempt_at: None,
        at,
        keep_owner: false,
        recipients: Vec::new(),
    };
    match outcome {
        Ok(receipt) => {
            end.status = if ambiguous {
                DeliveryStatus::MaybeDuplicate
            } else {
                DeliveryStatus::Sent
            };
            end.receipt = Some(receipt.clone());
        }
        Err(NotifyError::Permanent(m)) => end.error = Some(m.clone()),
        Err(NotifyError::Retryable { message: m, .. }) => {
            end.retryable = true;
            if ambiguous {
                end.error = Some(format!("{m}; {NOT_AGAIN}"));
            } else if n >= MAX_ATTEMPTS {
                end.error = Some(format!("{m}; gave up after {n} attempts"));
            } else {
                end.status = DeliveryStatus::Pending;
                end.error = Some(m.clone());
            }
        }
    }
    end
}

/// How an email attempt ended: each recipient's new state, and the delivery's state
/// derived from all of them (sent when every recipient has every part; pending while one
/// waits; failed when none waits and one failed). A recipient whose earlier send was
/// unconfirmed (or that an interrupted attempt may have reached) gets exactly one more
/// try: `maybe_duplicate` when accepted, else `failed`.
fn per_recipient_end(
    known: &[RecipientRecord],
    attempted: Attempted,
    ambiguous: bool,
    n: u32,
    at: DateTime<Utc>,
) -> (AttemptEnd, Result<String, NotifyError>) {
    let mut changed = Vec::new();
    let mut retry_failure = false;
    for r in attempted.results {
        let prior = known
            .iter()
            .find(|k| k.part == r.part && k.recipient == r.recipient);
        let once_more = prior.is_some_and(|p| p.status == RecipientStatus::Unconfirmed)
            || (ambiguous && prior.is_none_or(|p| p.status.open()));
        let mut rec = RecipientRecord {
            part: r.part,
            recipient: r.recipient,
            status: RecipientStatus::Failed,
            attempts: prior.map_or(0, |p| p.attempts) + 1,
            error: None,
            reply: None,
            sent_at: None,
            at,
        };
        match r.outcome {
            RcptOutcome::Sent(reply) => {
                rec.status = if once_more {
                    RecipientStatus::MaybeDuplicate
                } else {
                    RecipientStatus::Sent
                };
                rec.reply = Some(reply);
                rec.sent_at = Some(at);
            }
            RcptOutcome::Refused { error, reply } => {
                rec.error = Some(error);
                rec.reply = reply;
            }
            RcptOutcome::Retry { error, reply } => {
                retry_failure = true;
                rec.reply = reply;
                rec.error = Some(if once_more {
                    format!("{error}; {NOT_AGAIN}")
                } else if n >= MAX_ATTEMPTS {
                    format!("{error}; gave up after {n} attempts")
                } else {
                    rec.status = RecipientStatus::Pending;
                    error
                });
            }
            RcptOutcome::Unconfirmed(error) => {
                retry_failure = true;
                rec.error = Some(if once_more || n >= MAX_ATTEMPTS {
                    format!("{error}; not tried again")
                } else {
                    rec.status = RecipientStatus::Unconfirmed;
                    error
                });
            }
        }
        changed.push(rec);
    }
    let all: Vec<&RecipientRecord> = known
        .iter()
        .filter(|k| {
            !changed
                .iter()
                .any(|c| c.part == k.part && c.recipient == k.recipient)
        })
        .chain(&changed)
        .collect();
    let open = all.iter().any(|r| r.status.open());
    let delivered = all.iter().filter(|r| r.status.delivered()).count();
    let status = if open {
        DeliveryStatus::Pending
    } else if delivered == all.len() && !all.is_empty() {
        if all
            .iter()
            .any(|r| r.status == RecipientStatus::MaybeDuplicate)
        {
            DeliveryStatus::MaybeDuplicate
        } else {
            DeliveryStatus::Sent
        }
    } else {
        DeliveryStatus::Failed
    };
    let errors: Vec<(&str, &str)> = all
        .iter()
        .filter(|r| !r.status.delivered())
        .filter_map(|r| Some((r.recipient.as_str(), r.error.as_deref()?)))
        .collect();
    let error = (!errors.is_empty()).then(|| attempt::summarize(&errors));
    let receipt = (delivered > 0).then(|| attempted.message_ids.join(" "));
    let outcome = match (status.delivered(), &error) {
        (true, _) => Ok(receipt.clone().unwrap_or_default()),
        (false, Some(e)) if open => Err(NotifyError::retryable(e.clone())),
        (false, e) => Err(NotifyError::Permanent(
            e.clone()
                .unwrap_or_else(|| "the message has no recipient".into()),
        )),
    };
    let end = AttemptEnd {
        status,
        retryable: open || (status == DeliveryStatus::Failed && retry_failure),
        receipt,
        error,
        next_attempt_at: None,
        at,
        keep_owner: false,
        recipients: changed,
    };
    (end, outcome)
}

/// The deliveries of one run, attempted inside the run: each channel's entries in order,
/// channels concurrently, retryable failures retried within [`IN_RUN_BUDGET`]. Stops
/// retrying (leaving the deliveries `pending`) when `stop` fires. Returns the last
/// attempt of each delivery (none for one another process took).
pub async fn deliver_in_run(
    env: Env<'_>,
    task: &TaskSpec,
    items: Vec<Item>,
    owner: &Owner,
    stop: &Stop,
) -> Result<Vec<(DeliveryKey, Tried)>, StoreError> {
    let mut by_channel: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    for item in items {
        by_channel
            .entry(item.key.channel.clone())
            .or_default()
            .push(item);
    }
    let lanes = by_channel.into_values().map(|items| async move {
        let mut out = Vec::new();
        for item in items {
            if let Some(t) = retry_in_run(env, task, item.clone(), owner, stop).await? {
                out.push((item.key, t));
            }
        }
        Ok::<_, StoreError>(out)
    });
    let mut all = Vec::new();
    for lane in futures_util::future::join_all(lanes).await {
        all.extend(lane?);
    }
    Ok(all)
}

async fn retry_in_run(
    env: Env<'_>,
    task: &TaskSpec,
    mut item: Item,
    owner: &Owner,
    stop: &Stop,
) -> Result<Option<Tried>, StoreError> {
    let mut waited = Duration::ZERO;
    loop {
        let left = IN_RUN_BUDGET.saturating_sub(waited);
        let Some(tried) = attempt(env, Some(task), &item, owner, Some(left)).await? else {
            return Ok(None);
        };
        let Some(delay) = tried.retry_in else {
            return Ok(Some(tried));
        };
        tokio::select! {
            _ = env.clock.sleep(delay) => {}
            _ = stop.stopped() => {
                // Leave it to the delivery worker.
                let end = AttemptEnd { keep_owner: false, ..tried.end.clone() };
                record_end(env.store, &item.key, &end, owner, item.attempts + 1).await?;
                return Ok(Some(Tried { end, retry_in: None, ..tried }));
            }
        }
        waited += delay;
        item.from = DeliveryStatus::Pending;
        item.attempts += 1;
    }
}

/// Whether the process holding a delivery since `since` may still be working on it. A
/// holder on this node is checked by its pid (a fast path); one on another node by its
/// instance's heartbeat ([`crate::store::instances`]), or, when it never registered one
/// (an older ferry), for [`crate::store::instances::NO_HEARTBEAT_GRACE`] after it took the
/// delivery.
fn holder_alive(
    instances: &[InstanceRecord],
    holder: &Owner,
    since: Option<DateTime<Utc>>,
    me: &Owner,
    now: DateTime<Utc>,
) -> bool {
    process_counts_alive(
        instances,
        &holder.node,
        holder.pid,
        since,
        &me.node,
        &crate::store::process_alive,
        now,
    )
}

/// One pass of the delivery worker: attempts every delivery that is due (pending and due,
/// or left `sending` by a process that is gone), each channel's in order, channels
/// concurrently, once each. Returns how many were attempted.
pub async fn deliver_due(
    env: Env<'_>,
    tasks: &BTreeMap<String, TaskSpec>,
    me: &Owner,
) -> Result<usize, StoreError> {
    let store = env.store;
    let now = env.clock.now();
    let due = store.due_deliveries(now, 200).await?;
    let instances = if due
        .iter()
        .any(|d| d.owner.as_ref().is_some_and(|o| o.node != me.node))
    {
        store.instances().await?
    } else {
        Vec::new()
    };
    let due: Vec<DueDelivery> = due
        .into_iter()
        .filter(|d| {
            d.owner
                .as_ref()
                .is_none_or(|o| !holder_alive(&instances, o, d.held_since, me, now))
        })
        .collect();
    let mut by_channel: BTreeMap<String, Vec<DueDelivery>> = BTreeMap::new();
    for d in due {
        by_channel.entry(d.key.channel.clone()).or_default().push(d);
    }
    let lanes = by_channel.into_values().map(|lane| async move {
        let mut n = 0;
        let mut failed_runs = Vec::new();
        for d in lane {
            let item = Item {
                key: d.key.clone(),
                from: d.status,
                attempts: d.attempts,
                message: d.message.clone(),
                takeovers: d.takeovers,
            };
            if let Some(tried) = attempt(env, tasks.get(&d.task), &item, me, None).await? {
                n += 1;
                let recipient_failed = tried
                    .end
                    .recipients
                    .iter()
                    .any(|r| r.status == RecipientStatus::Failed);
                // An owner alert that fails for good alerts nobody (it would only fail again).
                if !d.alert && (tried.end.status == DeliveryStatus::Failed || recipient_failed) {
                    failed_runs.push(d.key.run_id.clone());
                }
            }
        }
        Ok::<_, StoreError>((n, failed_runs))
    });
    let mut total = 0;
    let mut failed_runs = std::collections::BTreeSet::new();
    for lane in futures_util::future::join_all(lanes).await {
        let (n, failed) = lane?;
        total += n;
        failed_runs.extend(failed);
    }
    for run_id in failed_runs {
        alert_later_failure(env, tasks, &run_id).await?;
    }
    Ok(total)
}

/// Tells a task's owners that a retry made by the delivery worker failed for good (the
/// run's own alert went out, or was held back, when the run ended).
async fn alert_later_failure(
    env: Env<'_>,
    tasks: &BTreeMap<String, TaskSpec>,
    run_id: &str,
) -> Result<(), StoreError> {
    let Some(run) = env.store.get(run_id).await? else {
        return Ok(());
    };
    let Some(task) = tasks.get(&run.task) else {
        return Ok(());
    };
    let failed = super::alert::failed_deliveries(&run.deliveries);
    let report = crate::notify::RunReport {
        task: task.name.clone(),
        description: task.description.clone(),
        run_id: run.run_id.clone(),
        status: run.status,
        scheduled_at: run.scheduled_at,
        tz: task.timezone,
        duration: Duration::from_millis(run.duration_ms.unwrap_or(0).max(0) as u64),
        rows: run.rows,
        files: run.files.clone(),
        warnings: run.warnings.clone(),
        error: run.error.clone(),
        links: Vec::new(),
        coverage: task.run_params(run.scheduled_at).coverage,
        trigger: crate::store::Trigger::parse(&run.trigger)
            .unwrap_or(crate::store::Trigger::Schedule),
    };
    let occurrence = super::alert::later_occurrence(env.clock.now());
    if let Some(note) = super::alert::alert_owners(env, task, report, &failed, occurrence).await? {
        warn!(task = %task.name, run_id, "{note}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::instances::NO_HEARTBEAT_GRACE;

    #[test]
    fn a_foreign_holder_counts_as_gone_once_its_heartbeat_is_stale() {
        let me = Owner {
            node: "a".into(),
            pid: std::process::id(),
        };
        let other = Owner {
            node: "b".into(),
            pid: 1,
        };
        let now = crate::clock::wall_now();
        let minute = chrono::Duration::minutes(1);
        let lease = chrono::Duration::from_std(crate::store::INSTANCE_LEASE).unwrap();
        let grace = chrono::Duration::from_std(NO_HEARTBEAT_GRACE).unwrap();
        let beat = |at| InstanceRecord {
            instance_id: "i".into(),
            node: "b".into(),
            pid: 1,
            started_at: now - grace * 3,
            heartbeat_at: at,
            stopped_at: None,
        };
        // Its heartbeat decides, however old the hold.
        let fresh = [beat(now - lease + minute)];
        assert!(holder_alive(
            &fresh,
            &other,
            Some(now - grace * 2),
            &me,
            now
        ));
        let stale = [beat(now - lease - minute)];
        assert!(!holder_alive(&stale, &other, Some(now), &me, now));
        // No instance row (an older ferry): alive for the grace after it took the delivery.
        assert!(holder_alive(
            &[],
            &other,
            Some(now - grace + minute),
            &me,
            now
        ));
        assert!(!holder_alive(
            &[],
            &other,
            Some(now - grace - minute),
            &me,
            now
        ));
        assert!(holder_alive(&[], &other, None, &me, now));
        // On this node the pid decides.
        assert!(holder_alive(&stale, &me, Some(now - grace * 2), &me, now));
        let gone = Owner {
            node: "a".into(),
            pid: u32::MAX - 1,
        };
        assert!(!holder_alive(&fresh, &gone, Some(now), &me, now));
    }

    fn result(part: u32, rcpt: &str, outcome: RcptOutcome) -> attempt::RcptResult {
        attempt::RcptResult {
            part,
            recipient: rcpt.into(),
            outcome,
        }
    }

    fn retry(e: &str) -> RcptOutcome {
        RcptOutcome::Retry {
            error: e.into(),
            reply: Some(e.into()),
        }
    }

    fn attempted(results: Vec<attempt::RcptResult>) -> Attempted {
        Attempted {
            message_ids: vec!["<r.mail@example.test>".into()],
            results,
            retry_after: None,
        }
    }

    #[test]
    fn recipients_are_tracked_one_by_one_and_the_delivery_follows_them() {
        let at = crate::clock::wall_now();
        let first = attempted(vec![
            result(0, "a@x", RcptOutcome::Sent("250 ok".into())),
            result(
                0,
                "b@x",
                RcptOutcome::Refused {
                    error: "550 no".into(),
                    reply: Some("550 no".into()),
                },
            ),
            result(0, "c@x", retry("451 later")),
        ]);
        let (end, outcome) = per_recipient_end(&[], first, false, 1, at);
        assert_eq!(end.status, DeliveryStatus::Pending);
        assert!(end.retryable);
        assert_eq!(end.receipt.as_deref(), Some("<r.mail@example.test>"));
        assert!(matches!(outcome, Err(NotifyError::Retryable { .. })));
        let error = end.error.unwrap();
        assert_eq!(error, "b@x: 550 no; c@x: 451 later");
        let known = end.recipients;
        assert_eq!(
            known.iter().map(|r| r.status).collect::<Vec<_>>(),
            [
                RecipientStatus::Sent,
                RecipientStatus::Failed,
                RecipientStatus::Pending
            ]
        );
        // The retry had only c@x; it is accepted: none waits, one failed.
        let (end, outcome) = per_recipient_end(
            &known,
            attempted(vec![result(0, "c@x", RcptOutcome::Sent("250".into()))]),
            false,
            2,
            at,
        );
        assert_eq!(end.status, DeliveryStatus::Failed);
        assert!(!end.retryable);
        assert_eq!(end.error.as_deref(), Some("550 no"));
        assert!(matches!(outcome, Err(NotifyError::Permanent(_))));
        assert_eq!(end.recipients.len(), 1);
        assert_eq!(end.recipients[0].attempts, 2);
        // Retries run out at MAX_ATTEMPTS.
        let (end, _) = per_recipient_end(
            &known,
            attempted(vec![result(0, "c@x", retry("451"))]),
            false,
            MAX_ATTEMPTS,
            at,
        );
        assert_eq!(end.status, DeliveryStatus::Failed);
        assert!(end.retryable);
        assert!(
            end.recipients[0]
                .error
                .as_deref()
                .unwrap()
                .ends_with("gave up after 10 attempts")
        );
    }

    #[test]
    fn an_unconfirmed_send_is_tried_once_more_then_maybe_duplicate_or_failed() {
        let at = crate::clock::wall_now();
        let lost = attempted(vec![result(
            0,
            "a@x",
            RcptOutcome::Unconfirmed("no reply".into()),
        )]);
        let (end, _) = per_recipient_end(&[], lost.clone(), false, 1, at);
        assert_eq!(end.status, DeliveryStatus::Pending);
        assert_eq!(end.recipients[0].status, RecipientStatus::Unconfirmed);
        let known = end.recipients;
        let (end, outcome) = per_recipient_end(
            &known,
            attempted(vec![result(0, "a@x", RcptOutcome::Sent("250".into()))]),
            false,
            2,
            at,
        );
        assert_eq!(end.status, DeliveryStatus::MaybeDuplicate);
        assert_eq!(end.recipients[0].status, RecipientStatus::MaybeDuplicate);
        assert!(outcome.is_ok());
        // Lost again, or refused for a retryable reason: failed, never a third send.
        for again in [
            lost.clone(),
            attempted(vec![result(0, "a@x", retry("451"))]),
        ] {
            let (end, _) = per_recipient_end(&known, again, false, 2, at);
            assert_eq!(end.status, DeliveryStatus::Failed);
            assert_eq!(end.recipients[0].status, RecipientStatus::Failed);
        }
        // A delivery left `sending` by a dead process: its unrecorded recipients count as
        // unconfirmed, recorded ones keep their state.
        let sent = RecipientRecord {
            part: 1,
            recipient: "a@x".into(),
            status: RecipientStatus::Sent,
            attempts: 1,
            error: None,
            reply: None,
            sent_at: Some(at),
            at,
        };
        let (end, _) = per_recipient_end(
            &[sent],
            attempted(vec![result(2, "a@x", RcptOutcome::Sent("250".into()))]),
            true,
            2,
            at,
        );
        assert_eq!(end.status, DeliveryStatus::MaybeDuplicate);
        assert_eq!(end.recipients.len(), 1);
        assert_eq!(end.recipients[0].part, 2);
    }

    #[test]
    fn backoff_grows_is_jittered_within_bounds_and_capped() {
        // The middle of the jitter range is the base delay.
        assert_eq!(backoff(1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(2, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(3, 0.5), Duration::from_secs(60));
        assert_eq!(backoff(4, 0.5), Duration::from_secs(120));
        assert_eq!(backoff(9, 0.5), Duration::from_secs(3600));
        assert_eq!(backoff(40, 0.5), Duration::from_secs(3600));
        // Growing at every step, whatever the jitter (±10 % never overlaps a doubling).
        for n in 1..8 {
            assert!(backoff(n, 0.999) < backoff(n + 1, 0.0), "step {n}");
        }
        // Within ±10 %, and the cap holds with jitter too.
        for n in 1..=MAX_ATTEMPTS {
            let base = backoff(n, 0.5).as_secs_f64();
            for u in [0.0, 0.25, 0.75, 0.999_999] {
                let d = backoff(n, u).as_secs_f64();
                assert!(d >= base * 0.9 - 1e-9 && d <= base * 1.1 + 1e-9, "{n} {u}");
                assert!(d <= 3600.0 * 1.1);
            }
        }
        // The in-run waits fit the budget.
        let in_run: Duration = (1..IN_RUN_ATTEMPTS).map(|n| backoff(n, 0.999)).sum();
        assert!(in_run <= IN_RUN_BUDGET, "{in_run:?}");
        // Random jitter stays within bounds.
        for _ in 0..100 {
            let d = backoff(2, jitter_unit());
            assert!(d >= Duration::from_millis(1800) && d <= Duration::from_millis(2200));
        }
    }
}
