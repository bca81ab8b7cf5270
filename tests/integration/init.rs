//! `ferry init`: the starter project validates and every task runs at once on its SQLite
//! example; its commented examples (PostgreSQL, MySQL, email, DingTalk) validate once
//! uncommented with their variables set; existing files are never overwritten.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{FERRY, describe, stdout};

fn ferry(dir: &Path, args: &[&str]) -> Output {
    Command::new(FERRY)
        .current_dir(dir)
        .args(args)
        .env_remove("FERRY_LOG")
        .output()
        .unwrap()
}

fn task_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("tasks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn the_starter_project_validates_and_every_task_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ferry(tmp.path(), &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("ferry run daily_orders"),
        "{}",
        describe(&out)
    );
    let out = ferry(tmp.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(out.stderr.is_empty(), "no warning: {}", describe(&out));
    // The schemas the files name are there, as `ferry schema` prints them.
    for kind in ["config", "task"] {
        let written =
            std::fs::read_to_string(tmp.path().join(format!("schemas/{kind}.schema.json")))
                .unwrap();
        assert_eq!(written, stdout(&ferry(tmp.path(), &["schema", kind])));
    }
    let config = std::fs::read_to_string(tmp.path().join("config.yaml")).unwrap();
    assert!(config.starts_with("# yaml-language-server: $schema=schemas/config.schema.json\n"));
    let names = task_names(tmp.path());
    assert_eq!(names, ["daily_orders", "monthly_summary"]);
    for name in &names {
        let out = ferry(tmp.path(), &["run", name, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", describe(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["status"], "succeeded", "{json}");
        assert!(
            json["rows"].as_u64().unwrap() > 0,
            "{name}: no rows: {json}"
        );
        let file = json["files"][0]["path"].as_str().unwrap();
        assert!(tmp.path().join(file).is_file(), "{file}");
        assert_eq!(json["deliveries"][0]["status"], "sent", "{json}");
    }
}

/// The text with every commented-out example line turned back into YAML: a `#` followed
/// by text or by two spaces (a nested line) is an example; `# ` and one space is prose.
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|l| {
            let body = l.trim_start();
            match body.strip_prefix('#') {
                Some(rest)
                    if !rest.trim().is_empty()
                        && (!rest.starts_with(' ') || rest.starts_with("  ")) =>
                {
                    format!("{}{rest}\n", &l[..l.len() - body.len()])
                }
                _ => format!("{l}\n"),
            }
        })
        .collect()
}

#[test]
fn the_commented_examples_become_real_with_their_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/project");
    let out = ferry(tmp.path(), &["init", "new/project"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    for rel in ["config.yaml", "tasks/daily_orders.yaml"] {
        let text = std::fs::read_to_string(dir.join(rel)).unwrap();
        let real = uncomment(&text);
        assert_ne!(real, text, "{rel} has commented examples");
        std::fs::write(dir.join(rel), real).unwrap();
    }
    let config = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
    for section in ["warehouse:", "shop:", "mail:", "ding:"] {
        assert!(
            config.contains(&format!("\n  {section}\n")),
            "{section}\n{config}"
        );
    }
    let vars = [
        ("PG_USER", "reader"),
        ("PG_PASSWORD", "pg-secret"),
        ("PG_HOST", "pg.example.test"),
        ("PG_DATABASE", "sales"),
        ("MYSQL_USER", "reader"),
        ("MYSQL_PASSWORD", "my-secret"),
        ("MYSQL_HOST", "my.example.test"),
        ("MYSQL_DATABASE", "shop"),
        ("SMTP_HOST", "smtp.example.test"),
        ("SMTP_USER", "reports@example.test"),
        ("SMTP_PASSWORD", "smtp-secret"),
        ("MAIL_FROM", "Reports <reports@example.test>"),
        ("MAIL_TO", "team@example.test"),
        ("DING_TOKEN", "0123456789abcdef"),
        ("DING_SECRET", "SEC0123456789abcdef"),
    ];
    let validate = |with: &[(&str, &str)]| {
        let mut cmd = Command::new(FERRY);
        cmd.current_dir(&dir)
            .arg("validate")
            .env_remove("FERRY_LOG");
        for (k, _) in &vars {
            cmd.env_remove(k);
        }
        cmd.envs(with.iter().copied());
        cmd.output().unwrap()
    };
    let out = validate(&vars);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // Without the variables, each is named.
    let out = validate(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    // (The first missing one of each field.)
    for k in [
        "PG_USER",
        "MYSQL_USER",
        "SMTP_HOST",
        "SMTP_USER",
        "SMTP_PASSWORD",
        "MAIL_FROM",
        "MAIL_TO",
        "DING_TOKEN",
        "DING_SECRET",
    ] {
        assert!(err.contains(&format!("`{k}` is not set")), "{k}: {err}");
    }
}

#[test]
fn init_never_overwrites_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("tasks")).unwrap();
    std::fs::write(tmp.path().join("tasks/daily_orders.yaml"), "mine\n").unwrap();
    let out = ferry(tmp.path(), &["init", "."]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        "error: . already has tasks/daily_orders.yaml: ferry init never overwrites a file \
         (choose a new or empty folder, e.g. `ferry init my-exports`, or move it away)\n"
    );
    // Nothing was written, the user's file is untouched.
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("tasks/daily_orders.yaml")).unwrap(),
        "mine\n"
    );
    assert!(!tmp.path().join("config.yaml").exists());
}
