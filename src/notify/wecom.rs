//! WeCom (企业微信) group robot: the webhook key is the secret (no signature), markdown
//! messages up to 4,096 bytes, `<@userid>` mentions, and the answer's `errcode` decides.

use std::time::Duration;

use async_trait::async_trait;

use super::robot::{Limits, Notice, PostError, Robot, http_failure};
use crate::config::Secret;

/// 20 messages a minute per robot; WeCom's throttle has no stated length, so ferry leaves
/// the robot alone for a minute after `45009`.
pub const LIMITS: Limits = Limits {
    per_minute: 20,
    pause: Duration::from_secs(60),
    max_text: MAX_CONTENT - 200,
};

/// The markdown content cap (bytes, UTF-8).
pub const MAX_CONTENT: usize = 4_096;

pub struct WeCom {
    client: reqwest::Client,
    /// `https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…`
    webhook: Secret,
}

impl WeCom {
    pub fn new(client: reqwest::Client, webhook: Secret) -> WeCom {
        WeCom { client, webhook }
    }
}

/// The markdown content: title, text, button as a link, mentions; at most 4,096 bytes.
pub fn content(n: &Notice) -> String {
    let mut tail = String::new();
    if let Some((label, url)) = &n.button {
        tail.push_str(&format!("\n\n[{label}]({url})"));
    }
    for m in &n.mentions {
        tail.push_str(&format!(" <@{m}>"));
    }
    let head = format!("**{}**\n\n", n.title);
    let room = MAX_CONTENT.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", super::robot::shorten(&n.text, room))
}

pub fn body(n: &Notice) -> serde_json::Value {
    serde_json::json!({ "msgtype": "markdown", "markdown": { "content": content(n) } })
}

/// Reads WeCom's answer: `{"errcode": 0, "errmsg": "ok"}` is success.
pub fn classify(answer: &[u8]) -> Result<String, PostError> {
    let v: serde_json::Value = serde_json::from_slice(answer).map_err(|_| {
        PostError::Retryable(format!(
            "WeCom answered with something other than JSON: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        ))
    })?;
    let code = v["errcode"].as_i64().unwrap_or(-2);
    let msg = v["errmsg"].as_str().unwrap_or("");
    let text = format!("WeCom errcode {code}: {msg}");
    match code {
        0 => Ok("WeCom accepted the message".to_string()),
        45009 => Err(PostError::Throttled(text)),
        -1 => Err(PostError::Retryable(text)),
        93000 | 40008 => Err(PostError::Permanent(format!(
            "{text} (the webhook key is wrong or the robot was removed)"
        ))),
        _ => Err(PostError::Permanent(text)),
    }
}

#[async_trait]
impl Robot for WeCom {
    async fn post(&self, notice: &Notice) -> Result<String, PostError> {
        let answer = self
            .client
            .post(self.webhook.expose())
            .header("Content-Type", "application/json; charset=utf-8")
            .body(serde_json::to_vec(&body(notice)).expect("json"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| http_failure("WeCom", e))?;
        let bytes = answer.bytes().await.map_err(|e| http_failure("WeCom", e))?;
        classify(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_fits_and_carries_link_and_mentions() {
        let n = Notice {
            title: "日报".into(),
            text: "销售".repeat(2000),
            mentions: vec!["zhangsan".into()],
            mention_all: false,
            button: Some(("下载".into(), "https://files.example/d/x".into())),
        };
        let c = content(&n);
        assert!(c.len() <= MAX_CONTENT, "{}", c.len());
        assert!(c.starts_with("**日报**\n\n销售"));
        assert!(c.ends_with("\n\n[下载](https://files.example/d/x) <@zhangsan>"));
        assert!(c.contains("(shortened: the full message was 12000 bytes"));
    }

    #[test]
    fn answers_are_classified_from_the_body() {
        assert!(classify(br#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        assert!(matches!(
            classify(br#"{"errcode":45009,"errmsg":"api freq out of limit"}"#),
            Err(PostError::Throttled(_))
        ));
        assert!(matches!(
            classify(br#"{"errcode":93000,"errmsg":"invalid webhook url"}"#),
            Err(PostError::Permanent(_))
        ));
    }
}
