//! Issue 12 item 6 and its fault suite: an export that does not fit on the disk fails
//! with a plain "no space left on device", prints no panic (rust_xlsxwriter panics when its
//! worksheet file cannot be written), leaves no partial or temporary file, and the next
//! run, once there is room again, succeeds. The export folder is a small tmpfs.

use std::path::Path;

use crate::support::{Project, Tmpfs, describe, only_task, stderr};

/// Every file left on the disk but the filler (folders are not listed).
fn leftovers(disk: &Tmpfs) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(disk.path(), disk.path(), &mut out);
    out.retain(|p| p != "filler");
    out.sort();
    out
}

/// What a panic print looks like (Rust's hook, an `expect` on an I/O result).
fn has_panic_text(text: &str) -> bool {
    ["panicked", "RUST_BACKTRACE", "Os { code", "Couldn't write"]
        .iter()
        .any(|t| text.contains(t))
}

#[test]
fn exports_on_a_full_disk_fail_plainly_leave_nothing_and_recover() {
    let Some(disk) = Tmpfs::mount(8 * 1024) else {
        return;
    };
    let p = Project::fixture("project");
    // The export folder (and so the XLSX writer's temporary folder, `<output_dir>/.tmp`)
    // on the small disk.
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &format!("{config}output_dir: {}\n", disk.path().display()),
    );
    // 20,000 rows: about 1 MB of CSV, 2 MB of worksheet XML, a 380 KB workbook.
    let query = "SELECT id, label, v FROM big WHERE id <= 20000";
    only_task(
        &p,
        "sheet",
        &format!(
            "schedule: \"0 6 * * *\"\nsource: db\nquery: {query}\noutput: {{ format: xlsx, file_name: big }}\n"
        ),
    );
    p.write(
        "tasks/text.yaml",
        &format!("schedule: \"0 6 * * *\"\nsource: db\nquery: {query}\noutput: {{ format: csv, file_name: big }}\n"),
    );
    // Build the database before the disk is full (it is not on the tmpfs anyway).
    p.run_json("text", &["--no-notify"], 0);
    std::fs::remove_dir_all(disk.path().join("text")).unwrap();

    disk.fill_leaving(160);
    for (task, expected) in [
        (
            "sheet",
            format!(
                "the XLSX writer failed on {}: no space left on device; the run was failed and no file was kept",
                disk.path().join("sheet/big.xlsx").display()
            ),
        ),
        (
            "text",
            format!(
                "cannot write {}: no space left on device",
                disk.path().join("text/big.csv").display()
            ),
        ),
    ] {
        // With the log on too: what it says must be as plain.
        for verbose in [false, true] {
            let mut args = vec!["run", task, "--json", "--no-notify"];
            if verbose {
                args.push("-v");
            }
            let out = p.ferry(&args);
            assert_eq!(out.status.code(), Some(1), "{task}: {}", describe(&out));
            let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(run["status"], "failed", "{task}: {run}");
            assert_eq!(run["error"], expected.as_str(), "{task}: {run}");
            assert_eq!(run["files"], serde_json::json!([]), "{task}: {run}");
            assert!(!has_panic_text(&stderr(&out)), "{task}: {}", describe(&out));
            if verbose {
                assert!(stderr(&out).contains(&expected), "{}", describe(&out));
            }
            // No partial file, no worksheet temp file.
            assert_eq!(leftovers(&disk), Vec::<String>::new(), "{task}");
        }
    }

    // Room again: the same runs succeed.
    disk.free();
    for (task, file) in [("sheet", "sheet/big.xlsx"), ("text", "text/big.csv")] {
        let run = p.run_json(task, &["--no-notify"], 0);
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["rows"], 20_000, "{run}");
        assert!(disk.path().join(file).is_file());
    }
    assert_eq!(leftovers(&disk), ["sheet/big.xlsx", "text/big.csv"]);
}
