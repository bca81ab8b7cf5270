//! The email channel through real servers: `ferry run` sends through Postfix on loopback,
//! Postfix delivers over LMTP into Dovecot, and the tests read every message back over IMAP
//! (a small IMAP client below) and parse it with mail-parser: headers, both bodies, every
//! attachment byte for byte, Chinese names decoded, and the Message-ID recorded on the run.
//! Also STARTTLS and implicit TLS with a private CA and SMTP AUTH, and how failures are
//! classified and recorded: a wrong password and an untrusted certificate are permanent, a
//! closed port and an SMTP 4xx reply are retryable, a 5xx reply is permanent, attachments
//! over `max_attachment_bytes` are refused with their sizes.
//!
//! `scripts/test-services.sh` starts the servers and exports `FERRY_TEST_SMTP_*` and
//! `FERRY_TEST_IMAP_*`. Without them the server tests print a note and pass, except under
//! `CI=true`, where they fail. Tests that need no server always run.
//!
//! Every message is found by its Message-ID (unique per run), so the tests run in parallel
//! against the same mailboxes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mail_parser::{MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

use crate::support::{Project, describe, repo, stdout};

/// The test mail servers (see `scripts/test-services.sh`).
pub(crate) struct Mail {
    pub(crate) smtp_port: u16,
    starttls_port: u16,
    smtps_port: u16,
    ca: String,
    /// The AUTH account; its password reaches ferry as `${FERRY_TEST_SMTP_PASSWORD}`.
    pub(crate) user: String,
    pub(crate) imap_port: u16,
    pub(crate) imap_password: String,
}

pub(crate) fn mail() -> Option<Mail> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let Some(smtp_port) = var("FERRY_TEST_SMTP_PORT") else {
        crate::support::skip(
            "the mail servers (Postfix, Dovecot)",
            "FERRY_TEST_SMTP_PORT is not set (run the tests with scripts/test-services.sh)",
        );
        return None;
    };
    let need = |name: &str| var(name).unwrap_or_else(|| panic!("{name} is not set"));
    let port = |name: &str| need(name).parse().unwrap_or_else(|e| panic!("{name}: {e}"));
    need("FERRY_TEST_SMTP_PASSWORD");
    Some(Mail {
        smtp_port: smtp_port.parse().unwrap(),
        starttls_port: port("FERRY_TEST_SMTP_STARTTLS_PORT"),
        smtps_port: port("FERRY_TEST_SMTPS_PORT"),
        ca: need("FERRY_TEST_SMTP_CA"),
        user: need("FERRY_TEST_SMTP_USER"),
        imap_port: port("FERRY_TEST_IMAP_PORT"),
        imap_password: need("FERRY_TEST_IMAP_PASSWORD"),
    })
}

// ---------------------------------------------------------------------------------------
// A minimal IMAP client: LOGIN, SELECT, UID SEARCH, UID FETCH BODY.PEEK[].

pub(crate) struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Imap {
    pub(crate) fn login(port: u16, user: &str, password: &str) -> Imap {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to IMAP");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut imap = Imap {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            tag: 0,
        };
        let mut greeting = String::new();
        imap.reader.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("* OK"), "IMAP greeting: {greeting}");
        imap.command(&format!("LOGIN \"{user}\" \"{password}\""));
        imap.command("SELECT INBOX");
        imap
    }

    /// Sends a command and returns the untagged response lines, with literals inlined as
    /// raw bytes. Panics unless the server answers OK.
    pub(crate) fn command(&mut self, cmd: &str) -> Vec<Vec<u8>> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        write!(self.writer, "{tag} {cmd}\r\n").unwrap();
        self.writer.flush().unwrap();
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            self.reader.read_until(b'\n', &mut line).unwrap();
            assert!(!line.is_empty(), "IMAP connection closed during `{cmd}`");
            if line.starts_with(tag.as_bytes()) {
                let text = String::from_utf8_lossy(&line);
                assert!(
                    text[tag.len()..].trim_start().starts_with("OK"),
                    "`{cmd}`: {text}"
                );
                return out;
            }
            // A literal: `{N}\r\n` then N bytes, then the rest of the response line.
            let trimmed = line.strip_suffix(b"\r\n").unwrap_or(&line);
            if trimmed.ends_with(b"}")
                && let Some(open) = trimmed.iter().rposition(|&b| b == b'{')
                && let Ok(n) = std::str::from_utf8(&trimmed[open + 1..trimmed.len() - 1])
                    .unwrap()
                    .parse::<usize>()
            {
                let mut literal = vec![0; n];
                self.reader.read_exact(&mut literal).unwrap();
                let mut rest = Vec::new();
                self.reader.read_until(b'\n', &mut rest).unwrap();
                out.push(literal);
                continue;
            }
            out.push(line);
        }
    }

    fn search_message_id(&mut self, message_id: &str) -> Vec<u32> {
        self.search_header("Message-ID", message_id)
    }

    /// UIDs of the selected folder's messages whose `header` contains `value`.
    pub(crate) fn search_header(&mut self, header: &str, value: &str) -> Vec<u32> {
        let lines = self.command(&format!("UID SEARCH HEADER {header} \"{value}\""));
        lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).to_string())
            .filter_map(|l| l.strip_prefix("* SEARCH").map(str::to_string))
            .flat_map(|l| {
                l.split_whitespace()
                    .map(|n| n.parse::<u32>().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub(crate) fn fetch(&mut self, uid: u32) -> Vec<u8> {
        let lines = self.command(&format!("UID FETCH {uid} BODY.PEEK[]"));
        // The literal is the only response part that is not a response line.
        lines
            .into_iter()
            .find(|l| !l.starts_with(b"* ") && !l.starts_with(b")"))
            .expect("a message body literal")
    }

    /// Appends `raw` to `folder` byte for byte (the folder must exist).
    pub(crate) fn append(&mut self, folder: &str, raw: &[u8]) {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        write!(
            self.writer,
            "{tag} APPEND \"{folder}\" {{{}}}\r\n",
            raw.len()
        )
        .unwrap();
        self.writer.flush().unwrap();
        let mut go = String::new();
        self.reader.read_line(&mut go).unwrap();
        assert!(go.starts_with('+'), "APPEND: {go}");
        self.writer.write_all(raw).unwrap();
        self.writer.write_all(b"\r\n").unwrap();
        self.writer.flush().unwrap();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            assert!(!line.is_empty(), "IMAP connection closed during APPEND");
            if let Some(rest) = line.strip_prefix(&tag) {
                assert!(rest.trim_start().starts_with("OK"), "APPEND: {line}");
                return;
            }
        }
    }

    pub(crate) fn logout(mut self) {
        let _ = write!(self.writer, "z LOGOUT\r\n");
    }
}

impl Mail {
    /// The raw message with this Message-ID in `user`'s INBOX, polling until it arrives
    /// (LMTP delivery takes a moment) or the deadline passes.
    pub(crate) fn wait_for(&self, user: &str, message_id: &str) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut imap = Imap::login(self.imap_port, user, &self.imap_password);
            let uids = imap.search_message_id(message_id);
            if let Some(&uid) = uids.first() {
                assert_eq!(uids.len(), 1, "{user} got {message_id} more than once");
                let raw = imap.fetch(uid);
                imap.logout();
                return raw;
            }
            imap.logout();
            if Instant::now() > deadline {
                let log = std::env::var("FERRY_TEST_MAIL_LOG")
                    .ok()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default();
                panic!("{message_id} did not reach {user} within 30s; Postfix log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every copy of the message with this Message-ID in `user`'s INBOX, polling until
    /// there are at least `n` (or the deadline passes, which fails the test).
    pub(crate) fn wait_copies(&self, user: &str, message_id: &str, n: usize) -> Vec<Vec<u8>> {
        self.wait_copies_matching(user, "Message-ID", message_id, n)
    }

    /// Every message in `user`'s INBOX whose `header` contains `value`, polling until
    /// there are at least `n` (30 s at most).
    pub(crate) fn wait_copies_matching(
        &self,
        user: &str,
        header: &str,
        value: &str,
        n: usize,
    ) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut imap = Imap::login(self.imap_port, user, &self.imap_password);
            let uids = imap.search_header(header, value);
            if uids.len() >= n {
                let copies = uids.iter().map(|&uid| imap.fetch(uid)).collect();
                imap.logout();
                return copies;
            }
            imap.logout();
            assert!(
                Instant::now() < deadline,
                "{user} has {} messages with {header} containing {value:?}, not {n}, after 30s",
                uids.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether `user` has the message now (for mailboxes that must not get it, checked
    /// after a mailbox that must get it has).
    pub(crate) fn has(&self, user: &str, message_id: &str) -> bool {
        let mut imap = Imap::login(self.imap_port, user, &self.imap_password);
        let found = !imap.search_message_id(message_id).is_empty();
        imap.logout();
        found
    }
}

// ---------------------------------------------------------------------------------------
// Projects.

/// The fixture project with `config.yaml` replaced: the given channels (YAML lines under
/// `channels:`), plus the repository's HTML report template and a `cn` template with a
/// Chinese subject.
pub(crate) fn project(channels: &str) -> Project {
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        &format!(
            "timezone: Asia/Shanghai\nstore: {{ url: \"sqlite://data/ferry.db\" }}\n\
             datasources:\n  db: {{ type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }}\n\
             channels:\n  box: {{ type: outbox, dir: outbox }}\n{channels}"
        ),
    );
    let html = std::fs::read_to_string(repo().join("templates/report.html.j2")).unwrap();
    let md = std::fs::read_to_string(p.path().join("templates/report.md.j2")).unwrap();
    p.write("templates/report.html.j2", &html);
    p.write("templates/cn.html.j2", &html);
    p.write("templates/cn.md.j2", &md);
    p.write(
        "templates/cn.subject.j2",
        "【日报】{{ description }}：{{ rows_count }} 行",
    );
    p
}

pub(crate) fn plain_channel(name: &str, port: u16) -> String {
    format!(
        "  {name}:\n    type: email\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    \
         from: \"数据导出 <ferry@example.test>\"\n    to: [alice@example.test]\n"
    )
}

/// `tasks/<name>.yaml`: a CSV export of `t`'s ids with the given `notify` line(s).
fn id_task(p: &Project, name: &str, notify: &str) {
    p.write(
        &format!("tasks/{name}.yaml"),
        &format!(
            "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT id FROM t\noutput: {{ format: csv }}\n{notify}"
        ),
    );
}

/// A loopback port that was just free: nothing listens there.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The deliveries of the run in `ferry history --json`, checked to equal the run's own.
pub(crate) fn recorded_deliveries(p: &Project, run: &serde_json::Value) -> Vec<serde_json::Value> {
    let out = p.ferry(&["history", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let runs: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rec = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == run["run_id"])
        .unwrap_or_else(|| panic!("run {} not in history", run["run_id"]));
    assert_eq!(rec["deliveries"], run["deliveries"]);
    rec["deliveries"].as_array().unwrap().clone()
}

/// The Message-ID of the run's only delivery, which must have been sent.
fn sent_message_id(p: &Project, run: &serde_json::Value) -> String {
    let deliveries = recorded_deliveries(p, run);
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0]["status"], "sent", "{deliveries:?}");
    deliveries[0]["receipt"].as_str().unwrap().to_string()
}

/// Checks every attachment against the run's published files: name (decoded), MIME type
/// and bytes (sha256 of the file on disk, and as recorded).
fn assert_attachments(
    p: &Project,
    raw: &[u8],
    parsed: &mail_parser::Message,
    run: &serde_json::Value,
) {
    let files = run["files"].as_array().unwrap();
    let attachments: Vec<_> = parsed.attachments().collect();
    assert_eq!(attachments.len(), files.len(), "one attachment per file");
    for f in files {
        let path = f["path"].as_str().unwrap();
        let name = std::path::Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let part = attachments
            .iter()
            .find(|a| a.attachment_name() == Some(name.as_str()))
            .unwrap_or_else(|| {
                let names: Vec<_> = attachments.iter().map(|a| a.attachment_name()).collect();
                panic!("no attachment named {name}: {names:?}")
            });
        let on_disk = std::fs::read(p.path().join(path)).unwrap();
        let received = transmitted_bytes(raw, part);
        assert_eq!(sha256(&received), sha256(&on_disk), "{name}");
        assert_eq!(sha256(&received), f["sha256"].as_str().unwrap(), "{name}");
        let ct = part.content_type().unwrap();
        let mime = format!("{}/{}", ct.c_type, ct.c_subtype.as_deref().unwrap_or(""));
        let expected = match name.rsplit('.').next().unwrap() {
            "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "csv" => "text/csv",
            "zip" => "application/zip",
            other => panic!("unexpected extension {other}"),
        };
        assert_eq!(mime, expected, "{name}");
    }
}

/// An attachment's bytes exactly as transmitted: its base64 body decoded here, not by the
/// parser (which turns `text/*` parts into UTF-8 text, as a mail viewer would for display).
pub(crate) fn transmitted_bytes(raw: &[u8], part: &mail_parser::MessagePart) -> Vec<u8> {
    use base64::Engine as _;
    assert_eq!(part.content_transfer_encoding(), Some("base64"));
    let body: Vec<u8> = raw[part.raw_body_offset() as usize..part.raw_end_offset() as usize]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&body)
        .expect("a base64 body")
}

// ---------------------------------------------------------------------------------------
// Tests against the real servers.

#[test]
fn a_report_arrives_with_its_headers_bodies_and_attachment_intact() {
    let Some(m) = mail() else { return };
    let p = project(&plain_channel("mail", m.smtp_port));
    p.write(
        "tasks/cn_report.yaml",
        "description: 销售明细 <b>&</b>\nschedule: \"0 3 * * *\"\nsource: db\n\
         query: SELECT * FROM t ORDER BY id\n\
         output:\n  format: xlsx\n  file_name: \"销售明细_{{ run_date | strftime('%Y%m%d') }}\"\n\
         notify:\n  - channel: mail\n    template: cn\n    to: [\"张三 <alice@example.test>\"]\n    \
         cc: [bob@example.test]\n    bcc: [carol@example.test]\n",
    );
    let run = p.run_json("cn_report", &["--at", "2026-11-25T03:00:00+08:00"], 0);
    assert_eq!(run["warnings"], serde_json::json!([]), "{run}");
    let message_id = sent_message_id(&p, &run);
    let run_id = run["run_id"].as_str().unwrap();
    assert_eq!(message_id, format!("<{run_id}.mail@example.test>"));

    let raw = m.wait_for("alice@example.test", &message_id);
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        parsed.message_id(),
        Some(message_id.trim_matches(['<', '>']))
    );
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.name.as_deref(), Some("数据导出"));
    assert_eq!(from.address.as_deref(), Some("ferry@example.test"));
    let to = parsed.to().unwrap().first().unwrap();
    assert_eq!(to.name.as_deref(), Some("张三"));
    assert_eq!(to.address.as_deref(), Some("alice@example.test"));
    let cc: Vec<_> = parsed.cc().unwrap().iter().map(|a| a.address()).collect();
    assert_eq!(cc, [Some("bob@example.test")]);
    assert!(parsed.bcc().is_none(), "a Bcc header was sent");
    let header_text =
        String::from_utf8_lossy(&raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap()]);
    assert!(!header_text.contains("carol"), "{header_text}");
    assert_eq!(parsed.subject(), Some("【日报】销售明细 <b>&</b>：5 行"));

    let text = parsed.body_text(0).unwrap();
    assert!(text.contains("### cn_report: succeeded"), "{text}");
    assert!(text.contains("- Rows: 5"), "{text}");
    let html = parsed.body_html(0).unwrap();
    assert!(html.contains("<h1"), "{html}");
    assert!(
        html.contains("销售明细 &lt;b&gt;&amp;&lt;&#x2f;b&gt;"),
        "{html}"
    );
    assert!(!html.contains("<b>&</b>"), "unescaped description: {html}");
    assert!(html.contains("销售明细_20261125.xlsx"), "{html}");
    assert_attachments(&p, &raw, &parsed, &run);

    // Cc and Bcc recipients got the same message; Bcc only through the envelope.
    let for_bob = m.wait_for("bob@example.test", &message_id);
    assert_eq!(sha256(&body_of(&for_bob)), sha256(&body_of(&raw)));
    let for_carol = m.wait_for("carol@example.test", &message_id);
    let parsed_carol = MessageParser::default().parse(&for_carol).unwrap();
    assert!(parsed_carol.bcc().is_none());
    assert!(!m.has("dave@example.test", &message_id));
}

/// The message after the headers Postfix and Dovecot add in front of ferry's.
fn body_of(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw);
    let start = text.find("From: ").expect("a From header");
    raw[start..].to_vec()
}

#[test]
fn csv_and_zip_files_arrive_byte_for_byte_with_their_types() {
    let Some(m) = mail() else { return };
    let p = project(&plain_channel("mail", m.smtp_port));
    // Two CSV files (one per query), GB18030 encoded: the bytes must survive unchanged.
    p.write(
        "tasks/two_csv.yaml",
        "schedule: \"0 3 * * *\"\nsource: db\nqueries:\n  \
         - sheet: 明细\n    query: SELECT id, name, note FROM t ORDER BY id\n  \
         - sheet: sales\n    query: SELECT * FROM sales ORDER BY id\n\
         output:\n  format: csv\n  file_name: 报表\n  csv: { encoding: gb18030, line_ending: crlf }\n\
         notify: [mail]\n",
    );
    p.write(
        "tasks/zipped.yaml",
        "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT * FROM t ORDER BY id\n\
         output:\n  format: xlsx\n  file_name: 压缩\n  zip: true\nnotify: [mail]\n",
    );
    for task in ["two_csv", "zipped"] {
        let run = p.run_json(task, &[], 0);
        assert!(!run["warnings"].to_string().contains("notify"), "{run}");
        let message_id = sent_message_id(&p, &run);
        let raw = m.wait_for("alice@example.test", &message_id);
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            parsed.subject(),
            Some(format!("[ferry] {task} succeeded: {} rows", run["rows"]).as_str())
        );
        assert!(
            parsed.body_html(0).is_some(),
            "the default template has an HTML part"
        );
        assert_attachments(&p, &raw, &parsed, &run);
    }
}

#[test]
fn starttls_and_implicit_tls_with_a_private_ca_and_authentication() {
    let Some(m) = mail() else { return };
    let secure = |name: &str, port: u16, security: &str| {
        format!(
            "  {name}:\n    type: email\n    host: 127.0.0.1\n    port: {port}\n    security: {security}\n    \
             ca_file: {}\n    username: {}\n    password: ${{FERRY_TEST_SMTP_PASSWORD}}\n    \
             timeout: 20s\n    from: ferry@example.test\n    to: [dave@example.test]\n",
            m.ca, m.user
        )
    };
    let p = project(&format!(
        "{}{}",
        secure("submission", m.starttls_port, "starttls"),
        secure("smtps", m.smtps_port, "tls")
    ));
    id_task(&p, "secure", "notify: [submission, smtps]\n");
    // The submission and smtps listeners refuse mail without TLS and AUTH, so a delivery
    // proves both worked.
    let run = p.run_json("secure", &[], 0);
    assert_eq!(run["warnings"], serde_json::json!([]), "{run}");
    let deliveries = recorded_deliveries(&p, &run);
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    let run_id = run["run_id"].as_str().unwrap();
    for (d, channel) in deliveries.iter().zip(["submission", "smtps"]) {
        assert_eq!(d["channel"], channel);
        assert_eq!(d["status"], "sent", "{d}");
        let id = d["receipt"].as_str().unwrap();
        assert_eq!(id, format!("<{run_id}.{channel}@example.test>"));
        let raw = m.wait_for("dave@example.test", id);
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert_attachments(&p, &raw, &parsed, &run);
    }
}

#[test]
fn a_wrong_password_is_a_permanent_failure_that_never_shows_the_password() {
    let Some(m) = mail() else { return };
    let secret = "not-the-password-7Qx9";
    let p = project(&format!(
        "  mail:\n    type: email\n    host: 127.0.0.1\n    port: {}\n    ca_file: {}\n    \
         username: {}\n    password: {secret}\n    \
         from: ferry@example.test\n    to: [alice@example.test]\n",
        m.starttls_port, m.ca, m.user
    ));
    id_task(&p, "denied", "notify: [mail]\n");
    let out = std::process::Command::new(crate::support::FERRY)
        .current_dir(p.path())
        .args(["--config", "config.yaml", "run", "denied", "--json"])
        .env("FERRY_LOG", "debug")
        .output()
        .unwrap();
    // The export succeeded (exit 3: not delivered); the failed notification is a warning
    // and a failed delivery.
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let run: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let deliveries = recorded_deliveries(&p, &run);
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["retryable"], false, "{d}");
    let error = d["error"].as_str().unwrap();
    assert!(
        error.starts_with("channel `mail`: SMTP server 127.0.0.1:"),
        "{error}"
    );
    assert!(
        error.contains(&format!(":{} (starttls as `{}`)", m.starttls_port, m.user)),
        "{error}"
    );
    assert!(error.contains("535"), "{error}");
    let warnings = run["warnings"].to_string();
    assert!(
        warnings.contains("notify `mail`: channel `mail`"),
        "{warnings}"
    );

    let history = p.ferry(&["history", "--json"]);
    let store = std::fs::read(p.path().join("data/ferry.db")).unwrap();
    for (what, text) in [
        ("run output", describe(&out)),
        ("history", describe(&history)),
        ("store", String::from_utf8_lossy(&store).to_string()),
    ] {
        assert!(!text.contains(secret), "the password is in the {what}");
    }
}

#[test]
fn an_untrusted_certificate_is_a_permanent_failure() {
    let Some(m) = mail() else { return };
    // No ca_file: the test CA is not among the system's roots.
    let p = project(&format!(
        "  mail:\n    type: email\n    host: 127.0.0.1\n    port: {}\n    security: starttls\n    \
         from: ferry@example.test\n    to: [alice@example.test]\n",
        m.starttls_port
    ));
    id_task(&p, "untrusted", "notify: [mail]\n");
    let run = p.run_json("untrusted", &[], 3);
    let d = &recorded_deliveries(&p, &run)[0];
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["retryable"], false, "{d}");
    let error = d["error"].as_str().unwrap();
    assert!(error.contains("certificate"), "{error}");
    assert!(error.contains("ca_file"), "{error}");
}

#[test]
fn smtp_4xx_replies_are_retryable_and_5xx_permanent() {
    let Some(m) = mail() else { return };
    // test-services.sh makes Postfix answer 451 for tempfail@ and 550 for rejected@.
    let p = project(&plain_channel("mail", m.smtp_port));
    id_task(
        &p,
        "replies",
        "notify:\n  - { channel: mail, to: [tempfail@example.test] }\n  \
         - { channel: mail, to: [rejected@example.test] }\n  - mail\n",
    );
    let run = p.run_json("replies", &[], 3);
    let deliveries = recorded_deliveries(&p, &run);
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");
    let (temp, rejected, ok) = (&deliveries[0], &deliveries[1], &deliveries[2]);
    // Retried within the run, then left pending for `ferry serve`.
    assert_eq!(
        (temp["occurrence"].as_u64(), temp["status"].as_str()),
        (Some(1), Some("pending"))
    );
    assert_eq!(temp["retryable"], true, "{temp}");
    assert_eq!(temp["attempts"], 3, "{temp}");
    assert_eq!(rejected["attempts"], 1, "{rejected}");
    assert!(temp["error"].as_str().unwrap().contains("451"), "{temp}");
    assert_eq!(rejected["occurrence"], 2);
    assert_eq!(rejected["retryable"], false, "{rejected}");
    assert!(
        rejected["error"].as_str().unwrap().contains("550"),
        "{rejected}"
    );
    // The channel's third entry in the task is still delivered, with its own Message-ID.
    assert_eq!(ok["status"], "sent", "{ok}");
    let run_id = run["run_id"].as_str().unwrap();
    assert_eq!(ok["receipt"], format!("<{run_id}.mail.3@example.test>"));
    m.wait_for("alice@example.test", ok["receipt"].as_str().unwrap());
}

#[test]
fn a_recipient_refused_for_good_makes_the_run_exit_3() {
    let Some(m) = mail() else { return };
    let p = project(&plain_channel("mail", m.smtp_port));
    id_task(
        &p,
        "refused_rcpt",
        "notify:\n  - mail\n  - { channel: mail, to: [rejected@example.test] }\n",
    );
    let out = p.ferry(&["run", "refused_rcpt"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = crate::support::stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.starts_with(&format!(
            "error: task `refused_rcpt` exported, not delivered: `mail` (entry 2) failed: SMTP server 127.0.0.1:{} (none)",
            m.smtp_port
        )),
        "{line}"
    );
    assert!(line.contains("550"), "{line}");
}

// ---------------------------------------------------------------------------------------
// Tests that need no mail server.

#[test]
fn a_closed_port_is_a_retryable_failure() {
    let port = closed_port();
    let p = project(&plain_channel("mail", port));
    id_task(&p, "refused", "notify: [mail]\n");
    let run = p.run_json("refused", &[], 3);
    let d = &recorded_deliveries(&p, &run)[0];
    assert_eq!(d["status"], "pending", "{d}");
    assert_eq!(d["retryable"], true, "{d}");
    assert_eq!(d["attempts"], 3, "{d}");
    let error = d["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "channel `mail`: SMTP server 127.0.0.1:{port} (none)"
        )),
        "{error}"
    );
    assert!(error.to_lowercase().contains("refused"), "{error}");
}

#[test]
fn a_run_whose_delivery_is_not_made_exits_3_and_names_the_channel() {
    let port = closed_port();
    let p = project(&plain_channel("mail", port));
    id_task(&p, "undelivered", "notify: [box, mail]\n");
    let out = p.ferry(&["run", "undelivered"]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        stdout(&out).starts_with("succeeded: undelivered"),
        "{}",
        describe(&out)
    );
    let err = crate::support::stderr(&out);
    let summary: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(summary.len(), 1, "{err}");
    let line = summary[0];
    // The outbox delivery went out: only `mail` is named, with its state and reason.
    assert!(
        line.starts_with(
            "error: task `undelivered` exported, not delivered: `mail` pending, `ferry serve` retries it from 20"
        ),
        "{line}"
    );
    assert!(
        line.contains(&format!(": SMTP server 127.0.0.1:{port} (none)")),
        "{line}"
    );
    assert!(!line.contains("`box`"), "{line}");
    // Without notifications nothing is undelivered.
    let out = p.ferry(&["run", "undelivered", "--no-notify"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        !crate::support::stderr(&out).contains("not delivered"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_server_that_accepts_and_stays_silent_times_out_retryably() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and never says a word (like a TLS port spoken to in plain SMTP), for each
    // of the run's three attempts.
    let silent = std::thread::spawn(move || {
        for _ in 0..3 {
            let (conn, _) = listener.accept().unwrap();
            let mut buf = [0; 64];
            conn.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            // Holds the connection until ferry gives up and closes it.
            let _ = (&conn).read(&mut buf);
        }
    });
    let p = project(&format!("{}    timeout: 1s\n", plain_channel("mail", port)));
    id_task(&p, "silent", "notify: [mail]\n");
    let started = Instant::now();
    let run = p.run_json("silent", &[], 3);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let d = &recorded_deliveries(&p, &run)[0];
    assert_eq!(d["status"], "pending", "{d}");
    assert_eq!(d["retryable"], true, "{d}");
    assert_eq!(d["attempts"], 3, "{d}");
    let error = d["error"].as_str().unwrap();
    assert!(error.contains("made no progress for 1s"), "{error}");
    silent.join().unwrap();
}

#[test]
fn attachments_over_the_limit_are_refused_with_their_sizes() {
    let p = project(&format!(
        "{}    max_attachment_bytes: 100\n",
        plain_channel("mail", 9)
    ));
    p.write(
        "tasks/big.yaml",
        "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT * FROM t ORDER BY id\n\
         output: { format: csv, file_name: 大文件 }\nnotify: [mail]\n",
    );
    let run = p.run_json("big", &[], 3);
    let bytes = run["files"][0]["bytes"].as_u64().unwrap();
    assert!(bytes > 100);
    let d = &recorded_deliveries(&p, &run)[0];
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["retryable"], false, "{d}");
    let error = d["error"].as_str().unwrap();
    assert!(
        error.starts_with("channel `mail`: not sent: the attachments total"),
        "{error}"
    );
    assert!(
        error.contains(&format!("({bytes} bytes: 大文件.csv ")),
        "{error}"
    );
    assert!(
        error.contains("max_attachment_bytes of 100 B (100 bytes)"),
        "{error}"
    );
    assert!(run["warnings"].to_string().contains("not sent"), "{run}");
}

#[test]
fn channels_test_sends_a_test_message_through_real_smtp() {
    let Some(m) = mail() else { return };
    let p = project(&plain_channel("mail", m.smtp_port));
    let out = p.ferry(&["channels"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let listing = crate::support::stdout(&out);
    assert!(
        listing
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "mail",
                    "email",
                    "smtp",
                    &format!("127.0.0.1:{}", m.smtp_port),
                    "(plain)",
                    "0"
                ]),
        "{listing}"
    );
    let out = p.ferry(&["channels", "test", "mail", "--to", "bob@example.test"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let line = crate::support::stdout(&out);
    let message_id = line
        .trim()
        .strip_prefix("ok   mail (email): ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let raw = m.wait_for("bob@example.test", &message_id);
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        parsed.subject(),
        Some("[ferry] test message from channel mail")
    );
    assert!(
        !m.has("alice@example.test", &message_id),
        "--to replaces the defaults"
    );
}

#[test]
fn owner_alerts_reach_the_owners_by_email() {
    let Some(m) = mail() else { return };
    let p = project(&plain_channel("mail", m.smtp_port));
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &format!("{config}alerts: {{ channel: mail }}\n"),
    );
    for part in ["alert.md.j2", "alert.subject.j2"] {
        let text = std::fs::read_to_string(repo().join("templates").join(part)).unwrap();
        p.write(&format!("templates/{part}"), &text);
    }
    p.write(
        "tasks/failing.yaml",
        "owners: [bob@example.test]\nschedule: '0 6 * * *'\nsource: db\nquery: SELECT * FROM no_such_table\noutput: { format: csv }\n",
    );
    let run = p.run_json("failing", &[], 1);
    let message_id = format!(
        "<{}.mail-alert@example.test>",
        run["run_id"].as_str().unwrap()
    );
    let raw = m.wait_for("bob@example.test", &message_id);
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.subject(), Some("[ferry] ALERT failing: run failed"));
    assert!(
        parsed
            .body_text(0)
            .unwrap()
            .contains("no such table: no_such_table")
    );
    // The channel's own `to` (alice) is not an owner: alerts go to the owners only.
    assert!(!m.has("alice@example.test", &message_id));
}

#[test]
fn too_big_files_are_zipped_to_fit_the_limit() {
    let Some(m) = mail() else { return };
    let p = project(&format!(
        "{}    max_attachment_bytes: 60000\n",
        plain_channel("mail", m.smtp_port)
    ));
    // About 300 KB of very compressible CSV.
    p.write(
        "tasks/wide.yaml",
        "schedule: \"0 3 * * *\"\nsource: db\nquery: |\n  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000)\n  SELECT x, 'the same text on every row of this export' AS t FROM c\noutput: { format: csv, file_name: 明细 }\nnotify: [mail]\n",
    );
    let run = p.run_json("wide", &[], 0);
    let csv_bytes = run["files"][0]["bytes"].as_u64().unwrap();
    assert!(csv_bytes > 60000, "{run}");
    let message_id = sent_message_id(&p, &run);
    let raw = m.wait_for("alice@example.test", &message_id);
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let attachments: Vec<_> = parsed.attachments().collect();
    assert_eq!(attachments.len(), 1);
    assert_eq!(attachments[0].attachment_name(), Some("明细.zip"));
    assert!(
        parsed
            .body_text(0)
            .unwrap()
            .contains("The files were zipped to fit this channel's size limit ("),
        "{:?}",
        parsed.body_text(0)
    );
    // The zip holds the published file, byte for byte.
    let zip_bytes = attachments[0].contents().to_vec();
    assert!((zip_bytes.len() as u64) < 60000);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    assert_eq!(archive.len(), 1);
    let mut member = archive.by_index(0).unwrap();
    assert_eq!(member.name().unwrap(), "明细.csv");
    let mut csv = Vec::new();
    std::io::Read::read_to_end(&mut member, &mut csv).unwrap();
    assert_eq!(sha256(&csv), run["files"][0]["sha256"].as_str().unwrap());
}

#[test]
fn a_task_entry_with_delivery_link_sends_the_link_and_no_attachment_on_an_attach_channel() {
    let Some(m) = mail() else { return };
    let p = project(&format!(
        "{}    delivery: attach\n",
        plain_channel("mail", m.smtp_port)
    ));
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &format!(
            "links:\n  public_url: https://files.example.test/ferry\n  \
             signing_key: \"k7Vq2-Lm9Xw4Rt8Zp3Nc6Bh1Df5Gs0Ja\"\n{config}"
        ),
    );
    // The same channel twice: the entry's `link` first, then the channel's `attach`.
    p.write(
        "tasks/linked.yaml",
        "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT * FROM t ORDER BY id\n\
         output: { format: csv, file_name: 链接 }\n\
         notify:\n  - { channel: mail, delivery: link }\n  - mail\n",
    );
    let run = p.run_json("linked", &[], 0);
    let deliveries = recorded_deliveries(&p, &run);
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    assert!(
        deliveries.iter().all(|d| d["status"] == "sent"),
        "{deliveries:?}"
    );

    let raw = m.wait_for(
        "alice@example.test",
        deliveries[0]["receipt"].as_str().unwrap(),
    );
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.attachments().count(), 0);
    let text = parsed.body_text(0).unwrap().to_string();
    let html = parsed.body_html(0).unwrap().to_string();
    assert!(
        text.contains(
            "are not attached (this task sends links): download them from https://files.example.test/ferry/d/"
        ),
        "{text}"
    );
    assert!(
        html.contains("are not attached (this task sends links)"),
        "{html}"
    );

    // The channel's own `attach` still applies to the entry without `delivery`.
    let raw = m.wait_for(
        "alice@example.test",
        deliveries[1]["receipt"].as_str().unwrap(),
    );
    let parsed = MessageParser::default().parse(&raw).unwrap();
    assert_attachments(&p, &raw, &parsed, &run);
    assert!(
        !parsed.body_text(0).unwrap().contains("are not attached"),
        "{:?}",
        parsed.body_text(0)
    );
}
