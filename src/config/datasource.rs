//! The datasource specs of `config.yaml` (`datasources:`), as the datasource plugin
//! ([`crate::source::config`]) builds them and [`crate::source`] opens them, and
//! [`Secret`], the string type that keeps passwords out of logs and messages.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum DatasourceSpec {
    Sqlite {
        path: PathBuf,
        seed_sql: Option<PathBuf>,
    },
    Postgres(ServerDatasource),
    /// A MySQL-protocol server (MySQL, MariaDB, TiDB, AnalyticDB).
    Mysql(ServerDatasource),
    /// An Oracle Database, reached through its listener with a service name (the
    /// `oracle` cargo feature; Oracle Instant Client at run time).
    Oracle(OracleDatasource),
}

/// An Oracle datasource: the listener, the service and the account.
#[derive(Debug, Clone, PartialEq)]
pub struct OracleDatasource {
    /// The account ferry logs in as.
    pub user: String,
    /// Its password (percent-decoded from the URL).
    pub password: Secret,
    /// The listener's host name or address (IPv6 without brackets).
    pub host: String,
    /// The listener's port (default 1521).
    pub port: u16,
    /// The database service name (`FREEPDB1`, `orclpdb1.example.com`).
    pub service: String,
    /// The URL with the password replaced by `***`, for messages.
    pub shown_url: String,
    /// Most connections open at the same time (at least 1).
    pub max_connections: usize,
    pub connect_timeout: Duration,
}

/// A PostgreSQL or MySQL-protocol datasource: how to reach and log in to the server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerDatasource {
    /// The connection URL, password included.
    pub url: Secret,
    /// The URL with the password replaced by `***`, for messages.
    pub shown_url: String,
    /// Most connections open at the same time (at least 1).
    pub max_connections: usize,
    pub connect_timeout: Duration,
    /// How the connection is encrypted and the server's certificate checked.
    pub tls: DbTls,
    /// A CA certificate file (PEM) trusted in addition to the system's roots (only
    /// with `verify-ca` and `verify-full`).
    pub ca_file: Option<PathBuf>,
}

/// A PostgreSQL or MySQL datasource's `tls:` setting (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbTls {
    /// Never encrypt.
    Disable,
    /// Encrypt when the server offers TLS, without checking its certificate; plain
    /// otherwise (the default).
    Prefer,
    /// Always encrypt (fail when the server has no TLS), without checking the certificate.
    Require,
    /// Always encrypt; the certificate must be signed by a trusted CA (the name is not
    /// compared).
    VerifyCa,
    /// Always encrypt; the certificate must be signed by a trusted CA and name the host.
    VerifyFull,
}

impl DbTls {
    /// Every value, as written in YAML.
    pub const NAMES: [&'static str; 5] =
        ["disable", "prefer", "require", "verify-ca", "verify-full"];

    /// The value as written in YAML.
    pub fn name(self) -> &'static str {
        match self {
            DbTls::Disable => "disable",
            DbTls::Prefer => "prefer",
            DbTls::Require => "require",
            DbTls::VerifyCa => "verify-ca",
            DbTls::VerifyFull => "verify-full",
        }
    }

    /// Parses a YAML value (exact, lowercase).
    pub fn parse(s: &str) -> Option<DbTls> {
        Some(match s {
            "disable" => DbTls::Disable,
            "prefer" => DbTls::Prefer,
            "require" => DbTls::Require,
            "verify-ca" => DbTls::VerifyCa,
            "verify-full" => DbTls::VerifyFull,
            _ => return None,
        })
    }
}

impl DatasourceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            DatasourceSpec::Sqlite { .. } => "sqlite",
            DatasourceSpec::Postgres(_) => "postgres",
            DatasourceSpec::Mysql(_) => "mysql",
            DatasourceSpec::Oracle(_) => "oracle",
        }
    }

    /// Where it points, without a secret: the redacted URL of a server, or the path of a
    /// SQLite file.
    pub fn location(&self) -> String {
        match self {
            DatasourceSpec::Sqlite { path, .. } => path.display().to_string(),
            DatasourceSpec::Postgres(server) | DatasourceSpec::Mysql(server) => {
                server.shown_url.clone()
            }
            DatasourceSpec::Oracle(oracle) => oracle.shown_url.clone(),
        }
    }
}

/// A secret string (a URL with a password): `Debug` and `Display` print `***`, so it can
/// not reach a log or a message by accident. [`Secret::expose`] is the only way in.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}
