//! What lands in the files: CSV compared byte for byte with golden files, XLSX read back
//! cell by cell with calamine, types included.

use calamine::{Data, Reader, Xlsx, open_workbook};

use crate::support::{Project, repo};

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("tests/golden").join(name)).expect("golden file")
}

/// Runs `task` and returns the bytes of its only file.
fn run_single_file(p: &Project, task: &str) -> (serde_json::Value, Vec<u8>) {
    let json = p.run_json(task, &["--no-notify"], 0);
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{json}");
    let path = p.path().join(files[0]["path"].as_str().unwrap());
    (json.clone(), std::fs::read(path).unwrap())
}

#[test]
fn csv_matches_golden_byte_for_byte() {
    let p = Project::fixture("project");
    let (json, bytes) = run_single_file(&p, "types_csv");
    assert_eq!(json["rows"], 5);
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(&golden("types.csv"))
    );
}

#[test]
fn csv_options_bom_delimiter_crlf_and_no_escaping() {
    let p = Project::fixture("project");
    p.write(
        "tasks/opts.yaml",
        "schedule: '0 3 * * *'\nsource: db\nquery: SELECT id, name, note FROM t ORDER BY id\noutput:\n  format: csv\n  file_name: opts\n  csv:\n    bom: true\n    delimiter: ';'\n    line_ending: crlf\n    escape_formulas: false\n",
    );
    let (_, bytes) = run_single_file(&p, "opts");
    assert_eq!(bytes, golden("opts.csv"));
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF");
}

#[test]
fn csv_in_gb18030_decodes_back_to_the_same_text() {
    let p = Project::fixture("project");
    p.write(
        "tasks/gb.yaml",
        "schedule: '0 3 * * *'\nsource: db\nquery: SELECT * FROM t ORDER BY id\noutput:\n  format: csv\n  file_name: gb\n  csv:\n    encoding: gb18030\n",
    );
    let (_, bytes) = run_single_file(&p, "gb");
    let (text, _, had_errors) = encoding_rs::GB18030.decode(&bytes);
    assert!(!had_errors);
    assert_eq!(text.as_bytes(), golden("types.csv"));
    // Chinese text is really GB18030 bytes, not UTF-8.
    assert!(bytes.windows(4).any(|w| w == [0xCF, 0xFA, 0xCA, 0xDB]));
}

fn shanghai_now() -> chrono::NaiveDateTime {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .naive_local()
}

#[test]
fn zip_holds_the_file() {
    let p = Project::fixture("project");
    p.write(
        "tasks/zipped.yaml",
        "schedule: '0 3 * * *'\nsource: db\nquery: SELECT * FROM t ORDER BY id\noutput:\n  format: csv\n  file_name: zipped\n  zip: true\n",
    );
    let before = shanghai_now();
    let (json, bytes) = run_single_file(&p, "zipped");
    let after = shanghai_now();
    assert!(
        json["files"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("zipped.zip")
    );
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(archive.len(), 1);
    let mut member = archive.by_name("zipped.csv").unwrap();
    // Dated with the run's time in the task's zone (Asia/Shanghai), not 1980. Zip times
    // have 2-second steps.
    let t = member.last_modified().unwrap();
    let dated = chrono::NaiveDate::from_ymd_opt(t.year().into(), t.month().into(), t.day().into())
        .unwrap()
        .and_hms_opt(t.hour().into(), t.minute().into(), t.second().into())
        .unwrap();
    assert!(
        dated >= before - chrono::Duration::seconds(2) && dated <= after,
        "{dated} not within {before} .. {after}"
    );
    let mut inner = Vec::new();
    std::io::Read::read_to_end(&mut member, &mut inner).unwrap();
    assert_eq!(inner, golden("types.csv"));
}

#[test]
fn xlsx_cells_keep_their_types() {
    let p = Project::fixture("project");
    let json = p.run_json("types_xlsx", &["--no-notify"], 0);
    assert_eq!(json["rows"], 5);
    // The worksheet temp folder of the run's process (`.tmp/<pid>`) is gone with it.
    let tmp = std::fs::read_dir(p.path().join("exports/.tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "left in exports/.tmp: {tmp:?}");
    let path = p.path().join(json["files"][0]["path"].as_str().unwrap());
    let mut wb: Xlsx<_> = open_workbook(&path).unwrap();
    assert_eq!(wb.sheet_names(), ["data"]);
    let range = wb.worksheet_range("data").unwrap();
    let rows: Vec<Vec<Data>> = range.rows().map(|r| r.to_vec()).collect();
    assert_eq!(rows.len(), 6);
    let header: Vec<String> = rows[0].iter().map(|c| c.to_string()).collect();
    assert_eq!(
        header,
        [
            "id", "name", "price", "qty", "big", "dec", "d", "ts", "flag", "raw", "note"
        ]
    );
    let num = |d: &Data| match d {
        Data::Float(f) => *f,
        Data::Int(i) => *i as f64,
        other => panic!("expected a number, got {other:?}"),
    };
    let text = |d: &Data| match d {
        Data::String(s) => s.clone(),
        other => panic!("expected text, got {other:?}"),
    };
    let r1 = &rows[1];
    assert_eq!(num(&r1[0]), 1.0);
    assert_eq!(text(&r1[1]), "plain");
    assert_eq!(num(&r1[2]), 12.5);
    // 9007199254740993 has 16 digits: Excel would round it, so it is exact text.
    assert_eq!(text(&r1[4]), "9007199254740993");
    assert_eq!(text(&r1[5]), "12345678901234567890.1234567890");
    match &r1[6] {
        Data::DateTime(dt) => {
            assert!(dt.is_datetime());
            assert_eq!(dt.as_f64(), 46351.0);
        }
        other => panic!("date cell expected, got {other:?}"),
    }
    match &r1[7] {
        Data::DateTime(dt) => assert_eq!(dt.as_f64(), 46351.4375),
        other => panic!("datetime cell expected, got {other:?}"),
    }
    assert_eq!(r1[8], Data::Bool(true));
    assert_eq!(text(&r1[9]), "0x00FF");
    assert_eq!(r1[10], Data::Empty);

    let r2 = &rows[2];
    assert_eq!(text(&r2[1]), "comma, \"quote\"");
    // 16 digits: exact text too; 15 digits or fewer are numbers (row 4).
    assert_eq!(text(&r2[4]), "1234567890123456");
    // Before 1900-03-01 Excel's calendar is wrong: ISO text instead of a date cell.
    assert_eq!(text(&r2[6]), "1899-12-31");
    assert_eq!(r2[8], Data::Bool(false));
    assert_eq!(text(&r2[10]), "line1\nline2");

    let r3 = &rows[3];
    // XLSX cells are never formulas: text stays text, no escaping needed.
    assert_eq!(text(&r3[1]), "=1+1");
    assert_eq!(r3[2], Data::Empty);

    let r4 = &rows[4];
    assert_eq!(text(&r4[1]), "销售 😀");
    assert_eq!(num(&r4[2]), 1e20);
    assert_eq!(num(&r4[4]), 42.0);
    match &r4[7] {
        // 02:30+08:00 shown in the task's zone (Asia/Shanghai).
        Data::DateTime(dt) => assert_eq!(dt.as_f64(), 46351.0 + 2.5 / 24.0),
        other => panic!("datetime cell expected, got {other:?}"),
    }

    let r5 = &rows[5];
    assert_eq!(text(&r5[6]), "not a date");
    assert_eq!(text(&r5[7]), "garbage");
    assert_eq!(num(&r5[8]), 2.0);
}

/// Runs `ferry run TASK --json --no-notify` and samples its peak resident memory
/// (`VmHWM` of `/proc/PID/status`) until it exits; returns the JSON and the peak in MB.
fn run_with_peak_rss(p: &Project, task: &str) -> (serde_json::Value, f64) {
    let mut child = p
        .command(&["run", task, "--json", "--no-notify"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ferry");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut stdout = String::new();
            std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
            assert_eq!(status.code(), Some(0), "{stdout}");
            let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
            return (json, peak_kb as f64 / 1024.0);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// 160 rows of 1 MB text each: with the default `chunk_rows` (1,000) the whole 160 MB
/// result would sit in one chunk. Chunks are also cut at 4 MB of values, so ferry's peak
/// memory stays a fraction of the result's size.
#[test]
fn rows_of_long_text_stream_with_flat_memory() {
    let p = Project::fixture("project");
    std::fs::create_dir_all(p.path().join("db")).unwrap();
    let conn = rusqlite::Connection::open(p.path().join("db/wide.db")).unwrap();
    conn.execute_batch(
        // `id` is the rowid, so `ORDER BY id` needs no sort: SQLite's own sorter would
        // hold every 1 MB row in memory while merging (one sort run per row).
        "CREATE TABLE wide (id INTEGER PRIMARY KEY, body TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 160)
         INSERT INTO wide SELECT i, hex(randomblob(524288)) FROM n;",
    )
    .unwrap();
    drop(conn);
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &config.replacen(
            "datasources:\n",
            "datasources:\n  wide: { type: sqlite, url: \"sqlite://db/wide.db\" }\n",
            1,
        ),
    );
    p.write(
        "tasks/wide.yaml",
        "schedule: '0 6 * * *'\nsource: wide\nquery: \"SELECT id, body FROM wide ORDER BY id\"\noutput: { format: csv }\n",
    );
    // The same process on a one-row query: what ferry itself takes (a debug binary's
    // code and the runtime, tens of MB and growing with the code).
    p.write(
        "tasks/narrow.yaml",
        "schedule: '0 6 * * *'\nsource: wide\nquery: \"SELECT id, body FROM wide WHERE id = 1\"\noutput: { format: csv }\n",
    );
    let (_, base_mb) = run_with_peak_rss(&p, "narrow");
    let (json, peak_mb) = run_with_peak_rss(&p, "wide");
    assert_eq!(json["rows"], 160, "{json}");
    let bytes = json["files"][0]["bytes"].as_u64().expect("one file");
    assert!(bytes > 160 << 20, "{bytes} bytes");
    // At most five 4 MB chunks in flight above what ferry itself takes: measured about
    // +28 MB (79 MB beside 51 MB). Chunks cut at `chunk_rows` only would hold all 160
    // rows: about +160 MB.
    assert!(
        peak_mb - base_mb < 48.0,
        "peak RSS {peak_mb:.1} MB for a 160 MB result, {base_mb:.1} MB for one row"
    );
}
