//! SQLite: the store tests (the cross-backend cases are in the conformance suite).

use super::*;
use crate::store::*;

fn claim(task: &str, at: &str, run_id: &str) -> Claim {
    Claim {
        run_id: run_id.into(),
        task: task.into(),
        scheduled_at: parse_instant(at).unwrap(),
        trigger: Trigger::Schedule,
        node: "n1".into(),
        pid: 999_999_999,
        started_at: parse_instant(at).unwrap(),
    }
}

/// A store in a temporary folder with one claimed run, `r1` (task `a`).
async fn store_with_run() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ferry.db"))
        .await
        .unwrap();
    store
        .claim(&claim("a", "2026-01-01T00:00:00Z", "r1"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn claim_is_unique_per_task_and_fire() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s/ferry.db"))
        .await
        .unwrap();
    assert!(
        store
            .claim(&claim("a", "2026-01-01T00:00:00Z", "r1"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim(&claim("a", "2026-01-01T00:00:00Z", "r2"))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim(&claim("b", "2026-01-01T00:00:00Z", "r3"))
            .await
            .unwrap()
    );
    // Reopening keeps data and does not re-run migrations.
    store.close().await;
    let store = SqliteStore::open(&dir.path().join("s/ferry.db"))
        .await
        .unwrap();
    assert!(
        !store
            .claim(&claim("a", "2026-01-01T00:00:00Z", "r4"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.list(&HistoryFilter::default()).await.unwrap().len(),
        2
    );
}

#[tokio::test]
async fn links_are_made_once_per_file_and_downloads_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ferry.db"))
        .await
        .unwrap();
    let at = parse_instant("2026-01-01T00:00:00Z").unwrap();
    let link = |id: &str, path: &str| LinkRecord {
        id: id.into(),
        run_id: "r1".into(),
        path: path.into(),
        name: "a.csv".into(),
        bytes: 3,
        sha256: "ab".into(),
        created_at: at,
    };
    let first = store.ensure_link(&link("id1", "/x/a.csv")).await.unwrap();
    assert_eq!(first.id, "id1");
    // The same file again keeps its id; another file gets its own.
    let again = store.ensure_link(&link("id2", "/x/a.csv")).await.unwrap();
    assert_eq!(again, first);
    let other = store.ensure_link(&link("id3", "/x/b.csv")).await.unwrap();
    assert_eq!(other.id, "id3");
    assert_eq!(store.link("id1").await.unwrap(), Some(first));
    assert_eq!(store.link("id2").await.unwrap(), None);

    let d = DownloadRecord {
        link_id: "id1".into(),
        at,
        client: "127.0.0.1".into(),
        range: Some("bytes=0-1".into()),
        status: 206,
        bytes_sent: 0,
        reason: None,
    };
    let row = store.record_download(&d).await.unwrap();
    store.set_download_bytes(row, 2).await.unwrap();
    let refused = DownloadRecord {
        status: 403,
        reason: Some("expired".into()),
        at: at + chrono::Duration::seconds(1),
        ..d.clone()
    };
    store.record_download(&refused).await.unwrap();
    let got = store.downloads("id1", 10).await.unwrap();
    assert_eq!(got, [refused, DownloadRecord { bytes_sent: 2, ..d }]);
    assert!(store.downloads("id3", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_first_opens_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let opens = (0..8).map(|_| SqliteStore::open(&path));
    for store in futures_util::future::join_all(opens).await {
        let store = store.unwrap();
        store
            .set_cursor("t", crate::clock::wall_now())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn deliveries_are_recorded_with_the_run_and_attempts_are_fenced() {
    let (_dir, store) = store_with_run().await;
    let at = parse_instant("2026-01-01T00:00:01Z").unwrap();
    let me = Owner {
        node: "n1".into(),
        pid: 1,
    };
    let queued = [
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
    ];
    let outcome = Outcome {
        status: Status::Succeeded,
        finished_at: at,
        rows: 1,
        files: vec![],
        warnings: vec![],
        error: None,
    };
    store
        .finish_with_deliveries("r1", &outcome, &queued, &me)
        .await
        .unwrap();
    let r = store.get("r1").await.unwrap().unwrap();
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.deliveries[0].status, DeliveryStatus::Pending);
    assert_eq!(r.deliveries[0].attempts, 0);
    assert_eq!(r.deliveries[0].next_attempt_at, Some(at));
    assert_eq!(r.deliveries[1].status, DeliveryStatus::Failed);
    assert_eq!(r.deliveries[1].error.as_deref(), Some("template error"));
    assert_eq!(r.delivery, DeliverySummary::Pending);
    // Due now, held by its process; a failed one is never due.
    let due = store.due_deliveries(at, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].task, "a");
    assert_eq!(due[0].owner, Some(me.clone()));
    // Of two processes that read the same row, only the first gets the attempt.
    let other = Owner {
        node: "n1".into(),
        pid: 2,
    };
    let key = due[0].key.clone();
    assert!(
        store
            .begin_attempt(&key, DeliveryStatus::Pending, 0, &me, at)
            .await
            .unwrap()
    );
    assert!(
        !store
            .begin_attempt(&key, DeliveryStatus::Pending, 0, &other, at)
            .await
            .unwrap()
    );
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
    // Only the holder at this attempt may record its end.
    assert!(!store.end_attempt(&key, &sent, &other, 1).await.unwrap());
    assert!(!store.end_attempt(&key, &sent, &me, 2).await.unwrap());
    assert!(store.end_attempt(&key, &sent, &me, 1).await.unwrap());
    let r = store.get("r1").await.unwrap().unwrap();
    assert_eq!(r.deliveries[0].status, DeliveryStatus::Sent);
    assert_eq!(r.deliveries[0].attempts, 1);
    assert_eq!(r.delivery, DeliverySummary::PartiallyDelivered);
    assert!(store.due_deliveries(at, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn finish_records_outcome_and_reap_marks_dead_runs() {
    let (_dir, store) = store_with_run().await;
    store
        .claim(&claim("a", "2026-01-02T00:00:00Z", "r2"))
        .await
        .unwrap();
    let finished = parse_instant("2026-01-01T00:00:01.500Z").unwrap();
    store
        .finish(
            "r1",
            &Outcome {
                status: Status::Succeeded,
                finished_at: finished,
                rows: 42,
                files: vec![FileRecord {
                    path: "x.csv".into(),
                    bytes: 10,
                    sha256: "ab".into(),
                }],
                warnings: vec!["w".into()],
                error: None,
            },
        )
        .await
        .unwrap();
    let r1 = store.get("r1").await.unwrap().unwrap();
    assert_eq!(r1.status, Status::Succeeded);
    assert_eq!(r1.rows, 42);
    assert_eq!(r1.duration_ms, Some(1500));
    assert_eq!(r1.files[0].sha256, "ab");
    assert_eq!(r1.warnings, ["w"]);

    let reaped = reap_interrupted(&store, "n1", &|_| false, finished)
        .await
        .unwrap();
    assert_eq!(reaped, ["r2"]);
    let r2 = store.get("r2").await.unwrap().unwrap();
    assert_eq!(r2.status, Status::Failed);
    assert!(r2.error.unwrap().contains("interrupted"));
    assert!(
        store
            .finish(
                "nope",
                &Outcome {
                    status: Status::Failed,
                    finished_at: finished,
                    rows: 0,
                    files: vec![],
                    warnings: vec![],
                    error: None,
                }
            )
            .await
            .is_err()
    );
}
