//! What a run prepares before it writes anything, shared with `ferry run --dry-run`: the
//! checks up to a connected source ([`preflight`]: SQL gate, connection, read-only check,
//! cost guard), where its files go ([`output_names`]) and each notify entry's message
//! ([`render_message`]).

use crate::config::{Config, NotifySpec, TaskSpec};
use crate::format;
use crate::notify::{self, Message};
use crate::params::RunParams;
use crate::source;
use crate::store::FileRecord;
use crate::template::{self, MessageTemplate};

use super::RunResult;

/// The folder a run's files go to and their base name (without extension), from
/// `export.directory` and `output.file_name`.
pub fn output_names(
    config: &Config,
    task: &TaskSpec,
    params: &RunParams,
    run_id: &str,
) -> Result<(std::path::PathBuf, String), String> {
    let ctx = params.template_context(&task.name, run_id);
    let folder = template::render_str(&config.export.directory, &ctx)
        .map_err(|e| format!("export.directory: {e}"))?;
    let dir = config.output_dir.join(format::sanitize_dir(&folder));
    let name = template::render_str(&task.output.file_name, &ctx)
        .map_err(|e| format!("output.file_name: {e}"))?;
    Ok((dir, format::sanitize_file_name(&name)))
}

/// What comes before a run writes anything: the SQL gate, the connection, the
/// `require_read_only` check and the cost guard. Returns the connected source, or why the
/// run cannot go on (`ferry run --dry-run` stops here too).
pub async fn preflight(
    config: &Config,
    task: &TaskSpec,
    params: &RunParams,
    clock: &dyn crate::clock::Clock,
) -> Result<Box<dyn source::Source>, String> {
    let spec = config
        .datasources
        .get(&task.source)
        .ok_or_else(|| format!("datasource `{}` is not defined in config.yaml", task.source))?;
    let sql = || {
        task.queries
            .iter()
            .filter_map(|q| Some((q, q.query.sql()?)))
    };
    // The parser gate, before anything connects (validation normally caught this
    // already). SQL queries only.
    if let Some((dialect, mode)) = config.sql_gate(&task.source) {
        for (q, sql) in sql() {
            crate::sqlgate::check(sql, dialect, mode).map_err(|reason| match &q.sheet {
                Some(sheet) => format!("query \"{sheet}\": {reason}"),
                None => format!("query {reason}"),
            })?;
        }
    }
    let source = source::build(&task.source, spec)
        .await
        .map_err(|e| e.to_string())?;
    // Least privilege, checked: before anything runs on a datasource that requires it.
    if config.requires_read_only(&task.source) {
        source::access::require_read_only(&task.source, spec, source.as_ref(), clock)
            .await
            .map_err(|e| e.to_string())?;
    }
    // The cost guard, before anything is written. SQL queries only: `max_cost` prices
    // them with the database's planner.
    if let Some(&max_cost) = config.max_cost.get(&task.source) {
        for (q, sql) in sql() {
            check_cost(
                source.as_ref(),
                &task.source,
                q,
                sql,
                params,
                task.timeout,
                max_cost,
            )
            .await?;
        }
    }
    Ok(source)
}

/// Which entry of the task's `notify` list on its channel entry `i` is: 1 for the first
/// on that channel, 2 for the second, … (with the run id and channel it names the
/// delivery).
pub fn occurrence(task: &TaskSpec, i: usize) -> usize {
    let channel = &task.notify[i].channel;
    1 + task.notify[..i]
        .iter()
        .filter(|m| &m.channel == channel)
        .count()
}

/// Renders one notify entry's message for run `r` of `task` (`ctx`: the run's
/// [`RunReport::context`]; `link`: its first file's download link).
pub fn render_message(
    config: &Config,
    task: &TaskSpec,
    r: &RunResult,
    n: &NotifySpec,
    occurrence: usize,
    ctx: &minijinja::Value,
    link: Option<String>,
) -> Result<Message, String> {
    let Some(spec) = config.channels.get(&n.channel) else {
        return Err("channel is not defined".into());
    };
    let tpl = MessageTemplate::in_language(&config.templates_dir, &n.template, task.language);
    let via = notify::FilesVia::of(&spec.kind, n.delivery, link.is_some());
    let ctx = minijinja::context! { files_via => via.as_str(), ..ctx.clone() };
    let (subject, body) = tpl.render(&ctx)?;
    let caps = notify::capabilities(&spec.kind);
    let html = if caps.html {
        tpl.render_html(&ctx)?
    } else {
        None
    };
    Ok(Message {
        task: task.name.clone(),
        run_id: r.run_id.clone(),
        channel: n.channel.clone(),
        occurrence,
        recipients: n.recipients.clone(),
        cc: n.cc.clone(),
        bcc: n.bcc.clone(),
        subject,
        body,
        html,
        // Absolute, as the ledger keeps them: a retry may come from a process with
        // another working folder (`ferry serve` after `ferry run --config config.yaml`).
        attachments: r
            .files
            .iter()
            .map(|f| FileRecord {
                path: std::path::absolute(&f.path)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| f.path.clone()),
                ..f.clone()
            })
            .collect(),
        link,
        delivery: n.delivery,
        sizes: caps.sizes,
        via: None,
        thread: None,
    })
}

/// Refuses a query whose planner estimate exceeds the datasource's `max_cost`.
async fn check_cost(
    source: &dyn source::Source,
    datasource: &str,
    query: &crate::config::QuerySpec,
    sql: &str,
    params: &RunParams,
    timeout: std::time::Duration,
    max_cost: f64,
) -> Result<(), String> {
    let which = match &query.sheet {
        Some(sheet) => format!("query \"{sheet}\""),
        None => "the query".to_string(),
    };
    let estimate = source
        .estimate_cost(source::PlanRequest {
            sql,
            params,
            timeout,
        })
        .await
        .map_err(|e| format!("{which}: {e}"))?;
    let Some(e) = estimate else {
        return Err(format!(
            "{which}: datasource `{datasource}` gives no cost estimate, so max_cost cannot be checked"
        ));
    };
    if e.cost > max_cost {
        let rows = e
            .rows
            .map(|r| format!(", about {} rows", human_count(r)))
            .unwrap_or_default();
        return Err(format!(
            "{which} was refused by the cost guard: estimated cost {} ({}{rows}) exceeds max_cost {} of datasource `{datasource}`; narrow the query (a date range, an indexed filter) or raise max_cost",
            human_count(e.cost),
            e.unit,
            human_count(max_cost),
        ));
    }
    Ok(())
}

/// A planner number for messages: `12345678.9` → `12,345,679`.
fn human_count(n: f64) -> String {
    template::group_thousands(n.max(0.0).round() as u64)
}
