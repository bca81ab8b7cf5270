//! The scheduler that `ferry serve` drives: it decides, at each instant the caller gives
//! it, which fires are due and what happens to each — run, skip, miss, defer — and keeps
//! track of running work.
//!
//! It never reads the wall clock: [`Scheduler::tick`] takes `now`, so tests drive time and
//! the serve loop passes the real clock. Every fire is claimed in the run store before it
//! runs (`(task, scheduled_at)` is unique), so a fire runs at most once even if the clock
//! steps back or two schedulers share the store. The per-task cursor (every fire up to it
//! has been handled) is persisted, so fires missed while ferry was down are found at start
//! and handled by the misfire rules of [`plan`].
//!
//! Running work goes through the [`Runner`] seam (the executor in production, a fake in
//! tests); at most `scheduler.max_workers` runs execute at once, the rest wait for a slot.

pub mod plan;
pub mod quiet;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::clock::SharedClock;
use crate::config::{Concurrency, Config, Problem, Project, TaskSpec};
use crate::exec::{Executor, Followup, RunRequest, Stop};
use crate::store::{
    Applied, Claim, Op, Outcome, Status, Store, StoreError, TaskPause, Trigger, fmt_instant,
};
use plan::plan;
use quiet::quiet_until;

/// One claimed fire to execute.
pub struct Job {
    pub task: Arc<TaskSpec>,
    pub config: Arc<Config>,
    pub run_id: String,
    pub scheduled_at: DateTime<Utc>,
    /// Wall-clock time at which the scheduler handed the fire over (before waiting for a
    /// worker slot): `fired_at - scheduled_at` is the fire's lateness.
    pub fired_at: DateTime<Utc>,
    pub stop: Stop,
    /// `schedule` for fires, `manual` for a run started by hand ([`Scheduler::run_now`]).
    pub trigger: Trigger,
    /// Who started it by hand.
    pub started_by: Option<String>,
}

/// Executes claimed fires and records their outcome in the store.
#[async_trait]
pub trait Runner: Send + Sync + 'static {
    async fn run(&self, job: Job);
}

/// The production runner: the executor. A run holds its worker slot (and its turn under
/// `concurrency: forbid`) until its outcome is recorded; its deliveries and owner alert
/// (the [`Followup`]) go to `followups`, the daemon's delivery service.
pub struct ExecRunner {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub followups: mpsc::UnboundedSender<Followup>,
}

#[async_trait]
impl Runner for ExecRunner {
    async fn run(&self, job: Job) {
        let executor = Executor {
            config: job.config.clone(),
            store: self.store.clone(),
            clock: self.clock.clone(),
        };
        let req = RunRequest {
            task: (*job.task).clone(),
            scheduled_at: job.scheduled_at,
            trigger: job.trigger,
            notify: true,
            stop: job.stop,
            progress: None,
            retry_record: true,
            reply_to: None,
            started_by: job.started_by.clone(),
        };
        match executor
            .record_claimed(req, job.run_id, job.scheduled_at)
            .await
        {
            Ok(followup) => {
                if let Err(unsent) = self.followups.send(followup) {
                    // The delivery service has stopped (shutdown): the deliveries stay
                    // `pending` in the ledger for the next start.
                    warn!(task = %job.task.name, run_id = %unsent.0.result().run_id, "the delivery service has stopped; the run's notifications are sent at the next start");
                }
            }
            Err(e) => error!(task = %job.task.name, error = %e, "run could not be recorded"),
        }
    }
}

struct Active {
    run_id: String,
    stop: Stop,
}

#[derive(Debug, Clone)]
struct Deferred {
    run_id: String,
    task: String,
    scheduled_at: DateTime<Utc>,
    until: DateTime<Utc>,
}

struct Done {
    task: String,
    run_id: String,
}

/// What to do once a write of a tick's batch took effect.
enum After {
    Nothing,
    /// A warning about a task.
    Warn {
        task: String,
        msg: String,
    },
    /// A note about a task (a fire skipped because the task is paused).
    Info {
        task: String,
        msg: String,
    },
    Defer(Deferred, String),
    Run {
        task: Arc<TaskSpec>,
        run_id: String,
        at: DateTime<Utc>,
        lateness_ms: i64,
    },
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub invalid: usize,
}

/// The scheduler's state.
pub struct Scheduler {
    config: Arc<Config>,
    tasks: BTreeMap<String, Arc<TaskSpec>>,
    store: Arc<dyn Store>,
    runner: Arc<dyn Runner>,
    clock: SharedClock,
    cursors: HashMap<String, DateTime<Utc>>,
    /// Next fire per task, ordered by time.
    queue: BTreeSet<(DateTime<Utc>, String)>,
    next: HashMap<String, DateTime<Utc>>,
    active: HashMap<String, Vec<Active>>,
    deferred: Vec<Deferred>,
    workers: Arc<Semaphore>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    jobs: JoinSet<()>,
    /// Task files that failed to load at the last (re)load, with their problems.
    pub invalid: BTreeMap<String, Vec<Problem>>,
    accepting: bool,
}

impl Scheduler {
    pub fn new(
        project: Project,
        store: Arc<dyn Store>,
        runner: Arc<dyn Runner>,
        clock: SharedClock,
    ) -> Scheduler {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let workers = Arc::new(Semaphore::new(project.config.scheduler.max_workers));
        Scheduler {
            config: Arc::new(project.config),
            tasks: project
                .tasks
                .into_iter()
                .filter(|(_, t)| t.enabled)
                .map(|(n, t)| (n, Arc::new(t)))
                .collect(),
            store,
            runner,
            clock,
            cursors: HashMap::new(),
            queue: BTreeSet::new(),
            next: HashMap::new(),
            active: HashMap::new(),
            deferred: Vec::new(),
            workers,
            done_tx,
            done_rx,
            jobs: JoinSet::new(),
            invalid: project.task_problems,
            accepting: true,
        }
    }

    /// Loads cursors and deferred runs from the store. New tasks start at `now` (fires from
    /// before ferry knew a task are never run).
    pub async fn start(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let stored = self.store.cursors().await?;
        let names: Vec<String> = self.tasks.keys().cloned().collect();
        let mut new = Vec::new();
        for name in names {
            let cursor = match stored.get(&name) {
                Some(c) => *c,
                None => {
                    new.push(Op::Cursor(name.clone(), now));
                    now
                }
            };
            self.cursors.insert(name.clone(), cursor);
            self.reschedule(&name);
        }
        self.store.batch(&new).await?;
        for r in self.store.deferred().await? {
            self.deferred.push(Deferred {
                run_id: r.run_id,
                task: r.task,
                scheduled_at: r.scheduled_at,
                until: r.deferred_until.unwrap_or(now),
            });
        }
        self.refit_deferred(now).await?;
        for (name, problems) in &self.invalid {
            for p in problems {
                error!(task = %name, "invalid task file, not scheduled: {p}");
            }
        }
        info!(
            tasks = self.tasks.len(),
            deferred = self.deferred.len(),
            "scheduler started"
        );
        Ok(())
    }

    /// Deferred runs wait at most until the end of the quiet window in force at `now` under
    /// the current config (or not at all outside one): a window removed or shortened in
    /// config.yaml lets runs deferred by it start sooner, on reload and on restart. (A
    /// longer window holds them anyway: nothing deferred starts inside a window.)
    async fn refit_deferred(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let window_end = quiet_until(&self.config.scheduler.quiet_hours, now);
        let latest = window_end.unwrap_or(now);
        for d in &mut self.deferred {
            if d.until <= latest {
                continue;
            }
            let reason = match window_end {
                Some(end) => {
                    let zone = self
                        .tasks
                        .get(&d.task)
                        .map_or(chrono_tz::UTC, |t| t.timezone);
                    quiet_reason(end, zone)
                }
                None => "quiet hours: the window was removed from the config; starts now".into(),
            };
            info!(task = %d.task, scheduled_at = %fmt_instant(d.scheduled_at), "deferred fire follows the current quiet hours: {reason}");
            self.store.redefer(&d.run_id, latest, &reason).await?;
            d.until = latest;
        }
        Ok(())
    }

    fn reschedule(&mut self, name: &str) {
        if let Some(old) = self.next.remove(name) {
            self.queue.remove(&(old, name.to_string()));
        }
        let (Some(task), Some(cursor)) = (self.tasks.get(name), self.cursors.get(name)) else {
            return;
        };
        if let Some(n) = task.schedule.next_after(*cursor) {
            self.next.insert(name.to_string(), n);
            self.queue.insert((n, name.to_string()));
        }
    }

    /// Handles everything due at `now`: fires, and deferred runs whose time has come.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.collect_done();
        if !self.accepting {
            return Ok(());
        }
        let mut ops = Vec::new();
        let mut after = Vec::new();
        let mut before = Vec::new();
        // Pauses are set by other processes (`ferry tasks pause`): read when a fire is due.
        let paused: HashMap<String, TaskPause> =
            if self.queue.first().is_some_and(|(at, _)| *at <= now) {
                self.store
                    .paused_tasks()
                    .await?
                    .into_iter()
                    .map(|p| (p.task.clone(), p))
                    .collect()
            } else {
                HashMap::new()
            };
        while let Some((at, name)) = self.queue.first().cloned() {
            if at > now {
                break;
            }
            self.queue.remove(&(at, name.clone()));
            self.next.remove(&name);
            before.push((name.clone(), self.cursors.get(&name).copied()));
            self.plan_fire(&name, now, paused.get(&name), &mut ops, &mut after);
        }
        if let Err(e) = self.commit(ops, after).await {
            // Nothing of this tick was written: put the cursors back so that the same fires
            // are planned again on the next wake-up.
            for (name, cursor) in before {
                if let Some(c) = cursor {
                    self.cursors.insert(name.clone(), c);
                }
                self.reschedule(&name);
            }
            return Err(e);
        }
        self.start_deferred(now).await
    }

    /// The next instant at which [`Scheduler::tick`] has something to do (`None`: nothing
    /// scheduled). Completed runs are signalled separately by [`Scheduler::completed`].
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.wake_at(None)
    }

    /// The next wake-up seen from `now`: deferred runs cannot start before the current
    /// quiet window ends, and deferred runs of removed tasks wait for the task to return
    /// (they do not wake the loop).
    fn wake_at(&self, now: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let fire = self.queue.first().map(|(t, _)| *t);
        let quiet_end = now.and_then(|n| quiet_until(&self.config.scheduler.quiet_hours, n));
        let deferred = self
            .deferred
            .iter()
            .filter(|d| self.tasks.contains_key(&d.task) && !self.is_active(&d.task))
            .map(|d| quiet_end.map_or(d.until, |q| d.until.max(q)))
            .min();
        match (fire, deferred) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long the serve loop may sleep at `now`: until the next wake-up, but never more
    /// than `max` (so that clock jumps and suspends are noticed).
    pub fn sleep_for(&self, now: DateTime<Utc>, max: Duration) -> Duration {
        match self.wake_at(Some(now)) {
            Some(w) => (w - now).to_std().unwrap_or(Duration::ZERO).min(max),
            None => max,
        }
    }

    /// Waits until some run finishes (pending forever if none is running).
    pub async fn completed(&mut self) {
        if let Some(done) = self.done_rx.recv().await {
            self.remove_active(&done.task, &done.run_id);
        }
    }

    /// Waits for every started run to finish (tests; shutdown).
    pub async fn wait_idle(&mut self) {
        while self.jobs.join_next().await.is_some() {}
        self.collect_done();
    }

    /// Runs in flight (started or waiting for a worker slot).
    pub fn active_runs(&self) -> usize {
        self.active.values().map(Vec::len).sum()
    }

    /// The tasks being scheduled.
    pub fn task_names(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }

    fn collect_done(&mut self) {
        while let Ok(done) = self.done_rx.try_recv() {
            self.remove_active(&done.task, &done.run_id);
        }
        while let Some(r) = self.jobs.try_join_next() {
            if let Err(e) = r {
                error!(error = %e, "a run task panicked");
            }
        }
    }

    fn remove_active(&mut self, task: &str, run_id: &str) {
        if let Some(list) = self.active.get_mut(task) {
            list.retain(|a| a.run_id != run_id);
            if list.is_empty() {
                self.active.remove(task);
            }
        }
    }

    fn is_active(&self, task: &str) -> bool {
        self.active.get(task).is_some_and(|l| !l.is_empty())
    }

    fn claim(&self, task: &str, at: DateTime<Utc>, now: DateTime<Utc>) -> Claim {
        Claim {
            run_id: uuid::Uuid::now_v7().to_string(),
            task: task.to_string(),
            scheduled_at: at,
            trigger: Trigger::Schedule,
            node: self.config.node_name.clone(),
            pid: std::process::id(),
            started_at: now,
            started_by: None,
        }
    }

    /// Decides what happens to the due fires of one task; the writes go into `ops` and
    /// what to do once each write took effect into `after` (same index).
    fn plan_fire(
        &mut self,
        name: &str,
        now: DateTime<Utc>,
        paused: Option<&TaskPause>,
        ops: &mut Vec<Op>,
        after: &mut Vec<After>,
    ) {
        let Some(task) = self.tasks.get(name).cloned() else {
            return;
        };
        let cursor = self.cursors.get(name).copied().unwrap_or(now);
        let p = plan(
            &task.schedule,
            cursor,
            now,
            task.misfire_grace,
            task.catch_up,
            self.config.scheduler.catch_up_limit,
        );
        for w in &p.warnings {
            warn!(task = %name, "{w}");
        }
        for at in &p.missed {
            ops.push(Op::Record(
                self.claim(name, *at, now),
                Status::Missed,
                p.missed_reason.clone(),
            ));
            after.push(After::Warn {
                task: name.to_string(),
                msg: format!("fire at {} missed: {}", fmt_instant(*at), p.missed_reason),
            });
        }
        if let Some(pause) = paused {
            // A paused task's fires are recorded, not run, and the cursor moves past them:
            // resuming does not replay what fell in the pause.
            let reason = pause.skip_reason();
            for at in &p.run {
                ops.push(Op::Record(
                    self.claim(name, *at, now),
                    Status::Skipped,
                    reason.clone(),
                ));
                after.push(After::Info {
                    task: name.to_string(),
                    msg: format!("fire at {} {reason}", fmt_instant(*at)),
                });
            }
        } else if p.run.len() > 1 {
            // Catch-up: all of them are claimed now and run one after another.
            for at in &p.run {
                self.push_defer(
                    &task,
                    *at,
                    now,
                    now,
                    "catch-up: waits for the earlier missed fires".into(),
                    ops,
                    after,
                );
            }
        } else if let Some(at) = p.run.first() {
            self.plan_dispatch(&task, *at, now, ops, after);
        }
        self.cursors.insert(name.to_string(), now);
        ops.push(Op::Cursor(name.to_string(), now));
        after.push(After::Nothing);
        self.reschedule(name);
    }

    #[allow(clippy::too_many_arguments)]
    fn push_defer(
        &self,
        task: &TaskSpec,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        reason: String,
        ops: &mut Vec<Op>,
        after: &mut Vec<After>,
    ) {
        let claim = self.claim(&task.name, at, now);
        after.push(After::Defer(
            Deferred {
                run_id: claim.run_id.clone(),
                task: task.name.clone(),
                scheduled_at: at,
                until,
            },
            reason.clone(),
        ));
        ops.push(Op::Defer(claim, until, reason));
    }

    fn plan_dispatch(
        &mut self,
        task: &Arc<TaskSpec>,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        ops: &mut Vec<Op>,
        after: &mut Vec<After>,
    ) {
        let name = task.name.as_str();
        if let Some(until) = quiet_until(&self.config.scheduler.quiet_hours, now) {
            let reason = quiet_reason(until, task.timezone);
            self.push_defer(task, at, now, until, reason, ops, after);
            return;
        }
        if task.concurrency == Concurrency::Replace && self.is_active(name) {
            for a in &self.active[name] {
                a.stop.stop(format!(
                    "replaced by the run for the fire at {} (concurrency: replace)",
                    fmt_instant(at)
                ));
            }
        }
        let claim = self.claim(name, at, now);
        after.push(After::Run {
            task: task.clone(),
            run_id: claim.run_id.clone(),
            at,
            lateness_ms: (now - at).num_milliseconds(),
        });
        // `forbid` is decided by the claim itself, in the store's transaction: a run of the
        // task that is `running` there (started by this process or any other sharing the
        // store) makes the fire `skipped`.
        ops.push(match task.concurrency {
            Concurrency::Forbid => Op::ClaimExclusive(claim),
            Concurrency::Replace | Concurrency::Allow => Op::Claim(claim),
        });
    }

    /// Applies the writes of one tick in one transaction, then starts what was claimed.
    async fn commit(&mut self, ops: Vec<Op>, after: Vec<After>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let applied = self.store.batch(&ops).await?;
        for (a, applied) in after.into_iter().zip(applied) {
            let took = applied.done();
            match a {
                After::Nothing => {}
                After::Warn { task, msg } if took => warn!(task = %task, "{msg}"),
                After::Warn { .. } => {}
                After::Info { task, msg } if took => info!(task = %task, "{msg}"),
                After::Info { .. } => {}
                After::Defer(d, reason) if took => {
                    info!(task = %d.task, scheduled_at = %fmt_instant(d.scheduled_at), "fire deferred: {reason}");
                    self.deferred.push(d);
                }
                After::Defer(..) => {}
                After::Run {
                    task,
                    run_id,
                    at,
                    lateness_ms,
                } => match applied {
                    Applied::Done => {
                        info!(task = %task.name, scheduled_at = %fmt_instant(at), lateness_ms, "fire");
                        self.spawn(task, run_id, at);
                    }
                    Applied::Skipped(reason) => {
                        warn!(task = %task.name, "fire at {}: {reason}", fmt_instant(at));
                    }
                    Applied::Taken => {
                        info!(task = %task.name, scheduled_at = %fmt_instant(at), "claim lost: this fire was already taken");
                    }
                },
            }
        }
        Ok(())
    }

    fn spawn(&mut self, task: Arc<TaskSpec>, run_id: String, at: DateTime<Utc>) {
        self.spawn_by(task, run_id, at, Trigger::Schedule, None);
    }

    fn spawn_by(
        &mut self,
        task: Arc<TaskSpec>,
        run_id: String,
        at: DateTime<Utc>,
        trigger: Trigger,
        started_by: Option<String>,
    ) {
        let stop = Stop::new();
        self.active
            .entry(task.name.clone())
            .or_default()
            .push(Active {
                run_id: run_id.clone(),
                stop: stop.clone(),
            });
        let job = Job {
            task: task.clone(),
            config: self.config.clone(),
            run_id: run_id.clone(),
            scheduled_at: at,
            fired_at: self.clock.now(),
            stop: stop.clone(),
            trigger,
            started_by,
        };
        let runner = self.runner.clone();
        let workers = self.workers.clone();
        let store = self.store.clone();
        let done = self.done_tx.clone();
        let clock = self.clock.clone();
        self.jobs.spawn(async move {
            let permit = tokio::select! {
                p = workers.acquire_owned() => p.ok(),
                _ = stop.stopped() => None,
            };
            if permit.is_some() {
                runner.run(job).await;
            } else {
                // Stopped while waiting for a worker slot: it never started.
                let outcome = Outcome {
                    status: Status::Cancelled,
                    finished_at: clock.now(),
                    rows: 0,
                    files: vec![],
                    warnings: vec![],
                    error: Some(format!("cancelled before it started: {}", stop.reason())),
                };
                if let Err(e) = store.finish(&run_id, &outcome).await {
                    error!(task = %task.name, error = %e, "cannot record a cancelled run");
                }
            }
            drop(permit);
            let _ = done.send(Done {
                task: task.name.clone(),
                run_id,
            });
        });
    }

    async fn start_deferred(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        if quiet_until(&self.config.scheduler.quiet_hours, now).is_some() {
            return Ok(());
        }
        self.deferred
            .sort_by(|a, b| (a.scheduled_at, &a.task).cmp(&(b.scheduled_at, &b.task)));
        let mut started_tasks: Vec<String> = Vec::new();
        let mut keep = Vec::new();
        for d in std::mem::take(&mut self.deferred) {
            // One at a time per task, oldest fire first.
            let ready =
                d.until <= now && !self.is_active(&d.task) && !started_tasks.contains(&d.task);
            if !ready {
                keep.push(d);
                continue;
            }
            let Some(task) = self.tasks.get(&d.task).cloned() else {
                // The task was removed: its deferred runs stay recorded, waiting for it.
                keep.push(d);
                continue;
            };
            if self
                .store
                .start_deferred(&d.run_id, &self.config.node_name, std::process::id(), now)
                .await?
            {
                info!(task = %d.task, scheduled_at = %fmt_instant(d.scheduled_at), lateness_ms = (now - d.scheduled_at).num_milliseconds(), "deferred fire starts");
                started_tasks.push(d.task.clone());
                self.spawn(task, d.run_id, d.scheduled_at);
            }
        }
        self.deferred = keep;
        Ok(())
    }

    /// Applies a new project (hot reload). An invalid task file keeps the last good version
    /// of its task scheduled; removed tasks stop being scheduled (running work goes on).
    pub async fn reload(
        &mut self,
        project: Project,
        now: DateTime<Utc>,
    ) -> Result<ReloadSummary, StoreError> {
        let mut summary = ReloadSummary::default();
        let Project {
            config,
            tasks,
            task_problems,
        } = project;
        if let Some(problems) = task_problems.get("") {
            // The tasks folder itself could not be read: change nothing.
            for p in problems {
                error!("reload skipped, keeping every task: {p}");
            }
            return Ok(summary);
        }
        let config = Arc::new(config);
        if config.scheduler.max_workers != self.config.scheduler.max_workers {
            warn!("scheduler.max_workers changes take effect at the next start");
        }
        if config.scheduler.drain_timeout != self.config.scheduler.drain_timeout
            || config.tasks_dir != self.config.tasks_dir
            || config.store != self.config.store
        {
            warn!(
                "scheduler.drain_timeout, tasks_dir and store changes take effect at the next start"
            );
        }
        self.config = config;
        self.refit_deferred(now).await?;
        let enabled: BTreeMap<String, TaskSpec> =
            tasks.into_iter().filter(|(_, t)| t.enabled).collect();
        let removed: Vec<String> = self
            .tasks
            .keys()
            .filter(|n| !enabled.contains_key(*n) && !task_problems.contains_key(*n))
            .cloned()
            .collect();
        for name in removed {
            self.tasks.remove(&name);
            if let Some(old) = self.next.remove(&name) {
                self.queue.remove(&(old, name.clone()));
            }
            self.cursors.remove(&name);
            summary.removed += 1;
            info!(task = %name, "task removed");
        }
        for (name, problems) in &task_problems {
            summary.invalid += 1;
            let kept = self.tasks.contains_key(name);
            for p in problems {
                error!(task = %name, kept_last_good = kept, "invalid task file: {p}");
            }
        }
        self.invalid = task_problems;
        for (name, spec) in enabled {
            match self.tasks.get(&name) {
                None => {
                    // A task that appears (or comes back) starts at now: fires from before
                    // it was scheduled are not missed.
                    self.tasks.insert(name.clone(), Arc::new(spec));
                    self.cursors.insert(name.clone(), now);
                    self.store.set_cursor(&name, now).await?;
                    self.reschedule(&name);
                    summary.added += 1;
                    info!(task = %name, "task added");
                }
                Some(old) if format!("{:?}", **old) != format!("{spec:?}") => {
                    self.tasks.insert(name.clone(), Arc::new(spec));
                    // A changed schedule starts from now: past fires of the new schedule
                    // are not "missed".
                    let cursor = self.cursors.get(&name).copied().unwrap_or(now).max(now);
                    self.cursors.insert(name.clone(), cursor);
                    self.store.set_cursor(&name, cursor).await?;
                    self.reschedule(&name);
                    summary.changed += 1;
                    info!(task = %name, "task changed");
                }
                Some(_) => {}
            }
        }
        info!(
            added = summary.added,
            changed = summary.changed,
            removed = summary.removed,
            invalid = summary.invalid,
            "reload"
        );
        Ok(summary)
    }

    /// Runs a task now, started by a person (the API's "run now"): claimed like a fire,
    /// as trigger `manual`, at `at` (a past period, as `ferry run --at` does) or at the
    /// current millisecond, and executed by the same runner and worker slots as the
    /// scheduled fires. Quiet hours and pauses do not hold it (a person asked for it);
    /// `concurrency: forbid` does (the fire is recorded `skipped`).
    pub async fn run_now(
        &mut self,
        name: &str,
        at: Option<DateTime<Utc>>,
        started_by: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<String, RunNowError> {
        self.collect_done();
        if !self.accepting {
            return Err(RunNowError::ShuttingDown);
        }
        let Some(task) = self.tasks.get(name).cloned() else {
            return Err(RunNowError::UnknownTask(name.to_string()));
        };
        // A run for now takes the current millisecond, or the next free one (two people
        // pressing "run" at once); a run for a given fire takes exactly that fire.
        let asked = at;
        let mut at = at.unwrap_or_else(|| {
            DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
        });
        let mut attempts = 0;
        let (run_id, applied) = loop {
            let mut claim = self.claim(name, at, now);
            claim.trigger = Trigger::Manual;
            claim.started_by = started_by.clone();
            let run_id = claim.run_id.clone();
            let op = match task.concurrency {
                Concurrency::Forbid => Op::ClaimExclusive(claim),
                Concurrency::Replace | Concurrency::Allow => Op::Claim(claim),
            };
            let applied = self.store.batch(&[op]).await?.remove(0);
            attempts += 1;
            if applied == Applied::Taken && asked.is_none() && attempts < 1000 {
                at += chrono::Duration::milliseconds(1);
                continue;
            }
            break (run_id, applied);
        };
        match applied {
            Applied::Done => {
                if task.concurrency == Concurrency::Replace && self.is_active(name) {
                    for a in &self.active[name] {
                        a.stop
                            .stop("replaced by a run started by hand (concurrency: replace)");
                    }
                }
                info!(task = %name, scheduled_at = %fmt_instant(at), started_by = started_by.as_deref().unwrap_or(""), "run started by hand");
                self.spawn_by(task, run_id.clone(), at, Trigger::Manual, started_by);
                Ok(run_id)
            }
            Applied::Taken => Err(RunNowError::Taken(fmt_instant(at))),
            Applied::Skipped(reason) => Err(RunNowError::Skipped { run_id, reason }),
        }
    }

    /// Asks a run of this daemon to stop (recorded `cancelled` with `reason`). False when
    /// no run with this id is active here.
    pub fn cancel(&mut self, run_id: &str, reason: &str) -> bool {
        self.collect_done();
        let found = self.active.values().flatten().find(|a| a.run_id == run_id);
        match found {
            Some(a) => {
                a.stop.stop(reason.to_string());
                true
            }
            None => false,
        }
    }

    /// Stops claiming; lets running runs finish for up to `drain`, then cancels the rest
    /// (recorded as cancelled) and waits for them to be recorded.
    pub async fn shutdown(&mut self, drain: Duration) {
        self.accepting = false;
        let running = self.active_runs();
        if running > 0 {
            info!(
                running,
                drain_secs = drain.as_secs(),
                "waiting for running runs to finish"
            );
        }
        let drained = tokio::time::timeout(drain, async {
            while self.jobs.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            for list in self.active.values() {
                for a in list {
                    a.stop.stop("ferry is shutting down (drain timeout passed)");
                }
            }
            warn!(
                runs = self.active_runs(),
                "drain timeout passed: cancelling running runs"
            );
            while self.jobs.join_next().await.is_some() {}
        }
        self.collect_done();
        info!("scheduler stopped");
    }
}

/// Why a run started by hand did not start.
#[derive(Debug, thiserror::Error)]
pub enum RunNowError {
    #[error("task `{0}` is not scheduled (unknown, invalid or disabled)")]
    UnknownTask(String),
    #[error("the fire at {0} already has a run (a fire runs at most once)")]
    Taken(String),
    /// `concurrency: forbid` and the task runs: the fire was recorded skipped.
    #[error("{reason}")]
    Skipped { run_id: String, reason: String },
    #[error("ferry is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a fire waits for the end of a quiet window, in the task's zone.
fn quiet_reason(until: DateTime<Utc>, zone: chrono_tz::Tz) -> String {
    format!(
        "quiet hours: starts at {}",
        until.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z")
    )
}

#[cfg(test)]
mod tests;
