//! The Oracle source (cargo feature `oracle`) through the real `ferry` binary, without an
//! Oracle database: none is available to the project's tests. What can be checked is
//! checked end to end: the config is accepted, and `ferry sources test` and `ferry run`
//! fail with the exact message that says what to install when Oracle's client library is
//! missing (or, on a machine that has Instant Client, that no listener answers), naming
//! the datasource and never showing the password. The type mapping is unit-tested in
//! `src/source/oracle.rs`.

use std::path::Path;

use crate::support::{Project, describe, stderr, stdout};

const PASSWORD: &str = "s3cretOraPw";

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The `project` fixture with an `ora` datasource on 127.0.0.1:`port` and a task using it.
fn project(port: u16) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &config.replacen(
            "datasources:\n",
            &format!(
                "datasources:\n  ora: {{ type: oracle, url: \"oracle://ferry:{PASSWORD}@127.0.0.1:{port}/FREEPDB1\", connect_timeout: 5s }}\n"
            ),
            1,
        ),
    );
    p.write(
        "tasks/ora_daily.yaml",
        "schedule: '0 6 * * *'\nsource: ora\nquery: |\n  SELECT order_id, amount FROM orders\n  WHERE order_date >= :period_start_date AND order_date < :period_end_date\n  FETCH FIRST 10 ROWS ONLY\noutput: { format: csv }\n",
    );
    p
}

/// Whether this machine has Oracle's client library where the loader looks for it.
fn client_library_installed() -> bool {
    let named = |dir: &Path| dir.join("libclntsh.so").exists();
    let in_path = std::env::var_os("LD_LIBRARY_PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| named(&d)));
    let in_home =
        std::env::var_os("ORACLE_HOME").is_some_and(|h| named(&Path::new(&h).join("lib")));
    let in_cache = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libclntsh.so"));
    in_path || in_home || in_cache
}

/// What ferry says about the datasource: the install instructions without the client
/// library, the missing listener with it.
fn expected_problem(port: u16) -> String {
    if client_library_installed() {
        format!(
            "no Oracle listener at 127.0.0.1:{port} (ORA-12541: TNS:no listener): check the host and port in the url, and that the listener runs (`lsnrctl status` on the server)"
        )
    } else {
        "cannot load Oracle's client library (DPI-1047: Cannot locate a 64-bit Oracle Client library: \"libclntsh.so: cannot open shared object file: No such file or directory\"): this ferry was built with Oracle support, which needs Oracle's client library at run time: install Oracle Instant Client Basic or Basic Light, 64-bit, version 19 or later (11.2 is the oldest that works), and the libaio package (libaio1 or libaio1t64 on Debian and Ubuntu); then let ferry find libclntsh.so: add the Instant Client folder (e.g. /opt/oracle/instantclient_23_7) to LD_LIBRARY_PATH for ferry, or write that folder into /etc/ld.so.conf.d/oracle-instantclient.conf and run ldconfig".to_string()
    }
}

fn assert_no_password(p: &Project, out: &std::process::Output) {
    let all = format!("{}{}", stdout(out), stderr(out));
    assert!(!all.contains(PASSWORD), "{}", describe(out));
    for f in p.files("data") {
        let bytes = std::fs::read(p.path().join("data").join(&f)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(PASSWORD), "the password is in data/{f}");
    }
}

#[test]
fn an_oracle_datasource_validates_and_is_listed_redacted() {
    let port = closed_port();
    let p = project(port);
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = p.ferry(&["sources"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let row = stdout(&out)
        .lines()
        .find(|l| l.starts_with("ora "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    assert_eq!(
        row,
        format!("ora oracle oracle://ferry:***@127.0.0.1:{port}/FREEPDB1 1"),
        "{}",
        describe(&out)
    );
    assert_no_password(&p, &out);
}

#[test]
fn sources_test_says_what_to_install_and_names_the_datasource() {
    let port = closed_port();
    let p = project(port);
    let out = p.ferry(&["sources", "test", "ora"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(
        stdout(&out),
        format!("FAIL ora (oracle): {}\n", expected_problem(port)),
        "{}",
        describe(&out)
    );
    assert_no_password(&p, &out);
}

#[test]
fn a_run_fails_with_the_same_message_recorded() {
    let port = closed_port();
    let p = project(port);
    let json = p.run_json("ora_daily", &["--no-notify"], 1);
    assert_eq!(json["status"], "failed", "{json}");
    assert_eq!(json["files"], serde_json::json!([]));
    assert_eq!(
        json["error"].as_str().unwrap_or_default(),
        format!("datasource `ora`: {}", expected_problem(port)),
        "{json}"
    );
    // The run history keeps the same error, and nothing anywhere shows the password.
    let out = p.ferry(&["history", "--task", "ora_daily"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(stdout(&out).contains("failed"), "{}", describe(&out));
    assert_no_password(&p, &out);
    assert!(!json.to_string().contains(PASSWORD));
}
