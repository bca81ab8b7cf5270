//! Who may do what through the HTTP API (issue 14 item 3), over loopback against the
//! daemon in this process: every guarded route refuses without credentials and below
//! its role; logins, sessions, CSRF, login limits, token expiry and revocation; the
//! audit trail and no secret in any answer; a TLS proxy in front; and the command line
//! (`ferry users|tokens|audit`, the loopback guard) through the binary.

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{Api, Auth, DAILY, START, add_user, expect, fill, finished, project, t, tokens};
use crate::support::{Daemon, Project, describe, stdout};
use ferry::access::Role;

/// Secrets in config.yaml and in a task file that no answer may contain.
const SECRETS: [&str; 6] = [
    "PGSECRET-9x",
    "DINGTOKEN-7q",
    "SECDINGSECRET3z",
    "MAILPASS-5k",
    "TASKTOKEN-2w",
    "SECTASKSECRET8y",
];

/// A task with its own robot webhook and secret, written literally.
const ROBOT: &str = "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT 1 AS n\noutput: { format: csv, file_name: robot }\nnotify:\n  - channel: ding\n    webhook: \"https://oapi.dingtalk.com/robot/send?access_token=TASKTOKEN-2w\"\n    secret: SECTASKSECRET8y\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_guarded_route_refuses_without_credentials_and_below_its_role() {
    let p = project("");
    let d = Daemon::start(&p, t(START)).await;
    let api = Api::of(&d);
    let tk = tokens(&d).await;
    let of = |r: Role| match r {
        Role::Viewer => tk.viewer.as_str(),
        Role::Operator => tk.operator.as_str(),
        Role::Editor => tk.editor.as_str(),
        Role::Admin => tk.admin.as_str(),
    };
    let mut guarded = 0;
    for route in ferry::server::api::ROUTES.iter() {
        let path = fill(route.path, "0000");
        let method = route.method.as_str();
        let Some(role) = route.role else {
            continue;
        };
        guarded += 1;
        let r = api.call(method, &path, Auth::None, None).await;
        expect(&r, 401, &format!("{method} {path} without credentials"));
        assert_eq!(r.code(), "unauthorized");
        assert!(r.header("www-authenticate").starts_with("Bearer"));
        let r = api
            .call(method, &path, Auth::Bearer("fy_nope_nope"), None)
            .await;
        expect(&r, 401, &format!("{method} {path} with an unknown token"));
        for lower in [Role::Viewer, Role::Operator, Role::Editor, Role::Admin] {
            if lower >= role {
                break;
            }
            let r = api.call(method, &path, Auth::Bearer(of(lower)), None).await;
            expect(&r, 403, &format!("{method} {path} as {}", lower.as_str()));
            assert_eq!(r.code(), "forbidden", "{}", r.body);
            assert!(
                r.json()["message"]
                    .as_str()
                    .unwrap()
                    .contains(role.as_str())
            );
        }
    }
    assert!(guarded >= 25, "{guarded}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_sessions_csrf_login_limits_and_token_lifetimes() {
    let p = project("");
    let d = Daemon::start(&p, t(START)).await;
    let api = Api::of(&d);
    add_user(&d, "alice", Role::Admin, "alice-password-1").await;
    add_user(&d, "bob", Role::Viewer, "bob-password-12").await;
    let login = |user: &str, password: &str| {
        api.post(
            "/api/v1/login",
            Auth::None,
            json!({"user": user, "password": password}),
        )
    };

    // Wrong passwords, then the limit: even the right password is refused for a while.
    for _ in 0..ferry::access::ACCOUNT_FAILURES {
        let r = login("bob", "wrong").await;
        expect(&r, 401, "a wrong password");
        assert_eq!(r.code(), "bad_credentials");
    }
    let r = login("bob", "bob-password-12").await;
    expect(&r, 429, "the account is locked out");
    assert_eq!(r.code(), "too_many_attempts");
    assert_eq!(r.header("retry-after"), "900");
    let r = login("nobody", "whatever").await;
    expect(&r, 401, "an unknown user");
    assert_eq!(
        r.code(),
        "bad_credentials",
        "unknown users look like wrong passwords"
    );

    // A session: the cookie's attributes, the CSRF token on every write.
    let r = login("alice", "alice-password-1").await;
    expect(&r, 200, "login");
    let set = r.header("set-cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "no TLS, not configured: {set}");
    let cookie = set
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("ferry_session=")
        .to_string();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_string();
    let me = api
        .get("/api/v1/session", Auth::Cookie(&cookie, None))
        .await;
    expect(&me, 200, "session");
    assert_eq!(me.json()["actor"], "user:alice");
    assert_eq!(me.json()["csrf_token"], csrf.as_str());
    let pause = "/api/v1/tasks/types_csv/pause";
    let r = api
        .post(pause, Auth::Cookie(&cookie, None), json!({}))
        .await;
    expect(&r, 403, "a write without the CSRF token");
    assert_eq!(r.code(), "csrf_token_missing");
    let r = api
        .post(pause, Auth::Cookie(&cookie, Some("forged")), json!({}))
        .await;
    expect(&r, 403, "a write with a wrong CSRF token");
    assert_eq!(r.code(), "csrf_token_invalid");
    assert!(
        d.store.paused_tasks().await.unwrap().is_empty(),
        "nothing done"
    );
    let r = api
        .post(
            pause,
            Auth::Cookie(&cookie, Some(&csrf)),
            json!({"reason": "migration"}),
        )
        .await;
    expect(&r, 200, "a write with the CSRF token");
    assert_eq!(r.json()["by"], "user:alice");
    let session = Auth::Cookie(&cookie, Some(&csrf));

    // Tokens made through the API: expiry and revocation.
    let r = api
        .post(
            "/api/v1/tokens",
            session,
            json!({"name": "short", "role": "viewer", "expires": "1h"}),
        )
        .await;
    expect(&r, 200, "create a token");
    let short = r.json()["token"].as_str().unwrap().to_string();
    assert!(short.starts_with("fy_"));
    let r = api
        .post(
            "/api/v1/tokens",
            session,
            json!({"name": "ci", "role": "operator"}),
        )
        .await;
    let ci = r.json()["token"].as_str().unwrap().to_string();
    let dup = api
        .post(
            "/api/v1/tokens",
            session,
            json!({"name": "ci", "role": "viewer"}),
        )
        .await;
    expect(&dup, 409, "a name in use");
    expect(
        &api.get("/api/v1/status", Auth::Bearer(&short)).await,
        200,
        "a fresh token",
    );
    expect(
        &api.get("/api/v1/status", Auth::Bearer(&ci)).await,
        200,
        "a fresh token",
    );
    let listed = api.get("/api/v1/tokens", session).await;
    expect(&listed, 200, "list tokens");
    assert!(
        !listed.body.contains(&short) && !listed.body.contains(&ci),
        "tokens are never shown again"
    );
    expect(
        &api.call("DELETE", "/api/v1/tokens/ci", session, None).await,
        200,
        "revoke",
    );
    let r = api.get("/api/v1/status", Auth::Bearer(&ci)).await;
    expect(&r, 401, "a revoked token");
    assert_eq!(r.code(), "token_revoked");
    d.clock.advance(Duration::from_secs(2 * 3600));
    let r = api.get("/api/v1/status", Auth::Bearer(&short)).await;
    expect(&r, 401, "an expired token");
    assert_eq!(r.code(), "token_expired");

    // Logout ends the session; another one expires with the clock.
    let r = api.call("POST", "/api/v1/logout", session, None).await;
    expect(&r, 200, "logout");
    assert!(r.header("set-cookie").contains("Max-Age=0"));
    let r = api
        .get("/api/v1/session", Auth::Cookie(&cookie, None))
        .await;
    expect(&r, 401, "after logout");
    let r = login("alice", "alice-password-1").await;
    let cookie2 = r
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("ferry_session=")
        .to_string();
    expect(
        &api.get("/api/v1/session", Auth::Cookie(&cookie2, None))
            .await,
        200,
        "a new session",
    );
    d.clock.advance(Duration::from_secs(13 * 3600));
    let r = api
        .get("/api/v1/session", Auth::Cookie(&cookie2, None))
        .await;
    expect(&r, 401, "an expired session");
    assert_eq!(r.code(), "session_expired");
    // The limit's window has passed too.
    expect(
        &login("bob", "bob-password-12").await,
        200,
        "after the window",
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_trail_records_each_change_and_no_answer_holds_a_secret() {
    let p = project("");
    let path = p.path().join("config.yaml");
    let config = std::fs::read_to_string(&path).unwrap().replace(
        "datasources:\n",
        "datasources:\n  pg: { type: postgres, url: \"postgres://ferry:PGSECRET-9x@127.0.0.1:9/x\" }\n",
    ).replace(
        "channels:\n",
        "channels:\n  ding: { type: dingtalk, webhook: \"https://oapi.dingtalk.com/robot/send?access_token=DINGTOKEN-7q\", secret: SECDINGSECRET3z }\n  mail: { type: email, host: 127.0.0.1, port: 9, security: none, username: u, password: MAILPASS-5k, from: a@example.com, to: [b@example.com] }\n",
    );
    std::fs::write(&path, config).unwrap();
    let d = Daemon::start(&p, t(START)).await;
    let api = Api::of(&d);
    let tk = tokens(&d).await;
    let admin = Auth::Bearer(&tk.admin);
    expect(
        &api.post(
            "/api/v1/tasks/types_csv/pause",
            admin,
            json!({"reason": "x"}),
        )
        .await,
        200,
        "pause",
    );
    expect(
        &api.post("/api/v1/tasks/types_csv/resume", admin, json!({}))
            .await,
        200,
        "resume",
    );
    expect(
        &api.put_yaml("/api/v1/tasks/daily", admin, DAILY).await,
        200,
        "create",
    );
    expect(
        &api.put_yaml("/api/v1/tasks/robot", admin, ROBOT).await,
        200,
        "a task with its own robot secrets",
    );
    expect(
        &api.put_yaml("/api/v1/tasks/robot", admin, &format!("{ROBOT}# v2\n"))
            .await,
        200,
        "replace it",
    );
    let r = api
        .post("/api/v1/tasks/types_csv/run", admin, json!({}))
        .await;
    expect(&r, 200, "run");
    let run_id = r.json()["run_id"].as_str().unwrap().to_string();
    finished(&api, admin, &run_id).await;
    let r = api
        .post("/api/v1/datasources/pg/test", admin, json!({}))
        .await;
    expect(&r, 200, "test an unreachable datasource");
    assert_eq!(r.json()["ok"], false);

    // Every read route, and the answers above: no secret anywhere.
    let mut bodies = vec![r.body.clone()];
    for route in ferry::server::api::ROUTES
        .iter()
        .filter(|r| r.method == "GET")
    {
        let r = api.get(&fill(route.path, &run_id), admin).await;
        assert!(
            r.status == 200 || r.status == 404,
            "{} {}: {}",
            route.path,
            r.status,
            r.body
        );
        bodies.push(r.body);
    }
    for path in [
        "/api/v1/tasks/robot",
        "/api/v1/tasks/robot/revisions",
        "/api/v1/tasks/robot/revisions/1",
        "/api/v1/tasks/robot/revisions/2",
    ] {
        let r = api.get(path, admin).await;
        expect(&r, 200, path);
        bodies.push(r.body);
    }
    let shown: Value = serde_json::from_str(bodies.last().unwrap()).unwrap();
    let shown = shown["content"].as_str().unwrap().to_string();
    assert!(shown.contains("    secret: \"***\"\n"), "{shown}");
    // The masked text sent back is refused at the mask, nothing written.
    let r = api.put_yaml("/api/v1/tasks/robot", admin, &shown).await;
    expect(&r, 422, "a mask sent back");
    let at: Vec<String> = r.json()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p["at"].as_str().unwrap(),
                p["field"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        at,
        [
            "tasks/robot.yaml:7:14 notify.webhook",
            "tasks/robot.yaml:8:13 notify.secret"
        ]
    );
    assert!(
        std::fs::read_to_string(p.path().join("tasks/robot.yaml"))
            .unwrap()
            .contains("SECTASKSECRET8y")
    );
    let all = bodies.join("\n");
    assert!(
        all.contains("postgres://ferry:***@127.0.0.1:9/x"),
        "the datasource is listed, redacted"
    );
    for s in SECRETS {
        assert!(!all.contains(s), "`{s}` in an answer");
    }

    // The trail: who, what, from where.
    let r = api.get("/api/v1/audit?limit=100", admin).await;
    expect(&r, 200, "audit");
    let entries = r.json()["entries"].as_array().unwrap().clone();
    for action in [
        "task.pause",
        "task.resume",
        "task.create",
        "run.start",
        "datasource.test",
    ] {
        let e = entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action}: {entries:?}"));
        assert_eq!(e["actor"], "token:admin");
        assert_eq!(e["client"], "127.0.0.1");
    }
    let start = entries.iter().find(|e| e["action"] == "run.start").unwrap();
    assert_eq!(start["target"], "types_csv");
    assert_eq!(start["detail"], run_id.as_str());
    let r = api
        .get("/api/v1/audit?action=task.pause&limit=1", admin)
        .await;
    assert_eq!(r.json()["entries"].as_array().unwrap().len(), 1);
    expect(
        &api.get("/api/v1/audit", Auth::Bearer(&tk.editor)).await,
        403,
        "audit is for admins",
    );
    let out = p.ferry(&["audit", "--action", "task.create", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let cli: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let targets: Vec<&str> = cli
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["robot", "daily"], "newest first");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_tls_proxy_the_cookie_is_secure_and_the_client_is_the_forwarded_one() {
    let p = project("  trust_proxy: true\n  session_ttl: 30m\n");
    let d = Daemon::start(&p, t(START)).await;
    let api = Api::of(&d);
    add_user(&d, "alice", Role::Editor, "alice-password-1").await;
    let r = api
        .client
        .post(format!("{}/api/v1/login", api.base))
        .header("content-type", "application/json")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "198.51.100.7, 203.0.113.5")
        .body(json!({"user": "alice", "password": "alice-password-1"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("; Secure") && set.contains("Max-Age=1800"),
        "{set}"
    );
    let login = d
        .store
        .audit(&ferry::store::AuditFilter {
            action: Some("login".into()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        login[0].client.as_deref(),
        Some("203.0.113.5"),
        "the proxy's entry"
    );
    d.stop().await;
}

#[test]
fn users_tokens_and_the_loopback_guard_from_the_command_line() {
    let p = Project::fixture("project");
    let path = p.path().join("config.yaml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str("http:\n  listen: \"0.0.0.0:0\"\n");
    std::fs::write(&path, config).unwrap();
    let refusal = "is beyond loopback, but no user exists";
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        crate::support::stderr(&out).contains(refusal),
        "{}",
        describe(&out)
    );
    let out = p.ferry(&["serve"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        crate::support::stderr(&out).contains(refusal),
        "{}",
        describe(&out)
    );

    let with_stdin = |args: &[&str], input: &str| {
        let mut cmd = p.command(args);
        cmd.env("USER", "root");
        crate::support::with_stdin(cmd, input)
    };
    let out = with_stdin(&["users", "add", "alice", "--role", "admin"], "short\n");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(crate::support::stderr(&out).contains("too short"));
    let out = with_stdin(
        &["users", "add", "alice", "--role", "admin"],
        "a-long-password\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = with_stdin(
        &["users", "add", "bob", "--role", "chief"],
        "a-long-password\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let listed = stdout(&p.ferry(&["users", "list"]));
    assert!(
        listed.lines().nth(1).unwrap().starts_with("alice  admin"),
        "{listed}"
    );
    let out = p.ferry(&["validate"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "with a user: {}",
        describe(&out)
    );
    // A new password, read from standard input, replaces the argon2id hash.
    let out = with_stdin(&["users", "passwd", "alice"], "another-long-password\n");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = with_stdin(&["users", "passwd", "nobody"], "another-long-password\n");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let hash = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let url = ferry::store::StoreUrl::Sqlite(p.path().join("data/ferry.db"));
        let store = ferry::store::open(&url).await.unwrap();
        let user = store.user("alice").await.unwrap().unwrap();
        store.close().await;
        user.password_hash
    });
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(ferry::access::verify_password(
        "another-long-password",
        &hash
    ));
    assert!(!ferry::access::verify_password("a-long-password", &hash));

    let out = p
        .command(&[
            "tokens",
            "create",
            "ci",
            "--role",
            "operator",
            "--expires",
            "90d",
        ])
        .env("USER", "root")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let token = stdout(&out).trim().to_string();
    assert!(
        token.starts_with("fy_") && !token.contains(' '),
        "only the token on stdout: {token}"
    );
    let listed = stdout(&p.ferry(&["tokens", "list"]));
    assert!(
        listed.contains("ci") && listed.contains("operator") && listed.contains("active"),
        "{listed}"
    );
    assert!(!listed.contains(&token), "{listed}");
    let db = std::fs::read(p.path().join("data/ferry.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains(&token),
        "the store keeps a hash only"
    );
    let out = p.ferry(&["tokens", "revoke", "ci"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&p.ferry(&["tokens", "list"])).contains("revoked"));
    for args in [
        &["tasks", "pause", "types_csv"][..],
        &["tasks", "resume", "types_csv"],
        &["run", "types_csv"],
    ] {
        let out = p.ferry(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
    }
    let out = p.ferry(&["audit"]);
    let audit = stdout(&out);
    for action in [
        "user.add",
        "token.create",
        "token.revoke",
        "task.pause",
        "task.resume",
        "run.start",
    ] {
        assert!(audit.contains(action), "{audit}");
    }
    assert!(audit.contains("root@"), "{audit}");
    let out = p.ferry(&["users", "remove", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}
