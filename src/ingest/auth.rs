//! `Authentication-Results` (RFC 8601): what a receiving mail server verified about a
//! message. Only the topmost such header whose authserv-id is exactly ours counts: a
//! header with another id, or one below ours (added before the mail reached our server,
//! so written by anyone), is ignored. Parsed by the grammar (comments removed, `;`
//! separated `method=result` pairs), never searched as text.

/// One parsed `Authentication-Results` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResults {
    /// The authserv-id (compared case-insensitively).
    pub authserv_id: String,
    /// `(method, result)`, both lower case, in order (`("dmarc", "pass")`).
    pub results: Vec<(String, String)>,
}

impl AuthResults {
    /// The result of `method` (the first, if the header has several).
    pub fn result(&self, method: &str) -> Option<&str> {
        self.results
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, r)| r.as_str())
    }
}

/// What our own mail server says about the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// Our server's topmost header says `dmarc=pass`.
    Pass,
    /// Not authenticated, and why (for the record, never for the sender).
    Fail(String),
}

/// The verdict of the `Authentication-Results` headers (`values`, top first) for our
/// `authserv_id`.
pub fn authenticate<'a>(
    values: impl IntoIterator<Item = &'a str>,
    authserv_id: &str,
) -> Authentication {
    let mut others = 0;
    for v in values {
        match parse(v) {
            Some(ar) if ar.authserv_id.eq_ignore_ascii_case(authserv_id) => {
                return match ar.result("dmarc") {
                    Some("pass") => Authentication::Pass,
                    Some(r) => {
                        Authentication::Fail(format!("our server `{authserv_id}` says dmarc={r}"))
                    }
                    None => Authentication::Fail(format!(
                        "our server `{authserv_id}` gives no DMARC result"
                    )),
                };
            }
            _ => others += 1,
        }
    }
    Authentication::Fail(if others == 0 {
        format!("no Authentication-Results header from our server `{authserv_id}`")
    } else {
        format!(
            "no Authentication-Results header from our server `{authserv_id}` ({others} from others, ignored)"
        )
    })
}

/// Parses one header value; `None` when it has no authserv-id.
pub fn parse(value: &str) -> Option<AuthResults> {
    let text = strip_comments(value);
    let mut parts = split_semicolons(&text).into_iter();
    let head = parts.next()?;
    // `authserv-id [version]`: the id is the first word (or quoted string).
    let authserv_id = unquote(head.split_whitespace().next()?);
    if authserv_id.is_empty() {
        return None;
    }
    let mut results = Vec::new();
    for p in parts {
        let p = p.trim();
        let Some((method, rest)) = p.split_once('=') else {
            continue; // `none`, or something unreadable: no result
        };
        // `method[/version]`
        let method = method
            .split('/')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let result = rest
            .trim_start()
            .split(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if !method.is_empty() && !result.is_empty() {
            results.push((method, result));
        }
    }
    Some(AuthResults {
        authserv_id,
        results,
    })
}

/// The value with `( … )` comments (nested, with `\` escapes) replaced by a space,
/// leaving quoted strings alone; folded lines become one.
fn strip_comments(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if depth > 0 || quoted => {
                let next = chars.next();
                if depth == 0 {
                    out.push(c);
                    if let Some(n) = next {
                        out.push(n);
                    }
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    out.push(' ');
                }
            }
            '\r' | '\n' => out.push(' '),
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

/// Splits at `;` outside quoted strings.
fn split_semicolons(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in v.chars() {
        let cur = out.last_mut().expect("never empty");
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => out.push(String::new()),
            _ => cur.push(c),
        }
    }
    out
}

fn unquote(s: &str) -> String {
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rfc_examples() {
        let ar = parse(
            "example.com;\r\n  spf=pass smtp.mailfrom=example.net (sender is\r\n  authorized); dkim=pass (good signature) header.d=example.net; dmarc=pass",
        )
        .unwrap();
        assert_eq!(ar.authserv_id, "example.com");
        assert_eq!(ar.result("spf"), Some("pass"));
        assert_eq!(ar.result("dkim"), Some("pass"));
        assert_eq!(ar.result("dmarc"), Some("pass"));
        let none = parse("example.org 1; none").unwrap();
        assert_eq!(none.authserv_id, "example.org");
        assert!(none.results.is_empty());
        let versioned = parse("mx.example.com; dkim/1=fail (bad sig) header.i=@x.test").unwrap();
        assert_eq!(versioned.result("dkim"), Some("fail"));
    }

    #[test]
    fn comments_and_quotes_cannot_smuggle_a_result() {
        // A comment that reads like a result is a comment.
        let ar = parse("mx.example.com; dmarc=fail (dmarc=pass) header.from=x.test").unwrap();
        assert_eq!(ar.result("dmarc"), Some("fail"));
        let ar = parse("mx.example.com; dkim=pass reason=\"x; dmarc=pass\"").unwrap();
        assert_eq!(ar.result("dmarc"), None);
        // A text search would find `dmarc=pass` in each of these.
        let ar = parse("mx.example.com (dmarc=pass); dmarc=none").unwrap();
        assert_eq!(ar.result("dmarc"), Some("none"));
    }

    #[test]
    fn only_the_topmost_header_of_our_server_counts() {
        let ours = "mx.corp.example";
        let pass = "mx.corp.example; dmarc=pass header.from=corp.example";
        let fail = "mx.corp.example; dmarc=fail header.from=corp.example";
        assert_eq!(authenticate([pass], ours), Authentication::Pass);
        assert!(matches!(
            authenticate([fail], ours),
            Authentication::Fail(_)
        ));
        // A forged pass below our real fail.
        assert!(matches!(
            authenticate([fail, pass], ours),
            Authentication::Fail(_)
        ));
        // Other servers' results are ignored, whatever they say.
        assert!(matches!(
            authenticate(["evil.test; dmarc=pass"], ours),
            Authentication::Fail(m) if m.contains("1 from others")
        ));
        assert!(matches!(
            authenticate(["mx.corp.example.evil.test; dmarc=pass"], ours),
            Authentication::Fail(_)
        ));
        assert_eq!(
            authenticate(
                ["evil.test; dmarc=fail", "MX.CORP.EXAMPLE; DMARC=PASS"],
                ours
            ),
            Authentication::Pass
        );
        assert!(matches!(authenticate([], ours), Authentication::Fail(_)));
        assert!(matches!(
            authenticate(["mx.corp.example; spf=pass"], ours),
            Authentication::Fail(m) if m.contains("no DMARC")
        ));
    }
}
