//! Generic webhook: a JSON POST of the rendered message and the run's facts, signed so the
//! receiver can check it came from ferry and was not replayed (documented in
//! docs/configuration.md, "Verifying webhook signatures").
//!
//! Headers: `X-Ferry-Timestamp: <unix seconds>` and
//! `X-Ferry-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::robot::{Notice, PostError, Robot, http_failure};
use crate::config::Secret;

pub struct Webhook {
    client: reqwest::Client,
    url: Secret,
    secret: Option<Secret>,
}

impl Webhook {
    pub fn new(client: reqwest::Client, url: Secret, secret: Option<Secret>) -> Webhook {
        Webhook {
            client,
            url,
            secret,
        }
    }
}

/// `v1=` and the hex HMAC-SHA256 of `"{timestamp}.{body}"` keyed by the secret.
pub fn signature(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp_s}.").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn body(n: &Notice) -> serde_json::Value {
    serde_json::json!({
        "title": n.title,
        "text": n.text,
        "link": n.button.as_ref().map(|(_, url)| url),
    })
}

#[async_trait]
impl Robot for Webhook {
    async fn post(&self, notice: &Notice) -> Result<String, PostError> {
        let bytes = serde_json::to_vec(&body(notice)).expect("json");
        let mut req = self
            .client
            .post(self.url.expose())
            .header("Content-Type", "application/json; charset=utf-8");
        if let Some(secret) = &self.secret {
            let now = crate::clock::wall_now().timestamp();
            req = req
                .header("X-Ferry-Timestamp", now.to_string())
                .header("X-Ferry-Signature", signature(secret.expose(), now, &bytes));
        }
        let answer = req
            .body(bytes)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| http_failure("the webhook", e))?;
        Ok(format!("the webhook answered HTTP {}", answer.status()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_the_documented_recipe() {
        // Python: "v1=" + hmac.new(b"s3cret", b"1700000000." + body, sha256).hexdigest()
        assert_eq!(
            super::signature("s3cret", 1_700_000_000, br#"{"title":"t"}"#),
            "v1=566340ed818f4c720d02b46a1560e3eebe77ed22fc9b03491c742777219018b5"
        );
    }
}
