//! `config.yaml`: reads it and turns the raw config into [`Config`], one named step per
//! section; every problem of every section is collected.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_saphyr::Spanned;

use super::check::{Checker, Checks};
use super::output::check_name_template;
use super::positions::Positions;
use super::raw::{
    RawAlerts, RawChannel, RawConfig, RawDatasource, RawExport, RawHttp, RawLogging, RawSqlGate,
};
use super::yaml::{parse_yaml, read_channels};
use super::{
    AlertsSpec, ChannelSpec, Config, DatasourceSpec, ExportDefaults, HttpSpec, LogFileSpec,
    LogFormat, LoggingSpec, Problem, SchedulerSettings, interpolate, parse_duration, problem::hint,
    resolve,
};
use crate::fsread::{self, Kind, ReadError};
use crate::schedule::parse_zone;
use crate::template::{MessageTemplate, is_plain_name};

/// Default sub-folder template of `output_dir`.
pub(crate) const DEFAULT_DIRECTORY: &str = "{{ task }}";
/// Rows per chunk unless configured: measured in docs/benchmarks.md ("Database exports"),
/// 1,000 is as fast as 10,000 and halves peak memory (52–66 MB → 24–25 MB).
pub(crate) const DEFAULT_CHUNK_ROWS: usize = 1_000;
/// Largest accepted `chunk_rows`.
pub(crate) const MAX_CHUNK_ROWS: usize = 1_000_000;

/// Loads and validates `config.yaml`.
pub fn load_config(path: &Path, checks: &Checks) -> Result<Config, Vec<Problem>> {
    let text = fsread::read_text(path, Kind::Config).map_err(|e| {
        let mut message = e.reason();
        if let ReadError::Io { .. } = e {
            message.push_str(
                " (pass --config PATH, or run ferry in the folder that holds config.yaml)",
            );
        }
        vec![Problem::new(path, "", message)]
    })?;
    let raw: RawConfig = parse_yaml(path, &text).map_err(|p| vec![p])?;
    let channels = read_channels(path, &text, &raw.channels).map_err(|p| vec![p])?;
    validate_config(path, raw, channels, Positions::index(&text), checks)
}

pub(crate) fn validate_config(
    path: &Path,
    raw: RawConfig,
    raw_channels: BTreeMap<String, Spanned<RawChannel>>,
    positions: Positions,
    checks: &Checks,
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
    let language = match &raw.language {
        Some(l) => super::Language::parse(&l.value).unwrap_or_else(|e| {
            c.at(l, "language", e);
            super::Language::En
        }),
        None => super::Language::En,
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

    let store = (checks.store)(&mut c, raw.store.as_ref(), &base_dir);
    let export = export_defaults(
        &mut c,
        raw.export.unwrap_or_default(),
        &base_dir,
        &output_dir,
    );
    let scheduler = scheduler_settings(&mut c, raw.scheduler.as_ref(), timezone);
    let links = raw.links.as_ref().map(|l| (checks.links)(&mut c, l));
    let http = raw.http.as_ref().map(|h| http(&mut c, h));
    let ds = datasources(&mut c, path, &base_dir, &raw.datasources, checks);
    let channels = channels(
        &mut c,
        path,
        &base_dir,
        &templates_dir,
        &raw_channels,
        links.is_some(),
        checks,
    );
    let alerts = raw
        .alerts
        .as_ref()
        .map(|a| alerts(&mut c, a, &channels, &templates_dir, checks));

    let logging = raw
        .logging
        .as_ref()
        .map(|l| logging(&mut c, l, &base_dir, timezone))
        .unwrap_or_default();
    let retention = super::check_retention(&mut c, raw.retention.as_ref());
    let mut config = Config {
        retention,
        alerts,
        path: path.to_path_buf(),
        base_dir,
        timezone,
        language,
        tasks_dir,
        output_dir,
        templates_dir,
        node_name,
        store,
        export,
        scheduler,
        links,
        http,
        datasources: ds.specs,
        sql_gate_off: ds.sql_gate_off,
        sql_gate_strict: ds.sql_gate_strict,
        max_cost: ds.max_cost,
        require_read_only: ds.require_read_only,
        channels,
        ingest: None,
        secrets: Default::default(),
        logging,
    };
    // Ingest refers to datasources and channels: it is checked against the rest.
    config.ingest = raw
        .ingest
        .as_ref()
        .map(|i| (checks.ingest)(&mut c, i, &config));
    config.secrets = c.take_secrets();
    if !c.is_clean() {
        return Err(c.sorted());
    }
    Ok(config)
}

/// The `http:` section.
fn http(c: &mut Checker, raw: &Spanned<RawHttp>) -> HttpSpec {
    let h = &raw.value;
    let default: std::net::SocketAddr = super::DEFAULT_HTTP_LISTEN.parse().expect("valid");
    let listen = match &h.listen {
        Some(s) => {
            let v = c.env_req(s, "http.listen");
            v.trim().parse().unwrap_or_else(|_| {
                c.at(
                    s,
                    "http.listen",
                    format!(
                        "`{v}` is not a socket address such as `127.0.0.1:8481` or `[::1]:8481` (an IP address and a port)"
                    ),
                );
                default
            })
        }
        None => default,
    };
    const MIN_TTL: std::time::Duration = std::time::Duration::from_secs(5 * 60);
    const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
    let session_ttl = c.duration(
        &h.session_ttl,
        "http.session_ttl",
        std::time::Duration::from_secs(12 * 3600),
    );
    if let Some(t) = &h.session_ttl
        && !(MIN_TTL..=MAX_TTL).contains(&session_ttl)
    {
        c.at(
            t,
            "http.session_ttl",
            format!(
                "`{}` is not between 5m and 30d (how long a console login lasts)",
                t.value
            ),
        );
    }
    HttpSpec {
        listen,
        secure_cookies: h.secure_cookies.unwrap_or(false),
        trust_proxy: h.trust_proxy.unwrap_or(false),
        session_ttl,
    }
}

/// The `logging:` section.
fn logging(
    c: &mut Checker,
    raw: &Spanned<RawLogging>,
    base_dir: &Path,
    timezone: chrono_tz::Tz,
) -> LoggingSpec {
    const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
    let l = &raw.value;
    let mut filter = match &l.level {
        Some(v) => {
            let level = v.value.trim().to_ascii_lowercase();
            if LEVELS.contains(&level.as_str()) {
                level
            } else {
                c.at(
                    v,
                    "logging.level",
                    format!(
                        "unknown level `{}` (one of: {}){}",
                        v.value,
                        LEVELS.join(", "),
                        hint(&level, LEVELS)
                    ),
                );
                "info".into()
            }
        }
        None => "info".into(),
    };
    for (i, f) in l.filters.iter().enumerate() {
        let ok = f.value.split_once('=').is_some_and(|(target, level)| {
            !target.trim().is_empty()
                && !target.contains(',')
                && LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
        });
        if ok {
            filter.push(',');
            filter.push_str(f.value.trim());
        } else {
            c.at(
                f,
                format!("logging.filters[{i}]"),
                format!(
                    "`{}` is not `TARGET=LEVEL` (e.g. `ferry::store=debug`; levels: {})",
                    f.value,
                    LEVELS.join(", ")
                ),
            );
        }
    }
    let format = match &l.format {
        None => LogFormat::Text,
        Some(f) => match f.value.trim() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                c.at(
                    f,
                    "logging.format",
                    format!("unknown value `{other}` (one of: text, json)"),
                );
                LogFormat::Text
            }
        },
    };
    let file = l.file.as_ref().map(|f| {
        let f = &f.value;
        let path = resolve(base_dir, &c.env_req(&f.path, "logging.file.path"));
        let rotate_at = f.rotate_at.as_ref().and_then(|t| {
            chrono::NaiveTime::parse_from_str(t.value.trim(), "%H:%M")
                .map_err(|_| {
                    c.at(
                        t,
                        "logging.file.rotate_at",
                        format!("`{}` is not a time of day as HH:MM", t.value),
                    )
                })
                .ok()
        });
        let max_bytes = f.max_bytes.as_ref().and_then(|m| {
            if m.value < 1024 {
                c.at(m, "logging.file.max_bytes", "must be at least 1024");
                None
            } else {
                Some(m.value)
            }
        });
        let keep = match &f.keep {
            Some(k) if k.value == 0 || k.value > 10_000 => {
                c.at(k, "logging.file.keep", "must be between 1 and 10000");
                7
            }
            Some(k) => k.value,
            None => 7,
        };
        LogFileSpec {
            path,
            rotate_at,
            tz: timezone,
            max_bytes,
            keep,
            compress: f.compress.unwrap_or(true),
        }
    });
    LoggingSpec {
        filter,
        format,
        file,
    }
}

/// The `export:` defaults of every task.
fn export_defaults(
    c: &mut Checker,
    ex: RawExport,
    base_dir: &Path,
    output_dir: &Path,
) -> ExportDefaults {
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
        Some(t) => resolve(base_dir, &c.env_req(t, "export.temp_dir")),
        None => output_dir.join(".tmp"),
    };
    ExportDefaults {
        chunk_rows,
        timeout,
        directory,
        temp_dir,
    }
}

/// The `datasources:` section, each datasource checked.
#[derive(Default)]
struct Datasources {
    specs: BTreeMap<String, DatasourceSpec>,
    sql_gate_off: BTreeSet<String>,
    sql_gate_strict: BTreeSet<String>,
    max_cost: BTreeMap<String, f64>,
    require_read_only: BTreeMap<String, bool>,
}

fn datasources(
    c: &mut Checker,
    path: &Path,
    base_dir: &Path,
    raw: &BTreeMap<String, Spanned<RawDatasource>>,
    checks: &Checks,
) -> Datasources {
    let mut out = Datasources::default();
    for (name, ds) in raw {
        let field = format!("datasources.{name}");
        c.set_fallback(Problem::at(path, ds, "", "").pos);
        if !is_plain_name(name) {
            c.at(
                ds,
                &field,
                "datasource names may use letters, digits, `_` and `-` only",
            );
        }
        let (RawDatasource::Sqlite {
            sql_gate,
            max_cost,
            require_read_only,
            ..
        }
        | RawDatasource::Postgres {
            sql_gate,
            max_cost,
            require_read_only,
            ..
        }
        | RawDatasource::Mysql {
            sql_gate,
            max_cost,
            require_read_only,
            ..
        }
        | RawDatasource::Oracle {
            sql_gate,
            max_cost,
            require_read_only,
            ..
        }) = &ds.value;
        if let Some(r) = require_read_only {
            out.require_read_only.insert(name.clone(), r.value);
        }
        if let Some(g) = sql_gate {
            match &g.value {
                RawSqlGate::Bool(true) => {}
                RawSqlGate::Bool(false) => {
                    out.sql_gate_off.insert(name.clone());
                }
                RawSqlGate::Word(w) if w == "strict" => {
                    out.sql_gate_strict.insert(name.clone());
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
                out.max_cost.insert(name.clone(), m.value);
            }
        }
        if let Some(spec) = (checks.datasource)(c, base_dir, &field, ds) {
            out.specs.insert(name.clone(), spec);
        }
    }
    out
}

/// The `channels:` section, each channel checked.
fn channels(
    c: &mut Checker,
    path: &Path,
    base_dir: &Path,
    templates_dir: &Path,
    raw: &BTreeMap<String, Spanned<RawChannel>>,
    links: bool,
    checks: &Checks,
) -> BTreeMap<String, ChannelSpec> {
    let mut out = BTreeMap::new();
    for (name, ch) in raw {
        let field = format!("channels.{name}");
        c.set_fallback(Problem::at(path, ch, "", "").pos);
        if !is_plain_name(name) {
            c.at(
                ch,
                &field,
                "channel names may use letters, digits, `_` and `-` only",
            );
        }
        if let Some(spec) = (checks.channel)(c, base_dir, templates_dir, name, &field, ch, links) {
            out.insert(name.clone(), spec);
        }
    }
    out
}

/// The `alerts:` section: its channel must exist and its template compile.
fn alerts(
    c: &mut Checker,
    a: &Spanned<RawAlerts>,
    channels: &BTreeMap<String, ChannelSpec>,
    templates_dir: &Path,
    checks: &Checks,
) -> AlertsSpec {
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
    let known = (checks.alert_variables)();
    if let Err(e) = MessageTemplate::locate(templates_dir, &template).check(&known) {
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
}

pub(crate) fn default_node_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}

pub(crate) fn scheduler_settings(
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
        Some(t) => super::parse_duration_ms(&t.value).unwrap_or_else(|e| {
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
    s.quiet_hours = c.quiet_windows(&raw.quiet_hours, "scheduler.quiet_hours", default_tz);
    s
}
