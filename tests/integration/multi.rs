//! Tasks with several queries (`queries:`): one workbook with a sheet per query, or one CSV
//! file per query; all or nothing.

use calamine::{Data, Reader, Xlsx, open_workbook};

use crate::support::{Project, describe, stderr};

const XLSX_TASK: &str = "schedule: '0 3 * * *'
source: db
queries:
  - sheet: items
    query: SELECT id, name FROM t WHERE id <= 2 ORDER BY id
  - sheet: sales
    query: SELECT day, amount FROM sales WHERE id <= 3 ORDER BY id
  - { sheet: count, query: SELECT COUNT(*) AS n FROM sales }
output:
  format: xlsx
  file_name: book
";

const CSV_TASK: &str = "schedule: '0 3 * * *'
source: db
queries:
  - sheet: items
    query: SELECT id, name FROM t WHERE id IN (1, 4) ORDER BY id
  - sheet: totals
    query: SELECT COUNT(*) AS n, SUM(amount) AS total FROM sales WHERE id <= 2
output:
  format: csv
  file_name: multi
";

/// Files under `exports/`, without the writer's temporary folder.
fn exported(p: &Project) -> Vec<String> {
    p.files("exports")
        .into_iter()
        .filter(|f| !f.starts_with(".tmp"))
        .collect()
}

#[test]
fn xlsx_gets_one_sheet_per_query() {
    let p = Project::fixture("project");
    p.write("tasks/book.yaml", XLSX_TASK);
    let json = p.run_json("book", &["--no-notify"], 0);
    assert_eq!(json["status"], "succeeded", "{json}");
    assert_eq!(json["rows"], 6, "{json}");
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{json}");
    assert_eq!(
        json["warnings"],
        serde_json::json!([
            "sheet items: 2 rows",
            "sheet sales: 3 rows",
            "sheet count: 1 rows"
        ])
    );
    let path = p.path().join(files[0]["path"].as_str().unwrap());
    assert!(path.ends_with("book.xlsx"), "{}", path.display());
    let mut wb: Xlsx<_> = open_workbook(&path).unwrap();
    assert_eq!(wb.sheet_names(), ["items", "sales", "count"]);
    let rows = |wb: &mut Xlsx<_>, name: &str| -> Vec<Vec<Data>> {
        wb.worksheet_range(name)
            .unwrap()
            .rows()
            .map(|r| r.to_vec())
            .collect()
    };
    let num = |d: &Data| match d {
        Data::Float(f) => *f,
        Data::Int(i) => *i as f64,
        other => panic!("expected a number, got {other:?}"),
    };

    let items = rows(&mut wb, "items");
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[0],
        [Data::String("id".into()), Data::String("name".into())]
    );
    assert_eq!(num(&items[1][0]), 1.0);
    assert_eq!(items[1][1], Data::String("plain".into()));
    assert_eq!(num(&items[2][0]), 2.0);
    assert_eq!(items[2][1], Data::String("comma, \"quote\"".into()));

    let sales = rows(&mut wb, "sales");
    assert_eq!(sales.len(), 4);
    assert_eq!(
        sales[0],
        [Data::String("day".into()), Data::String("amount".into())]
    );
    for (i, r) in sales[1..].iter().enumerate() {
        match &r[0] {
            // 2026-09-01 is Excel day 46266.
            Data::DateTime(dt) => {
                assert!(dt.is_datetime());
                assert_eq!(dt.as_f64(), 46266.0 + i as f64);
            }
            other => panic!("date cell expected, got {other:?}"),
        }
        assert_eq!(num(&r[1]), (i + 1) as f64 * 1.5);
    }

    let count = rows(&mut wb, "count");
    assert_eq!(count.len(), 2);
    assert_eq!(count[0], [Data::String("n".into())]);
    assert_eq!(num(&count[1][0]), 90.0);
}

#[test]
fn csv_gets_one_file_per_query() {
    let p = Project::fixture("project");
    p.write("tasks/multi.yaml", CSV_TASK);
    let json = p.run_json("multi", &["--no-notify"], 0);
    assert_eq!(json["rows"], 3, "{json}");
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{json}");
    assert_eq!(
        exported(&p),
        ["multi/multi_items.csv", "multi/multi_totals.csv"]
    );
    let read = |f: &str| std::fs::read_to_string(p.path().join("exports/multi").join(f)).unwrap();
    assert_eq!(read("multi_items.csv"), "id,name\n1,plain\n4,销售 😀\n");
    assert_eq!(read("multi_totals.csv"), "n,total\n2,4.5\n");
}

#[test]
fn zip_holds_every_csv_file() {
    let p = Project::fixture("project");
    p.write(
        "tasks/multi.yaml",
        &CSV_TASK.replace("file_name: multi\n", "file_name: multi\n  zip: true\n"),
    );
    let json = p.run_json("multi", &["--no-notify"], 0);
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{json}");
    assert_eq!(exported(&p), ["multi/multi.zip"]);
    let bytes = std::fs::read(p.path().join("exports/multi/multi.zip")).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut names: Vec<String> = (0..archive.len())
        .map(|i| archive.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["multi_items.csv", "multi_totals.csv"]);
    let mut member = archive.by_name("multi_totals.csv").unwrap();
    let mut inner = String::new();
    std::io::Read::read_to_string(&mut member, &mut inner).unwrap();
    assert_eq!(inner, "n,total\n2,4.5\n");
}

#[test]
fn a_failing_query_publishes_nothing() {
    for format in ["csv", "xlsx"] {
        let p = Project::fixture("project");
        p.write(
            "tasks/multi.yaml",
            &CSV_TASK
                .replace(
                    "SELECT COUNT(*) AS n, SUM(amount) AS total FROM sales WHERE id <= 2",
                    "SELECT * FROM no_such_table",
                )
                .replace("format: csv", &format!("format: {format}")),
        );
        let json = p.run_json("multi", &["--no-notify"], 1);
        assert_eq!(json["status"], "failed", "{json}");
        let e = json["error"].as_str().unwrap();
        assert!(e.starts_with("query \"totals\": "), "{e}");
        assert!(e.contains("no_such_table"), "{e}");
        assert_eq!(json["files"], serde_json::json!([]), "{json}");
        assert_eq!(exported(&p), Vec::<String>::new(), "{format}");
    }
}

/// Runs `ferry validate` on a project with `task` as `tasks/t.yaml` and returns stderr.
fn validate(task: &str) -> String {
    let p = Project::fixture("project");
    p.write("tasks/t.yaml", task);
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    stderr(&out)
}

#[test]
fn bad_queries_lists_are_reported_at_their_position() {
    let err = validate(
        "schedule: '0 3 * * *'\nsource: db\nqueries:\n  - { sheet: a, query: SELECT 1 AS x }\n  - sheet: b\n    query: SELECT :nope AS y\noutput: { format: xlsx }\n",
    );
    assert!(
        err.contains("tasks/t.yaml:6:12: queries[1].query: unknown parameter `:nope`"),
        "{err}"
    );

    let err = validate(
        "schedule: '0 3 * * *'\nsource: db\nqueries:\n  - { sheet: Data, query: SELECT 1 AS x }\n  - { sheet: data, query: SELECT 2 AS x }\noutput: { format: xlsx }\n",
    );
    assert!(
        err.contains(
            "tasks/t.yaml:5:14: queries[1].sheet: sheet `data` is also used by queries[0]"
        ),
        "{err}"
    );

    let err = validate(
        "schedule: '0 3 * * *'\nsource: db\nquery: SELECT 1\nqueries:\n  - { sheet: a, query: SELECT 1 AS x }\noutput: { format: xlsx }\n",
    );
    assert!(
        err.contains("tasks/t.yaml:5:3: queries: set either `query` or `queries`, not both"),
        "{err}"
    );

    let err = validate(
        "schedule: '0 3 * * *'\nsource: db\nqueries:\n  - { sheet: a, query: SELECT 1 AS x }\noutput: { format: xlsx, sheet_name: s }\n",
    );
    assert!(
        err.contains("tasks/t.yaml:5:37: output.sheet_name: not used with `queries`"),
        "{err}"
    );
}
