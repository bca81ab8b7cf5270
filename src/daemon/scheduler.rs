//! The scheduler service: the loop that drives [`Scheduler`] with the daemon's clock.
//!
//! It sleeps until the next due fire but wakes at least every [`MAX_SLEEP`], so wall-clock
//! jumps, NTP steps and suspended machines are noticed; it also wakes when a run ends (a
//! deferred run may start) and when a reloaded project is published. When the run store
//! fails (a full disk), the fires stay due and are tried again after a pause that grows
//! from 1 s to [`MAX_SLEEP`]; the failure is logged once and the recovery once
//! ([`Outage`]). On shutdown it stops
//! claiming, lets running runs finish up to the drain, and cancels the rest (recorded).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::error;

use super::{Context, Event, Service};
use crate::clock::SharedClock;
use crate::scheduler::Scheduler;
use crate::store::Outage;

/// The longest the loop sleeps without looking at the clock.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

pub struct SchedulerService {
    sched: Scheduler,
    clock: SharedClock,
}

impl SchedulerService {
    pub fn new(sched: Scheduler, clock: SharedClock) -> SchedulerService {
        SchedulerService { sched, clock }
    }
}

#[async_trait]
impl Service for SchedulerService {
    fn name(&self) -> &'static str {
        "scheduler"
    }

    async fn run(self: Box<Self>, mut ctx: Context) {
        let SchedulerService { mut sched, clock } = *self;
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
