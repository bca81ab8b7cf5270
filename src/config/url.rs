//! Connection URLs: the parts of an Oracle URL (with its percent-decoding) and the
//! redaction of passwords for messages.

/// The parts of an `oracle://USER:PASSWORD@HOST:PORT/SERVICE_NAME` URL.
#[derive(Debug, PartialEq, Eq)]
pub struct OracleUrl {
    /// Percent-decoded.
    pub user: String,
    /// Percent-decoded.
    pub password: String,
    /// A name or an address; an IPv6 address without its brackets.
    pub host: String,
    /// 1521 when the URL has none.
    pub port: u16,
    pub service: String,
}

/// Splits an Oracle URL into what ferry connects with (the listener's address and the
/// service name, as in an Easy Connect string). The message of an error never contains
/// the password.
pub fn parse_oracle_url(url: &str) -> Result<OracleUrl, String> {
    const FORM: &str = "expected `oracle://USER:PASSWORD@HOST:PORT/SERVICE_NAME`";
    let rest = url.strip_prefix("oracle://").ok_or(FORM)?;
    if rest.contains(['?', '#']) {
        return Err(format!("{FORM} without options"));
    }
    // The last `@` ends the user part, so an unencoded `@` in a password still works.
    let (userinfo, target) = rest.rsplit_once('@').ok_or(FORM)?;
    let (user, password) = userinfo.split_once(':').ok_or(FORM)?;
    let user = percent_decode(user).ok_or("the user has an invalid %-escape")?;
    let password = percent_decode(password).ok_or("the password has an invalid %-escape")?;
    if user.is_empty() || password.is_empty() {
        return Err(format!(
            "{FORM}: the user and the password must not be empty"
        ));
    }
    let (address, service) = target
        .split_once('/')
        .ok_or_else(|| format!("{FORM}: the service name (after the `/`) is missing"))?;
    let service_ok = |ch: char| ch.is_ascii_alphanumeric() || "._-$#".contains(ch);
    if service.is_empty() || !service.chars().all(service_ok) {
        return Err(format!(
            "{FORM}: the service name must be letters, digits and `._-$#`"
        ));
    }
    let (host, port) = match address.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("an IPv6 host lacks its `]`")?;
            (host, after.strip_prefix(':'))
        }
        None => match address.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (address, None),
        },
    };
    let host_ok = |ch: char| ch.is_ascii_alphanumeric() || ".-_:".contains(ch);
    if host.is_empty() || !host.chars().all(host_ok) {
        return Err(format!("{FORM}: the host must be a name or an address"));
    }
    let port = match port {
        None => 1521,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("the port `{p}` is not a number from 1 to 65535")),
        },
    };
    Ok(OracleUrl {
        user,
        password,
        host: host.to_string(),
        port,
        service: service.to_string(),
    })
}

/// Decodes `%XX` escapes (UTF-8); `None` for a broken escape or invalid UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

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

    #[test]
    fn oracle_urls_split_into_listener_and_service() {
        let url = |user: &str, password: &str, host: &str, port: u16, service: &str| OracleUrl {
            user: user.into(),
            password: password.into(),
            host: host.into(),
            port,
            service: service.into(),
        };
        assert_eq!(
            parse_oracle_url("oracle://scott:tiger@db.example.com:1522/ORCLPDB1"),
            Ok(url("scott", "tiger", "db.example.com", 1522, "ORCLPDB1"))
        );
        assert_eq!(
            parse_oracle_url("oracle://ferry:p%40ss%3Aw%2Fd@10.0.0.5/sales.example.com"),
            Ok(url(
                "ferry",
                "p@ss:w/d",
                "10.0.0.5",
                1521,
                "sales.example.com"
            ))
        );
        // The last `@` ends the password, as in redact_url.
        assert_eq!(
            parse_oracle_url("oracle://u:p@ss@[::1]:1521/FREEPDB1"),
            Ok(url("u", "p@ss", "::1", 1521, "FREEPDB1"))
        );
        assert_eq!(
            redact_url("oracle://u:p@ss@[::1]:1521/FREEPDB1"),
            "oracle://u:***@[::1]:1521/FREEPDB1"
        );
        for (bad, why) in [
            (
                "oracle:/u:s3cret@h/s",
                "expected `oracle://USER:PASSWORD@HOST:PORT/SERVICE_NAME`",
            ),
            ("oracle://u@h/s", "expected `oracle://USER:PASSWORD"),
            ("oracle://u:@h/s", "must not be empty"),
            (
                "oracle://u:s3cret@h:1521",
                "the service name (after the `/`) is missing",
            ),
            ("oracle://u:s3cret@h:1521/", "the service name must be"),
            (
                "oracle://u:s3cret@h/(DESCRIPTION=(ADDRESS=(HOST=x)))",
                "the service name must be",
            ),
            (
                "oracle://u:s3cret@h:0/s",
                "the port `0` is not a number from 1 to 65535",
            ),
            ("oracle://u:s3cret@h:x/s", "the port `x`"),
            ("oracle://u:s3cret@/s", "the host must be"),
            ("oracle://u:s3cret@h(x)/s", "the host must be"),
            ("oracle://u:s3cret@[::1/s", "lacks its `]`"),
            ("oracle://u:s3cret@h/s?ssl=true", "without options"),
            (
                "oracle://u:s3cret%zz@h/s",
                "the password has an invalid %-escape",
            ),
        ] {
            let e = parse_oracle_url(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("s3cret"), "{bad}: {e}");
        }
    }
}
