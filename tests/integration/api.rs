//! The HTTP API (issue 14 item 2) through a real HTTP client over loopback, against the
//! daemon in this process (its real store, scheduler, executor, delivery worker and,
//! where said, its reload watcher) with a manual clock: task writes, revisions, run now,
//! cancel, pages, deliveries, status, the OpenAPI document, the shared server. The
//! client and helpers here serve `api_access.rs` too (roles, logins, audit).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::support::{Daemon, Project, describe, stdout};
use ferry::access::Role;
use ferry::clock::Clock;
use ferry::daemon::Event;

pub(crate) fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(crate) const START: &str = "2026-03-02T00:00:00Z";

/// The fixture project with the API on (and `extra` added to config.yaml).
pub(crate) fn project(extra: &str) -> Project {
    let p = Project::fixture("project");
    let path = p.path().join("config.yaml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str("http:\n  listen: \"127.0.0.1:0\"\n");
    config.push_str(extra);
    std::fs::write(path, config).unwrap();
    p
}

/// How a request proves who it is.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    None,
    Bearer(&'a str),
    Cookie(&'a str, Option<&'a str>),
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub(crate) fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }

    pub(crate) fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
}

impl Api {
    pub(crate) fn of(d: &Daemon) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api {
            base: format!("http://{}", d.handle.api_addr().expect("the API listens")),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        body: Option<(&str, String)>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .client
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.header("authorization", format!("Bearer {t}")),
            Auth::Cookie(c, csrf) => {
                req = req.header("cookie", format!("ferry_session={c}"));
                if let Some(x) = csrf {
                    req = req.header("x-csrf-token", x);
                }
            }
        }
        if let Some((ctype, b)) = body {
            req = req.header("content-type", ctype).body(b);
        }
        let res = req.send().await.expect("the API answers");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&self, path: &str, auth: Auth<'_>) -> Reply {
        self.call("GET", path, auth, None).await
    }

    pub(crate) async fn post(&self, path: &str, auth: Auth<'_>, body: Value) -> Reply {
        self.call(
            "POST",
            path,
            auth,
            Some(("application/json", body.to_string())),
        )
        .await
    }

    pub(crate) async fn put_yaml(&self, path: &str, auth: Auth<'_>, yaml: &str) -> Reply {
        self.call(
            "PUT",
            path,
            auth,
            Some(("application/yaml", yaml.to_string())),
        )
        .await
    }
}

/// Asserts the status, showing the body otherwise.
pub(crate) fn expect(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
}

/// A token of `role` made as `ferry tokens create` makes it.
pub(crate) async fn token(d: &Daemon, name: &str, role: Role, expires: Option<Duration>) -> String {
    let now = d.clock.now();
    let (token, rec) = ferry::access::new_token(name, role, "test", now, expires);
    assert!(d.store.add_token(&rec, now).await.unwrap());
    token
}

/// One token per role.
pub(crate) struct Tokens {
    pub(crate) viewer: String,
    pub(crate) operator: String,
    pub(crate) editor: String,
    pub(crate) admin: String,
}

pub(crate) async fn tokens(d: &Daemon) -> Tokens {
    Tokens {
        viewer: token(d, "viewer", Role::Viewer, None).await,
        operator: token(d, "operator", Role::Operator, None).await,
        editor: token(d, "editor", Role::Editor, None).await,
        admin: token(d, "admin", Role::Admin, None).await,
    }
}

pub(crate) async fn add_user(d: &Daemon, name: &str, role: Role, password: &str) {
    let now = d.clock.now();
    let user = ferry::store::UserRecord {
        name: name.into(),
        role,
        password_hash: ferry::access::hash_password(password),
        created_at: now,
        updated_at: now,
    };
    assert!(d.store.add_user(&user).await.unwrap());
}

/// A route's path with its parameters filled in.
pub(crate) fn fill(path: &str, run_id: &str) -> String {
    format!("/api/v1{path}")
        .replace("{name}", "types_csv")
        .replace("{id}", run_id)
        .replace("{run_id}", run_id)
        .replace("{rev}", "1")
        .replace("{channel}", "box")
        .replace("{occurrence}", "1")
}

/// Starts `task` now through the API as `operator` (a token); the run id.
pub(crate) async fn run_now(api: &Api, operator: &str, task: &str) -> String {
    let r = api
        .post(
            &format!("/api/v1/tasks/{task}/run"),
            Auth::Bearer(operator),
            json!({}),
        )
        .await;
    expect(&r, 200, "run now");
    r.json()["run_id"].as_str().unwrap().to_string()
}

/// Polls the API until the run has left `running` (runs end on the executor's time).
pub(crate) async fn finished(api: &Api, auth: Auth<'_>, run_id: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let r = api.get(&format!("/api/v1/runs/{run_id}"), auth).await;
        expect(&r, 200, "get the run");
        let run = r.json();
        if run["status"] != "running" {
            return run;
        }
        assert!(
            start.elapsed() < crate::support::EVENT_WAIT,
            "run {run_id} still running: {run}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The actions of the audit trail, oldest first.
pub(crate) async fn audited(d: &Daemon) -> Vec<(String, String, String)> {
    let mut rows = d
        .store
        .audit(&ferry::store::AuditFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    rows.reverse();
    rows.into_iter()
        .map(|a| (a.actor, a.action, a.target))
        .collect()
}

/// Waits until the reload watcher has applied a new task.
async fn added(events: &mut tokio::sync::broadcast::Receiver<Event>) {
    tokio::time::timeout(crate::support::EVENT_WAIT, async {
        loop {
            if let Ok(Event::Reloaded(s)) = events.recv().await
                && s.added >= 1
            {
                return;
            }
        }
    })
    .await
    .expect("the reload watcher applies the new task");
}

pub(crate) const DAILY: &str = "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT 1 AS n\noutput: { format: csv, file_name: daily }\n";
const DAILY2: &str = "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT 2 AS n\noutput: { format: csv, file_name: daily }\n";

fn task_files(p: &Project) -> Vec<String> {
    let mut f: Vec<String> = std::fs::read_dir(p.path().join("tasks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    f.sort();
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_are_validated_written_kept_as_revisions_and_picked_up_by_the_watcher() {
    let p = project("");
    let d = Daemon::start_with(&p, t(START), true).await;
    let api = Api::of(&d);
    let tk = tokens(&d).await;
    let editor = Auth::Bearer(&tk.editor);
    let before = task_files(&p);

    // A bad task: 422, each problem at its line and column, nothing written.
    let bad = "schedule: \"0 3 * *\"\nsource: nosuch\nquery: SELECT 1 AS n\noutput: { format: csv, file_name: daily }\n";
    let r = api.put_yaml("/api/v1/tasks/daily", editor, bad).await;
    expect(&r, 422, "a bad task");
    assert_eq!(r.code(), "invalid_task");
    let problems = r.json()["problems"].as_array().unwrap().clone();
    let at: Vec<&str> = problems.iter().map(|p| p["at"].as_str().unwrap()).collect();
    assert!(at.contains(&"tasks/daily.yaml:1:11"), "{problems:?}");
    assert!(at.contains(&"tasks/daily.yaml:2:9"), "{problems:?}");
    assert!(problems.iter().any(|p| {
        p["field"] == "source"
            && p["message"]
                .as_str()
                .unwrap()
                .contains("undefined datasource `nosuch`")
    }));
    assert_eq!(
        task_files(&p),
        before,
        "nothing written, no partial file left"
    );
    // Path tricks are not task names.
    let r = api.put_yaml("/api/v1/tasks/..%2Fevil", editor, DAILY).await;
    expect(&r, 400, "a path as a task name");
    assert!(!p.path().join("evil.yaml").exists());

    // A good one: written, then applied by the reload watcher.
    let mut events = d.handle.events();
    let r = api.put_yaml("/api/v1/tasks/daily", editor, DAILY).await;
    expect(&r, 200, "create");
    assert_eq!(r.json()["created"], true);
    assert_eq!(r.json()["revision"], 1);
    assert_eq!(
        std::fs::read_to_string(p.path().join("tasks/daily.yaml")).unwrap(),
        DAILY
    );
    added(&mut events).await;
    let list = api.get("/api/v1/tasks", Auth::Bearer(&tk.viewer)).await;
    expect(&list, 200, "list");
    let daily = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "daily")
        .cloned()
        .unwrap();
    assert_eq!(daily["valid"], true);
    // 03:00 in Asia/Shanghai (config.yaml's zone).
    assert_eq!(daily["next_fire"], "2026-03-02T19:00:00Z");
    assert_eq!(daily["next_fire_local"], "2026-03-03 03:00:00 +08:00");

    // It runs: started through the daemon's scheduler, by the operator.
    let run_id = run_now(&api, &tk.operator, "daily").await;
    let run = finished(&api, Auth::Bearer(&tk.viewer), &run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["trigger"], "manual");
    assert_eq!(run["started_by"], "token:operator");
    assert_eq!(run["files"].as_array().unwrap().len(), 1, "{run}");
    let page = api
        .get(
            "/api/v1/runs?task=daily&trigger=manual",
            Auth::Bearer(&tk.viewer),
        )
        .await;
    expect(&page, 200, "runs");
    assert_eq!(page.json()["runs"][0]["run_id"], run_id.as_str());
    // For a past period, as `ferry run --at`.
    let r = api
        .post(
            "/api/v1/tasks/daily/run",
            Auth::Bearer(&tk.operator),
            json!({"at": "2026-02-20T03:00:00+08:00"}),
        )
        .await;
    expect(&r, 200, "run for a past fire");
    let past = finished(
        &api,
        Auth::Bearer(&tk.viewer),
        r.json()["run_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(past["scheduled_at"], "2026-02-19T19:00:00Z");
    let again = api
        .post(
            "/api/v1/tasks/daily/run",
            Auth::Bearer(&tk.operator),
            json!({"at": "2026-02-20T03:00:00+08:00"}),
        )
        .await;
    expect(&again, 409, "a fire runs at most once");

    // Writes that expect what they read: a change meanwhile is not overwritten.
    let read = api
        .get("/api/v1/tasks/daily", Auth::Bearer(&tk.viewer))
        .await
        .json();
    let sha = read["sha256"].as_str().unwrap().to_string();
    let put_if = |header: &'static str, value: String| {
        api.client
            .put(format!("{}/api/v1/tasks/daily", api.base))
            .header("authorization", format!("Bearer {}", tk.editor))
            .header(header, value)
            .body(DAILY2)
            .send()
    };
    let stale = put_if("if-match", "\"0000\"".into()).await.unwrap();
    assert_eq!(stale.status(), 412);
    let exists = put_if("if-none-match", "*".into()).await.unwrap();
    assert_eq!(exists.status(), 412);
    assert_eq!(
        std::fs::read_to_string(p.path().join("tasks/daily.yaml")).unwrap(),
        DAILY,
        "nothing written"
    );
    let fresh = put_if("if-match", format!("\"{sha}\"")).await.unwrap();
    assert_eq!(fresh.status(), 200);

    // Replace; an edit by hand is kept before the next write; the history round trip.
    let by_hand = DAILY2.replace("SELECT 2", "SELECT 3");
    std::fs::write(p.path().join("tasks/daily.yaml"), &by_hand).unwrap();
    let r = api.put_yaml("/api/v1/tasks/daily", editor, DAILY).await;
    expect(&r, 200, "replace after a hand edit");
    assert_eq!(r.json()["revision"], 4);
    let revs = api
        .get("/api/v1/tasks/daily/revisions", Auth::Bearer(&tk.viewer))
        .await;
    expect(&revs, 200, "revisions");
    let whats: Vec<(String, String)> = revs
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r.get("content").is_none(), "the list has no text: {r}");
            (
                r["author"].as_str().unwrap().into(),
                r["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        whats,
        [
            ("token:editor".to_string(), "create".to_string()),
            ("token:editor".into(), "replace".into()),
            ("file".into(), "found on disk".into()),
            ("token:editor".into(), "replace".into()),
        ]
    );
    let rev2 = api
        .get("/api/v1/tasks/daily/revisions/2", Auth::Bearer(&tk.viewer))
        .await;
    expect(&rev2, 200, "revision 2");
    let diff = rev2.json()["diff"].as_str().unwrap().to_string();
    assert!(
        diff.contains("\n-query: SELECT 1 AS n\n+query: SELECT 2 AS n\n"),
        "{diff}"
    );
    assert_eq!(rev2.json()["content"], DAILY2);
    let r = api
        .post("/api/v1/tasks/daily/revisions/2/restore", editor, json!({}))
        .await;
    expect(&r, 200, "restore");
    assert_eq!(r.json()["revision"], 5);
    assert_eq!(
        std::fs::read_to_string(p.path().join("tasks/daily.yaml")).unwrap(),
        DAILY2
    );

    // The same history from the command line.
    let out = p.ferry(&["tasks", "history", "daily"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text.lines().nth(5).unwrap().contains("restore 2"), "{text}");
    let out = p.ferry(&["tasks", "diff", "daily", "2"]);
    assert_eq!(stdout(&out), diff, "{}", describe(&out));
    let out = p
        .command(&["tasks", "restore", "daily", "1"])
        .env("USER", "carol")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        std::fs::read_to_string(p.path().join("tasks/daily.yaml")).unwrap(),
        DAILY
    );
    let last = d.store.revisions("daily").await.unwrap().pop().unwrap();
    assert!(
        last.author.starts_with("carol@") && last.action == "restore 1",
        "{last:?}"
    );

    // JSON in, YAML on disk; delete keeps the history.
    let mut events = d.handle.events();
    let body = json!({"schedule": "0 4 * * *", "source": "db", "query": "SELECT 1 AS n",
                      "output": {"format": "csv", "file_name": "fromjson"}});
    let r = api
        .call(
            "PUT",
            "/api/v1/tasks/fromjson",
            editor,
            Some(("application/json", body.to_string())),
        )
        .await;
    expect(&r, 200, "create from JSON");
    let yaml = std::fs::read_to_string(p.path().join("tasks/fromjson.yaml")).unwrap();
    assert!(
        yaml.contains("schedule: \"0 4 * * *\"\n") && yaml.contains("  format: csv\n"),
        "{yaml}"
    );
    added(&mut events).await;
    let got = api
        .get("/api/v1/tasks/fromjson", Auth::Bearer(&tk.viewer))
        .await;
    expect(&got, 200, "get");
    assert_eq!(got.json()["yaml"], yaml.as_str());
    let r = api
        .call("DELETE", "/api/v1/tasks/fromjson", editor, None)
        .await;
    expect(&r, 200, "delete");
    assert!(!p.path().join("tasks/fromjson.yaml").exists());
    let hist = d.store.revisions("fromjson").await.unwrap();
    assert_eq!(
        hist.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
        ["create", "delete"]
    );
    let r = api
        .call("DELETE", "/api/v1/tasks/fromjson", editor, None)
        .await;
    expect(&r, 404, "delete twice");
    let audit = audited(&d).await;
    for (actor, action, target) in [
        ("token:editor", "task.create", "daily"),
        ("token:operator", "run.start", "daily"),
        ("token:editor", "task.replace", "daily"),
        ("token:editor", "task.restore", "daily"),
        ("token:editor", "task.create", "fromjson"),
        ("token:editor", "task.delete", "fromjson"),
    ] {
        assert!(
            audit
                .iter()
                .any(|a| (a.0.as_str(), a.1.as_str(), a.2.as_str()) == (actor, action, target)),
            "no {actor} {action} {target}: {audit:?}"
        );
    }
    assert!(
        audit
            .iter()
            .any(|a| a.0.starts_with("carol@") && a.1 == "task.restore"),
        "{audit:?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_are_cancelled_and_paged_stably_under_inserts() {
    let p = project("");
    p.write(
        "tasks/slow.yaml",
        "schedule: \"0 3 * * *\"\nsource: db\nquery: |\n  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000000)\n  SELECT x FROM c\noutput: { format: csv, file_name: slow }\n",
    );
    let d = Daemon::start(&p, t(START)).await;
    let api = Api::of(&d);
    let tk = tokens(&d).await;
    let run_id = run_now(&api, &tk.operator, "slow").await;
    let r = api
        .post(
            &format!("/api/v1/runs/{run_id}/cancel"),
            Auth::Bearer(&tk.operator),
            json!({}),
        )
        .await;
    expect(&r, 200, "cancel");
    let run = finished(&api, Auth::Bearer(&tk.viewer), &run_id).await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert!(
        run.to_string().contains("cancelled by token:operator"),
        "{run}"
    );
    assert!(run["files"].as_array().unwrap().is_empty());
    let r = api
        .post(
            &format!("/api/v1/runs/{run_id}/cancel"),
            Auth::Bearer(&tk.operator),
            json!({}),
        )
        .await;
    expect(&r, 409, "cancel a finished run");
    assert_eq!(r.code(), "not_running");
    assert!(
        audited(&d)
            .await
            .iter()
            .any(|a| a.0 == "token:operator" && a.1 == "run.cancel" && a.2 == run_id),
        "the cancel is in the audit trail"
    );
    expect(
        &api.post(
            "/api/v1/runs/nope/cancel",
            Auth::Bearer(&tk.operator),
            json!({}),
        )
        .await,
        404,
        "cancel an unknown run",
    );

    // 25 recorded fires of `paged`, then pages of 10 while newer fires keep arriving.
    let base = t("2026-02-01T00:00:00Z");
    let record = |i: i64| {
        let store = d.store.clone();
        async move {
            let at = base + chrono::Duration::minutes(i);
            let claim = ferry::store::Claim {
                run_id: uuid::Uuid::now_v7().to_string(),
                task: "paged".into(),
                scheduled_at: at,
                trigger: ferry::store::Trigger::Schedule,
                node: "n".into(),
                pid: 1,
                started_at: at,
                started_by: None,
            };
            store
                .record(&claim, ferry::store::Status::Missed, "m")
                .await
                .unwrap();
            claim.run_id
        }
    };
    let mut expected = Vec::new();
    for i in 0..25 {
        expected.push(record(i).await);
    }
    expected.reverse();
    let viewer = Auth::Bearer(&tk.viewer);
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut newer = 100;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/runs?task=paged&limit=10&cursor={c}"),
            None => "/api/v1/runs?task=paged&limit=10".into(),
        };
        let r = api.get(&path, viewer).await;
        expect(&r, 200, "a page");
        let page = r.json();
        seen.extend(
            page["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["run_id"].as_str().unwrap().to_string()),
        );
        // Inserts between pages: newer fires (and one in the middle of the page read).
        record(newer).await;
        newer += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen, expected,
        "every run once, in order, whatever was inserted meanwhile"
    );
    let r = api.get("/api/v1/runs?task=paged&status=missed&since=2026-02-01T00:10:00Z&until=2026-02-01T00:20:00Z&limit=500", viewer).await;
    expect(&r, 200, "filters");
    assert_eq!(r.json()["runs"].as_array().unwrap().len(), 10);
    expect(
        &api.get("/api/v1/runs?status=bogus", viewer).await,
        400,
        "a bad status",
    );
    expect(
        &api.get("/api/v1/runs?cursor=!!", viewer).await,
        400,
        "a bad cursor",
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_are_listed_and_retried_now() {
    let p = project("");
    p.write("tasks/boxed.yaml", "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT 1 AS n\noutput: { format: csv, file_name: boxed }\nnotify: [box]\n");
    // The outbox folder is a file: the delivery fails until it is removed.
    p.write("outbox", "in the way");
    let mut d = Daemon::start(&p, t(START)).await;
    let api = Api::of(&d);
    let tk = tokens(&d).await;
    let run_id = run_now(&api, &tk.operator, "boxed").await;
    let id = run_id.clone();
    d.wait_for(
        "the run's followup",
        |e| matches!(e, Event::FollowupDone { run_id } if *run_id == id),
    )
    .await;
    let viewer = Auth::Bearer(&tk.viewer);
    let pending = api.get("/api/v1/deliveries", viewer).await.json();
    let failed = api
        .get("/api/v1/deliveries?state=failed", viewer)
        .await
        .json();
    let listed: Vec<&Value> = pending
        .as_array()
        .unwrap()
        .iter()
        .chain(failed.as_array().unwrap())
        .collect();
    assert_eq!(listed.len(), 1, "{pending} {failed}");
    assert_eq!(listed[0]["run_id"], run_id.as_str());
    assert_eq!(listed[0]["task"], "boxed");
    assert_eq!(listed[0]["channel"], "box");
    std::fs::remove_file(p.path().join("outbox")).unwrap();
    let retry = format!("/api/v1/deliveries/{run_id}/box/1/retry");
    let r = api
        .post(&retry, Auth::Bearer(&tk.operator), json!({}))
        .await;
    expect(&r, 200, "retry");
    d.wait_for(
        "a pass that sends it",
        |e| matches!(e, Event::DeliveryPass { attempted, .. } if *attempted >= 1),
    )
    .await;
    let run = api
        .get(&format!("/api/v1/runs/{run_id}"), viewer)
        .await
        .json();
    assert_eq!(run["deliveries"][0]["status"], "sent", "{run}");
    assert_eq!(run["delivery"], "delivered");
    let r = api
        .post(&retry, Auth::Bearer(&tk.operator), json!({}))
        .await;
    expect(&r, 409, "a sent delivery is not retried");
    assert!(
        audited(&d)
            .await
            .iter()
            .any(|a| a.0 == "token:operator" && a.1 == "delivery.retry" && a.2 == run_id),
        "the retry is in the audit trail"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_sources_channels_and_the_openapi_document_match_the_router() {
    let p = project("");
    let d = Daemon::start(&p, t(START)).await;
    let api = Api::of(&d);
    let tk = tokens(&d).await;
    let viewer = Auth::Bearer(&tk.viewer);
    let s = api.get("/api/v1/status", viewer).await;
    expect(&s, 200, "status");
    let s = s.json();
    assert_eq!(s["version"], ferry::VERSION);
    assert!(
        s["store"].as_str().unwrap().ends_with("/data/ferry.db"),
        "{s}"
    );
    assert_eq!(s["tasks"]["total"], 8, "{s}");
    assert_eq!(s["services"]["scheduler"], "running", "{s}");
    assert_eq!(s["services"]["api"], "running", "{s}");
    let ds = api.get("/api/v1/datasources", viewer).await.json();
    assert_eq!(ds[0]["type"], "sqlite");
    for (kind, name) in [("datasources", "db"), ("channels", "box")] {
        let list = api.get(&format!("/api/v1/{kind}"), viewer).await.json();
        assert_eq!(list[0]["name"], name, "{list}");
        let r = api
            .post(
                &format!("/api/v1/{kind}/{name}/test"),
                Auth::Bearer(&tk.operator),
                json!({}),
            )
            .await;
        expect(&r, 200, &format!("test {kind}/{name}"));
        assert_eq!(r.json()["ok"], true, "{}", r.body);
    }
    assert_eq!(p.files("outbox").len(), 1, "the test message");

    // The document lists exactly the routes, and every documented route is served.
    let doc = api.get("/api/v1/openapi.json", Auth::None).await;
    expect(&doc, 200, "the document");
    let doc = doc.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    let routed: Vec<(String, String)> = ferry::server::api::ROUTES
        .iter()
        .map(|r| (r.method.to_string(), format!("/api/v1{}", r.path)))
        .collect();
    let mut a = documented.clone();
    let mut b = routed.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for (method, path) in &documented {
        let r = api
            .call(
                method,
                &fill(path.trim_start_matches("/api/v1"), "0000"),
                Auth::Bearer(&tk.admin),
                None,
            )
            .await;
        assert!(
            r.status != 405 && !(r.status == 404 && r.code() == "no_such_route"),
            "{method} {path} is documented but not served: {} {}",
            r.status,
            r.body
        );
        let op = &paths[path][method.to_lowercase()];
        assert!(
            op["responses"]["200"].is_object() && op["summary"].is_string(),
            "{op}"
        );
    }
    // And what is not documented is not served.
    let r = api.get("/api/v1/nope", viewer).await;
    expect(&r, 404, "an unknown route");
    assert_eq!(r.code(), "no_such_route");
    let r = api.call("DELETE", "/api/v1/status", viewer, None).await;
    expect(&r, 405, "a method no route has");
    assert_eq!(r.code(), "method_not_allowed");
    for schema in ["RunRecord", "TaskSummary", "ApiError", "AuditRecord"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_server_serves_the_api_and_token_free_signed_links_when_they_share_an_address() {
    let p = project(
        "links:\n  listen: \"127.0.0.1:0\"\n  public_url: \"http://files.example.test/ferry\"\n  signing_key: \"k3Y-for-the-shared-server-test-0123456789\"\n",
    );
    // `ferry link` signs with the wall clock: the daemon's clock starts there too.
    let d = Daemon::start(&p, ferry::clock::wall_now()).await;
    assert_eq!(d.handle.links_addr(), d.handle.api_addr(), "one server");
    let api = Api::of(&d);
    let operator = token(&d, "operator", Role::Operator, None).await;
    let run_id = run_now(&api, &operator, "types_csv").await;
    let run = finished(&api, Auth::Bearer(&operator), &run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let out = p.ferry(&["link", &run_id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = made["links"][0]["url"].as_str().unwrap();
    let target = url.strip_prefix("http://files.example.test").unwrap();
    // No credentials: the signature is the credential.
    let r = api.get(target, Auth::None).await;
    expect(&r, 200, "a signed download without a token");
    let file = run["files"][0]["path"].as_str().unwrap();
    assert_eq!(r.body, std::fs::read_to_string(file).unwrap());
    expect(
        &api.get("/api/v1/status", Auth::None).await,
        401,
        "the API still asks",
    );
    let r = api.get("/ferry/d/nope", Auth::None).await;
    expect(&r, 404, "not a link");
    assert_eq!(r.body, "not found\n", "plain text outside the API");
    d.stop().await;
}
