//! Encrypted connections to the real PostgreSQL and MariaDB servers of
//! `scripts/test-services.sh`, whose TLS certificate (from a throwaway CA,
//! `FERRY_TEST_DB_CA`) names only IP 127.0.0.1: the server confirms the session is
//! encrypted, an untrusted certificate and a wrong host name fail with what to change, and
//! `disable` stays plain. Under `CI=true` nothing is skipped.

use crate::mysql::my_url;
use crate::notls_proxy::{NoTlsProxy, Protocol};
use crate::postgres::pg_url;
use crate::support::{Project, describe};

/// The CA that signed the test servers' certificate (set whenever the URLs are).
fn db_ca() -> String {
    std::env::var("FERRY_TEST_DB_CA")
        .expect("FERRY_TEST_DB_CA is not set: run the tests with scripts/test-services.sh")
}

/// A project with datasource `sec` (`kind`, `url`, extra `settings`) and task `probe`
/// running `query`.
fn project(kind: &str, url: &str, settings: &str, query: &str) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    let config = config.replacen(
        "datasources:\n",
        &format!(
            "datasources:\n  sec: {{ type: {kind}, url: \"{url}\", connect_timeout: 5s{settings} }}\n"
        ),
        1,
    );
    p.write("config.yaml", &config);
    p.write(
        "tasks/probe.yaml",
        &format!(
            "schedule: '0 6 * * *'\nsource: sec\nquery: \"{query}\"\noutput: {{ format: csv }}\n"
        ),
    );
    p
}

/// Runs `probe`; the CSV it wrote (success) or the run's error.
fn run(p: &Project) -> Result<String, String> {
    let out = p.ferry(&["run", "probe", "--json", "--no-notify"]);
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)));
    assert!(
        !describe(&out).contains(":ferry@"),
        "password shown: {}",
        describe(&out)
    );
    if out.status.code() == Some(0) {
        let rel = json["files"][0]["path"].as_str().expect("a file");
        Ok(std::fs::read_to_string(p.path().join(rel)).unwrap())
    } else {
        Err(json["error"].as_str().unwrap_or_default().to_string())
    }
}

/// `ferry sources test` output.
fn sources_test(p: &Project) -> String {
    let out = p.ferry(&["sources", "test"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

const PG_SSL: &str = "SELECT ssl::text AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
const MY_SSL: &str = "SHOW SESSION STATUS LIKE 'Ssl_version'";

const UNTRUSTED: &str = "the server's certificate is not signed by a CA ferry trusts: set `ca_file` to the CA certificate (PEM) that signed it";
const WRONG_NAME: &str = "the server's certificate is not valid for the host name in `url`: connect with a name the certificate lists";

#[test]
fn postgres_verify_full_with_the_test_ca_is_encrypted() {
    let Some(url) = pg_url() else { return };
    let ca = db_ca();
    let p = project(
        "postgres",
        &url,
        &format!(", tls: verify-full, ca_file: \"{ca}\""),
        PG_SSL,
    );
    assert_eq!(run(&p).unwrap(), "ssl\ntrue\n");
    let text = sources_test(&p);
    assert!(text.contains("(tls: verify-full)"), "{text}");
    assert!(text.contains(", TLS 1."), "{text}");
}

#[test]
fn postgres_verify_full_without_the_ca_is_untrusted() {
    let Some(url) = pg_url() else { return };
    let p = project("postgres", &url, ", tls: verify-full", PG_SSL);
    let err = run(&p).unwrap_err();
    assert!(
        err.starts_with("datasource `sec`: cannot connect to "),
        "{err}"
    );
    assert!(err.contains(UNTRUSTED), "{err}");
}

#[test]
fn postgres_host_name_is_checked_by_verify_full_only() {
    let Some(url) = pg_url() else { return };
    let ca = db_ca();
    // The certificate names IP 127.0.0.1 only.
    let by_name = url.replace("@127.0.0.1:", "@localhost:");
    let full = project(
        "postgres",
        &by_name,
        &format!(", tls: verify-full, ca_file: \"{ca}\""),
        PG_SSL,
    );
    let err = run(&full).unwrap_err();
    assert!(err.contains(WRONG_NAME), "{err}");
    assert!(err.contains("or set `tls: verify-ca`"), "{err}");
    assert!(err.contains("localhost"), "{err}");
    let chain = project(
        "postgres",
        &by_name,
        &format!(", tls: verify-ca, ca_file: \"{ca}\""),
        PG_SSL,
    );
    assert_eq!(run(&chain).unwrap(), "ssl\ntrue\n");
}

#[test]
fn postgres_require_prefer_and_disable() {
    let Some(url) = pg_url() else { return };
    for (settings, want) in [
        (", tls: require", "true"),
        ("", "true"), // the default, prefer
        (", tls: disable", "false"),
    ] {
        let p = project("postgres", &url, settings, PG_SSL);
        assert_eq!(run(&p).unwrap(), format!("ssl\n{want}\n"), "{settings}");
    }
    let plain = project("postgres", &url, ", tls: disable", PG_SSL);
    let text = sources_test(&plain);
    assert!(text.contains(", not encrypted (tls: disable)"), "{text}");
}

/// The value column of `SHOW SESSION STATUS LIKE 'Ssl_version'`.
fn ssl_version(csv: &str) -> String {
    let line = csv.lines().nth(1).unwrap_or_default();
    line.split_once(',')
        .map(|(_, v)| v)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn mysql_verify_full_with_the_test_ca_is_encrypted() {
    let Some(url) = my_url() else { return };
    let ca = db_ca();
    let p = project(
        "mysql",
        &url,
        &format!(", tls: verify-full, ca_file: \"{ca}\""),
        MY_SSL,
    );
    let csv = run(&p).unwrap();
    assert!(ssl_version(&csv).starts_with("TLSv1."), "{csv}");
    let text = sources_test(&p);
    assert!(text.contains(", TLS 1."), "{text}");
    assert!(text.contains("(tls: verify-full)"), "{text}");
}

#[test]
fn mysql_verify_full_without_the_ca_is_untrusted() {
    let Some(url) = my_url() else { return };
    let p = project("mysql", &url, ", tls: verify-full", MY_SSL);
    let err = run(&p).unwrap_err();
    assert!(
        err.starts_with("datasource `sec`: cannot connect to "),
        "{err}"
    );
    assert!(err.contains(UNTRUSTED), "{err}");
}

#[test]
fn mysql_host_name_is_checked_by_verify_full() {
    let Some(url) = my_url() else { return };
    let ca = db_ca();
    // The certificate names IP 127.0.0.1 only; the account is 'ferry'@'127.0.0.1', which
    // is where `localhost` over TCP arrives from.
    let by_name = url.replace("@127.0.0.1:", "@localhost:");
    let p = project(
        "mysql",
        &by_name,
        &format!(", tls: verify-full, ca_file: \"{ca}\""),
        MY_SSL,
    );
    let err = run(&p).unwrap_err();
    assert!(
        err.contains("TLS handshake failed: invalid peer certificate: certificate not valid for name \"localhost\""),
        "{err}"
    );
    assert!(
        err.contains(WRONG_NAME) && !err.contains("verify-ca"),
        "{err}"
    );
}

#[test]
fn mysql_require_prefer_and_disable() {
    let Some(url) = my_url() else { return };
    for (settings, encrypted) in [
        (", tls: require", true),
        ("", true), // the default, prefer
        (", tls: disable", false),
    ] {
        let p = project("mysql", &url, settings, MY_SSL);
        let csv = run(&p).unwrap();
        assert_eq!(
            !ssl_version(&csv).is_empty(),
            encrypted,
            "{settings}: {csv}"
        );
    }
    let plain = project("mysql", &url, ", tls: disable", MY_SSL);
    let text = sources_test(&plain);
    assert!(text.contains(", not encrypted (tls: disable)"), "{text}");
}

/// `url` with its port replaced by `port`.
fn via_port(url: &str, port: u16) -> String {
    let (head, tail) = url.rsplit_once(':').expect("a URL with a port");
    let rest = tail.find('/').map_or("", |i| &tail[i..]);
    format!("{head}:{port}{rest}")
}

/// The port of `url`.
fn port_of(url: &str) -> u16 {
    let tail = url.rsplit_once(':').expect("a URL with a port").1;
    tail.split('/')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric port")
}

const NOT_OFFERED: &str = "needs TLS and the server does not offer it";

#[test]
fn postgres_without_tls_fails_require_and_verify_and_prefer_goes_plain() {
    let Some(url) = pg_url() else { return };
    let proxy = NoTlsProxy::start(Protocol::Postgres, port_of(&url));
    let plain_url = via_port(&url, proxy.port);
    for mode in ["require", "verify-ca", "verify-full"] {
        let before = proxy.connections();
        // `ca_file` goes only with the verifying modes (validation refuses it otherwise).
        let ca = match mode {
            "require" => String::new(),
            _ => format!(", ca_file: \"{}\"", db_ca()),
        };
        let settings = format!(", tls: {mode}{ca}");
        let err = run(&project("postgres", &plain_url, &settings, PG_SSL)).unwrap_err();
        assert!(
            err.contains(NOT_OFFERED) && err.contains(&format!("`tls: {mode}`")),
            "{mode}: {err}"
        );
        // Refused once, and never tried again without TLS.
        assert_eq!(proxy.connections() - before, 1, "{mode}");
    }
    let refused = proxy.refusals();
    let p = project("postgres", &plain_url, "", PG_SSL);
    assert_eq!(
        run(&p).unwrap(),
        "ssl\nfalse\n",
        "prefer falls back to plain"
    );
    assert!(proxy.refusals() > refused, "prefer asked for TLS first");
    let text = sources_test(&p);
    assert!(text.contains(", not encrypted (tls: prefer)"), "{text}");
}

#[test]
fn mysql_without_tls_fails_require_and_verify_and_prefer_goes_plain() {
    let Some(url) = my_url() else { return };
    let proxy = NoTlsProxy::start(Protocol::Mysql, port_of(&url));
    let plain_url = via_port(&url, proxy.port);
    for settings in [
        ", tls: require".to_string(),
        format!(", tls: verify-full, ca_file: \"{}\"", db_ca()),
    ] {
        let before = proxy.connections();
        let err = run(&project("mysql", &plain_url, &settings, MY_SSL)).unwrap_err();
        assert!(err.contains(NOT_OFFERED), "{settings}: {err}");
        assert_eq!(proxy.connections() - before, 1, "{settings}");
    }
    let before = proxy.connections();
    let p = project("mysql", &plain_url, "", MY_SSL);
    let csv = run(&p).unwrap();
    assert!(
        ssl_version(&csv).is_empty(),
        "prefer falls back to plain: {csv}"
    );
    // mysql_async stops at a handshake without TLS when asked for it; ferry then connects
    // again without: two connections.
    assert_eq!(
        proxy.connections() - before,
        2,
        "prefer reconnected without TLS"
    );
    let text = sources_test(&p);
    assert!(text.contains(", not encrypted (tls: prefer)"), "{text}");
}
