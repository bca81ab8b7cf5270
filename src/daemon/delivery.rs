//! The delivery service: sends what recorded runs left to send, beside the scheduler and
//! never in its worker slots.
//!
//! - Each run the scheduler records arrives as a [`Followup`]: its deliveries are attempted
//!   at once, with the in-run retries ([`crate::exec::deliver::deliver_in_run`]), and its
//!   owner alert follows. Followups run concurrently, so a robot that waits for its rate
//!   limit or a webhook that never answers holds back no other run's messages.
//! - Every `scheduler.delivery_interval` (and at start) a pass attempts the ledger's due
//!   deliveries ([`deliver_due`]): retries that a run left `pending`, and deliveries a
//!   crashed process left behind (`sending` ones are sent once more and recorded
//!   `maybe_duplicate`). It never runs a query; it sends the recorded message. One pass at
//!   a time. Each pass logs `delivery pass attempted=N` (at DEBUG when it attempted
//!   nothing, at INFO otherwise) and publishes [`Event::DeliveryPass`].
//! - A pass is also started when asked ([`super::Handle`]'s API seam: a delivery retried
//!   by hand).
//! - On shutdown, retries stop being waited for (the deliveries stay `pending` for the
//!   next start) and attempts under way may finish within the drain.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::{Context, Event, Service};
use crate::clock::SharedClock;
use crate::config::Project;
use crate::exec::deliver::{Env, deliver_due};
use crate::exec::{Followup, Stop};
use crate::notify::Registry;
use crate::store::{Outage, Owner, Store, StoreError};

pub struct DeliveryService {
    store: Arc<dyn Store>,
    clock: SharedClock,
    followups: mpsc::UnboundedReceiver<Followup>,
    /// Asks for a pass now (a delivery retried through the API).
    wake: Arc<Notify>,
}

impl DeliveryService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        followups: mpsc::UnboundedReceiver<Followup>,
        wake: Arc<Notify>,
    ) -> DeliveryService {
        DeliveryService {
            store,
            clock,
            followups,
            wake,
        }
    }
}

/// The project as last published, and its channels: rebuilt when a reload publishes a
/// new project, keeping the robots' queues.
struct Current {
    project: Arc<Project>,
    channels: Arc<Registry>,
}

impl Current {
    fn new(project: Arc<Project>, store: Arc<dyn Store>, clock: SharedClock) -> Current {
        let channels = Arc::new(Registry::with_store(&project.config, store, clock));
        Current { project, channels }
    }

    fn get(&mut self, ctx: &Context) -> (Arc<Project>, Arc<Registry>) {
        let latest = ctx.project.borrow().clone();
        if !Arc::ptr_eq(&latest, &self.project) {
            self.channels = Arc::new(self.channels.reloaded(&latest.config));
            self.project = latest;
        }
        (self.project.clone(), self.channels.clone())
    }
}

/// What a finished piece of work was.
enum Done {
    Followup(String),
    /// A pass that started at this instant of the daemon's clock, and the store's error
    /// if it could not read the ledger.
    Pass {
        attempted: usize,
        at: chrono::DateTime<chrono::Utc>,
        failed: Option<StoreError>,
    },
}

#[async_trait]
impl Service for DeliveryService {
    fn name(&self) -> &'static str {
        "delivery"
    }

    async fn run(self: Box<Self>, ctx: Context) {
        let DeliveryService {
            store,
            clock,
            mut followups,
            wake: asked,
        } = *self;
        // A pass was asked for while one ran: the next starts as soon as it ends.
        let mut again = false;
        // Ends the in-run retries of followups at shutdown.
        let stop = Stop::new();
        let mut work: JoinSet<Done> = JoinSet::new();
        let mut pass_running = false;
        let mut next_pass = clock.now();
        let mut current = Current::new(ctx.project.borrow().clone(), store.clone(), clock.clone());
        // Passes keep their interval while the store fails; only the logging changes.
        let mut outage = Outage::new("delivery worker");
        loop {
            if !pass_running && clock.now() >= next_pass {
                pass_running = true;
                let (project, channels) = current.get(&ctx);
                let store = store.clone();
                let clock = clock.clone();
                let at = clock.now();
                work.spawn(async move {
                    let me = Owner {
                        node: project.config.node_name.clone(),
                        pid: std::process::id(),
                    };
                    let env = Env {
                        store: &*store,
                        config: &project.config,
                        channels: &channels,
                        clock: &*clock,
                    };
                    let (attempted, failed) = match deliver_due(env, &project.tasks, &me).await {
                        Ok(n) => (n, None),
                        Err(e) => (0, Some(e)),
                    };
                    // One line per pass, so a log shows that a pass happened (tests of the
                    // binary wait for it); the empty ones, every `delivery_interval`, at
                    // DEBUG only.
                    if attempted == 0 {
                        debug!(attempted, "delivery pass");
                    } else {
                        info!(attempted, "delivery pass");
                    }
                    Done::Pass {
                        attempted,
                        at,
                        failed,
                    }
                });
            }
            let interval = ctx.project.borrow().config.scheduler.delivery_interval;
            let wake = clock.sleep_until(next_pass.max(clock.now()));
            tokio::select! {
                Some(f) = followups.recv() => {
                    let (project, channels) = current.get(&ctx);
                    work.spawn(complete(f, store.clone(), project, channels, clock.clone(), stop.clone()));
                }
                Some(done) = work.join_next() => match done {
                    Ok(Done::Followup(run_id)) => ctx.emit(Event::FollowupDone { run_id }),
                    Ok(Done::Pass { attempted, at, failed }) => {
                        pass_running = false;
                        match failed {
                            Some(e) => {
                                outage.failed(&e, clock.now(), interval);
                            }
                            None => outage.ok(clock.now()),
                        }
                        next_pass = if std::mem::take(&mut again) {
                            clock.now()
                        } else {
                            clock.now() + chrono::Duration::from_std(interval).unwrap_or(chrono::TimeDelta::MAX)
                        };
                        ctx.emit(Event::DeliveryPass { attempted, at });
                    }
                    Err(e) => {
                        error!(error = %e, "a delivery task panicked");
                        pass_running = false;
                    }
                },
                _ = wake, if !pass_running => {}
                _ = asked.notified() => {
                    if pass_running {
                        again = true;
                    } else {
                        next_pass = clock.now();
                    }
                }
                _ = ctx.shutdown.cancelled() => break,
            }
        }
        // Retries are no longer waited for; runs the scheduler records while it drains
        // still get their attempt, until it lets go of the queue (or the drain ends).
        stop.stop("ferry is shutting down");
        let drained = tokio::time::timeout(ctx.drain, async {
            loop {
                tokio::select! {
                    Some(f) = followups.recv() => {
                        let (project, channels) = current.get(&ctx);
                        work.spawn(complete(f, store.clone(), project, channels, clock.clone(), stop.clone()));
                    }
                    Some(done) = work.join_next() => {
                        if let Ok(Done::Followup(run_id)) = done {
                            ctx.emit(Event::FollowupDone { run_id });
                        }
                    }
                    else => break,
                }
            }
        })
        .await
        .is_ok();
        if !drained {
            work.abort_all();
            warn!(
                "deliveries still under way after the drain were cut; they are resent (maybe_duplicate) at the next start"
            );
        }
    }
}

/// Completes one run's followup.
async fn complete(
    f: Followup,
    store: Arc<dyn Store>,
    project: Arc<Project>,
    channels: Arc<Registry>,
    clock: SharedClock,
    stop: Stop,
) -> Done {
    let run_id = f.result().run_id.clone();
    let env = Env {
        store: &*store,
        config: &project.config,
        channels: &channels,
        clock: &*clock,
    };
    if let Err(e) = f.complete(env, &stop).await {
        error!(%run_id, error = %e, "the run's notifications could not be recorded; the delivery worker retries them");
    }
    Done::Followup(run_id)
}
