//! The scheduler service: the loop that drives [`Scheduler`] with the daemon's clock.
//!
//! It sleeps until the next due fire but wakes at least every [`MAX_SLEEP`], so wall-clock
//! jumps, NTP steps and suspended machines are noticed; it also wakes when a run ends (a
//! deferred run may start) and when a reloaded project is published. When the run store
//! fails (a full disk), the fires stay due and are tried again after a pause that grows
//! from 1 s to [`MAX_SLEEP`]; the failure is logged once and the recovery once
//! ([`Outage`]). It also takes [`Command`]s from the API through a [`Control`]: run a
//! task now, cancel a run (the same runner and worker slots as the fires). On shutdown it stops
//! claiming, lets running runs finish up to the drain, and cancels the rest (recorded).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::{Context, Event, Service};
use crate::clock::SharedClock;
use crate::scheduler::{RunNowError, Scheduler};
use crate::store::Outage;

/// The longest the loop sleeps without looking at the clock.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

/// What the API asks of the scheduler.
pub enum Command {
    /// [`Scheduler::run_now`]; answers the run id.
    RunNow {
        task: String,
        at: Option<DateTime<Utc>>,
        by: Option<String>,
        reply: oneshot::Sender<Result<String, RunNowError>>,
    },
    /// [`Scheduler::cancel`]; answers whether the run was active here.
    Cancel {
        run_id: String,
        reason: String,
        reply: oneshot::Sender<bool>,
    },
}

/// Sends [`Command`]s to the scheduler service.
#[derive(Clone)]
pub struct Control(mpsc::Sender<Command>);

impl Control {
    /// A control and the receiving end the service reads.
    pub fn new() -> (Control, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(64);
        (Control(tx), rx)
    }

    /// Starts a run of `task` now (or for the fire at `at`), started by `by`.
    pub async fn run_now(
        &self,
        task: &str,
        at: Option<DateTime<Utc>>,
        by: Option<String>,
    ) -> Result<String, RunNowError> {
        let (reply, answer) = oneshot::channel();
        let cmd = Command::RunNow {
            task: task.to_string(),
            at,
            by,
            reply,
        };
        if self.0.send(cmd).await.is_err() {
            return Err(RunNowError::ShuttingDown);
        }
        answer.await.unwrap_or(Err(RunNowError::ShuttingDown))
    }

    /// Cancels a run of this daemon; false when it is not running here.
    pub async fn cancel(&self, run_id: &str, reason: &str) -> bool {
        let (reply, answer) = oneshot::channel();
        let cmd = Command::Cancel {
            run_id: run_id.to_string(),
            reason: reason.to_string(),
            reply,
        };
        self.0.send(cmd).await.is_ok() && answer.await.unwrap_or(false)
    }
}

pub struct SchedulerService {
    sched: Scheduler,
    clock: SharedClock,
    commands: mpsc::Receiver<Command>,
}

impl SchedulerService {
    pub fn new(
        sched: Scheduler,
        clock: SharedClock,
        commands: mpsc::Receiver<Command>,
    ) -> SchedulerService {
        SchedulerService {
            sched,
            clock,
            commands,
        }
    }
}

#[async_trait]
impl Service for SchedulerService {
    fn name(&self) -> &'static str {
        "scheduler"
    }

    async fn run(self: Box<Self>, mut ctx: Context) {
        let SchedulerService {
            mut sched,
            clock,
            mut commands,
        } = *self;
        let mut store = Outage::new("scheduler");
        loop {
            let now = clock.now();
            // A fire whose claim failed stays due: without a pause the loop would spin
            // on a store that fails at once (a full disk).
            let sleep_for = match sched.tick(now).await {
                Ok(()) => {
                    store.ok(now);
                    sched.sleep_for(now, MAX_SLEEP)
                }
                Err(e) => store.failed(&e, now, MAX_SLEEP),
            };
            ctx.emit(Event::Ticked(now));
            let sleep = clock.sleep(sleep_for);
            tokio::select! {
                _ = sleep => {}
                _ = sched.completed() => {}
                Some(cmd) = commands.recv() => match cmd {
                    Command::RunNow { task, at, by, reply } => {
                        let _ = reply.send(sched.run_now(&task, at, by, clock.now()).await);
                    }
                    Command::Cancel { run_id, reason, reply } => {
                        let _ = reply.send(sched.cancel(&run_id, &reason));
                    }
                },
                changed = ctx.project.changed() => {
                    if changed.is_err() {
                        // The daemon is going away.
                        ctx.shutdown.cancelled().await;
                        break;
                    }
                    let project = Arc::unwrap_or_clone(ctx.project.borrow_and_update().clone());
                    match sched.reload(project, clock.now()).await {
                        Ok(summary) => ctx.emit(Event::Reloaded(summary)),
                        Err(e) => error!(error = %e, "reload failed in the run store"),
                    }
                }
                _ = ctx.shutdown.cancelled() => break,
            }
        }
        sched.shutdown(ctx.drain).await;
    }
}
