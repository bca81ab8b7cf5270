//! Feishu / Lark custom bot (自定义机器人): the signature goes in the JSON body (HMAC keyed
//! by `timestamp + "\n" + secret` over an empty message, seconds), messages are interactive
//! cards (markdown plus a button for a download link), and the answer's `code` decides.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::robot::{Limits, Notice, PostError, Robot, http_failure};
use crate::config::Secret;

/// 100 requests a minute per bot (Feishu's documented limit); its throttle has no stated
/// length, so ferry leaves the bot alone for a minute.
pub const LIMITS: Limits = Limits {
    per_minute: 100,
    pause: Duration::from_secs(60),
    max_text: 18_000,
};

/// The body cap (20 KB).
pub const MAX_BODY: usize = 20_000;

pub struct Feishu {
    client: reqwest::Client,
    /// `https://open.feishu.cn/open-apis/bot/v2/hook/…` (or Lark's host).
    webhook: Secret,
    secret: Option<Secret>,
}

impl Feishu {
    pub fn new(client: reqwest::Client, webhook: Secret, secret: Option<Secret>) -> Feishu {
        Feishu {
            client,
            webhook,
            secret,
        }
    }
}

/// `Base64(HmacSHA256(key = timestamp + "\n" + secret, message = ""))`, timestamp in seconds.
pub fn sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The card body, signed when the bot has a secret.
pub fn body(n: &Notice, secret: Option<&str>, timestamp_s: i64) -> serde_json::Value {
    let mut text = n.text.clone();
    if n.mention_all {
        text.push_str("\n<at id=all></at>");
    }
    for m in &n.mentions {
        text.push_str(&format!("\n<at id={m}></at>"));
    }
    let mut elements = vec![serde_json::json!({ "tag": "markdown", "content": text })];
    if let Some((label, url)) = &n.button {
        elements.push(serde_json::json!({
            "tag": "action",
            "actions": [{
                "tag": "button",
                "text": { "tag": "plain_text", "content": label },
                "url": url,
                "type": "primary",
            }],
        }));
    }
    let mut v = serde_json::json!({
        "msg_type": "interactive",
        "card": {
            "header": { "title": { "tag": "plain_text", "content": n.title } },
            "elements": elements,
        },
    });
    if let Some(secret) = secret {
        v["timestamp"] = serde_json::Value::String(timestamp_s.to_string());
        v["sign"] = serde_json::Value::String(sign(secret, timestamp_s));
    }
    v
}

/// Reads Feishu's answer: `{"code": 0, …}` (or the older `{"StatusCode": 0, …}`).
pub fn classify(answer: &[u8]) -> Result<String, PostError> {
    let v: serde_json::Value = serde_json::from_slice(answer).map_err(|_| {
        PostError::Retryable(format!(
            "Feishu answered with something other than JSON: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        ))
    })?;
    let code = v["code"]
        .as_i64()
        .or_else(|| v["StatusCode"].as_i64())
        .unwrap_or(-2);
    let msg = v["msg"]
        .as_str()
        .or_else(|| v["StatusMessage"].as_str())
        .unwrap_or("");
    let text = format!("Feishu code {code}: {msg}");
    match code {
        0 => Ok("Feishu accepted the message".to_string()),
        // 9499 "too many request", 11232 "frequency limited".
        9499 | 11232 => Err(PostError::Throttled(text)),
        19021 | 19022 | 19024 => Err(PostError::Permanent(format!(
            "{text} (the bot's security settings refused the message: check its secret, keyword or IP allowlist, and this machine's clock)"
        ))),
        _ => Err(PostError::Permanent(text)),
    }
}

#[async_trait]
impl Robot for Feishu {
    async fn post(&self, notice: &Notice) -> Result<String, PostError> {
        let now = crate::clock::wall_now().timestamp();
        let secret = self.secret.as_ref().map(Secret::expose);
        let mut n = notice.clone();
        let bytes = loop {
            let bytes = serde_json::to_vec(&body(&n, secret, now)).expect("json");
            if bytes.len() <= MAX_BODY || n.text.is_empty() {
                break bytes;
            }
            let over = bytes.len() - MAX_BODY;
            n.text = super::robot::shorten(&n.text, n.text.len().saturating_sub(over + 16));
        };
        let answer = self
            .client
            .post(self.webhook.expose())
            .header("Content-Type", "application/json; charset=utf-8")
            .body(bytes)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| http_failure("Feishu", e))?;
        let bytes = answer
            .bytes()
            .await
            .map_err(|e| http_failure("Feishu", e))?;
        classify(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_algorithm() {
        // The reference, computed with Python:
        //   key = f"{1700000000}\n{secret}"; base64(hmac.new(key, b"", sha256).digest())
        assert_eq!(
            sign("SEC0123456789abcdef", 1_700_000_000),
            "PiO7POLlSx/DM2qf8Dy/XCWeJK3exVnevp5G99LEN2M="
        );
        let n = Notice {
            title: "日报".into(),
            text: "42 rows".into(),
            mentions: vec![],
            mention_all: true,
            button: Some(("下载".into(), "https://files.example/d/x".into())),
            files: Vec::new(),
        };
        let v = body(&n, Some("SEC0123456789abcdef"), 1_700_000_000);
        assert_eq!(v["timestamp"], "1700000000");
        assert_eq!(v["sign"], "PiO7POLlSx/DM2qf8Dy/XCWeJK3exVnevp5G99LEN2M=");
        assert_eq!(
            v["card"]["elements"][0]["content"],
            "42 rows\n<at id=all></at>"
        );
        assert_eq!(
            v["card"]["elements"][1]["actions"][0]["url"],
            "https://files.example/d/x"
        );
        assert!(body(&n, None, 1).get("sign").is_none());
    }

    #[test]
    fn answers_are_classified_from_the_body() {
        assert!(classify(br#"{"code":0,"msg":"success","data":{}}"#).is_ok());
        assert!(classify(br#"{"StatusCode":0,"StatusMessage":"success"}"#).is_ok());
        assert!(matches!(
            classify(br#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#),
            Err(PostError::Permanent(_))
        ));
        assert!(matches!(
            classify(br#"{"code":9499,"msg":"too many request"}"#),
            Err(PostError::Throttled(_))
        ));
    }
}
