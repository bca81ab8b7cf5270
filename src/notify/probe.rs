//! What `ferry channels` and the API show of a channel, and the test message both send:
//! [`destination`] (where it delivers, without any secret) and [`send_test`].

use crate::config::{ChannelKind, ChannelSpec, Config, SmtpSecurity, redact_url};

use super::{Message, Registry};

/// Where a channel delivers, without any secret: a folder, an SMTP server, a robot's URL
/// redacted.
pub fn destination(spec: &ChannelSpec) -> String {
    match &spec.kind {
        ChannelKind::Outbox { dir } => dir.display().to_string(),
        ChannelKind::Email(e) => {
            let security = match e.security {
                SmtpSecurity::StartTls => "starttls",
                SmtpSecurity::Tls => "tls",
                SmtpSecurity::None => "plain",
            };
            format!("smtp {}:{} ({security})", e.host, e.port)
        }
        ChannelKind::Robot(r) => {
            let signed = if r.secret.is_some() { ", signed" } else { "" };
            format!("{}{signed}", redact_url(r.webhook.expose()))
        }
    }
}

/// Why a test message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The request cannot be sent as asked (unknown channel, no recipients).
    #[error("{0}")]
    Usage(String),
    /// The channel refused it or could not be reached.
    #[error("{0}")]
    Failed(String),
}

/// Sends a short test message through channel `name` to its default recipients, or to
/// `to`; the channel's receipt.
pub async fn send_test(config: &Config, name: &str, to: &[String]) -> Result<String, TestError> {
    let Some(spec) = config.channels.get(name) else {
        return Err(TestError::Usage(format!(
            "channel `{name}` is not defined in config.yaml"
        )));
    };
    let recipients = if to.is_empty() {
        spec.recipients.clone()
    } else {
        to.to_vec()
    };
    let (cc, bcc) = if to.is_empty() {
        (spec.cc.clone(), spec.bcc.clone())
    } else {
        (Vec::new(), Vec::new())
    };
    let Some(notifier) = Registry::new(config).get(name) else {
        return Err(TestError::Usage(format!(
            "channel `{name}` is not defined in config.yaml"
        )));
    };
    let caps = notifier.capabilities();
    if caps.mailboxes && recipients.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(TestError::Usage(format!(
            "channel `{name}` has no default recipients; give one with --to ADDRESS"
        )));
    }
    let now = crate::clock::wall_now().with_timezone(&config.timezone);
    let when = now.format("%Y-%m-%d %H:%M:%S %Z");
    let node = &config.node_name;
    let message = Message {
        task: "channel-test".into(),
        run_id: format!("test-{}", uuid::Uuid::now_v7()),
        channel: name.to_string(),
        occurrence: 1,
        recipients,
        cc,
        bcc,
        subject: format!("[ferry] test message from channel {name}"),
        body: format!(
            "### ferry test message\n\nChannel `{name}` ({}) works: sent by ferry on `{node}` at {when}.\n",
            spec.kind.kind()
        ),
        html: caps.html.then(|| {
            format!(
                "<p><b>ferry test message</b></p><p>Channel <code>{name}</code> works: sent by ferry on <code>{node}</code> at {when}.</p>"
            )
        }),
        ..Message::default()
    };
    notifier
        .notify(&message)
        .await
        .map(|r| r.to_string())
        .map_err(|e| TestError::Failed(e.to_string()))
}
