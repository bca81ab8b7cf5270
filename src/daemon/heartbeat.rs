//! The heartbeat service: keeps this daemon's instance row alive in the store and finds
//! dead ones.
//!
//! Every [`HEARTBEAT_EVERY`] of the daemon's clock it writes the instance's heartbeat, then
//! records as failed the runs left `running` by instances whose heartbeat is older than
//! [`crate::store::INSTANCE_LEASE`] (another node that crashed), or by a process of this
//! node that is gone. On shutdown it beats on while the other services drain (their runs
//! still count as alive), then marks the instance stopped.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Context, Service};
use crate::clock::SharedClock;
use crate::store::{
    HEARTBEAT_EVERY, InstanceRecord, Outage, Store, process_alive, reap_interrupted,
};

pub struct HeartbeatService {
    store: Arc<dyn Store>,
    clock: SharedClock,
    instance: InstanceRecord,
    /// Cancelled when the other services have drained (see the module doc).
    last_out: CancellationToken,
}

impl HeartbeatService {
    /// The service of an instance already registered in the store.
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        instance: InstanceRecord,
        last_out: CancellationToken,
    ) -> Self {
        HeartbeatService {
            store,
            clock,
            instance,
            last_out,
        }
    }
}

#[async_trait]
impl Service for HeartbeatService {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    async fn run(self: Box<Self>, ctx: Context) {
        let HeartbeatService {
            store,
            clock,
            instance,
            last_out,
        } = *self;
        let mut beats = Outage::new("heartbeat");
        loop {
            tokio::select! {
                _ = clock.sleep(HEARTBEAT_EVERY) => {}
                _ = last_out.cancelled() => break,
            }
            if ctx.shutdown.is_cancelled() {
                // Draining: keep beating for the runs that finish, reap nothing.
                if let Err(e) = store.beat(&instance.instance_id, clock.now()).await {
                    warn!(error = %e, "heartbeat failed; trying again");
                }
                continue;
            }
            let now = clock.now();
            match store.beat(&instance.instance_id, now).await {
                Ok(true) => beats.ok(now),
                Ok(false) => {
                    beats.ok(now);
                    // Someone removed the row: put it back.
                    let again = InstanceRecord {
                        heartbeat_at: now,
                        ..instance.clone()
                    };
                    if let Err(e) = store.register(&again).await {
                        warn!(error = %e, "heartbeat: cannot register this instance again");
                    }
                }
                Err(e) => {
                    beats.failed(&e, now, HEARTBEAT_EVERY);
                    // Reaping needs the store too: it waits for the next beat.
                    continue;
                }
            }
            match reap_interrupted(&*store, &instance.node, &process_alive, now).await {
                Ok(reaped) if !reaped.is_empty() => warn!(
                    runs = reaped.len(),
                    "runs of a ferry process that stopped beating were recorded as failed"
                ),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "cannot look for runs of dead instances"),
            }
        }
        // The other services have drained: marking the instance stopped lets other nodes
        // take over its deliveries at once.
        if let Err(e) = store.unregister(&instance.instance_id, clock.now()).await {
            warn!(error = %e, "cannot mark this instance stopped");
        }
    }
}
