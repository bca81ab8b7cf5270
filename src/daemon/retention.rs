//! The retention service: applies `retention:` ([`crate::retention`]) once at start and
//! then every day of the daemon's clock, with the project as last reloaded. Logs what it
//! removed; a store error is logged and tried again at the next pass.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::{info, warn};

use super::{Context, Service};
use crate::clock::SharedClock;
use crate::retention::FileState;
use crate::store::Store;

/// Time between two passes.
pub const EVERY: Duration = Duration::from_secs(24 * 3600);

pub struct RetentionService {
    store: Arc<dyn Store>,
    clock: SharedClock,
}

impl RetentionService {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock) -> Self {
        RetentionService { store, clock }
    }

    async fn pass(&self, ctx: &Context) {
        let project = ctx.project.borrow().clone();
        let r = project.config.retention;
        let any_task = project
            .tasks
            .values()
            .any(|t| t.retention != Default::default());
        if r == Default::default() && !any_task {
            return;
        }
        let now = self.clock.now();
        let done = async {
            let plan = crate::retention::plan(self.store.as_ref(), &project, now, None).await?;
            crate::retention::apply(
                self.store.as_ref(),
                &plan,
                &project.config.output_dir,
                now,
                false,
            )
            .await
        }
        .await;
        match done {
            Ok(report) => {
                for f in &report.files {
                    match &f.state {
                        FileState::Removed => {
                            info!(task = %f.task, run_id = %f.run_id, bytes = f.bytes, "retention: removed {}", f.path.display())
                        }
                        FileState::Failed(e) => {
                            warn!(task = %f.task, run_id = %f.run_id, "retention: cannot remove {}: {e}", f.path.display())
                        }
                        FileState::AlreadyGone | FileState::Outside => {}
                    }
                }
                let files = report
                    .files
                    .iter()
                    .filter(|f| f.state == FileState::Removed)
                    .count();
                info!(
                    files,
                    freed_bytes = report.freed,
                    runs = report.deleted.runs,
                    "retention pass done"
                );
                ctx.emit(super::Event::RetentionPass {
                    files,
                    freed: report.freed,
                    runs: report.deleted.runs,
                });
            }
            Err(e) => warn!(error = %e, "retention pass failed; trying again at the next pass"),
        }
    }
}

#[async_trait]
impl Service for RetentionService {
    fn name(&self) -> &'static str {
        "retention"
    }

    async fn run(self: Box<Self>, ctx: Context) {
        loop {
            // The next pass is due a day after this one starts (not after it ends): a
            // clock that moves while the pass runs (a manual one in tests) is honoured.
            let next = self.clock.now() + EVERY;
            self.pass(&ctx).await;
            tokio::select! {
                _ = self.clock.sleep_until(next) => {}
                _ = ctx.shutdown.cancelled() => break,
            }
        }
    }
}
