//! Query by email against a real IMAP server (Dovecot from `scripts/test-services.sh`):
//! the session ferry's poller uses reads size, flags and headers first, reads bodies
//! without setting `\Seen`, and moves handled mail; `ferry ingest test` reports the
//! account. Mail is put into the request folder by IMAP `APPEND`, byte for byte. Each
//! test uses folders of its own in the `ferry@example.test` account.

use std::time::Duration;

use ferry::config::{ImapSpec, Secret, SmtpSecurity};
use ferry::ingest::imap::Imap;

use crate::email::{Imap as Raw, Mail, mail};
use crate::support::{Project, describe, repo, stdout};

pub(crate) fn password() -> String {
    std::env::var("FERRY_TEST_SMTP_PASSWORD").expect("FERRY_TEST_SMTP_PASSWORD")
}

fn spec(m: &Mail, password: &str) -> ImapSpec {
    ImapSpec {
        host: "127.0.0.1".into(),
        port: m.imap_port,
        security: SmtpSecurity::None,
        username: m.user.clone(),
        password: Secret::new(password),
        ca_file: None,
        timeout: Duration::from_secs(20),
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/mail").join(name)).unwrap()
}

/// Flags of every message in `folder`, by UID, read with a raw client.
fn flags(raw: &mut Raw, folder: &str) -> Vec<String> {
    raw.command(&format!("SELECT \"{folder}\""));
    raw.command("UID FETCH 1:* (FLAGS)")
        .iter()
        .map(|l| String::from_utf8_lossy(l).to_string())
        .filter(|l| l.contains("FETCH"))
        .collect()
}

#[tokio::test]
async fn the_session_reads_headers_first_peeks_bodies_and_moves_mail() {
    let Some(m) = mail() else { return };
    let (req, done, rejected) = ("t1-requests", "t1-processed", "t1-rejected");
    let mut raw = Raw::login(m.imap_port, &m.user, &password());
    raw.command(&format!("CREATE \"{req}\""));
    let small = fixture("outlook_rfc2047.eml");
    let big = fixture("too_large.eml");
    raw.append(req, &small);
    raw.append(req, &big);

    let mut s = Imap::connect(&spec(&m, &password())).await.unwrap();
    assert!(s.can_move && s.uidplus, "Dovecot offers MOVE and UIDPLUS");
    let created = s.ensure_folders(&[req, done, rejected]).await.unwrap();
    assert_eq!(created, [done, rejected]);
    assert!(
        s.ensure_folders(&[req, done, rejected])
            .await
            .unwrap()
            .is_empty()
    );
    let validity = s.select(req).await.unwrap();
    assert!(validity > 0);
    let uids = s.uids().await.unwrap();
    assert_eq!(uids.len(), 2, "{uids:?}");

    let meta = s.meta(&uids).await.unwrap();
    assert_eq!(meta[0].size, small.len() as u64);
    assert_eq!(meta[1].size, big.len() as u64);
    assert!(!meta[0].deleted);
    let header = String::from_utf8_lossy(&meta[1].header);
    assert!(
        header.contains("Message-ID: <req39@mail.corp.example>"),
        "{header}"
    );
    assert!(
        header.ends_with("\r\n\r\n"),
        "the header section only: {header:?}"
    );
    assert!(
        !header.contains("database:"),
        "the body was fetched: {header}"
    );

    // The body comes back byte for byte, and reading it marks nothing as seen.
    let body = s.body(uids[0]).await.unwrap().unwrap();
    assert_eq!(body, small);
    assert!(s.body(999_999).await.unwrap().is_none());
    let seen = flags(&mut raw, req);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|l| !l.contains("\\Seen")), "{seen:?}");

    s.move_to(uids[0], done).await.unwrap();
    s.move_to(uids[1], rejected).await.unwrap();
    assert!(s.uids().await.unwrap().is_empty());
    let counts = s
        .counts(&[req, done, rejected, "t1-nowhere"])
        .await
        .unwrap();
    assert_eq!(counts[req], Some(0));
    assert_eq!(counts[done], Some(1));
    assert_eq!(counts[rejected], Some(1));
    assert_eq!(counts["t1-nowhere"], None);
    s.logout().await;

    // What arrived in Processed is the same message.
    raw.command(&format!("SELECT \"{done}\""));
    let moved = raw.command("UID FETCH 1:* BODY.PEEK[]");
    assert!(
        moved.iter().any(|l| l == &small),
        "the moved message differs"
    );
    raw.logout();
}

#[tokio::test]
async fn a_wrong_password_is_a_login_error_without_the_password() {
    let Some(m) = mail() else { return };
    let err = match Imap::connect(&spec(&m, "not-the-password-7f3a")).await {
        Ok(_) => panic!("logged in with a wrong password"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("refused the login of `ferry@example.test`"),
        "{err}"
    );
    assert!(!err.contains("not-the-password-7f3a"), "{err}");
}

pub(crate) fn project(m: &Mail, requests: &str) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &format!(
            "{config}\n  ingest_reply:\n    type: email\n    host: 127.0.0.1\n    port: {smtp}\n    security: none\n    from: {user}\ningest:\n  imap:\n    host: 127.0.0.1\n    port: {imap}\n    security: none\n    username: {user}\n    password: ${{FERRY_TEST_SMTP_PASSWORD}}\n  folders:\n    requests: {requests}\n    processed: {requests}-processed\n    rejected: {requests}-rejected\n    ignored: {requests}-ignored\n  authserv_id: mx.example.test\n  senders:\n    - address: alice@example.test\n      databases: [db]\n  reply:\n    channel: ingest_reply\n",
            smtp = m.smtp_port,
            imap = m.imap_port,
            user = m.user,
        ),
    );
    p
}

#[test]
fn ingest_test_reports_the_account_and_its_folders() {
    let Some(m) = mail() else { return };
    let mut raw = Raw::login(m.imap_port, &m.user, &password());
    raw.command("CREATE \"t3-requests\"");
    raw.append("t3-requests", &fixture("gmail_rfc2231.eml"));
    raw.logout();
    let p = project(&m, "t3-requests");
    let out = p.ferry(&["ingest", "test"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(text.contains("ok   imap: 127.0.0.1:"), "{text}");
    assert!(text.contains("MOVE yes, UIDPLUS yes"), "{text}");
    assert!(
        text.contains("requests   t3-requests: 1 message(s)"),
        "{text}"
    );
    assert!(
        text.contains("processed  t3-requests-processed: missing (created at the first poll)"),
        "{text}"
    );
    assert!(text.contains("replies through `ingest_reply`"), "{text}");
    assert!(!text.contains(&password()), "{text}");

    // The password read from a file (`password_file`) logs in the same.
    p.write("imap-password", &format!("{}\n", password()));
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    assert!(config.contains("    password: ${FERRY_TEST_SMTP_PASSWORD}\n"));
    p.write(
        "config.yaml",
        &config.replace(
            "    password: ${FERRY_TEST_SMTP_PASSWORD}\n",
            "    password_file: imap-password\n",
        ),
    );
    let out = p.ferry(&["ingest", "test"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("ok   imap: 127.0.0.1:"),
        "{}",
        describe(&out)
    );

    // A request folder that does not exist is a failure.
    let p = project(&m, "t3-nowhere");
    let out = p.ferry(&["ingest", "test"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stdout(&out).contains("FAIL requests   t3-nowhere: no such folder"),
        "{}",
        describe(&out)
    );
}

/// The account over implicit TLS and over STARTTLS, trusting the test CA; a session
/// without it is refused with the certificate named as the reason.
#[tokio::test]
async fn tls_and_starttls_check_the_servers_certificate() {
    let Some(m) = mail() else { return };
    let imaps: u16 = std::env::var("FERRY_TEST_IMAPS_PORT")
        .expect("FERRY_TEST_IMAPS_PORT")
        .parse()
        .unwrap();
    let ca = std::path::PathBuf::from(std::env::var("FERRY_TEST_SMTP_CA").expect("CA"));
    for (security, port) in [
        (SmtpSecurity::Tls, imaps),
        (SmtpSecurity::StartTls, m.imap_port),
    ] {
        let mut s = spec(&m, &password());
        s.security = security;
        s.port = port;
        s.ca_file = Some(ca.clone());
        let mut imap = Imap::connect(&s)
            .await
            .unwrap_or_else(|e| panic!("{security:?}: {e}"));
        assert!(imap.folders().await.unwrap().iter().any(|f| f == "INBOX"));
        imap.logout().await;
        // Without the private CA the certificate is not trusted.
        s.ca_file = None;
        let err = match Imap::connect(&s).await {
            Ok(_) => panic!("{security:?}: an untrusted certificate was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("TLS handshake failed"), "{security:?}: {err}");
        assert!(!err.contains(&password()), "{err}");
    }
}
