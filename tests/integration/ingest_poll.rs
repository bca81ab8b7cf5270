//! Query by email end to end, against the real servers of `scripts/test-services.sh`:
//! requests are appended byte for byte to a Dovecot folder, `ferry ingest once` (and
//! `ferry serve`) polls it, runs the accepted ones on the real database through the
//! executor, answers through Postfix, and every reply is read back from the sender's
//! Dovecot mailbox. A kill (SIGKILL) between any two steps of a poll loses no request and
//! answers none twice.

use std::time::{Duration, Instant};

use mail_parser::{MessageParser, MimeHeaders};

use crate::email::{Imap as Raw, Mail, mail};
use crate::ingest_imap::{password, project};
use crate::support::{Project, describe, history, stdout};

const ALICE: &str = "alice@example.test";

/// A request mail as a client sends it: `auth` adds our MTA's Authentication-Results
/// with `dmarc=pass`; each file is a `.sql` attachment.
fn request(id: &str, from: &str, auth: bool, body: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut m = String::new();
    if auth {
        m.push_str(
            "Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=example.test;\r\n\
             \tdmarc=pass header.from=example.test\r\n",
        );
    }
    m.push_str(&format!(
        "From: Sender <{from}>\r\nTo: ferry@example.test\r\nSubject: query {id}\r\n\
         Message-ID: <{id}@example.test>\r\nDate: Mon, 7 Dec 2026 09:00:00 +0800\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ));
    for (name, sql) in files {
        m.push_str(&format!(
            "--b1\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{sql}\r\n"
        ));
    }
    m.push_str("--b1--\r\n");
    m.into_bytes()
}

fn accepted(id: &str) -> Vec<u8> {
    request(
        id,
        ALICE,
        true,
        "Hello,\r\ndatabase: db\r\nThanks",
        &[
            ("orders.sql", "SELECT id, name FROM t ORDER BY id;"),
            ("count.sql", "-- how many\nSELECT count(*) AS n FROM t"),
        ],
    )
}

fn writing(id: &str) -> Vec<u8> {
    request(
        id,
        ALICE,
        true,
        "database: db",
        &[("cleanup.sql", "DELETE FROM t")],
    )
}

/// The replies in `user`'s INBOX to the request `<id@example.test>`: waits for the first,
/// then a moment more so that a second copy would have arrived too.
fn replies(m: &Mail, user: &str, id: &str) -> Vec<Vec<u8>> {
    let needle = format!("<{id}@example.test>");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen_at = None;
    loop {
        let mut imap = Raw::login(m.imap_port, user, &m.imap_password);
        let uids = imap.search_header("In-Reply-To", &needle);
        if !uids.is_empty() && seen_at.is_none() {
            seen_at = Some(Instant::now());
        }
        if seen_at.is_some_and(|t| t.elapsed() > Duration::from_millis(1500)) {
            let all = uids.iter().map(|&u| imap.fetch(u)).collect();
            imap.logout();
            return all;
        }
        imap.logout();
        assert!(
            Instant::now() < deadline,
            "no reply to {needle} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `user` has any reply to `<id@example.test>` now.
fn has_reply(m: &Mail, user: &str, id: &str) -> bool {
    let mut imap = Raw::login(m.imap_port, user, &m.imap_password);
    let found = !imap
        .search_header("In-Reply-To", &format!("<{id}@example.test>"))
        .is_empty();
    imap.logout();
    found
}

/// The number of messages in `folder` of the ferry account.
fn count(m: &Mail, folder: &str) -> u32 {
    let mut raw = Raw::login(m.imap_port, &m.user, &password());
    let lines = raw.command(&format!("STATUS \"{folder}\" (MESSAGES)"));
    raw.logout();
    let line = lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_string())
        .find(|l| l.contains("MESSAGES"))
        .unwrap_or_else(|| panic!("no STATUS for {folder}"));
    line.split("MESSAGES ")
        .nth(1)
        .and_then(|r| r.trim_end_matches([')', '\r', '\n']).trim().parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

/// Appends `mails` to `folder` of the ferry account, creating it first if need be.
fn append(m: &Mail, folder: &str, mails: &[Vec<u8>]) {
    let mut raw = Raw::login(m.imap_port, &m.user, &password());
    let listed = raw.command(&format!("LIST \"\" \"{folder}\""));
    if listed.is_empty() {
        raw.command(&format!("CREATE \"{folder}\""));
    }
    for mail in mails {
        raw.append(folder, mail);
    }
    raw.logout();
}

fn once(p: &Project) -> serde_json::Value {
    let out = p.ferry(&["ingest", "once", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)))
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    let head = &raw[..raw.find("\r\n\r\n").unwrap_or(raw.len())];
    head.lines()
        .find(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l.as_bytes()[name.len()] == b':'
        })
        .map(|l| l[name.len() + 1..].trim())
}

#[test]
fn requests_are_run_answered_once_and_moved() {
    let Some(m) = mail() else { return };
    let folder = "t10-requests";
    let noauth = request(
        "t10-noauth",
        ALICE,
        false,
        "database: db",
        &[("a.sql", "SELECT 1")],
    );
    let mut auto = request(
        "t10-auto",
        ALICE,
        true,
        "database: db",
        &[("a.sql", "SELECT 1")],
    );
    auto.splice(0..0, b"Auto-Submitted: auto-replied\r\n".iter().copied());
    append(
        &m,
        folder,
        &[accepted("t10-accept"), writing("t10-write"), noauth, auto],
    );
    let p = project(&m, folder);

    let pass = once(&p);
    assert_eq!(pass["seen"], 4, "{pass}");
    let verdicts: Vec<(String, String)> = pass["handled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["verdict"].as_str().unwrap().to_string(),
                h["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("accept".to_string(), String::new()),
            ("reject".to_string(), "not_read_only".to_string()),
            ("reject".to_string(), "auth_failed".to_string()),
            ("ignore".to_string(), "auto_generated".to_string()),
        ]
    );

    // The accepted request: one reply, threaded, automatic, one file per attachment.
    let got = replies(&m, ALICE, "t10-accept");
    assert_eq!(got.len(), 1, "answered once");
    let text = String::from_utf8_lossy(&got[0]).to_string();
    assert_eq!(
        header(&text, "Subject"),
        Some("Re: query t10-accept"),
        "{text}"
    );
    assert_eq!(
        header(&text, "In-Reply-To"),
        Some("<t10-accept@example.test>")
    );
    assert_eq!(
        header(&text, "References"),
        Some("<t10-accept@example.test>")
    );
    assert_eq!(header(&text, "Auto-Submitted"), Some("auto-replied"));
    assert_eq!(header(&text, "X-Ferry-Loop"), Some("1"));
    assert!(header(&text, "To").unwrap().contains(ALICE), "{text}");
    let msg = MessageParser::default().parse(&got[0]).unwrap();
    let mut names: Vec<String> = msg
        .attachments()
        .map(|a| a.attachment_name().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["count.xlsx", "orders.xlsx"], "{text}");
    let body = msg.body_text(0).unwrap().to_string();
    assert!(body.contains("is done:"), "{body}");
    assert!(body.contains("orders.xlsx"), "{body}");
    assert!(body.contains("sha256"), "{body}");

    // The run is in history, with trigger `mail` and two files.
    let runs = history(&p, &format!("mail:{ALICE}"));
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["trigger"], "mail");
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["files"].as_array().unwrap().len(), 2);

    // The write: told why, in words, with the reason code.
    let got = replies(&m, ALICE, "t10-write");
    assert_eq!(got.len(), 1);
    let text = String::from_utf8_lossy(&got[0]).to_string();
    assert!(text.contains("not_read_only"), "{text}");
    assert_eq!(header(&text, "Auto-Submitted"), Some("auto-replied"));
    // No backscatter to an unauthenticated From, and machine mail is never answered.
    assert!(!has_reply(&m, ALICE, "t10-noauth"));
    assert!(!has_reply(&m, ALICE, "t10-auto"));

    assert_eq!(count(&m, folder), 0);
    assert_eq!(count(&m, &format!("{folder}-processed")), 1);
    assert_eq!(count(&m, &format!("{folder}-rejected")), 2);
    assert_eq!(count(&m, &format!("{folder}-ignored")), 1);

    // The same mail again (copied back into the folder): recognised, moved, not run or
    // answered again.
    append(&m, folder, &[accepted("t10-accept")]);
    let pass = once(&p);
    assert_eq!(pass["handled"][0]["known"], true, "{pass}");
    assert_eq!(history(&p, &format!("mail:{ALICE}")).len(), 1);
    assert_eq!(replies(&m, ALICE, "t10-accept").len(), 1);
    assert_eq!(count(&m, folder), 0);
}

/// `ferry ingest once` killed (SIGKILL) at each point between two steps of a poll, for an
/// accepted request and for a rejected one, then run again: each request ends in its
/// folder, answered exactly once, and an accepted one is run at most once.
#[test]
fn a_kill_between_any_two_steps_loses_nothing_and_answers_once() {
    let Some(m) = mail() else { return };
    let points = [
        "ingest:judged",
        "ingest:claimed",
        "ingest:answered",
        "ingest:moved",
    ];
    for (i, point) in points.iter().enumerate() {
        for (kind, make) in [
            ("accept", accepted as fn(&str) -> Vec<u8>),
            ("write", writing),
        ] {
            let folder = format!("t11-{i}-{kind}");
            let id = format!("t11-{i}-{kind}");
            append(&m, &folder, &[make(&id)]);
            let p = project(&m, &folder);
            let out = p
                .command(&["ingest", "once"])
                .env("FERRY_TEST_KILL_AT", point)
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                None,
                "{point}/{kind}: killed by a signal: {}",
                describe(&out)
            );
            once(&p);
            let got = replies(&m, ALICE, &id);
            assert_eq!(got.len(), 1, "{point}/{kind}: answered exactly once");
            let text = String::from_utf8_lossy(&got[0]).to_string();
            let runs = history(&p, &format!("mail:{ALICE}"));
            if kind == "accept" {
                assert_eq!(runs.len(), 1, "{point}: one run: {runs:?}");
                if *point == "ingest:claimed" {
                    // Killed after the claim, before the run: told to send it again.
                    assert!(text.contains("interrupted"), "{point}: {text}");
                    assert_eq!(runs[0]["status"], "failed");
                } else {
                    assert!(text.contains("is done:"), "{point}: {text}");
                    assert_eq!(runs[0]["status"], "succeeded");
                }
            } else {
                assert!(runs.is_empty(), "{point}: {runs:?}");
                assert!(text.contains("not_read_only"), "{point}: {text}");
            }
            let done = if kind == "accept" {
                "processed"
            } else {
                "rejected"
            };
            assert_eq!(
                count(&m, &folder),
                0,
                "{point}/{kind}: the folder is emptied"
            );
            assert_eq!(count(&m, &format!("{folder}-{done}")), 1, "{point}/{kind}");
        }
    }
}

/// Inside `ferry serve`, ingest is one more service: a request appended while it runs is
/// answered (IDLE wakes the poller).
#[test]
fn serve_answers_requests_as_they_arrive() {
    let Some(m) = mail() else { return };
    let folder = "t12-requests";
    append(&m, folder, &[]);
    let p = project(&m, folder);
    let mut child = crate::support::serve(&p, "serve.log");
    crate::support::wait_log_lines(&p, "serve.log", "ferry serve started", 1);
    append(&m, folder, &[accepted("t12-accept")]);
    let got = replies(&m, ALICE, "t12-accept");
    assert_eq!(got.len(), 1);
    assert_eq!(crate::support::terminate(&mut child), Some(0));
    assert_eq!(count(&m, folder), 0);
    assert_eq!(count(&m, &format!("{folder}-processed")), 1);
}

/// Against a server without MOVE (a second Dovecot on the same mail): handled mail is
/// copied, flagged `\Deleted` and expunged by its UID, and answered once.
#[test]
fn a_server_without_move_gets_copy_and_uid_expunge() {
    let Some(m) = mail() else { return };
    let port: u16 = std::env::var("FERRY_TEST_IMAP_NOMOVE_PORT")
        .expect("FERRY_TEST_IMAP_NOMOVE_PORT (scripts/test-services.sh)")
        .parse()
        .unwrap();
    let folder = "t13-requests";
    append(&m, folder, &[accepted("t13-accept"), writing("t13-write")]);
    let p = project(&m, folder);
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    let imap = format!(
        "    port: {}\n    security: none\n    username",
        m.imap_port
    );
    assert!(config.contains(&imap), "{config}");
    p.write(
        "config.yaml",
        &config.replace(
            &imap,
            &format!("    port: {port}\n    security: none\n    username"),
        ),
    );
    let out = p.ferry(&["ingest", "test"]);
    assert!(
        stdout(&out).contains("MOVE no, UIDPLUS yes"),
        "{}",
        describe(&out)
    );

    let pass = once(&p);
    assert_eq!(pass["handled"].as_array().unwrap().len(), 2, "{pass}");
    assert_eq!(replies(&m, ALICE, "t13-accept").len(), 1);
    assert_eq!(replies(&m, ALICE, "t13-write").len(), 1);
    assert_eq!(count(&m, folder), 0, "expunged by UID");
    assert_eq!(count(&m, &format!("{folder}-processed")), 1);
    assert_eq!(count(&m, &format!("{folder}-rejected")), 1);
}

/// The daily quota, the reply cap with its one owner alert, and a renumbered request
/// folder (UIDVALIDITY changed) that neither re-runs nor re-answers handled mail.
#[test]
fn quota_reply_cap_and_a_renumbered_folder() {
    let Some(m) = mail() else { return };
    let folder = "t14-requests";
    append(
        &m,
        folder,
        &[accepted("t14-a1"), accepted("t14-a2"), writing("t14-w")],
    );
    let p = project(&m, folder);
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    let config = config
        .replace(
            "databases: [db]\n",
            "databases: [db]\n      daily_quota: 1\n",
        )
        .replace(
            "    channel: ingest_reply\n",
            "    channel: ingest_reply\n    daily_cap: 2\n  owners: [bob@example.test]\n",
        );
    p.write("config.yaml", &config);

    let pass = once(&p);
    let reasons: Vec<&str> = pass["handled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["reason"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(reasons, ["-", "quota_exceeded", "not_read_only"], "{pass}");
    assert_eq!(replies(&m, ALICE, "t14-a1").len(), 1);
    let over = replies(&m, ALICE, "t14-a2");
    assert!(
        String::from_utf8_lossy(&over[0]).contains("quota_exceeded"),
        "the quota is explained"
    );
    // The third reply of the day is over the cap of 2: silence, and the owners hear once.
    let alert = m.wait_copies_matching(
        "bob@example.test",
        "Subject",
        "reached the daily reply cap",
        1,
    );
    assert!(String::from_utf8_lossy(&alert[0]).contains(ALICE));
    assert!(!has_reply(&m, ALICE, "t14-w"));
    assert_eq!(history(&p, &format!("mail:{ALICE}")).len(), 1, "one run");

    // The folder is recreated (a new UIDVALIDITY) and the first request shows up again.
    let mut raw = Raw::login(m.imap_port, &m.user, &password());
    raw.command(&format!("DELETE \"{folder}\""));
    raw.command(&format!("CREATE \"{folder}\""));
    raw.logout();
    append(&m, folder, &[accepted("t14-a1")]);
    let pass = once(&p);
    assert_eq!(pass["handled"][0]["known"], true, "{pass}");
    let note = m.wait_copies_matching("bob@example.test", "Subject", "was renumbered", 1);
    assert!(String::from_utf8_lossy(&note[0]).contains("UIDVALIDITY"));
    assert_eq!(replies(&m, ALICE, "t14-a1").len(), 1, "not answered again");
    assert_eq!(
        history(&p, &format!("mail:{ALICE}")).len(),
        1,
        "not run again"
    );
}
