//! Runs one task: claim → query → write → publish → record → notify.
//!
//! - The fire `(task, scheduled_at)` is claimed in the run store first; a lost claim means
//!   someone else runs it, and nothing happens here.
//! - Rows stream from the source through a bounded channel into the format writer on a
//!   blocking thread; memory stays flat.
//! - Files are written as partials and published atomically only when the whole export
//!   succeeded and the run was not cancelled or timed out; otherwise the partials are
//!   removed and the run is recorded as failed (or cancelled) with the reason.
//! - The task's messages are rendered, then the outcome (rows, files with size and sha256,
//!   warnings, error) is recorded together with the messages as pending deliveries, in one
//!   store transaction. What is left is a [`Followup`]: sending them, with retries
//!   ([`deliver`]), and alerting the owners. `ferry run` completes it before it returns;
//!   `ferry serve` hands it to the daemon's delivery service, so that a slow channel never
//!   holds the run's worker slot or its `concurrency` turn. A notification that failed or
//!   is still pending is added to the run's warnings.

pub mod alert;
pub mod deliver;
mod prepare;

pub use prepare::{occurrence, output_names, preflight, render_message};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::clock::SharedClock;
use crate::config::{Config, OnEmpty, TaskSpec, format_duration};
use crate::format::{self, Finished, FormatError, WriterOptions};
use crate::notify::{Registry, RunReport};
use crate::params::RunParams;
use crate::source::{self, QueryRequest};
use crate::store::{
    Claim, DeliveryKey, DeliveryRecord, DeliveryStatus, DeliverySummary, FileRecord, Outage,
    Outcome, Owner, QueuedDelivery, Status, Store, Trigger,
};
use crate::template;

/// What a run's messages (its report, the owner alert) say about it; links are added by
/// the caller.
pub fn run_report(
    task: &TaskSpec,
    r: &RunResult,
    scheduled_at: DateTime<Utc>,
    trigger: Trigger,
) -> RunReport {
    RunReport {
        task: task.name.clone(),
        description: task.description.clone(),
        run_id: r.run_id.clone(),
        status: r.status,
        scheduled_at,
        tz: task.timezone,
        duration: r.duration,
        rows: r.rows,
        files: r.files.clone(),
        warnings: r.warnings.clone(),
        error: r.error.clone(),
        links: Vec::new(),
        coverage: task.run_params(scheduled_at).coverage,
        trigger,
    }
}

/// How long a stopped run may take to wind down (statement interrupted, partial files
/// removed) before it is recorded.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The longest pause between two attempts to record a run's outcome in a store that
/// refuses it for now (see [`RunRequest::retry_record`]).
pub const RECORD_RETRY_MAX: Duration = Duration::from_secs(30);

/// Called from the writer thread with the number of rows written so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Stops a run from outside (shutdown, `concurrency: replace`, Ctrl-C), with the reason
/// that is recorded on it.
#[derive(Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    reason: Arc<std::sync::Mutex<Option<String>>>,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// A stop that Ctrl-C (SIGINT) triggers: for the one-off commands.
    pub fn on_ctrl_c() -> Stop {
        let stop = Stop::new();
        let ctrl_c = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                ctrl_c.stop("interrupted (Ctrl-C)");
            }
        });
        stop
    }

    /// Asks the run to stop; the first reason given is the one recorded.
    pub fn stop(&self, reason: impl Into<String>) {
        let mut r = self.reason.lock().expect("stop reason lock");
        if r.is_none() {
            *r = Some(reason.into());
        }
        drop(r);
        self.token.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the run is asked to stop.
    pub async fn stopped(&self) {
        self.token.cancelled().await
    }

    /// Why the run was stopped (`stopped` if no reason was given).
    pub fn reason(&self) -> String {
        self.reason
            .lock()
            .expect("stop reason lock")
            .clone()
            .unwrap_or_else(|| "stopped".into())
    }
}

/// One run to execute.
pub struct RunRequest {
    pub task: TaskSpec,
    pub scheduled_at: DateTime<Utc>,
    pub trigger: Trigger,
    /// Send the task's notifications (false for `ferry run --no-notify`).
    pub notify: bool,
    pub stop: Stop,
    pub progress: Option<Progress>,
    /// When the store refuses to record the outcome for now (a full disk, a lock held,
    /// an I/O error): keep the outcome and try again until the store takes it or the run
    /// is stopped (`ferry serve`, so that no run stays `running` while the daemon
    /// lives), instead of failing at once (a one-off `ferry run`).
    pub retry_record: bool,
    /// The request this run answers (query by email): its messages are replies to it.
    pub reply_to: Option<ReplyTo>,
    /// Who started it by hand (recorded on the run); `None` for scheduled fires.
    pub started_by: Option<String>,
}

/// The mailed request a run answers: each message of the run takes this subject and
/// threads on the request (see [`crate::notify::MailThread`]).
#[derive(Debug, Clone)]
pub struct ReplyTo {
    pub subject: String,
    pub thread: crate::notify::MailThread,
}

/// What happened.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunResult {
    pub run_id: String,
    pub task: String,
    pub status: Status,
    pub rows: u64,
    pub files: Vec<FileRecord>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    /// What each notification did, as the delivery ledger has it after the run's attempts.
    pub deliveries: Vec<DeliveryRecord>,
    /// What the deliveries come to (`delivered`, `partially_delivered`, `pending`, …).
    pub delivery: DeliverySummary,
    #[serde(skip)]
    pub duration: Duration,
}

/// Errors that prevent a run from being recorded at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("task `{task}`: the fire at {at} was already claimed (it ran or is running elsewhere)")]
    ClaimLost { task: String, at: String },
}

/// Shared pieces the executor needs.
pub struct Executor {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
}

/// What is left of a run once its outcome is recorded: attempting its deliveries and
/// alerting the owners ([`Followup::complete`]). Everything it needs is in the ledger
/// already, so a followup that never completes (a crash, a shutdown) is picked up by the
/// delivery worker of the next `ferry serve`.
pub struct Followup {
    task: TaskSpec,
    scheduled_at: DateTime<Utc>,
    trigger: Trigger,
    result: RunResult,
    items: Vec<deliver::Item>,
    failures: Vec<String>,
    notify: bool,
    owner: Owner,
}

/// How the executor and the export talk while it runs.
struct Control {
    /// Rows written so far.
    rows: Arc<AtomicU64>,
    /// Set when the run is stopped: the writer drops its files instead of publishing.
    cancelled: Arc<AtomicBool>,
    /// Stops the statement in the database.
    query_cancel: CancellationToken,
    progress: Option<Progress>,
}

enum ExportError {
    Failed(String),
    Cancelled(String),
}

impl Executor {
    /// Claims and runs one fire. Manual runs take the current millisecond as their fire
    /// time (moving forward a millisecond if that instant is taken).
    pub async fn run(&self, req: RunRequest) -> Result<RunResult, ExecError> {
        let run_id = uuid::Uuid::now_v7().to_string();
        let mut scheduled_at = req.scheduled_at;
        let started_at = self.clock.now();
        let mut attempts = 0;
        loop {
            let claim = Claim {
                run_id: run_id.clone(),
                task: req.task.name.clone(),
                scheduled_at,
                trigger: req.trigger,
                node: self.config.node_name.clone(),
                pid: std::process::id(),
                started_at,
                started_by: req.started_by.clone(),
            };
            if self.store.claim(&claim).await? {
                break;
            }
            attempts += 1;
            if req.trigger != Trigger::Manual || attempts > 1000 {
                return Err(ExecError::ClaimLost {
                    task: req.task.name.clone(),
                    at: crate::store::fmt_instant(scheduled_at),
                });
            }
            scheduled_at += chrono::Duration::milliseconds(1);
        }
        self.run_claimed(req, run_id, scheduled_at).await
    }

    /// Runs a fire that is already claimed and completes its followup (deliveries and
    /// owner alert) before returning.
    pub async fn run_claimed(
        &self,
        req: RunRequest,
        run_id: String,
        scheduled_at: DateTime<Utc>,
    ) -> Result<RunResult, ExecError> {
        let stop = req.stop.clone();
        let followup = self.record_claimed(req, run_id, scheduled_at).await?;
        let channels = Registry::with_store(&self.config, self.store.clone(), self.clock.clone());
        let env = deliver::Env {
            store: &*self.store,
            config: &self.config,
            channels: &channels,
            clock: &*self.clock,
        };
        followup.complete(env, &stop).await
    }

    /// Runs a fire that is already claimed (by the scheduler, or started from `deferred`)
    /// up to the moment its outcome and pending deliveries are recorded.
    pub async fn record_claimed(
        &self,
        req: RunRequest,
        run_id: String,
        scheduled_at: DateTime<Utc>,
    ) -> Result<Followup, ExecError> {
        let span = info_span!("run", task = %req.task.name, run_id = %run_id, scheduled_at = %crate::store::fmt_instant(scheduled_at));
        self.run_inner(req, run_id, scheduled_at)
            .instrument(span)
            .await
    }

    async fn run_inner(
        &self,
        req: RunRequest,
        run_id: String,
        scheduled_at: DateTime<Utc>,
    ) -> Result<Followup, ExecError> {
        let task = &req.task;
        let clock = Instant::now();
        info!("run started");
        let params = task.run_params(scheduled_at);
        let rows = Arc::new(AtomicU64::new(0));
        let cancelled = Arc::new(AtomicBool::new(false));
        let query_cancel = CancellationToken::new();
        let control = Control {
            rows: rows.clone(),
            cancelled: cancelled.clone(),
            query_cancel: query_cancel.clone(),
            progress: req.progress.clone(),
        };
        // A panic anywhere in the export (a driver, the SQL gate, a writer) fails the run;
        // it never leaves the run `running` or the task's concurrency turn taken.
        let export = async {
            crate::panics::catch_async(self.export(task, &params, &run_id, control))
                .await
                .unwrap_or_else(|p| {
                    Err(ExportError::Failed(format!(
                        "the export failed: {}; the run was failed and no file was kept",
                        p.reason()
                    )))
                })
        };
        tokio::pin!(export);
        let stop = tokio::select! {
            r = &mut export => Ok(r),
            _ = tokio::time::sleep(task.timeout) => Err(ExportError::Failed(format!(
                "timeout: the run took longer than {} (task `timeout`)",
                format_duration(task.timeout)
            ))),
            _ = req.stop.token.cancelled() => {
                Err(ExportError::Cancelled(format!("cancelled: {}", req.stop.reason())))
            }
        };
        let outcome = match stop {
            Ok(r) => r,
            Err(reason) => {
                // Stop the statement in the database and tell the writer to drop its partial
                // files; give both a moment to finish cleanly. An export that completed in
                // that moment counts (its files are already published).
                cancelled.store(true, Ordering::SeqCst);
                query_cancel.cancel();
                match tokio::time::timeout(STOP_GRACE, &mut export).await {
                    Ok(Ok(done)) => Ok(done),
                    _ => Err(reason),
                }
            }
        };
        let rows = rows.load(Ordering::SeqCst);
        let (status, files, mut warnings, error) = match outcome {
            Ok((files, warnings)) => (Status::Succeeded, files, warnings, None),
            Err(ExportError::Failed(e)) => (Status::Failed, vec![], vec![], Some(e)),
            Err(ExportError::Cancelled(e)) => (Status::Cancelled, vec![], vec![], Some(e)),
        };
        let empty_skip = status == Status::Succeeded && rows == 0 && task.on_empty == OnEmpty::Skip;
        if empty_skip {
            warnings
                .push("the query returned no rows: notifications skipped (on_empty: skip)".into());
        }
        let duration = clock.elapsed();
        let result = RunResult {
            run_id: run_id.clone(),
            task: task.name.clone(),
            status,
            rows,
            files,
            warnings,
            error,
            deliveries: Vec::new(),
            delivery: DeliverySummary::None,
            duration,
        };
        // Every message is rendered before the run is recorded, and recorded with it.
        let (queued, failures) = if req.notify && !empty_skip {
            self.render_all(
                task,
                &result,
                scheduled_at,
                req.trigger,
                req.reply_to.as_ref(),
            )
            .await
        } else {
            (Vec::new(), Vec::new())
        };
        let outcome = Outcome {
            status,
            finished_at: self.clock.now(),
            rows,
            files: result.files.clone(),
            warnings: result.warnings.clone(),
            error: result.error.clone(),
        };
        let owner = Owner {
            node: self.config.node_name.clone(),
            pid: std::process::id(),
        };
        self.record_outcome(&run_id, &outcome, &queued, &owner, &req)
            .await?;
        match status {
            Status::Succeeded => {
                info!(rows, files = result.files.len(), duration = %format_duration(duration), "run succeeded")
            }
            _ => error!(
                error = result.error.as_deref().unwrap_or(""),
                "run {status}"
            ),
        }

        let items = queued
            .iter()
            .filter_map(|q| {
                let message = q.message.as_ref().ok()?;
                Some(deliver::Item {
                    key: DeliveryKey {
                        run_id: run_id.clone(),
                        channel: q.channel.clone(),
                        occurrence: q.occurrence,
                    },
                    from: DeliveryStatus::Pending,
                    attempts: 0,
                    message: message.clone(),
                    takeovers: 0,
                })
            })
            .collect();
        Ok(Followup {
            task: task.clone(),
            scheduled_at,
            trigger: req.trigger,
            result,
            items,
            failures,
            notify: req.notify,
            owner,
        })
    }

    /// Records a run's outcome with its deliveries; retries as [`RunRequest::retry_record`]
    /// says, with pauses that grow from 1 s to [`RECORD_RETRY_MAX`] on the clock.
    async fn record_outcome(
        &self,
        run_id: &str,
        outcome: &Outcome,
        queued: &[QueuedDelivery],
        owner: &Owner,
        req: &RunRequest,
    ) -> Result<(), ExecError> {
        let mut outage = Outage::new("run outcome");
        loop {
            match self
                .store
                .finish_with_deliveries(run_id, outcome, queued, owner)
                .await
            {
                Ok(()) => {
                    outage.ok(self.clock.now());
                    return Ok(());
                }
                Err(e) if req.retry_record && e.is_transient() && !req.stop.is_stopped() => {
                    let wait = outage.failed(&e, self.clock.now(), RECORD_RETRY_MAX);
                    tokio::select! {
                        _ = self.clock.sleep(wait) => {}
                        _ = req.stop.stopped() => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Query → write → publish. Returns the published files and the writer's warnings.
    async fn export(
        &self,
        task: &TaskSpec,
        params: &RunParams,
        run_id: &str,
        control: Control,
    ) -> Result<(Vec<FileRecord>, Vec<String>), ExportError> {
        let Control {
            rows,
            cancelled,
            query_cancel,
            progress,
        } = control;
        let source = preflight(&self.config, task, params, &*self.clock)
            .await
            .map_err(ExportError::Failed)?;

        let (dir, base_name) =
            output_names(&self.config, task, params, run_id).map_err(ExportError::Failed)?;
        std::fs::create_dir_all(&dir).map_err(|e| {
            ExportError::Failed(format!(
                "cannot create output folder {}: {e}",
                dir.display()
            ))
        })?;

        let opts = WriterOptions {
            dir: dir.clone(),
            base_name: base_name.clone(),
            temp_dir: self.config.export.temp_dir.clone(),
            tz: task.timezone,
            output: task.output.clone(),
        };
        let multi = task.queries.len() > 1 || task.queries.iter().any(|q| q.sheet.is_some());
        // The queries run one after another: the writer thread takes each result in turn
        // and says when it has read it all, and only then does the next query start.
        let (part_tx, part_rx) = tokio::sync::mpsc::channel::<Part>(1);
        let writing = Writing {
            opts,
            parts: part_rx,
            cancelled: cancelled.clone(),
            rows,
            progress,
        };
        let handle = tokio::task::spawn_blocking(move || writing.run());

        // Feed the queries; a failure stops feeding, and the writer drops its partials.
        let mut query_error = None;
        for q in &task.queries {
            let started = source
                .query(QueryRequest {
                    query: &q.query,
                    params,
                    chunk_rows: task.chunk_rows,
                    timeout: task.timeout,
                    cancel: query_cancel.clone(),
                })
                .await;
            let started = match started {
                // A statement that is not a query (`SET`, `DO`, a write past a disabled
                // gate) or `SELECT FROM t`: the server's own error, if it sends one (a
                // refused write), says more than "no columns".
                Ok(mut s) if s.columns.is_empty() => {
                    let mut error = NO_COLUMNS.to_string();
                    while let Some(chunk) = s.chunks.recv().await {
                        if let Err(e) = chunk {
                            error = e.to_string();
                            break;
                        }
                    }
                    Err(error)
                }
                Ok(s) => Ok(s),
                Err(e) => Err(e.to_string()),
            };
            let stream = match started {
                Ok(s) => s,
                Err(e) => {
                    query_error = Some(match (&q.sheet, multi) {
                        (Some(s), true) => format!("query \"{s}\": {e}"),
                        _ => e,
                    });
                    break;
                }
            };
            let (done, read) = tokio::sync::oneshot::channel();
            let part = Part {
                sheet: q.sheet.clone(),
                stream,
                done,
            };
            if part_tx.send(part).await.is_err() || read.await.is_err() {
                // The writer stopped (its error is in the join below).
                break;
            }
        }
        if query_error.is_some() {
            // The writer must not publish: mark the run as failed before it finishes.
            cancelled.store(true, Ordering::SeqCst);
        }
        drop(part_tx);
        let joined = handle
            .await
            .map_err(|e| ExportError::Failed(format!("the writer stopped unexpectedly: {e}")))?;
        if let Some(e) = query_error {
            return Err(ExportError::Failed(e));
        }
        let (published, warnings) = joined?;
        let files = published
            .into_iter()
            .map(|p| FileRecord {
                path: p.path.display().to_string(),
                bytes: p.bytes,
                sha256: p.sha256,
            })
            .collect();
        Ok((files, warnings))
    }

    /// Renders the message of each `notify` entry that applies to the run. A message that
    /// cannot be rendered (template error, channel not defined) is queued as its error,
    /// which is recorded as a failed delivery. Returns the queue and the warnings.
    async fn render_all(
        &self,
        task: &TaskSpec,
        r: &RunResult,
        scheduled_at: DateTime<Utc>,
        trigger: Trigger,
        reply_to: Option<&ReplyTo>,
    ) -> (Vec<QueuedDelivery>, Vec<String>) {
        let mut report = run_report(task, r, scheduled_at, trigger);
        let mut failures = Vec::new();
        // Signed download links for the files, when `links:` is configured.
        if r.status == Status::Succeeded && !r.files.is_empty() {
            match crate::links::links_for_run(
                &*self.store,
                &self.config,
                &r.run_id,
                &r.files,
                None,
                self.clock.now(),
            )
            .await
            {
                Ok(links) => report.links = links,
                Err(e) => {
                    warn!(error = %e, "no download links");
                    failures.push(format!("download links: {e}"));
                }
            }
        }
        let link = report.links.first().map(|l| l.url.clone());
        let ctx = report.context();
        let mut queued = Vec::new();
        for (i, n) in task.notify.iter().enumerate() {
            if !n.on.matches(r.status == Status::Succeeded) {
                continue;
            }
            let occurrence = occurrence(task, i);
            let message = render_message(&self.config, task, r, n, occurrence, &ctx, link.clone())
                .map(|mut m| {
                    if let Some(to) = reply_to {
                        m.subject = to.subject.clone();
                        m.thread = Some(to.thread.clone());
                    }
                    m.to_ledger()
                });
            if let Err(e) = &message {
                warn!(channel = %n.channel, error = %e, "notification failed");
                failures.push(format!("notify `{}`: {e}", n.channel));
            }
            queued.push(QueuedDelivery {
                channel: n.channel.clone(),
                occurrence: occurrence as u32,
                message,
            });
        }
        (queued, failures)
    }
}

impl Followup {
    /// The run as recorded (before its deliveries were attempted).
    pub fn result(&self) -> &RunResult {
        &self.result
    }

    /// Attempts the run's deliveries (retrying within the run's budget; what still fails
    /// stays `pending` for the delivery worker), alerts the owners when the run failed or
    /// a delivery failed for good, and adds what went wrong to the run's warnings. `stop`
    /// ends the retries early (the deliveries stay `pending`).
    pub async fn complete(
        self,
        env: deliver::Env<'_>,
        stop: &Stop,
    ) -> Result<RunResult, ExecError> {
        let store = env.store;
        let Followup {
            task,
            scheduled_at,
            trigger,
            mut result,
            items,
            mut failures,
            notify,
            owner,
        } = self;
        let run_id = result.run_id.clone();
        if !items.is_empty() {
            let tried = deliver::deliver_in_run(env, &task, items, &owner, stop).await?;
            for (key, t) in tried {
                match (&t.outcome, t.end.status) {
                    (Err(e), DeliveryStatus::Pending) => failures.push(format!(
                        "notify `{}`: {e}; still pending after {} attempts, next attempt at {}",
                        key.channel,
                        deliver::IN_RUN_ATTEMPTS,
                        t.end
                            .next_attempt_at
                            .map(crate::store::fmt_instant)
                            .unwrap_or_default()
                    )),
                    (Err(e), _) => failures.push(format!("notify `{}`: {e}", key.channel)),
                    (Ok(_), _) => {}
                }
            }
        }
        // Read back even when nothing was attempted: a message that could not be rendered
        // is recorded `failed` without an attempt, and the run must say so (exit code,
        // owner alert) as it does for a delivery that failed when sent.
        if let Some(record) = store.get(&run_id).await? {
            result.deliveries = record.deliveries;
            result.delivery = record.delivery;
        }
        // Owner alerts: a failed run, or deliveries (or email recipients) that failed for
        // good.
        let failed_deliveries = alert::failed_deliveries(&result.deliveries);
        if notify
            && (result.status == Status::Failed || !failed_deliveries.is_empty())
            && let Some(note) = alert::alert_owners(
                env,
                &task,
                run_report(&task, &result, scheduled_at, trigger),
                &failed_deliveries,
                1,
            )
            .await?
        {
            failures.push(note);
        }
        if !failures.is_empty() {
            store.append_warnings(&run_id, &failures).await?;
            result.warnings.extend(failures);
        }
        Ok(result)
    }
}

/// One query's result on its way to the writer thread.
struct Part {
    /// `None` for a task's single `query`.
    sheet: Option<String>,
    stream: source::QueryStream,
    /// Fired when the writer has read the whole result.
    done: tokio::sync::oneshot::Sender<()>,
}

/// The writer thread's side of an export: each query's rows into the format writer, in
/// turn, then zip and publish.
struct Writing {
    opts: WriterOptions,
    parts: tokio::sync::mpsc::Receiver<Part>,
    /// Set when the run is stopped: the files are dropped instead of published.
    cancelled: Arc<AtomicBool>,
    rows: Arc<AtomicU64>,
    progress: Option<Progress>,
}

/// The published files and the writer's warnings.
type Written = (Vec<format::Published>, Vec<String>);

impl Writing {
    /// Writes and publishes. A panic in a library on the way (the XLSX, CSV or zip
    /// writer: rust_xlsxwriter panics when its worksheet file cannot be written, on a full
    /// disk) fails the run with a plain message naming that writer; its partial files are
    /// removed as for any other failure (the writers' and [`format::Unpublished`]'s drops).
    fn run(self) -> Result<Written, ExportError> {
        let format = self.opts.output.format;
        let stage = std::cell::Cell::new(match format {
            crate::config::Format::Csv => "the CSV writer",
            crate::config::Format::Xlsx => "the XLSX writer",
        });
        // The file as the user knows it (a writer's partial and temporary files are ours).
        let ext = if self.opts.output.zip {
            "zip"
        } else {
            format.extension()
        };
        let file = self.opts.dir.join(format!("{}.{ext}", self.opts.base_name));
        crate::panics::catch(|| self.write(&stage)).unwrap_or_else(|p| {
            Err(ExportError::Failed(format!(
                "{} failed on {}: {}; the run was failed and no file was kept",
                stage.get(),
                file.display(),
                p.reason()
            )))
        })
    }

    fn is_cancelled(&self) -> Result<(), ExportError> {
        match self.cancelled.load(Ordering::SeqCst) {
            true => Err(ExportError::Cancelled("cancelled".into())),
            false => Ok(()),
        }
    }

    fn write(mut self, stage: &std::cell::Cell<&'static str>) -> Result<Written, ExportError> {
        let fail = |e: FormatError| ExportError::Failed(e.to_string());
        let opts = &self.opts;
        let per_query = opts.output.file_per_query;
        // With one file per query, each part gets a writer of its own (made when the part
        // starts); the finished files wait in `staged` to be published together.
        let mut writer = match per_query {
            true => None,
            false => Some(format::create(opts.clone()).map_err(fail)?),
        };
        let mut staged = format::Unpublished::default();
        let mut warnings = Vec::new();
        let mut part_rows = Vec::new();
        while let Some(part) = self.parts.blocking_recv() {
            let Part {
                sheet,
                stream,
                done,
            } = part;
            let label = |e: String| match &sheet {
                Some(s) => format!("query \"{s}\": {e}"),
                None => e,
            };
            if per_query {
                if let Some(w) = writer.take() {
                    let f = w.finish().map_err(fail)?;
                    staged.extend(f.staged);
                    warnings.extend(f.warnings);
                }
                let base_name = format::sanitize_file_name(sheet.as_deref().unwrap_or("result"));
                let own = WriterOptions {
                    base_name,
                    ..opts.clone()
                };
                let mut w = format::create(own).map_err(fail)?;
                w.begin(&stream.columns).map_err(fail)?;
                writer = Some(w);
            } else if let Some(w) = writer.as_mut() {
                match &sheet {
                    Some(s) => w.begin_part(s, &stream.columns),
                    None => w.begin(&stream.columns),
                }
                .map_err(fail)?;
            }
            let Some(writer) = writer.as_mut() else {
                return Err(ExportError::Failed("no writer for the query".into()));
            };
            warnings.extend(stream.warnings);
            let mut chunks = stream.chunks;
            let mut n_part = 0u64;
            while let Some(chunk) = chunks.blocking_recv() {
                self.is_cancelled()?;
                let chunk = chunk.map_err(|e| ExportError::Failed(label(e.to_string())))?;
                writer.write_rows(&chunk).map_err(fail)?;
                let len = chunk.len() as u64;
                stream.pool.give_back(chunk);
                n_part += len;
                let n = self.rows.fetch_add(len, Ordering::SeqCst) + len;
                if let Some(p) = &self.progress {
                    p(n);
                }
            }
            if let Some(s) = sheet {
                part_rows.push((s, n_part));
            }
            let _ = done.send(());
        }
        self.is_cancelled()?;
        if let Some(writer) = writer {
            let Finished {
                staged: last,
                warnings: writer_warnings,
            } = writer.finish().map_err(fail)?;
            staged.extend(last);
            warnings.extend(writer_warnings);
        }
        if part_rows.len() > 1 {
            warnings.extend(
                part_rows
                    .iter()
                    .map(|(s, n)| format!("sheet {s}: {} rows", template::group_thousands(*n))),
            );
        }
        if opts.output.zip {
            stage.set("the zip writer");
            // The members' partials go when their guard is replaced.
            staged = format::zip::zip_staged(&opts.dir, &opts.base_name, staged.files(), opts.tz)
                .map_err(fail)?;
        }
        self.is_cancelled()?;
        stage.set("publishing the files");
        let published = staged.publish(&opts.dir).map_err(fail)?;
        Ok((published, warnings))
    }
}

/// Why a statement without result columns fails the run.
const NO_COLUMNS: &str = "the query returned no columns: ferry exports the result of a query that selects at least one column";

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_grouped() {
        assert_eq!(crate::template::group_thousands(0), "0");
        assert_eq!(crate::template::group_thousands(999), "999");
        assert_eq!(crate::template::group_thousands(1_234), "1,234");
        assert_eq!(crate::template::group_thousands(1_234_567), "1,234,567");
    }
}
