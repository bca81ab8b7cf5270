//! Chat robot and webhook channels through the real `ferry run`, against the loopback fakes
//! of `fake_robots` that check the documented protocols byte for byte: signatures, message
//! shapes, keywords, rate limits and the services' error codes.

use std::time::{Duration, Instant};

use crate::fake_robots::{FakeRobots, Settings};
use crate::support::{Project, describe, stderr};

const TASK: &str = "schedule: '0 6 * * *'\nsource: db\nquery: SELECT 1 AS n, '销售' AS name\noutput: { format: csv, file_name: robots }\n";

/// The fixture project with `channels` added to config.yaml and one task `t` whose
/// `notify` is `notify` (YAML flow text).
fn project(channels: &str, notify: &str) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &config.replacen("channels:\n", &format!("channels:\n{channels}"), 1),
    );
    p.write("tasks/t.yaml", &format!("{TASK}notify: {notify}\n"));
    p
}

/// Adds a `links:` section (download links valid 3 days) to the project's config.yaml.
fn with_links(p: &Project) {
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &format!(
            "{config}links:\n  public_url: https://files.example.test/ferry\n  signing_key: \"k7Vq2-Lm9Xw4Rt8Zp3Nc6Bh1Df5Gs0Ja\"\n  expiry: 3d\n"
        ),
    );
}

fn delivery(json: &serde_json::Value, i: usize) -> &serde_json::Value {
    &json["deliveries"][i]
}

#[test]
fn dingtalk_gets_a_signed_markdown_message_with_mentions() {
    let fake = FakeRobots::start(Settings::default());
    let channels = format!(
        "  ding: {{ type: dingtalk, webhook: \"{}\", secret: SECdingtalk-secret-0001, mentions: ['13800000000'] }}\n",
        fake.dingtalk_webhook()
    );
    let p = project(&channels, "[ding]");
    let json = p.run_json("t", &[], 0);
    let d = delivery(&json, 0);
    assert_eq!(d["status"], "sent", "{json}");
    assert_eq!(d["receipt"], "DingTalk accepted the message", "{json}");
    let got = fake.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/robot/send");
    assert_eq!(r.answer.0, 200);
    assert!(r.answer.1.contains("\"errcode\":0"), "{:?}", r.answer);
    // The signature was checked by the fake; its parameters are the documented ones.
    let ts: i64 = r
        .query
        .iter()
        .find(|(k, _)| k == "timestamp")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert!((chrono::Utc::now().timestamp_millis() - ts).abs() < 60_000);
    assert!(r.query.iter().any(|(k, _)| k == "sign"));
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let body = r.json();
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(body["markdown"]["title"], "[ferry] t succeeded: 1 rows");
    let text = body["markdown"]["text"].as_str().unwrap();
    assert!(text.starts_with("### t: succeeded"), "{text}");
    assert!(text.contains("robots"), "{text}");
    assert!(text.ends_with("@13800000000"), "{text}");
    assert_eq!(body["at"]["atMobiles"][0], "13800000000");
    assert_eq!(body["at"]["isAtAll"], false);
    assert_eq!(r.dingtalk_mentions(), ["13800000000"]);
}

#[test]
fn dingtalk_refusals_are_permanent_and_name_no_secret() {
    let fake = FakeRobots::start(Settings {
        dingtalk_keyword: Some("日报".into()),
        ..Settings::default()
    });
    let webhook = fake.dingtalk_webhook();
    let channels = format!(
        "  badsign: {{ type: dingtalk, webhook: \"{webhook}\", secret: SECwrong-secret-9999 }}\n  nokeyword: {{ type: dingtalk, webhook: \"{webhook}\", secret: SECdingtalk-secret-0001, keyword: 日报 }}\n"
    );
    let p = project(&channels, "[badsign, nokeyword]");
    // `ferry validate` warns about the keyword before anything is sent.
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stderr(&out).contains(
            "channels.nokeyword.keyword: template `report` does not contain the DingTalk keyword `日报`"
        ),
        "{}",
        describe(&out)
    );
    // The export succeeded and a delivery failed: exit 3; the deliveries say what failed.
    let out = p.ferry(&["run", "t", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let all = describe(&out);
    for secret in [
        "SECwrong-secret-9999",
        "SECdingtalk-secret-0001",
        "dt-token-0001",
    ] {
        assert!(!all.contains(secret), "{secret} shown: {all}");
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["status"], "succeeded",
        "the export itself succeeded: {json}"
    );
    let (a, b) = (delivery(&json, 0), delivery(&json, 1));
    assert_eq!(a["status"], "failed");
    assert_eq!(a["retryable"], false);
    assert_eq!(
        a["error"],
        "channel `badsign`: DingTalk errcode 310000: sign not match (the robot's security settings refused the message: check its keyword, secret or IP allowlist)"
    );
    assert_eq!(b["retryable"], false);
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .starts_with("channel `nokeyword`: DingTalk errcode 310000: keywords not in content"),
        "{b}"
    );
    // A keyword in the template fixes it.
    p.write(
        "templates/daily.md.j2",
        "日报 {{ task_name }}: {{ rows_count }} rows",
    );
    p.write(
        "tasks/t.yaml",
        &format!("{TASK}notify: [{{ channel: nokeyword, template: daily }}]\n"),
    );
    let json = p.run_json("t", &[], 0);
    assert_eq!(delivery(&json, 0)["status"], "sent", "{json}");
    assert_eq!(
        fake.received().last().unwrap().json()["markdown"]["text"],
        "日报 t: 1 rows"
    );
}

#[test]
fn server_errors_are_retryable_and_a_task_can_use_its_own_robot() {
    let fake = FakeRobots::start(Settings::default());
    let channels = format!(
        "  ding: {{ type: dingtalk, webhook: \"{}?access_token=not-this-one\", secret: SECnot-this-either }}\n",
        fake.base() + "/robot/send"
    );
    // The channel's own robot does not exist; the task names the right one, with the
    // token and secret from the environment.
    let notify = "[{ channel: ding, webhook: '${FERRY_TEST_DING_URL}', secret: '${FERRY_TEST_DING_SECRET}' }]";
    let p = project(&channels, notify);
    let run = |p: &Project| {
        let out = std::process::Command::new(crate::support::FERRY)
            .current_dir(p.path())
            .args(["--config", "config.yaml", "run", "t", "--json"])
            .env("FERRY_TEST_DING_URL", fake.dingtalk_webhook())
            .env("FERRY_TEST_DING_SECRET", "SECdingtalk-secret-0001")
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", describe(&out)))
    };
    // A 502 for every attempt of the run: the delivery stays pending for a later retry.
    for _ in 0..3 {
        fake.script(502, "bad gateway");
    }
    let json = run(&p);
    let d = delivery(&json, 0);
    assert_eq!(d["status"], "pending", "{json}");
    assert_eq!(d["retryable"], true, "{json}");
    assert_eq!(d["attempts"], 3, "{json}");
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .starts_with("channel `ding`: DingTalk answered HTTP 502 Bad Gateway"),
        "{d}"
    );
    let json = run(&p);
    assert_eq!(delivery(&json, 0)["status"], "sent", "{json}");
    assert!(
        fake.received()
            .iter()
            .all(|r| !r.query.iter().any(|(_, v)| v == "not-this-one"))
    );
}

/// Regression (issue 11): DingTalk's 130101 "send too fast" pause lived in process memory,
/// so the next process posted into it at once. It is kept in the run store: a second
/// `ferry run` within the ten minutes does not call the robot, and says why.
#[test]
fn a_throttled_robot_stays_paused_for_the_next_process() {
    let fake = FakeRobots::start(Settings::default());
    let channels = format!(
        "  ding: {{ type: dingtalk, webhook: \"{}\", secret: SECdingtalk-secret-0001 }}\n",
        fake.dingtalk_webhook()
    );
    let p = project(&channels, "[ding]");
    fake.script(
        200,
        r#"{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#,
    );
    let json = p.run_json("t", &[], 3);
    let d = delivery(&json, 0);
    assert_eq!(d["status"], "pending", "{json}");
    // The pause is longer than the run's retry budget: one attempt, the next one after
    // the pause.
    assert_eq!(d["attempts"], 1, "{json}");
    let error = d["error"].as_str().unwrap();
    assert!(error.contains("the robot is paused for 10m"), "{error}");
    let next: chrono::DateTime<chrono::Utc> =
        d["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(
        next - chrono::Utc::now() > chrono::Duration::minutes(9),
        "the retry waits for the pause: {json}"
    );
    assert_eq!(fake.received().len(), 1);
    // Another process, within the pause: the robot is left alone.
    let json = p.run_json("t", &[], 3);
    let d = delivery(&json, 0);
    assert_eq!(d["status"], "pending", "{json}");
    let error = d["error"].as_str().unwrap();
    assert!(
        error.contains("not sent: the robot is paused for another"),
        "{error}"
    );
    assert_eq!(fake.received().len(), 1, "no post during the pause");
}

#[test]
fn wecom_feishu_and_webhook_messages_follow_their_protocols() {
    let fake = FakeRobots::start(Settings::default());
    let channels = format!(
        "  wc: {{ type: wecom, webhook: \"{}\", mentions: [zhangsan], delivery: link }}\n  fs: {{ type: feishu, webhook: \"{}\", secret: feishu-secret-0001, mention_all: true }}\n  hook: {{ type: webhook, url: \"{}\", secret: webhook-secret-0001 }}\n  unsigned: {{ type: webhook, url: \"{}\" }}\n",
        fake.wecom_webhook(),
        fake.feishu_webhook(),
        fake.webhook_url(),
        fake.webhook_url(),
    );
    let p = project(&channels, "[wc, fs, hook, unsigned]");
    let out = p.ferry(&["run", "t", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        delivery(&json, 0)["receipt"],
        "WeCom accepted the message",
        "{json}"
    );
    assert_eq!(
        delivery(&json, 1)["receipt"],
        "Feishu accepted the message",
        "{json}"
    );
    assert_eq!(
        delivery(&json, 2)["receipt"],
        "the webhook answered HTTP 200 OK",
        "{json}"
    );
    let unsigned = delivery(&json, 3);
    assert_eq!(unsigned["retryable"], false, "{json}");
    assert!(
        unsigned["error"]
            .as_str()
            .unwrap()
            .starts_with("channel `unsigned`: the webhook answered HTTP 401 Unauthorized"),
        "{unsigned}"
    );
    // Channels are sent concurrently: find each request by its endpoint.
    let got = fake.received();
    let find = |f: &dyn Fn(&crate::fake_robots::Received) -> bool| {
        got.iter()
            .find(|r| f(r))
            .unwrap_or_else(|| panic!("{got:#?}"))
            .clone()
    };
    let wecom = find(&|r| r.path == "/cgi-bin/webhook/send").json();
    let content = wecom["markdown"]["content"].as_str().unwrap();
    assert!(content.starts_with("**[ferry] t succeeded: 1 rows**\n\n### t: succeeded"));
    assert!(content.ends_with(" <@zhangsan>"), "{content}");
    let feishu = find(&|r| r.path.starts_with("/open-apis/")).json();
    assert_eq!(feishu["msg_type"], "interactive");
    assert_eq!(
        feishu["card"]["header"]["title"]["content"],
        "[ferry] t succeeded: 1 rows"
    );
    assert!(
        feishu["card"]["elements"][0]["content"]
            .as_str()
            .unwrap()
            .ends_with("\n<at id=all></at>")
    );
    let signed = find(&|r| r.path == "/hooks/ferry" && r.header("X-Ferry-Signature").is_some());
    let hook = signed.json();
    assert_eq!(hook["title"], "[ferry] t succeeded: 1 rows");
    assert!(hook["link"].is_null());
    assert!(
        signed
            .header("X-Ferry-Signature")
            .unwrap()
            .starts_with("v1=")
    );
}

#[test]
fn a_robot_never_gets_more_than_its_rate_limit() {
    // 22 notify entries for one DingTalk robot in one run: the first 20 go out at once,
    // the last two wait for the rolling minute instead of being throttled (130101).
    let fake = FakeRobots::start(Settings::default());
    let channels = format!(
        "  ding: {{ type: dingtalk, webhook: \"{}\", secret: SECdingtalk-secret-0001 }}\n",
        fake.dingtalk_webhook()
    );
    let notify = format!("[{}]", vec!["ding"; 22].join(", "));
    let p = project(&channels, &notify);
    let started = Instant::now();
    let json = p.run_json("t", &[], 0);
    let took = started.elapsed();
    let deliveries = json["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 22);
    assert!(deliveries.iter().all(|d| d["status"] == "sent"), "{json}");
    let got = fake.received();
    assert_eq!(got.len(), 22);
    assert!(
        got.iter().all(|r| r.answer.1.contains("\"errcode\":0")),
        "{got:#?}"
    );
    assert!(took >= Duration::from_secs(55), "took {took:?}");
}

#[test]
fn messages_carry_the_signed_download_link() {
    let fake = FakeRobots::start(Settings::default());
    let channels = format!(
        "  ding: {{ type: dingtalk, webhook: \"{}\", secret: SECdingtalk-secret-0001 }}\n",
        fake.dingtalk_webhook()
    );
    let p = project(&channels, "[ding, box]");
    with_links(&p);
    let json = p.run_json("t", &[], 0);
    assert!(
        json["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "sent"),
        "{json}"
    );
    let run_id = json["run_id"].as_str().unwrap();
    // The link that `ferry link` prints names the same file id.
    let out = p.ferry(&["link", run_id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let fresh: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fresh_url = fresh["links"][0]["url"].as_str().unwrap().to_string();
    let file_part = fresh_url.split('?').next().unwrap();
    assert!(
        file_part.starts_with("https://files.example.test/ferry/d/")
            && file_part.ends_with("/robots.csv"),
        "{fresh_url}"
    );
    // DingTalk: an actionCard whose button is the link.
    let body = fake.received()[0].json();
    assert_eq!(body["msgtype"], "actionCard", "{body}");
    let url = body["actionCard"]["singleURL"].as_str().unwrap();
    assert_eq!(url.split('?').next().unwrap(), file_part);
    assert!(url.contains("?exp=") && url.contains("&sig="), "{url}");
    // The outbox message (the report template) shows it too.
    let outbox = p.files("outbox");
    let msg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("outbox").join(&outbox[0])).unwrap(),
    )
    .unwrap();
    assert_eq!(msg["link"], url);
    assert!(
        msg["body"]
            .as_str()
            .unwrap()
            .contains(&format!("- Download: {url}")),
        "{msg}"
    );
}

#[test]
fn dingtalk_mentions_are_kept_with_a_download_link() {
    // An actionCard would drop `at`: with mentions the link goes into a markdown message.
    let fake = FakeRobots::start(Settings::default());
    let channels = format!(
        "  ding: {{ type: dingtalk, webhook: \"{}\", secret: SECdingtalk-secret-0001, mentions: ['13800000000'] }}\n",
        fake.dingtalk_webhook()
    );
    let p = project(&channels, "[ding]");
    with_links(&p);
    let json = p.run_json("t", &[], 0);
    assert_eq!(delivery(&json, 0)["status"], "sent", "{json}");
    let got = &fake.received()[0];
    assert_eq!(got.dingtalk_mentions(), ["13800000000"], "{}", got.json());
    let text = got.json()["markdown"]["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("](https://files.example.test/ferry/d/") && text.contains("&sig="),
        "{text}"
    );
}

#[test]
fn channels_are_listed_without_secrets_and_can_be_tested() {
    let fake = FakeRobots::start(Settings::default());
    let channels = format!(
        "  ding: {{ type: dingtalk, webhook: \"{}\", secret: SECdingtalk-secret-0001, mentions: ['13800000000'] }}\n  wrongsecret: {{ type: dingtalk, webhook: \"{}\", secret: SECnot-the-secret }}\n",
        fake.dingtalk_webhook(),
        fake.dingtalk_webhook()
    );
    let p = project(&channels, "[ding]");
    let out = p.ferry(&["channels"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = crate::support::stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let port = format!(
        "http://127.0.0.1:{}/robot/send?access_token=***,",
        fake.port
    );
    assert_eq!(rows[0], ["NAME", "TYPE", "WHERE", "TASKS"]);
    // The outbox row shows its folder; three of the fixture's tasks use it.
    assert!(
        rows.iter()
            .any(|r| r[0] == "box" && r[1] == "outbox" && r[2].ends_with("outbox") && r[3] == "3"),
        "{text}"
    );
    assert!(
        rows.contains(&vec!["ding", "dingtalk", port.as_str(), "signed", "1"]),
        "{text}"
    );
    assert!(
        !text.contains("dt-token-0001") && !text.contains("SEC"),
        "{text}"
    );

    let out = p.ferry(&["channels", "test", "ding"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(
        crate::support::stdout(&out).trim(),
        "ok   ding (dingtalk): DingTalk accepted the message"
    );
    let body = fake.received()[0].json();
    assert_eq!(
        body["markdown"]["title"],
        "[ferry] test message from channel ding"
    );
    assert!(
        body["markdown"]["text"]
            .as_str()
            .unwrap()
            .ends_with("@13800000000")
    );

    let out = p.ferry(&["channels", "test", "wrongsecret"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        crate::support::stdout(&out).starts_with(
            "FAIL wrongsecret (dingtalk): channel `wrongsecret`: DingTalk errcode 310000: sign not match"
        ),
        "{}",
        describe(&out)
    );
    assert!(!describe(&out).contains("SECnot-the-secret"));

    let out = p.ferry(&["channels", "test", "dnig"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("error: unknown channel `dnig` (did you mean `ding`?)"),
        "{}",
        describe(&out)
    );
}

#[test]
fn wecom_sends_the_result_files_themselves() {
    use sha2::{Digest, Sha256};
    let fake = FakeRobots::start(Settings::default());
    let channels = format!(
        "  wc: {{ type: wecom, webhook: \"{}\" }}\n  wclink: {{ type: wecom, webhook: \"{}\", delivery: link }}\n",
        fake.wecom_webhook(),
        fake.wecom_webhook()
    );
    let p = project(&channels, "[wc, wclink]");
    p.write(
        "tasks/t.yaml",
        "schedule: '0 6 * * *'\nsource: db\nquery: SELECT 1 AS n, '销售' AS name\noutput: { format: csv, file_name: 销售明细 }\nnotify: [wc, wclink]\n",
    );
    let json = p.run_json("t", &[], 0);
    assert_eq!(
        delivery(&json, 0)["receipt"],
        "WeCom accepted the message and 1 file(s)",
        "{json}"
    );
    assert_eq!(delivery(&json, 1)["receipt"], "WeCom accepted the message");
    // markdown, upload, file message for `wc`; markdown only for `wclink`.
    let got = fake.received();
    let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/cgi-bin/webhook/send",
            "/cgi-bin/webhook/upload_media",
            "/cgi-bin/webhook/send",
            "/cgi-bin/webhook/send"
        ]
    );
    assert_eq!(got[2].json()["msgtype"], "file");
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1);
    let (name, bytes) = &uploads[0];
    assert_eq!(name, "销售明细.csv");
    assert_eq!(
        hex::encode(Sha256::digest(bytes)),
        json["files"][0]["sha256"].as_str().unwrap()
    );
}

#[test]
fn wecom_files_over_20_mb_go_as_a_note_in_auto_and_fail_in_attach() {
    let fake = FakeRobots::start(Settings::default());
    let channels = format!(
        "  wc: {{ type: wecom, webhook: \"{}\" }}\n  wcattach: {{ type: wecom, webhook: \"{}\", delivery: attach }}\n",
        fake.wecom_webhook(),
        fake.wecom_webhook()
    );
    let p = project(&channels, "[wc, wcattach]");
    // About 22 MB of CSV.
    p.write(
        "tasks/t.yaml",
        "schedule: '0 6 * * *'\nsource: db\nquery: |\n  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 220000)\n  SELECT x, printf('%0100d', x) AS pad FROM c\noutput: { format: csv, file_name: big }\nnotify: [wc, wcattach]\n",
    );
    let json = p.run_json("t", &[], 3);
    assert!(
        json["files"][0]["bytes"].as_u64().unwrap() > 20 * 1024 * 1024,
        "{json}"
    );
    assert_eq!(
        delivery(&json, 0)["receipt"],
        "WeCom accepted the message",
        "{json}"
    );
    let content = fake.received()[0].json()["markdown"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        content.contains("Files not sent: big.csv (") && content.contains("over WeCom's 20 MB limit; ask the task's owners for them (no download links are configured)."),
        "{content}"
    );
    let attach = delivery(&json, 1);
    assert_eq!(attach["status"], "failed", "{json}");
    assert_eq!(attach["retryable"], false);
    assert!(
        attach["error"].as_str().unwrap().contains("big.csv is 2")
            && attach["error"]
                .as_str()
                .unwrap()
                .contains("over WeCom's 20 MB file limit"),
        "{attach}"
    );
    assert!(fake.uploads().is_empty());
}
