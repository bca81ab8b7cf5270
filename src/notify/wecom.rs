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

/// The largest file `upload_media` accepts (20 MB).
pub const MAX_FILE: u64 = 20 * 1024 * 1024;

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

/// The `upload_media` URL of a robot: its `send` URL with the path's last part replaced
/// and `type=file` added.
pub fn upload_url(webhook: &str) -> Option<String> {
    let (path, query) = webhook.split_once('?')?;
    let base = path.strip_suffix("/send")?;
    Some(format!("{base}/upload_media?{query}&type=file"))
}

/// A `multipart/form-data` body with one part `media` holding the file, as WeCom's
/// `upload_media` expects (`filename` and `filelength` in the part's disposition).
pub fn multipart(boundary: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
    // A quoted-string may not hold `"`, `\` or line breaks.
    let safe: String = name
        .chars()
        .map(|c| {
            if matches!(c, '"' | '\\' | '\r' | '\n') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut body = Vec::with_capacity(bytes.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"{safe}\"; filelength={}\r\nContent-Type: application/octet-stream\r\n\r\n",
            bytes.len()
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

impl WeCom {
    async fn post_json(&self, value: &serde_json::Value) -> Result<String, PostError> {
        let answer = self
            .client
            .post(self.webhook.expose())
            .header("Content-Type", "application/json; charset=utf-8")
            .body(serde_json::to_vec(value).expect("json"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| http_failure("WeCom", e))?;
        let bytes = answer.bytes().await.map_err(|e| http_failure("WeCom", e))?;
        classify(&bytes)
    }

    /// Uploads one file; returns its `media_id` (valid for three days).
    async fn upload(&self, path: &std::path::Path) -> Result<String, PostError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "result".into());
        let bytes = tokio::fs::read(path).await.map_err(|e| {
            PostError::Permanent(format!("cannot read {} to upload it: {e}", path.display()))
        })?;
        if bytes.len() as u64 > MAX_FILE {
            return Err(PostError::Permanent(format!(
                "{name} is {} bytes, over WeCom's 20 MB file limit",
                bytes.len()
            )));
        }
        let url = upload_url(self.webhook.expose()).ok_or_else(|| {
            PostError::Permanent("the webhook is not a WeCom `…/send?key=…` URL".into())
        })?;
        let boundary = format!("ferry-{}", uuid::Uuid::now_v7().simple());
        let answer = self
            .client
            .post(url)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(multipart(&boundary, &name, &bytes))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| http_failure("WeCom", e))?;
        let bytes = answer.bytes().await.map_err(|e| http_failure("WeCom", e))?;
        classify(&bytes)?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        v["media_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| PostError::Retryable("WeCom's upload answer has no media_id".into()))
    }
}

#[async_trait]
impl Robot for WeCom {
    async fn post(&self, notice: &Notice) -> Result<String, PostError> {
        let receipt = self.post_json(&body(notice)).await?;
        if notice.files.is_empty() {
            return Ok(receipt);
        }
        for path in &notice.files {
            let media_id = self.upload(path).await?;
            self.post_json(&serde_json::json!({
                "msgtype": "file",
                "file": { "media_id": media_id },
            }))
            .await?;
        }
        Ok(format!(
            "WeCom accepted the message and {} file(s)",
            notice.files.len()
        ))
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
            files: Vec::new(),
        };
        let c = content(&n);
        assert!(c.len() <= MAX_CONTENT, "{}", c.len());
        assert!(c.starts_with("**日报**\n\n销售"));
        assert!(c.ends_with("\n\n[下载](https://files.example/d/x) <@zhangsan>"));
        assert!(c.contains("(shortened: the full message was 12000 bytes"));
    }

    #[test]
    fn upload_url_and_multipart_body() {
        assert_eq!(
            upload_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K").as_deref(),
            Some("https://qyapi.weixin.qq.com/cgi-bin/webhook/upload_media?key=K&type=file")
        );
        assert_eq!(upload_url("https://example.com/hook"), None);
        let body = multipart("B", "销售\"明细.csv", b"a,b\n");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "--B\r\nContent-Disposition: form-data; name=\"media\"; filename=\"销售_明细.csv\"; filelength=4\r\nContent-Type: application/octet-stream\r\n\r\na,b\n\r\n--B--\r\n"
        );
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
