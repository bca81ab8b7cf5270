//! The store conformance suite: what every run store backend must do, written once against
//! `dyn Store` and run here against SQLite. A new backend (PostgreSQL for the cluster)
//! implements [`Backend`] for a fresh database and adds one `conformance!` line.
//!
//! Cases: claims unique per (task, fire); many concurrent claimers; `concurrency: forbid`
//! decided by the claim; ledger fencing; deferrals; cursors; channel pauses; task pauses; retention; heartbeats and
//! dead instances; migrations refusing a newer schema; mail claimed once, quotas and reply
//! caps (query by email); users, tokens, sessions, audit, task revisions, run pages and
//! the delivery queue of the HTTP API (`store_conformance_access.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use ferry::store::{
    Applied, AttemptEnd, Claim, Deleted, DeliveryKey, DeliveryStatus, DownloadRecord, FileRecord,
    HistoryFilter, InstanceRecord, LinkRecord, MailClaim, MailRecord, Op, Outcome, Owner,
    QueuedDelivery, ReplySlot, Status, Store, StoreError, TaskPause, Trigger, reap_interrupted,
};

pub use crate::store_conformance_access::*;

/// A fresh, empty database of one backend.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Another handle (its own connections, as another process would have) on the same
    /// database, migrated.
    async fn open(&self) -> Result<Arc<dyn Store>, StoreError>;

    /// Records in the database a schema version beyond the newest this ferry knows.
    async fn add_newer_schema_version(&self);
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(crate) fn base() -> DateTime<Utc> {
    t("2026-03-01T00:00:00Z")
}

pub(crate) fn claim(task: &str, at: DateTime<Utc>, node: &str, pid: u32) -> Claim {
    Claim {
        run_id: uuid::Uuid::now_v7().to_string(),
        task: task.into(),
        scheduled_at: at,
        trigger: Trigger::Schedule,
        node: node.into(),
        pid,
        started_at: at,
        started_by: None,
    }
}

pub(crate) fn outcome(status: Status, at: DateTime<Utc>) -> Outcome {
    Outcome {
        status,
        finished_at: at,
        rows: 0,
        files: vec![],
        warnings: vec![],
        error: None,
    }
}

/// Two deliveries of a run: `ding` (rendered, pending) and `box` (not renderable).
pub(crate) fn ding_and_box() -> [QueuedDelivery; 2] {
    [
        QueuedDelivery {
            channel: "ding".into(),
            occurrence: 1,
            message: Ok("{}".into()),
        },
        QueuedDelivery {
            channel: "box".into(),
            occurrence: 1,
            message: Err("template error".into()),
        },
    ]
}

pub(crate) async fn open(b: &dyn Backend) -> Arc<dyn Store> {
    b.open().await.expect("open the store")
}

pub async fn claims_are_unique_per_task_and_fire(b: &dyn Backend) {
    let s = open(b).await;
    let at = base();
    assert!(s.claim(&claim("a", at, "n1", 1)).await.unwrap());
    assert!(!s.claim(&claim("a", at, "n1", 1)).await.unwrap());
    assert!(s.claim(&claim("b", at, "n1", 1)).await.unwrap());
    // A recorded (missed) fire takes the fire too.
    assert!(
        s.record(
            &claim("a", at + Duration::hours(1), "n1", 1),
            Status::Missed,
            "m"
        )
        .await
        .unwrap()
    );
    assert!(
        !s.claim(&claim("a", at + Duration::hours(1), "n1", 1))
            .await
            .unwrap()
    );
    // Another handle sees the same rows.
    let other = open(b).await;
    assert!(!other.claim(&claim("b", at, "n2", 2)).await.unwrap());
    let all = other
        .list(&HistoryFilter {
            task: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
}

/// 8 tasks × 4 claimers (each its own handle) × 50 fires: each fire is claimed exactly once.
pub async fn concurrent_claimers_take_each_fire_once(b: &dyn Backend) {
    const TASKS: usize = 8;
    const CLAIMERS: usize = 4;
    const FIRES: i64 = 50;
    let mut handles = Vec::new();
    for c in 0..CLAIMERS {
        let store = open(b).await;
        for task in 0..TASKS {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let mut won = Vec::new();
                for f in 0..FIRES {
                    let at = base() + Duration::minutes(f);
                    let name = format!("t{task}");
                    // Half the claimers batch a fire with a cursor move, as the scheduler does.
                    let took = if c % 2 == 0 {
                        store
                            .claim(&claim(&name, at, &format!("n{c}"), c as u32))
                            .await
                            .unwrap()
                    } else {
                        let ops = [
                            Op::Claim(claim(&name, at, &format!("n{c}"), c as u32)),
                            Op::Cursor(name.clone(), at),
                        ];
                        store.batch(&ops).await.unwrap()[0].done()
                    };
                    if took {
                        won.push((name, f));
                    }
                }
                won
            }));
        }
    }
    let mut wins: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for h in handles {
        for w in h.await.unwrap() {
            *wins.entry(w).or_default() += 1;
        }
    }
    assert_eq!(wins.len(), TASKS * FIRES as usize, "every fire claimed");
    assert!(wins.values().all(|n| *n == 1), "no fire claimed twice");
    let s = open(b).await;
    let runs = s
        .list(&HistoryFilter {
            task: None,
            limit: 10_000,
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), TASKS * FIRES as usize);
}

/// `concurrency: forbid` is the claim's decision: a run of the task `running` anywhere
/// turns the fire into `skipped`, naming the running fire.
pub async fn forbid_is_decided_by_the_claim(b: &dyn Backend) {
    let s = open(b).await;
    let other = open(b).await;
    let first = claim("f", base(), "n1", 1);
    assert_eq!(
        s.batch(&[Op::ClaimExclusive(first.clone())]).await.unwrap(),
        [Applied::Done]
    );
    // A second scheduler, on another handle, cannot overlap it.
    let second = claim("f", base() + Duration::minutes(1), "n2", 2);
    let got = other
        .batch(&[Op::ClaimExclusive(second.clone())])
        .await
        .unwrap();
    let Applied::Skipped(reason) = &got[0] else {
        panic!("expected skipped, got {got:?}");
    };
    assert!(reason.contains("2026-03-01T00:00:00.000Z"), "{reason}");
    assert!(reason.contains("concurrency: forbid"), "{reason}");
    let rec = s.get(&second.run_id).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Skipped);
    assert_eq!(rec.reason.as_deref(), Some(reason.as_str()));
    // The fire is taken: claiming it again does nothing.
    assert_eq!(
        s.batch(&[Op::ClaimExclusive(second)]).await.unwrap(),
        [Applied::Taken]
    );
    // Other tasks are not affected; a plain claim (allow) is not either.
    assert!(
        s.claim(&claim("g", base() + Duration::minutes(1), "n1", 1))
            .await
            .unwrap()
    );
    // Once the run ended, the next fire runs.
    s.finish(
        &first.run_id,
        &outcome(Status::Succeeded, base() + Duration::seconds(90)),
    )
    .await
    .unwrap();
    let third = claim("f", base() + Duration::minutes(2), "n2", 2);
    assert_eq!(
        other.batch(&[Op::ClaimExclusive(third)]).await.unwrap(),
        [Applied::Done]
    );
    // Racing exclusive claims of different fires of an idle task: exactly one runs.
    let (a, c) = (open(b).await, open(b).await);
    let ra = tokio::spawn(async move {
        a.batch(&[Op::ClaimExclusive(claim("h", base(), "n1", 1))])
            .await
            .unwrap()
    });
    let rc = tokio::spawn(async move {
        c.batch(&[Op::ClaimExclusive(claim(
            "h",
            base() + Duration::seconds(1),
            "n2",
            2,
        ))])
        .await
        .unwrap()
    });
    let got = [ra.await.unwrap().remove(0), rc.await.unwrap().remove(0)];
    assert_eq!(got.iter().filter(|g| g.done()).count(), 1, "{got:?}");
}

/// Of two processes that read the same due delivery, only one gets the attempt, and only
/// the holder at that attempt may record its end.
pub async fn ledger_attempts_are_fenced(b: &dyn Backend) {
    let s = open(b).await;
    let other = open(b).await;
    let c = claim("l", base(), "n1", 1);
    assert!(s.claim(&c).await.unwrap());
    let at = base() + Duration::seconds(1);
    let me = Owner {
        node: "n1".into(),
        pid: 1,
    };
    let queued = ding_and_box();
    s.finish_with_deliveries(&c.run_id, &outcome(Status::Succeeded, at), &queued, &me)
        .await
        .unwrap();
    let rec = s.get(&c.run_id).await.unwrap().unwrap();
    let channels: Vec<&str> = rec.deliveries.iter().map(|d| d.channel.as_str()).collect();
    assert_eq!(
        channels,
        ["ding", "box"],
        "deliveries keep the notify order"
    );
    assert_eq!(rec.duration_ms, Some(1000));
    let due = s.due_deliveries(at, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let key = DeliveryKey {
        run_id: c.run_id.clone(),
        channel: "ding".into(),
        occurrence: 1,
    };
    let them = Owner {
        node: "n2".into(),
        pid: 2,
    };
    let (s1, s2, k1, k2, o1, o2) = (
        s.clone(),
        other.clone(),
        key.clone(),
        key.clone(),
        me.clone(),
        them.clone(),
    );
    let a = tokio::spawn(async move {
        s1.begin_attempt(&k1, DeliveryStatus::Pending, 0, &o1, at)
            .await
            .unwrap()
    });
    let z = tokio::spawn(async move {
        s2.begin_attempt(&k2, DeliveryStatus::Pending, 0, &o2, at)
            .await
            .unwrap()
    });
    let (a, z) = (a.await.unwrap(), z.await.unwrap());
    assert!(a ^ z, "exactly one owner wins the attempt: {a} {z}");
    let (winner, loser) = if a { (&me, &them) } else { (&them, &me) };
    let sent = AttemptEnd {
        status: DeliveryStatus::Sent,
        retryable: false,
        receipt: Some("ok".into()),
        error: None,
        next_attempt_at: None,
        at,
        keep_owner: false,
        recipients: vec![],
    };
    assert!(!s.end_attempt(&key, &sent, loser, 1).await.unwrap());
    assert!(!s.end_attempt(&key, &sent, winner, 2).await.unwrap());
    assert!(other.end_attempt(&key, &sent, winner, 1).await.unwrap());
    let rec = s.get(&c.run_id).await.unwrap().unwrap();
    assert_eq!(rec.deliveries[0].status, DeliveryStatus::Sent);
    assert_eq!(rec.deliveries[0].attempts, 1);
    assert_eq!(rec.deliveries[0].tried_at, [at]);
    assert!(s.due_deliveries(at, 10).await.unwrap().is_empty());
}

pub async fn deferred_runs_start_once(b: &dyn Backend) {
    let s = open(b).await;
    let other = open(b).await;
    let c = claim("d", base(), "n1", 1);
    let until = base() + Duration::hours(3);
    assert!(s.defer(&c, until, "quiet hours").await.unwrap());
    assert!(!s.defer(&c, until, "quiet hours").await.unwrap());
    let listed = other.deferred().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].deferred_until, Some(until));
    let sooner = base() + Duration::hours(1);
    assert!(
        s.redefer(&c.run_id, sooner, "window shortened")
            .await
            .unwrap()
    );
    assert_eq!(
        other.deferred().await.unwrap()[0].deferred_until,
        Some(sooner)
    );
    // Two processes start it: one wins.
    let (s1, s2, r1, r2) = (s.clone(), other.clone(), c.run_id.clone(), c.run_id.clone());
    let a = tokio::spawn(async move { s1.start_deferred(&r1, "n1", 1, sooner).await.unwrap() });
    let z = tokio::spawn(async move { s2.start_deferred(&r2, "n2", 2, sooner).await.unwrap() });
    let (a, z) = (a.await.unwrap(), z.await.unwrap());
    assert!(a ^ z, "exactly one start: {a} {z}");
    assert!(s.deferred().await.unwrap().is_empty());
    assert!(!s.redefer(&c.run_id, until, "late").await.unwrap());
    assert_eq!(
        s.get(&c.run_id).await.unwrap().unwrap().status,
        Status::Running
    );
}

pub async fn cursors_only_move_forward(b: &dyn Backend) {
    let s = open(b).await;
    assert_eq!(s.cursor("c").await.unwrap(), None);
    s.set_cursor("c", base() + Duration::hours(2))
        .await
        .unwrap();
    s.set_cursor("c", base()).await.unwrap();
    assert_eq!(
        s.cursor("c").await.unwrap(),
        Some(base() + Duration::hours(2))
    );
    s.set_cursor("c", base() + Duration::hours(3))
        .await
        .unwrap();
    s.set_cursor("e", base()).await.unwrap();
    let all = open(b).await.cursors().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["c"], base() + Duration::hours(3));
}

/// A channel pause (DingTalk 130101: ten minutes) holds across handles and restarts.
pub async fn pauses_survive_a_restart(b: &dyn Backend) {
    let s = open(b).await;
    let until = base() + Duration::minutes(10);
    assert_eq!(s.pause("dingtalk:ops", base()).await.unwrap(), None);
    s.set_pause("dingtalk:ops", until, "130101 send too fast")
        .await
        .unwrap();
    s.close().await;
    let s = open(b).await;
    assert_eq!(
        s.pause("dingtalk:ops", base() + Duration::minutes(5))
            .await
            .unwrap(),
        Some((until, "130101 send too fast".to_string()))
    );
    assert_eq!(s.pause("dingtalk:ops", until).await.unwrap(), None);
    assert_eq!(s.pause("dingtalk:other", base()).await.unwrap(), None);
    // A new pause replaces the old one.
    s.set_pause("dingtalk:ops", until + Duration::minutes(10), "again")
        .await
        .unwrap();
    assert_eq!(
        s.pause("dingtalk:ops", until).await.unwrap().unwrap().1,
        "again"
    );
}

/// A task paused by hand holds across handles with who, why and when; pausing again
/// replaces it; resuming returns the pause it ended, once.
pub async fn task_pauses_are_kept_until_resumed(b: &dyn Backend) {
    let s = open(b).await;
    assert!(s.paused_tasks().await.unwrap().is_empty());
    assert_eq!(s.resume_task("daily").await.unwrap(), None);
    let pause = TaskPause {
        task: "daily".into(),
        by: "alice@node-a".into(),
        reason: Some("source database migration until Monday".into()),
        at: base(),
    };
    s.pause_task(&pause).await.unwrap();
    s.pause_task(&TaskPause {
        task: "weekly".into(),
        by: "bob@node-b".into(),
        reason: None,
        at: base() + Duration::minutes(1),
    })
    .await
    .unwrap();
    s.close().await;
    let s = open(b).await;
    let all = s.paused_tasks().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], pause);
    assert_eq!(all[1].task, "weekly");
    assert_eq!(all[1].reason, None);
    // Pausing again replaces who, why and when.
    let again = TaskPause {
        by: "carol@node-a".into(),
        reason: Some("still migrating".into()),
        at: base() + Duration::hours(1),
        ..pause.clone()
    };
    s.pause_task(&again).await.unwrap();
    assert_eq!(s.paused_tasks().await.unwrap()[0], again);
    assert_eq!(s.resume_task("daily").await.unwrap(), Some(again));
    assert_eq!(s.resume_task("daily").await.unwrap(), None);
    let left = s.paused_tasks().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].task, "weekly");
}

/// Retention reads the finished runs with files, notes their removal (the run keeps the
/// files' names and sha256), and deletes old runs whole: their deliveries, recipients,
/// links and downloads; running runs are never deleted.
pub async fn retention_keeps_the_record_and_deletes_runs_whole(b: &dyn Backend) {
    let s = open(b).await;
    let me = Owner {
        node: "n1".into(),
        pid: 1,
    };
    let file = FileRecord {
        path: "/exports/t/a.csv".into(),
        bytes: 10,
        sha256: "ab".repeat(32),
    };
    let mut ids = Vec::new();
    for (i, at) in [base(), base() + Duration::days(1)].into_iter().enumerate() {
        let c = claim("t", at, "n1", 1);
        assert!(s.claim(&c).await.unwrap());
        let mut o = outcome(Status::Succeeded, at + Duration::seconds(1));
        o.files = vec![file.clone()];
        let queued = [QueuedDelivery {
            channel: "box".into(),
            occurrence: 1,
            message: Ok("{}".into()),
        }];
        s.finish_with_deliveries(&c.run_id, &o, &queued, &me)
            .await
            .unwrap();
        s.ensure_link(&LinkRecord {
            id: format!("link{i}"),
            run_id: c.run_id.clone(),
            path: file.path.clone(),
            name: "a.csv".into(),
            bytes: 10,
            sha256: file.sha256.clone(),
            created_at: at,
        })
        .await
        .unwrap();
        s.record_download(&DownloadRecord {
            link_id: format!("link{i}"),
            at,
            client: "127.0.0.1".into(),
            range: None,
            status: 200,
            bytes_sent: 10,
            reason: None,
        })
        .await
        .unwrap();
        ids.push(c.run_id);
    }
    let running = claim("t", base() - Duration::days(3), "n1", 1);
    assert!(s.claim(&running).await.unwrap());

    let with_files: Vec<String> = s
        .runs_with_files()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(with_files, ids, "oldest first, the running run left out");
    s.mark_files_removed(&ids[0], base() + Duration::days(30))
        .await
        .unwrap();
    let rec = s.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(rec.files_removed_at, Some(base() + Duration::days(30)));
    assert_eq!(
        rec.files,
        vec![file.clone()],
        "the record keeps the file and its sha256"
    );
    assert_eq!(s.runs_with_files().await.unwrap().len(), 1);

    let old: Vec<String> = s
        .finished_before(base() + Duration::hours(1))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(old, [ids[0].clone()], "finished runs only");
    let deleted = s
        .delete_runs(&[ids[0].clone(), running.run_id.clone()])
        .await
        .unwrap();
    assert_eq!(
        deleted,
        Deleted {
            runs: 1,
            deliveries: 1,
            links: 1,
            downloads: 1
        }
    );
    assert!(s.get(&ids[0]).await.unwrap().is_none());
    assert!(s.link("link0").await.unwrap().is_none());
    assert!(s.downloads("link0", 10).await.unwrap().is_empty());
    assert!(
        s.get(&running.run_id).await.unwrap().is_some(),
        "running runs stay"
    );
    // The other run is whole.
    assert_eq!(s.get(&ids[1]).await.unwrap().unwrap().deliveries.len(), 1);
    assert!(s.link("link1").await.unwrap().is_some());
    assert_eq!(s.downloads("link1", 10).await.unwrap().len(), 1);
}

/// Instances beat; one that stopped beating for a lease is dead, and its runs are reaped
/// by any node; a live one's are not.
pub async fn dead_instances_are_found_by_heartbeat(b: &dyn Backend) {
    let s = open(b).await;
    let lease = Duration::from_std(ferry::store::INSTANCE_LEASE).unwrap();
    let start = base();
    let live = InstanceRecord {
        instance_id: "live".into(),
        node: "n-live".into(),
        pid: 10,
        started_at: start,
        heartbeat_at: start,
        stopped_at: None,
    };
    let dead = InstanceRecord {
        instance_id: "dead".into(),
        node: "n-dead".into(),
        pid: 20,
        ..live.clone()
    };
    s.register(&live).await.unwrap();
    s.register(&dead).await.unwrap();
    let run_live = claim("x", start, "n-live", 10);
    let run_dead = claim("y", start, "n-dead", 20);
    assert!(s.claim(&run_live).await.unwrap());
    assert!(s.claim(&run_dead).await.unwrap());
    let later = start + lease + Duration::seconds(1);
    assert!(s.beat("live", later).await.unwrap());
    assert!(!s.beat("nobody", later).await.unwrap());
    let instances = s.instances().await.unwrap();
    let alive: Vec<&str> = instances
        .iter()
        .filter(|i| i.alive(later))
        .map(|i| i.instance_id.as_str())
        .collect();
    assert_eq!(alive, ["live"]);
    // Reaped from a third node: only the dead instance's run.
    let reaped = reap_interrupted(&*s, "n-third", &|_| true, later)
        .await
        .unwrap();
    assert_eq!(reaped, std::slice::from_ref(&run_dead.run_id));
    let rec = s.get(&run_dead.run_id).await.unwrap().unwrap();
    assert_eq!(rec.status, Status::Failed);
    assert!(rec.error.unwrap().contains("pid 20 on n-dead"));
    assert_eq!(
        rec.duration_ms,
        Some((lease + Duration::seconds(1)).num_milliseconds())
    );
    assert_eq!(
        s.get(&run_live.run_id).await.unwrap().unwrap().status,
        Status::Running
    );
    // An instance that stops is dead at once.
    s.unregister("live", later).await.unwrap();
    let instances = s.instances().await.unwrap();
    assert!(instances.iter().all(|i| !i.alive(later)));
}

/// A database migrated by a newer ferry is refused with a clear error.
pub async fn a_newer_schema_is_refused(b: &dyn Backend) {
    let s = open(b).await;
    s.close().await;
    b.add_newer_schema_version().await;
    let err = match b.open().await {
        Ok(_) => panic!("a store with a newer schema was opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("upgrade ferry"), "{err}");
    assert!(err.contains("schema version"), "{err}");
}

fn mail(uid: u32, key: &str, sender: &str, verdict: &str) -> MailRecord {
    MailRecord {
        mailbox: "INBOX".into(),
        uidvalidity: 7,
        uid,
        message_key: key.into(),
        message_id: Some(format!("{key}@x.test")),
        sender: Some(sender.into()),
        subject: "numbers".into(),
        verdict: verdict.into(),
        reason: (verdict != "accept").then(|| "no_keyword".to_string()),
        detail: String::new(),
        reply: verdict != "ignore",
        database: Some("sales".into()),
        run_id: (verdict == "accept").then(|| uuid::Uuid::now_v7().to_string()),
        received_at: base(),
        day: "2026-03-01".into(),
        folder: "Processed".into(),
        moved_at: None,
        replied_at: None,
    }
}

/// A mail is claimed once, by its UID in its mailbox or by its Message-ID: a second
/// claim (another node, a restart after a crash before the move, a new UIDVALIDITY)
/// finds the first; concurrent claimers of one mail get one `New`.
pub async fn mail_is_claimed_once(b: &dyn Backend) {
    let s = open(b).await;
    let a = mail(1, "sha256:a", "alice@x.test", "accept");
    assert_eq!(s.claim_mail(&a, 10, None).await.unwrap(), MailClaim::New);
    // The same UID again, and the same message under a new UIDVALIDITY and UID.
    let again = s.claim_mail(&a, 10, None).await.unwrap();
    assert!(
        matches!(&again, MailClaim::Known(r) if r.run_id == a.run_id),
        "{again:?}"
    );
    let mut moved = a.clone();
    moved.uidvalidity = 8;
    moved.uid = 40;
    moved.run_id = Some("other".into());
    assert!(matches!(
        s.claim_mail(&moved, 10, None).await.unwrap(),
        MailClaim::Known(_)
    ));
    let found = s.find_mail("INBOX", 7, 1, "-").await.unwrap().unwrap();
    assert_eq!(found, a);
    assert!(s.find_mail("INBOX", 7, 2, "-").await.unwrap().is_none());
    s.mail_moved("sha256:a", base()).await.unwrap();
    let r = s.find_mail("-", 0, 0, "sha256:a").await.unwrap().unwrap();
    assert_eq!(r.moved_at, Some(base()));

    // Many claimers, one mail: one wins.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = b.open().await.unwrap();
        tasks.push(tokio::spawn(async move {
            s.claim_mail(&mail(2, "sha256:b", "alice@x.test", "accept"), 10, None)
                .await
                .unwrap()
        }));
    }
    let mut new = 0;
    for t in tasks {
        if t.await.unwrap() == MailClaim::New {
            new += 1;
        }
    }
    assert_eq!(new, 1);

    // UIDVALIDITY per mailbox.
    assert_eq!(s.mailbox_validity("INBOX").await.unwrap(), None);
    s.set_mailbox_validity("INBOX", 7, base()).await.unwrap();
    s.set_mailbox_validity("INBOX", 9, base()).await.unwrap();
    assert_eq!(s.mailbox_validity("INBOX").await.unwrap(), Some(9));
    assert_eq!(s.mail_records(10).await.unwrap().len(), 2);
}

/// An accepted mail's one-shot run is claimed with the mail, in one transaction: the run
/// is `running` with trigger `mail`; a mail over its quota, or one already known, claims
/// no run; a second request of the sender in the same millisecond takes the next one.
pub async fn mail_claims_its_run(b: &dyn Backend) {
    let s = open(b).await;
    let mut run = claim("mail:alice@x.test", base(), "n1", 7);
    run.trigger = Trigger::Mail;
    let mut a = mail(1, "ka", "alice@x.test", "accept");
    a.run_id = Some(run.run_id.clone());
    assert_eq!(
        s.claim_mail(&a, 2, Some(&run)).await.unwrap(),
        MailClaim::New
    );
    let r = s
        .get(&run.run_id)
        .await
        .unwrap()
        .expect("the run is claimed");
    assert_eq!((r.status, r.trigger.as_str()), (Status::Running, "mail"));
    assert_eq!(r.scheduled_at, base());
    // Known: nothing more is claimed.
    let mut again = claim("mail:alice@x.test", base(), "n1", 7);
    again.trigger = Trigger::Mail;
    assert!(matches!(
        s.claim_mail(&a, 2, Some(&again)).await.unwrap(),
        MailClaim::Known(_)
    ));
    assert!(s.get(&again.run_id).await.unwrap().is_none());
    // The same task and instant: the next millisecond.
    let mut b2 = mail(2, "kb", "alice@x.test", "accept");
    b2.run_id = Some(again.run_id.clone());
    assert_eq!(
        s.claim_mail(&b2, 2, Some(&again)).await.unwrap(),
        MailClaim::New
    );
    let r = s.get(&again.run_id).await.unwrap().unwrap();
    assert_eq!(r.scheduled_at, base() + chrono::Duration::milliseconds(1));
    // Over the quota: a rejection, and no run.
    let mut over = claim("mail:alice@x.test", base(), "n1", 7);
    over.trigger = Trigger::Mail;
    let mut c = mail(3, "kc", "alice@x.test", "accept");
    c.run_id = Some(over.run_id.clone());
    assert_eq!(
        s.claim_mail(&c, 2, Some(&over)).await.unwrap(),
        MailClaim::OverQuota
    );
    assert!(s.get(&over.run_id).await.unwrap().is_none());
}

/// A sender's accepted requests of a day stop at the quota: the next one is recorded as
/// a `quota_exceeded` rejection (with a reply, without a run). Rejections do not count.
pub async fn mail_quota_holds(b: &dyn Backend) {
    let s = open(b).await;
    assert_eq!(
        s.claim_mail(&mail(1, "k1", "alice@x.test", "reject"), 2, None)
            .await
            .unwrap(),
        MailClaim::New
    );
    for (uid, key) in [(2, "k2"), (3, "k3")] {
        let c = s
            .claim_mail(&mail(uid, key, "alice@x.test", "accept"), 2, None)
            .await
            .unwrap();
        assert_eq!(c, MailClaim::New);
    }
    let over = s
        .claim_mail(&mail(4, "k4", "alice@x.test", "accept"), 2, None)
        .await
        .unwrap();
    assert_eq!(over, MailClaim::OverQuota);
    let r = s.find_mail("INBOX", 7, 4, "k4").await.unwrap().unwrap();
    assert_eq!(r.verdict, "reject");
    assert_eq!(r.reason.as_deref(), Some("quota_exceeded"));
    assert!(r.reply && r.run_id.is_none(), "{r:?}");
    // Another sender, and another day, have their own counts.
    let bob = s
        .claim_mail(&mail(5, "k5", "bob@x.test", "accept"), 2, None)
        .await
        .unwrap();
    assert_eq!(bob, MailClaim::New);
    let mut tomorrow = mail(6, "k6", "alice@x.test", "accept");
    tomorrow.day = "2026-03-02".into();
    assert_eq!(
        s.claim_mail(&tomorrow, 2, None).await.unwrap(),
        MailClaim::New
    );
}

/// Each mail is answered at most once, and a sender gets at most `cap` replies a day;
/// the first mail over the cap says so once (for the owners' alert).
pub async fn mail_replies_are_capped(b: &dyn Backend) {
    let s = open(b).await;
    for uid in 1..=4 {
        let key = format!("r{uid}");
        s.claim_mail(&mail(uid, &key, "alice@x.test", "reject"), 10, None)
            .await
            .unwrap();
    }
    let at = base();
    assert_eq!(
        s.reserve_reply("r1", 2, at).await.unwrap(),
        ReplySlot::Granted
    );
    assert_eq!(
        s.reserve_reply("r1", 2, at).await.unwrap(),
        ReplySlot::AlreadyReplied
    );
    assert_eq!(
        s.reserve_reply("r2", 2, at).await.unwrap(),
        ReplySlot::Granted
    );
    assert_eq!(
        s.reserve_reply("r3", 2, at).await.unwrap(),
        ReplySlot::CapReached { first: true }
    );
    assert_eq!(
        s.reserve_reply("r3", 2, at).await.unwrap(),
        ReplySlot::CapReached { first: false }
    );
    assert_eq!(
        s.reserve_reply("r4", 2, at).await.unwrap(),
        ReplySlot::CapReached { first: false }
    );
    assert!(s.reserve_reply("nope", 2, at).await.is_err());
}

/// Generates one test per case for a backend: `conformance!(module, async fn fresh() -> B)`.
macro_rules! conformance {
    ($module:ident, $fresh:expr) => {
        mod $module {
            use super::*;
            conformance!(@cases $fresh;
                claims_are_unique_per_task_and_fire,
                concurrent_claimers_take_each_fire_once,
                forbid_is_decided_by_the_claim,
                ledger_attempts_are_fenced,
                deferred_runs_start_once,
                cursors_only_move_forward,
                pauses_survive_a_restart,
                task_pauses_are_kept_until_resumed,
                retention_keeps_the_record_and_deletes_runs_whole,
                dead_instances_are_found_by_heartbeat,
                a_newer_schema_is_refused,
                mail_is_claimed_once,
                mail_quota_holds,
                mail_claims_its_run,
                mail_replies_are_capped,
                users_tokens_and_sessions_are_kept,
                the_audit_trail_is_filtered_and_paged,
                task_revisions_are_numbered_per_task,
                run_pages_are_keyset_ordered_and_filtered,
                the_delivery_queue_lists_and_retries,
            );
        }
    };
    (@cases $fresh:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let backend = $fresh().await;
                super::$case(&backend).await;
            }
        )*
    };
}

/// The embedded SQLite store, one temporary file per case.
pub struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("data/ferry.db")
    }
}

async fn fresh_sqlite() -> Sqlite {
    Sqlite {
        dir: tempfile::tempdir().unwrap(),
    }
}

#[async_trait]
impl Backend for Sqlite {
    async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        let url = ferry::store::StoreUrl::Sqlite(self.path());
        ferry::store::open(&url).await
    }

    async fn add_newer_schema_version(&self) {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.path())
            .connect()
            .await
            .unwrap();
        let newest = ferry::store::sqlite::MIGRATIONS.last().unwrap().0;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, '2099-01-01T00:00:00.000Z')")
            .bind(newest + 1)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

conformance!(sqlite, fresh_sqlite);
