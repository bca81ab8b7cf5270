//! What a run's readers see: default file names name the period the data is for (or
//! the run time for a task without one), the built-in messages name the period and say
//! a manual run is one, in English or Chinese (`language`), and a project's own
//! templates and `file_name` keep working unchanged.

use crate::support::{Project, describe};

/// Monday 2026-12-07 06:00 in Shanghai.
const AT: &str = "2026-12-07T06:00:00+08:00";

/// The fixture project without its own templates (the built-in ones apply), with
/// `extra` added to config.yaml.
fn project(extra: &str) -> Project {
    let p = Project::fixture("project");
    std::fs::remove_dir_all(p.path().join("templates")).unwrap();
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write("config.yaml", &format!("{config}{extra}"));
    p
}

fn task(p: &Project, name: &str, lines: &str, query: &str) {
    p.write(
        &format!("tasks/{name}.yaml"),
        &format!(
            "schedule: '0 6 * * MON'\nsource: db\n{lines}query: \"{query}\"\noutput: {{ format: csv }}\nnotify: [box]\n"
        ),
    );
}

/// The outbox message of run `run_id`.
fn message(p: &Project, run_id: &str) -> serde_json::Value {
    let file = p
        .files("outbox")
        .into_iter()
        .find(|f| f.contains(run_id))
        .unwrap_or_else(|| panic!("no outbox message of {run_id}"));
    serde_json::from_slice(&std::fs::read(p.path().join("outbox").join(file)).unwrap()).unwrap()
}

const PERIOD_QUERY: &str =
    "SELECT day, amount FROM sales WHERE day >= :period_start_date AND day < :period_end_date";

#[test]
fn default_file_names_name_the_period_the_data_is_for() {
    let p = project("");
    // The default period (`day`) applies to a query that reads `:period_*`.
    task(&p, "daily", "", PERIOD_QUERY);
    task(&p, "weekly", "period: week\n", PERIOD_QUERY);
    task(&p, "monthly", "period: month\n", PERIOD_QUERY);
    task(&p, "hourly", "period: hour\n", PERIOD_QUERY);
    // No period and no `:period_*`: the run time, as before.
    task(&p, "snapshot", "", "SELECT day, amount FROM sales");
    // A file name of the task's own is used as written.
    p.write(
        "tasks/named.yaml",
        "schedule: '0 6 * * MON'\nsource: db\nperiod: month\nquery: SELECT 1 AS one\noutput: { format: csv, file_name: \"sales_{{ period_start_date | strftime('%Y%m') }}\" }\n",
    );
    for (name, file) in [
        ("daily", "exports/daily/daily_2026-12-06.csv"),
        ("weekly", "exports/weekly/weekly_2026-W49.csv"),
        ("monthly", "exports/monthly/monthly_2026-11.csv"),
        ("hourly", "exports/hourly/hourly_20261207_060000.csv"),
        ("snapshot", "exports/snapshot/snapshot_20261207_060000.csv"),
        ("named", "exports/named/sales_202611.csv"),
    ] {
        let json = p.run_json(name, &["--no-notify", "--at", AT], 0);
        assert_eq!(json["files"][0]["path"], file, "{json}");
    }
    // A second run for the same period (a manual re-run) keeps the first file.
    let again = p.run_json("weekly", &["--no-notify"], 0);
    assert_eq!(
        again["files"][0]["path"], "exports/weekly/weekly_2026-W49_2.csv",
        "{again}"
    );
}

#[test]
fn messages_name_the_period_and_a_manual_run_in_the_configured_language() {
    let p = project("language: zh\n");
    task(&p, "weekly", "period: week\n", PERIOD_QUERY);
    // The task's own `language` wins over config.yaml's.
    task(
        &p,
        "weekly_en",
        "period: week\nlanguage: en\n",
        PERIOD_QUERY,
    );
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let json = p.run_json("weekly", &["--at", AT], 0);
    let zh = message(&p, json["run_id"].as_str().unwrap());
    let rows = json["rows"].as_u64().unwrap();
    assert_eq!(
        zh["subject"],
        format!("weekly（2026-W49）：{rows} 行"),
        "{zh}"
    );
    let body = zh["body"].as_str().unwrap();
    assert!(
        body.contains("数据周期：2026-W49（2026-11-30 至 2026-12-06）。")
            && body.contains("见附件"),
        "{body}"
    );
    assert!(body.contains("定时运行于 2026-12-07 06:00:00"), "{body}");

    // `ferry run` without `--at` is a manual run, and says so.
    let json = p.run_json("weekly_en", &[], 0);
    let en = message(&p, json["run_id"].as_str().unwrap());
    let subject = en["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("weekly_en for 20") && subject.ends_with(" rows (manual run)"),
        "{en}"
    );
    let body = en["body"].as_str().unwrap();
    assert!(body.contains("\n-- \nManual run at "), "{body}");
    assert!(body.contains(", in the attached file:\n"), "{body}");
}

#[test]
fn a_zh_template_of_the_project_is_checked_and_used() {
    let p = project("language: zh\n");
    task(&p, "weekly", "period: week\n", PERIOD_QUERY);
    p.write("templates/report_zh.subject.j2", "周报 {{ period }}");
    p.write("templates/report_zh.md.j2", "{{ perod }}");
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        crate::support::stderr(&out).contains(
            "tasks/weekly.yaml:6:10: notify[0].template: template `report_zh`: templates/report_zh.md.j2:1: undefined variable `perod` (did you mean `period`?)"
        ),
        "{}",
        describe(&out)
    );
    p.write(
        "templates/report_zh.md.j2",
        "{{ period }}: {{ rows_count }}",
    );
    let json = p.run_json("weekly", &["--at", AT], 0);
    let m = message(&p, json["run_id"].as_str().unwrap());
    assert_eq!(m["subject"], "周报 2026-W49");
    assert_eq!(m["body"], format!("2026-W49: {}", json["rows"]));
}

#[test]
fn the_dingtalk_keyword_is_looked_for_in_the_template_of_the_tasks_language() {
    // The Chinese report says 数据 (data) in every case; the English one does not.
    let p = project("language: zh\n");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &config.replacen(
            "channels:\n",
            "channels:\n  ding: { type: dingtalk, webhook: \"https://oapi.dingtalk.example/robot/send?access_token=t\", keyword: 数据 }\n",
            1,
        ),
    );
    p.write(
        "tasks/zh.yaml",
        "schedule: '0 6 * * *'\nsource: db\nquery: SELECT 1 AS one\noutput: { format: csv }\nnotify: [ding]\n",
    );
    p.write(
        "tasks/en.yaml",
        "schedule: '0 6 * * *'\nsource: db\nlanguage: en\nquery: SELECT 1 AS one\noutput: { format: csv }\nnotify: [ding]\n",
    );
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let err = crate::support::stderr(&out);
    assert!(
        err.contains(
            "tasks/en.yaml: notify[0].template: template `report` does not contain the keyword `数据` of DingTalk channel `ding`"
        ),
        "{}",
        describe(&out)
    );
    assert!(!err.contains("channels.ding.keyword"), "{}", describe(&out));
    assert!(!err.contains("tasks/zh.yaml"), "{}", describe(&out));
}
