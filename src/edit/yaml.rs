//! A task given as JSON, written as a YAML task file (block style, quoted only where
//! YAML needs it, keys sorted), so that files written through the API read like
//! hand-written ones.

use serde_json::Value;

/// The YAML text of a JSON object.
pub fn from_json(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => mapping(&mut out, m, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn mapping(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    for (k, v) in m {
        pad(out, indent);
        out.push_str(&scalar_text(k));
        out.push(':');
        value(out, v, indent);
    }
}

/// Writes a value after `key:` or `-` (the line is open).
fn value(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            mapping(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            for item in a {
                pad(out, indent + 2);
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // The first key on the dash's line, the rest under it.
                        let mut first = true;
                        for (k, v) in m {
                            if first {
                                out.push(' ');
                                first = false;
                            } else {
                                pad(out, indent + 4);
                            }
                            out.push_str(&scalar_text(k));
                            out.push(':');
                            value(out, v, indent + 4);
                        }
                    }
                    other => value(out, other, indent + 2),
                }
            }
        }
        Value::String(s) if is_block(s) => {
            out.push_str(if s.ends_with('\n') { " |\n" } else { " |-\n" });
            for line in s.lines() {
                if !line.is_empty() {
                    pad(out, indent + 2);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

/// A multi-line string a literal block keeps exactly.
fn is_block(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\t', '\n'])
        && !s.ends_with("\n\n")
        && !s.contains('\r')
        && !s.contains('\t')
        && s.lines().all(|l| l.trim_end() == l)
}

fn inline(v: &Value) -> String {
    match v {
        Value::String(s) => scalar_text(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// A string as a plain scalar when YAML reads it back as the same string, else
/// double-quoted (JSON escapes are YAML escapes).
fn scalar_text(s: &str) -> String {
    const WORDS: [&str; 12] = [
        "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n", ".inf", ".nan",
    ];
    let plain = s.chars().next().is_some_and(|c| c.is_alphabetic())
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' ' | '@'))
        && !s.ends_with(' ')
        && !WORDS.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_becomes_readable_yaml() {
        let v: Value = serde_json::json!({
            "schedule": "0 2 * * *",
            "source": "warehouse",
            "query": "SELECT 1\nFROM t\n",
            "enabled": true,
            "output": {"format": "csv", "file_name": "x_{{ run_date }}"},
            "notify": [{"channel": "ops", "to": ["a@example.com"]}, {"channel": "yes"}],
            "params": {}
        });
        // Keys come out sorted (serde_json's map order).
        let expected = [
            "enabled: true",
            "notify:",
            "  - channel: ops",
            "    to:",
            "      - a@example.com",
            "  - channel: \"yes\"",
            "output:",
            "  file_name: \"x_{{ run_date }}\"",
            "  format: csv",
            "params: {}",
            "query: |",
            "  SELECT 1",
            "  FROM t",
            "schedule: \"0 2 * * *\"",
            "source: warehouse",
            "",
        ];
        assert_eq!(from_json(&v), expected.join("\n"));
    }
}
