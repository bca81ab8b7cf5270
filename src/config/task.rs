//! Task files: `tasks/<name>.yaml`, each checked against the validated config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::check::{Checker, Checks};
use super::load::MAX_CHUNK_ROWS;
use super::output::{check_sheet_name, validate_output};
use super::positions::Positions;
use super::raw::{RawNotify, RawParam, RawTask};
use super::yaml::{parse_yaml, read_file};
use super::{
    CatchUp, Concurrency, Config, NotifyOn, NotifySpec, OnEmpty, Problem, Query, QuerySpec,
    TaskSpec, problem::hint, resolve,
};
use crate::fsread::{self, Kind};
use crate::params::{self, ParamValue, Period};
use crate::schedule::{Schedule, parse_zone};
use crate::template::{MessageTemplate, is_plain_name};

/// Most entries of a task's `queries` list.
pub(crate) const MAX_QUERIES: usize = 50;

/// The task files in `tasks_dir` (`*.yaml`, `*.yml`), sorted by name.
pub fn task_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            // Anything but a folder: a FIFO or device named `*.yaml` is reported (reading
            // refuses it), not skipped in silence.
            !p.is_dir()
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
pub fn load_tasks(
    config: &Config,
    checks: &Checks,
) -> (BTreeMap<String, TaskSpec>, BTreeMap<String, Vec<Problem>>) {
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
    let loaded = load_all(config, checks, &files);
    for (file, loaded) in files.iter().zip(loaded) {
        let name = task_name(file);
        if let Some(prev) = tasks.get(&name).map(|t: &TaskSpec| t.file.clone()) {
            problems.entry(name.clone()).or_default().push(Problem::new(
                file,
                "",
                format!("task `{name}` is also defined by {}", prev.display()),
            ));
            continue;
        }
        match loaded {
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

/// A task's name: its file name without the extension.
fn task_name(file: &Path) -> String {
    file.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string()
}

/// Loads `files`, in their order, on one thread per core (each file is independent):
/// 10,000 task files load in about half the time on two cores. A thread that cannot be
/// started leaves its share to this one.
fn load_all(
    config: &Config,
    checks: &Checks,
    files: &[PathBuf],
) -> Vec<Result<TaskSpec, Vec<Problem>>> {
    let load_part = |part: &[PathBuf]| -> Vec<Result<TaskSpec, Vec<Problem>>> {
        part.iter()
            .map(|f| load_task(config, &task_name(f), f, checks))
            .collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads < 2 || files.len() < 64 {
        return load_part(files);
    }
    let (stack, on_start) = checks.task_thread;
    std::thread::scope(|scope| {
        let parts: Vec<_> = files
            .chunks(files.len().div_ceil(threads))
            .map(|part| {
                let spawned = std::thread::Builder::new()
                    .name("load-tasks".into())
                    .stack_size(stack)
                    .spawn_scoped(scope, move || {
                        on_start();
                        load_part(part)
                    });
                (part, spawned)
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(part, spawned)| match spawned {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => load_part(part),
            })
            .collect()
    })
}

/// Loads and validates one task file.
pub fn load_task(
    config: &Config,
    name: &str,
    file: &Path,
    checks: &Checks,
) -> Result<TaskSpec, Vec<Problem>> {
    let text = read_file(file, Kind::Task).map_err(|p| vec![p])?;
    check_task_text(config, name, file, &text, checks)
}

/// Validates the text of a task file that is (or is about to be) at `file`: exactly what
/// loading that file does, so that a file written after this check loads the same.
pub fn check_task_text(
    config: &Config,
    name: &str,
    file: &Path,
    text: &str,
    checks: &Checks,
) -> Result<TaskSpec, Vec<Problem>> {
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
    let raw: RawTask = parse_yaml(file, text).map_err(|p| vec![p])?;
    validate_task(config, name, file, raw, Positions::index(text), checks)
}

/// Validates a parsed task against the config.
pub fn validate_task(
    config: &Config,
    name: &str,
    file: &Path,
    raw: RawTask,
    positions: Positions,
    checks: &Checks,
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

    let fixed = fixed_params(&mut c, &raw.params);
    let queries = task_queries(&mut c, config, file, &raw, &fixed, checks);

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
    // A query that reads `:period_*` gets its data for the (default) period even when
    // the task does not name one.
    let reports_period = raw.period.is_some()
        || queries.iter().filter_map(|q| q.query.sql()).any(|sql| {
            crate::params::scan(sql)
                .iter()
                .any(|p| p.name.starts_with("period_"))
        });
    let language = match &raw.language {
        Some(l) => super::Language::parse(&l.value).unwrap_or_else(|e| {
            c.at(l, "language", e);
            config.language
        }),
        None => config.language,
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

    let calendar = reports_period && !matches!(period, Period::Hour | Period::Schedule);
    let default_name = if calendar {
        super::output::PERIOD_FILE_NAME
    } else {
        super::output::DEFAULT_FILE_NAME
    };
    let output = validate_output(&mut c, &raw.output, name, &fixed, timezone, default_name);
    let notify = notify_entries(&mut c, config, &raw.notify, checks, language);

    for (i, o) in raw.owners.iter().enumerate() {
        if !looks_like_email(o) {
            c.plain(
                format!("owners[{i}]"),
                format!("`{o}` is not an email address"),
            );
        }
    }

    let retention = super::check_retention(&mut c, raw.retention.as_ref());
    match (schedule, c.is_clean()) {
        (Some(schedule), true) => Ok(TaskSpec {
            retention,
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
            reports_period,
            language,
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

impl TaskSpec {
    /// The parameter values of a run scheduled at `at`, with what its data covers.
    pub fn run_params(&self, at: chrono::DateTime<chrono::Utc>) -> crate::params::RunParams {
        let params = crate::params::RunParams::compute(
            at,
            self.timezone,
            self.period,
            Some(&self.schedule),
            &self.params,
        );
        if self.reports_period {
            params
        } else {
            params.as_of_run()
        }
    }
}

/// The task's fixed `params` (names checked; built-in names refused).
fn fixed_params(
    c: &mut Checker,
    raw: &BTreeMap<String, Spanned<RawParam>>,
) -> BTreeMap<String, ParamValue> {
    let mut fixed = BTreeMap::new();
    for (k, v) in raw {
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
    fixed
}

/// The task's SQL: `query`, `query_file`, or the `queries` list (one sheet each).
fn task_queries(
    c: &mut Checker,
    config: &Config,
    file: &Path,
    raw: &RawTask,
    fixed: &BTreeMap<String, ParamValue>,
    checks: &Checks,
) -> Vec<QuerySpec> {
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
                    c,
                    (config, checks),
                    &raw.source.value,
                    fixed,
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
                c,
                (config, checks),
                &raw.source.value,
                fixed,
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
    queries
}

/// The task's `notify` entries, each against the channel it names.
fn notify_entries(
    c: &mut Checker,
    config: &Config,
    raw: &[Spanned<RawNotify>],
    checks: &Checks,
    language: super::Language,
) -> Vec<NotifySpec> {
    let mut notify = Vec::new();
    for (i, n) in raw.iter().enumerate() {
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
                let known = (checks.report_variables)();
                if let Err(e) = MessageTemplate::locate(&config.templates_dir, t).check(&known) {
                    c.at(n, format!("{field}.template"), e);
                }
                t.clone()
            }
            None => ch.template.clone(),
        };
        // The template in the task's language, when that is another file.
        if language != super::Language::En {
            let tpl = MessageTemplate::in_language(&config.templates_dir, &template, language);
            if tpl.name != template
                && let Err(e) = tpl.check(&(checks.report_variables)())
            {
                c.at(n, format!("{field}.template"), e);
            }
        }
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
        let targets = (checks.notify_entry)(c, n, &field, ch, config.links.is_some());
        notify.push(NotifySpec {
            delivery: targets.delivery,
            channel: ch.name.clone(),
            template,
            recipients: targets.recipients,
            cc: targets.cc,
            bcc: targets.bcc,
            webhook: targets.webhook,
            secret: targets.secret,
            on,
        });
    }
    notify
}

/// Checks one query given as `query` or `query_file` (under `prefix`, e.g. `queries[1].`):
/// exactly one of them, readable, not empty, known parameters, the SQL gate. Returns the
/// SQL. `entry` is where a missing query is reported (a `queries` entry).
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_query<T>(
    c: &mut Checker,
    (config, checks): (&Config, &Checks),
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
            match fsread::read_text(&p, Kind::Query) {
                Ok(s) => (s, f, "query_file"),
                Err(e) => {
                    c.at(f, format!("{prefix}query_file"), e.to_string());
                    return None;
                }
            }
        }
    };
    let field = format!("{prefix}{field}");
    if q.trim().is_empty() {
        c.at(span, &field, "the query is empty");
    } else if let Err(reason) = (checks.sql_gate)(config, source, &q) {
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

pub(crate) fn looks_like_email(s: &str) -> bool {
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
