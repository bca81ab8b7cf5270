//! The notifier conformance suite (issue 11): one list of cases, run against every channel
//! kind through the real `ferry` binary — the outbox, email through the real
//! Postfix→Dovecot path (behind the fault-injecting [`SmtpProxy`], read back over IMAP),
//! and DingTalk, WeCom, Feishu and the webhook through the loopback fakes of
//! `fake_robots`, which check the documented signatures.
//!
//! Each channel kind implements [`Channel`] once: its `config.yaml` entry, how to make its
//! next attempts fail in a way worth retrying, how to make the server refuse for good, and
//! how to read back what arrived. `suite!` makes one `#[test]` per (channel, case):
//! `notifier_conformance::<channel>::<case>`.
//!
//! | case                                   | outbox | email | dingtalk | wecom | feishu | webhook |
//! |----------------------------------------|--------|-------|----------|-------|--------|---------|
//! | [`a_message_arrives_once_and_is_recorded_sent`] | yes | yes | yes | yes | yes | yes |
//! | [`a_retryable_failure_waits_and_the_worker_delivers_it_once`] | n/a¹ | yes | yes | yes | yes | yes |
//! | [`a_refusal_is_failed_not_retried_and_names_no_secret`] | yes² | yes | yes | yes | yes | yes |
//! | [`channels_test_delivers_through_the_same_channel`] | yes | yes | yes | yes | yes | yes |
//! | [`an_unrenderable_message_fails_without_contacting_the_server`] | yes | yes | yes | yes | yes | yes |
//!
//! ¹ The outbox has no failure worth retrying: every I/O error writing the folder is
//! permanent (`src/notify/outbox.rs`), so there is nothing to fail "retryably" on demand.
//! ² A read-only folder is no refusal under root (the tests run as root): the outbox's
//! `dir` is a regular file instead, which `create_dir_all` cannot get past.
//!
//! How each channel fails: robots and the webhook get a scripted HTTP 502 (retryable) and
//! a wrong signing secret (DingTalk `310000`, Feishu `19021`, webhook `401`) or, for WeCom,
//! which signs nothing, a wrong key (`93000`); email gets `451` to `RCPT TO` from the proxy
//! (retryable) and Postfix's own `550` for `rejected@example.test`. The test SMTP port
//! takes no AUTH, so the email channel has no password to leak here (`email.rs` checks the
//! AUTH path).
//!
//! Email needs `scripts/test-services.sh`: without it the email cases print a note and
//! pass, except under `CI=true`, where they fail ([`crate::email::mail`]).

use crate::email::{Mail, mail, plain_channel};
use crate::fake_robots::{FakeRobots, Settings};
use crate::smtp_proxy::{Fault, SmtpProxy};
use crate::support::{Daemon, Project, describe, stdout};

/// The task every case runs; its name is what the messages must carry.
const TASK: &str = "conform_t";

/// One channel kind, named `ch` in config.yaml, and the server behind it.
trait Channel {
    /// The kind as `ferry channels` names it.
    fn kind(&self) -> &'static str;
    /// The `channels:` entry (YAML lines) of `ch`, delivering.
    fn config(&self) -> String;
    /// A refusal for good: the `channels:` entry and the task's `notify` (YAML flow).
    fn refusing(&self) -> (String, String);
    /// Makes the next `n` attempts fail in a way worth retrying (then deliver again).
    fn fail_next(&self, n: usize);
    /// How many requests (posts, SMTP connections, files written) reached the server.
    fn requests(&self, p: &Project) -> usize;
    /// Each copy that arrived of the message with this receipt: its subject and text.
    /// With an empty receipt: every message that arrived at all (email: each transaction
    /// the proxy relayed with `DATA`), to show that nothing did.
    fn arrived(&self, p: &Project, receipt: &str) -> Vec<String>;
    /// Whether `receipt` is what the channel answers for a message of run `run_id`.
    fn receipt_fits(&self, receipt: &str, run_id: &str) -> bool;
    /// The credentials in the channel's config, which no output may show.
    fn secrets(&self) -> Vec<String>;
    /// Whether a refused attempt is seen by the server ([`Channel::requests`]); a folder
    /// that cannot be written keeps no trace.
    fn sees_refusals(&self) -> bool {
        true
    }
}

/// The fixture project with `channel` added under `channels:` and the task `conform_t`
/// notifying `notify` (YAML flow).
fn project(channel: &str, notify: &str) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    // The fixture's config ends with its `channels:`.
    p.write("config.yaml", &format!("{}\n{channel}", config.trim_end()));
    p.write(
        &format!("tasks/{TASK}.yaml"),
        &format!(
            "schedule: '0 6 1 1 *'\nsource: db\nquery: SELECT 1 AS n, '销售' AS name\n\
             output: {{ format: csv, file_name: conform }}\nnotify: {notify}\n"
        ),
    );
    p
}

/// `ferry run conform_t --json`: the exit code and the run.
fn run(p: &Project) -> (i32, serde_json::Value, String) {
    let out = p.ferry(&["run", TASK, "--json"]);
    let json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    (out.status.code().unwrap_or(-1), json, describe(&out))
}

/// The run's only delivery.
fn only_delivery(json: &serde_json::Value) -> serde_json::Value {
    let d = json["deliveries"]
        .as_array()
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(d.len(), 1, "{json}");
    d[0].clone()
}

/// The recorded deliveries of run `run_id` (`ferry history --json`).
fn recorded(p: &Project, run_id: &str) -> serde_json::Value {
    let out = p.ferry(&["history", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let runs: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == run_id)
        .unwrap_or_else(|| panic!("run {run_id} not in history: {runs}"));
    only_delivery(run)
}

fn assert_no_secret(h: &dyn Channel, shown: &str) {
    for secret in h.secrets() {
        assert!(!shown.contains(&secret), "{secret} shown: {shown}");
    }
}

// ---------------------------------------------------------------------------------------
// The cases.

/// A run's message arrives exactly once, with the task's name and the run's status, and
/// the ledger records it `sent` with the channel's receipt.
fn a_message_arrives_once_and_is_recorded_sent(h: &dyn Channel) {
    let p = project(&h.config(), "[ch]");
    let (code, json, all) = run(&p);
    assert_eq!(code, 0, "{all}");
    let run_id = json["run_id"].as_str().unwrap();
    let d = recorded(&p, run_id);
    assert_eq!(d, only_delivery(&json), "history and the run agree");
    assert_eq!(d["status"], "sent", "{json}");
    assert_eq!(d["attempts"], 1, "{json}");
    let receipt = d["receipt"].as_str().unwrap_or_else(|| panic!("{d}"));
    assert!(h.receipt_fits(receipt, run_id), "receipt {receipt:?}");
    let copies = h.arrived(&p, receipt);
    assert_eq!(copies.len(), 1, "{copies:#?}");
    assert!(copies[0].contains(TASK), "{}", copies[0]);
    assert!(copies[0].contains("succeeded"), "{}", copies[0]);
    assert_eq!(h.requests(&p), 1, "one request reached the server");
    assert_no_secret(h, &all);
}

/// A retryable failure leaves the delivery `pending`, `retryable`, with its next attempt
/// time; `ferry serve`'s delivery worker (in process, its clock moved past that time)
/// then delivers it, once.
fn a_retryable_failure_waits_and_the_worker_delivers_it_once(h: &dyn Channel) {
    let p = project(&h.config(), "[ch]");
    // Every attempt of the run fails.
    h.fail_next(3);
    let (_, json, all) = run(&p);
    let d = only_delivery(&json);
    assert_eq!(d["status"], "pending", "{all}");
    assert_eq!(d["retryable"], true, "{json}");
    assert_eq!(d["attempts"], 3, "{json}");
    assert!(
        d["error"].as_str().unwrap().starts_with("channel `ch`: "),
        "{d}"
    );
    let next: chrono::DateTime<chrono::Utc> = d["next_attempt_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no next attempt: {d}"))
        .parse()
        .unwrap();
    assert!(next > chrono::Utc::now(), "{d}");
    assert_eq!(h.requests(&p), 3, "three attempts reached the server");
    assert!(h.arrived_nothing(&p), "nothing arrived yet");
    assert_no_secret(h, &all);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut daemon = Daemon::start(&p, next + chrono::Duration::seconds(1)).await;
        daemon
            .wait_for(
                "a delivery pass that attempts the delivery",
                |e| matches!(e, ferry::daemon::Event::DeliveryPass { attempted, .. } if *attempted > 0),
            )
            .await;
        daemon.stop().await;
    });
    let run_id = json["run_id"].as_str().unwrap();
    let d = recorded(&p, run_id);
    assert_eq!(d["status"], "sent", "{d}");
    assert_eq!(d["attempts"], 4, "{d}");
    let receipt = d["receipt"].as_str().unwrap();
    assert!(h.receipt_fits(receipt, run_id), "receipt {receipt:?}");
    let copies = h.arrived(&p, receipt);
    assert_eq!(copies.len(), 1, "delivered once: {copies:#?}");
    assert!(copies[0].contains(TASK), "{}", copies[0]);
    assert_eq!(h.requests(&p), 4, "one more request, by the worker");
}

/// A refusal for good is `failed` after one attempt (no second request reaches the
/// server), and its error names the channel and no secret.
fn a_refusal_is_failed_not_retried_and_names_no_secret(h: &dyn Channel) {
    let (channel, notify) = h.refusing();
    let p = project(&channel, &notify);
    let (code, json, all) = run(&p);
    assert_eq!(code, 3, "the export succeeded, a delivery failed: {all}");
    assert_eq!(json["status"], "succeeded", "{json}");
    let d = recorded(&p, json["run_id"].as_str().unwrap());
    assert_eq!(d["status"], "failed", "{json}");
    assert_eq!(d["retryable"], false, "{json}");
    assert_eq!(d["attempts"], 1, "{json}");
    assert_eq!(d["next_attempt_at"], serde_json::Value::Null, "{json}");
    let error = d["error"].as_str().unwrap();
    assert!(error.starts_with("channel `ch`: "), "{error}");
    let seen = usize::from(h.sees_refusals());
    assert_eq!(h.requests(&p), seen, "not retried");
    assert!(h.arrived_nothing(&p), "nothing arrived");
    let history = stdout(&p.ferry(&["history", "--json"]));
    assert_no_secret(h, &format!("{all}\n{history}"));
}

/// `ferry channels test ch` sends a test message through the same channel.
fn channels_test_delivers_through_the_same_channel(h: &dyn Channel) {
    let p = project(&h.config(), "[ch]");
    let out = p.ferry(&["channels", "test", "ch"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let line = stdout(&out);
    let prefix = format!("ok   ch ({}): ", h.kind());
    let receipt = line
        .trim()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{line}"));
    let copies = h.arrived(&p, receipt);
    assert_eq!(copies.len(), 1, "{copies:#?}");
    assert!(copies[0].contains("ferry test message"), "{}", copies[0]);
    assert_eq!(h.requests(&p), 1);
    assert_no_secret(h, &describe(&out));
}

/// A message whose template fails to render is recorded `failed`, and the server is not
/// contacted. Regression: the run used to show no delivery at all (`deliveries: []`, exit 0,
/// no owner alert) when every message failed to render, though the ledger had it `failed`.
fn an_unrenderable_message_fails_without_contacting_the_server(h: &dyn Channel) {
    let p = project(&h.config(), "[{ channel: ch, template: broken }]");
    // Parses, fails when rendered: integer division by zero.
    p.write(
        "templates/broken.md.j2",
        "{{ task_name }}: {{ rows_count // 0 }}",
    );
    p.write("templates/broken.subject.j2", "{{ task_name }}");
    let (code, json, all) = run(&p);
    assert_eq!(code, 3, "{all}");
    let d = recorded(&p, json["run_id"].as_str().unwrap());
    assert_eq!(d["status"], "failed", "{json}");
    assert_eq!(d["retryable"], false, "{json}");
    assert_eq!(d["attempts"], 0, "{json}");
    let error = d["error"].as_str().unwrap();
    assert!(error.contains("template `broken`"), "{error}");
    assert_eq!(h.requests(&p), 0, "the server was not contacted");
}

// ---------------------------------------------------------------------------------------
// The channels.

impl dyn Channel + '_ {
    /// Nothing arrived at all (checked once the attempts are recorded).
    fn arrived_nothing(&self, p: &Project) -> bool {
        self.arrived(p, "").is_empty()
    }
}

/// The outbox: files in a folder.
struct Outbox;

impl Channel for Outbox {
    fn kind(&self) -> &'static str {
        "outbox"
    }
    fn config(&self) -> String {
        "  ch: { type: outbox, dir: conform_box }\n".into()
    }
    fn refusing(&self) -> (String, String) {
        // A regular file where the folder should be (the task's own file).
        (
            "  ch: { type: outbox, dir: tasks/conform_t.yaml }\n".into(),
            "[ch]".into(),
        )
    }
    fn fail_next(&self, _n: usize) {
        unreachable!("the outbox has no retryable failure")
    }
    fn requests(&self, p: &Project) -> usize {
        p.files("conform_box").len()
    }
    fn arrived(&self, p: &Project, _receipt: &str) -> Vec<String> {
        p.files("conform_box")
            .iter()
            .filter(|f| f.ends_with(".json"))
            .map(|f| std::fs::read_to_string(p.path().join("conform_box").join(f)).unwrap())
            .collect()
    }
    fn receipt_fits(&self, receipt: &str, run_id: &str) -> bool {
        receipt.starts_with("written to ")
            && receipt.ends_with(&format!("conform_box/{TASK}_{run_id}_ch.json"))
    }
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }
    fn sees_refusals(&self) -> bool {
        false
    }
}

/// Email: Postfix→Dovecot behind the fault proxy; alice's mailbox over IMAP.
struct Email {
    mail: Mail,
    proxy: SmtpProxy,
}

impl Email {
    fn start() -> Option<Email> {
        let mail = mail()?;
        let proxy = SmtpProxy::start(mail.smtp_port);
        Some(Email { mail, proxy })
    }
}

impl Channel for Email {
    fn kind(&self) -> &'static str {
        "email"
    }
    fn config(&self) -> String {
        plain_channel("ch", self.proxy.port)
    }
    fn refusing(&self) -> (String, String) {
        (
            self.config(),
            "[{ channel: ch, to: [rejected@example.test] }]".into(),
        )
    }
    fn fail_next(&self, n: usize) {
        self.proxy.script(&vec![Fault::Rcpt451; n]);
    }
    fn requests(&self, _p: &Project) -> usize {
        self.proxy.connections().len()
    }
    fn arrived(&self, _p: &Project, receipt: &str) -> Vec<String> {
        // Only a receipt names a message; without one, whatever alice got from this
        // test's proxy was relayed through a `DATA` the proxy saw.
        if receipt.is_empty() {
            let relayed = self
                .proxy
                .connections()
                .iter()
                .filter(|c| c.fault == Fault::Relay && c.commands.iter().any(|l| l == "DATA"))
                .count();
            return vec![String::new(); relayed];
        }
        self.mail.wait_for("alice@example.test", receipt);
        self.mail
            .wait_copies("alice@example.test", receipt, 1)
            .iter()
            .map(|raw| {
                let m = mail_parser::MessageParser::default().parse(raw).unwrap();
                format!(
                    "{}\n{}",
                    m.subject().unwrap_or_default(),
                    m.body_text(0).unwrap_or_default()
                )
            })
            .collect()
    }
    fn receipt_fits(&self, receipt: &str, run_id: &str) -> bool {
        receipt == format!("<{run_id}.ch@example.test>")
    }
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Which robot of the fakes.
#[derive(Clone, Copy, PartialEq)]
enum Service {
    DingTalk,
    WeCom,
    Feishu,
    Webhook,
}

/// A chat robot or the webhook, on the loopback fakes.
struct Robot {
    service: Service,
    fake: FakeRobots,
    settings: Settings,
}

impl Robot {
    fn start(service: Service) -> Robot {
        let settings = Settings::default();
        Robot {
            service,
            fake: FakeRobots::start(settings.clone()),
            settings,
        }
    }

    fn entry(&self, secret: &str, wecom_key: &str) -> String {
        let f = &self.fake;
        match self.service {
            Service::DingTalk => format!(
                "  ch: {{ type: dingtalk, webhook: \"{}\", secret: {secret} }}\n",
                f.dingtalk_webhook()
            ),
            Service::WeCom => format!(
                "  ch: {{ type: wecom, webhook: \"{}/cgi-bin/webhook/send?key={wecom_key}\" }}\n",
                f.base()
            ),
            Service::Feishu => format!(
                "  ch: {{ type: feishu, webhook: \"{}\", secret: {secret} }}\n",
                f.feishu_webhook()
            ),
            Service::Webhook => format!(
                "  ch: {{ type: webhook, url: \"{}\", secret: {secret} }}\n",
                f.webhook_url()
            ),
        }
    }

    fn secret(&self) -> &str {
        match self.service {
            Service::DingTalk => &self.settings.dingtalk_secret,
            Service::WeCom => "",
            Service::Feishu => &self.settings.feishu_secret,
            Service::Webhook => &self.settings.webhook_secret,
        }
    }

    /// Whether the fake took this request as a message (not an upload, not refused).
    fn accepted(r: &crate::fake_robots::Received) -> bool {
        if r.answer.0 != 200 || r.path.ends_with("/upload_media") {
            return false;
        }
        let v: serde_json::Value = serde_json::from_str(&r.answer.1).unwrap_or_default();
        v.get("errcode").or(v.get("code")).is_none_or(|c| c == 0)
    }
}

impl Channel for Robot {
    fn kind(&self) -> &'static str {
        match self.service {
            Service::DingTalk => "dingtalk",
            Service::WeCom => "wecom",
            Service::Feishu => "feishu",
            Service::Webhook => "webhook",
        }
    }
    fn config(&self) -> String {
        self.entry(self.secret(), &self.settings.wecom_key)
    }
    fn refusing(&self) -> (String, String) {
        // A wrong signing secret; WeCom signs nothing: a wrong key.
        (
            self.entry("SECwrong-secret-9999", "wrong-key-9999"),
            "[ch]".into(),
        )
    }
    fn fail_next(&self, n: usize) {
        for _ in 0..n {
            self.fake.script(502, "bad gateway");
        }
    }
    fn requests(&self, _p: &Project) -> usize {
        // WeCom's file upload and file message belong to the one message post before them.
        self.fake
            .received()
            .iter()
            .filter(|r| !r.path.ends_with("/upload_media") && r.json()["msgtype"] != "file")
            .count()
    }
    fn arrived(&self, _p: &Project, _receipt: &str) -> Vec<String> {
        self.fake
            .received()
            .iter()
            .filter(|r| Robot::accepted(r) && r.json()["msgtype"] != "file")
            .map(|r| r.json().to_string())
            .collect()
    }
    fn receipt_fits(&self, receipt: &str, _run_id: &str) -> bool {
        match self.service {
            Service::DingTalk => receipt == "DingTalk accepted the message",
            // The run's CSV goes too; `channels test` has no file.
            Service::WeCom => receipt.starts_with("WeCom accepted the message"),
            Service::Feishu => receipt == "Feishu accepted the message",
            Service::Webhook => receipt == "the webhook answered HTTP 200 OK",
        }
    }
    fn secrets(&self) -> Vec<String> {
        let s = &self.settings;
        let mut all = vec!["SECwrong-secret-9999".to_string(), "wrong-key-9999".into()];
        all.extend(match self.service {
            Service::DingTalk => vec![s.dingtalk_token.clone(), s.dingtalk_secret.clone()],
            Service::WeCom => vec![s.wecom_key.clone()],
            Service::Feishu => vec![s.feishu_token.clone(), s.feishu_secret.clone()],
            Service::Webhook => vec![s.webhook_secret.clone()],
        });
        all
    }
}

// ---------------------------------------------------------------------------------------
// One test per (channel, case).

/// `suite!(module => harness; case, …)`: a module of `#[test]`s, each making a fresh
/// harness (`None`: the service is missing and the case is skipped; under `CI=true` the
/// harness fails instead).
macro_rules! suite {
    ($channel:ident => $make:expr; $($case:ident),+ $(,)?) => {
        mod $channel {
            use super::*;
            $(
                #[test]
                fn $case() {
                    let harness: Option<Box<dyn Channel>> = $make;
                    let Some(h) = harness else { return };
                    super::$case(&*h);
                }
            )+
        }
    };
}

/// The cases every channel passes; the outbox has no retryable failure (see the table).
macro_rules! every_channel {
    ($($channel:ident => $make:expr),+ $(,)?) => {
        $(
            suite!($channel => $make;
                a_message_arrives_once_and_is_recorded_sent,
                a_retryable_failure_waits_and_the_worker_delivers_it_once,
                a_refusal_is_failed_not_retried_and_names_no_secret,
                channels_test_delivers_through_the_same_channel,
                an_unrenderable_message_fails_without_contacting_the_server,
            );
        )+
    };
}

suite!(outbox => Some(Box::new(Outbox));
    a_message_arrives_once_and_is_recorded_sent,
    a_refusal_is_failed_not_retried_and_names_no_secret,
    channels_test_delivers_through_the_same_channel,
    an_unrenderable_message_fails_without_contacting_the_server,
);

every_channel!(
    email => Email::start().map(|e| Box::new(e) as Box<dyn Channel>),
    dingtalk => Some(Box::new(Robot::start(Service::DingTalk))),
    wecom => Some(Box::new(Robot::start(Service::WeCom))),
    feishu => Some(Box::new(Robot::start(Service::Feishu))),
    webhook => Some(Box::new(Robot::start(Service::Webhook))),
);
