//! The [`Notifier`] for chat robot and webhook channels: turns a rendered [`Message`] into a
//! [`Notice`] and sends it through the robot's queue ([`super::robot`]), or straight to a
//! generic webhook.

use std::sync::Arc;

use async_trait::async_trait;

use super::robot::{self, Notice, PostError, Robot};
use super::{Message, Notifier, NotifyError, dingtalk, feishu, webhook, wecom};
use crate::config::{RobotService, RobotSpec};

pub struct ChatChannel {
    name: String,
    spec: RobotSpec,
}

impl ChatChannel {
    pub fn new(name: &str, spec: &RobotSpec) -> ChatChannel {
        ChatChannel {
            name: name.to_string(),
            spec: spec.clone(),
        }
    }
}

/// The button label for a download link.
const DOWNLOAD: &str = "Download / 下载";

#[async_trait]
impl Notifier for ChatChannel {
    async fn notify(&self, message: &Message) -> Result<String, NotifyError> {
        let client = robot::http_client(self.spec.timeout).map_err(NotifyError::Permanent)?;
        let notice = Notice {
            title: message.subject.clone(),
            text: message.body.clone(),
            mentions: message.recipients.clone(),
            mention_all: self.spec.mention_all,
            button: message.link.clone().map(|url| (DOWNLOAD.to_string(), url)),
        };
        let webhook = self.spec.webhook.clone();
        let secret = self.spec.secret.clone();
        let key = robot::robot_key(self.spec.service.kind(), webhook.expose());
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
                        NotifyError::Retryable(format!("channel `{}`: {m}", self.name))
                    }
                    PostError::Permanent(m) => {
                        NotifyError::Permanent(format!("channel `{}`: {m}", self.name))
                    }
                });
            }
        };
        robot::deliver(&key, limits, bot, notice)
            .await
            .map_err(|e| match e {
                NotifyError::Retryable(m) => {
                    NotifyError::Retryable(format!("channel `{}`: {m}", self.name))
                }
                NotifyError::Permanent(m) => {
                    NotifyError::Permanent(format!("channel `{}`: {m}", self.name))
                }
            })
    }
}
