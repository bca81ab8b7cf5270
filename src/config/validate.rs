//! Raw → validated: reads the files, parses them with serde-saphyr and checks everything
//! that can be checked without touching a database or the network. Every problem is
//! collected; nothing stops at the first one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::Spanned;

use super::positions::Positions;
use super::raw::{
    ChannelType, RawChannel, RawChannelType, RawConfig, RawCsv, RawDatasource, RawEmail, RawOutbox,
    RawOutput, RawParam, RawSqlGate, RawTask,
};
use super::{
    AlertsSpec, CatchUp, ChannelKind, ChannelSpec, Concurrency, Config, CsvEncoding, CsvOptions,
    DatasourceSpec, DbTls, EmailSpec, ExportDefaults, Format, LinksSpec, NotifyOn, NotifySpec,
    OnEmpty, OutputSpec, Problem, Query, QuerySpec, QuietWindow, RobotDelivery, RobotService,
    RobotSpec, SchedulerSettings, Secret, SmtpSecurity, TaskSpec, parse_duration,
    parse_duration_ms, problem::hint, resolve,
};
use crate::notify::email;
use crate::params::{self, ParamValue, Period, RunParams};
use crate::schedule::{Schedule, parse_zone};
use crate::store::StoreUrl;
use crate::template::{self, MessageTemplate, is_plain_name};

/// Default file name template (without extension).
pub const DEFAULT_FILE_NAME: &str = "{{ task }}_{{ run_time | strftime('%Y%m%d_%H%M%S') }}";
/// Default sub-folder template of `output_dir`.
pub const DEFAULT_DIRECTORY: &str = "{{ task }}";
/// Default message template name.
pub const DEFAULT_TEMPLATE: &str = "report";
/// Rows per chunk unless configured: measured in docs/benchmarks.md ("Database exports"),
/// 1,000 is as fast as 10,000 and halves peak memory (52–66 MB → 24–25 MB).
const DEFAULT_CHUNK_ROWS: usize = 1_000;

/// Largest accepted `chunk_rows`.
pub const MAX_CHUNK_ROWS: usize = 1_000_000;
/// Most entries of a task's `queries` list.
pub const MAX_QUERIES: usize = 50;

/// Parses YAML text into `T`, turning the first error into a located problem with the
/// field path and a "did you mean" hint for unknown fields.
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, Problem> {
    parse_yaml_seed(file, text, std::marker::PhantomData::<T>)
}

/// [`parse_yaml`] with a seed.
fn parse_yaml_seed<S, V>(file: &Path, text: &str, seed: S) -> Result<V, Problem>
where
    S: for<'de> DeserializeSeed<'de, Value = V>,
{
    let mut track = serde_path_to_error::Track::new();
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        seed.deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    });
    let path = track.path().to_string();
    result.map_err(|e| {
        let pos = e
            .location()
            .filter(|l| l.line() > 0)
            .map(|l| (l.line() as usize, l.column() as usize));
        let mut message = strip_location(&e.to_string());
        if let Some(idx) = message.rfind(" at line ")
            && message[idx..].contains(", column ")
        {
            message.truncate(idx);
        }
        if let Some(h) = unknown_field_hint(&message) {
            message.push_str(&h);
        }
        if message.contains("duplicate mapping key") {
            message = message
                .split(", set DuplicateKeyPolicy")
                .next()
                .unwrap_or(&message)
                .to_string();
        }
        for (int, range) in [
            ("u64", "of 0 or more"),
            ("usize", "of 0 or more"),
            ("u32", "of 0 or more"),
            ("u16", "from 0 to 65535"),
            ("u8", "from 0 to 255"),
        ] {
            if message == format!("invalid {int}") {
                message = format!("expected a whole number {range}");
            }
        }
        if message.contains("found a tab") {
            message.push_str(" (YAML indentation must use spaces, not tabs)");
        }
        let field = clean_path(&path);
        Problem {
            file: file.to_path_buf(),
            pos,
            field,
            message,
        }
    })
}

/// Turns serde_path_to_error's path into the user's field path: no `?` for unknown
/// positions, no `.value` from span wrappers.
fn clean_path(path: &str) -> String {
    path.split('.')
        .filter(|seg| !seg.is_empty() && *seg != "?" && *seg != "value")
        .collect::<Vec<_>>()
        .join(".")
        .replace(".[", "[")
}

/// Reads each channel's map as the struct of its `type` (see [`RawChannelType`]); the
/// first shape error (a wrong type, a number out of range, an unknown field) is the
/// problem, at the field's own position.
fn read_channels(
    file: &Path,
    text: &str,
    types: &BTreeMap<String, Spanned<RawChannelType>>,
) -> Result<BTreeMap<String, Spanned<RawChannel>>, Problem> {
    fn read<T: DeserializeOwned>(file: &Path, text: &str, name: &str) -> Result<T, Problem> {
        let path = ["channels", name];
        parse_yaml_seed(file, text, At::<T>::new(&path))?.ok_or_else(|| {
            Problem::new(
                file,
                format!("channels.{name}"),
                "the channel was not found",
            )
        })
    }
    let mut out = BTreeMap::new();
    for (name, t) in types {
        let channel = match t.value.kind {
            ChannelType::Outbox => RawChannel::Outbox(read(file, text, name)?),
            ChannelType::Email => RawChannel::Email(read(file, text, name)?),
            ChannelType::Dingtalk => RawChannel::Dingtalk(read(file, text, name)?),
            ChannelType::Wecom => RawChannel::Wecom(read(file, text, name)?),
            ChannelType::Feishu => RawChannel::Feishu(read(file, text, name)?),
            ChannelType::Webhook => RawChannel::Webhook(read(file, text, name)?),
        };
        out.insert(name.clone(), Spanned::new(channel, t.referenced, t.defined));
    }
    Ok(out)
}

/// Reads only the value at `path` (mapping keys from the root) as `T`, skipping the rest;
/// `None` when the file has no such value.
struct At<'p, T> {
    path: &'p [&'p str],
    _value: std::marker::PhantomData<T>,
}

impl<'p, T> At<'p, T> {
    fn new(path: &'p [&'p str]) -> Self {
        At {
            path,
            _value: std::marker::PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for At<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        if self.path.is_empty() {
            T::deserialize(d).map(Some)
        } else {
            d.deserialize_map(self)
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for At<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Ok(None);
        };
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == *first && found.is_none() {
                found = map.next_value_seed(At::<T>::new(rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A short, lowercase description of an I/O error.
pub fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "file not found".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let t = e.to_string();
            match t.find(" (os error") {
                Some(i) => t[..i].to_lowercase(),
                None => t,
            }
        }
    }
}

fn strip_location(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg);
    let rest = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(after) = rest.strip_prefix("line ")
        && let Some(idx) = after.find(": ")
        && after[..idx].contains("column")
    {
        return after[idx + 2..].to_string();
    }
    rest.to_string()
}

/// For `unknown field `x`, expected one of a, b` (or `expected `a` or `b``), a hint.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (given, tail) = rest.split_once('`')?;
    let expected = tail.split_once("expected")?.1;
    let candidates: Vec<&str> = expected
        .split([',', ' ', '`'])
        .filter(|w| !w.is_empty() && !matches!(*w, "one" | "of" | "or"))
        .collect();
    let h = hint(given, candidates.iter().copied());
    (!h.is_empty()).then_some(h)
}

/// Replaces `${NAME}` with the environment variable `NAME`; `$${` is a literal `${`.
pub fn interpolate(text: &str) -> Result<String, String> {
    interpolate_with(text, |name| std::env::var(name).ok())
}

fn interpolate_with(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(idx) = rest.find('$') {
        out.push_str(&rest[..idx]);
        let after = &rest[idx..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
            let name = &tail[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("invalid variable name `${{{name}}}`"));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Collects problems while turning raw values into spec values.
struct Checker<'a> {
    file: &'a Path,
    problems: Vec<Problem>,
    /// Where each field of the file is: a problem points at the field it names.
    positions: Positions,
    /// Position used when the named field is not in the file and the value has none
    /// (values inside tagged enums lose theirs): the enclosing channel or datasource.
    fallback: Option<(usize, usize)>,
}

impl<'a> Checker<'a> {
    fn new(file: &'a Path, positions: Positions) -> Self {
        Checker {
            file,
            problems: Vec::new(),
            positions,
            fallback: None,
        }
    }

    /// A problem at the field it names when the file has that field, else at `span`.
    fn at<T>(&mut self, span: &Spanned<T>, field: impl Into<String>, msg: impl Into<String>) {
        let mut p = Problem::at(self.file, span, field, msg);
        if let Some(pos) = self.positions.get(&p.field) {
            p.pos = Some(pos);
        } else if p.pos.is_none() {
            p.pos = self.fallback;
        }
        self.problems.push(p);
    }

    /// A problem about `field` that is missing, shown at `beside`, the field that needs it
    /// (or the enclosing channel or datasource).
    fn beside(&mut self, beside: &str, field: impl Into<String>, msg: impl Into<String>) {
        let mut p = Problem::new(self.file, field, msg);
        p.pos = self.positions.get(beside).or(self.fallback);
        self.problems.push(p);
    }

    /// A problem at the field it names, when the file has that field.
    fn plain(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        let mut p = Problem::new(self.file, field, msg);
        p.pos = self.positions.get(&p.field);
        self.problems.push(p);
    }

    /// The problems, by position (those without one last).
    fn sorted(mut self) -> Vec<Problem> {
        self.problems
            .sort_by_key(|p| p.pos.unwrap_or((usize::MAX, 0)));
        self.problems
    }

    /// Interpolates an optional config string (or returns `default`).
    fn env(&mut self, v: &Option<Spanned<String>>, field: &str, default: &str) -> String {
        match v {
            Some(s) => self.env_req(s, field),
            None => default.to_string(),
        }
    }

    /// Parses an optional duration field; a missing or invalid one gives `default` (the
    /// invalid one also a problem).
    fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
        default: std::time::Duration,
    ) -> std::time::Duration {
        match v {
            Some(t) => parse_duration(&t.value).unwrap_or_else(|e| {
                self.at(t, field, e);
                default
            }),
            None => default,
        }
    }

    fn env_req(&mut self, s: &Spanned<String>, field: &str) -> String {
        match interpolate(&s.value) {
            Ok(v) => v,
            Err(e) => {
                self.at(s, field, e);
                String::new()
            }
        }
    }
}

fn read_file(path: &Path) -> Result<String, Problem> {
    std::fs::read_to_string(path)
        .map_err(|e| Problem::new(path, "", format!("cannot read: {}", io_message(&e))))
}

/// Loads and validates `config.yaml`.
pub fn load_config(path: &Path) -> Result<Config, Vec<Problem>> {
    let text = read_file(path).map_err(|p| {
        vec![Problem {
            message: format!(
                "{} (pass --config PATH, or run ferry in the folder that holds config.yaml)",
                p.message
            ),
            ..p
        }]
    })?;
    let raw: RawConfig = parse_yaml(path, &text).map_err(|p| vec![p])?;
    let channels = read_channels(path, &text, &raw.channels).map_err(|p| vec![p])?;
    validate_config(path, raw, channels, Positions::index(&text))
}

fn validate_config(
    path: &Path,
    raw: RawConfig,
    raw_channels: BTreeMap<String, Spanned<RawChannel>>,
    positions: Positions,
) -> Result<Config, Vec<Problem>> {
    let mut c = Checker::new(path, positions);
    // `config.yaml` in the working folder has the empty parent: paths stay relative.
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();

    let timezone = match &raw.timezone {
        Some(z) => match interpolate(&z.value).and_then(|v| parse_zone(&v)) {
            Ok(tz) => tz,
            Err(e) => {
                c.at(z, "timezone", e);
                chrono_tz::UTC
            }
        },
        None => chrono_tz::UTC,
    };
    let tasks_dir = resolve(&base_dir, &c.env(&raw.tasks_dir, "tasks_dir", "tasks"));
    let output_dir = resolve(&base_dir, &c.env(&raw.output_dir, "output_dir", "exports"));
    let templates_dir = resolve(
        &base_dir,
        &c.env(&raw.templates_dir, "templates_dir", "templates"),
    );
    let node_name = match &raw.node_name {
        Some(n) => c.env_req(n, "node_name"),
        None => default_node_name(),
    };

    let default_store = || StoreUrl::Sqlite(base_dir.join("data/ferry.db"));
    let store = match &raw.store {
        Some(s) => {
            let url = c.env_req(&s.url, "store.url");
            match StoreUrl::parse(&url, &base_dir) {
                Ok(StoreUrl::Unsupported { scheme, .. }) => {
                    c.at(
                        &s.url,
                        "store.url",
                        format!(
                            "unsupported store url `{}`: {}",
                            redact_url(&url),
                            crate::store::not_yet_supported(&scheme)
                        ),
                    );
                    default_store()
                }
                Ok(u) => u,
                Err(msg) => {
                    if !url.is_empty() {
                        c.at(
                            &s.url,
                            "store.url",
                            format!("unsupported store url `{}`: {msg}", redact_url(&url)),
                        );
                    }
                    default_store()
                }
            }
        }
        None => default_store(),
    };

    let ex = raw.export.unwrap_or_default();
    let chunk_rows = match ex.chunk_rows {
        Some(0) => {
            c.plain("export.chunk_rows", "must be at least 1");
            DEFAULT_CHUNK_ROWS
        }
        Some(n) if n > MAX_CHUNK_ROWS => {
            c.plain(
                "export.chunk_rows",
                format!("must be at most {MAX_CHUNK_ROWS} (memory grows with it)"),
            );
            DEFAULT_CHUNK_ROWS
        }
        Some(n) => n,
        None => DEFAULT_CHUNK_ROWS,
    };
    let timeout = c.duration(
        &ex.timeout,
        "export.timeout",
        std::time::Duration::from_secs(3600),
    );
    let directory = match &ex.directory {
        Some(d) => {
            if let Err(e) = check_name_template(&d.value) {
                c.at(d, "export.directory", e);
            }
            d.value.clone()
        }
        None => DEFAULT_DIRECTORY.to_string(),
    };
    let temp_dir = match &ex.temp_dir {
        Some(t) => resolve(&base_dir, &c.env_req(t, "export.temp_dir")),
        None => output_dir.join(".tmp"),
    };

    let scheduler = scheduler_settings(&mut c, raw.scheduler.as_ref(), timezone);
    let links = raw.links.as_ref().map(|l| links_settings(&mut c, l));

    let mut datasources = BTreeMap::new();
    let mut sql_gate_off = BTreeSet::new();
    let mut sql_gate_strict = BTreeSet::new();
    let mut max_cost_map = BTreeMap::new();
    for (name, ds) in &raw.datasources {
        let field = format!("datasources.{name}");
        c.fallback = Problem::at(path, ds, "", "").pos;
        if !is_plain_name(name) {
            c.at(
                ds,
                &field,
                "datasource names may use letters, digits, `_` and `-` only",
            );
        }
        let (RawDatasource::Sqlite {
            sql_gate, max_cost, ..
        }
        | RawDatasource::Postgres {
            sql_gate, max_cost, ..
        }
        | RawDatasource::Mysql {
            sql_gate, max_cost, ..
        }
        | RawDatasource::Oracle {
            sql_gate, max_cost, ..
        }) = &ds.value;
        if let Some(g) = sql_gate {
            match &g.value {
                RawSqlGate::Bool(true) => {}
                RawSqlGate::Bool(false) => {
                    sql_gate_off.insert(name.clone());
                }
                RawSqlGate::Word(w) if w == "strict" => {
                    sql_gate_strict.insert(name.clone());
                }
                RawSqlGate::Word(w) => c.at(
                    g,
                    format!("{field}.sql_gate"),
                    format!("expected true, false or strict, got `{w}`"),
                ),
            }
        }
        if let Some(m) = max_cost {
            if matches!(ds.value, RawDatasource::Sqlite { .. }) {
                c.at(
                    m,
                    format!("{field}.max_cost"),
                    "SQLite gives no cost estimate (its EXPLAIN QUERY PLAN has no numbers); remove max_cost",
                );
            } else if !(m.value.is_finite() && m.value > 0.0) {
                c.at(
                    m,
                    format!("{field}.max_cost"),
                    "must be a number greater than 0",
                );
            } else {
                max_cost_map.insert(name.clone(), m.value);
            }
        }
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
                    continue;
                };
                let seed = seed_sql
                    .as_ref()
                    .map(|s| resolve(&base_dir, &c.env_req(s, &format!("{field}.seed_sql"))));
                if let (Some(seed), Some(span)) = (&seed, seed_sql)
                    && !seed.is_file()
                {
                    c.at(
                        span,
                        format!("{field}.seed_sql"),
                        format!("file not found: {}", seed.display()),
                    );
                }
                datasources.insert(
                    name.clone(),
                    DatasourceSpec::Sqlite {
                        path: resolve(&base_dir, p),
                        seed_sql: seed,
                    },
                );
            }
            RawDatasource::Postgres {
                url,
                max_connections,
                connect_timeout,
                tls,
                ca_file,
                ..
            }
            | RawDatasource::Mysql {
                url,
                max_connections,
                connect_timeout,
                tls,
                ca_file,
                ..
            } => {
                let tls_span = tls.as_ref();
                let mysql = matches!(ds.value, RawDatasource::Mysql { .. });
                let u = c.env_req(url, &format!("{field}.url"));
                if u.is_empty() {
                    continue;
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
                    continue;
                }
                let (tls, ca_file) = db_tls(&mut c, &base_dir, &field, tls, ca_file);
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
                    continue;
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
                    continue;
                }
                let (max_connections, connect_timeout) =
                    connection_limits(&mut c, &field, max_connections, connect_timeout);
                let url = Secret::new(u);
                datasources.insert(
                    name.clone(),
                    if mysql {
                        DatasourceSpec::Mysql {
                            url,
                            shown_url,
                            max_connections,
                            connect_timeout,
                            tls,
                            ca_file,
                        }
                    } else {
                        DatasourceSpec::Postgres {
                            url,
                            shown_url,
                            max_connections,
                            connect_timeout,
                            tls,
                            ca_file,
                        }
                    },
                );
            }
            RawDatasource::Oracle {
                url,
                max_connections,
                connect_timeout,
                ..
            } => {
                if !cfg!(feature = "oracle") {
                    c.at(ds, format!("{field}.type"), ORACLE_NOT_BUILT);
                    continue;
                }
                let u = c.env_req(url, &format!("{field}.url"));
                if u.is_empty() {
                    continue;
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
                        continue;
                    }
                };
                let (max_connections, connect_timeout) =
                    connection_limits(&mut c, &field, max_connections, connect_timeout);
                datasources.insert(
                    name.clone(),
                    DatasourceSpec::Oracle {
                        user: parts.user,
                        password: Secret::new(parts.password),
                        host: parts.host,
                        port: parts.port,
                        service: parts.service,
                        shown_url,
                        max_connections,
                        connect_timeout,
                    },
                );
            }
        }
    }

    let mut channels = BTreeMap::new();
    for (name, ch) in &raw_channels {
        let field = format!("channels.{name}");
        c.fallback = Problem::at(path, ch, "", "").pos;
        if !is_plain_name(name) {
            c.at(
                ch,
                &field,
                "channel names may use letters, digits, `_` and `-` only",
            );
        }
        match &ch.value {
            RawChannel::Outbox(RawOutbox {
                dir,
                template,
                recipients,
                ..
            }) => {
                let d = resolve(&base_dir, &c.env(dir, &format!("{field}.dir"), "outbox"));
                let tpl = channel_template(&mut c, &templates_dir, ch, template, &field);
                let mut rcpt = Vec::new();
                for (i, r) in recipients.iter().enumerate() {
                    match interpolate(r) {
                        Ok(v) => rcpt.push(v),
                        Err(e) => c.at(ch, format!("{field}.recipients[{i}]"), e),
                    }
                }
                channels.insert(
                    name.clone(),
                    ChannelSpec {
                        name: name.clone(),
                        kind: ChannelKind::Outbox { dir: d },
                        template: tpl,
                        recipients: rcpt,
                        cc: Vec::new(),
                        bcc: Vec::new(),
                    },
                );
            }
            RawChannel::Dingtalk(r)
            | RawChannel::Wecom(r)
            | RawChannel::Feishu(r)
            | RawChannel::Webhook(r) => {
                let service = match &ch.value {
                    RawChannel::Dingtalk(_) => RobotService::DingTalk,
                    RawChannel::Wecom(_) => RobotService::WeCom,
                    RawChannel::Feishu(_) => RobotService::Feishu,
                    _ => RobotService::Webhook,
                };
                let tpl = channel_template(&mut c, &templates_dir, ch, &r.template, &field);
                if let Some(spec) = robot_channel(&mut c, &field, service, r) {
                    let mut mentions = Vec::new();
                    for (i, m) in r.mentions.iter().enumerate() {
                        match interpolate(m) {
                            Ok(v) => mentions.push(v),
                            Err(e) => c.at(ch, format!("{field}.mentions[{i}]"), e),
                        }
                    }
                    channels.insert(
                        name.clone(),
                        ChannelSpec {
                            name: name.clone(),
                            kind: ChannelKind::Robot(Box::new(spec)),
                            template: tpl,
                            recipients: mentions,
                            cc: Vec::new(),
                            bcc: Vec::new(),
                        },
                    );
                }
            }
            RawChannel::Email(
                email @ RawEmail {
                    template,
                    to,
                    cc,
                    bcc,
                    ..
                },
            ) => {
                let tpl = channel_template(&mut c, &templates_dir, ch, template, &field);
                let to = config_mailboxes(&mut c, ch, &format!("{field}.to"), to);
                let cc = config_mailboxes(&mut c, ch, &format!("{field}.cc"), cc);
                let bcc = config_mailboxes(&mut c, ch, &format!("{field}.bcc"), bcc);
                if let Some(email) =
                    email_channel(&mut c, &base_dir, &field, ch, email, links.is_some())
                {
                    channels.insert(
                        name.clone(),
                        ChannelSpec {
                            name: name.clone(),
                            kind: ChannelKind::Email(Box::new(email)),
                            template: tpl,
                            recipients: to,
                            cc,
                            bcc,
                        },
                    );
                }
            }
        }
    }

    let alerts = raw.alerts.as_ref().map(|a| {
        let name = &a.value.channel.value;
        if !channels.contains_key(name) {
            let names: Vec<&str> = channels.keys().map(String::as_str).collect();
            c.at(
                &a.value.channel,
                "alerts.channel",
                format!(
                    "undefined channel `{name}`{} (defined: {})",
                    hint(name, names.iter().copied()),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            );
        }
        let every = match &a.value.every {
            Some(t) => match parse_duration(&t.value) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    c.at(t, "alerts.every", "must be more than 0");
                    std::time::Duration::from_secs(3600)
                }
                Err(e) => {
                    c.at(t, "alerts.every", e);
                    std::time::Duration::from_secs(3600)
                }
            },
            None => std::time::Duration::from_secs(3600),
        };
        let template = a
            .value
            .template
            .as_ref()
            .map(|t| t.value.clone())
            .unwrap_or_else(|| "alert".to_string());
        let known = crate::exec::alert::alert_variables();
        if let Err(e) = MessageTemplate::locate(&templates_dir, &template).check(&known) {
            match &a.value.template {
                Some(t) => c.at(t, "alerts.template", e),
                None => c.at(a, "alerts.template", e),
            }
        }
        AlertsSpec {
            channel: name.clone(),
            every,
            template,
        }
    });

    if !c.problems.is_empty() {
        return Err(c.sorted());
    }
    Ok(Config {
        alerts,
        path: path.to_path_buf(),
        base_dir,
        timezone,
        tasks_dir,
        output_dir,
        templates_dir,
        node_name,
        store,
        export: ExportDefaults {
            chunk_rows,
            timeout,
            directory,
            temp_dir,
        },
        scheduler,
        links,
        datasources,
        sql_gate_off,
        sql_gate_strict,
        max_cost: max_cost_map,
        channels,
    })
}

/// A robot or webhook channel's settings, checked: the webhook is an http(s) URL, fields
/// that the service does not have are refused.
fn robot_channel(
    c: &mut Checker,
    field: &str,
    service: RobotService,
    r: &super::raw::RawRobot,
) -> Option<RobotSpec> {
    let key = if service == RobotService::Webhook {
        "url"
    } else {
        "webhook"
    };
    let webhook = c.env_req(&r.webhook, &format!("{field}.{key}"));
    let mut usable = !webhook.is_empty();
    if usable && let Err(e) = check_webhook_url(service, &webhook) {
        c.at(&r.webhook, format!("{field}.{key}"), e);
        usable = false;
    }
    let secret = r
        .secret
        .as_ref()
        .map(|s| c.env_req(s, &format!("{field}.secret")));
    if let (Some(s), Some(span)) = (&secret, &r.secret)
        && s.is_empty()
    {
        c.at(span, format!("{field}.secret"), "must not be empty");
    }
    if let Some(s) = &r.secret
        && service == RobotService::WeCom
    {
        c.at(
            s,
            format!("{field}.secret"),
            "WeCom robots have no signing secret: the key in the webhook URL is the credential",
        );
    }
    let keyword = r.keyword.as_ref().map(|k| k.value.clone());
    if let Some(k) = &r.keyword
        && service != RobotService::DingTalk
    {
        c.at(
            k,
            format!("{field}.keyword"),
            "`keyword` is DingTalk's security setting; this channel is not a DingTalk robot",
        );
    }
    let mention_all = r.mention_all.unwrap_or(false);
    if mention_all && matches!(service, RobotService::WeCom | RobotService::Webhook) {
        c.at(
            &r.webhook,
            format!("{field}.mention_all"),
            format!(
                "`mention_all` is not available for {} channels",
                service.kind()
            ),
        );
    }
    let timeout = match &r.timeout {
        Some(t) => match parse_duration(&t.value) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                c.at(t, format!("{field}.timeout"), "must be more than 0");
                std::time::Duration::from_secs(30)
            }
            Err(e) => {
                c.at(t, format!("{field}.timeout"), e);
                std::time::Duration::from_secs(30)
            }
        },
        None => std::time::Duration::from_secs(30),
    };
    let delivery = delivery_mode(c, field, r.delivery.as_ref());
    if let Some(d) = &r.delivery
        && delivery == RobotDelivery::Attach
        && service != RobotService::WeCom
    {
        c.at(
            d,
            format!("{field}.delivery"),
            format!(
                "{} channels cannot carry files, only a download link: use `link` or `auto`",
                service.kind()
            ),
        );
    }
    if !usable {
        return None;
    }
    Some(RobotSpec {
        delivery,
        service,
        webhook: Secret::new(webhook),
        secret: secret.filter(|s| !s.is_empty()).map(Secret::new),
        keyword,
        mention_all,
        timeout,
    })
}

/// A channel's `template` (default `report`), checked: the body exists and every part
/// compiles.
fn channel_template(
    c: &mut Checker,
    templates_dir: &Path,
    ch: &Spanned<RawChannel>,
    template: &Option<Spanned<String>>,
    field: &str,
) -> String {
    let tpl = template
        .as_ref()
        .map(|t| t.value.clone())
        .unwrap_or_else(|| DEFAULT_TEMPLATE.to_string());
    let known = crate::notify::RunReport::variables();
    if let Err(e) = MessageTemplate::locate(templates_dir, &tpl).check(&known) {
        match template {
            Some(t) => c.at(t, format!("{field}.template"), e),
            None => c.at(ch, format!("{field}.template"), e),
        }
    }
    tpl
}

/// Email addresses from config.yaml (`${VAR}` allowed), each checked.
fn config_mailboxes<T>(
    c: &mut Checker,
    at: &Spanned<T>,
    field: &str,
    list: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        match interpolate(r).and_then(|v| email::parse_mailbox(&v).map(|_| v)) {
            Ok(v) => out.push(v.trim().to_string()),
            Err(e) => c.at(at, format!("{field}[{i}]"), e),
        }
    }
    out
}

/// Email addresses from a task file (no interpolation), each checked.
fn task_mailboxes<T>(
    c: &mut Checker,
    at: &Spanned<T>,
    field: &str,
    list: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        match email::parse_mailbox(r) {
            Ok(_) => out.push(r.trim().to_string()),
            Err(e) => c.at(at, format!("{field}[{i}]"), e),
        }
    }
    out
}

/// The SMTP part of a `type: email` channel, or `None` after reporting its problems.
fn email_channel(
    c: &mut Checker,
    base_dir: &Path,
    field: &str,
    ch: &Spanned<RawChannel>,
    raw: &RawEmail,
    links: bool,
) -> Option<EmailSpec> {
    let RawEmail {
        host,
        port,
        security,
        username,
        password,
        ca_file,
        timeout,
        from,
        max_attachment_bytes,
        delivery,
        max_parts,
        ..
    } = raw;
    let before = c.problems.len();

    let host = match host {
        None => {
            c.at(
                ch,
                format!("{field}.host"),
                "missing `host`: the SMTP server's name or address",
            );
            String::new()
        }
        Some(h) => {
            let v = c.env_req(h, &format!("{field}.host")).trim().to_string();
            let v = v
                .strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .unwrap_or(&v)
                .to_string();
            if v.contains("://") {
                c.at(
                    h,
                    format!("{field}.host"),
                    format!(
                        "expected a host name, got the URL `{v}` (put the port in `port` and \
                        the encryption in `security`)"
                    ),
                );
            } else if v.is_empty() && c.problems.len() == before {
                c.at(h, format!("{field}.host"), "must not be empty");
            } else if v.contains(char::is_whitespace)
                || (v.contains(':') && v.parse::<std::net::Ipv6Addr>().is_err())
            {
                c.at(
                    h,
                    format!("{field}.host"),
                    format!("`{v}` is not a host name or address (the port goes in `port`)"),
                );
            }
            v
        }
    };

    let security = match security {
        None => SmtpSecurity::StartTls,
        Some(s) => match s.value.trim().to_ascii_lowercase().as_str() {
            "starttls" => SmtpSecurity::StartTls,
            "tls" => SmtpSecurity::Tls,
            "none" => SmtpSecurity::None,
            other => {
                let extra = if matches!(other, "ssl" | "smtps" | "implicit") {
                    " (implicit TLS, usually port 465, is `tls`)".to_string()
                } else {
                    hint(other, ["starttls", "tls", "none"])
                };
                c.at(
                    s,
                    format!("{field}.security"),
                    format!("unknown value `{other}` (one of: starttls, tls, none){extra}"),
                );
                SmtpSecurity::StartTls
            }
        },
    };

    let port = match port {
        Some(p) if p.value == 0 => {
            c.at(p, format!("{field}.port"), "must be between 1 and 65535");
            0
        }
        Some(p) => p.value,
        None => security.default_port(),
    };

    let username = username
        .as_ref()
        .map(|u| (u, c.env_req(u, &format!("{field}.username"))));
    let password = password
        .as_ref()
        .map(|p| (p, c.env_req(p, &format!("{field}.password"))));
    let (username, password) = match (username, password) {
        (Some((_, u)), Some((_, p))) if !u.trim().is_empty() => {
            (Some(u.trim().to_string()), Some(Secret::new(p)))
        }
        (Some((at, _)), Some(_)) => {
            c.at(at, format!("{field}.username"), "must not be empty");
            (None, None)
        }
        (Some(_), None) => {
            c.beside(
                &format!("{field}.username"),
                format!("{field}.password"),
                "`username` needs a `password` (write `password: ${SMTP_PASSWORD}` to take it \
                        from the environment)",
            );
            (None, None)
        }
        (None, Some(_)) => {
            c.beside(
                &format!("{field}.password"),
                format!("{field}.username"),
                "`password` needs a `username`",
            );
            (None, None)
        }
        (None, None) => (None, None),
    };
    if security == SmtpSecurity::None
        && username.is_some()
        && !host.is_empty()
        && !email::is_loopback(&host)
    {
        let at_field = format!("{field}.security");
        let msg = format!(
            "`security: none` would send the password to `{host}` unencrypted; use \
                        `starttls` or `tls` (plain SMTP with a password is allowed only to a loopback \
                        host)"
        );
        match &raw.security {
            Some(s) => c.at(s, at_field, msg),
            None => c.at(ch, at_field, msg),
        }
    }

    let ca_file = match ca_file {
        None => None,
        Some(f) => {
            let p = resolve(base_dir, &c.env_req(f, &format!("{field}.ca_file")));
            if security == SmtpSecurity::None {
                c.at(
                    f,
                    format!("{field}.ca_file"),
                    "`ca_file` needs `security: starttls` or `tls`",
                );
            } else if let Err(e) = crate::tls::read_ca_file(&p) {
                c.at(f, format!("{field}.ca_file"), e);
            }
            Some(p)
        }
    };

    let timeout = c.duration(timeout, &format!("{field}.timeout"), email::DEFAULT_TIMEOUT);

    let from = match from {
        None => {
            c.at(
                ch,
                format!("{field}.from"),
                "missing `from`: the sender, e.g. `Reports <reports@example.com>`",
            );
            String::new()
        }
        Some(f) => {
            let v = c.env_req(f, &format!("{field}.from"));
            if let Err(e) = email::parse_mailbox(&v) {
                c.at(f, format!("{field}.from"), e);
            }
            v.trim().to_string()
        }
    };

    let max_attachment_bytes = match max_attachment_bytes {
        Some(m) if m.value == 0 => {
            c.at(
                m,
                format!("{field}.max_attachment_bytes"),
                "must be more than 0",
            );
            0
        }
        Some(m) => m.value,
        None => email::DEFAULT_MAX_ATTACHMENT_BYTES,
    };

    let delivery_given = delivery;
    let delivery = delivery_mode(c, field, delivery.as_ref());
    if let (RobotDelivery::Link, Some(d), false) = (delivery, delivery_given, links) {
        // Every message would fail: it may carry neither the files nor a link.
        c.at(d, format!("{field}.delivery"), LINK_NEEDS_LINKS);
    }

    let max_parts = match max_parts {
        Some(m) if m.value > crate::notify::parts::MAX_PARTS_LIMIT => {
            c.at(
                m,
                format!("{field}.max_parts"),
                format!(
                    "must be at most {} (0 or 1: never split)",
                    crate::notify::parts::MAX_PARTS_LIMIT
                ),
            );
            0
        }
        Some(m) => m.value,
        None => crate::notify::parts::DEFAULT_MAX_PARTS,
    };

    (c.problems.len() == before).then_some(EmailSpec {
        max_parts,
        delivery,
        host,
        port,
        security,
        username,
        password,
        ca_file,
        timeout,
        from,
        max_attachment_bytes,
    })
}

/// Why `delivery: link` is refused without a `links:` section.
const LINK_NEEDS_LINKS: &str = "`link` sends the download link instead of the files, and config.yaml has no `links:` section to make one (see docs/links.md); configure links, or use `auto` or `attach`";

/// A channel's `delivery` (`auto` when not given).
fn delivery_mode(c: &mut Checker, field: &str, given: Option<&Spanned<String>>) -> RobotDelivery {
    let Some(d) = given else {
        return RobotDelivery::Auto;
    };
    RobotDelivery::parse(&d.value).unwrap_or_else(|e| {
        c.at(d, format!("{field}.delivery"), e);
        RobotDelivery::Auto
    })
}

fn scheduler_settings(
    c: &mut Checker,
    raw: Option<&super::raw::RawScheduler>,
    default_tz: chrono_tz::Tz,
) -> SchedulerSettings {
    let mut s = SchedulerSettings::default();
    let Some(raw) = raw else { return s };
    s.misfire_grace = c.duration(
        &raw.misfire_grace,
        "scheduler.misfire_grace",
        s.misfire_grace,
    );
    s.drain_timeout = c.duration(
        &raw.drain_timeout,
        "scheduler.drain_timeout",
        s.drain_timeout,
    );
    s.delivery_interval = match &raw.delivery_interval {
        Some(t) => parse_duration_ms(&t.value).unwrap_or_else(|e| {
            c.at(t, "scheduler.delivery_interval", e);
            s.delivery_interval
        }),
        None => s.delivery_interval,
    };
    if let Some(raw_interval) = &raw.delivery_interval
        && !(std::time::Duration::from_millis(100)..=std::time::Duration::from_secs(3600))
            .contains(&s.delivery_interval)
    {
        c.at(
            raw_interval,
            "scheduler.delivery_interval",
            "must be between 100ms and 1h".to_string(),
        );
        s.delivery_interval = SchedulerSettings::default().delivery_interval;
    }
    match raw.catch_up_limit {
        Some(0) => c.plain("scheduler.catch_up_limit", "must be at least 1"),
        Some(n) if n > 10_000 => c.plain("scheduler.catch_up_limit", "must be at most 10000"),
        Some(n) => s.catch_up_limit = n,
        None => {}
    }
    match raw.max_workers {
        Some(0) => c.plain("scheduler.max_workers", "must be at least 1"),
        Some(n) if n > 1024 => c.plain("scheduler.max_workers", "must be at most 1024"),
        Some(n) => s.max_workers = n,
        None => {}
    }
    for (i, q) in raw.quiet_hours.iter().enumerate() {
        let field = format!("scheduler.quiet_hours[{i}]");
        let parse = |t: &str| chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M").ok();
        let from = parse(&q.value.from);
        let to = parse(&q.value.to);
        if from.is_none() {
            c.at(
                q,
                format!("{field}.from"),
                format!("`{}` is not a time of day as HH:MM", q.value.from),
            );
        }
        if to.is_none() {
            c.at(
                q,
                format!("{field}.to"),
                format!("`{}` is not a time of day as HH:MM", q.value.to),
            );
        }
        let tz = match &q.value.timezone {
            Some(z) => match parse_zone(z) {
                Ok(tz) => tz,
                Err(e) => {
                    c.at(q, format!("{field}.timezone"), e);
                    default_tz
                }
            },
            None => default_tz,
        };
        if let (Some(from), Some(to)) = (from, to) {
            if from == to {
                c.at(
                    q,
                    &field,
                    "`from` and `to` are equal: the window would be empty",
                );
            } else {
                s.quiet_hours.push(QuietWindow { from, to, tz });
            }
        }
    }
    s
}

/// The `links:` section. Every field is checked; a bad one is a problem (the returned
/// spec is then never used, since the config as a whole fails).
fn links_settings(c: &mut Checker, raw: &Spanned<super::raw::RawLinks>) -> LinksSpec {
    use crate::links::{DEFAULT_EXPIRY, DEFAULT_LISTEN, MAX_EXPIRY};
    let l = &raw.value;
    let default_listen: std::net::SocketAddr = DEFAULT_LISTEN.parse().expect("valid default");
    let listen = match &l.listen {
        Some(s) => {
            let v = c.env_req(s, "links.listen");
            v.trim().parse().unwrap_or_else(|_| {
                c.at(
                    s,
                    "links.listen",
                    format!(
                        "`{v}` is not a socket address such as `127.0.0.1:8480` or `[::1]:8480` (an IP address and a port)"
                    ),
                );
                default_listen
            })
        }
        None => default_listen,
    };
    let url = c.env_req(&l.public_url, "links.public_url");
    let public_url = match crate::links::check_public_url(&url) {
        Ok(u) => u,
        Err(e) => {
            c.at(&l.public_url, "links.public_url", e);
            String::new()
        }
    };
    let key = c.env_req(&l.signing_key, "links.signing_key");
    if let Err(e) = crate::links::check_signing_key(&key) {
        c.at(&l.signing_key, "links.signing_key", e);
    }
    let mut expiry = c.duration(&l.expiry, "links.expiry", DEFAULT_EXPIRY);
    if expiry > MAX_EXPIRY {
        if let Some(e) = &l.expiry {
            c.at(
                e,
                "links.expiry",
                format!(
                    "`{}` is longer than the cap of 7d: a download link lives at most 7 days",
                    e.value
                ),
            );
        }
        expiry = MAX_EXPIRY;
    }
    LinksSpec {
        listen,
        public_url,
        signing_key: Secret::new(key),
        expiry,
        trust_proxy: l.trust_proxy.unwrap_or(false),
    }
}

fn default_node_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

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

/// The task files in `tasks_dir` (`*.yaml`, `*.yml`), sorted by name.
pub fn task_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml") | Some("yml")
                )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every task file; valid tasks and the problems of the others.
pub fn load_tasks(config: &Config) -> (BTreeMap<String, TaskSpec>, BTreeMap<String, Vec<Problem>>) {
    let mut tasks = BTreeMap::new();
    let mut problems: BTreeMap<String, Vec<Problem>> = BTreeMap::new();
    let files = match task_files(&config.tasks_dir) {
        Ok(f) => f,
        Err(e) => {
            problems.insert(
                String::new(),
                vec![Problem::new(
                    &config.tasks_dir,
                    "tasks_dir",
                    format!("cannot read the tasks folder: {e}"),
                )],
            );
            return (tasks, problems);
        }
    };
    for file in files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if let Some(prev) = tasks.get(&name).map(|t: &TaskSpec| t.file.clone()) {
            problems.entry(name.clone()).or_default().push(Problem::new(
                &file,
                "",
                format!("task `{name}` is also defined by {}", prev.display()),
            ));
            continue;
        }
        match load_task(config, &name, &file) {
            Ok(t) => {
                tasks.insert(name, t);
            }
            Err(p) => {
                problems.entry(name).or_default().extend(p);
            }
        }
    }
    (tasks, problems)
}

/// Loads and validates one task file.
pub fn load_task(config: &Config, name: &str, file: &Path) -> Result<TaskSpec, Vec<Problem>> {
    let text = read_file(file).map_err(|p| vec![p])?;
    let has_content = text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    if !has_content {
        return Err(vec![Problem::new(
            file,
            "",
            "the task file is empty: it needs at least `schedule`, `source`, `query` and `output`",
        )]);
    }
    let raw: RawTask = parse_yaml(file, &text).map_err(|p| vec![p])?;
    validate_task(config, name, file, raw, Positions::index(&text))
}

/// Validates a parsed task against the config.
pub fn validate_task(
    config: &Config,
    name: &str,
    file: &Path,
    raw: RawTask,
    positions: Positions,
) -> Result<TaskSpec, Vec<Problem>> {
    let mut c = Checker::new(file, positions);
    if !is_plain_name(name) {
        c.plain(
            "",
            format!("task file name `{name}` must use letters, digits, `_` and `-` only (the name is the file stem)"),
        );
    }

    let timezone = match &raw.timezone {
        Some(z) => parse_zone(&z.value).unwrap_or_else(|e| {
            c.at(z, "timezone", e);
            config.timezone
        }),
        None => config.timezone,
    };
    let schedule = match Schedule::parse(&raw.schedule.value, timezone) {
        Ok(s) => Some(s),
        Err(e) => {
            c.at(&raw.schedule, "schedule", e);
            None
        }
    };

    if !config.datasources.contains_key(&raw.source.value) {
        let names: Vec<&str> = config.datasources.keys().map(String::as_str).collect();
        let known = if names.is_empty() {
            " (config.yaml defines no datasources)".to_string()
        } else {
            format!(
                "{} (defined: {})",
                hint(&raw.source.value, names.iter().copied()),
                names.join(", ")
            )
        };
        c.at(
            &raw.source,
            "source",
            format!("undefined datasource `{}`{known}", raw.source.value),
        );
    }

    let mut fixed = BTreeMap::new();
    for (k, v) in &raw.params {
        let field = format!("params.{k}");
        if !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || k.starts_with(|ch: char| ch.is_ascii_digit())
        {
            c.at(
                v,
                &field,
                "parameter names may use letters, digits and `_`, and must not start with a digit",
            );
        }
        if params::BUILTIN.contains(&k.as_str()) {
            c.at(
                v,
                &field,
                format!("`{k}` is a built-in parameter and cannot be redefined"),
            );
        }
        let pv = match &v.value {
            RawParam::Bool(b) => ParamValue::Bool(*b),
            RawParam::Int(i) => ParamValue::Int(*i),
            RawParam::Float(f) => ParamValue::Float(*f),
            RawParam::Text(s) => ParamValue::Text(s.clone()),
        };
        fixed.insert(k.clone(), pv);
    }

    let mut queries = Vec::new();
    match (&raw.query, &raw.query_file, &raw.queries) {
        (None, None, None) => c.plain(
            "query",
            "missing: set `query` (the SQL), `query_file` (a file with the SQL) or `queries` (a list)",
        ),
        (q, f, Some(list)) if q.is_some() || f.is_some() => c.at(
            list,
            "queries",
            format!(
                "set either `{}` or `queries`, not both",
                if q.is_some() { "query" } else { "query_file" }
            ),
        ),
        (_, _, Some(list)) => {
            if list.value.is_empty() || list.value.len() > MAX_QUERIES {
                c.at(
                    list,
                    "queries",
                    format!(
                        "must have 1 to {MAX_QUERIES} entries, it has {}",
                        list.value.len()
                    ),
                );
            }
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for (i, entry) in list.value.iter().enumerate() {
                let prefix = format!("queries[{i}].");
                let e = &entry.value;
                let sheet = &e.sheet.value;
                if let Err(msg) = check_sheet_name(sheet) {
                    c.at(&e.sheet, format!("{prefix}sheet"), msg);
                } else if let Some(prev) = seen.insert(sheet.to_lowercase(), i) {
                    c.at(
                        &e.sheet,
                        format!("{prefix}sheet"),
                        format!("sheet `{sheet}` is also used by queries[{prev}] (sheet names must be unique, ignoring case)"),
                    );
                }
                let sql = check_query(
                    &mut c,
                    config,
                    &raw.source.value,
                    &fixed,
                    file,
                    (&e.query, &e.query_file),
                    &prefix,
                    Some(entry),
                );
                queries.push(QuerySpec {
                    sheet: Some(sheet.clone()),
                    query: Query::Sql {
                        text: sql.unwrap_or_default(),
                    },
                });
            }
            if let Some(s) = &raw.output.sheet_name {
                c.at(
                    s,
                    "output.sheet_name",
                    "not used with `queries`: each entry's `sheet` names its sheet",
                );
            }
        }
        (q, f, None) => {
            let sql = check_query(
                &mut c,
                config,
                &raw.source.value,
                &fixed,
                file,
                (q, f),
                "",
                None::<&Spanned<()>>,
            );
            queries.push(QuerySpec {
                sheet: None,
                query: Query::Sql {
                    text: sql.unwrap_or_default(),
                },
            });
        }
    }

    let period = match &raw.period {
        Some(p) => Period::parse(&p.value).unwrap_or_else(|| {
            c.at(
                p,
                "period",
                format!(
                    "unknown period `{}`{} (one of: {})",
                    p.value,
                    hint(&p.value, Period::NAMES.iter().copied()),
                    Period::NAMES.join(", ")
                ),
            );
            Period::Day
        }),
        None => Period::Day,
    };
    let timeout = c.duration(&raw.timeout, "timeout", config.export.timeout);
    let misfire_grace = c.duration(
        &raw.misfire_grace,
        "misfire_grace",
        config.scheduler.misfire_grace,
    );
    let catch_up = match &raw.catch_up {
        Some(v) => match v.value.as_str() {
            "latest" => CatchUp::Latest,
            "all" => CatchUp::All,
            other => {
                c.at(
                    v,
                    "catch_up",
                    format!("unknown value `{other}` (one of: latest, all)"),
                );
                CatchUp::Latest
            }
        },
        None => CatchUp::Latest,
    };
    let concurrency = match &raw.concurrency {
        Some(v) => match v.value.as_str() {
            "forbid" => Concurrency::Forbid,
            "allow" => Concurrency::Allow,
            "replace" => Concurrency::Replace,
            other => {
                c.at(
                    v,
                    "concurrency",
                    format!(
                        "unknown value `{other}`{} (one of: forbid, allow, replace)",
                        hint(other, ["forbid", "allow", "replace"])
                    ),
                );
                Concurrency::Forbid
            }
        },
        None => Concurrency::Forbid,
    };
    let chunk_rows = match raw.chunk_rows {
        Some(0) => {
            c.plain("chunk_rows", "must be at least 1");
            config.export.chunk_rows
        }
        Some(n) if n > MAX_CHUNK_ROWS => {
            c.plain("chunk_rows", format!("must be at most {MAX_CHUNK_ROWS}"));
            config.export.chunk_rows
        }
        Some(n) => n,
        None => config.export.chunk_rows,
    };
    let on_empty = match &raw.on_empty {
        Some(o) => match o.value.as_str() {
            "send" => OnEmpty::Send,
            "skip" => OnEmpty::Skip,
            other => {
                c.at(
                    o,
                    "on_empty",
                    format!("unknown value `{other}` (one of: send, skip)"),
                );
                OnEmpty::Send
            }
        },
        None => OnEmpty::Send,
    };

    let output = validate_output(&mut c, &raw.output, name, &fixed, timezone);

    let mut notify = Vec::new();
    for (i, n) in raw.notify.iter().enumerate() {
        let field = format!("notify[{i}]");
        let Some(ch) = config.channels.get(&n.value.channel) else {
            let names: Vec<&str> = config.channels.keys().map(String::as_str).collect();
            let known = if names.is_empty() {
                " (config.yaml defines no channels)".to_string()
            } else {
                format!(
                    "{} (defined: {})",
                    hint(&n.value.channel, names.iter().copied()),
                    names.join(", ")
                )
            };
            c.at(
                n,
                format!("{field}.channel"),
                format!("undefined channel `{}`{known}", n.value.channel),
            );
            continue;
        };
        let template = match &n.value.template {
            Some(t) => {
                let known = crate::notify::RunReport::variables();
                if let Err(e) = MessageTemplate::locate(&config.templates_dir, t).check(&known) {
                    c.at(n, format!("{field}.template"), e);
                }
                t.clone()
            }
            None => ch.template.clone(),
        };
        let on = match n.value.on.as_deref() {
            None | Some("always") => NotifyOn::Always,
            Some("success") => NotifyOn::Success,
            Some("failure") => NotifyOn::Failure,
            Some(other) => {
                c.at(
                    n,
                    format!("{field}.on"),
                    format!("unknown value `{other}` (one of: always, success, failure)"),
                );
                NotifyOn::Always
            }
        };
        let (recipients, cc, bcc) = notify_recipients(&mut c, n, &field, ch);
        let (webhook, secret) = notify_robot_overrides(&mut c, n, &field, ch);
        let delivery = notify_delivery(&mut c, n, &field, ch, config.links.is_some());
        notify.push(NotifySpec {
            delivery,
            channel: ch.name.clone(),
            template,
            recipients,
            cc,
            bcc,
            webhook,
            secret,
            on,
        });
    }

    for (i, o) in raw.owners.iter().enumerate() {
        if !looks_like_email(o) {
            c.plain(
                format!("owners[{i}]"),
                format!("`{o}` is not an email address"),
            );
        }
    }

    match (schedule, c.problems.is_empty()) {
        (Some(schedule), true) => Ok(TaskSpec {
            name: name.to_string(),
            file: file.to_path_buf(),
            description: raw.description,
            owners: raw.owners,
            enabled: raw.enabled.unwrap_or(true),
            schedule,
            timezone,
            source: raw.source.value,
            queries,
            params: fixed,
            period,
            timeout,
            misfire_grace,
            catch_up,
            concurrency,
            chunk_rows,
            on_empty,
            output,
            notify,
        }),
        _ => Err(c.sorted()),
    }
}

/// A notify entry's own robot `webhook` and `secret` (the seed's per-task DingTalk robot):
/// robot channels only; `${VAR}` is allowed in these two fields so that tokens stay out of
/// task files.
fn notify_robot_overrides(
    c: &mut Checker,
    n: &Spanned<super::raw::RawNotify>,
    field: &str,
    ch: &ChannelSpec,
) -> (Option<Secret>, Option<Secret>) {
    let raw = &n.value;
    let ChannelKind::Robot(robot) = &ch.kind else {
        for (key, given) in [("webhook", &raw.webhook), ("secret", &raw.secret)] {
            if given.is_some() {
                c.at(
                    n,
                    format!("{field}.{key}"),
                    format!(
                        "`{key}` applies to robot and webhook channels only; channel `{}` is `{}`",
                        ch.name,
                        ch.kind.kind()
                    ),
                );
            }
        }
        return (None, None);
    };
    let mut value = |key: &str, given: &Option<String>| -> Option<String> {
        let v = given.as_ref()?;
        match interpolate(v) {
            Ok(v) if v.trim().is_empty() => {
                c.at(n, format!("{field}.{key}"), "must not be empty");
                None
            }
            Ok(v) => Some(v),
            Err(e) => {
                c.at(n, format!("{field}.{key}"), e);
                None
            }
        }
    };
    let webhook = value("webhook", &raw.webhook);
    let secret = value("secret", &raw.secret);
    if let Some(w) = &webhook
        && let Err(e) = check_webhook_url(robot.service, w)
    {
        c.at(n, format!("{field}.webhook"), e);
    }
    (webhook.map(Secret::new), secret.map(Secret::new))
}

/// A notify entry's own `delivery` (files or link, over the channel's): only for the
/// channels that can send files (email, WeCom); `link` needs download links.
fn notify_delivery(
    c: &mut Checker,
    n: &Spanned<super::raw::RawNotify>,
    field: &str,
    ch: &ChannelSpec,
    links: bool,
) -> Option<RobotDelivery> {
    let given = n.value.delivery.as_deref()?;
    let field = format!("{field}.delivery");
    let sends_files = match &ch.kind {
        ChannelKind::Email(_) => true,
        ChannelKind::Robot(r) => r.service == RobotService::WeCom,
        ChannelKind::Outbox { .. } => false,
    };
    if !sends_files {
        let what = match &ch.kind {
            ChannelKind::Outbox { .. } => "which records the message and its file list",
            _ => "which can carry only the download link",
        };
        c.at(
            n,
            field,
            format!(
                "`delivery` applies to the channels that can send the files themselves (email, wecom); channel `{}` is `{}`, {what}",
                ch.name,
                ch.kind.kind()
            ),
        );
        return None;
    }
    match RobotDelivery::parse(given) {
        Ok(RobotDelivery::Link) if !links => {
            c.at(n, field, LINK_NEEDS_LINKS);
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            c.at(n, field, e);
            None
        }
    }
}

/// A robot's webhook must be an http(s) URL; the message shows it without its query
/// string and path token.
fn check_webhook_url(service: RobotService, url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => Ok(()),
        _ => {
            let shown: String = url.chars().take_while(|c| *c != '?').take(30).collect();
            let what = match service {
                RobotService::Webhook => "the webhook's url".to_string(),
                other => format!("the {} webhook", other.kind()),
            };
            Err(format!(
                "expected an http(s) URL for {what}, got `{shown}…`"
            ))
        }
    }
}

/// The recipients of a notify entry: its own lists where given (each replaces the channel's
/// list of the same kind), else the channel's. Email addresses are checked; `to`, `cc`
/// and `bcc` exist only for email channels.
fn notify_recipients(
    c: &mut Checker,
    n: &Spanned<super::raw::RawNotify>,
    field: &str,
    ch: &ChannelSpec,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let raw = &n.value;
    let is_email = matches!(ch.kind, ChannelKind::Email(_));
    if !is_email {
        for (key, given) in [("to", &raw.to), ("cc", &raw.cc), ("bcc", &raw.bcc)] {
            if given.is_some() {
                c.at(
                    n,
                    format!("{field}.{key}"),
                    format!(
                        "`{key}` applies to email channels only; channel `{}` is `{}`{}",
                        ch.name,
                        ch.kind.kind(),
                        if key == "to" {
                            " (use `recipients`)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        let recipients = raw
            .recipients
            .clone()
            .unwrap_or_else(|| ch.recipients.clone());
        return (recipients, Vec::new(), Vec::new());
    }
    let (to_key, to) = match (&raw.to, &raw.recipients) {
        (Some(_), Some(_)) => {
            c.at(
                n,
                format!("{field}.recipients"),
                "give `to` or `recipients` (the same list), not both",
            );
            ("to", raw.to.as_ref())
        }
        (Some(t), None) => ("to", Some(t)),
        (None, r) => ("recipients", r.as_ref()),
    };
    let mut list = |key: &str, given: Option<&Vec<String>>, default: &[String]| match given {
        Some(l) => task_mailboxes(c, n, &format!("{field}.{key}"), l),
        None => default.to_vec(),
    };
    let to = list(to_key, to, &ch.recipients);
    let cc = list("cc", raw.cc.as_ref(), &ch.cc);
    let bcc = list("bcc", raw.bcc.as_ref(), &ch.bcc);
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        c.at(
            n,
            field.to_string(),
            format!(
                "no recipients: give `to`, `cc` or `bcc` here or in channel `{}`",
                ch.name
            ),
        );
    }
    (to, cc, bcc)
}

/// Checks one query given as `query` or `query_file` (under `prefix`, e.g. `queries[1].`):
/// exactly one of them, readable, not empty, known parameters, the SQL gate. Returns the
/// SQL. `entry` is where a missing query is reported (a `queries` entry).
#[allow(clippy::too_many_arguments)]
fn check_query<T>(
    c: &mut Checker,
    config: &Config,
    source: &str,
    fixed: &BTreeMap<String, ParamValue>,
    file: &Path,
    (query, query_file): (&Option<Spanned<String>>, &Option<Spanned<String>>),
    prefix: &str,
    entry: Option<&Spanned<T>>,
) -> Option<String> {
    let (q, span, field) = match (query, query_file) {
        (Some(_), Some(f)) => {
            c.at(
                f,
                format!("{prefix}query_file"),
                "set either `query` or `query_file`, not both",
            );
            return None;
        }
        (None, None) => {
            let msg = "missing: set `query` (the SQL) or `query_file` (a file with the SQL)";
            match entry {
                Some(e) => c.at(e, format!("{prefix}query"), msg),
                None => c.plain(format!("{prefix}query"), msg),
            }
            return None;
        }
        (Some(q), None) => (q.value.clone(), q, "query"),
        (None, Some(f)) => {
            let base = file.parent().unwrap_or(Path::new("."));
            let p = resolve(base, &f.value);
            match std::fs::read_to_string(&p) {
                Ok(s) => (s, f, "query_file"),
                Err(e) => {
                    c.at(
                        f,
                        format!("{prefix}query_file"),
                        format!("cannot read {}: {}", p.display(), io_message(&e)),
                    );
                    return None;
                }
            }
        }
    };
    let field = format!("{prefix}{field}");
    if q.trim().is_empty() {
        c.at(span, &field, "the query is empty");
    } else if let Some((dialect, mode)) = config.sql_gate(source)
        && let Err(reason) = crate::sqlgate::check(&q, dialect, mode)
    {
        c.at(span, &field, reason);
    }
    for p in params::scan(&q) {
        if !params::BUILTIN.contains(&p.name.as_str()) && !fixed.contains_key(&p.name) {
            let candidates = params::BUILTIN
                .iter()
                .copied()
                .chain(fixed.keys().map(String::as_str));
            c.at(
                span,
                &field,
                format!(
                    "unknown parameter `:{}`{} (built-in: {}; or define it under `params`)",
                    p.name,
                    hint(&p.name, candidates),
                    params::BUILTIN.join(", ")
                ),
            );
        }
    }
    Some(q)
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.chars().any(|c| c.is_whitespace() || c == '<' || c == '>')
        }
        None => false,
    }
}

/// Checks a file-name or folder template: syntax, and a trial render with sample values
/// (which catches unknown variables and bad `strftime` formats).
pub fn check_name_template(source: &str) -> Result<(), String> {
    let sample = RunParams::compute(
        crate::clock::wall_now(),
        chrono_tz::UTC,
        Period::Day,
        None,
        &BTreeMap::new(),
    );
    let ctx = sample.template_context("task", "run-id");
    let out = template::check_name(source, &ctx)?;
    if out.trim().is_empty() {
        return Err("renders to an empty name".into());
    }
    Ok(())
}

fn validate_output(
    c: &mut Checker,
    raw: &RawOutput,
    task: &str,
    fixed: &BTreeMap<String, ParamValue>,
    tz: chrono_tz::Tz,
) -> OutputSpec {
    let format = match raw.format.value.as_str() {
        "csv" => Some(Format::Csv),
        "xlsx" => Some(Format::Xlsx),
        other => {
            c.at(
                &raw.format,
                "output.format",
                format!(
                    "unknown format `{other}`{} (one of: xlsx, csv)",
                    hint(other, ["xlsx", "csv"])
                ),
            );
            None
        }
    };
    let file_name = match &raw.file_name {
        Some(f) => {
            let sample = RunParams::compute(crate::clock::wall_now(), tz, Period::Day, None, fixed);
            let ctx = sample.template_context(task, "run-id");
            match template::check_name(&f.value, &ctx) {
                Ok(out) if out.trim().is_empty() => {
                    c.at(f, "output.file_name", "renders to an empty name");
                }
                Ok(_) => {}
                Err(e) => c.at(f, "output.file_name", e),
            }
            f.value.clone()
        }
        None => DEFAULT_FILE_NAME.to_string(),
    };
    let sheet_name = match &raw.sheet_name {
        Some(s) => {
            if format == Some(Format::Csv) {
                c.at(s, "output.sheet_name", "applies to xlsx output only");
            }
            if let Err(e) = check_sheet_name(&s.value) {
                c.at(s, "output.sheet_name", e);
            }
            s.value.clone()
        }
        None => "data".to_string(),
    };
    let csv = match &raw.csv {
        Some(opts) => {
            if format == Some(Format::Xlsx) {
                c.at(opts, "output.csv", "CSV options apply to csv output only");
            }
            csv_options(c, &opts.value)
        }
        None => CsvOptions::default(),
    };
    OutputSpec {
        format: format.unwrap_or(Format::Csv),
        file_name,
        sheet_name,
        csv,
        zip: raw.zip.unwrap_or(false),
    }
}

/// Excel's sheet-name rules: 1–31 characters, none of `[]:*?/\`, no leading/trailing `'`.
pub fn check_sheet_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > 31 {
        return Err(format!(
            "sheet names must have 1 to 31 characters, `{name}` has {n}"
        ));
    }
    if let Some(bad) = name.chars().find(|c| "[]:*?/\\".contains(*c)) {
        return Err(format!("sheet names cannot contain `{bad}`"));
    }
    if name.starts_with('\'') || name.ends_with('\'') {
        return Err("sheet names cannot begin or end with `'`".into());
    }
    Ok(())
}

fn csv_options(c: &mut Checker, raw: &RawCsv) -> CsvOptions {
    let mut o = CsvOptions::default();
    if let Some(d) = &raw.delimiter {
        let v = if d.value == "\\t" {
            "\t"
        } else {
            d.value.as_str()
        };
        match v.as_bytes() {
            [b] if b.is_ascii() && !matches!(*b, b'"' | b'\n' | b'\r') => o.delimiter = *b,
            _ => c.at(
                d,
                "output.csv.delimiter",
                format!(
                    "must be one ASCII character other than a quote or a line break (got `{}`)",
                    d.value
                ),
            ),
        }
    }
    if let Some(e) = &raw.encoding {
        match e.value.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => o.encoding = CsvEncoding::Utf8,
            "gb18030" => o.encoding = CsvEncoding::Gb18030,
            other => c.at(
                e,
                "output.csv.encoding",
                format!("unsupported encoding `{other}` (one of: utf-8, gb18030)"),
            ),
        }
    }
    o.bom = raw.bom.unwrap_or(false);
    if o.bom && o.encoding == CsvEncoding::Gb18030 {
        c.plain(
            "output.csv.bom",
            "a byte order mark applies to utf-8 only; remove `bom` or use utf-8",
        );
    }
    o.escape_formulas = raw.escape_formulas.unwrap_or(true);
    o.header = raw.header.unwrap_or(true);
    if let Some(l) = &raw.line_ending {
        match l.value.as_str() {
            "\n" | "lf" | "LF" => o.crlf = false,
            "\r\n" | "crlf" | "CRLF" => o.crlf = true,
            other => c.at(
                l,
                "output.csv.line_ending",
                format!(
                    "unknown line ending `{}` (one of: lf, crlf)",
                    other.escape_debug()
                ),
            ),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation() {
        let env = |n: &str| (n == "PW").then(|| "s3cret".to_string());
        assert_eq!(interpolate_with("a${PW}b", env).unwrap(), "as3cretb");
        assert_eq!(interpolate_with("$${PW} $5", env).unwrap(), "${PW} $5");
        assert_eq!(
            interpolate_with("${NOPE}", env).unwrap_err(),
            "environment variable `NOPE` is not set"
        );
        assert!(
            interpolate_with("${PW", env)
                .unwrap_err()
                .contains("unclosed")
        );
    }

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

    /// A project with one channel of each kind that matters for `delivery`, `links:` when
    /// asked, and the task `notify` list given; returns the task's problems as text.
    fn notify_project(links: bool, notify: &str) -> Result<TaskSpec, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("templates/report.md.j2"), "{{ task_name }}").unwrap();
        let links = if links {
            "links: { public_url: \"https://files.example.test\", signing_key: \"0123456789abcdef0123456789abcdef-x\" }\n"
        } else {
            ""
        };
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "{links}datasources:\n  db: {{ type: sqlite, url: \"sqlite://db.sqlite\" }}\nchannels:\n  box: {{ type: outbox }}\n  mail: {{ type: email, host: 127.0.0.1, from: ferry@example.test, to: [a@example.test], delivery: attach }}\n  wc: {{ type: wecom, webhook: \"https://qyapi.example.test/cgi-bin/webhook/send?key=k\" }}\n  ding: {{ type: dingtalk, webhook: \"https://oapi.example.test/robot/send?access_token=t\" }}\n"
            ),
        )
        .unwrap();
        let config = load_config(&config).unwrap();
        let file = dir.path().join("t.yaml");
        let text = format!(
            "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT 1 AS one\noutput: {{ format: csv }}\nnotify:\n{notify}"
        );
        let raw: RawTask = parse_yaml(&file, &text).unwrap();
        validate_task(&config, "t", &file, raw, Positions::index(&text)).map_err(|ps| {
            ps.iter()
                .map(|p| {
                    p.to_string()
                        .replace(&format!("{}/", dir.path().display()), "")
                })
                .collect()
        })
    }

    #[test]
    fn a_notify_entry_sets_its_own_delivery_for_email_and_wecom() {
        let task = notify_project(
            true,
            "  - mail\n  - { channel: mail, delivery: link }\n  - { channel: wc, delivery: attach }\n",
        )
        .unwrap();
        let modes: Vec<_> = task.notify.iter().map(|n| n.delivery).collect();
        assert_eq!(
            modes,
            [None, Some(RobotDelivery::Link), Some(RobotDelivery::Attach)]
        );
    }

    #[test]
    fn a_notify_entrys_delivery_is_refused_where_it_means_nothing() {
        let problems = notify_project(
            false,
            "  - { channel: box, delivery: link }\n  - { channel: ding, delivery: auto }\n  - channel: mail\n    delivery: link\n  - { channel: wc, delivery: files }\n",
        )
        .unwrap_err();
        assert_eq!(
            problems,
            [
                "t.yaml:6:31: notify[0].delivery: `delivery` applies to the channels that can send the files themselves (email, wecom); channel `box` is `outbox`, which records the message and its file list",
                "t.yaml:7:32: notify[1].delivery: `delivery` applies to the channels that can send the files themselves (email, wecom); channel `ding` is `dingtalk`, which can carry only the download link",
                "t.yaml:9:15: notify[2].delivery: `link` sends the download link instead of the files, and config.yaml has no `links:` section to make one (see docs/links.md); configure links, or use `auto` or `attach`",
                "t.yaml:10:30: notify[3].delivery: unknown value `files` (one of: auto, attach, link)",
            ]
        );
    }

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

    #[test]
    fn location_prefix_is_stripped() {
        assert_eq!(
            strip_location("error: line 4 column 10: invalid u64"),
            "invalid u64"
        );
        assert_eq!(strip_location("something else"), "something else");
    }

    #[test]
    fn unknown_field_gets_a_hint() {
        let m = "unknown field `schedul`, expected one of description, owners, schedule";
        assert_eq!(
            unknown_field_hint(m).unwrap(),
            " (did you mean `schedule`?)"
        );
        assert_eq!(
            unknown_field_hint("unknown field `zzz`, expected `a` or `b`"),
            None
        );
    }

    #[test]
    fn sheet_names() {
        assert!(check_sheet_name("Sales 2026").is_ok());
        assert!(check_sheet_name("a/b").is_err());
        assert!(check_sheet_name(&"x".repeat(32)).is_err());
    }
}
