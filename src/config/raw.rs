//! Raw configuration types: exactly what `config.yaml` and `tasks/*.yaml` may contain.
//!
//! These types only describe the shape of the files. Unknown fields and duplicate keys are
//! errors (serde-saphyr rejects duplicates; `deny_unknown_fields` rejects typos). Fields
//! whose meaning is checked later (cron syntax, zone names, references to datasources and
//! channels, templates) are wrapped in [`Spanned`] so that the validator can point at their
//! line and column. Every field is documented in `docs/configuration.md`.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;

/// `config.yaml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Default IANA time zone of tasks (default `UTC`).
    #[schemars(with = "Option<String>")]
    pub timezone: Option<Spanned<String>>,
    /// `en` (default) or `zh`: the language of the built-in message templates, for tasks
    /// that do not set their own.
    #[schemars(with = "Option<String>")]
    pub language: Option<Spanned<String>>,
    /// Folder of task files, relative to config.yaml (default `tasks`).
    #[schemars(with = "Option<String>")]
    pub tasks_dir: Option<Spanned<String>>,
    /// Folder where result files are published (default `exports`).
    #[schemars(with = "Option<String>")]
    pub output_dir: Option<Spanned<String>>,
    /// Folder of message templates (default `templates`).
    #[schemars(with = "Option<String>")]
    pub templates_dir: Option<Spanned<String>>,
    /// Name of this node in run history (default: the host name).
    #[schemars(with = "Option<String>")]
    pub node_name: Option<Spanned<String>>,
    /// Where run history lives.
    pub store: Option<RawStore>,
    /// Export defaults that tasks inherit.
    pub export: Option<RawExport>,
    /// How `ferry serve` schedules.
    pub scheduler: Option<RawScheduler>,
    /// Signed download links served by `ferry serve` (off when absent).
    #[schemars(with = "Option<RawLinks>")]
    pub links: Option<Spanned<RawLinks>>,
    /// The HTTP API of `ferry serve`, with users, roles and tokens (off when absent;
    /// docs/api.md).
    #[schemars(with = "Option<RawHttp>")]
    pub http: Option<Spanned<RawHttp>>,
    /// Failure alerts to each task's `owners` (off when absent).
    #[schemars(with = "Option<RawAlerts>")]
    pub alerts: Option<Spanned<RawAlerts>>,
    /// Named data sources.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawDatasource>")]
    pub datasources: BTreeMap<String, Spanned<RawDatasource>>,
    /// Named notification channels: their type here, their fields read by type.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawChannel>")]
    pub channels: BTreeMap<String, Spanned<RawChannelType>>,
    /// Query by email: requests read from an IMAP folder (off when absent; docs/ingest.md).
    #[schemars(with = "Option<RawIngest>")]
    pub ingest: Option<Spanned<RawIngest>>,
    /// The log of `ferry serve`: level, filters, format, an optional rotated file.
    #[schemars(with = "Option<RawLogging>")]
    pub logging: Option<Spanned<RawLogging>>,
    /// How long result files and run history are kept (forever when absent).
    #[schemars(with = "Option<RawRetention>")]
    pub retention: Option<Spanned<RawRetention>>,
}

/// `retention:` in config.yaml (every task) or in a task file (that task, field by field).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Remove a run's result files this many days after the run.
    #[schemars(with = "Option<u32>")]
    pub files_days: Option<Spanned<u32>>,
    /// Keep the result files of the task's last this many runs (with `files_days`: kept
    /// when either keeps them).
    #[schemars(with = "Option<u32>")]
    pub files_runs: Option<Spanned<u32>>,
    /// Delete runs (with their deliveries, links and downloads, and any files left) this
    /// many days after the run.
    #[schemars(with = "Option<u32>")]
    pub history_days: Option<Spanned<u32>>,
}

/// `logging:`: what `ferry serve` logs and where.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    #[schemars(with = "Option<String>")]
    pub level: Option<Spanned<String>>,
    /// Levels for parts of ferry or its libraries, `TARGET=LEVEL` (`ferry::store=debug`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub filters: Vec<Spanned<String>>,
    /// `text` (default) or `json` (one JSON object per line).
    #[schemars(with = "Option<String>")]
    pub format: Option<Spanned<String>>,
    /// Write the log to this file instead of standard error, rotated.
    #[schemars(with = "Option<RawLogFile>")]
    pub file: Option<Spanned<RawLogFile>>,
}

/// `logging.file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLogFile {
    /// The log file, relative to config.yaml.
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// Rotate every day at this local time, `HH:MM` (in `timezone` of config.yaml).
    #[schemars(with = "Option<String>")]
    pub rotate_at: Option<Spanned<String>>,
    /// Rotate when the file grows past this many bytes.
    #[schemars(with = "Option<u64>")]
    pub max_bytes: Option<Spanned<u64>>,
    /// How many rotated files to keep (default 7).
    #[schemars(with = "Option<usize>")]
    pub keep: Option<Spanned<usize>>,
    /// gzip rotated files (default true).
    pub compress: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `sqlite://PATH` (default `sqlite://data/ferry.db`).
    #[schemars(with = "String")]
    pub url: Spanned<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    /// Rows per chunk handed from the source to the writer (default 1000).
    pub chunk_rows: Option<usize>,
    /// Default run timeout, e.g. `30m` (default `1h`).
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// Sub-folder of `output_dir` for each run's files, a template (default `{{ task }}`).
    #[schemars(with = "Option<String>")]
    pub directory: Option<Spanned<String>>,
    /// Folder for temporary files while writing (default `<output_dir>/.tmp`).
    #[schemars(with = "Option<String>")]
    pub temp_dir: Option<Spanned<String>>,
}

/// `alerts:`: failure alerts to the task's owners.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// The channel that carries alerts (an email channel sends them to the owners).
    #[schemars(with = "String")]
    pub channel: Spanned<String>,
    /// At most one alert per task per this period, e.g. `1h` (default `1h`).
    #[schemars(with = "Option<String>")]
    pub every: Option<Spanned<String>>,
    /// Template name in `templates_dir` (default `alert`).
    #[schemars(with = "Option<String>")]
    pub template: Option<Spanned<String>>,
}

/// `links:`: the download-link server of `ferry serve` (docs/links.md).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLinks {
    /// Socket address the server binds, `HOST:PORT` (default `127.0.0.1:8480`).
    #[schemars(with = "Option<String>")]
    pub listen: Option<Spanned<String>>,
    /// Base URL of the links people click, `http://` or `https://` (required).
    #[schemars(with = "String")]
    pub public_url: Spanned<String>,
    /// HMAC key that signs links, at least 32 bytes, usually `${FERRY_LINK_KEY}` (this or
    /// `signing_key_file` is required).
    #[schemars(with = "Option<String>")]
    pub signing_key: Option<Spanned<String>>,
    /// A file holding the signing key instead of `signing_key` (relative: in
    /// `$CREDENTIALS_DIRECTORY` when set, else beside config.yaml).
    #[schemars(with = "Option<String>")]
    pub signing_key_file: Option<Spanned<String>>,
    /// How long a link works, e.g. `24h` (default `7d`, at most `7d`).
    #[schemars(with = "Option<String>")]
    pub expiry: Option<Spanned<String>>,
    /// Record the client address from `X-Forwarded-For` (set by a reverse proxy in front of
    /// ferry) instead of the socket peer (default false).
    pub trust_proxy: Option<bool>,
}

/// `http:`: the HTTP API of `ferry serve` (docs/api.md).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Socket address the API binds, `HOST:PORT` (default `127.0.0.1:8481`); an address
    /// beyond loopback only once a user exists (`ferry users add`). The same address as
    /// `links.listen`: one server serves both.
    #[schemars(with = "Option<String>")]
    pub listen: Option<Spanned<String>>,
    /// Mark the session cookie `Secure` (default false: set it when HTTPS is in front).
    pub secure_cookies: Option<bool>,
    /// Behind a reverse proxy: the client address from `X-Forwarded-For`, and `Secure`
    /// cookies when `X-Forwarded-Proto` is `https` (default false).
    pub trust_proxy: Option<bool>,
    /// How long a console login lasts, e.g. `8h` (default `12h`, 5m to 30d).
    #[schemars(with = "Option<String>")]
    pub session_ttl: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawScheduler {
    /// How late a missed fire may still run once (default `30m`).
    #[schemars(with = "Option<String>")]
    pub misfire_grace: Option<Spanned<String>>,
    /// Most missed fires a `catch_up: all` task replays (default 100).
    pub catch_up_limit: Option<usize>,
    /// Most runs at the same time, all tasks together (default 4).
    pub max_workers: Option<usize>,
    /// On shutdown, how long running runs may finish before they are cancelled (default `30s`).
    #[schemars(with = "Option<String>")]
    pub drain_timeout: Option<Spanned<String>>,
    /// How often the delivery worker looks for due retries (default `5s`, 100ms to 1h).
    #[schemars(with = "Option<String>")]
    pub delivery_interval: Option<Spanned<String>>,
    /// Local-time windows in which no run starts.
    #[serde(default)]
    #[schemars(with = "Vec<RawQuietHours>")]
    pub quiet_hours: Vec<Spanned<RawQuietHours>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQuietHours {
    /// Start, `HH:MM` local time (inclusive).
    pub from: String,
    /// End, `HH:MM` local time (exclusive); before `from` means the window crosses midnight.
    pub to: String,
    /// IANA zone of the window (default: config `timezone`).
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawDatasource {
    Sqlite {
        /// `sqlite://PATH`, relative to config.yaml.
        #[schemars(with = "String")]
        url: Spanned<String>,
        /// A SQL file that builds the database when the file does not exist yet.
        #[schemars(with = "Option<String>")]
        seed_sql: Option<Spanned<String>>,
        /// The SQL parser gate: `true` (default), `strict` (only pure functions, for SQL
        /// from outside) or `false` (off; the read-only transaction still applies).
        #[schemars(with = "Option<RawSqlGate>")]
        sql_gate: Option<Spanned<RawSqlGate>>,
        /// Cost guard: refuse a query whose `EXPLAIN` estimate exceeds this (see
        /// docs/configuration.md for what the number means per database).
        #[schemars(with = "Option<f64>")]
        max_cost: Option<Spanned<f64>>,
        /// Refuse to run a task unless the account is found read-only (default `false`).
        #[schemars(with = "Option<bool>")]
        require_read_only: Option<Spanned<bool>>,
    },
    /// A PostgreSQL server (tokio-postgres, TLS through rustls).
    Postgres {
        /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (or `postgresql://`); use
        /// `${VAR}` for the password.
        #[schemars(with = "String")]
        url: Spanned<String>,
        /// A file holding the password, put into `url` after its user name (relative: in
        /// `$CREDENTIALS_DIRECTORY` when set, else beside config.yaml).
        #[schemars(with = "Option<String>")]
        password_file: Option<Spanned<String>>,
        /// Most connections ferry opens to this datasource at the same time (default 4).
        #[schemars(with = "Option<usize>")]
        max_connections: Option<Spanned<usize>>,
        /// How long connecting may take, e.g. `10s` (default `10s`).
        #[schemars(with = "Option<String>")]
        connect_timeout: Option<Spanned<String>>,
        /// Encryption: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`
        /// (default `prefer`; see docs/configuration.md).
        #[schemars(with = "Option<String>")]
        tls: Option<Spanned<String>>,
        /// A CA certificate file (PEM) trusted in addition to the system's roots, for
        /// `tls: verify-ca` and `verify-full`; relative to config.yaml.
        #[schemars(with = "Option<String>")]
        ca_file: Option<Spanned<String>>,
        /// The SQL parser gate: `true` (default), `strict` (only pure functions, for SQL
        /// from outside) or `false` (off; the read-only transaction still applies).
        #[schemars(with = "Option<RawSqlGate>")]
        sql_gate: Option<Spanned<RawSqlGate>>,
        /// Cost guard: refuse a query whose `EXPLAIN` estimate exceeds this (see
        /// docs/configuration.md for what the number means per database).
        #[schemars(with = "Option<f64>")]
        max_cost: Option<Spanned<f64>>,
        /// Refuse to run a task unless the account is found read-only (default `false`).
        #[schemars(with = "Option<bool>")]
        require_read_only: Option<Spanned<bool>>,
    },
    /// A MySQL-protocol server: MySQL, MariaDB, TiDB, AnalyticDB (mysql_async, TLS through
    /// rustls).
    Mysql {
        /// `mysql://USER:PASSWORD@HOST:PORT/DATABASE`; use `${VAR}` for the password.
        #[schemars(with = "String")]
        url: Spanned<String>,
        /// A file holding the password, put into `url` after its user name (relative: in
        /// `$CREDENTIALS_DIRECTORY` when set, else beside config.yaml).
        #[schemars(with = "Option<String>")]
        password_file: Option<Spanned<String>>,
        /// Most connections ferry opens to this datasource at the same time (default 4).
        #[schemars(with = "Option<usize>")]
        max_connections: Option<Spanned<usize>>,
        /// How long connecting may take, e.g. `10s` (default `10s`).
        #[schemars(with = "Option<String>")]
        connect_timeout: Option<Spanned<String>>,
        /// Encryption: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`
        /// (default `prefer`; see docs/configuration.md).
        #[schemars(with = "Option<String>")]
        tls: Option<Spanned<String>>,
        /// A CA certificate file (PEM) trusted in addition to the system's roots, for
        /// `tls: verify-ca` and `verify-full`; relative to config.yaml.
        #[schemars(with = "Option<String>")]
        ca_file: Option<Spanned<String>>,
        /// The SQL parser gate: `true` (default), `strict` (only pure functions, for SQL
        /// from outside) or `false` (off; the read-only transaction still applies).
        #[schemars(with = "Option<RawSqlGate>")]
        sql_gate: Option<Spanned<RawSqlGate>>,
        /// Cost guard: refuse a query whose `EXPLAIN` estimate exceeds this (see
        /// docs/configuration.md for what the number means per database).
        #[schemars(with = "Option<f64>")]
        max_cost: Option<Spanned<f64>>,
        /// Refuse to run a task unless the account is found read-only (default `false`).
        #[schemars(with = "Option<bool>")]
        require_read_only: Option<Spanned<bool>>,
    },
    /// An Oracle Database (the `oracle` crate over Oracle Instant Client). Only a ferry
    /// built with `--features oracle` accepts it; others say so at `ferry validate`.
    Oracle {
        /// `oracle://USER:PASSWORD@HOST:PORT/SERVICE_NAME` (port default 1521); use
        /// `${VAR}` for the password.
        #[schemars(with = "String")]
        url: Spanned<String>,
        /// A file holding the password, put into `url` after its user name (relative: in
        /// `$CREDENTIALS_DIRECTORY` when set, else beside config.yaml).
        #[schemars(with = "Option<String>")]
        password_file: Option<Spanned<String>>,
        /// Most connections ferry opens to this datasource at the same time (default 4).
        #[schemars(with = "Option<usize>")]
        max_connections: Option<Spanned<usize>>,
        /// How long connecting may take, e.g. `10s` (default `10s`).
        #[schemars(with = "Option<String>")]
        connect_timeout: Option<Spanned<String>>,
        /// The SQL parser gate: `true` (default), `strict` (only pure functions, for SQL
        /// from outside) or `false` (off; the read-only transaction still applies).
        #[schemars(with = "Option<RawSqlGate>")]
        sql_gate: Option<Spanned<RawSqlGate>>,
        /// Cost guard: refuse a query whose `EXPLAIN PLAN` cost exceeds this (Oracle
        /// optimizer cost units).
        #[schemars(with = "Option<f64>")]
        max_cost: Option<Spanned<f64>>,
        /// Refuse to run a task unless the account is found read-only (default `false`).
        #[schemars(with = "Option<bool>")]
        require_read_only: Option<Spanned<bool>>,
    },
}

/// A channel's `type`, read first; the channel's map is then read again as the struct of
/// that type (`yaml::read_channels`). A tagged enum would read the map into a buffer
/// before it knows the type, and values read from that buffer have no position, so errors
/// could not name the field's line.
#[derive(Debug, Deserialize)]
pub struct RawChannelType {
    #[serde(rename = "type")]
    pub kind: ChannelType,
}

/// The `type:` of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    Outbox,
    Email,
    Dingtalk,
    Wecom,
    Feishu,
    Webhook,
}

/// A notification channel: its `type` says which fields it takes.
// Read once per config load: the variants' sizes do not matter. Read as the struct of its
// `type` in two steps (`yaml::read_channels`); the schema says the same in one, by the
// `serde` attribute below (which only the schema derive reads).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RawChannel {
    /// Writes each rendered message and its attachment list into a folder.
    Outbox(RawOutbox),
    /// Sends each message by SMTP (lettre), with the result files attached.
    Email(RawEmail),
    /// A DingTalk custom group robot (钉钉自定义机器人).
    Dingtalk(RawRobot),
    /// A WeCom group robot (企业微信群机器人).
    Wecom(RawRobot),
    /// A Feishu / Lark custom bot (飞书自定义机器人).
    Feishu(RawRobot),
    /// A JSON POST to any URL, signed with HMAC-SHA256.
    Webhook(RawRobot),
}

/// The fields of an `outbox` channel.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    /// The channel's `type` (see [`RawChannelType`]).
    #[serde(rename = "type")]
    #[schemars(skip)]
    pub kind: Option<serde::de::IgnoredAny>,
    /// Folder, relative to config.yaml (default `outbox`).
    #[schemars(with = "Option<String>")]
    pub dir: Option<Spanned<String>>,
    /// Template name in `templates_dir` (default `report`).
    #[schemars(with = "Option<String>")]
    pub template: Option<Spanned<String>>,
    /// Default recipients (free text for the outbox).
    #[serde(default)]
    pub recipients: Vec<String>,
}

/// The fields of an `email` channel.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// The channel's `type` (see [`RawChannelType`]).
    #[serde(rename = "type")]
    #[schemars(skip)]
    pub kind: Option<serde::de::IgnoredAny>,
    /// SMTP server host name or IP address (required).
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    /// SMTP port (default 587 for `starttls`, 465 for `tls`, 25 for `none`).
    #[schemars(with = "Option<u16>")]
    pub port: Option<Spanned<u16>>,
    /// `starttls` (default), `tls` (implicit TLS) or `none`.
    #[schemars(with = "Option<String>")]
    pub security: Option<Spanned<String>>,
    /// SMTP AUTH user name; needs `password`.
    #[schemars(with = "Option<String>")]
    pub username: Option<Spanned<String>>,
    /// SMTP AUTH password; write `${VAR}` to take it from the environment, or an
    /// `enc:v1:` value (`ferry secrets encrypt`).
    #[schemars(with = "Option<String>")]
    pub password: Option<Spanned<String>>,
    /// A file holding the SMTP AUTH password instead of `password` (relative: in
    /// `$CREDENTIALS_DIRECTORY` when set, else beside config.yaml).
    #[schemars(with = "Option<String>")]
    pub password_file: Option<Spanned<String>>,
    /// PEM file with CA certificates to trust besides the system's, relative to
    /// config.yaml.
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Spanned<String>>,
    /// Limit for connecting and for each SMTP command, e.g. `30s` (default `60s`).
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// The sender, `name@example.com` or `Display Name <name@example.com>` (required).
    #[schemars(with = "Option<String>")]
    pub from: Option<Spanned<String>>,
    /// Default `To:` addresses.
    #[serde(default)]
    pub to: Vec<String>,
    /// Default `Cc:` addresses.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Default `Bcc:` addresses (receive the message, never appear in its headers).
    #[serde(default)]
    pub bcc: Vec<String>,
    /// Template name in `templates_dir` (default `report`).
    #[schemars(with = "Option<String>")]
    pub template: Option<Spanned<String>>,
    /// Largest total size of a message's attachments in bytes (default 26214400, 25 MiB).
    #[schemars(with = "Option<u64>")]
    pub max_attachment_bytes: Option<Spanned<u64>>,
    /// `auto` (default): attach when the files fit, else zip them, else split the zip
    /// into parts, else send the download link; `attach`: always attach (refused when
    /// too big); `link`: never.
    #[schemars(with = "Option<String>")]
    pub delivery: Option<Spanned<String>>,
    /// Most parts (one email each) a zip over `max_attachment_bytes` is split into
    /// with `delivery: auto` (default 10; 0 or 1: never split; at most 99).
    #[schemars(with = "Option<u32>")]
    pub max_parts: Option<Spanned<u32>>,
}

/// The fields of a chat robot or webhook channel (which apply depends on the type; see
/// docs/configuration.md).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRobot {
    /// The channel's `type` (see [`RawChannelType`]).
    #[serde(rename = "type")]
    #[schemars(skip)]
    pub kind: Option<serde::de::IgnoredAny>,
    /// The robot's webhook URL (it carries the token: use `${VAR}` or `enc:v1:`); `url`
    /// for webhooks. This or `webhook_file` is required.
    #[serde(alias = "url")]
    #[schemars(with = "Option<String>")]
    pub webhook: Option<Spanned<String>>,
    /// A file holding the webhook URL instead of `webhook` (`url_file` for webhooks;
    /// relative: in `$CREDENTIALS_DIRECTORY` when set, else beside config.yaml).
    #[serde(alias = "url_file")]
    #[schemars(with = "Option<String>")]
    pub webhook_file: Option<Spanned<String>>,
    /// Signing secret (DingTalk 加签 `SEC…`, Feishu 签名校验, webhook HMAC key).
    #[schemars(with = "Option<String>")]
    pub secret: Option<Spanned<String>>,
    /// A file holding the signing secret instead of `secret` (relative: in
    /// `$CREDENTIALS_DIRECTORY` when set, else beside config.yaml).
    #[schemars(with = "Option<String>")]
    pub secret_file: Option<Spanned<String>>,
    /// DingTalk custom keyword: `ferry validate` warns when a template lacks it.
    #[schemars(with = "Option<String>")]
    pub keyword: Option<Spanned<String>>,
    /// Who to `@` by default: mobiles (DingTalk), user ids (WeCom, Feishu).
    #[serde(default)]
    pub mentions: Vec<String>,
    /// `@` everyone (DingTalk, Feishu).
    pub mention_all: Option<bool>,
    /// Template name in `templates_dir` (default `report`).
    #[schemars(with = "Option<String>")]
    pub template: Option<Spanned<String>>,
    /// Limit for each HTTP request, e.g. `10s` (default `30s`).
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// `auto` (default), `attach` or `link`: whether result files are sent as files
    /// (WeCom only; the other robots can only carry a download link).
    #[schemars(with = "Option<String>")]
    pub delivery: Option<Spanned<String>>,
}

/// `tasks/<name>.yaml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    /// What the export is for (shown in `ferry tasks` and messages).
    pub description: Option<String>,
    /// Who is told when the task fails (email addresses).
    #[serde(default)]
    pub owners: Vec<String>,
    /// `false` keeps the file valid but never scheduled (default `true`).
    pub enabled: Option<bool>,
    /// Cron expression.
    #[schemars(with = "String")]
    pub schedule: Spanned<String>,
    /// IANA zone of the schedule and the date parameters.
    #[schemars(with = "Option<String>")]
    pub timezone: Option<Spanned<String>>,
    /// Datasource name from config.yaml.
    #[schemars(with = "String")]
    pub source: Spanned<String>,
    /// The SQL (one read-only statement).
    #[schemars(with = "Option<String>")]
    pub query: Option<Spanned<String>>,
    /// A file with the SQL, relative to the task file.
    #[schemars(with = "Option<String>")]
    pub query_file: Option<Spanned<String>>,
    /// Several queries, each a sheet of the workbook (or a CSV file of its own).
    #[schemars(with = "Option<Vec<RawQuery>>")]
    pub queries: Option<Spanned<Vec<Spanned<RawQuery>>>>,
    /// Named parameters with fixed values.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawParam>")]
    pub params: BTreeMap<String, Spanned<RawParam>>,
    /// Which period `:period_start`/`:period_end` cover (default `day`); file names and
    /// messages name it.
    #[schemars(with = "Option<String>")]
    pub period: Option<Spanned<String>>,
    /// `en` or `zh`: the language of the built-in message templates (default from
    /// config.yaml's `language`).
    #[schemars(with = "Option<String>")]
    pub language: Option<Spanned<String>>,
    /// Run timeout, e.g. `45m`.
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// How late a missed fire may still run once (default from `scheduler.misfire_grace`).
    #[schemars(with = "Option<String>")]
    pub misfire_grace: Option<Spanned<String>>,
    /// `latest` (default): after downtime run the latest missed fire once if within the
    /// grace; `all`: replay every missed fire, oldest first, up to `scheduler.catch_up_limit`.
    #[schemars(with = "Option<String>")]
    pub catch_up: Option<Spanned<String>>,
    /// `forbid` (default), `allow` or `replace`: what a fire does while the previous run
    /// of the task is still active.
    #[schemars(with = "Option<String>")]
    pub concurrency: Option<Spanned<String>>,
    /// Rows per chunk (default from `export.chunk_rows`).
    pub chunk_rows: Option<usize>,
    /// `send` (default) or `skip` when the query returns no rows.
    #[schemars(with = "Option<String>")]
    pub on_empty: Option<Spanned<String>>,
    pub output: RawOutput,
    #[serde(default)]
    #[schemars(with = "Vec<RawNotify>")]
    pub notify: Vec<Spanned<RawNotify>>,
    /// This task's retention, over config.yaml's `retention:` field by field.
    #[schemars(with = "Option<RawRetention>")]
    pub retention: Option<Spanned<RawRetention>>,
}

/// One entry of a task's `queries` list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    /// Sheet name (xlsx) or file-name suffix (csv).
    #[schemars(with = "String")]
    pub sheet: Spanned<String>,
    /// The SQL (one read-only statement).
    #[schemars(with = "Option<String>")]
    pub query: Option<Spanned<String>>,
    /// A file with the SQL, relative to the task file.
    #[schemars(with = "Option<String>")]
    pub query_file: Option<Spanned<String>>,
}

/// `sql_gate:` on a datasource: `true`, `false` or the word `strict` (any other word is
/// kept for the validator to name; other types fail with "expected true, false or strict").
#[derive(Debug)]
pub enum RawSqlGate {
    Bool(bool),
    Word(String),
}

impl<'de> Deserialize<'de> for RawSqlGate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Expect;
        impl serde::de::Visitor<'_> for Expect {
            type Value = RawSqlGate;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or strict")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawSqlGate, E> {
                Ok(RawSqlGate::Bool(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawSqlGate, E> {
                Ok(RawSqlGate::Word(v.to_string()))
            }
        }
        d.deserialize_any(Expect)
    }
}

impl JsonSchema for RawSqlGate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SqlGate".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The parser gate: true (default), strict, or false.",
            "anyOf": [{ "type": "boolean" }, { "const": "strict" }]
        })
    }
}

/// A fixed task parameter value.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawParam {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    /// `xlsx` or `csv`.
    #[schemars(with = "String")]
    pub format: Spanned<String>,
    /// File name template without extension.
    #[schemars(with = "Option<String>")]
    pub file_name: Option<Spanned<String>>,
    /// Worksheet name (xlsx only; default `data`).
    #[schemars(with = "Option<String>")]
    pub sheet_name: Option<Spanned<String>>,
    /// CSV options (csv only).
    #[schemars(with = "Option<RawCsv>")]
    pub csv: Option<Spanned<RawCsv>>,
    /// Zip the result files into one archive (default false).
    pub zip: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    /// One ASCII character (default `,`).
    #[schemars(with = "Option<String>")]
    pub delimiter: Option<Spanned<String>>,
    /// Write a UTF-8 byte order mark so that Excel detects UTF-8 (default false).
    pub bom: Option<bool>,
    /// `utf-8` (default) or `gb18030`.
    #[schemars(with = "Option<String>")]
    pub encoding: Option<Spanned<String>>,
    /// Prefix text starting with `= + - @ TAB CR` with `'` (default true).
    pub escape_formulas: Option<bool>,
    /// Write the header row (default true).
    pub header: Option<bool>,
    /// `\n` (default) or `\r\n`.
    #[schemars(with = "Option<String>")]
    pub line_ending: Option<Spanned<String>>,
}

/// One entry of a task's `notify` list: a channel name, or a map with overrides.
#[derive(Debug)]
pub struct RawNotify {
    pub channel: String,
    pub template: Option<String>,
    pub recipients: Option<Vec<String>>,
    /// `To:` of an email channel (same meaning as `recipients`; give one of them).
    pub to: Option<Vec<String>>,
    /// `Cc:` / `Bcc:` of an email channel.
    pub cc: Option<Vec<String>>,
    pub bcc: Option<Vec<String>>,
    /// A chat robot channel's webhook and secret for this task (`${VAR}` allowed).
    pub webhook: Option<String>,
    pub secret: Option<String>,
    /// `auto`, `attach` or `link` for this task, over the channel's (email and WeCom).
    pub delivery: Option<String>,
    pub on: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawNotifyMap {
    channel: String,
    template: Option<String>,
    recipients: Option<Vec<String>>,
    to: Option<Vec<String>>,
    cc: Option<Vec<String>>,
    bcc: Option<Vec<String>>,
    webhook: Option<String>,
    secret: Option<String>,
    delivery: Option<String>,
    on: Option<String>,
}

impl<'de> Deserialize<'de> for RawNotify {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawNotify;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a channel name or a map with `channel`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNotify, E> {
                Ok(RawNotify {
                    channel: v.to_string(),
                    template: None,
                    recipients: None,
                    to: None,
                    cc: None,
                    bcc: None,
                    webhook: None,
                    secret: None,
                    delivery: None,
                    on: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawNotify, A::Error> {
                let m = RawNotifyMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawNotify {
                    channel: m.channel,
                    template: m.template,
                    recipients: m.recipients,
                    to: m.to,
                    cc: m.cc,
                    bcc: m.bcc,
                    webhook: m.webhook,
                    secret: m.secret,
                    delivery: m.delivery,
                    on: m.on,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for RawNotify {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Notify".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let map = generator.subschema_for::<RawNotifyMap>();
        json_schema!({
            "description": "A channel name, or a map with `channel` and overrides.",
            "anyOf": [{ "type": "string" }, map]
        })
    }
}

/// `ingest:`: query by email (docs/ingest.md).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    /// The IMAP account requests arrive in.
    #[schemars(with = "RawImap")]
    pub imap: Spanned<RawImap>,
    /// The request folder and where handled mail is moved.
    pub folders: Option<RawIngestFolders>,
    /// Wait for new mail with IMAP IDLE when the server offers it (default true).
    pub idle: Option<bool>,
    /// How often to look for new mail without IDLE, and at most between two looks with
    /// it (default `1m`).
    #[schemars(with = "Option<String>")]
    pub poll_every: Option<Spanned<String>>,
    /// The authserv-id our own mail server writes in `Authentication-Results` (required
    /// unless `trust_unauthenticated`).
    #[schemars(with = "Option<String>")]
    pub authserv_id: Option<Spanned<String>>,
    /// Accept mail without our `Authentication-Results` (internal relays only; default
    /// false, logged loudly when true).
    #[schemars(with = "Option<bool>")]
    pub trust_unauthenticated: Option<Spanned<bool>>,
    /// Who may send requests.
    #[schemars(with = "Vec<RawSender>")]
    pub senders: Spanned<Vec<Spanned<RawSender>>>,
    /// How requests are answered.
    #[schemars(with = "RawIngestReply")]
    pub reply: Spanned<RawIngestReply>,
    /// What the one-shot task of a request looks like.
    pub defaults: Option<RawIngestDefaults>,
    /// Largest mail read, in bytes as the server reports it (default 10 MB).
    #[schemars(with = "Option<u64>")]
    pub max_mail_bytes: Option<Spanned<u64>>,
    /// Daily local-time windows in which accepted requests wait (as
    /// `scheduler.quiet_hours`).
    #[serde(default)]
    #[schemars(with = "Vec<RawQuietHours>")]
    pub quiet_hours: Vec<Spanned<RawQuietHours>>,
    /// Who hears about ingest itself (a changed UIDVALIDITY, a sender over the reply cap)
    /// and gets the daily digest of rejected and ignored mail, through the reply channel.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub owners: Vec<Spanned<String>>,
    /// Local time of the owners' daily digest (default `08:00`).
    #[schemars(with = "Option<String>")]
    pub digest_at: Option<Spanned<String>>,
}

/// `ingest.imap`: the IMAP server and account.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawImap {
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    /// Default 993 for `tls`, 143 for `starttls` and `none`.
    #[schemars(with = "Option<u16>")]
    pub port: Option<Spanned<u16>>,
    /// `tls` (default), `starttls` or `none`.
    #[schemars(with = "Option<String>")]
    pub security: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub username: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub password: Option<Spanned<String>>,
    /// A file holding the password instead of `password` (relative: in
    /// `$CREDENTIALS_DIRECTORY` when set, else beside config.yaml).
    #[schemars(with = "Option<String>")]
    pub password_file: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Spanned<String>>,
    /// Limit for connecting and for each IMAP command (default `60s`).
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
}

/// `ingest.folders`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIngestFolders {
    /// Where requests arrive (default `INBOX`).
    #[schemars(with = "Option<String>")]
    pub requests: Option<Spanned<String>>,
    /// Accepted requests (default `Processed`).
    #[schemars(with = "Option<String>")]
    pub processed: Option<Spanned<String>>,
    /// Rejected requests (default `Rejected`).
    #[schemars(with = "Option<String>")]
    pub rejected: Option<Spanned<String>>,
    /// Machine mail and mail that is no request (default `Ignored`).
    #[schemars(with = "Option<String>")]
    pub ignored: Option<Spanned<String>>,
}

/// One allowed sender.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSender {
    /// The sender's address, matched whole and case-insensitively.
    #[schemars(with = "String")]
    pub address: Spanned<String>,
    /// The datasources this sender may query.
    #[schemars(with = "Vec<String>")]
    pub databases: Spanned<Vec<Spanned<String>>>,
    /// Requests per day (default 20).
    #[schemars(with = "Option<u32>")]
    pub daily_quota: Option<Spanned<u32>>,
    /// A secret the request must carry in the address (`local+TOKEN@domain`) or subject.
    #[schemars(with = "Option<String>")]
    pub token: Option<Spanned<String>>,
}

/// `ingest.reply`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIngestReply {
    /// The email channel replies go through.
    #[schemars(with = "String")]
    pub channel: Spanned<String>,
    /// `en` (default) or `zh`: the language of the stock replies.
    #[schemars(with = "Option<String>")]
    pub language: Option<Spanned<String>>,
    /// Replies per sender per day (default 40).
    #[schemars(with = "Option<u32>")]
    pub daily_cap: Option<Spanned<u32>>,
}

/// `ingest.defaults`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIngestDefaults {
    /// `xlsx` (default) or `csv`.
    #[schemars(with = "Option<String>")]
    pub format: Option<Spanned<String>>,
    /// Longest a request's query may run (default `10m`).
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// Cost guard for mailed queries (the datasource's own `max_cost` also applies).
    #[schemars(with = "Option<f64>")]
    pub max_cost: Option<Spanned<f64>>,
    /// Result file name template, without extension (default `{{ attachment }}`).
    #[schemars(with = "Option<String>")]
    pub file_name: Option<Spanned<String>>,
}
