//! Issue 12 item 5: the files config names are read only when they are regular files of
//! bounded size. A FIFO, `/dev/zero` or an oversized file gets a clear error naming the
//! file (and the limit), promptly; a running daemon keeps scheduling when a task's query
//! file turns into a FIFO.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry::daemon::Event;
use ferry::store::Status;

use crate::support::{Daemon, FERRY, Project, describe, only_task, poll, stderr};

/// How long `ferry validate` may take on an odd file: it reads nothing, so a second is
/// plenty; before the fix it never ended (FIFO) or ran out of memory (`/dev/zero`).
const PROMPT: Duration = Duration::from_secs(10);

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Runs `cmd` and returns its output, failing the test (and killing it) if it takes
/// longer than [`PROMPT`].
fn within_limit(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let start = Instant::now();
    let ended = poll(
        PROMPT + Duration::from_secs(1),
        "ferry to end",
        || match child.try_wait().unwrap() {
            Some(_) => Some(true),
            None if start.elapsed() > PROMPT => Some(false),
            None => None,
        },
    );
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        ended,
        "ferry did not end within {PROMPT:?}: {}",
        describe(&out)
    );
    out
}

fn validate(p: &Project, config: &str) -> Output {
    let mut cmd = Command::new(FERRY);
    cmd.current_dir(p.path())
        .args(["--config", config, "validate"])
        .env_remove("FERRY_LOG");
    within_limit(cmd)
}

/// Asserts exit 2 and that stderr holds `expected` (one problem line).
fn refused(out: &Output, expected: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    assert!(
        stderr(out).lines().any(|l| l == expected),
        "expected the line\n{expected}\n{}",
        describe(out)
    );
}

const NOT_REGULAR: &str = "not a regular file: ferry reads";

#[test]
fn a_fifo_as_query_file_template_task_file_or_config_is_refused_promptly() {
    let p = Project::fixture("project");
    mkfifo(&p.path().join("tasks/sql/ids.sql"));
    refused(
        &validate(&p, "config.yaml"),
        &format!(
            "tasks/from_file.yaml:3:13: query_file: tasks/sql/ids.sql is a FIFO (named pipe), {NOT_REGULAR} query files only from regular files (a symlink to one is fine)"
        ),
    );

    let p = Project::fixture("project");
    mkfifo(&p.path().join("tasks/pipe.yaml"));
    refused(
        &validate(&p, "config.yaml"),
        &format!(
            "tasks/pipe.yaml: is a FIFO (named pipe), {NOT_REGULAR} task files only from regular files (a symlink to one is fine)"
        ),
    );

    // A template that overrides a built-in one.
    let p = Project::fixture("project");
    mkfifo(&p.path().join("templates/report.md.j2"));
    refused(
        &validate(&p, "config.yaml"),
        &format!(
            "config.yaml:6:8: channels.box.template: template `report`: templates/report.md.j2 is a FIFO (named pipe), {NOT_REGULAR} templates only from regular files (a symlink to one is fine)"
        ),
    );

    let p = Project::fixture("project");
    mkfifo(&p.path().join("pipe.yaml"));
    refused(
        &validate(&p, "pipe.yaml"),
        &format!(
            "pipe.yaml: is a FIFO (named pipe), {NOT_REGULAR} config files only from regular files (a symlink to one is fine)"
        ),
    );
}

#[test]
fn dev_zero_as_query_file_or_config_is_refused_promptly() {
    let p = Project::fixture("project");
    std::fs::remove_file(p.path().join("tasks/sql/ids.sql")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", p.path().join("tasks/sql/ids.sql")).unwrap();
    refused(
        &validate(&p, "config.yaml"),
        &format!(
            "tasks/from_file.yaml:3:13: query_file: tasks/sql/ids.sql is a character device, {NOT_REGULAR} query files only from regular files (a symlink to one is fine)"
        ),
    );
    only_task(
        &p,
        "zero",
        "schedule: \"0 6 * * *\"\nsource: db\nquery_file: /dev/zero\noutput: { format: csv }\n",
    );
    refused(
        &validate(&p, "config.yaml"),
        &format!(
            "tasks/zero.yaml:3:13: query_file: /dev/zero is a character device, {NOT_REGULAR} query files only from regular files (a symlink to one is fine)"
        ),
    );
    refused(
        &validate(&p, "/dev/zero"),
        &format!(
            "/dev/zero: is a character device, {NOT_REGULAR} config files only from regular files (a symlink to one is fine)"
        ),
    );
}

#[test]
fn oversized_files_are_refused_with_the_limit() {
    let p = Project::fixture("project");
    // 1 MiB and one byte of SQL comment: one byte over the query file limit.
    let mut sql = "SELECT 1 AS one\n".to_string();
    sql.push_str(&"-".repeat((1 << 20) + 1 - sql.len()));
    p.write("tasks/sql/ids.sql", &sql);
    // A 3.2 MiB task file (a YAML comment).
    p.write("tasks/huge.yaml", &"#".repeat(3_355_443));
    let out = validate(&p, "config.yaml");
    refused(
        &out,
        "tasks/from_file.yaml:3:13: query_file: tasks/sql/ids.sql is 1.0 MiB; the limit for query files is 1 MiB: make it smaller",
    );
    refused(
        &out,
        "tasks/huge.yaml: is 3.2 MiB; the limit for task files is 1 MiB: make it smaller",
    );
    // Exactly the limit is read (and then checked as SQL as usual).
    sql.pop();
    p.write("tasks/sql/ids.sql", &sql);
    std::fs::remove_file(p.path().join("tasks/huge.yaml")).unwrap();
    let out = validate(&p, "config.yaml");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A running daemon reloads while a task's query file is a FIFO: the reload ends (the
/// task keeps its last good version, counted invalid), and every task keeps running on
/// time. Before the fix the reload blocked in `open` on a runtime thread forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_file_turned_fifo_leaves_the_daemon_scheduling() {
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        "timezone: UTC\nstore: { url: \"sqlite://data/ferry.db\" }\n\
         datasources:\n  db: { type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }\n",
    );
    only_task(
        &p,
        "inline",
        "schedule: \"0 * * * *\"\nsource: db\nquery: SELECT 1 AS one\noutput: { format: csv }\n",
    );
    p.write(
        "tasks/from_file.yaml",
        "schedule: \"0 * * * *\"\nsource: db\nquery_file: sql/ids.sql\noutput: { format: csv }\n",
    );
    let mut d = Daemon::start(&p, at("2026-12-07T00:30:00Z")).await;
    mkfifo(&p.path().join("tasks/sql/ids.sql"));
    d.handle.reload();
    let Event::Reloaded(summary) = d
        .wait_for("the reload", |e| matches!(e, Event::Reloaded(_)))
        .await
    else {
        unreachable!()
    };
    assert_eq!(summary.invalid, 1, "{summary:?}");
    for fire in ["2026-12-07T01:00:00Z", "2026-12-07T02:00:00Z"] {
        d.advance_to(at(fire)).await;
        for task in ["inline", "from_file"] {
            d.wait_runs(task, &format!("{task} at {fire}"), |runs| {
                runs.iter()
                    .any(|r| r.scheduled_at == at(fire) && r.status == Status::Succeeded)
            })
            .await;
        }
    }
    d.stop().await;
}
