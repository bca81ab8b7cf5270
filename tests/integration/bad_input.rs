//! The bad-input corpus: each folder of `tests/fixtures/bad/` is laid over `_base/` (files
//! listed in its `delete.txt` are removed), `ferry validate` runs in it, and its stderr must
//! equal the folder's `expected.txt` exactly, with exit code 2.
//!
//! After an intended change of wording, `FERRY_BLESS=1 cargo test --test integration
//! bad_input` rewrites the expected files; review the diff before committing.

use std::path::Path;
use std::process::Command;

use crate::support::{FERRY, copy_dir, describe, repo};

fn prepare(case: &Path, into: &Path) {
    copy_dir(&repo().join("tests/fixtures/bad/_base"), into);
    copy_dir(case, into);
    let _ = std::fs::remove_file(into.join("expected.txt"));
    if let Ok(list) = std::fs::read_to_string(into.join("delete.txt")) {
        for f in list.lines().filter(|l| !l.trim().is_empty()) {
            std::fs::remove_file(into.join(f.trim())).unwrap();
        }
        std::fs::remove_file(into.join("delete.txt")).unwrap();
    }
    // The corpus is about bad input, not permissions: config.yaml is kept private so that
    // its literal robot tokens do not add `ferry validate`'s plain-text warnings
    // (tests/integration/sealed_secrets.rs covers those).
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(into.join("config.yaml")) {
        use std::os::unix::fs::PermissionsExt;
        let mut perms = meta.permissions();
        perms.set_mode(0o600);
        std::fs::set_permissions(into.join("config.yaml"), perms).unwrap();
    }
}

#[test]
fn every_bad_file_gets_its_exact_error() {
    let root = repo().join("tests/fixtures/bad");
    let bless = std::env::var_os("FERRY_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap() != "_base")
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "the corpus lost cases: {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let tmp = tempfile::tempdir().unwrap();
        prepare(case, tmp.path());
        let out = Command::new(FERRY)
            .current_dir(tmp.path())
            .arg("validate")
            .env("FERRY_TEST_UNSET_VARIABLE_GUARD", "1")
            .env_remove("FERRY_TEST_UNSET_VARIABLE")
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr.clone()).unwrap();
        let expected_path = case.join("expected.txt");
        if bless {
            std::fs::write(&expected_path, &stderr).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        if out.status.code() != Some(2) || stderr != expected || !out.stdout.is_empty() {
            failures.push(format!(
                "case {}:\n--- expected\n{expected}{}",
                case.file_name().unwrap().to_string_lossy(),
                describe(&out)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn valid_tasks_are_not_reported_beside_broken_ones() {
    let tmp = tempfile::tempdir().unwrap();
    prepare(&repo().join("tests/fixtures/bad/several_files"), tmp.path());
    let out = Command::new(FERRY)
        .current_dir(tmp.path())
        .arg("validate")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tasks/a.yaml") && stderr.contains("tasks/b.yaml"),
        "{stderr}"
    );
    assert!(!stderr.contains("ok.yaml"), "{stderr}");
    // The valid task still runs while the others are broken.
    let out = Command::new(FERRY)
        .current_dir(tmp.path())
        .args(["run", "ok", "--json"])
        .output()
        .unwrap();
    // db.sqlite does not exist in the corpus: the run fails at the database, not at config.
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "failed");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("database file not found"),
        "{json}"
    );
}

#[test]
fn the_repository_demo_is_valid() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in ["tasks", "templates", "demo"] {
        copy_dir(&repo().join(dir), &tmp.path().join(dir));
    }
    std::fs::copy(repo().join("config.yaml"), tmp.path().join("config.yaml")).unwrap();
    let out = Command::new(FERRY)
        .current_dir(tmp.path())
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(out.stderr.is_empty(), "{}", describe(&out));
}
