//! `/tasks`: list, get (config and YAML), create or replace (YAML or JSON, validated by
//! `ferry validate`'s checks, written atomically through [`crate::edit`]), delete, pause,
//! resume, run now, and the revision history (list, one revision with its diff,
//! restore).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::routing::{delete, get, post, put};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    ApiError, ApiResult, ApiState, Json, ProblemJson, Route, parse_body, parse_instant_param,
    schema,
};
use crate::access::{Actor, Role};
use crate::config::{Project, TaskSpec};
use crate::edit::{EditError, Editor, Expect};
use crate::scheduler::RunNowError;
use crate::store::{RevisionRecord, RunRecord, Status, TaskPause};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::GET,
            "/tasks",
            Some(Role::Viewer),
            "Every task with its last run and next fire (invalid task files too)",
            schema::<Vec<TaskSummary>>,
            || get(list),
        ),
        Route::new(
            Method::GET,
            "/tasks/{name}",
            Some(Role::Viewer),
            "One task: its settings and its YAML file",
            schema::<TaskDetail>,
            || get(one),
        ),
        Route::new(
            Method::PUT,
            "/tasks/{name}",
            Some(Role::Editor),
            "Create or replace a task from YAML (text) or JSON; validated first (422 with each problem at its line), written atomically, kept as a revision",
            schema::<Written>,
            || put(write),
        )
        .body(schema::<serde_json::Value>),
        Route::new(
            Method::DELETE,
            "/tasks/{name}",
            Some(Role::Editor),
            "Delete a task's file (its revisions stay)",
            schema::<Written>,
            || delete(remove),
        ),
        Route::new(
            Method::POST,
            "/tasks/{name}/pause",
            Some(Role::Operator),
            "Pause a task: its fires are recorded as skipped until resumed",
            schema::<TaskPause>,
            || post(pause),
        )
        .body(schema::<PauseBody>),
        Route::new(
            Method::POST,
            "/tasks/{name}/resume",
            Some(Role::Operator),
            "End a task's pause",
            schema::<TaskPause>,
            || post(resume),
        ),
        Route::new(
            Method::POST,
            "/tasks/{name}/run",
            Some(Role::Operator),
            "Run a task now through the daemon's scheduler, optionally for a past fire (`at`, as `ferry run --at`)",
            schema::<Started>,
            || post(run_now),
        )
        .body(schema::<RunBody>),
        Route::new(
            Method::GET,
            "/tasks/{name}/revisions",
            Some(Role::Viewer),
            "The task file's revisions, oldest first (without their text)",
            schema::<Vec<RevisionRecord>>,
            || get(revisions),
        ),
        Route::new(
            Method::GET,
            "/tasks/{name}/revisions/{rev}",
            Some(Role::Viewer),
            "One revision: its text and its unified diff against the revision before",
            schema::<RevisionDetail>,
            || get(revision),
        ),
        Route::new(
            Method::POST,
            "/tasks/{name}/revisions/{rev}/restore",
            Some(Role::Editor),
            "Write a revision back as the task file (validated again), as a new revision",
            schema::<Written>,
            || post(restore),
        ),
    ]
}

/// The last run of a task.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LastRun {
    pub run_id: String,
    pub status: Status,
    pub trigger: String,
    pub scheduled_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub rows: u64,
}

impl From<&RunRecord> for LastRun {
    fn from(r: &RunRecord) -> LastRun {
        LastRun {
            run_id: r.run_id.clone(),
            status: r.status,
            trigger: r.trigger.clone(),
            scheduled_at: r.scheduled_at,
            finished_at: r.finished_at,
            duration_ms: r.duration_ms,
            rows: r.rows,
        }
    }
}

/// A task in the list.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskSummary {
    pub name: String,
    /// False for a task file that does not validate (see `problems`).
    pub valid: bool,
    /// The file was written but `ferry serve` has not applied it yet (its next reload
    /// will, within about a second).
    pub pending_reload: bool,
    pub enabled: bool,
    pub description: Option<String>,
    pub schedule: Option<String>,
    /// IANA zone of the schedule.
    pub timezone: Option<String>,
    /// The datasource.
    pub source: Option<String>,
    /// `csv`, `xlsx`, `csv+zip`, …
    pub format: Option<String>,
    pub paused: Option<TaskPause>,
    /// The next fire (UTC), unless disabled, paused or invalid.
    pub next_fire: Option<DateTime<Utc>>,
    /// The same in the task's zone.
    pub next_fire_local: Option<String>,
    pub last_run: Option<LastRun>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemJson>,
}

/// A task's settings as validated.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskConfig {
    pub owners: Vec<String>,
    pub period: String,
    pub concurrency: String,
    pub catch_up: String,
    pub timeout_secs: u64,
    pub misfire_grace_secs: u64,
    pub chunk_rows: usize,
    /// One entry per query: its sheet (or part) name and SQL.
    pub queries: Vec<QueryView>,
    /// The channels notified, in order.
    pub notify: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct QueryView {
    pub sheet: Option<String>,
    pub sql: Option<String>,
}

/// One task.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub summary: TaskSummary,
    /// Absent for an invalid task file.
    pub config: Option<TaskConfig>,
    /// The task file as on disk, a notify entry's literal robot `secret` shown as `***`
    /// and its `webhook`'s token redacted (`${VAR}` references as written).
    pub yaml: Option<String>,
    /// Where it is, relative to config.yaml.
    pub file: String,
    /// SHA-256 of the file (before masking): send it back as `If-Match` with a write so
    /// that a change made meanwhile is not overwritten (`412`).
    pub sha256: Option<String>,
}

/// What a write did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Written {
    pub task: String,
    /// The revision recorded for this change.
    pub revision: u32,
    /// A new task (not a replacement).
    pub created: bool,
    pub message: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    /// Why, recorded with the pause and on every fire it skips.
    pub reason: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Run as if scheduled at this instant (RFC 3339): the date parameters follow it; a
    /// fire runs at most once. Default: now.
    pub at: Option<String>,
}

/// A run started by hand.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Started {
    pub run_id: String,
    pub task: String,
    pub trigger: String,
    pub started_by: String,
}

/// One revision with its diff.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RevisionDetail {
    #[serde(flatten)]
    pub revision: RevisionRecord,
    /// Unified diff against the revision before it.
    pub diff: String,
}

fn format_of(t: &TaskSpec) -> String {
    let mut f = t.output.format.extension().to_string();
    if t.output.zip {
        f.push_str("+zip");
    }
    f
}

/// A task's file as the daemon runs it (`project`), or else as found on disk
/// (written, not applied by a reload yet).
enum Loaded<'a> {
    Valid(&'a TaskSpec),
    Invalid(&'a [crate::config::Problem]),
}

fn summary(
    project: &Project,
    name: &str,
    loaded: Loaded<'_>,
    paused: &BTreeMap<String, TaskPause>,
    last: &BTreeMap<String, RunRecord>,
    now: DateTime<Utc>,
) -> TaskSummary {
    let pause = paused.get(name).cloned();
    let last_run = last.get(name).map(LastRun::from);
    let pending_reload = !project.all_names().contains(&name);
    match loaded {
        Loaded::Valid(t) => {
            let next = (t.enabled && pause.is_none())
                .then(|| t.schedule.next_after(now))
                .flatten();
            TaskSummary {
                name: name.to_string(),
                valid: true,
                pending_reload,
                enabled: t.enabled,
                description: t.description.clone(),
                schedule: Some(t.schedule.expr().to_string()),
                timezone: Some(t.timezone.name().to_string()),
                source: Some(t.source.clone()),
                format: Some(format_of(t)),
                paused: pause,
                next_fire: next,
                next_fire_local: next.map(|n| {
                    n.with_timezone(&t.timezone)
                        .format("%Y-%m-%d %H:%M:%S %:z")
                        .to_string()
                }),
                last_run,
                problems: Vec::new(),
            }
        }
        Loaded::Invalid(problems) => TaskSummary {
            name: name.to_string(),
            valid: false,
            pending_reload,
            enabled: false,
            description: None,
            schedule: None,
            timezone: None,
            source: None,
            format: None,
            paused: pause,
            next_fire: None,
            next_fire_local: None,
            last_run,
            problems: problems
                .iter()
                .map(|p| ProblemJson::of(p, &project.config.base_dir))
                .collect(),
        },
    }
}

/// How the daemon has task `name`.
fn loaded<'a>(project: &'a Project, name: &str) -> Loaded<'a> {
    match project.tasks.get(name) {
        Some(t) => Loaded::Valid(t),
        None => Loaded::Invalid(
            project
                .task_problems
                .get(name)
                .map_or(&[][..], Vec::as_slice),
        ),
    }
}

async fn context(
    st: &ApiState,
    tasks: &[&str],
) -> Result<(BTreeMap<String, TaskPause>, BTreeMap<String, RunRecord>), ApiError> {
    let paused = st
        .store
        .paused_tasks()
        .await?
        .into_iter()
        .map(|p| (p.task.clone(), p))
        .collect();
    let last = st
        .store
        .last_runs(tasks)
        .await?
        .into_iter()
        .map(|r| (r.task.clone(), r))
        .collect();
    Ok((paused, last))
}

async fn list(State(st): State<Arc<ApiState>>) -> ApiResult<Vec<TaskSummary>> {
    let project = st.project();
    let (paused, last) = context(&st, &project.all_names()).await?;
    let now = st.clock.now();
    Ok(Json(
        project
            .all_names()
            .into_iter()
            .map(|n| summary(&project, n, loaded(&project, n), &paused, &last, now))
            .collect(),
    ))
}

fn unknown(project: &Project, name: &str) -> ApiError {
    let names = project.all_names();
    ApiError::not_found(format!(
        "unknown task `{name}`{}",
        crate::config::problem::hint(name, names.iter().copied())
    ))
}

async fn one(State(st): State<Arc<ApiState>>, Path(name): Path<String>) -> ApiResult<TaskDetail> {
    let project = st.project();
    let path = crate::edit::task_path(&project.config, &name);
    let known = project.all_names().contains(&name.as_str());
    // A file written but not applied yet is read as the next reload will read it.
    let on_disk = (!known && crate::template::is_plain_name(&name) && path.is_file())
        .then(|| crate::config::load_task(&project.config, &name, &path, &crate::plugins::CHECKS));
    let state = match (&on_disk, known) {
        (_, true) => loaded(&project, &name),
        (Some(Ok(t)), false) => Loaded::Valid(t),
        (Some(Err(p)), false) => Loaded::Invalid(p),
        (None, false) => return Err(unknown(&project, &name)),
    };
    let (paused, last) = context(&st, &[name.as_str()]).await?;
    let spec = match state {
        Loaded::Valid(t) => Some(t),
        Loaded::Invalid(_) => None,
    };
    let config = spec.map(|t| TaskConfig {
        owners: t.owners.clone(),
        period: format!("{:?}", t.period).to_lowercase(),
        concurrency: format!("{:?}", t.concurrency).to_lowercase(),
        catch_up: format!("{:?}", t.catch_up).to_lowercase(),
        timeout_secs: t.timeout.as_secs(),
        misfire_grace_secs: t.misfire_grace.as_secs(),
        chunk_rows: t.chunk_rows,
        queries: t
            .queries
            .iter()
            .map(|q| QueryView {
                sheet: q.sheet.clone(),
                sql: q.query.sql().map(String::from),
            })
            .collect(),
        notify: t.notify.iter().map(|n| n.channel.clone()).collect(),
    });
    let file = spec.map_or(path.clone(), |t| t.file.clone());
    let text = std::fs::read_to_string(&file).ok();
    Ok(Json(TaskDetail {
        summary: summary(&project, &name, state, &paused, &last, st.clock.now()),
        config,
        sha256: text.as_deref().map(crate::edit::sha256),
        yaml: text.as_deref().map(crate::edit::redact::redact),
        file: file
            .strip_prefix(&project.config.base_dir)
            .unwrap_or(&file)
            .display()
            .to_string(),
    }))
}

fn edit_error(e: EditError, project: &Project) -> ApiError {
    match e {
        EditError::BadName(_) => ApiError::bad_request(e.to_string()),
        EditError::Invalid(problems) => {
            let mut err = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_task",
                format!(
                    "the task has {} problem(s); nothing was written",
                    problems.len()
                ),
            );
            err.problems = problems
                .iter()
                .map(|p| ProblemJson::of(p, &project.config.base_dir))
                .collect();
            err
        }
        EditError::NotFound(m) => ApiError::not_found(m),
        EditError::Changed(m) => {
            ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", m)
        }
        EditError::Io { .. } => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        }
        EditError::Store(e) => e.into(),
    }
}

fn editor<'a>(st: &'a ApiState, project: &'a Project, actor: &'a Actor) -> Editor<'a> {
    Editor {
        config: &project.config,
        store: &*st.store,
        author: &actor.name,
        now: st.clock.now(),
    }
}

/// `If-Match: "SHA256"` (the `sha256` or `ETag` of a read) or `If-None-Match: *`.
fn expect_of(headers: &HeaderMap) -> Expect {
    let get = |h| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    if get(header::IF_NONE_MATCH).as_deref() == Some("*") {
        return Expect::Absent;
    }
    match get(header::IF_MATCH) {
        Some(tag) if tag != "*" => Expect::Sha256(tag),
        _ => Expect::Any,
    }
}

const APPLIED: &str = "written; `ferry serve` applies it at its next reload (within a second)";

async fn write(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Written> {
    let project = st.project();
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let text = if json {
        let value: serde_json::Value = parse_body(&body)?;
        match value {
            serde_json::Value::Object(ref m) if m.len() == 1 && m.contains_key("yaml") => m["yaml"]
                .as_str()
                .map(String::from)
                .ok_or_else(|| ApiError::bad_request("`yaml` must be a string"))?,
            serde_json::Value::Object(_) => crate::edit::yaml::from_json(&value),
            _ => return Err(ApiError::bad_request("the task must be a JSON object")),
        }
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_request("the task file must be UTF-8 text"))?
    };
    let (revision, created) = editor(&st, &project, &actor)
        .write(&name, &text, &expect_of(&headers))
        .await
        .map_err(|e| edit_error(e, &project))?;
    let action = if created {
        "task.create"
    } else {
        "task.replace"
    };
    st.audit(&actor, action, &name, Some(format!("revision {revision}")))
        .await;
    Ok(Json(Written {
        task: name,
        revision,
        created,
        message: APPLIED.into(),
    }))
}

async fn remove(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Written> {
    let project = st.project();
    let revision = editor(&st, &project, &actor)
        .delete(&name, &expect_of(&headers))
        .await
        .map_err(|e| edit_error(e, &project))?;
    st.audit(
        &actor,
        "task.delete",
        &name,
        Some(format!("revision {revision}")),
    )
    .await;
    Ok(Json(Written {
        task: name,
        revision,
        created: false,
        message: "deleted; `ferry serve` stops scheduling it at its next reload".into(),
    }))
}

async fn pause(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<TaskPause> {
    let project = st.project();
    if !project.all_names().contains(&name.as_str()) {
        return Err(unknown(&project, &name));
    }
    let body: PauseBody = parse_body(&body)?;
    let pause = TaskPause {
        task: name.clone(),
        by: actor.name.clone(),
        reason: body
            .reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty()),
        at: st.clock.now(),
    };
    st.store.pause_task(&pause).await?;
    st.audit(&actor, "task.pause", &name, pause.reason.clone())
        .await;
    Ok(Json(pause))
}

async fn resume(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<TaskPause> {
    match st.store.resume_task(&name).await? {
        Some(p) => {
            st.audit(&actor, "task.resume", &name, None).await;
            Ok(Json(p))
        }
        None => Err(ApiError::conflict(format!("task `{name}` is not paused"))),
    }
}

async fn run_now(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Started> {
    let body: RunBody = parse_body(&body)?;
    let at = body
        .at
        .as_deref()
        .map(|s| parse_instant_param("at", s))
        .transpose()?;
    match st.ops.run_now(&name, at, actor.name.clone()).await {
        Ok(run_id) => {
            st.audit(&actor, "run.start", &name, Some(run_id.clone()))
                .await;
            Ok(Json(Started {
                run_id,
                task: name,
                trigger: "manual".into(),
                started_by: actor.name,
            }))
        }
        Err(RunNowError::UnknownTask(_)) => {
            let project = st.project();
            if project.all_names().contains(&name.as_str()) {
                Err(ApiError::conflict(format!(
                    "task `{name}` is invalid or disabled: it cannot run"
                )))
            } else {
                Err(unknown(&project, &name))
            }
        }
        Err(e @ (RunNowError::Taken(_) | RunNowError::Skipped { .. })) => {
            Err(ApiError::conflict(e.to_string()))
        }
        Err(RunNowError::ShuttingDown) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "ferry is shutting down",
        )),
        Err(RunNowError::Store(e)) => Err(e.into()),
    }
}

async fn revisions(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> ApiResult<Vec<RevisionRecord>> {
    let mut list = st.store.revisions(&name).await?;
    for r in &mut list {
        r.content = None;
    }
    Ok(Json(list))
}

async fn revision(
    State(st): State<Arc<ApiState>>,
    Path((name, rev)): Path<(String, u32)>,
) -> ApiResult<RevisionDetail> {
    let mut history = st.store.revisions(&name).await?;
    for r in &mut history {
        r.content = r.content.as_deref().map(crate::edit::redact::redact);
    }
    let diff = crate::edit::revision_diff(&history, rev)
        .ok_or_else(|| ApiError::not_found(format!("task `{name}` has no revision {rev}")))?;
    let revision = history
        .into_iter()
        .find(|r| r.rev == rev)
        .expect("found above");
    Ok(Json(RevisionDetail { revision, diff }))
}

async fn restore(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Path((name, rev)): Path<(String, u32)>,
) -> ApiResult<Written> {
    let project = st.project();
    let revision = editor(&st, &project, &actor)
        .restore(&name, rev)
        .await
        .map_err(|e| edit_error(e, &project))?;
    st.audit(
        &actor,
        "task.restore",
        &name,
        Some(format!("revision {rev} as revision {revision}")),
    )
    .await;
    Ok(Json(Written {
        task: name,
        revision,
        created: false,
        message: APPLIED.into(),
    }))
}
