//! Secrets in URLs, redacted wherever a URL is shown: [`redact_url`] for one URL (the only
//! policy), [`redact_text`] for any text that may hold URLs (driver and HTTP errors, config
//! problems, log lines).
//!
//! What is secret in a URL:
//! - the password of `scheme://user:password@host` (and, for web URLs, a bare
//!   `https://TOKEN@host`); the last `@` before the path ends it, so an unencoded `@`,
//!   `/`, `?` or `#` in a password stays hidden;
//! - query values: every value (a webhook's token may have any name: DingTalk
//!   `access_token=`, WeCom `key=`), except in database URLs (`postgres`, `mysql`,
//!   `oracle`, `sqlite`…), whose options (`sslmode=`) stay readable unless their name says
//!   secret (`password`, `token`, `key`, `secret`, `sig`, `auth`, `credential`);
//! - in web URLs, path segments that look like tokens (16+ characters with a digit, or 24+)
//!   and every segment after `hook`, `hooks`, `webhook`, `webhooks` or `services` (Feishu
//!   `…/bot/v2/hook/ID`, Slack, Discord);
//! - a fragment.
//!
//! Everything is replaced by `***`, so what is left still says where the URL points. The
//! one exception is the placeholder `PASSWORD` of the forms ferry's hints show
//! (`expected postgres://USER:PASSWORD@HOST:PORT/DATABASE`).

/// `***`, what a secret is shown as.
const HIDDEN: &str = "***";

/// The password of the URL forms that messages show as examples; kept as it is.
const PLACEHOLDER: &str = "PASSWORD";

/// The URL with its secrets replaced by `***` (see the module docs); in text that is not
/// a URL, the values after a `?` are hidden.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://").filter(|(s, _)| is_scheme(s)) else {
        return redact_query(url);
    };
    let scheme_lower = scheme.to_ascii_lowercase();
    let web = matches!(scheme_lower.as_str(), "http" | "https" | "ws" | "wss");
    let database = matches!(
        scheme_lower.as_str(),
        "postgres" | "postgresql" | "mysql" | "mariadb" | "oracle" | "sqlite"
    );
    let (userinfo, rest) = split_userinfo(rest);
    let mut out = format!("{scheme}://");
    match userinfo.map(|u| u.split_once(':')) {
        // The placeholder of ferry's own hints (`postgres://USER:PASSWORD@HOST…`).
        Some(Some((user, PLACEHOLDER))) => out.push_str(&format!("{user}:{PLACEHOLDER}@")),
        Some(Some((user, _))) => out.push_str(&format!("{user}:{HIDDEN}@")),
        Some(None) if web => out.push_str(&format!("{HIDDEN}@")),
        Some(None) => out.push_str(&format!("{}@", userinfo.unwrap_or_default())),
        None => {}
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (host_path, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    match host_path.split_once('/') {
        Some((host, path)) if web => {
            out.push_str(host);
            out.push('/');
            out.push_str(&redact_path(path));
        }
        _ => out.push_str(host_path),
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(&redact_pairs(q, !database));
    }
    if fragment.is_some_and(|f| !f.is_empty()) {
        out.push('#');
        out.push_str(HIDDEN);
    }
    out
}

/// `text` with every URL in it redacted by [`redact_url`]: a URL starts with `scheme://`
/// and ends at white space, a quote, a bracket or the end; trailing punctuation is kept
/// out of it.
pub fn redact_text(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let head = &rest[..i];
        let start = head
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || "+.-".contains(*c))
            .last()
            .map_or(i, |(j, _)| j);
        // The scheme begins with a letter.
        let start = head[start..]
            .find(|c: char| c.is_ascii_alphabetic())
            .map_or(i, |k| start + k);
        let tail = &rest[i + 3..];
        let len = tail
            .find(|c: char| c.is_whitespace() || "\"'`<>".contains(c))
            .unwrap_or(tail.len());
        let mut end = i + 3 + len;
        while end > i + 3 && rest[..end].ends_with(['.', ',', ';', ':', ')', ']']) {
            end -= 1;
        }
        if start == i {
            // No scheme before `://`: not a URL.
            out.push_str(&rest[..i + 3]);
            rest = &rest[i + 3..];
            continue;
        }
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
}

/// The user part of the text after `scheme://`, and what follows its `@`.
fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if let Some(at) = authority.rfind('@') {
        return (Some(&rest[..at]), &rest[at + 1..]);
    }
    // `user:pa/ss@host`: a password with an unencoded `/`, `?` or `#`. A `host:port`
    // (or `[::1]:port`) has only digits after its colon.
    let host = authority.rsplit_once(']').map_or(authority, |(_, h)| h);
    if let Some((_, after)) = host.split_once(':')
        && !after.chars().all(|c| c.is_ascii_digit())
        && let Some(at) = rest.rfind('@')
    {
        return (Some(&rest[..at]), &rest[at + 1..]);
    }
    (None, rest)
}

/// A web URL's path with token-like segments hidden.
fn redact_path(path: &str) -> String {
    let mut after_hook = false;
    path.split('/')
        .map(|seg| {
            let hide = after_hook || token_like(seg);
            after_hook |= matches!(
                seg.to_ascii_lowercase().as_str(),
                "hook" | "hooks" | "webhook" | "webhooks" | "services"
            );
            if hide && !seg.is_empty() { HIDDEN } else { seg }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A path segment that looks like a token rather than a word.
fn token_like(seg: &str) -> bool {
    let tokenish = seg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.~=+%".contains(c));
    tokenish && (seg.len() >= 24 || (seg.len() >= 16 && seg.chars().any(|c| c.is_ascii_digit())))
}

/// `text` (not a URL) with every value of its query part (after `?`) redacted.
fn redact_query(text: &str) -> String {
    match text.split_once('?') {
        Some((head, query)) => format!("{head}?{}", redact_pairs(query, true)),
        None => text.to_string(),
    }
}

/// `k=v&k=v` with the values hidden: all of them, or those whose name says secret.
fn redact_pairs(query: &str, all: bool) -> String {
    query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !v.is_empty() && (all || secret_name(k)) => format!("{k}={HIDDEN}"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A query parameter whose name says it holds a secret.
fn secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "sig",
        "auth",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: fn(&str) -> String, cases: &[(&str, &str)]) {
        for (given, shown) in cases {
            assert_eq!(f(given), *shown, "{given}");
        }
    }

    #[test]
    fn database_urls_hide_the_password_only() {
        check(
            redact_url,
            &[
                ("mysql://u:pw@h:3306/db", "mysql://u:***@h:3306/db"),
                ("sqlite://x.db", "sqlite://x.db"),
                (
                    "postgres://u:p@ss@h/db?sslmode=disable&password=x",
                    "postgres://u:***@h/db?sslmode=disable&password=***",
                ),
                // Unencoded `/`, `?` and `#` in a password, and IPv6 hosts with a port.
                ("postgres://u:pa/s?s#w@h/db", "postgres://u:***@h/db"),
                (
                    "postgres://[::1]:5432/db?application_name=a@b",
                    "postgres://[::1]:5432/db?application_name=a@b",
                ),
                (
                    "oracle://u:p@[::1]:1521/FREEPDB1",
                    "oracle://u:***@[::1]:1521/FREEPDB1",
                ),
                // A user without a password is no secret on a database.
                ("postgres://ferry@h/db", "postgres://ferry@h/db"),
                ("smtp://user:PW@mail", "smtp://user:***@mail"),
                // Not a URL, or another scheme: every query value is hidden.
                ("h.example/x?id=tok", "h.example/x?id=***"),
                ("ftp://h/x?id=tok", "ftp://h/x?id=***"),
            ],
        );
    }

    #[test]
    fn web_urls_hide_tokens_in_user_query_path_and_fragment() {
        check(
            redact_url,
            &[
                (
                    "https://oapi.dingtalk.com/robot/send?access_token=abc123",
                    "https://oapi.dingtalk.com/robot/send?access_token=***",
                ),
                (
                    "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6",
                    "https://qyapi.weixin.qq.com/cgi-bin/webhook/***?key=***",
                ),
                (
                    "https://open.feishu.cn/open-apis/bot/v2/hook/fs-token-1",
                    "https://open.feishu.cn/open-apis/bot/v2/hook/***",
                ),
                (
                    "https://discord.com/api/webhooks/1234/AbC-dEf",
                    "https://discord.com/api/webhooks/***/***",
                ),
                (
                    "https://x.example/in/3f1c9a7e5b2d4c60/ok",
                    "https://x.example/in/***/ok",
                ),
                (
                    "https://TOKEN123@api.example/x#frag",
                    "https://***@api.example/x#***",
                ),
                (
                    "http://u:p@h:8080/hooks?id=7&empty=",
                    "http://u:***@h:8080/hooks?id=***&empty=",
                ),
                (
                    "https://files.example.com/exports",
                    "https://files.example.com/exports",
                ),
            ],
        );
    }

    #[test]
    fn urls_inside_text_are_redacted_and_the_rest_is_kept() {
        check(
            redact_text,
            &[
                (
                    "error sending request for url (https://h/robot/send?access_token=SECRET1): refused",
                    "error sending request for url (https://h/robot/send?access_token=***): refused",
                ),
                (
                    "expected a host name, got the URL `smtp://u:SECRET2@h` (put the port in `port`)",
                    "expected a host name, got the URL `smtp://u:***@h` (put the port in `port`)",
                ),
                (
                    "a: postgres://u:SECRET3@h/db, b: \"mysql://v:SECRET4@h\".",
                    "a: postgres://u:***@h/db, b: \"mysql://v:***@h\".",
                ),
                // The placeholder of ferry's own hints stays.
                (
                    "expected `mysql://USER:PASSWORD@HOST:PORT/DATABASE`",
                    "expected `mysql://USER:PASSWORD@HOST:PORT/DATABASE`",
                ),
                ("no url here: a://", "no url here: a://"),
                ("://x", "://x"),
            ],
        );
        // Already redacted text stays the same.
        let once = redact_text("postgres://u:p@h/db and https://h/x?k=v#f");
        assert_eq!(redact_text(&once), once);
    }
}
