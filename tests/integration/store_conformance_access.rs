//! Store conformance cases of the HTTP API (issue 14): users, tokens, sessions, the audit
//! trail, task revisions, run pages (keyset), the last run per task, the delivery queue
//! and retries. Run for each backend by `conformance!` in `store_conformance.rs`.

use chrono::Duration;

use crate::store_conformance::{Backend, base, claim, ding_and_box, open, outcome};
use ferry::store::{
    AttemptEnd, AuditFilter, AuditRecord, DeliveryKey, DeliveryStatus, Owner, Role, RunQuery,
    SessionRecord, Status, TokenRecord, UserRecord,
};

fn user(name: &str, role: Role) -> UserRecord {
    UserRecord {
        name: name.into(),
        role,
        password_hash: format!("$argon2id$v=19$hash-of-{name}"),
        created_at: base(),
        updated_at: base(),
    }
}

fn token(id: &str, name: &str, expires: Option<i64>) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        name: name.into(),
        role: Role::Operator,
        token_hash: format!("sha-{id}"),
        created_by: "root@n".into(),
        created_at: base(),
        expires_at: expires.map(|h| base() + Duration::hours(h)),
        revoked_at: None,
        last_used_at: None,
    }
}

fn session(id: &str, user: &str, hours: i64) -> SessionRecord {
    SessionRecord {
        id_hash: id.into(),
        user: user.into(),
        csrf: format!("csrf-{id}"),
        client: "127.0.0.1".into(),
        created_at: base(),
        expires_at: base() + Duration::hours(hours),
    }
}

pub async fn users_tokens_and_sessions_are_kept(b: &dyn Backend) {
    let s = open(b).await;
    assert!(s.add_user(&user("alice", Role::Admin)).await.unwrap());
    assert!(
        !s.add_user(&user("alice", Role::Viewer)).await.unwrap(),
        "names are unique"
    );
    assert!(s.add_user(&user("bob", Role::Viewer)).await.unwrap());
    let names: Vec<String> = s
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(s.user("alice").await.unwrap().unwrap().role, Role::Admin);
    s.add_session(&session("s1", "alice", 12)).await.unwrap();
    s.add_session(&session("s2", "bob", 12)).await.unwrap();
    assert_eq!(s.session("s1").await.unwrap().unwrap().csrf, "csrf-s1");
    // A new password ends the user's sessions, not the others'.
    let later = base() + Duration::minutes(5);
    assert!(
        s.set_password("alice", "$argon2id$new", later)
            .await
            .unwrap()
    );
    assert!(s.session("s1").await.unwrap().is_none());
    assert!(s.session("s2").await.unwrap().is_some());
    let alice = s.user("alice").await.unwrap().unwrap();
    assert_eq!(
        (alice.password_hash.as_str(), alice.updated_at),
        ("$argon2id$new", later)
    );
    assert!(!s.set_password("nobody", "x", later).await.unwrap());
    assert!(s.remove_user("bob").await.unwrap());
    assert!(
        s.session("s2").await.unwrap().is_none(),
        "removing a user ends its sessions"
    );
    assert!(!s.remove_user("bob").await.unwrap());
    s.delete_session("none").await.unwrap();
    // Expired sessions are swept when a new one is added.
    let mut old = session("s3", "alice", 1);
    old.created_at = base() - Duration::hours(3);
    old.expires_at = base() - Duration::hours(2);
    s.add_session(&old).await.unwrap();
    s.add_session(&session("s4", "alice", 1)).await.unwrap();
    assert!(s.session("s3").await.unwrap().is_none());

    // Tokens: one live token per name; revoked or expired names may be reused.
    assert!(s.add_token(&token("t1", "ci", None), base()).await.unwrap());
    assert!(!s.add_token(&token("t2", "ci", None), base()).await.unwrap());
    assert_eq!(s.token_by_hash("sha-t1").await.unwrap().unwrap().name, "ci");
    assert!(s.token_by_hash("sha-none").await.unwrap().is_none());
    s.touch_token("t1", later).await.unwrap();
    assert_eq!(
        s.token_by_hash("sha-t1")
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(later)
    );
    assert_eq!(s.revoke_token("ci", later).await.unwrap(), 1);
    assert_eq!(s.revoke_token("ci", later).await.unwrap(), 0);
    let revoked = s.token_by_hash("sha-t1").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(later));
    assert!(
        s.add_token(&token("t2", "ci", Some(1)), base())
            .await
            .unwrap()
    );
    let past_expiry = base() + Duration::hours(2);
    assert!(
        s.add_token(&token("t3", "ci", None), past_expiry)
            .await
            .unwrap()
    );
    let ids: Vec<String> = s
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(s.revoke_token("t3", later).await.unwrap(), 1, "by id too");
}

pub async fn the_audit_trail_is_filtered_and_paged(b: &dyn Backend) {
    let s = open(b).await;
    for i in 0..5 {
        let rec = AuditRecord {
            id: uuid::Uuid::now_v7().to_string(),
            at: base() + Duration::minutes(i),
            actor: if i % 2 == 0 { "user:alice" } else { "token:ci" }.into(),
            action: "task.replace".into(),
            target: format!("t{i}"),
            detail: Some(format!("revision {i}")),
            client: Some("127.0.0.1".into()),
        };
        s.record_audit(&rec).await.unwrap();
    }
    let all = s
        .audit(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let targets: Vec<&str> = all.iter().map(|a| a.target.as_str()).collect();
    assert_eq!(targets, ["t4", "t3", "t2", "t1", "t0"], "newest first");
    let alice = s
        .audit(&AuditFilter {
            actor: Some("user:alice".into()),
            since: Some(base() + Duration::minutes(1)),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        alice.iter().map(|a| a.target.as_str()).collect::<Vec<_>>(),
        ["t4", "t2"]
    );
    let after = s
        .audit(&AuditFilter {
            before: Some((all[1].at, all[1].id.clone())),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|a| a.target.as_str()).collect::<Vec<_>>(),
        ["t2", "t1"]
    );
}

pub async fn task_revisions_are_numbered_per_task(b: &dyn Backend) {
    let s = open(b).await;
    assert_eq!(
        s.add_revision("a", base(), "user:x", "create", Some("v1"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.add_revision("b", base(), "user:x", "create", Some("w1"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.add_revision("a", base(), "file", "found on disk", Some("v2"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.add_revision("a", base(), "user:y", "delete", None)
            .await
            .unwrap(),
        3
    );
    let a = s.revisions("a").await.unwrap();
    assert_eq!(a.iter().map(|r| r.rev).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(a[2].content, None);
    assert_eq!(a[1].author, "file");
    assert_eq!(
        s.revision("b", 1)
            .await
            .unwrap()
            .unwrap()
            .content
            .as_deref(),
        Some("w1")
    );
    assert!(s.revision("b", 2).await.unwrap().is_none());
    // Concurrent writers never share a number.
    let mut joins = Vec::new();
    for i in 0..8 {
        let s = open(b).await;
        joins.push(tokio::spawn(async move {
            s.add_revision("c", base(), "user:x", "replace", Some(&format!("{i}")))
                .await
                .unwrap()
        }));
    }
    let mut revs = Vec::new();
    for j in joins {
        revs.push(j.await.unwrap());
    }
    revs.sort();
    assert_eq!(revs, (1..=8).collect::<Vec<u32>>());
}

pub async fn run_pages_are_keyset_ordered_and_filtered(b: &dyn Backend) {
    let s = open(b).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let mut c = claim(
            if i % 2 == 0 { "even" } else { "odd" },
            base() + Duration::minutes(i),
            "n",
            1,
        );
        if i == 5 {
            c.trigger = ferry::store::Trigger::Manual;
            c.started_by = Some("user:alice".into());
            assert!(s.claim(&c).await.unwrap());
        } else {
            assert!(s.record(&c, Status::Missed, "m").await.unwrap());
        }
        ids.push(c.run_id);
    }
    let page = |q: RunQuery| {
        let s = s.clone();
        async move {
            s.page(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.run_id)
                .collect::<Vec<_>>()
        }
    };
    let first = page(RunQuery {
        limit: 4,
        ..Default::default()
    })
    .await;
    assert_eq!(
        first,
        [
            ids[5].clone(),
            ids[4].clone(),
            ids[3].clone(),
            ids[2].clone()
        ]
    );
    let last = s.get(&ids[2]).await.unwrap().unwrap();
    let rest = page(RunQuery {
        after: Some((last.scheduled_at, last.run_id.clone())),
        limit: 4,
        ..Default::default()
    })
    .await;
    assert_eq!(rest, [ids[1].clone(), ids[0].clone()]);
    let odd_manual = page(RunQuery {
        task: Some("odd".into()),
        trigger: Some("manual".into()),
        status: Some(Status::Running),
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(odd_manual, [ids[5].clone()]);
    let window = page(RunQuery {
        since: Some(base() + Duration::minutes(1)),
        until: Some(base() + Duration::minutes(3)),
        limit: 10,
        ..Default::default()
    })
    .await;
    assert_eq!(window, [ids[2].clone(), ids[1].clone()]);
    assert_eq!(
        s.get(&ids[5]).await.unwrap().unwrap().started_by.as_deref(),
        Some("user:alice")
    );
    let last: Vec<(String, String)> = s
        .last_runs(&["even", "odd", "none"])
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.task, r.run_id))
        .collect();
    assert_eq!(
        last,
        [
            ("even".into(), ids[4].clone()),
            ("odd".into(), ids[5].clone())
        ]
    );
}

pub async fn the_delivery_queue_lists_and_retries(b: &dyn Backend) {
    let s = open(b).await;
    let c = claim("q", base(), "n1", 1);
    assert!(s.claim(&c).await.unwrap());
    let me = Owner {
        node: "n1".into(),
        pid: 1,
    };
    let queued = ding_and_box();
    let at = base() + Duration::seconds(1);
    s.finish_with_deliveries(&c.run_id, &outcome(Status::Succeeded, at), &queued, &me)
        .await
        .unwrap();
    let pending = s.queued_deliveries(false, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].task.as_str(),
            pending[0].delivery.channel.as_str()
        ),
        ("q", "ding")
    );
    let failed = s.queued_deliveries(true, 10).await.unwrap();
    assert_eq!(failed[0].delivery.channel, "box");
    let ding = DeliveryKey {
        run_id: c.run_id.clone(),
        channel: "ding".into(),
        occurrence: 1,
    };
    let bx = DeliveryKey {
        channel: "box".into(),
        ..ding.clone()
    };
    assert!(
        !s.retry_delivery(&bx, at).await.unwrap(),
        "no message to send again"
    );
    // A failed attempt, then a retry by hand: pending and due now.
    assert!(
        s.begin_attempt(&ding, DeliveryStatus::Pending, 0, &me, at)
            .await
            .unwrap()
    );
    let end = AttemptEnd {
        status: DeliveryStatus::Failed,
        retryable: false,
        receipt: None,
        error: Some("HTTP 403".into()),
        next_attempt_at: None,
        at,
        keep_owner: false,
        recipients: Vec::new(),
    };
    assert!(s.end_attempt(&ding, &end, &me, 1).await.unwrap());
    assert_eq!(s.queued_deliveries(true, 10).await.unwrap().len(), 2);
    let now = at + Duration::minutes(1);
    assert!(s.retry_delivery(&ding, now).await.unwrap());
    let due = s.due_deliveries(now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].key, ding);
    assert_eq!(due[0].status, DeliveryStatus::Pending);
    assert_eq!(due[0].owner, None);
    let unknown = DeliveryKey {
        run_id: "none".into(),
        ..ding
    };
    assert!(!s.retry_delivery(&unknown, now).await.unwrap());
}
