//! What one attempt at a delivery did, per recipient: the part of the [`super::Notifier`]
//! seam that the delivery ledger records. Email reports each envelope recipient of each
//! message part; a channel that posts one message to one place (a robot, a webhook, the
//! outbox) is one recipient ([`Attempted::whole`]).

use std::time::Duration;

use super::NotifyError;

/// What happened to one recipient of one message (part) in an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// Accepted: the server's reply to the end of the message.
    Sent(String),
    /// Not accepted, and trying again can help (a 4xx reply, a connection refused or lost
    /// before the end of the message).
    Retry {
        error: String,
        reply: Option<String>,
    },
    /// Refused for good (a 5xx reply, bad credentials or certificate).
    Refused {
        error: String,
        reply: Option<String>,
    },
    /// The connection was lost after the message's final `.` and before the reply: the
    /// server may have accepted it.
    Unconfirmed(String),
}

impl RcptOutcome {
    pub fn from_error(e: NotifyError) -> RcptOutcome {
        match e {
            NotifyError::Retryable { message: error, .. } => {
                RcptOutcome::Retry { error, reply: None }
            }
            NotifyError::Permanent(error) => RcptOutcome::Refused { error, reply: None },
        }
    }
}

/// One (part, recipient) of an attempt.
#[derive(Debug, Clone)]
pub struct RcptResult {
    /// 0 for a message sent whole, 1… for the parts of a split zip.
    pub part: u32,
    /// The envelope address.
    pub recipient: String,
    pub outcome: RcptOutcome,
}

/// What one attempt did.
#[derive(Debug, Clone, Default)]
pub struct Attempted {
    /// The Message-ID of each message (part) of the delivery, in order (email); the
    /// channel's receipt for a whole message.
    pub message_ids: Vec<String>,
    /// Each (part, recipient) the attempt tried.
    pub results: Vec<RcptResult>,
    /// The earliest the service wants another attempt, when it said.
    pub retry_after: Option<Duration>,
}

impl Attempted {
    /// The attempt of a channel that sends one message to one place: its one recipient
    /// is the channel itself (recipient `""`).
    pub fn whole(outcome: Result<String, NotifyError>) -> Attempted {
        match outcome {
            Ok(receipt) => Attempted {
                message_ids: vec![receipt.clone()],
                results: vec![RcptResult {
                    part: 0,
                    recipient: String::new(),
                    outcome: RcptOutcome::Sent(receipt),
                }],
                retry_after: None,
            },
            Err(e) => Attempted {
                message_ids: Vec::new(),
                retry_after: e.wait_at_least(),
                results: vec![RcptResult {
                    part: 0,
                    recipient: String::new(),
                    outcome: RcptOutcome::from_error(e),
                }],
            },
        }
    }

    /// Ok with the Message-IDs when every recipient took every part, else the errors.
    pub fn into_result(self) -> Result<String, NotifyError> {
        let mut errors = Vec::new();
        let mut retryable = false;
        for r in &self.results {
            match &r.outcome {
                RcptOutcome::Sent(_) => {}
                RcptOutcome::Retry { error, .. } | RcptOutcome::Unconfirmed(error) => {
                    retryable = true;
                    errors.push((r.recipient.as_str(), error.as_str()));
                }
                RcptOutcome::Refused { error, .. } => {
                    errors.push((r.recipient.as_str(), error.as_str()))
                }
            }
        }
        if errors.is_empty() {
            return Ok(self.message_ids.join(" "));
        }
        let text = summarize(&errors);
        Err(if retryable {
            NotifyError::Retryable {
                message: text,
                retry_after: self.retry_after,
            }
        } else {
            NotifyError::Permanent(text)
        })
    }
}

/// `(recipient, error)` pairs as one message: the error alone when all share it, else
/// `recipient: error` for each distinct one.
pub fn summarize(errors: &[(&str, &str)]) -> String {
    let mut distinct: Vec<(Vec<&str>, &str)> = Vec::new();
    for (rcpt, error) in errors {
        match distinct.iter_mut().find(|(_, e)| e == error) {
            Some((who, _)) => {
                if !who.contains(rcpt) {
                    who.push(rcpt)
                }
            }
            None => distinct.push((vec![rcpt], error)),
        }
    }
    if distinct.len() == 1 {
        return distinct[0].1.to_string();
    }
    distinct
        .iter()
        .map(|(who, e)| format!("{}: {e}", who.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_message_is_one_recipient_and_keeps_its_error_and_retry_after() {
        let ok = Attempted::whole(Ok("written".into()));
        assert_eq!(ok.results.len(), 1);
        assert_eq!(ok.into_result().unwrap(), "written");
        let pause = Duration::from_secs(600);
        let err = NotifyError::retry_after("130101 send too fast", pause);
        let back = Attempted::whole(Err(err.clone()))
            .into_result()
            .unwrap_err();
        assert_eq!(back, err);
        let refused = NotifyError::permanent("310000 bad signature");
        let back = Attempted::whole(Err(refused.clone()))
            .into_result()
            .unwrap_err();
        assert_eq!(back, refused);
    }
}
