//! Datasource checks: TLS settings, URLs that set TLS themselves, connection limits.

use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::check::Checker;
use super::{DbTls, parse_duration, problem::hint, resolve};

/// What `ferry validate` says about a `type: oracle` datasource when this binary was built
/// without the `oracle` cargo feature.
pub const ORACLE_NOT_BUILT: &str = "this ferry binary was built without Oracle support; build one with it: `cargo build --release --features oracle` (needs a C compiler; Oracle Instant Client is needed only to run it, see docs/configuration.md)";

/// A PostgreSQL or MySQL datasource's `tls` (default `prefer`) and `ca_file` (resolved,
/// readable, and only with a mode that checks the certificate).
pub(crate) fn db_tls(
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
pub(crate) fn url_tls_conflict(url: &str, mysql: bool) -> Option<String> {
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
pub(crate) fn connection_limits(
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

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "oracle")]
    use crate::config::DatasourceSpec;
    use crate::config::load_config;

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
        let config = load_config(&oracle_config(dir.path())).unwrap();
        match &config.datasources["ora"] {
            DatasourceSpec::Oracle {
                user,
                password,
                host,
                port,
                service,
                shown_url,
                max_connections,
                connect_timeout,
            } => {
                assert_eq!(
                    (
                        user.as_str(),
                        password.expose(),
                        host.as_str(),
                        *port,
                        service.as_str()
                    ),
                    ("ferry", "s3cret", "127.0.0.1", 1521, "FREEPDB1")
                );
                assert_eq!(shown_url, "oracle://ferry:***@127.0.0.1:1521/FREEPDB1");
                assert_eq!(*max_connections, 2);
                assert_eq!(*connect_timeout, std::time::Duration::from_secs(10));
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
        let problems = load_config(&path).unwrap_err();
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
}
