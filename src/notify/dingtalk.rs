//! DingTalk custom group robot (自定义机器人): signed webhook URL, markdown or actionCard
//! messages, `@` mentions, and the service's answers read from the body (HTTP 200 can
//! carry an error). Sending goes through the robot queue ([`super::robot`]): 20 posts a
//! minute, a 10-minute pause after `130101`, bodies under 20,000 bytes.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::robot::{Limits, Notice, PostError, Robot, http_failure};
use crate::config::Secret;

/// The service's documented limits.
pub const LIMITS: Limits = Limits {
    per_minute: 20,
    pause: Duration::from_secs(600),
    max_text: 18_000,
};

/// The body cap DingTalk enforces (`460101 message too long, exceed 20000 bytes`).
pub const MAX_BODY: usize = 20_000;

pub struct DingTalk {
    client: reqwest::Client,
    /// `https://oapi.dingtalk.com/robot/send?access_token=…`
    webhook: Secret,
    /// The robot's signing secret (`SEC…`), when its security setting is 加签.
    secret: Option<Secret>,
}

impl DingTalk {
    pub fn new(client: reqwest::Client, webhook: Secret, secret: Option<Secret>) -> DingTalk {
        DingTalk {
            client,
            webhook,
            secret,
        }
    }
}

/// `Base64(HmacSHA256(key = secret, message = timestamp + "\n" + secret))`.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The webhook with `&timestamp=…&sign=…` appended (the signature URL-encoded once).
pub fn signed_url(webhook: &str, secret: Option<&str>, timestamp_ms: i64) -> String {
    match secret {
        None => webhook.to_string(),
        Some(secret) => {
            let sep = if webhook.contains('?') { '&' } else { '?' };
            format!(
                "{webhook}{sep}timestamp={timestamp_ms}&sign={}",
                url_encode(&sign(secret, timestamp_ms))
            )
        }
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The JSON body: an actionCard when the notice has a button and nobody to `@`, markdown
/// otherwise. DingTalk honours `at` only in text and markdown messages (an actionCard's
/// mentions are dropped), so a button with mentions becomes a markdown link under the
/// text. In markdown the `@mobile` text must also be in the text, or DingTalk shows no
/// mention.
pub fn body(n: &Notice) -> serde_json::Value {
    let mentions = !n.mentions.is_empty() || n.mention_all;
    match &n.button {
        Some((label, url)) if !mentions => serde_json::json!({
            "msgtype": "actionCard",
            "actionCard": {
                "title": n.title,
                "text": n.text,
                "singleTitle": label,
                "singleURL": url,
            },
        }),
        button => {
            let mut text = n.text.clone();
            if let Some((label, url)) = button {
                text.push_str(&format!("\n\n[{label}]({url})"));
            }
            if !n.mentions.is_empty() {
                text.push_str("\n\n");
                let at: Vec<String> = n.mentions.iter().map(|m| format!("@{m}")).collect();
                text.push_str(&at.join(" "));
            }
            serde_json::json!({
                "msgtype": "markdown",
                "markdown": { "title": n.title, "text": text },
                "at": { "atMobiles": n.mentions, "isAtAll": n.mention_all },
            })
        }
    }
}

/// The body as bytes, its text shortened until the whole body is under [`MAX_BODY`].
pub fn fitted_body(n: &Notice) -> Vec<u8> {
    let mut n = n.clone();
    loop {
        let bytes = serde_json::to_vec(&body(&n)).expect("json");
        if bytes.len() <= MAX_BODY || n.text.is_empty() {
            return bytes;
        }
        let over = bytes.len() - MAX_BODY;
        n.text = super::robot::shorten(&n.text, n.text.len().saturating_sub(over + 16));
    }
}

/// Reads DingTalk's answer: `{"errcode": 0, "errmsg": "ok"}` is success.
pub fn classify(answer: &[u8]) -> Result<String, PostError> {
    let v: serde_json::Value = serde_json::from_slice(answer).map_err(|_| {
        PostError::Retryable(format!(
            "DingTalk answered with something other than JSON: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        ))
    })?;
    let code = v["errcode"].as_i64().unwrap_or(-2);
    let msg = v["errmsg"].as_str().unwrap_or("");
    let text = format!("DingTalk errcode {code}: {msg}");
    match code {
        0 => Ok("DingTalk accepted the message".to_string()),
        130101 => Err(PostError::Throttled(text)),
        // -1: system busy.
        -1 => Err(PostError::Retryable(text)),
        310000 => Err(PostError::Permanent(format!(
            "{text} (the robot's security settings refused the message: check its keyword, secret or IP allowlist)"
        ))),
        300005 | 400013 | 400101 | 400102 | 40035 => Err(PostError::Permanent(format!(
            "{text} (the robot is gone or the webhook is wrong)"
        ))),
        _ => Err(PostError::Permanent(text)),
    }
}

#[async_trait]
impl Robot for DingTalk {
    async fn post(&self, notice: &Notice) -> Result<String, PostError> {
        let now = crate::clock::wall_now().timestamp_millis();
        let url = signed_url(
            self.webhook.expose(),
            self.secret.as_ref().map(Secret::expose),
            now,
        );
        let answer = self
            .client
            .post(url)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(fitted_body(notice))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| http_failure("DingTalk", e))?;
        let bytes = answer
            .bytes()
            .await
            .map_err(|e| http_failure("DingTalk", e))?;
        classify(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_algorithm() {
        // The reference, computed with Python's hmac, base64 and urllib.parse.quote_plus:
        //   ts = 1700000000000; secret = "SEC0123456789abcdef"
        //   base64.b64encode(hmac.new(secret, f"{ts}\n{secret}", sha256).digest())
        let sig = sign("SEC0123456789abcdef", 1_700_000_000_000);
        assert_eq!(sig, "TSZbRFUuvaSQaRKUpF970OPCb2/LcQAP3wOvwZIzBZk=");
        let url = signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=abc",
            Some("SEC0123456789abcdef"),
            1_700_000_000_000,
        );
        assert_eq!(
            url,
            format!(
                "https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1700000000000&sign={}",
                url_encode(&sig)
            )
        );
        assert!(url.ends_with("&sign=TSZbRFUuvaSQaRKUpF970OPCb2%2FLcQAP3wOvwZIzBZk%3D"));
        assert_eq!(url_encode("a+b/c="), "a%2Bb%2Fc%3D");
    }

    #[test]
    fn answers_are_classified_from_the_body() {
        assert!(classify(br#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        assert!(matches!(
            classify(br#"{"errcode":130101,"errmsg":"send too fast"}"#),
            Err(PostError::Throttled(_))
        ));
        assert!(matches!(
            classify(br#"{"errcode":310000,"errmsg":"keywords not in content"}"#),
            Err(PostError::Permanent(m)) if m.contains("keywords not in content")
        ));
        assert!(matches!(
            classify(br#"{"errcode":-1,"errmsg":"system busy"}"#),
            Err(PostError::Retryable(_))
        ));
        assert!(matches!(classify(b"<html>"), Err(PostError::Retryable(_))));
    }

    #[test]
    fn markdown_mentions_are_in_the_text_and_long_bodies_fit() {
        let n = Notice {
            title: "日报".into(),
            text: "\"销售\"\n".repeat(4000),
            mentions: vec!["13800000000".into()],
            mention_all: false,
            button: None,
            files: Vec::new(),
        };
        let short = Notice {
            text: "ok".into(),
            ..n.clone()
        };
        let v = body(&short);
        assert_eq!(v["markdown"]["text"], "ok\n\n@13800000000");
        assert_eq!(v["at"]["atMobiles"][0], "13800000000");
        let bytes = fitted_body(&n);
        assert!(bytes.len() <= MAX_BODY, "{}", bytes.len());
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            v["markdown"]["text"]
                .as_str()
                .unwrap()
                .contains("(shortened: the full message was")
        );
        let card = body(&Notice {
            button: Some(("Download".into(), "https://files.example/d/x".into())),
            ..short.clone()
        });
        // With someone to `@`, the button becomes a markdown link (actionCard drops `at`).
        assert_eq!(card["msgtype"], "markdown");
        assert_eq!(
            card["markdown"]["text"],
            "ok\n\n[Download](https://files.example/d/x)\n\n@13800000000"
        );
        assert_eq!(card["at"]["atMobiles"][0], "13800000000");
        let card = body(&Notice {
            button: Some(("Download".into(), "https://files.example/d/x".into())),
            mentions: Vec::new(),
            ..short
        });
        assert_eq!(card["msgtype"], "actionCard");
        assert_eq!(card["actionCard"]["singleURL"], "https://files.example/d/x");
    }
}
