//! `ferry next`: fire times in UTC and in the task's zone, across DST changes.

use crate::support::{Project, describe, stdout};

fn next(p: &Project, task: &str, after: &str, count: &str) -> Vec<String> {
    let out = p.ferry(&["next", task, "--after", after, "--count", count]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    stdout(&out).lines().map(str::to_string).collect()
}

#[test]
fn next_prints_utc_then_local_with_offset() {
    let p = Project::fixture("project");
    let lines = next(&p, "sales_month", "2026-11-25T00:00:00Z", "2");
    assert_eq!(
        lines,
        [
            "2026-11-30T22:00:00Z  2026-12-01T06:00:00+08:00  Asia/Shanghai",
            "2026-12-31T22:00:00Z  2027-01-01T06:00:00+08:00  Asia/Shanghai",
        ]
    );
}

#[test]
fn spring_forward_gap_fires_once_at_the_first_valid_time() {
    let p = Project::fixture("project");
    p.write(
        "tasks/ny.yaml",
        "schedule: '30 2 * * *'\ntimezone: America/New_York\nsource: db\nquery: SELECT 1\noutput: { format: csv }\n",
    );
    let lines = next(&p, "ny", "2025-03-08T12:00:00Z", "3");
    assert_eq!(
        lines,
        [
            "2025-03-09T07:00:00Z  2025-03-09T03:00:00-04:00  America/New_York",
            "2025-03-10T06:30:00Z  2025-03-10T02:30:00-04:00  America/New_York",
            "2025-03-11T06:30:00Z  2025-03-11T02:30:00-04:00  America/New_York",
        ]
    );
}

#[test]
fn bad_after_is_a_usage_error() {
    let p = Project::fixture("project");
    let out = p.ferry(&["next", "sales_month", "--after", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
}
