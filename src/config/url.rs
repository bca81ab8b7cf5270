//! Connection URLs in messages: the password of a URL is redacted.

/// Hides the password of `scheme://user:password@host` URLs (the last `@` ends the user
/// part, so an unencoded `@` in a password stays hidden) and of a `password=` option.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.rsplit_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        out = format!("{scheme}://{user}:***@{host}");
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let parts: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", parts.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("mysql://u:pw@h:3306/db"),
            "mysql://u:***@h:3306/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db?sslmode=disable&password=x"),
            "postgres://u:***@h/db?sslmode=disable&password=***"
        );
    }
}
