//! `/runs` (filtered, keyset pages with an opaque cursor; one run with its files and
//! deliveries; cancel), `/deliveries` (the queue and the failures; retry now),
//! `/datasources` and `/channels` (where they point, without secrets; test) and
//! `/status`.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use base64::Engine;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, ApiState, Json, Route, parse_body, parse_instant_param, schema};
use crate::access::{Actor, Role};
use crate::store::{DeliveryKey, QueuedEntry, RunQuery, RunRecord, Status};

pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::GET,
            "/status",
            Some(Role::Viewer),
            "The daemon: node, version, uptime, store, task counts, running runs, services",
            schema::<StatusView>,
            || get(status),
        ),
        Route::new(
            Method::GET,
            "/runs",
            Some(Role::Viewer),
            "Runs, newest fire first, in pages (keyset: pass `next_cursor` back as `cursor`)",
            schema::<RunPage>,
            || get(list),
        )
        .query(&[
                ("task", "only this task"),
                (
                    "status",
                    "running, succeeded, failed, skipped, missed, cancelled or deferred",
                ),
                ("trigger", "schedule, manual or mail"),
                ("since", "fires at or after this RFC 3339 instant"),
                ("until", "fires before this RFC 3339 instant"),
                ("limit", "runs per page, 1 to 500 (default 50)"),
                ("cursor", "the `next_cursor` of the previous page"),
            ]),
        Route::new(
            Method::GET,
            "/runs/{id}",
            Some(Role::Viewer),
            "One run with its files, deliveries (each recipient) and owner alerts",
            schema::<RunRecord>,
            || get(one),
        ),
        Route::new(
            Method::POST,
            "/runs/{id}/cancel",
            Some(Role::Operator),
            "Cancel a run of this daemon (recorded cancelled, its files dropped)",
            schema::<Cancelled>,
            || post(cancel),
        ),
        Route::new(
            Method::GET,
            "/deliveries",
            Some(Role::Viewer),
            "Deliveries still to go out (`state=pending`, the default) or given up (`state=failed`)",
            schema::<Vec<QueuedEntry>>,
            || get(deliveries),
        )
        .query(&[
                ("state", "pending (pending and sending) or failed"),
                ("limit", "at most this many, 1 to 1000 (default 200)"),
            ]),
        Route::new(
            Method::POST,
            "/deliveries/{run_id}/{channel}/{occurrence}/retry",
            Some(Role::Operator),
            "Try a pending or failed delivery again now",
            schema::<Retried>,
            || post(retry),
        ),
        Route::new(
            Method::GET,
            "/datasources",
            Some(Role::Viewer),
            "The datasources: type, where (password redacted), tasks using them",
            schema::<Vec<PluginView>>,
            || get(datasources),
        ),
        Route::new(
            Method::POST,
            "/datasources/{name}/test",
            Some(Role::Operator),
            "Connect to a datasource and say what its account could change",
            schema::<SourceTest>,
            || post(test_source),
        ),
        Route::new(
            Method::GET,
            "/channels",
            Some(Role::Viewer),
            "The notification channels: type, where they deliver (secrets redacted), tasks using them",
            schema::<Vec<PluginView>>,
            || get(channels),
        ),
        Route::new(
            Method::POST,
            "/channels/{name}/test",
            Some(Role::Operator),
            "Send a test message through a channel (to its default recipients or `to`)",
            schema::<ChannelTest>,
            || post(test_channel),
        )
        .body(schema::<ChannelTestBody>),
    ]
}

/// The daemon's state.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StatusView {
    pub node: String,
    pub version: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub uptime_secs: i64,
    /// The store's URL (no password).
    pub store: String,
    pub tasks: TaskCounts,
    /// Runs in progress (on every node of the store).
    pub running: Vec<RunRecord>,
    /// Each service of the daemon and its state.
    pub services: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TaskCounts {
    pub total: usize,
    pub enabled: usize,
    pub paused: usize,
    pub invalid: usize,
}

/// A page of runs.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RunPage {
    /// Without their deliveries (`GET /runs/{id}` has them).
    pub runs: Vec<serde_json::Value>,
    /// Pass it as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Cancelled {
    pub run_id: String,
    pub message: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Retried {
    pub run_id: String,
    pub channel: String,
    pub occurrence: u32,
    pub message: String,
}

/// A datasource or a channel.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PluginView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Where it points, with every secret redacted.
    pub location: String,
    /// How many tasks use it.
    pub tasks: usize,
}

/// What testing a datasource found.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SourceTest {
    pub name: String,
    /// Connected, and not refused by `require_read_only`.
    pub ok: bool,
    pub version: Option<String>,
    pub connect_ms: Option<u64>,
    pub encryption: Option<String>,
    pub read_only: Option<bool>,
    /// What the account could change (empty when it can only read).
    pub not_read_only: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelTestBody {
    /// Recipients instead of the channel's defaults.
    #[serde(default)]
    pub to: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ChannelTest {
    pub name: String,
    pub ok: bool,
    /// The channel's receipt (the email Message-ID, the robot's answer).
    pub receipt: Option<String>,
    pub error: Option<String>,
}

async fn status(State(st): State<Arc<ApiState>>) -> ApiResult<StatusView> {
    let project = st.project();
    let now = st.clock.now();
    let paused = st.store.paused_tasks().await?;
    let running = st.store.running().await?;
    Ok(Json(StatusView {
        node: project.config.node_name.clone(),
        version: crate::VERSION.to_string(),
        pid: std::process::id(),
        started_at: st.started_at,
        uptime_secs: (now - st.started_at).num_seconds().max(0),
        store: project.config.store.to_string(),
        tasks: TaskCounts {
            total: project.all_names().len(),
            enabled: project.tasks.values().filter(|t| t.enabled).count(),
            paused: paused.len(),
            invalid: project
                .task_problems
                .keys()
                .filter(|k| !k.is_empty())
                .count(),
        },
        running,
        services: st.ops.services(),
    }))
}

/// `?task=&status=&…` of `GET /runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunParams {
    task: Option<String>,
    status: Option<String>,
    trigger: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn encode_cursor(r: &RunRecord) -> String {
    let raw = format!("{}|{}", r.scheduled_at.timestamp_millis(), r.run_id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(s: &str) -> Result<(DateTime<Utc>, String), ApiError> {
    let bad = || ApiError::bad_request("`cursor` is not one this API gave out");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (ms, id) = raw.split_once('|').ok_or_else(bad)?;
    let at = ms
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(bad)?;
    Ok((at, id.to_string()))
}

/// A run without its deliveries, for lists.
fn list_view(r: &RunRecord) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("deliveries");
        m.remove("delivery");
        m.remove("alerts");
    }
    v
}

async fn list(State(st): State<Arc<ApiState>>, Query(p): Query<RunParams>) -> ApiResult<RunPage> {
    let status = p
        .status
        .as_deref()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown status `{s}` (one of: running, succeeded, failed, skipped, missed, cancelled, deferred)"
                ))
            })
        })
        .transpose()?;
    if let Some(t) = &p.trigger
        && !["schedule", "manual", "mail"].contains(&t.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "unknown trigger `{t}` (one of: schedule, manual, mail)"
        )));
    }
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 500"));
    }
    let q = RunQuery {
        task: p.task,
        status,
        trigger: p.trigger,
        since: p
            .since
            .as_deref()
            .map(|s| parse_instant_param("since", s))
            .transpose()?,
        until: p
            .until
            .as_deref()
            .map(|s| parse_instant_param("until", s))
            .transpose()?,
        after: p.cursor.as_deref().map(decode_cursor).transpose()?,
        // One more than asked tells whether a next page exists.
        limit: limit + 1,
    };
    let mut runs = st.store.page(&q).await?;
    let more = runs.len() > limit;
    runs.truncate(limit);
    Ok(Json(RunPage {
        next_cursor: more.then(|| runs.last().map(encode_cursor)).flatten(),
        runs: runs.iter().map(list_view).collect(),
    }))
}

async fn one(State(st): State<Arc<ApiState>>, Path(id): Path<String>) -> ApiResult<RunRecord> {
    st.store
        .get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no run `{id}`")))
}

async fn cancel(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> ApiResult<Cancelled> {
    let Some(run) = st.store.get(&id).await? else {
        return Err(ApiError::not_found(format!("no run `{id}`")));
    };
    if run.status != Status::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_running",
            format!("run `{id}` is {}, not running", run.status),
        ));
    }
    let reason = format!("cancelled by {}", actor.name);
    if !st.ops.cancel(&id, &reason).await {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_running",
            format!(
                "run `{id}` does not run in this daemon (node {}, pid {})",
                run.node, run.pid
            ),
        ));
    }
    st.audit(&actor, "run.cancel", &id, Some(run.task)).await;
    Ok(Json(Cancelled {
        run_id: id,
        message: "cancelling: the run stops and is recorded cancelled".into(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryParams {
    state: Option<String>,
    limit: Option<usize>,
}

async fn deliveries(
    State(st): State<Arc<ApiState>>,
    Query(p): Query<DeliveryParams>,
) -> ApiResult<Vec<QueuedEntry>> {
    let failed = match p.state.as_deref() {
        None | Some("pending") => false,
        Some("failed") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown state `{other}` (one of: pending, failed)"
            )));
        }
    };
    let limit = p.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("`limit` must be between 1 and 1000"));
    }
    Ok(Json(st.store.queued_deliveries(failed, limit).await?))
}

async fn retry(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Path((run_id, channel, occurrence)): Path<(String, String, u32)>,
) -> ApiResult<Retried> {
    let key = DeliveryKey {
        run_id: run_id.clone(),
        channel: channel.clone(),
        occurrence,
    };
    if !st.store.retry_delivery(&key, st.clock.now()).await? {
        return Err(ApiError::conflict(format!(
            "no pending or failed delivery `{channel}` #{occurrence} of run `{run_id}` (sent, being sent, or unknown)"
        )));
    }
    st.ops.wake_deliveries();
    st.audit(
        &actor,
        "delivery.retry",
        &run_id,
        Some(format!("{channel} #{occurrence}")),
    )
    .await;
    Ok(Json(Retried {
        run_id,
        channel,
        occurrence,
        message: "due now: the delivery worker tries it at once".into(),
    }))
}

async fn datasources(State(st): State<Arc<ApiState>>) -> ApiResult<Vec<PluginView>> {
    let project = st.project();
    Ok(Json(
        project
            .config
            .datasources
            .iter()
            .map(|(name, spec)| PluginView {
                name: name.clone(),
                kind: spec.kind().into(),
                location: spec.location(),
                tasks: project.tasks.values().filter(|t| &t.source == name).count(),
            })
            .collect(),
    ))
}

async fn channels(State(st): State<Arc<ApiState>>) -> ApiResult<Vec<PluginView>> {
    let project = st.project();
    Ok(Json(
        project
            .config
            .channels
            .iter()
            .map(|(name, spec)| PluginView {
                name: name.clone(),
                kind: spec.kind.kind().into(),
                location: crate::notify::probe::destination(spec),
                tasks: project
                    .tasks
                    .values()
                    .filter(|t| t.notify.iter().any(|n| &n.channel == name))
                    .count(),
            })
            .collect(),
    ))
}

async fn test_source(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<SourceTest> {
    let project = st.project();
    let Some(spec) = project.config.datasources.get(&name) else {
        return Err(ApiError::not_found(format!("unknown datasource `{name}`")));
    };
    let result = match crate::source::build(&name, spec).await {
        Ok(s) => s.describe().await,
        Err(e) => Err(e),
    };
    st.audit(&actor, "datasource.test", &name, None).await;
    Ok(Json(match result {
        Ok(info) => {
            let read_only = info.access.is_read_only();
            let refused = project.config.requires_read_only(&name) && !read_only;
            SourceTest {
                name,
                ok: !refused,
                version: Some(info.version),
                connect_ms: Some(info.connect_time.as_millis() as u64),
                encryption: info.encryption,
                read_only: Some(read_only),
                not_read_only: info.access.sentences(),
                error: refused.then(|| {
                    "require_read_only is set and the account can write: its tasks fail".into()
                }),
            }
        }
        Err(e) => SourceTest {
            name,
            ok: false,
            version: None,
            connect_ms: None,
            encryption: None,
            read_only: None,
            not_read_only: Vec::new(),
            error: Some(e.message),
        },
    }))
}

async fn test_channel(
    State(st): State<Arc<ApiState>>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<ChannelTest> {
    let body: ChannelTestBody = parse_body(&body)?;
    let project = st.project();
    if !project.config.channels.contains_key(&name) {
        return Err(ApiError::not_found(format!("unknown channel `{name}`")));
    }
    let sent = crate::notify::probe::send_test(&project.config, &name, &body.to).await;
    st.audit(&actor, "channel.test", &name, None).await;
    match sent {
        Ok(receipt) => Ok(Json(ChannelTest {
            name,
            ok: true,
            receipt: Some(receipt),
            error: None,
        })),
        Err(crate::notify::probe::TestError::Usage(m)) => Err(ApiError::bad_request(m)),
        Err(crate::notify::probe::TestError::Failed(m)) => Ok(Json(ChannelTest {
            name,
            ok: false,
            receipt: None,
            error: Some(m),
        })),
    }
}
