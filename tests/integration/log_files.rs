//! `logging:` (issue 15 item 2) with a real `ferry serve`: JSON lines in a file rotated by
//! size and gzipped, every line of a run carrying its task, run id and fire time; and no
//! log a test writes (the file, the rotated files, standard error) holds any configured
//! secret, including sealed ones and ones read from files, while a robot answers errors
//! that echo its URL.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use crate::fake_robots::{FakeRobots, Settings};
use crate::support::{CONFIG_HEAD, Project, describe, terminate, wait_logged};

const SECRETS: &[&str] = &[
    "LOGTOKEN-1q",
    "LOGSIGN-2r",
    "LOGPGPASS-3s",
    "LOGSMTP-4t",
    "LOGLINKKEY-5u-0123456789abcdefghijklmnopqrstuvwxyz",
];

/// `ferry history --task TASK --json` with the key of the sealed values.
fn history(p: &Project, task: &str) -> Vec<serde_json::Value> {
    let out = p
        .command(&["history", "--task", task, "--json"])
        .env("FERRY_SECRETS_KEY_FILE", p.path().join("k.key"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Every log file under `logs/` (gunzipped) and the serve's standard error.
fn all_logs(p: &Project) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p.path().join("logs")).unwrap() {
        let path = e.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let text = if path.extension().is_some_and(|x| x == "gz") {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut s)
                .unwrap();
            s
        } else {
            String::from_utf8(bytes).unwrap()
        };
        out.push((path.display().to_string(), text));
    }
    out.push((
        "stderr".into(),
        std::fs::read_to_string(p.path().join("stderr.log")).unwrap_or_default(),
    ));
    out
}

#[test]
fn serve_logs_json_lines_to_a_rotated_file_without_secrets() {
    let fake = FakeRobots::start(Settings {
        dingtalk_token: SECRETS[0].into(),
        dingtalk_secret: SECRETS[1].into(),
        ..Settings::default()
    });
    // Every post fails with HTTP 500: the client's error names the URL, token included.
    for _ in 0..1000 {
        fake.script(500, "{\"errcode\":-1,\"errmsg\":\"system busy\"}");
    }
    let p = Project::fixture("project");
    // The robot token sealed, the signing secret and the link key in files.
    let out = p.ferry(&["secrets", "keygen", "--out", "k.key"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mut enc = p
        .command(&["secrets", "encrypt"])
        .env("FERRY_SECRETS_KEY_FILE", p.path().join("k.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(enc.stdin.as_mut().unwrap(), SECRETS[0].as_bytes()).unwrap();
    drop(enc.stdin.take());
    let token = String::from_utf8(enc.wait_with_output().unwrap().stdout).unwrap();
    p.write("sign.txt", SECRETS[1]);
    p.write("link.key", SECRETS[4]);
    p.write(
        "config.yaml",
        &format!(
            "{CONFIG_HEAD}scheduler: {{ delivery_interval: 200ms }}
logging:
  level: debug
  format: json
  file: {{ path: logs/ferry.log, max_bytes: 4096, keep: 50 }}
links: {{ public_url: \"http://127.0.0.1:1\", listen: \"127.0.0.1:0\", signing_key_file: link.key }}
datasources:
  db: {{ type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }}
  pg: {{ type: postgres, url: \"postgres://ferry:{pg}@127.0.0.1:1/x\", connect_timeout: 1s }}
channels:
  ding: {{ type: dingtalk, webhook: \"{base}/robot/send?access_token={token}\", secret_file: sign.txt }}
  mail: {{ type: email, host: 127.0.0.1, port: 1, security: none, username: u, password: {smtp}, from: f@example.test, to: [a@example.test] }}
",
            pg = SECRETS[2],
            smtp = SECRETS[3],
            base = fake.base(),
            token = token.trim(),
        ),
    );
    let task = |source: &str, name: &str| {
        format!(
            "schedule: \"* * * * * *\"\nsource: {source}\nquery: SELECT 1 AS n\noutput: {{ format: csv, file_name: {name} }}\nnotify: [ding, mail]\n"
        )
    };
    crate::support::only_task(&p, "ok", &task("db", "ok"));
    p.write("tasks/broken.yaml", &task("pg", "broken"));

    let stderr = std::fs::File::create(p.path().join("stderr.log")).unwrap();
    let mut child = p
        .command(&["serve"])
        .env("FERRY_SECRETS_KEY_FILE", p.path().join("k.key"))
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let rotated = || {
        std::fs::read_dir(p.path().join("logs"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".gz"))
                    .count()
            })
            .unwrap_or(0)
    };
    wait_logged(
        &p,
        "logs/ferry.log",
        Duration::from_secs(60),
        "runs of both tasks, failed deliveries and two rotations",
        || {
            rotated() >= 2
                && history(&p, "broken")
                    .iter()
                    .any(|r| r["status"] == "failed")
                && history(&p, "ok").iter().any(|r| r["status"] == "succeeded")
        },
    );
    assert_eq!(terminate(&mut child), Some(0));

    let mut logs = all_logs(&p);
    // History rows (with their deliveries' errors) and the outbox hold no secret either.
    for task in ["ok", "broken"] {
        logs.push((
            format!("history of {task}"),
            serde_json::to_string(&history(&p, task)).unwrap(),
        ));
    }
    let mut leaks = Vec::new();
    for (name, text) in &logs {
        for s in SECRETS {
            if text.contains(s) {
                leaks.push(format!("{name} shows {s}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{leaks:?}");

    // JSON lines; those in a run carry the run span's fields.
    let mut run_lines = 0;
    for (name, text) in logs
        .iter()
        .filter(|(n, _)| n.ends_with(".log") || n.contains(".log."))
    {
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
            assert!(
                v["timestamp"].is_string() && v["level"].is_string(),
                "{line}"
            );
            if let Some(run) = v["spans"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == "run"))
            {
                assert!(run["task"].is_string(), "{line}");
                assert!(run["run_id"].is_string(), "{line}");
                assert!(run["scheduled_at"].is_string(), "{line}");
                run_lines += 1;
            }
        }
    }
    assert!(run_lines > 0, "no line of a run in the log");
    let stderr = &logs.iter().find(|(n, _)| n == "stderr").unwrap().1;
    assert!(
        stderr.is_empty(),
        "the log went to the file, not stderr:\n{stderr}"
    );
}
