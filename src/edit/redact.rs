//! Secrets a task file may hold: a notify entry's own robot `webhook` (whose URL carries
//! the token) and `secret`. The API never shows them: [`redact`] masks literal values in
//! the text it answers (`${VAR}` references stay, they are not secrets), and
//! [`masked_values`] finds a mask sent back in a write, which is refused at its line
//! instead of being written over the real value.

use crate::config::redact_url;

/// The keys whose literal values are secrets.
const KEYS: [&str; 2] = ["secret", "webhook"];

/// The mask of a secret value.
const MASK: &str = "***";

/// One `key: value` of a secret key in a line: the key, and the byte range of the value.
fn secret_values(line: &str) -> Vec<(&'static str, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    for key in KEYS {
        let mut from = 0;
        while let Some(i) = line[from..].find(key).map(|i| i + from) {
            from = i + key.len();
            // A key starts an entry: at the line's start, after `- `, `{` or `,`.
            let before = line[..i].trim_end().chars().next_back();
            let at_entry = line[..i].is_empty()
                || line[..i].ends_with([' ', '\t', '{', ','])
                    && before.is_none_or(|c| matches!(c, '-' | '{' | ','));
            let is_key = at_entry && line[from..].starts_with(':');
            if !is_key || line[..i].contains('#') {
                continue;
            }
            let rest = &line[from + 1..];
            let start = from + 1 + (rest.len() - rest.trim_start().len());
            let value = &line[start..];
            let len = match value.chars().next() {
                Some(q @ ('"' | '\'')) => value[1..].find(q).map_or(value.len(), |e| e + 2),
                // In a flow mapping `,` and `}` end a plain value; a comment ends any.
                _ => {
                    let comment = value.find(" #").unwrap_or(value.len());
                    if line[..i].contains('{') {
                        value.find([',', '}']).unwrap_or(comment).min(comment)
                    } else {
                        comment
                    }
                }
            };
            let end = start + value[..len].trim_end().len();
            if end > start {
                out.push((key, start..end));
            }
        }
    }
    out.sort_by_key(|(_, r)| r.start);
    out
}

fn unquote(v: &str) -> &str {
    v.trim_matches(|c| c == '"' || c == '\'')
}

/// An environment reference only (`${DING_SECRET}`): not a secret.
fn is_reference(v: &str) -> bool {
    let v = unquote(v);
    v.starts_with("${") && v.ends_with('}') && v.matches("${").count() == 1
}

/// The task file's text with every literal `secret` masked and every literal `webhook`
/// shown with its token redacted.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut last = 0;
        for (key, r) in secret_values(line) {
            let value = &line[r.clone()];
            if is_reference(value) {
                continue;
            }
            out.push_str(&line[last..r.start]);
            let shown = if key == "secret" {
                MASK.to_string()
            } else {
                redact_url(unquote(value))
            };
            out.push_str(&serde_json::Value::String(shown).to_string());
            last = r.end;
        }
        out.push_str(&line[last..]);
    }
    out
}

/// Secret values of a text that hold the mask (sent back from an answer): line, column
/// (1-based) and key of each.
pub fn masked_values(text: &str) -> Vec<(usize, usize, &'static str)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (key, r) in secret_values(line) {
            if line[r.clone()].contains(MASK) {
                out.push((n + 1, line[..r.start].chars().count() + 1, key));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_secrets_are_masked_and_references_kept() {
        let text = "notify:\n  - channel: ding\n    webhook: https://oapi.dingtalk.com/robot/send?access_token=T0KEN-1\n    secret: SECabc # the robot's\n  - { channel: ops, secret: \"S3\", webhook: \"${OPS_HOOK}\" }\n  - channel: x\n    secret: ${X_SECRET}\ndescription: the secret: none\n";
        let shown = redact(text);
        assert!(
            !shown.contains("T0KEN-1") && !shown.contains("SECabc") && !shown.contains("S3\""),
            "{shown}"
        );
        assert!(
            shown.contains("    secret: \"***\" # the robot's\n"),
            "{shown}"
        );
        assert!(shown.contains("access_token=***"), "{shown}");
        assert!(shown.contains("webhook: \"${OPS_HOOK}\""), "{shown}");
        assert!(shown.contains("secret: ${X_SECRET}"), "{shown}");
        assert!(
            shown.ends_with("description: the secret: none\n"),
            "{shown}"
        );
        assert_eq!(masked_values(text), []);
        let masked = masked_values(&shown);
        assert_eq!(
            masked,
            [(3, 14, "webhook"), (4, 13, "secret"), (5, 29, "secret")]
        );
    }
}
