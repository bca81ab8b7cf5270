//! The instances concern ([`Instances`]): which ferry processes work on the store, and
//! whether they are still alive.
//!
//! Each `ferry serve` (and each `ferry run`) registers an [`InstanceRecord`] and beats
//! every [`HEARTBEAT_EVERY`]; an instance whose last beat is older than
//! [`INSTANCE_LEASE`] (or that said it stopped) is dead. That is the cross-node rule for
//! reaping interrupted runs ([`reap_interrupted`]) and for taking over a delivery held by
//! another process; a process on this node may also be checked by its pid (a fast path:
//! a crashed process is known dead at once, not a lease later).

use std::any::Any;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{RunRecord, Store, StoreError};

/// How often a live instance writes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);

/// How long after its last heartbeat an instance counts as dead (several missed beats, so
/// a slow store does not kill a live node).
pub const INSTANCE_LEASE: Duration = Duration::from_secs(120);

/// How long a run or delivery holder with no instance row at all (written by a ferry
/// from before heartbeats) counts as alive after it started.
pub const NO_HEARTBEAT_GRACE: Duration = Duration::from_secs(3600);

/// One ferry process working on the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Random, unique per process start.
    pub instance_id: String,
    pub node: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Set when the instance stopped cleanly.
    pub stopped_at: Option<DateTime<Utc>>,
}

impl InstanceRecord {
    /// A new instance of this process, started at `now`.
    pub fn this_process(node: &str, now: DateTime<Utc>) -> InstanceRecord {
        InstanceRecord {
            instance_id: uuid::Uuid::now_v7().to_string(),
            node: node.to_string(),
            pid: std::process::id(),
            started_at: now,
            heartbeat_at: now,
            stopped_at: None,
        }
    }

    /// Alive at `now`: not stopped, and beat within [`INSTANCE_LEASE`].
    pub fn alive(&self, now: DateTime<Utc>) -> bool {
        self.stopped_at.is_none() && now.signed_duration_since(self.heartbeat_at) < lease()
    }
}

fn lease() -> chrono::Duration {
    chrono::Duration::from_std(INSTANCE_LEASE).unwrap_or(chrono::Duration::MAX)
}

/// A guard held for the life of a `ferry serve` (see [`Instances::lock_for_daemon`]).
pub type DaemonLock = Box<dyn Any + Send + Sync>;

/// Instances, their heartbeats, and the store's own lifecycle.
#[async_trait]
pub trait Instances: Send + Sync {
    /// Registers an instance (or replaces the row of the same id).
    async fn register(&self, instance: &InstanceRecord) -> Result<(), StoreError>;

    /// Writes an instance's heartbeat. False if the instance is not registered.
    async fn beat(&self, instance_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Marks an instance stopped.
    async fn unregister(&self, instance_id: &str, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Every registered instance (live or not), oldest start first.
    async fn instances(&self) -> Result<Vec<InstanceRecord>, StoreError>;

    /// What `ferry serve` holds while it runs, when the backend needs one: the embedded
    /// store allows one daemon per file (an exclusive lock beside it); a shared store
    /// allows several (they coordinate by claims and heartbeats) and returns a no-op.
    async fn lock_for_daemon(&self) -> Result<DaemonLock, StoreError>;

    /// Closes the connections (waits for writes in flight).
    async fn close(&self);
}

/// Whether the process `(node, pid)` may still be working, given the instances table:
/// `Some(alive)` when it has an instance row (the heartbeat decides), `None` when it has
/// none (older ferry, or a process that never registered).
pub fn holder_alive(
    instances: &[InstanceRecord],
    node: &str,
    pid: u32,
    now: DateTime<Utc>,
) -> Option<bool> {
    let mut rows = instances
        .iter()
        .filter(|i| i.node == node && i.pid == pid)
        .peekable();
    rows.peek()?;
    Some(rows.any(|i| i.alive(now)))
}

/// Whether the process holding something since `since` counts as alive: a process on
/// `me_node` is checked by `local_alive(pid)` (exact); one elsewhere by its heartbeat, or
/// when it has no instance row, for [`NO_HEARTBEAT_GRACE`] after `since`.
pub fn process_counts_alive(
    instances: &[InstanceRecord],
    node: &str,
    pid: u32,
    since: Option<DateTime<Utc>>,
    me_node: &str,
    local_alive: &(dyn Fn(u32) -> bool + Sync),
    now: DateTime<Utc>,
) -> bool {
    if node == me_node {
        return local_alive(pid);
    }
    holder_alive(instances, node, pid, now).unwrap_or_else(|| {
        let grace = chrono::Duration::from_std(NO_HEARTBEAT_GRACE).unwrap_or(chrono::Duration::MAX);
        since.is_none_or(|t| now.signed_duration_since(t) < grace)
    })
}

/// Marks runs left `running` by a process that is gone as failed: on this node (`node`)
/// when `local_alive(pid)` says the process is gone, elsewhere when its instance's
/// heartbeat is older than [`INSTANCE_LEASE`]. Returns the reaped run ids.
pub async fn reap_interrupted(
    store: &dyn Store,
    node: &str,
    local_alive: &(dyn Fn(u32) -> bool + Sync),
    now: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    let running: Vec<RunRecord> = store.running().await?;
    if running.is_empty() {
        return Ok(Vec::new());
    }
    let instances = store.instances().await?;
    let mut reaped = Vec::new();
    for r in running {
        if process_counts_alive(
            &instances,
            &r.node,
            r.pid,
            Some(r.started_at),
            node,
            local_alive,
            now,
        ) {
            continue;
        }
        let msg = format!(
            "interrupted: the ferry process (pid {} on {}) stopped before the run finished; no file was published for it",
            r.pid, r.node
        );
        if store.fail_interrupted(&r.run_id, &msg, now).await? {
            reaped.push(r.run_id);
        }
    }
    Ok(reaped)
}

/// Writes `instance_id`'s heartbeat every [`HEARTBEAT_EVERY`] of `clock` time until `stop`
/// is cancelled. A failed beat is logged and tried again at the next turn (the lease
/// allows several to fail).
pub async fn heartbeat_loop(
    store: std::sync::Arc<dyn Store>,
    instance_id: String,
    clock: crate::clock::SharedClock,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = clock.sleep(HEARTBEAT_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        match store.beat(&instance_id, clock.now()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(instance = %instance_id, "heartbeat: this instance is no longer registered")
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed; trying again"),
        }
    }
}
