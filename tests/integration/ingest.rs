//! Query by email, the verdicts: `ferry ingest check` on the mail corpus of
//! `tests/fixtures/mail/` (real client shapes, spoofing and machine-mail variants, SQL
//! that tries to write) must give each mail the verdict `verdicts.txt` documents.

use std::path::Path;
use std::process::Command;

use crate::support::{FERRY, describe, repo, stdout};

fn corpus() -> std::path::PathBuf {
    repo().join("tests/fixtures/mail")
}

fn check(file: &Path, json: bool) -> std::process::Output {
    let config = corpus().join("config.yaml");
    let mut args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "ingest".into(),
        "check".into(),
        file.display().to_string(),
    ];
    if json {
        args.push("--json".into());
    }
    Command::new(FERRY).args(&args).output().unwrap()
}

fn verdict_of(name: &str) -> serde_json::Value {
    let out = check(&corpus().join(format!("{name}.eml")), true);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{name}: {e}: {}", describe(&out)))
}

#[test]
fn every_mail_of_the_corpus_gets_its_documented_verdict() {
    let table = std::fs::read_to_string(corpus().join("verdicts.txt")).unwrap();
    let expected: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    // Every mail in the folder is in the table, and the other way round.
    let mut files: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "eml").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    files.sort();
    let mut listed: Vec<String> = expected.iter().map(|e| e[0].to_string()).collect();
    listed.sort();
    assert_eq!(files, listed, "verdicts.txt and the .eml files differ");
    assert!(files.len() >= 45, "the corpus lost mails: {}", files.len());

    let mut failures = Vec::new();
    for e in &expected {
        let out = check(&corpus().join(format!("{}.eml", e[0])), true);
        let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(err) => {
                failures.push(format!("{}: {err}: {}", e[0], describe(&out)));
                continue;
            }
        };
        let got = [
            v["verdict"].as_str().unwrap_or("").to_string(),
            v["reason"].as_str().unwrap_or("").to_string(),
            match v["reply"].as_bool() {
                Some(true) => "reply".into(),
                Some(false) => "silent".into(),
                None => String::new(),
            },
        ];
        let want: Vec<String> = (1..4)
            .map(|i| e.get(i).unwrap_or(&"").to_string())
            .collect();
        if got.as_slice() != want.as_slice() {
            failures.push(format!(
                "{}: got {got:?}, want {want:?} ({})",
                e[0], v["detail"]
            ));
        }
        let code = out.status.code();
        let want_code = if want[0] == "accept" { 0 } else { 1 };
        if code != Some(want_code) {
            failures.push(format!("{}: exit {code:?}, want {want_code}", e[0]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn queries_are_decoded_from_the_senders_charset_and_named_after_their_files() {
    let v = verdict_of("outlook_rfc2047");
    assert_eq!(v["database"], "sales");
    assert_eq!(v["queries"][0]["file_name"], "订单明细.sql");
    assert_eq!(v["queries"][0]["stem"], "订单明细");
    let sql = v["queries"][0]["sql"].as_str().unwrap();
    assert!(
        sql.starts_with("SELECT id, '已发货'"),
        "BOM left in or text garbled: {sql:?}"
    );

    let v = verdict_of("foxmail_gbk");
    assert_eq!(v["queries"][0]["file_name"], "月报.sql");
    assert!(
        v["queries"][0]["sql"].as_str().unwrap().contains("'退货'"),
        "{v}"
    );
    assert_eq!(v["sender"], "alice@corp.example");

    let v = verdict_of("gmail_rfc2231");
    assert_eq!(v["queries"][0]["file_name"], "月报.sql");

    let v = verdict_of("utf16_bom");
    assert_eq!(v["queries"][0]["sql"], "SELECT '订单' AS x");

    let v = verdict_of("two_attachments");
    let stems: Vec<&str> = v["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["stem"].as_str().unwrap())
        .collect();
    assert_eq!(stems, ["orders", "Orders_2"]);

    // The SQL in the body text of an inline iOS attachment is the query, not the body.
    let v = verdict_of("ios_inline");
    assert_eq!(v["queries"].as_array().unwrap().len(), 1);
    assert_eq!(v["queries"][0]["file_name"], "q.sql");
}

#[test]
fn the_human_form_says_what_happens_next() {
    let out = check(&corpus().join("forged_ar_below.eml"), false);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text.contains("verdict:  reject"), "{text}");
    assert!(text.contains("reason:   auth_failed"), "{text}");
    assert!(text.contains("reply:    none"), "{text}");
    // A rejection that is answered shows the reply's words.
    let out = check(&corpus().join("database_not_permitted.eml"), false);
    let text = stdout(&out);
    assert!(text.contains("Subject: Re: report"), "{text}");
    assert!(
        text.contains("The databases you may query: sales, pg."),
        "{text}"
    );
    let v = verdict_of("write_delete");
    assert!(
        v["reply_body"]
            .as_str()
            .unwrap()
            .contains("orders.sql: only a read-only query"),
        "{v}"
    );
    assert!(verdict_of("forged_ar_below").get("reply_body").is_none());
    let out = check(&corpus().join("gmail_rfc2231.eml"), false);
    let text = stdout(&out);
    assert!(text.contains("query:    月报.sql -> 月报.xlsx"), "{text}");
}

#[test]
fn check_needs_an_ingest_section_and_a_regular_file() {
    let p = crate::support::Project::fixture("project");
    let out = p.ferry(&["ingest", "check", "x.eml"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no `ingest:` section"),
        "{}",
        describe(&out)
    );
    let out = check(&corpus(), false);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a regular file"),
        "{}",
        describe(&out)
    );
}
