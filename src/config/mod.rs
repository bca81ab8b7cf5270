//! Configuration: `config.yaml` plus one `tasks/<name>.yaml` per task.
//!
//! The flow is parse → validate → build (GUIDE §5.1):
//! - [`raw`] holds the serde types, exactly the shape of the files; [`yaml`] reads them
//!   (a located problem for a YAML or shape error), [`positions`] knows each field's line;
//! - `load` (config.yaml) and `task` (task files) turn them into the specs below in pure
//!   code, collecting every [`Problem`] (file, line, column, field path, message, hint) in
//!   a [`Checker`] instead of stopping at the first one;
//! - each plugin checks its own section beside its implementation, called through
//!   [`Checks`] (assembled in [`crate::plugins`]): datasources in
//!   [`crate::source::config`], channels and `notify` entries in [`crate::notify::config`],
//!   `links:` in [`crate::links::config`], `store.url` in [`crate::store::config`]. This
//!   module calls no plugin itself;
//! - callers build runtime objects (sources, channels, the store) from the specs only.
//!
//! `${VAR}` in `config.yaml` string values is replaced from the environment (a missing
//! variable is a problem that names it) and `enc:v1:` sealed values are opened; secret
//! fields may be read from files instead (`*_file`; [`secrets`]). Task files are never
//! interpolated.

pub mod check;
mod datasource;
pub mod env;
mod ingest;
mod load;
mod output;
pub mod positions;
pub mod problem;
pub mod raw;
pub mod schema;
pub mod secrets;
mod store_url;
mod task;
pub mod url;
pub mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

pub use check::{Checker, Checks, SecretSources};
pub use datasource::{DatasourceSpec, DbTls, OracleDatasource, Secret, ServerDatasource};
pub use env::interpolate;
pub use ingest::{
    ImapSpec, IngestDefaults, IngestFolders, IngestSpec, ReplyLanguage, ReplySpec, SenderSpec,
};
pub use load::load_config;
pub use problem::Problem;
pub use task::{check_task_text, load_task, load_tasks, task_files, validate_task};
pub use url::{redact_text, redact_url};
pub use yaml::io_message;

use crate::params::{ParamValue, Period};
use crate::schedule::Schedule;

/// The validated `config.yaml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file itself.
    pub path: PathBuf,
    /// Its folder: relative paths resolve against it.
    pub base_dir: PathBuf,
    pub timezone: Tz,
    /// The language of the built-in message templates for tasks that do not set their own
    /// (`language:`, default `en`).
    pub language: Language,
    pub tasks_dir: PathBuf,
    pub output_dir: PathBuf,
    pub templates_dir: PathBuf,
    pub node_name: String,
    pub store: StoreSpec,
    pub export: ExportDefaults,
    pub scheduler: SchedulerSettings,
    /// Signed download links (`links:`); `None` when not configured.
    pub links: Option<LinksSpec>,
    /// The HTTP API (`http:`); `None` when not configured.
    pub http: Option<HttpSpec>,
    /// Failure alerts to task owners (`alerts:`); `None` when not configured.
    pub alerts: Option<AlertsSpec>,
    pub datasources: BTreeMap<String, DatasourceSpec>,
    /// Datasources with `sql_gate: false`: their queries skip the parser gate
    /// ([`crate::sqlgate`]); the read-only transaction still applies.
    pub sql_gate_off: BTreeSet<String>,
    /// Datasources with `sql_gate: strict`: their queries may call only the pure functions
    /// of [`crate::sqlgate::STRICT_ALLOWED`].
    pub sql_gate_strict: BTreeSet<String>,
    /// Cost guards (`max_cost`): a query whose `EXPLAIN` estimate exceeds the datasource's
    /// limit is refused before it runs.
    pub max_cost: BTreeMap<String, f64>,
    /// `require_read_only` as written on each datasource that sets it; read it through
    /// [`Config::requires_read_only`], which knows the default.
    pub require_read_only: BTreeMap<String, bool>,
    pub channels: BTreeMap<String, ChannelSpec>,
    /// Query by email (`ingest:`); `None` when not configured.
    pub ingest: Option<IngestSpec>,
    /// Where the secrets of config.yaml come from (plain-text fields, `*_file` files), for
    /// `ferry validate`'s permission warnings.
    pub secrets: SecretSources,
    /// The log of `ferry serve` (`logging:`).
    pub logging: LoggingSpec,
    /// How long result files and run history are kept (`retention:`; every field `None`:
    /// forever).
    pub retention: RetentionSpec,
}

/// `require_read_only` of a datasource that does not set it.
pub const REQUIRE_READ_ONLY_DEFAULT: bool = false;

impl Config {
    /// Whether runs on datasource `name` must first find its account read-only
    /// ([`crate::source::access::require_read_only`]). The default is
    /// [`REQUIRE_READ_ONLY_DEFAULT`], except for a datasource that mailed requests may
    /// use (`ingest.senders[].databases`): there it is `true`.
    pub fn requires_read_only(&self, name: &str) -> bool {
        let mailed = self.ingest.as_ref().is_some_and(|i| {
            i.senders
                .iter()
                .any(|s| s.databases.iter().any(|d| d == name))
        });
        self.require_read_only
            .get(name)
            .copied()
            .unwrap_or(REQUIRE_READ_ONLY_DEFAULT || mailed)
    }
}

/// `alerts:`: which channel tells a task's owners that it failed, and how often at most.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsSpec {
    pub channel: String,
    pub every: Duration,
    pub template: String,
}

/// Where run history lives: the `store.url` (see [`crate::store::open`]).
pub use store_url::{StoreUrl, StoreUrl as StoreSpec};

#[derive(Debug, Clone)]
pub struct ExportDefaults {
    pub chunk_rows: usize,
    pub timeout: Duration,
    /// Template of the sub-folder of `output_dir` for a run's files.
    pub directory: String,
    pub temp_dir: PathBuf,
}

/// `retention:`: how long result files and run history are kept; `None` is forever (or,
/// in a task, config.yaml's value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionSpec {
    pub files_days: Option<u32>,
    pub files_runs: Option<u32>,
    pub history_days: Option<u32>,
}

impl RetentionSpec {
    /// This task's value of each field, else `global`'s.
    pub fn over(self, global: RetentionSpec) -> RetentionSpec {
        RetentionSpec {
            files_days: self.files_days.or(global.files_days),
            files_runs: self.files_runs.or(global.files_runs),
            history_days: self.history_days.or(global.history_days),
        }
    }
}

/// Checks a `retention:` section at `field` (`retention` or a task's).
pub(crate) fn check_retention(
    c: &mut Checker,
    raw: Option<&serde_saphyr::Spanned<raw::RawRetention>>,
) -> RetentionSpec {
    let Some(r) = raw else {
        return RetentionSpec::default();
    };
    let mut get = |v: &Option<serde_saphyr::Spanned<u32>>, name: &str| {
        v.as_ref().and_then(|n| {
            if n.value == 0 {
                c.at(
                    n,
                    format!("retention.{name}"),
                    "must be at least 1 (leave it out to keep forever)",
                );
                None
            } else {
                Some(n.value)
            }
        })
    };
    RetentionSpec {
        files_days: get(&r.value.files_days, "files_days"),
        files_runs: get(&r.value.files_runs, "files_runs"),
        history_days: get(&r.value.history_days, "history_days"),
    }
}

/// `logging:`: what `ferry serve` logs and where (built by [`crate::logging`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingSpec {
    /// The level and filters as one `EnvFilter` directive (`info,ferry::store=debug`).
    pub filter: String,
    pub format: LogFormat,
    /// A rotated file instead of standard error.
    pub file: Option<LogFileSpec>,
}

impl Default for LoggingSpec {
    fn default() -> Self {
        LoggingSpec {
            filter: "info".into(),
            format: LogFormat::Text,
            file: None,
        }
    }
}

/// `logging.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `logging.file`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogFileSpec {
    pub path: PathBuf,
    /// Daily rotation at this local time in `tz`.
    pub rotate_at: Option<chrono::NaiveTime>,
    pub tz: Tz,
    /// Rotation when the file grows past this size.
    pub max_bytes: Option<u64>,
    /// Rotated files kept.
    pub keep: usize,
    /// gzip rotated files.
    pub compress: bool,
}

/// How `ferry serve` schedules.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerSettings {
    pub misfire_grace: Duration,
    pub catch_up_limit: usize,
    pub max_workers: usize,
    pub drain_timeout: Duration,
    /// How often `ferry serve`'s delivery worker looks for due retries (default 5 s,
    /// 100 ms to 1 h; `ms` allowed).
    pub delivery_interval: Duration,
    pub quiet_hours: Vec<QuietWindow>,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            misfire_grace: Duration::from_secs(30 * 60),
            catch_up_limit: 100,
            max_workers: 4,
            drain_timeout: Duration::from_secs(30),
            delivery_interval: Duration::from_secs(5),
            quiet_hours: Vec::new(),
        }
    }
}

/// The validated `links:` section: the download-link server of `ferry serve`
/// (see [`crate::links`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LinksSpec {
    /// Where the server listens.
    pub listen: std::net::SocketAddr,
    /// Base of the links, `http(s)://host[:port][/prefix]`, without a trailing `/`.
    pub public_url: String,
    /// The HMAC-SHA256 key (at least 32 bytes, not a placeholder).
    pub signing_key: Secret,
    /// Lifetime of a new link (at most [`crate::links::MAX_EXPIRY`]).
    pub expiry: Duration,
    /// Take the client address from `X-Forwarded-For` (a reverse proxy in front).
    pub trust_proxy: bool,
}

/// The validated `http:` section: the HTTP API of `ferry serve` ([`crate::server`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    /// Where the API listens.
    pub listen: std::net::SocketAddr,
    /// Mark the session cookie `Secure`.
    pub secure_cookies: bool,
    /// Take the client address from `X-Forwarded-For` and the scheme from
    /// `X-Forwarded-Proto` (a reverse proxy in front).
    pub trust_proxy: bool,
    /// How long a console session lasts.
    pub session_ttl: Duration,
}

/// `http.listen` unless configured.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8481";

/// A daily local-time window in which no run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietWindow {
    pub from: chrono::NaiveTime,
    pub to: chrono::NaiveTime,
    pub tz: Tz,
}

/// What a fire does while the task's previous run is still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    Forbid,
    Allow,
    Replace,
}

/// Which missed fires run after downtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    Latest,
    All,
}

#[derive(Debug, Clone)]
pub struct ChannelSpec {
    pub name: String,
    pub kind: ChannelKind,
    pub template: String,
    /// Default recipients (`to` of an email channel).
    pub recipients: Vec<String>,
    /// Default Cc and Bcc (email channels; empty for the others).
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum ChannelKind {
    Outbox { dir: PathBuf },
    Email(Box<EmailSpec>),
    Robot(Box<RobotSpec>),
}

/// Which chat service (or generic webhook) a robot channel posts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RobotService {
    DingTalk,
    WeCom,
    Feishu,
    Webhook,
}

impl RobotService {
    pub fn kind(self) -> &'static str {
        match self {
            RobotService::DingTalk => "dingtalk",
            RobotService::WeCom => "wecom",
            RobotService::Feishu => "feishu",
            RobotService::Webhook => "webhook",
        }
    }
}

/// A chat robot or webhook channel.
#[derive(Debug, Clone)]
pub struct RobotSpec {
    pub service: RobotService,
    /// The webhook URL, token included.
    pub webhook: Secret,
    pub secret: Option<Secret>,
    /// DingTalk's custom keyword (checked against templates by `ferry validate`).
    pub keyword: Option<String>,
    pub mention_all: bool,
    pub timeout: Duration,
    pub delivery: RobotDelivery,
}

/// Whether a channel sends the result files themselves or a link (email, WeCom); set per
/// channel, and per task `notify` entry over the channel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RobotDelivery {
    /// Files when the service can carry them and they fit (WeCom, 20 MB each), else the
    /// download link.
    Auto,
    /// Always the files (WeCom); a file over the limit fails the delivery.
    Attach,
    /// Only the download link.
    Link,
}

impl RobotDelivery {
    /// Parses `auto`, `attach` or `link`.
    pub fn parse(text: &str) -> Result<RobotDelivery, String> {
        match text {
            "auto" => Ok(RobotDelivery::Auto),
            "attach" => Ok(RobotDelivery::Attach),
            "link" => Ok(RobotDelivery::Link),
            other => Err(format!(
                "unknown value `{other}` (one of: auto, attach, link)"
            )),
        }
    }
}

impl ChannelKind {
    /// The `type:` of the channel.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelKind::Outbox { .. } => "outbox",
            ChannelKind::Email(_) => "email",
            ChannelKind::Robot(r) => r.service.kind(),
        }
    }

    /// Whether messages of this channel carry an HTML body (from `<template>.html.j2`).
    pub fn wants_html(&self) -> bool {
        matches!(self, ChannelKind::Email(_))
    }
}

/// An SMTP server and sender (`type: email`); addresses are validated (RFC 5322 mailboxes).
#[derive(Debug, Clone)]
pub struct EmailSpec {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// SMTP AUTH user name; `password` is set exactly when this is.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A PEM file of CA certificates trusted in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// Limit for connecting and for each SMTP command.
    pub timeout: Duration,
    /// The `From:` mailbox, e.g. `数据导出 <ferry@example.com>`.
    pub from: String,
    /// Largest total size of a message's attachments, in bytes (before encoding).
    pub max_attachment_bytes: u64,
    /// Attach the files, zip them to fit, or send the download link.
    pub delivery: RobotDelivery,
    /// With `delivery: auto`, the most parts (one email each) a zip over
    /// `max_attachment_bytes` is split into; 0 or 1: never split (default 10).
    pub max_parts: u32,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    StartTls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Tls,
    /// No encryption (port 25); only without credentials, or on a loopback host.
    None,
}

impl SmtpSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        }
    }

    /// The usual port for this security.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

pub use crate::template::Language;

/// A validated task.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    pub owners: Vec<String>,
    pub enabled: bool,
    pub schedule: Schedule,
    pub timezone: Tz,
    pub source: String,
    /// The queries, run one after another: one entry for `query`/`query_file` (its sheet
    /// is `None`: `output.sheet_name` names it), one per `queries` entry otherwise.
    pub queries: Vec<QuerySpec>,
    pub params: BTreeMap<String, ParamValue>,
    pub period: Period,
    /// Whether the data is for `period` (the task sets `period:` or a query reads a
    /// `:period_*` parameter): file names and messages then name the period, otherwise
    /// the run date.
    pub reports_period: bool,
    /// The language of the built-in message templates (the task's `language:`, else
    /// config.yaml's).
    pub language: Language,
    pub timeout: Duration,
    pub misfire_grace: Duration,
    pub catch_up: CatchUp,
    pub concurrency: Concurrency,
    pub chunk_rows: usize,
    pub on_empty: OnEmpty,
    pub output: OutputSpec,
    pub notify: Vec<NotifySpec>,
    /// The task's own `retention:` (a `None` field follows config.yaml's).
    pub retention: RetentionSpec,
}

/// One query of a task.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    /// Sheet name (xlsx) or file-name suffix (csv); `None` for a task's single `query`.
    pub sheet: Option<String>,
    pub query: Query,
}

/// What a task asks its datasource for. Only SQL today; a source that does not speak SQL
/// (an HTTP/JSON API) gets a variant of its own, which the SQL gate, `:param` binding and
/// the cost guard leave alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// A SQL statement with `:name` parameters: checked by the SQL gate, bound per run,
    /// priced by the cost guard (`max_cost`).
    Sql { text: String },
}

impl Query {
    /// The SQL text, when this is a SQL query.
    pub fn sql(&self) -> Option<&str> {
        match self {
            Query::Sql { text } => Some(text),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEmpty {
    Send,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    /// `xlsx` or `csv`; the error names the value and the choices.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "csv" => Ok(Format::Csv),
            "xlsx" => Ok(Format::Xlsx),
            other => Err(format!(
                "unknown format `{other}`{} (one of: xlsx, csv)",
                crate::suggest::hint(other, ["xlsx", "csv"])
            )),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub format: Format,
    /// Template of the file name, without extension.
    pub file_name: String,
    pub sheet_name: String,
    pub csv: CsvOptions,
    pub zip: bool,
    /// One file per query, named `<part name>.<ext>`, instead of one workbook with a
    /// sheet per query (xlsx) or `<file_name>_<part>` files (csv): a mailed request's
    /// result files are named after its attachments. Not a task option.
    pub file_per_query: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub bom: bool,
    pub encoding: CsvEncoding,
    pub escape_formulas: bool,
    pub header: bool,
    pub crlf: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            bom: false,
            encoding: CsvEncoding::Utf8,
            escape_formulas: true,
            header: true,
            crlf: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvEncoding {
    Utf8,
    Gb18030,
}

#[derive(Debug, Clone)]
pub struct NotifySpec {
    pub channel: String,
    pub template: String,
    /// `to` (email) or the free-text recipients (outbox).
    pub recipients: Vec<String>,
    /// Cc and Bcc (email channels only).
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    /// This task's robot webhook and secret, replacing the channel's (robot channels).
    pub webhook: Option<Secret>,
    pub secret: Option<Secret>,
    /// This task's `delivery` (files or link), over the channel's (email and WeCom).
    pub delivery: Option<RobotDelivery>,
    pub on: NotifyOn,
}

/// What a task's `notify` entry sets over its channel (see [`NotifySpec`]), as checked by
/// the channel's plugin.
#[derive(Debug, Clone, Default)]
pub struct NotifyTargets {
    pub recipients: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub webhook: Option<Secret>,
    pub secret: Option<Secret>,
    pub delivery: Option<RobotDelivery>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOn {
    Always,
    Success,
    Failure,
}

impl NotifyOn {
    pub fn matches(self, succeeded: bool) -> bool {
        match self {
            NotifyOn::Always => true,
            NotifyOn::Success => succeeded,
            NotifyOn::Failure => !succeeded,
        }
    }
}

/// Everything loaded from disk: the config, the valid tasks, and the problems of the
/// invalid ones (other tasks stay usable).
#[derive(Debug, Clone)]
pub struct Project {
    pub config: Config,
    pub tasks: BTreeMap<String, TaskSpec>,
    /// Problems per task name (task files that did not validate).
    pub task_problems: BTreeMap<String, Vec<Problem>>,
}

impl Project {
    /// Secrets that others than the owner can read: config.yaml when it holds a secret in
    /// plain text (one warning per field), and `*_file` secret files.
    fn secret_warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let secrets = &self.config.secrets;
        if let Some(mode) = secrets::others_can_read(&self.config.path) {
            for p in &secrets.plain {
                let mut p = p.clone();
                p.message = format!(
                    "a secret in plain text in a file that {mode} can read: write \
                     `${{VAR}}`, an `enc:v1:` value (`ferry secrets encrypt`) or a `*_file`, \
                     or `chmod 600 {}`",
                    self.config.path.display()
                );
                out.push(p.to_string());
            }
        }
        for f in &secrets.files {
            if let Some(mode) = secrets::others_can_read(f) {
                out.push(format!(
                    "{}: secret file that {mode} can read: `chmod 600 {0}` (or 640 with \
                     ferry's group)",
                    f.display()
                ));
            }
        }
        out
    }

    /// Things that are valid but will likely go wrong: a DingTalk robot whose keyword is
    /// in neither the subject nor the body of a template it is used with (DingTalk would
    /// refuse every such message with `310000 keywords not in content`).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.secret_warnings();
        let lacks = |template: &str, keyword: &str| {
            use crate::template::{MessageTemplate, Part};
            let t = MessageTemplate::locate(&self.config.templates_dir, template);
            let text = [Part::Body, Part::Subject]
                .into_iter()
                .filter_map(|p| t.source(p).ok().flatten())
                .map(|s| s.text)
                .collect::<String>();
            !text.contains(keyword)
        };
        let keyword_of = |ch: &ChannelSpec| match &ch.kind {
            ChannelKind::Robot(r) => r.keyword.clone(),
            _ => None,
        };
        // The template messages are rendered with: `NAME_zh` for `language: zh`.
        let in_language = |template: &str, language| {
            crate::template::MessageTemplate::in_language(
                &self.config.templates_dir,
                template,
                language,
            )
            .name
        };
        for ch in self.config.channels.values() {
            let template = in_language(&ch.template, self.config.language);
            if let Some(k) = keyword_of(ch)
                && lacks(&template, &k)
            {
                out.push(format!(
                    "{}: channels.{}.keyword: template `{template}` does not contain the DingTalk keyword `{k}`: the robot would refuse its messages (310000 keywords not in content)",
                    self.config.path.display(),
                    ch.name,
                ));
            }
        }
        for task in self.tasks.values() {
            for (i, n) in task.notify.iter().enumerate() {
                let Some(ch) = self.config.channels.get(&n.channel) else {
                    continue;
                };
                let template = in_language(&n.template, task.language);
                if let Some(k) = keyword_of(ch)
                    && template != in_language(&ch.template, self.config.language)
                    && lacks(&template, &k)
                {
                    out.push(format!(
                        "{}: notify[{i}].template: template `{template}` does not contain the keyword `{k}` of DingTalk channel `{}`: the robot would refuse its messages (310000 keywords not in content)",
                        task.file.display(),
                        ch.name
                    ));
                }
            }
        }
        out
    }

    /// Loads `config_path` and every task. A broken `config.yaml` is fatal (all of its
    /// problems are returned); a broken task only removes that task.
    /// (`Project::load`, in [`crate::plugins`], passes the plugins' checks.)
    pub fn load_with(config_path: &Path, checks: &Checks) -> Result<Project, Vec<Problem>> {
        let config = load_config(config_path, checks)?;
        let (tasks, task_problems) = load_tasks(&config, checks);
        Ok(Project {
            config,
            tasks,
            task_problems,
        })
    }

    /// All problems of all task files, in file order.
    pub fn problems(&self) -> Vec<Problem> {
        self.task_problems.values().flatten().cloned().collect()
    }

    /// Every task name, valid or not.
    pub fn all_names(&self) -> Vec<&str> {
        self.tasks
            .keys()
            .chain(self.task_problems.keys())
            .map(String::as_str)
            .collect()
    }
}

/// Resolves `p` against `base` unless it is absolute.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Parses a duration such as `90s`, `30m`, `2h`, `1h30m`, `1d`. A bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = t.parse::<u64>() {
        if secs == 0 {
            return Err(format!("duration `{t}` must be greater than zero"));
        }
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "invalid duration `{t}` (use a number with s, m, h or d, e.g. `30m` or `1h30m`)"
                ));
            }
        };
        let n: u64 = num.parse().map_err(|_| {
            format!("invalid duration `{t}` (use a number with s, m, h or d, e.g. `30m`)")
        })?;
        total = total.saturating_add(n.saturating_mul(unit));
        num.clear();
    }
    if !num.is_empty() {
        return Err(format!(
            "invalid duration `{t}`: `{num}` has no unit (s, m, h or d)"
        ));
    }
    if total == 0 {
        return Err(format!("duration `{t}` must be greater than zero"));
    }
    Ok(Duration::from_secs(total))
}

/// Like [`parse_duration`], and also a whole number of milliseconds (`200ms`): for the
/// settings that take less than a second (`scheduler.delivery_interval`); the others stay
/// whole seconds, which the places that use them (links' expiry, statement timeouts)
/// count in.
pub fn parse_duration_ms(text: &str) -> Result<Duration, String> {
    match text.trim().strip_suffix("ms").map(str::parse::<u64>) {
        Some(Ok(0)) => Err(format!(
            "duration `{}` must be greater than zero",
            text.trim()
        )),
        Some(Ok(ms)) => Ok(Duration::from_millis(ms)),
        _ => parse_duration(text),
    }
}

/// Formats a duration the way users write it (`1h30m`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(
            parse_duration("10x")
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(parse_duration("10m5").unwrap_err().contains("no unit"));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("0").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(
            parse_duration_ms("200ms").unwrap(),
            Duration::from_millis(200)
        );
        assert_eq!(parse_duration_ms("5s").unwrap(), Duration::from_secs(5));
        assert!(parse_duration_ms("0ms").is_err());
        assert!(parse_duration_ms("1.5ms").is_err());
        assert!(parse_duration("200ms").is_err());
    }
}
