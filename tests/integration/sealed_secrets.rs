//! Secrets kept out of plain text (issue 15 item 4): `ferry secrets keygen`, `encrypt`
//! and `rotate` through the binary; a DingTalk robot whose token and signing secret are
//! `enc:v1:` values signs a real message that the fake robot checks; a wrong key, a
//! missing key file and a tampered value each fail naming file, line and field; `*_file`
//! fields read from `$CREDENTIALS_DIRECTORY`; `ferry validate` warns about plain-text
//! secrets in files others can read. No output of any of it shows a secret.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};

use crate::fake_robots::{FakeRobots, Settings};
use crate::support::{CONFIG_HEAD, Project, describe, only_task, stderr, stdout};

const TOKEN: &str = "SEALEDTOKEN-1a";
const SIGN: &str = "SECSEALEDSIGN-2b";
const LINK_KEY: &str = "LINKKEY-3c-0123456789abcdefghijklmnopqrstuvwxyz";

/// `ferry ARGS` with the key file `key` (relative to the project) and `stdin`.
fn ferry_with(p: &Project, key: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut cmd = p.command(args);
    cmd.env_remove("FERRY_SECRETS_KEY")
        .env_remove("FERRY_SECRETS_KEY_FILE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("CREDENTIALS_DIRECTORY", p.path().join("creds"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(k) = key {
        cmd.env("FERRY_SECRETS_KEY_FILE", p.path().join(k));
    }
    let mut child = cmd.spawn().expect("run ferry");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn seal(p: &Project, key: &str, secret: &str) -> String {
    let out = ferry_with(
        p,
        Some(key),
        &["secrets", "encrypt"],
        &format!("{secret}\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let token = stdout(&out).trim().to_string();
    assert!(token.starts_with("enc:v1:"), "{token}");
    assert!(!token.contains(secret));
    token
}

fn assert_no_secret(outputs: &[&Output]) {
    for out in outputs {
        let text = format!("{}{}", stdout(out), stderr(out));
        for s in [TOKEN, SIGN, LINK_KEY] {
            assert!(!text.contains(s), "output shows {s}:\n{text}");
        }
    }
}

fn config(base: &str, token: &str, sign: &str) -> String {
    format!(
        "# the team's robot; sealed values (ferry secrets encrypt)
timezone: UTC
store: {{ url: \"sqlite://data/ferry.db\" }}
links:
  public_url: http://127.0.0.1:8480
  signing_key_file: link.key   # in $CREDENTIALS_DIRECTORY
datasources:
  db: {{ type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }}
channels:
  ding:
    type: dingtalk
    webhook: \"{base}/robot/send?access_token={token}\"
    secret: {sign}    # 加签
"
    )
}

#[test]
fn sealed_values_open_sign_fail_clearly_and_rotate_in_place() {
    let fake = FakeRobots::start(Settings {
        dingtalk_token: TOKEN.into(),
        dingtalk_secret: SIGN.into(),
        ..Settings::default()
    });
    let p = Project::fixture("project");
    only_task(
        &p,
        "ok",
        "schedule: \"0 6 * * *\"\nsource: db\nquery: SELECT 1 AS n\noutput: { format: csv }\nnotify: [ding]\n",
    );
    p.write("creds/link.key", &format!("{LINK_KEY}\n"));
    std::fs::set_permissions(
        p.path().join("creds/link.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    // keygen writes a key only its owner can read, and never replaces one.
    let out = ferry_with(&p, None, &["secrets", "keygen", "--out", "old.key"], "");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mode = std::fs::metadata(p.path().join("old.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = ferry_with(&p, None, &["secrets", "keygen", "--out", "old.key"], "");
    assert_ne!(again.status.code(), Some(0), "{}", describe(&again));

    let token = seal(&p, "old.key", TOKEN);
    let sign = seal(&p, "old.key", SIGN);
    p.write("config.yaml", &config(&fake.base(), &token, &sign));
    std::fs::set_permissions(
        p.path().join("config.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    // With the key: valid, no plain-text warning (nothing is plain), and the robot gets a
    // message signed with the opened secret (the fake checks the signature).
    let valid = ferry_with(&p, Some("old.key"), &["validate"], "");
    assert_eq!(valid.status.code(), Some(0), "{}", describe(&valid));
    assert!(!stderr(&valid).contains("warning"), "{}", describe(&valid));
    let sent = ferry_with(&p, Some("old.key"), &["channels", "test", "ding"], "");
    assert_eq!(sent.status.code(), Some(0), "{}", describe(&sent));
    let got = fake.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].answer.0, 200, "{:?}", got[0].answer);
    assert!(
        got[0].answer.1.contains("\"errcode\":0"),
        "{:?}",
        got[0].answer
    );

    // Without a key, with a missing key file, with another key, with a tampered value:
    // exit 2, naming file, line and field.
    let no_key = ferry_with(&p, None, &["validate"], "");
    assert_eq!(no_key.status.code(), Some(2), "{}", describe(&no_key));
    assert!(
        stderr(&no_key).contains("config.yaml:12:14: channels.ding.webhook: no key to open"),
        "{}",
        describe(&no_key)
    );
    let missing = ferry_with(&p, Some("nope.key"), &["validate"], "");
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
    assert!(
        stderr(&missing).contains("cannot read key file")
            && stderr(&missing).contains("nope.key: file not found"),
        "{}",
        describe(&missing)
    );
    let out = ferry_with(&p, None, &["secrets", "keygen", "--out", "other.key"], "");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let wrong = ferry_with(&p, Some("other.key"), &["validate"], "");
    assert_eq!(wrong.status.code(), Some(2), "{}", describe(&wrong));
    let e = stderr(&wrong);
    assert!(
        e.contains("config.yaml:12:14: channels.ding.webhook:")
            && e.contains("config.yaml:13:13: channels.ding.secret:")
            && e.contains("sealed with another key"),
        "{e}"
    );
    // One character of the secret's value changed (keeping it valid base64url).
    let body = &sign["enc:v1:".len()..];
    let mid = body.len() / 2;
    let flipped = if &body[mid..=mid] == "A" { "B" } else { "A" };
    let tampered_sign = format!("enc:v1:{}{flipped}{}", &body[..mid], &body[mid + 1..]);
    p.write("config.yaml", &config(&fake.base(), &token, &tampered_sign));
    let tampered = ferry_with(&p, Some("old.key"), &["validate"], "");
    assert_eq!(tampered.status.code(), Some(2), "{}", describe(&tampered));
    assert!(
        stderr(&tampered).contains("config.yaml:13:13: channels.ding.secret:")
            && stderr(&tampered).contains("tampered"),
        "{}",
        describe(&tampered)
    );

    // Rotation: every value sealed again with the new key, the file otherwise unchanged;
    // the old key no longer opens it; a value the current key cannot open stops it with
    // nothing written.
    let original = config(&fake.base(), &token, &sign);
    p.write("config.yaml", &original);
    let out = ferry_with(&p, None, &["secrets", "keygen", "--out", "new.key"], "");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let refused = ferry_with(
        &p,
        Some("other.key"),
        &["secrets", "rotate", "--new-key-file", "new.key"],
        "",
    );
    assert_eq!(refused.status.code(), Some(2), "{}", describe(&refused));
    assert!(
        stderr(&refused).contains("nothing was changed")
            && stderr(&refused).contains("config.yaml:12: webhook:"),
        "{}",
        describe(&refused)
    );
    let read = || std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    assert_eq!(read(), original);
    let rotated = ferry_with(
        &p,
        Some("old.key"),
        &["secrets", "rotate", "--new-key-file", "new.key"],
        "",
    );
    assert_eq!(rotated.status.code(), Some(0), "{}", describe(&rotated));
    assert!(
        stdout(&rotated).contains("config.yaml: 2 of 2 value(s) sealed again"),
        "{}",
        describe(&rotated)
    );
    let text = read();
    assert_ne!(text, original);
    let unsealed = |t: &str| {
        let mut t = t.to_string();
        for r in ferry::config::secrets::find_tokens(&t.clone())
            .into_iter()
            .rev()
        {
            t.replace_range(r, "SEALED");
        }
        t
    };
    assert_eq!(
        unsealed(&text),
        unsealed(&original),
        "comments and layout kept"
    );
    let mode = std::fs::metadata(p.path().join("config.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "permissions kept");
    let new_ok = ferry_with(&p, Some("new.key"), &["channels", "test", "ding"], "");
    assert_eq!(new_ok.status.code(), Some(0), "{}", describe(&new_ok));
    let old_no = ferry_with(&p, Some("old.key"), &["validate"], "");
    assert_eq!(old_no.status.code(), Some(2), "{}", describe(&old_no));

    assert_no_secret(&[
        &valid, &sent, &no_key, &missing, &wrong, &tampered, &refused, &rotated, &new_ok, &old_no,
    ]);
}

#[test]
fn validate_warns_about_plain_secrets_others_can_read() {
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        &format!(
            "{CONFIG_HEAD}links:
  public_url: http://127.0.0.1:8480
  signing_key: {LINK_KEY}
datasources:
  db: {{ type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }}
  pg: {{ type: postgres, url: \"postgres://app:{TOKEN}@127.0.0.1:1/x\" }}
  pg2: {{ type: postgres, url: \"postgres://app@127.0.0.1:1/x\", password_file: pg.pass }}
channels:
  box: {{ type: outbox }}
  wc: {{ type: wecom, webhook_file: wecom.url }}
"
        ),
    );
    p.write("creds/pg.pass", &format!("{SIGN}\n"));
    p.write(
        "creds/wecom.url",
        &format!("https://qyapi.example.test/cgi-bin/webhook/send?key={TOKEN}\n"),
    );
    let chmod = |rel: &str, mode: u32| {
        std::fs::set_permissions(p.path().join(rel), std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod("config.yaml", 0o644);
    chmod("creds/pg.pass", 0o640);
    chmod("creds/wecom.url", 0o600);
    let out = ferry_with(&p, None, &["validate"], "");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let e = stderr(&out);
    assert!(
        e.contains("warning: config.yaml:5:16: links.signing_key: a secret in plain text in a file that everyone can read"),
        "{e}"
    );
    assert!(
        e.contains("warning: config.yaml:8:30: datasources.pg.url: a secret in plain text"),
        "{e}"
    );
    assert!(
        e.contains("pg.pass: secret file that its group can read"),
        "{e}"
    );
    assert_eq!(e.matches("warning:").count(), 3, "{e}");

    chmod("config.yaml", 0o600);
    chmod("creds/pg.pass", 0o600);
    let quiet = ferry_with(&p, None, &["validate"], "");
    assert_eq!(quiet.status.code(), Some(0), "{}", describe(&quiet));
    assert!(!stderr(&quiet).contains("warning"), "{}", describe(&quiet));
    // The webhook read from its file is used (and shown redacted).
    let channels = ferry_with(&p, None, &["channels"], "");
    assert_eq!(channels.status.code(), Some(0), "{}", describe(&channels));
    assert!(
        stdout(&channels).contains("https://qyapi.example.test/")
            && stdout(&channels).contains("?key=***"),
        "{}",
        describe(&channels)
    );

    // A `*_file` that is missing, and one given beside its value.
    p.write(
        "config.yaml",
        "timezone: UTC
links:
  public_url: http://127.0.0.1:8480
  signing_key: x
  signing_key_file: link.key
datasources:
  pg2: { type: postgres, url: \"postgres://app@127.0.0.1:1/x\", password_file: missing.pass }
channels:
  box: { type: outbox }
  ding: { type: dingtalk }
",
    );
    let bad = ferry_with(&p, None, &["validate"], "");
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    let e = stderr(&bad);
    assert!(
        e.contains("config.yaml:5:21: links.signing_key_file: give `signing_key` or `signing_key_file`, not both"),
        "{e}"
    );
    assert!(
        e.contains("datasources.pg2.password_file: cannot read")
            && e.contains("missing.pass: file not found (a relative name is looked up in $CREDENTIALS_DIRECTORY)"),
        "{e}"
    );
    assert!(
        e.contains(
            "config.yaml:10:9: channels.ding.webhook: missing `webhook`: the robot's webhook URL"
        ),
        "{e}"
    );
    assert_no_secret(&[&out, &quiet, &channels, &bad]);
}
