//! The delivery ledger concern ([`Ledger`]): each run's deliveries written with its
//! outcome, attempts fenced by `(owner, attempts)`, per-recipient states, and owner-alert
//! admission.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    AlertAdmission, AttemptEnd, DeliveryKey, DeliveryStatus, DueDelivery, Outcome, Owner,
    QueuedDelivery, RecipientRecord, StoreError,
};

/// The delivery ledger.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Records how a claimed run ended and, in the same transaction, its deliveries as
    /// `pending` (held by `owner`, due now) or `failed` (not renderable): a crash can
    /// neither lose a delivery of a recorded run nor deliver for an unrecorded one.
    async fn finish_with_deliveries(
        &self,
        run_id: &str,
        outcome: &Outcome,
        deliveries: &[QueuedDelivery],
        owner: &Owner,
    ) -> Result<(), StoreError>;

    /// Records an owner alert about a run as a `pending` delivery of that run (label
    /// `channel`, due now, held by `owner` who attempts it next). False when that alert
    /// (`channel`, `occurrence`) is already recorded.
    async fn enqueue_alert(
        &self,
        run_id: &str,
        channel: &str,
        occurrence: u32,
        message: &str,
        owner: &Owner,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Marks a delivery `sending` (one more attempt, held by `owner`) if it is still in
    /// state `from` with `attempts` attempts: false if someone else took it meanwhile.
    async fn begin_attempt(
        &self,
        key: &DeliveryKey,
        from: DeliveryStatus,
        attempts: u32,
        owner: &Owner,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Records how an attempt ended, with its recipients' states, in one transaction —
    /// only while the delivery is still held by `owner` at its `attempts`-th attempt (the
    /// fence: a process that took it over meanwhile keeps it). Returns false, writing
    /// nothing, when it was taken over.
    async fn end_attempt(
        &self,
        key: &DeliveryKey,
        end: &AttemptEnd,
        owner: &Owner,
        attempts: u32,
    ) -> Result<bool, StoreError>;

    /// The recipients of an email delivery as last recorded (none before its first
    /// attempt ends).
    async fn recipients(&self, key: &DeliveryKey) -> Result<Vec<RecipientRecord>, StoreError>;

    /// Deliveries that are `pending` and due at `now`, and those left `sending`, oldest
    /// first, at most `limit`.
    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError>;

    /// The deliveries still to go out (`pending`, `sending`; with `failed`: those given
    /// up instead), with their run's task, oldest first, at most `limit`.
    async fn queued_deliveries(
        &self,
        failed: bool,
        limit: usize,
    ) -> Result<Vec<super::QueuedEntry>, StoreError>;

    /// Makes a delivery due now: a `pending` one is tried at the next pass, a `failed`
    /// one (whose message could be rendered) becomes `pending` again, with its failed
    /// recipients. False when it is neither (sent, being sent, unknown).
    async fn retry_delivery(
        &self,
        key: &DeliveryKey,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Owner alerts, at most one per task per `every`: when none was sent for `task`
    /// within `every` before `now`, records one as sent now and returns how many failures
    /// were held back since the previous one; otherwise counts this failure as held back
    /// and returns `None`. One transaction, so two processes never both alert.
    async fn admit_alert(
        &self,
        task: &str,
        now: DateTime<Utc>,
        every: Duration,
    ) -> Result<Option<AlertAdmission>, StoreError>;
}
