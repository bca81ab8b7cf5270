//! Email delivery reliability against the real Postfix + Dovecot, with the fault-injecting
//! proxy ([`crate::smtp_proxy`]) in front of Postfix: retries with backoff (reliability
//! case 17), the per-recipient ledger (each `RCPT TO` answered on its own), the ambiguity
//! window after the final `.` (case 22), a zip split into parts with a manifest, and a
//! delivery waiting in backoff when `ferry serve` is killed (case 20). Every message is
//! read back over IMAP and counted by its Message-ID.
//!
//! Needs `scripts/test-services.sh` (skipped with a note otherwise, failed under
//! `CI=true`, like the other email tests).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mail_parser::{MessageParser, MimeHeaders};

use crate::email::{mail, plain_channel, project, recorded_deliveries, sha256, transmitted_bytes};
use crate::smtp_proxy::{Fault, SmtpProxy};
use crate::support::{
    Project, describe, history, log_lines, only_task, serve, terminate, wait_log_lines, wait_logged,
};

const SMALL_TASK: &str =
    "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT id FROM t\noutput: { format: csv }\n";

fn instant(v: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// The `RCPT TO` addresses the client sent on one proxied connection.
fn rcpts(c: &crate::smtp_proxy::Connection) -> Vec<String> {
    c.commands
        .iter()
        .filter_map(|l| l.strip_prefix("RCPT TO:<"))
        .map(|l| l.trim_end_matches('>').to_string())
        .collect()
}

/// How many messages could have reached Postfix whole: the `DATA` commands on the
/// connections the proxy relayed to the end (a `Data451` one never passes the final `.`
/// on, a `Greet421` one never reaches Postfix). With the client done, this is every
/// message Postfix can deliver, so "one copy arrived and at most one was relayed" proves
/// "exactly one copy" without waiting for a second one that does not come.
fn messages_relayed(proxy: &SmtpProxy) -> usize {
    proxy
        .connections()
        .iter()
        .filter(|c| matches!(c.fault, Fault::Relay | Fault::DropAfterDot))
        .map(|c| {
            c.commands
                .iter()
                .filter(|l| l.eq_ignore_ascii_case("DATA"))
                .count()
        })
        .sum()
}

fn recipient<'a>(d: &'a serde_json::Value, part: u64, address: &str) -> &'a serde_json::Value {
    d["recipients"]
        .as_array()
        .unwrap_or_else(|| panic!("no recipients: {d}"))
        .iter()
        .find(|r| r["part"] == part && r["recipient"] == address)
        .unwrap_or_else(|| panic!("no recipient {address} (part {part}): {d}"))
}

#[test]
fn smtp_421_then_451_then_relayed_is_delivered_once_after_three_attempts() {
    let Some(m) = mail() else { return };
    let proxy = SmtpProxy::start(m.smtp_port);
    // 421 greeting; 451 to the end of the message (Postfix never gets the final `.`).
    proxy.script(&[Fault::Greet421, Fault::Data451, Fault::Relay]);
    let p = project(&plain_channel("mail", proxy.port));
    p.write("tasks/flaky.yaml", &format!("{SMALL_TASK}notify: [mail]\n"));
    let run = p.run_json("flaky", &[], 0);
    let d = &recorded_deliveries(&p, &run)[0];
    assert_eq!(d["status"], "sent", "{d}");
    assert_eq!(d["attempts"], 3, "{d}");
    assert_eq!(run["delivery"], "delivered", "{run}");
    let alice = recipient(d, 0, "alice@example.test");
    assert_eq!(alice["status"], "sent", "{d}");
    assert_eq!(alice["attempts"], 3, "{d}");
    assert!(alice["reply"].as_str().unwrap().starts_with("250"), "{d}");
    // Three attempts in the ledger, about 1 s and then 2 s apart (±10 % jitter, plus the
    // time an attempt takes on loopback): growing delays.
    let tried: Vec<DateTime<Utc>> = d["tried_at"]
        .as_array()
        .unwrap()
        .iter()
        .map(instant)
        .collect();
    assert_eq!(tried.len(), 3, "{d}");
    let gaps: Vec<i64> = tried
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    assert!((900..=1600).contains(&gaps[0]), "{gaps:?}");
    assert!((1800..=2700).contains(&gaps[1]), "{gaps:?}");
    assert!(gaps[1] > gaps[0], "{gaps:?}");
    let conns = proxy.connections();
    assert_eq!(
        conns.iter().map(|c| c.fault).collect::<Vec<_>>(),
        [Fault::Greet421, Fault::Data451, Fault::Relay]
    );
    // Delivered once: the one relayed transaction (the 451 one never reached Postfix).
    assert_eq!(messages_relayed(&proxy), 1, "{conns:#?}");
    let id = d["receipt"].as_str().unwrap();
    m.wait_for("alice@example.test", id);
}

#[test]
fn a_550_is_not_retried_fails_the_delivery_and_alerts_the_owners_once() {
    let Some(m) = mail() else { return };
    let proxy = SmtpProxy::start(m.smtp_port);
    let p = project(&plain_channel("mail", proxy.port));
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &format!(
            "{}alerts: {{ channel: oncall }}\n",
            config.replacen(
                "channels:\n",
                "channels:\n  oncall: { type: outbox, dir: alerts }\n",
                1
            )
        ),
    );
    for part in ["alert.md.j2", "alert.subject.j2"] {
        let text =
            std::fs::read_to_string(crate::support::repo().join("templates").join(part)).unwrap();
        p.write(&format!("templates/{part}"), &text);
    }
    p.write(
        "tasks/refused.yaml",
        &format!(
            "owners: [bob@example.test]\n{SMALL_TASK}notify:\n  - {{ channel: mail, to: [rejected@example.test] }}\n"
        ),
    );
    let run = p.run_json("refused", &[], 3);
    let d = &recorded_deliveries(&p, &run)[0];
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["retryable"], false, "{d}");
    assert_eq!(d["attempts"], 1, "{d}");
    assert_eq!(run["delivery"], "failed", "{run}");
    let r = recipient(d, 0, "rejected@example.test");
    assert_eq!(r["status"], "failed", "{d}");
    assert!(r["reply"].as_str().unwrap().contains("550"), "{d}");
    assert!(
        r["error"].as_str().unwrap().starts_with(&format!(
            "channel `mail`: SMTP server 127.0.0.1:{} (none)",
            proxy.port
        )),
        "{d}"
    );
    assert_eq!(proxy.connections().len(), 1, "no retry");
    let alerts = p.files("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = std::fs::read_to_string(p.path().join("alerts").join(&alerts[0])).unwrap();
    assert!(alert.contains("550"), "{alert}");
}

#[test]
fn each_recipient_has_its_own_state_and_only_the_waiting_one_is_retried() {
    let Some(m) = mail() else { return };
    // Postfix itself answers 550 for rejected@ and 451 for tempfail@; the proxy relays
    // and logs each envelope.
    let proxy = SmtpProxy::start(m.smtp_port);
    let p = project(&plain_channel("mail", proxy.port));
    p.write(
        "tasks/mixed.yaml",
        &format!(
            "{SMALL_TASK}notify:\n  - {{ channel: mail, to: [alice@example.test, rejected@example.test], cc: [tempfail@example.test] }}\n"
        ),
    );
    let run = p.run_json("mixed", &[], 3);
    let d = &recorded_deliveries(&p, &run)[0];
    assert_eq!(d["status"], "pending", "{d}");
    assert_eq!(d["attempts"], 3, "{d}");
    assert_eq!(d["retryable"], true, "{d}");
    assert_eq!(run["delivery"], "partially_delivered", "{run}");
    let alice = recipient(d, 0, "alice@example.test");
    assert_eq!(
        (alice["status"].as_str(), alice["attempts"].as_u64()),
        (Some("sent"), Some(1)),
        "{d}"
    );
    assert!(alice["sent_at"].is_string(), "{d}");
    let rejected = recipient(d, 0, "rejected@example.test");
    assert_eq!(
        (rejected["status"].as_str(), rejected["attempts"].as_u64()),
        (Some("failed"), Some(1)),
        "{d}"
    );
    assert!(rejected["reply"].as_str().unwrap().contains("550"), "{d}");
    let temp = recipient(d, 0, "tempfail@example.test");
    assert_eq!(
        (temp["status"].as_str(), temp["attempts"].as_u64()),
        (Some("pending"), Some(3)),
        "{d}"
    );
    assert!(temp["reply"].as_str().unwrap().contains("451"), "{d}");
    let error = d["error"].as_str().unwrap();
    assert!(
        error.contains("tempfail@example.test: ") && error.contains("451"),
        "{error}"
    );
    assert!(
        error.contains("rejected@example.test: ") && error.contains("550"),
        "{error}"
    );
    // The first envelope had all three; the retries only the one that waits.
    let conns = proxy.connections();
    assert_eq!(conns.len(), 3, "{conns:#?}");
    assert_eq!(
        rcpts(&conns[0]),
        [
            "alice@example.test",
            "rejected@example.test",
            "tempfail@example.test"
        ]
    );
    for c in &conns[1..] {
        assert_eq!(rcpts(c), ["tempfail@example.test"], "{conns:#?}");
    }
    // The owner alert (none configured here) aside, the run says what failed for whom.
    assert!(
        run["warnings"].to_string().contains("still pending"),
        "{run}"
    );
    // Alice has exactly one copy, also after the retries: she was only in the first
    // envelope (above), and that copy arrived.
    let id = d["receipt"].as_str().unwrap();
    m.wait_for("alice@example.test", id);
    // `ferry history` says who is missing.
    let out = p.ferry(&["history"]);
    let table = crate::support::stdout(&out);
    assert!(table.contains("partially_delivered"), "{}", describe(&out));
    assert!(
        table.contains("[mail: rejected@example.test failed, tempfail@example.test pending]"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_connection_lost_after_the_final_dot_is_retried_once_and_recorded_maybe_duplicate() {
    let Some(m) = mail() else { return };
    let proxy = SmtpProxy::start(m.smtp_port);
    proxy.script(&[Fault::DropAfterDot]);
    let p = project(&plain_channel("mail", proxy.port));
    p.write("tasks/lost.yaml", &format!("{SMALL_TASK}notify: [mail]\n"));
    let run = p.run_json("lost", &[], 0);
    let d = &recorded_deliveries(&p, &run)[0];
    assert_eq!(d["status"], "maybe_duplicate", "{d}");
    assert_eq!(d["attempts"], 2, "{d}");
    assert_eq!(run["delivery"], "delivered", "{run}");
    assert_eq!(
        recipient(d, 0, "alice@example.test")["status"],
        "maybe_duplicate",
        "{d}"
    );
    assert_eq!(proxy.connections().len(), 2);
    // Postfix accepted both: two copies, one Message-ID.
    let id = d["receipt"].as_str().unwrap();
    assert_eq!(
        id,
        format!("<{}.mail@example.test>", run["run_id"].as_str().unwrap())
    );
    let copies = m.wait_copies("alice@example.test", id, 2);
    assert_eq!(copies.len(), 2);
    for raw in &copies {
        let parsed = MessageParser::default().parse(raw).unwrap();
        assert_eq!(parsed.message_id(), Some(id.trim_matches(['<', '>'])));
    }

    // Lost again on the one retry: failed, never a third send.
    proxy.script(&[Fault::DropAfterDot, Fault::DropAfterDot]);
    let before = proxy.connections().len();
    let run = p.run_json("lost", &[], 3);
    let d = &recorded_deliveries(&p, &run)[0];
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 2, "{d}");
    let error = d["error"].as_str().unwrap();
    assert!(error.contains("may have accepted it"), "{error}");
    assert!(error.contains("not tried again"), "{error}");
    assert_eq!(proxy.connections().len(), before + 2);
}

#[test]
fn a_zip_over_the_limit_arrives_in_parts_that_rejoin_and_a_retry_sends_only_the_missing_part() {
    let Some(m) = mail() else { return };
    let proxy = SmtpProxy::start(m.smtp_port);
    // Part 2's first send gets 451 for its recipient; the others go through.
    proxy.script(&[Fault::Relay, Fault::Rcpt451]);
    let p = project(&format!(
        "{}    max_attachment_bytes: 20000\n",
        plain_channel("mail", proxy.port)
    ));
    // About 140 KB of hex noise: its zip is still about 75 KB.
    p.write(
        "tasks/noise.yaml",
        "schedule: \"0 3 * * *\"\nsource: db\nquery: |\n  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000)\n  SELECT x, hex(randomblob(32)) AS noise FROM c\noutput: { format: csv, file_name: noise }\nnotify: [mail]\n",
    );
    let run = p.run_json("noise", &[], 0);
    let d = &recorded_deliveries(&p, &run)[0];
    assert_eq!(d["status"], "sent", "{d}");
    assert_eq!(d["attempts"], 2, "{d}");
    let ids: Vec<&str> = d["receipt"].as_str().unwrap().split(' ').collect();
    let n = ids.len();
    assert!((3..=10).contains(&n), "{n} parts: {d}");
    let run_id = run["run_id"].as_str().unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(*id, format!("<{run_id}.mail.p{}@example.test>", i + 1));
        let r = recipient(d, i as u64 + 1, "alice@example.test");
        assert_eq!(r["status"], "sent", "{d}");
        // Only part 2 was sent twice; a retry never re-sends part 1.
        assert_eq!(
            r["attempts"],
            if i == 1 { 2 } else { 1 },
            "part {}: {d}",
            i + 1
        );
    }
    let conns = proxy.connections();
    assert_eq!(
        conns.len(),
        n + 1,
        "one connection per part, plus part 2's retry"
    );

    // Read every part back, rejoin, and check against the manifest and the published file.
    let mut joined = Vec::new();
    let mut manifest = String::new();
    for (i, id) in ids.iter().enumerate() {
        let raw = m.wait_for("alice@example.test", id);
        let parsed = MessageParser::default().parse(&raw).unwrap();
        let subject = parsed.subject().unwrap();
        assert!(
            subject.ends_with(&format!("(part {} of {n})", i + 1)),
            "{subject}"
        );
        let body = parsed.body_text(0).unwrap();
        assert!(
            body.contains(&format!("This is part {} of {n}", i + 1)),
            "{body}"
        );
        assert!(body.contains("cat noise.zip.0* > noise.zip"), "{body}");
        let attachments: Vec<_> = parsed.attachments().collect();
        let names: Vec<_> = attachments.iter().map(|a| a.attachment_name()).collect();
        let part_name = format!("noise.zip.{:03}", i + 1);
        assert_eq!(names, [Some(part_name.as_str()), Some("MANIFEST.txt")]);
        let bytes = transmitted_bytes(&raw, attachments[0]);
        assert!(bytes.len() <= 20000);
        let text = String::from_utf8(transmitted_bytes(&raw, attachments[1])).unwrap();
        assert!(
            text.contains(&format!(
                "{part_name}  {} bytes  sha256 {}",
                bytes.len(),
                sha256(&bytes)
            )),
            "{text}"
        );
        if i == 0 {
            manifest = text;
        } else {
            assert_eq!(text, manifest, "every part carries the same manifest");
        }
        joined.extend(bytes);
    }
    assert!(
        manifest.contains(&format!("sha256 {}", sha256(&joined))),
        "{manifest}"
    );
    assert!(
        manifest.contains(&format!("{} bytes", joined.len())),
        "{manifest}"
    );
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(joined)).unwrap();
    assert_eq!(archive.len(), 1);
    let mut member = archive.by_index(0).unwrap();
    assert_eq!(member.name().unwrap(), "noise.csv");
    let mut csv = Vec::new();
    member.read_to_end(&mut csv).unwrap();
    assert_eq!(sha256(&csv), run["files"][0]["sha256"].as_str().unwrap());
}

/// A cron expression (with seconds) that fires once, about `secs` seconds from now, in
/// the fixture's zone (Asia/Shanghai).
fn once_soon(secs: i64) -> String {
    let at =
        (Utc::now() + chrono::Duration::seconds(secs)).with_timezone(&chrono_tz::Asia::Shanghai);
    use chrono::{Datelike, Timelike};
    format!(
        "{} {} {} {} {} *",
        at.second(),
        at.minute(),
        at.hour(),
        at.day(),
        at.month()
    )
}

#[test]
fn serve_killed_while_an_email_waits_in_backoff_sends_it_once_after_restart() {
    let Some(m) = mail() else { return };
    let proxy = SmtpProxy::start(m.smtp_port);
    proxy.refuse();
    let p: Project = project(&plain_channel("mail", proxy.port));
    only_task(
        &p,
        "resume",
        &format!(
            "schedule: \"{}\"\nmisfire_grace: 10m\nsource: db\nquery: SELECT * FROM t ORDER BY id\noutput: {{ format: csv, file_name: resume }}\nnotify: [mail]\n",
            once_soon(3)
        ),
    );
    let mut first = serve(&p, "serve1.log");
    // The run is recorded with its file; the email waits between in-run attempts.
    wait_logged(
        &p,
        "serve1.log",
        Duration::from_secs(60),
        "a pending delivery",
        || {
            history(&p, "resume").first().is_some_and(|r| {
                r["deliveries"][0]["status"] == "pending" && r["deliveries"][0]["attempts"] != 0
            })
        },
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let runs = history(&p, "resume");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "succeeded");
    let file = p.path().join(runs[0]["files"][0]["path"].as_str().unwrap());
    let before = std::fs::metadata(&file).unwrap();

    proxy.listen();
    let mut second = serve(&p, "serve2.log");
    wait_logged(
        &p,
        "serve2.log",
        Duration::from_secs(120),
        "the delivery",
        || {
            history(&p, "resume")
                .first()
                .is_some_and(|r| r["delivery"] == "delivered")
        },
    );
    assert_eq!(terminate(&mut second), Some(0));

    let runs = history(&p, "resume");
    assert_eq!(runs.len(), 1, "one run: {runs:?}");
    let d = &runs[0]["deliveries"][0];
    assert_eq!(d["status"], "sent", "{d}");
    assert_eq!(recipient(d, 0, "alice@example.test")["status"], "sent");
    // The file was not written again and the query ran once (one run in both logs).
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (after.ino(), after.mtime(), after.mtime_nsec()),
        (before.ino(), before.mtime(), before.mtime_nsec())
    );
    let logs = ["serve1.log", "serve2.log"]
        .map(|l| std::fs::read_to_string(p.path().join(l)).unwrap_or_default())
        .join("\n");
    assert_eq!(logs.matches("run succeeded").count(), 1, "{logs}");
    // The message arrived exactly once, with the published file.
    let id = d["receipt"].as_str().unwrap();
    assert_eq!(messages_relayed(&proxy), 1, "{:#?}", proxy.connections());
    let raw = m.wait_for("alice@example.test", id);
    let parsed = MessageParser::default().parse(&raw).unwrap();
    let attachment = parsed.attachments().next().expect("the file is attached");
    assert_eq!(
        sha256(&transmitted_bytes(&raw, attachment)),
        runs[0]["files"][0]["sha256"].as_str().unwrap()
    );
}

/// A delivery that fails for good on a later retry by `ferry serve` (not during the run)
/// still tells the task's owners, once, naming the recipient and the server's reply.
#[test]
fn a_delivery_failing_for_good_on_a_later_retry_alerts_the_owners() {
    let Some(m) = mail() else { return };
    let proxy = SmtpProxy::start(m.smtp_port);
    proxy.refuse();
    let p = project(&format!(
        "{}  oncall: {{ type: outbox, dir: alerts, recipients: [oncall@example.com] }}\n\
         alerts: {{ channel: oncall }}\nscheduler: {{ delivery_interval: 200ms }}\n",
        plain_channel("mail", proxy.port)
    ));
    for part in ["alert.md.j2", "alert.subject.j2"] {
        let text = std::fs::read_to_string(crate::support::repo().join("templates").join(part));
        p.write(&format!("templates/{part}"), &text.unwrap());
    }
    p.write(
        "tasks/later.yaml",
        &format!(
            "{SMALL_TASK}owners: [owner@example.com]\nnotify:\n  - {{ channel: mail, to: [rejected@example.test] }}\n"
        ),
    );
    // In the run: three refused connections, the delivery is left pending; nothing has
    // failed for good, so no alert yet.
    let run = p.run_json("later", &[], 3);
    let d = &recorded_deliveries(&p, &run)[0];
    assert_eq!(d["status"], "pending", "{d}");
    assert!(
        p.files("alerts").is_empty(),
        "no alert for a pending delivery"
    );

    // Later: the server is back and refuses the recipient (550) on the worker's retry.
    proxy.listen();
    let db = rusqlite::Connection::open(p.path().join("data/ferry.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch("UPDATE deliveries SET next_attempt_at = '2000-01-01T00:00:00.000Z'")
        .unwrap();
    drop(db);
    let mut child = serve(&p, "serve.log");
    wait_logged(
        &p,
        "serve.log",
        Duration::from_secs(30),
        "owner alert",
        || !p.files("alerts").is_empty(),
    );
    // Another whole worker pass after the alert (every 200 ms here): still one alert.
    let passes = log_lines(&p, "serve.log", "delivery pass");
    wait_log_lines(&p, "serve.log", "delivery pass", passes + 2);
    assert_eq!(terminate(&mut child), Some(0));
    let alerts = p.files("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = std::fs::read_to_string(p.path().join("alerts").join(&alerts[0])).unwrap();
    assert!(alert.contains("rejected@example.test"), "{alert}");
    assert!(alert.contains("550"), "{alert}");
    let runs = history(&p, "later");
    let d = &runs[0]["deliveries"][0];
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(recipient(d, 0, "rejected@example.test")["status"], "failed");
}
