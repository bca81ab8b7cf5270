//! Secrets in URLs never reach any output (issue 12 item 9 and item 7): a project whose
//! datasource, channel, webhook, store and links URLs carry passwords and tokens runs every
//! command — `validate`, `tasks`, `sources`, `sources test`, `channels`, `channels test`,
//! `run` (table and JSON), `history` (table and JSON), and `ferry serve` with its log at
//! debug level — through the failure paths where a driver or the HTTP client echoes the
//! URL (a refused connection, an HTTP 500 from a robot, a wrong password on the real
//! servers when they run), and all their output (stdout, stderr, the serve log) is searched
//! for every secret. A second project whose config is broken by those URLs (an SMTP host
//! given as a URL with its password, a `links.public_url` with a password, bad datasource
//! and store URLs) does the same for every command that reports config problems.

use std::time::Duration;

use crate::fake_robots::{FakeRobots, Settings};
use crate::support::{CONFIG_HEAD, Project, read_log, serve, terminate, wait_logged};

/// Fails naming every output that shows a secret, and the secret.
fn assert_no_secret(outputs: &[(String, String)], secrets: &[&str]) {
    let mut leaks = Vec::new();
    for (what, text) in outputs {
        for s in secrets {
            if text.contains(s) {
                leaks.push(format!("`{what}` shows {s}:\n{text}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n\n"));
}

/// stdout and stderr of `ferry ARGS`, with every log line (`FERRY_LOG=debug`).
fn output(p: &Project, args: &[&str]) -> (String, String) {
    let out = p
        .command(args)
        .env("FERRY_LOG", "debug")
        .output()
        .expect("run ferry");
    (
        format!("ferry {}", args.join(" ")),
        format!(
            "exit {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `host:port` of a test server URL from the environment, when it is set.
fn server(var: &str) -> Option<String> {
    let url = std::env::var(var).ok().filter(|u| !u.is_empty())?;
    let after = url.rsplit_once('@')?.1;
    Some(after.split('/').next()?.to_string())
}

const RUN_SECRETS: &[&str] = &[
    "PGPASS-1a",
    "PGQUERY-2b",
    "MYPASS-3c",
    "PGWRONG-4d",
    "MYWRONG-5e",
    "DINGTOKEN-6f",
    "SECDINGSIGN-7g",
    "WECOMKEY-8h",
    "FEISHUHOOK-9i",
    "FEISHUSIGN-10j",
    "HOOKPASS-11k",
    "HOOKTOKEN-12l",
    "DINGCLOSED-13m",
    "SMTPPASS-14n",
    "TASKTOKEN-15o",
    "HOOKSIGN-16p",
];

#[test]
fn no_command_shows_a_secret_of_a_url() {
    let fake = FakeRobots::start(Settings {
        dingtalk_token: "DINGTOKEN-6f".into(),
        dingtalk_secret: "SECDINGSIGN-7g".into(),
        wecom_key: "WECOMKEY-8h".into(),
        feishu_token: "FEISHUHOOK-9i".into(),
        feishu_secret: "FEISHUSIGN-10j".into(),
        webhook_secret: "HOOKSIGN-16p".into(),
        ..Settings::default()
    });
    // Every robot answers HTTP 500: reqwest's error for it names the URL, token included.
    for _ in 0..1000 {
        fake.script(500, "{\"errcode\":-1,\"errmsg\":\"system busy\"}");
    }
    let base = fake.base();
    // The real servers with a wrong password, when they run.
    let mut servers = String::new();
    if let Some(hp) = server("FERRY_TEST_PG_URL") {
        servers.push_str(&format!(
            "  pgwrong: {{ type: postgres, url: \"postgres://ferry:PGWRONG-4d@{hp}/ferry_test\" }}\n"
        ));
    }
    if let Some(hp) = server("FERRY_TEST_MYSQL_URL") {
        servers.push_str(&format!(
            "  mywrong: {{ type: mysql, url: \"mysql://ferry:MYWRONG-5e@{hp}/ferry_test\" }}\n"
        ));
    }
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        &format!(
            "{CONFIG_HEAD}scheduler: {{ delivery_interval: 200ms }}
datasources:
  db: {{ type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }}
  pg: {{ type: postgres, url: \"postgres://ferry:PGPASS-1a@127.0.0.1:1/ferry_test?password=PGQUERY-2b\", connect_timeout: 2s }}
  my: {{ type: mysql, url: \"mysql://ferry:MYPASS-3c@127.0.0.1:1/ferry_test\", connect_timeout: 2s }}
{servers}channels:
  ding: {{ type: dingtalk, webhook: \"{base}/robot/send?access_token=DINGTOKEN-6f\", secret: SECDINGSIGN-7g }}
  wecom: {{ type: wecom, webhook: \"{base}/cgi-bin/webhook/send?key=WECOMKEY-8h\" }}
  feishu: {{ type: feishu, webhook: \"{base}/open-apis/bot/v2/hook/FEISHUHOOK-9i\", secret: FEISHUSIGN-10j }}
  hook: {{ type: webhook, url: \"http://hookuser:HOOKPASS-11k@127.0.0.1:{port}/hooks/ferry?token=HOOKTOKEN-12l\", secret: HOOKSIGN-16p }}
  closed: {{ type: dingtalk, webhook: \"http://127.0.0.1:1/robot/send?access_token=DINGCLOSED-13m\" }}
  mail: {{ type: email, host: 127.0.0.1, port: 1, security: none, username: ferry, password: SMTPPASS-14n, from: ferry@example.test, to: [a@example.test] }}
",
            port = fake.port
        ),
    );
    let notify = "notify: [ding, wecom, feishu, hook, closed, mail, { channel: ding, webhook: \"http://127.0.0.1:1/robot/send?access_token=TASKTOKEN-15o\" }]\n";
    let mut tasks = vec!["ok", "pg", "my"];
    if servers.contains("pgwrong") {
        tasks.push("pgwrong");
    }
    if servers.contains("mywrong") {
        tasks.push("mywrong");
    }
    for (i, t) in tasks.iter().enumerate() {
        let source = if *t == "ok" { "db" } else { t };
        let body = format!(
            "schedule: \"* * * * * *\"\nsource: {source}\nquery: SELECT 1 AS n\noutput: {{ format: csv, file_name: {t} }}\n{notify}"
        );
        if i == 0 {
            crate::support::only_task(&p, t, &body);
        } else {
            p.write(&format!("tasks/{t}.yaml"), &body);
        }
    }

    let mut outputs = Vec::new();
    for args in [
        &["validate"][..],
        &["tasks"],
        &["sources"],
        &["channels"],
        &["sources", "test"],
    ] {
        outputs.push(output(&p, args));
    }
    for ch in ["ding", "wecom", "feishu", "hook", "closed", "mail"] {
        outputs.push(output(&p, &["channels", "test", ch]));
    }
    // One run notifies every channel (their retries within the run take seconds); the
    // failing sources' runs skip notifying.
    outputs.push(output(&p, &["run", "ok"]));
    for t in &tasks[1..] {
        outputs.push(output(&p, &["run", t, "--no-notify"]));
        outputs.push(output(&p, &["run", t, "--json", "--no-notify"]));
    }
    outputs.push(output(&p, &["history"]));
    outputs.push(output(&p, &["history", "--json"]));

    // The daemon: every task each second, retries every 200 ms; its log at debug level.
    let mut child = p
        .command(&["serve"])
        .env("FERRY_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(p.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    wait_logged(
        &p,
        "serve.log",
        Duration::from_secs(60),
        "failed runs and deliveries in the serve log",
        || {
            let log = read_log(&p, "serve.log");
            log.contains("cannot connect to postgres://ferry:***@127.0.0.1:1/")
                && log.contains("answered HTTP 500")
                && log.contains("could not be reached")
        },
    );
    terminate(&mut child);
    outputs.push(("ferry serve (log)".into(), read_log(&p, "serve.log")));

    // The failure paths ran (so the search below means something).
    let all: String = outputs.iter().map(|(_, t)| t.as_str()).collect();
    for shown in [
        "postgres://ferry:***@127.0.0.1:1/ferry_test?password=***",
        "mysql://ferry:***@127.0.0.1:1/ferry_test",
        "/robot/send?access_token=***",
        "/open-apis/bot/v2/hook/***",
        "http://hookuser:***@127.0.0.1:",
        "DingTalk answered HTTP 500",
        "WeCom answered HTTP 500",
        "Feishu answered HTTP 500",
        "the webhook answered HTTP 500",
        "DingTalk could not be reached",
    ] {
        assert!(all.contains(shown), "no output shows `{shown}`");
    }
    if tasks.contains(&"pgwrong") {
        assert!(all.contains("password authentication failed"), "{all}");
    }
    if tasks.contains(&"mywrong") {
        assert!(all.contains("Access denied for user 'ferry'"), "{all}");
    }
    assert_no_secret(&outputs, RUN_SECRETS);
}

const CONFIG_SECRETS: &[&str] = &[
    "SMTPURLPASS-1a",
    "LINKPASS-3c",
    "WRONGSCHEME-4d",
    "BADPORT-5e",
    "STOREPASS-6f",
    "FTPPASS-7g",
    "FTPTOKEN-8h",
    "NOTURL-9i",
];

#[test]
fn config_problems_show_no_secret_of_a_url() {
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        "timezone: UTC
store: { url: \"mysql://u:STOREPASS-6f@db.example/ferry\" }
links: { listen: \"127.0.0.1:0\", public_url: \"https://linker:LINKPASS-3c@files.example.com\", signing_key: \"Zq8vN3mW7pL2xR9tK4yB6cH1dF5gS0aJ\" }
datasources:
  db: { type: sqlite, url: \"postgres://u:WRONGSCHEME-4d@h/db\" }
  pg: { type: postgres, url: \"postgres://u:BADPORT-5e@h:notaport/db\" }
channels:
  mail: { type: email, host: \"smtp://mailer:SMTPURLPASS-1a@mail.example.com\", from: ferry@example.test }
  hook: { type: webhook, url: \"ftp://u:FTPPASS-7g@h/x?token=FTPTOKEN-8h\" }
  ding: { type: dingtalk, webhook: \"oapi.dingtalk.com/robot/send?id=NOTURL-9i\" }
",
    );
    let mut outputs = Vec::new();
    for args in [
        &["validate"][..],
        &["tasks"],
        &["sources"],
        &["sources", "test"],
        &["channels"],
        &["channels", "test", "mail"],
        &["run", "sales_month"],
        &["history"],
    ] {
        outputs.push(output(&p, args));
    }
    let mut child = serve(&p, "serve.log");
    let code = crate::support::poll(
        Duration::from_secs(30),
        "serve to refuse the config",
        || child.try_wait().unwrap(),
    );
    assert_eq!(code.code(), Some(2));
    outputs.push(("ferry serve (log)".into(), read_log(&p, "serve.log")));

    let validate = &outputs[0].1;
    for shown in [
        "got the URL `smtp://mailer:***@mail.example.com`",
        "`https://linker:***@files.example.com` must not carry a user name or password",
        "got `postgres://u:***@h/db`",
        "postgres://u:***@h:notaport/db",
        "`ftp://u:***@h/x?token=***`",
        "`oapi.dingtalk.com/robot/send?id=***`",
    ] {
        assert!(validate.contains(shown), "no `{shown}` in {validate}");
    }
    assert_no_secret(&outputs, CONFIG_SECRETS);
}
