//! The [`Notifier`] for chat robot and webhook channels: turns a rendered [`Message`] into a
//! [`Notice`] and sends it through the robot's queue ([`super::robot`]), or straight to a
//! generic webhook.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::robot::{self, Notice, PostError, Robot};
use super::{Message, NotifyError, WholeMessage, dingtalk, feishu, webhook, wecom};
use crate::config::{RobotDelivery, RobotService, RobotSpec};
use crate::template::human_bytes;

pub struct ChatChannel {
    name: String,
    spec: RobotSpec,
    robots: Arc<robot::Robots>,
}

impl ChatChannel {
    pub fn new(name: &str, spec: &RobotSpec, robots: Arc<robot::Robots>) -> ChatChannel {
        ChatChannel {
            name: name.to_string(),
            spec: spec.clone(),
            robots,
        }
    }
}

impl ChatChannel {
    /// The files to send with the text (WeCom), and a note for the text when files that
    /// could not be sent are reachable only by link, or not at all.
    fn files_to_send(&self, message: &Message) -> (Vec<PathBuf>, Option<String>) {
        let files: Vec<PathBuf> = message
            .attachments
            .iter()
            .map(|f| PathBuf::from(&f.path))
            .collect();
        if files.is_empty() || self.spec.service != RobotService::WeCom {
            return (Vec::new(), None);
        }
        let too_big: Vec<String> = message
            .attachments
            .iter()
            .filter(|f| f.bytes > wecom::MAX_FILE)
            .map(|f| format!("{} ({})", file_name(&f.path), human_bytes(f.bytes)))
            .collect();
        match message.delivery.unwrap_or(self.spec.delivery) {
            RobotDelivery::Link => (Vec::new(), None),
            RobotDelivery::Attach => (files, None),
            RobotDelivery::Auto if too_big.is_empty() => (files, None),
            RobotDelivery::Auto => {
                let instead = if message.link.is_some() {
                    "use the download link"
                } else {
                    "ask the task's owners for them (no download links are configured)"
                };
                (
                    Vec::new(),
                    Some(format!(
                        "Files not sent: {} over WeCom's 20 MB limit; {instead}.",
                        too_big.join(", ")
                    )),
                )
            }
        }
    }
}

fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| path.to_string())
}

/// The button label for a download link.
const DOWNLOAD: &str = "Download / 下载";

#[async_trait]
impl WholeMessage for ChatChannel {
    async fn post(&self, message: &Message) -> Result<String, NotifyError> {
        let client = self
            .robots
            .http_client(self.spec.timeout)
            .map_err(NotifyError::Permanent)?;
        let (files, note) = self.files_to_send(message);
        let mut text = message.body.clone();
        if let Some(note) = note {
            text.push_str("\n\n");
            text.push_str(&note);
        }
        let notice = Notice {
            title: message.subject.clone(),
            text,
            mentions: message.recipients.clone(),
            mention_all: self.spec.mention_all,
            button: message.link.clone().map(|url| (DOWNLOAD.to_string(), url)),
            files,
        };
        let webhook = self.spec.webhook.clone();
        let secret = self.spec.secret.clone();
        let key = robot::robot_key(
            self.spec.service.kind(),
            webhook.expose(),
            secret.as_ref().map(|s| s.expose()),
        );
        let (bot, limits): (Arc<dyn Robot>, _) = match self.spec.service {
            RobotService::DingTalk => (
                Arc::new(dingtalk::DingTalk::new(client, webhook, secret)),
                dingtalk::LIMITS,
            ),
            RobotService::WeCom => (Arc::new(wecom::WeCom::new(client, webhook)), wecom::LIMITS),
            RobotService::Feishu => (
                Arc::new(feishu::Feishu::new(client, webhook, secret)),
                feishu::LIMITS,
            ),
            RobotService::Webhook => {
                // No queue: receivers have no documented limit, and merging would change
                // what they receive.
                let hook = webhook::Webhook::new(client, webhook, secret);
                return hook.post(&notice).await.map_err(|e| match e {
                    PostError::Retryable(m) | PostError::Throttled(m) => {
                        NotifyError::retryable(format!("channel `{}`: {m}", self.name))
                    }
                    PostError::Permanent(m) => {
                        NotifyError::Permanent(format!("channel `{}`: {m}", self.name))
                    }
                });
            }
        };
        self.robots
            .deliver(&key, limits, bot, notice)
            .await
            .map_err(|e| match e {
                NotifyError::Retryable {
                    message,
                    retry_after,
                } => NotifyError::Retryable {
                    message: format!("channel `{}`: {message}", self.name),
                    retry_after,
                },
                NotifyError::Permanent(m) => {
                    NotifyError::Permanent(format!("channel `{}`: {m}", self.name))
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::store::FileRecord;

    fn wecom(delivery: RobotDelivery) -> ChatChannel {
        let spec = RobotSpec {
            service: RobotService::WeCom,
            webhook: Secret::new("https://qyapi.example.test/cgi-bin/webhook/send?key=k"),
            secret: None,
            keyword: None,
            mention_all: false,
            timeout: std::time::Duration::from_secs(5),
            delivery,
        };
        ChatChannel::new("wc", &spec, Default::default())
    }

    fn message(delivery: Option<RobotDelivery>) -> Message {
        Message {
            task: "t".into(),
            run_id: "r".into(),
            channel: "wc".into(),
            occurrence: 1,
            subject: "s".into(),
            body: "b".into(),
            attachments: vec![FileRecord {
                path: "/exports/t/a.csv".into(),
                bytes: 10,
                sha256: String::new(),
            }],
            link: Some("https://files.example.test/d/x".into()),
            delivery,
            ..Message::default()
        }
    }

    #[test]
    fn the_task_entrys_delivery_overrides_the_channels() {
        let file = vec![PathBuf::from("/exports/t/a.csv")];
        assert_eq!(
            wecom(RobotDelivery::Attach).files_to_send(&message(None)).0,
            file
        );
        assert!(
            wecom(RobotDelivery::Attach)
                .files_to_send(&message(Some(RobotDelivery::Link)))
                .0
                .is_empty()
        );
        assert_eq!(
            wecom(RobotDelivery::Link)
                .files_to_send(&message(Some(RobotDelivery::Auto)))
                .0,
            file
        );
    }
}
