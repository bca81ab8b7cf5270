//! Datasource config checks: each `datasources:` entry of `config.yaml` becomes a
//! [`DatasourceSpec`] ([`check`], called by the config loader through
//! [`crate::config::Checks`]): the URL of its type, TLS settings, URLs that set TLS
//! themselves, connection limits, the Oracle URL's parts.

use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use crate::config::raw::RawDatasource;
use crate::config::{
    Checker, DatasourceSpec, DbTls, OracleDatasource, Secret, ServerDatasource, parse_duration,
    problem::hint, redact_url, resolve,
};

/// What `ferry validate` says about a `type: oracle` datasource when this binary was built
/// without the `oracle` cargo feature.
pub const ORACLE_NOT_BUILT: &str = "this ferry binary was built without Oracle support; build one with it: `cargo build --release --features oracle` (needs a C compiler; Oracle Instant Client is needed only to run it, see docs/configuration.md)";

/// A PostgreSQL or MySQL datasource's `tls` (default `prefer`) and `ca_file` (resolved,
/// readable, and only with a mode that checks the certificate).
fn db_tls(
    c: &mut Checker,
    base_dir: &Path,
    field: &str,
    tls: &Option<Spanned<String>>,
    ca_file: &Option<Spanned<String>>,
) -> (DbTls, Option<PathBuf>) {
    let mode = match tls {
        None => DbTls::Prefer,
        Some(t) => {
            let v = t.value.trim();
            match DbTls::parse(v) {
                Some(m) => m,
                None => {
                    let lower = v.to_ascii_lowercase().replace('_', "-");
                    let extra = match DbTls::parse(&lower) {
                        Some(m) => format!(" (did you mean `{}`?)", m.name()),
                        None => match lower.as_str() {
                            "true" | "on" | "yes" | "required" => {
                                " (did you mean `require` or `verify-full`?)".to_string()
                            }
                            "false" | "off" | "no" | "none" | "disabled" => {
                                " (did you mean `disable`?)".to_string()
                            }
                            "verify-identity" => " (did you mean `verify-full`?)".to_string(),
                            _ => hint(&lower, DbTls::NAMES),
                        },
                    };
                    c.at(
                        t,
                        format!("{field}.tls"),
                        format!(
                            "unknown value `{v}` (one of: {}){extra}",
                            DbTls::NAMES.join(", ")
                        ),
                    );
                    DbTls::Prefer
                }
            }
        }
    };
    let ca_file = ca_file.as_ref().map(|f| {
        let p = resolve(base_dir, &c.env_req(f, &format!("{field}.ca_file")));
        if !matches!(mode, DbTls::VerifyCa | DbTls::VerifyFull) {
            c.at(
                f,
                format!("{field}.ca_file"),
                format!(
                    "`ca_file` needs `tls: verify-ca` or `verify-full` (with `tls: {}` the \
                     server's certificate is not checked, so the CA would never be used)",
                    mode.name()
                ),
            );
        } else if let Err(e) = crate::tls::read_ca_file(&p) {
            c.at(f, format!("{field}.ca_file"), e);
        }
        p
    });
    (mode, ca_file)
}

/// A PostgreSQL or MySQL url that sets TLS itself (`sslmode=`, `require_ssl=`, ...): the
/// message refusing it, with the `tls:` to write instead. TLS is set in one place only, so
/// that `ferry validate` can check it and a url taken from the environment cannot weaken it.
fn url_tls_conflict(url: &str, mysql: bool) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    let mut keys = Vec::new();
    let mut mode = "verify-full";
    let mut ca = false;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let k = key.to_ascii_lowercase();
        let v = value.to_ascii_lowercase();
        let is_tls = k.starts_with("ssl")
            || (mysql
                && matches!(
                    k.as_str(),
                    "require_ssl"
                        | "verify_ca"
                        | "verify_identity"
                        | "built_in_roots"
                        | "tls_hostname_override"
                ));
        if !is_tls {
            continue;
        }
        keys.push(format!("`{key}`"));
        ca |= k.contains("rootcert") || k.ends_with("ca");
        if matches!(k.as_str(), "sslmode" | "ssl-mode" | "ssl_mode") {
            mode = match v.replace('_', "-").as_str() {
                "disable" | "disabled" => "disable",
                "prefer" | "preferred" => "prefer",
                "require" | "required" => "require",
                "verify-ca" if !mysql => "verify-ca",
                _ => "verify-full",
            };
        }
    }
    if keys.is_empty() {
        return None;
    }
    let ca = if ca { " and `ca_file: PATH`" } else { "" };
    let keys = keys.join(", ");
    Some(format!(
        "the url sets TLS itself ({keys}); ferry takes TLS only from the datasource's `tls` \
         and `ca_file`: remove {keys} from the url and write `tls: {mode}`{ca} on the datasource"
    ))
}

/// A server datasource's `max_connections` (default 4, at least 1) and `connect_timeout`
/// (default 10 s, more than 0); a bad value is a problem and the default is used.
fn connection_limits(
    c: &mut Checker,
    field: &str,
    max_connections: &Option<Spanned<usize>>,
    connect_timeout: &Option<Spanned<String>>,
) -> (usize, std::time::Duration) {
    let default_timeout = std::time::Duration::from_secs(10);
    let max_connections = match max_connections {
        Some(m) if m.value == 0 => {
            c.at(m, format!("{field}.max_connections"), "must be at least 1");
            1
        }
        Some(m) => m.value,
        None => 4,
    };
    let connect_timeout = match connect_timeout {
        Some(t) => match parse_duration(&t.value) {
            Ok(d) if d.is_zero() => {
                c.at(t, format!("{field}.connect_timeout"), "must be more than 0");
                default_timeout
            }
            Ok(d) => d,
            Err(e) => {
                c.at(t, format!("{field}.connect_timeout"), e);
                default_timeout
            }
        },
        None => default_timeout,
    };
    (max_connections, connect_timeout)
}

impl DbTls {
    /// How much of the certificate is checked when the connection is encrypted.
    pub fn check(self) -> crate::tls::Check {
        match self {
            DbTls::VerifyFull => crate::tls::Check::Full,
            DbTls::VerifyCa => crate::tls::Check::ChainOnly,
            DbTls::Disable | DbTls::Prefer | DbTls::Require => crate::tls::Check::Nothing,
        }
    }
}

/// One datasource's connection settings, by type (`field` is `datasources.NAME`); `None`
/// after reporting its problems.
pub fn check(
    c: &mut Checker,
    base_dir: &Path,
    field: &str,
    ds: &Spanned<RawDatasource>,
) -> Option<DatasourceSpec> {
    match &ds.value {
        RawDatasource::Sqlite { url, seed_sql, .. } => {
            let u = c.env_req(url, &format!("{field}.url"));
            let Some(p) = u.strip_prefix("sqlite://").filter(|p| !p.is_empty()) else {
                if !u.is_empty() {
                    c.at(
                        url,
                        format!("{field}.url"),
                        format!("expected `sqlite://PATH`, got `{}`", redact_url(&u)),
                    );
                }
                return None;
            };
            let seed = seed_sql
                .as_ref()
                .map(|s| resolve(base_dir, &c.env_req(s, &format!("{field}.seed_sql"))));
            if let (Some(seed), Some(span)) = (&seed, seed_sql) {
                match crate::fsread::check_file(seed, crate::fsread::Kind::SeedSql) {
                    Err(e) if e.is_not_found() => c.at(
                        span,
                        format!("{field}.seed_sql"),
                        format!("file not found: {}", seed.display()),
                    ),
                    Err(e) => c.at(span, format!("{field}.seed_sql"), e.to_string()),
                    Ok(()) => {}
                }
            }
            Some(DatasourceSpec::Sqlite {
                path: resolve(base_dir, p),
                seed_sql: seed,
            })
        }
        RawDatasource::Postgres {
            url,
            password_file,
            max_connections,
            connect_timeout,
            tls,
            ca_file,
            ..
        }
        | RawDatasource::Mysql {
            url,
            password_file,
            max_connections,
            connect_timeout,
            tls,
            ca_file,
            ..
        } => {
            let tls_span = tls.as_ref();
            let mysql = matches!(ds.value, RawDatasource::Mysql { .. });
            let u = server_url(c, field, url, password_file.as_ref());
            if u.is_empty() {
                return None;
            }
            let shown_url = redact_url(&u);
            let scheme_ok = if mysql {
                u.starts_with("mysql://")
            } else {
                u.starts_with("postgres://") || u.starts_with("postgresql://")
            };
            if !scheme_ok {
                let scheme = if mysql { "mysql" } else { "postgres" };
                c.at(
                    url,
                    format!("{field}.url"),
                    format!(
                        "expected `{scheme}://USER:PASSWORD@HOST:PORT/DATABASE`, got `{shown_url}`"
                    ),
                );
                return None;
            }
            let (tls, ca_file) = db_tls(c, base_dir, field, tls, ca_file);
            if mysql
                && tls == DbTls::VerifyCa
                && let Some(t) = tls_span
            {
                c.at(
                    t,
                    format!("{field}.tls"),
                    "`verify-ca` is not available for MySQL yet (mysql_async 0.37.1 cannot \
                     skip only the host-name check with rustls, mysql_async#404): use \
                     `verify-full` with a host name the certificate lists, or `require`",
                );
            }
            if let Some(msg) = url_tls_conflict(&u, mysql) {
                c.at(url, format!("{field}.url"), msg);
                return None;
            }
            // The parsers' messages never repeat the URL, so they cannot leak the password.
            let parsed = if mysql {
                mysql_async::Opts::from_url(&u).map(|_| ()).map_err(|e| {
                    format!(
                        "invalid MySQL url `{shown_url}`: {e}{}",
                        std::error::Error::source(&e)
                            .map(|c| format!(": {c}"))
                            .unwrap_or_default()
                    )
                })
            } else {
                u.parse::<tokio_postgres::Config>()
                    .map(|_| ())
                    .map_err(|e| {
                        format!(
                            "invalid PostgreSQL url `{shown_url}`: {e}{}",
                            std::error::Error::source(&e)
                                .map(|c| format!(": {c}"))
                                .unwrap_or_default()
                        )
                    })
            };
            if let Err(msg) = parsed {
                c.at(url, format!("{field}.url"), msg);
                return None;
            }
            let (max_connections, connect_timeout) =
                connection_limits(c, field, max_connections, connect_timeout);
            let server = ServerDatasource {
                url: Secret::new(u),
                shown_url,
                max_connections,
                connect_timeout,
                tls,
                ca_file,
            };
            Some(if mysql {
                DatasourceSpec::Mysql(server)
            } else {
                DatasourceSpec::Postgres(server)
            })
        }
        RawDatasource::Oracle {
            url,
            password_file,
            max_connections,
            connect_timeout,
            ..
        } => {
            if !cfg!(feature = "oracle") {
                c.at(ds, format!("{field}.type"), ORACLE_NOT_BUILT);
                return None;
            }
            let u = server_url(c, field, url, password_file.as_ref());
            if u.is_empty() {
                return None;
            }
            let shown_url = redact_url(&u);
            let parts = match parse_oracle_url(&u) {
                Ok(p) => p,
                Err(msg) => {
                    c.at(
                        url,
                        format!("{field}.url"),
                        format!("invalid Oracle url `{shown_url}`: {msg}"),
                    );
                    return None;
                }
            };
            let (max_connections, connect_timeout) =
                connection_limits(c, field, max_connections, connect_timeout);
            Some(DatasourceSpec::Oracle(OracleDatasource {
                user: parts.user,
                password: Secret::new(parts.password),
                host: parts.host,
                port: parts.port,
                service: parts.service,
                shown_url,
                max_connections,
                connect_timeout,
            }))
        }
    }
}

/// A server datasource's URL (`${VAR}` and `enc:v1:` opened), with the password of
/// `password_file` put in; empty when unusable (a problem says why). A password written in
/// the URL itself is noted for `ferry validate`'s permission check.
fn server_url(
    c: &mut Checker,
    field: &str,
    url: &Spanned<String>,
    password_file: Option<&Spanned<String>>,
) -> String {
    let u = c.env_req(url, &format!("{field}.url"));
    if redact_url(&u) != u {
        c.note_if_plain(url, &format!("{field}.url"));
    }
    let Some(pf) = password_file else {
        return u;
    };
    let Some(password) = c.secret(None, Some(pf), &format!("{field}.password")) else {
        return String::new();
    };
    match with_password(&u, &password) {
        Ok(u) => u,
        Err(e) => {
            c.at(pf, format!("{field}.password_file"), e);
            String::new()
        }
    }
}

/// `url` with `password` (percent-encoded) after its user name.
fn with_password(url: &str, password: &str) -> Result<String, String> {
    let start = url.find("://").map(|i| i + 3).unwrap_or(0);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map(|i| start + i)
        .unwrap_or(url.len());
    let Some(at) = url[start..end].rfind('@').map(|i| start + i) else {
        return Err(
            "`password_file` needs the user name in `url` (`SCHEME://USER@HOST:PORT/DATABASE`)"
                .into(),
        );
    };
    if url[start..at].contains(':') {
        return Err(
            "`url` has a password already: give it in `url` or in `password_file`, not both".into(),
        );
    }
    let encoded =
        percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC);
    Ok(format!("{}:{encoded}{}", &url[..at], &url[at..]))
}

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

/// Decodes `%XX` escapes (UTF-8); `None` for a broken escape or invalid UTF-8. (The
/// `percent-encoding` crate passes a broken escape such as `%zz` through unchanged, which
/// would let a mistyped password reach the server; hence this strict decoder.)
fn percent_decode(s: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "oracle")]
    use crate::config::DatasourceSpec;
    use crate::config::load_config;
    use crate::plugins::CHECKS;

    fn oracle_config(dir: &Path) -> PathBuf {
        let path = dir.join("config.yaml");
        std::fs::write(
            &path,
            "datasources:\n  ora:\n    type: oracle\n    url: oracle://ferry:s3cret@127.0.0.1:1521/FREEPDB1\n    max_connections: 2\n",
        )
        .unwrap();
        path
    }

    #[cfg(feature = "oracle")]
    #[test]
    fn an_oracle_datasource_becomes_its_spec() {
        let dir = tempfile::tempdir().unwrap();
        let config = load_config(&oracle_config(dir.path()), &CHECKS).unwrap();
        match &config.datasources["ora"] {
            DatasourceSpec::Oracle(ora) => {
                assert_eq!(
                    (
                        ora.user.as_str(),
                        ora.password.expose(),
                        ora.host.as_str(),
                        ora.port,
                        ora.service.as_str()
                    ),
                    ("ferry", "s3cret", "127.0.0.1", 1521, "FREEPDB1")
                );
                assert_eq!(ora.shown_url, "oracle://ferry:***@127.0.0.1:1521/FREEPDB1");
                assert_eq!(ora.max_connections, 2);
                assert_eq!(ora.connect_timeout, std::time::Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            config.sql_gate("ora"),
            Some((
                crate::sqlgate::Dialect::Oracle,
                crate::sqlgate::Mode::Standard
            ))
        );
    }

    #[cfg(not(feature = "oracle"))]
    #[test]
    fn without_the_feature_an_oracle_datasource_says_how_to_build_ferry() {
        let dir = tempfile::tempdir().unwrap();
        let path = oracle_config(dir.path());
        let problems = load_config(&path, &CHECKS).unwrap_err();
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            lines,
            vec![format!(
                "{}:3:11: datasources.ora.type: {ORACLE_NOT_BUILT}",
                path.display()
            )]
        );
    }

    #[test]
    fn the_not_built_message_says_how_to_build_with_oracle() {
        assert!(ORACLE_NOT_BUILT.starts_with("this ferry binary was built without Oracle support"));
        assert!(ORACLE_NOT_BUILT.contains("`cargo build --release --features oracle`"));
    }

    #[test]
    fn a_password_file_goes_after_the_user_name() {
        assert_eq!(
            with_password("postgres://app@db:5432/x?sslmode=disable", "p@ss:w/rd").unwrap(),
            "postgres://app:p%40ss%3Aw%2Frd@db:5432/x?sslmode=disable"
        );
        assert!(
            with_password("mysql://app:pw@db/x", "p")
                .unwrap_err()
                .contains("not both")
        );
        assert!(
            with_password("mysql://db/x", "p")
                .unwrap_err()
                .contains("needs the user name")
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
