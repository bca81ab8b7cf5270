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
        started_by: None,
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

/// Regression (issue 12): a write that fails because the database is full (here SQLite's
/// page limit; a full disk answers the same SQLITE_FULL) made SQLite roll the transaction
/// back by itself, sqlx's rollback then failed, and every later write was refused with
/// "attempted to call begin_with at non-zero transaction depth". Now the write fails with
/// `StoreError::Full` and the next one goes through on a fresh connection.
#[tokio::test]
async fn a_write_refused_for_a_full_database_leaves_the_store_usable() {
    let (_dir, store) = store_with_run().await;
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&store.writer)
        .await
        .unwrap();
    // The limit holds for the writer connection it is set on.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA max_page_count = {pages}"
    )))
    .execute(&store.writer)
    .await
    .unwrap();
    let mut n = 0;
    let err = loop {
        n += 1;
        assert!(n < 10_000, "the page limit never refused a write");
        let c = claim(
            "a",
            &format!("2026-02-01T{:02}:{:02}:00Z", n / 60, n % 60),
            &format!("full{n}"),
        );
        if let Err(e) = store.claim(&c).await {
            break e;
        }
    };
    assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
    assert!(err.to_string().contains("free space"), "{err}");
    // The refused claim left nothing; the next write and read work.
    assert_eq!(store.get(&format!("full{n}")).await.unwrap(), None);
    assert!(
        store
            .claim(&claim("a", "2026-03-01T00:00:00Z", "after"))
            .await
            .unwrap()
    );
    let runs = store
        .list(&HistoryFilter {
            task: None,
            limit: 100_000,
        })
        .await
        .unwrap();
    assert_eq!(
        runs.len(),
        n + 1,
        "r1, the {} claims before the limit, and `after`",
        n - 1
    );
}

/// A read does not wait for a write transaction that another connection holds (WAL), and
/// a write waits for it and goes through once it ends.
#[tokio::test]
async fn readers_do_not_wait_for_a_writer_and_writers_wait_for_it() {
    use sqlx::Connection;
    let (dir, store) = store_with_run().await;
    let mut other = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        dir.path().join("ferry.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    sqlx::query("UPDATE runs SET rows = 7")
        .execute(&mut other)
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let r1 = store.get("r1").await.unwrap().unwrap();
    assert_eq!(r1.rows, 0, "the reader sees the last committed state");
    assert!(
        t.elapsed() < BUSY_QUIET,
        "the read waited {:?}",
        t.elapsed()
    );
    let r2 = claim("a", "2026-01-02T00:00:00Z", "r2");
    let write = store.claim(&r2);
    tokio::pin!(write);
    // The write waits while the lock is held...
    assert!(
        tokio::time::timeout(BUSY_QUIET * 2, &mut write)
            .await
            .is_err()
    );
    // ...and goes through once it is released.
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    assert!(write.await.unwrap());
    assert_eq!(store.get("r1").await.unwrap().unwrap().rows, 7);
}
