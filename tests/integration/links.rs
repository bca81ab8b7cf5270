//! Signed download links through the real `ferry serve` and a real HTTP/1.1 client on
//! loopback: valid links (GET, HEAD, Range), one changed character in id, expiry or
//! signature, expired links, removed files, traversal attempts, a symlink swapped in, a
//! store row pointing outside `output_dir`, UTF-8 file names, the download records, weak
//! keys and the errors of `ferry link`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::support::{Project, describe, only_task, poll, serve, stderr, terminate, wait_logged};

const KEY: &str = "t3Jx9-QmT2vLw8ZpR4yN6bHc1dF5gS7aW0e";
const PUBLIC: &str = "http://files.example.test/ferry";
/// The seed's text that only config.yaml holds: it must never appear in a response.
const CONFIG_MARK: &str = "datasources";

fn links_config(p: &Project, key_line: &str) {
    let base = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &format!(
            "{base}links:\n  listen: \"127.0.0.1:0\"\n  public_url: \"{PUBLIC}/\"\n  {key_line}\n  expiry: 2h\n"
        ),
    );
}

/// A project with `links:` and one task whose file has a Chinese name.
fn project() -> Project {
    project_with(&format!("signing_key: \"{KEY}\""))
}

fn project_with(key_line: &str) -> Project {
    let p = Project::fixture("project");
    links_config(&p, key_line);
    only_task(
        &p,
        "dl",
        "schedule: \"0 6 * * *\"\nsource: db\nquery: SELECT id, label FROM big ORDER BY id LIMIT 300\noutput: { format: csv, file_name: \"销售日报\" }\n",
    );
    p
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, the target sent exactly as given (no
/// normalisation of `..` or percent escapes), `Connection: close`.
fn http(port: u16, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: files.example.test\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let reply = Reply {
        status,
        headers,
        body,
    };
    assert!(
        reply.header("transfer-encoding").is_none(),
        "bodies have a Content-Length"
    );
    if let Some(len) = reply.header("content-length")
        && method != "HEAD"
    {
        assert_eq!(len.parse::<usize>().unwrap(), reply.body.len(), "{target}");
    }
    reply
}

/// Starts `ferry serve` and returns it with the port it bound (from its log).
fn start(p: &Project) -> (std::process::Child, u16) {
    let child = serve(p, "serve.log");
    let mut port = 0u16;
    wait_logged(
        p,
        "serve.log",
        Duration::from_secs(60),
        "the download server",
        || {
            let log = std::fs::read_to_string(p.path().join("serve.log")).unwrap_or_default();
            if let Some(i) = log.find("listening on http://127.0.0.1:") {
                let rest = &log[i + "listening on http://127.0.0.1:".len()..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                port = digits.parse().unwrap_or(0);
            }
            port != 0
        },
    );
    (child, port)
}

/// `ferry link RUN --json ARGS`: (exit code, JSON or null, stderr).
fn link_json(p: &Project, run: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["link", run, "--json"];
    args.extend_from_slice(extra);
    let out = p.ferry(&args);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)))
}

/// The request target of a link (path and query), and its id, exp and sig.
fn target_of(url: &str) -> (String, String, String, String) {
    let target = url
        .strip_prefix("http://files.example.test")
        .unwrap()
        .to_string();
    let (path, query) = target.split_once('?').unwrap();
    let id = path
        .strip_prefix("/ferry/d/")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let exp = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("exp="))
        .unwrap();
    let sig = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("sig="))
        .unwrap();
    (target.clone(), id.into(), exp.into(), sig.into())
}

/// Changes the character at `i` to another of the base64url alphabet.
fn flip(s: &str, i: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[i] = if b[i] == b'x' { b'y' } else { b'x' };
    String::from_utf8(b).unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn assert_no_leak(r: &Reply, what: &str) {
    let t = r.text();
    assert!(
        !t.contains(CONFIG_MARK) && !t.contains("root:") && !t.contains("row number"),
        "{what}: a file's content came back: {t}"
    );
}

#[test]
fn signed_links_serve_the_exact_file_and_refuse_everything_else() {
    let p = project();
    let run = p.run_json("dl", &[], 0);
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let sha = run["files"][0]["sha256"].as_str().unwrap().to_string();
    let file_path = p.path().join(run["files"][0]["path"].as_str().unwrap());
    let bytes = std::fs::read(&file_path).unwrap();
    assert!(bytes.len() > 1000, "a file worth ranging over");
    let len = bytes.len();

    let (mut child, port) = start(&p);
    let made = link_json(&p, &run_id, &[]);
    let link = &made["links"][0];
    assert_eq!(link["name"], "销售日报.csv");
    assert_eq!(link["sha256"], sha.as_str());
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{PUBLIC}/d/"))
            && url.contains("/%E9%94%80%E5%94%AE%E6%97%A5%E6%8A%A5.csv?exp="),
        "{url}"
    );
    let (target, id, exp, sig) = target_of(url);
    assert_eq!(id.len(), 22, "128-bit ids: {id}");
    // Fresh links of the same file keep the id; they differ only in expiry and signature.
    let again = link_json(&p, &run_id, &["--expiry", "1h"]);
    assert_eq!(again["links"][0]["link_id"], link["link_id"]);

    // A valid link: the exact bytes, with the download headers.
    let ok = http(port, "GET", &target, &[("X-Forwarded-For", "203.0.113.9")]);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(sha256_hex(&ok.body), sha, "the bytes the run recorded");
    assert_eq!(ok.body, bytes);
    assert_eq!(ok.header("content-type"), Some("text/csv"));
    assert_eq!(ok.header("accept-ranges"), Some("bytes"));
    assert_eq!(ok.header("cache-control"), Some("private, no-store"));
    assert_eq!(ok.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(ok.header("content-length"), Some(len.to_string().as_str()));
    let cd = ok.header("content-disposition").unwrap();
    assert!(cd.starts_with("attachment; filename=\""), "{cd}");
    let encoded = cd.split("filename*=UTF-8''").nth(1).unwrap();
    assert_eq!(
        percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .unwrap(),
        "销售日报.csv"
    );

    // HEAD: the same headers, no body.
    let head = http(port, "HEAD", &target, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );
    assert!(head.body.is_empty());

    // Ranges: the first 100 bytes, the last 10, one past the end.
    let r = http(port, "GET", &target, &[("Range", "bytes=0-99")]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-99/{len}").as_str())
    );
    assert_eq!(r.body, &bytes[..100]);
    let r = http(port, "GET", &target, &[("Range", "bytes=-10")]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{len}", len - 10, len - 1).as_str())
    );
    assert_eq!(r.body, &bytes[len - 10..]);
    let r = http(port, "GET", &target, &[("Range", "bytes=100-")]);
    assert_eq!((r.status, r.body.as_slice()), (206, &bytes[100..]));
    let r = http(port, "GET", &target, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    // A resume against another version of the file (If-Range) gets the whole file.
    let r = http(
        port,
        "GET",
        &target,
        &[("Range", "bytes=0-9"), ("If-Range", "\"0000\"")],
    );
    assert_eq!((r.status, r.body.len()), (200, len));
    let etag = ok.header("etag").unwrap().to_string();
    let r = http(
        port,
        "GET",
        &target,
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    );
    assert_eq!(r.status, 206);

    // The name segment is cosmetic: it never selects a file.
    let renamed = format!("/ferry/d/{id}/..%2f..%2fconfig.yaml?exp={exp}&sig={sig}");
    let r = http(port, "GET", &renamed, &[]);
    assert_eq!((r.status, &r.body), (200, &bytes));

    // One character changed in the id, the expiry or the signature: 403, nothing served.
    let mut tampered = Vec::new();
    for i in [0, 11, 21] {
        tampered.push(format!(
            "/ferry/d/{}/x.csv?exp={exp}&sig={sig}",
            flip(&id, i)
        ));
    }
    let later = (exp.parse::<i64>().unwrap() + 1).to_string();
    let earlier = (exp.parse::<i64>().unwrap() - 1).to_string();
    tampered.push(format!("/ferry/d/{id}/x.csv?exp={later}&sig={sig}"));
    tampered.push(format!("/ferry/d/{id}/x.csv?exp={earlier}&sig={sig}"));
    for i in [0, 20, 42] {
        tampered.push(format!(
            "/ferry/d/{id}/x.csv?exp={exp}&sig={}",
            flip(&sig, i)
        ));
    }
    tampered.push(format!("/ferry/d/{id}/x.csv"));
    tampered.push(format!("/ferry/d/{id}?exp={exp}"));
    for t in &tampered {
        let r = http(port, "GET", t, &[]);
        assert_eq!(r.status, 403, "{t}: {}", r.text());
        assert_no_leak(&r, t);
    }

    // Traversal and absolute paths: 404 (or 403), never a file.
    let q = format!("?exp={exp}&sig={sig}");
    let attempts = [
        "/ferry/d/../../etc/passwd".to_string(),
        format!("/ferry/d/../../config.yaml{q}"),
        "/ferry/d/%2e%2e%2fconfig.yaml".to_string(),
        format!("/ferry/d/%2e%2e%2f%2e%2e%2fconfig.yaml{q}"),
        "/ferry/d/..%5cconfig.yaml".to_string(),
        format!("/ferry/d/..%5c..%5cconfig.yaml{q}"),
        "/ferry/d//etc/passwd".to_string(),
        format!("/ferry/d//etc/passwd{q}"),
        "/ferry/d/C:/Windows/win.ini".to_string(),
        "/ferry/d/C:%5cWindows%5cwin.ini".to_string(),
        "/ferry/../config.yaml".to_string(),
        "/etc/passwd".to_string(),
        "/config.yaml".to_string(),
        "/ferry/config.yaml".to_string(),
        "/ferry/exports/dl/".to_string(),
        format!("/d/{id}/x.csv{q}"),
        format!("/ferry/d/{id}%2f..%2f..%2fconfig.yaml{q}"),
    ];
    for t in &attempts {
        let r = http(port, "GET", t, &[]);
        assert!(
            r.status == 404 || r.status == 403,
            "{t}: {} {}",
            r.status,
            r.text()
        );
        assert_no_leak(&r, t);
    }

    // Each request for the link is recorded, with the socket's address (the
    // X-Forwarded-For header is not trusted by default).
    let downloads = poll(Duration::from_secs(10), "the download records", || {
        let v = link_json(&p, &run_id, &[]);
        let d = v["links"][0]["downloads"].as_array().unwrap().clone();
        let full_done = d
            .iter()
            .filter(|x| x["status"] == 200)
            .any(|x| x["bytes_sent"] == len as u64);
        let range_done = d
            .iter()
            .any(|x| x["range"] == "bytes=0-99" && x["bytes_sent"] == 100);
        (full_done && range_done).then_some(d)
    });
    assert!(
        downloads.iter().all(|d| d["client"] == "127.0.0.1"),
        "{downloads:#?}"
    );
    assert!(downloads.iter().all(|d| d["link_id"] == id.as_str()));
    let count = |s: u64| downloads.iter().filter(|d| d["status"] == s).count();
    // Requests with a changed id name no link; the other seven tampered ones are recorded.
    assert_eq!(
        count(403),
        7,
        "tampered requests are recorded: {downloads:#?}"
    );
    assert_eq!(count(416), 1);
    assert!(
        downloads
            .iter()
            .any(|d| d["status"] == 200 && d["bytes_sent"] == 0),
        "the HEAD request: {downloads:#?}"
    );

    // An expired link: 410, and the time it expired.
    let short = link_json(&p, &run_id, &["--expiry", "1s"]);
    let (short_target, ..) = target_of(short["links"][0]["url"].as_str().unwrap());
    let expired = poll(Duration::from_secs(10), "the link to expire", || {
        let r = http(port, "GET", &short_target, &[]);
        (r.status != 200).then_some(r)
    });
    assert_eq!(expired.status, 410, "{}", expired.text());
    assert!(
        expired.text().contains("link expired on"),
        "{}",
        expired.text()
    );
    assert_no_leak(&expired, "expired");

    // The file removed (retention): 410 for the link, and `ferry link` says so.
    std::fs::remove_file(&file_path).unwrap();
    let gone = http(port, "GET", &target, &[]);
    assert_eq!(gone.status, 410);
    assert!(gone.text().contains("file removed"), "{}", gone.text());
    let out = p.ferry(&["link", &run_id]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("the file is gone"),
        "{}",
        describe(&out)
    );

    assert_eq!(terminate(&mut child), Some(0));
}

#[test]
fn nothing_outside_output_dir_is_served_even_through_the_store() {
    let p = project();
    let run = p.run_json("dl", &[], 0);
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let file_path = p.path().join(run["files"][0]["path"].as_str().unwrap());
    let len = std::fs::metadata(&file_path).unwrap().len() as usize;
    let (mut child, port) = start(&p);
    let made = link_json(&p, &run_id, &[]);
    let (target, ..) = target_of(made["links"][0]["url"].as_str().unwrap());

    // The published file swapped for a symlink to a file of the same size outside
    // output_dir: the link no longer serves anything.
    let outside = p.path().join("outside.txt");
    std::fs::write(&outside, "s".repeat(len)).unwrap();
    std::fs::remove_file(&file_path).unwrap();
    std::os::unix::fs::symlink(&outside, &file_path).unwrap();
    let r = http(port, "GET", &target, &[]);
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(!r.text().contains("sss"), "{}", r.text());

    // A correctly signed link whose store row names a file outside output_dir (a store
    // edited by hand): 404.
    let id = "AAAAAAAAAAAAAAAAAAAAAA";
    let conn = rusqlite::Connection::open(p.path().join("data/ferry.db")).unwrap();
    conn.execute(
        "INSERT INTO links (id, run_id, path, name, bytes, sha256, created_at)
         VALUES (?1, ?2, ?3, 'config.yaml', ?4, 'x', '2026-01-01T00:00:00.000Z')",
        rusqlite::params![
            id,
            run_id,
            p.path()
                .join("config.yaml")
                .canonicalize()
                .unwrap()
                .display()
                .to_string(),
            std::fs::metadata(p.path().join("config.yaml"))
                .unwrap()
                .len() as i64
        ],
    )
    .unwrap();
    drop(conn);
    let exp = chrono::Utc::now().timestamp() + 3600;
    let sig = sign(id, exp);
    let r = http(
        port,
        "GET",
        &format!("/ferry/d/{id}/c?exp={exp}&sig={sig}"),
        &[],
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_no_leak(&r, "row outside output_dir");
    // The same signature for another id is refused before any lookup.
    let r = http(
        port,
        "GET",
        &format!("/ferry/d/BAAAAAAAAAAAAAAAAAAAAA/c?exp={exp}&sig={sig}"),
        &[],
    );
    assert_eq!(r.status, 403);

    assert_eq!(terminate(&mut child), Some(0));
}

#[test]
fn serve_refuses_empty_and_placeholder_keys() {
    for (value, expect) in [
        ("change-me", "placeholder"),
        ("an-example-signing-key-of-enough-length", "placeholder"),
        ("", "is empty"),
        ("Zq8vN3mW7pL2", "12 bytes long"),
    ] {
        let p = project_with("signing_key: ${FERRY_LINK_KEY}");

        let mut child = p
            .command(&["serve"])
            .env("FERRY_LINK_KEY", value)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if start.elapsed() > Duration::from_secs(30) {
                child.kill().unwrap();
                panic!("ferry serve started with the key `{value}`");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(2), "{value}: {err}");
        assert!(
            err.contains("links.signing_key") && err.contains(expect),
            "{value}: {err}"
        );
        if !value.is_empty() {
            assert!(!err.contains(value), "the key is never printed: {err}");
        }
        assert!(!p.path().join("data/ferry.db").exists(), "nothing started");
    }
}

#[test]
fn link_command_explains_what_it_cannot_do() {
    let p = project();
    // Not configured.
    let plain = Project::fixture("project");
    let out = plain.ferry(&["link", "whatever"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("download links are not configured: add a `links:` section"),
        "{}",
        describe(&out)
    );
    // Unknown run.
    let out = p.ferry(&["link", "0190-no-such-run"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("unknown run `0190-no-such-run`"),
        "{}",
        describe(&out)
    );
    // A run without files (its query failed).
    p.write(
        "tasks/broken.yaml",
        "schedule: \"0 6 * * *\"\nsource: db\nquery: SELECT * FROM no_such_table\noutput: { format: csv }\n",
    );
    let failed = p.run_json("broken", &[], 1);
    let out = p.ferry(&["link", failed["run_id"].as_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("has no files to link (failed: "),
        "{}",
        describe(&out)
    );
    // Expiry beyond the cap, or not a duration.
    let ok = p.run_json("dl", &[], 0);
    let run_id = ok["run_id"].as_str().unwrap();
    let out = p.ferry(&["link", run_id, "--expiry", "8d"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("longer than the cap of 7d"),
        "{}",
        describe(&out)
    );
    let out = p.ferry(&["link", run_id, "--expiry", "soon"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("invalid duration"),
        "{}",
        describe(&out)
    );
    // The plain output: name, size, expiry, then the link.
    let out = p.ferry(&["link", run_id, "--expiry", "7d"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert!(
        lines.next().unwrap().starts_with("销售日报.csv ("),
        "{text}"
    );
    assert!(
        lines.next().unwrap().starts_with(&format!("{PUBLIC}/d/")),
        "{text}"
    );
}

/// `sig` for `id` and `exp` made with the test key, as a ferry holding it would.
fn sign(id: &str, exp: i64) -> String {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(format!("GET\n{id}\n{exp}").as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

#[test]
fn only_the_documented_paths_serve_and_far_expiries_are_refused_truthfully() {
    let p = project();
    let run = p.run_json("dl", &[], 0);
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let (mut child, port) = start(&p);
    let made = link_json(&p, &run_id, &[]);
    let (_, id, exp, sig) = target_of(made["links"][0]["url"].as_str().unwrap());
    let q = format!("?exp={exp}&sig={sig}");

    // The two documented shapes serve.
    for t in [
        format!("/ferry/d/{id}{q}"),
        format!("/ferry/d/{id}/a.csv{q}"),
    ] {
        let r = http(port, "GET", &t, &[]);
        assert_eq!(r.status, 200, "{t}: {}", r.text());
    }
    // Anything else is 404, even with a valid signature: more segments, empty segments,
    // dot segments, a trailing slash.
    for t in [
        format!("/ferry/d/{id}/x/y{q}"),
        format!("/ferry/d/{id}/x/y/z.csv{q}"),
        format!("/ferry/d/{id}/{q}"),
        format!("/ferry/d/{id}/a.csv/{q}"),
        format!("/ferry/d/{id}//a.csv{q}"),
        format!("/ferry/d//{id}/a.csv{q}"),
        format!("/ferry/d/{id}/.{q}"),
        format!("/ferry/d/{id}/..{q}"),
        format!("/ferry/d/{id}/%2e%2E{q}"),
        format!("/ferry/d/{id}/../x{q}"),
        format!("/ferry//d/{id}/a.csv{q}"),
    ] {
        let r = http(port, "GET", &t, &[]);
        assert_no_leak(&r, &t);
        assert_eq!((r.status, r.text()), (404, "not found\n".into()), "{t}");
    }

    // Correctly signed, but expiring beyond the 7-day cap (another ferry holding the key
    // with a wrong clock, or a hand-made link): refused as such, not as a bad signature.
    let far = chrono::Utc::now().timestamp() + 8 * 86_400;
    let t = format!("/ferry/d/{id}/a.csv?exp={far}&sig={}", sign(&id, far));
    let r = http(port, "GET", &t, &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    let text = r.text();
    assert!(
        !text.contains("bad signature")
            && text.contains("expires on")
            && text.contains("more than 7d")
            && text.contains(&format!("ferry link {run_id}")),
        "{text}"
    );
    assert_no_leak(&r, "far expiry");
    // A tampered far link is still a bad signature.
    let t = format!(
        "/ferry/d/{id}/a.csv?exp={far}&sig={}",
        flip(&sign(&id, far), 3)
    );
    let r = http(port, "GET", &t, &[]);
    assert_eq!(
        (r.status, r.text()),
        (403, "forbidden: bad signature\n".into())
    );

    // The audit tells the two refusals apart.
    let downloads = poll(Duration::from_secs(10), "the download records", || {
        let v = link_json(&p, &run_id, &[]);
        let d = v["links"][0]["downloads"].as_array().unwrap().clone();
        (d.iter().filter(|x| x["status"] == 403).count() == 2).then_some(d)
    });
    let reasons: Vec<&str> = downloads
        .iter()
        .filter(|d| d["status"] == 403)
        .map(|d| d["reason"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(
        reasons,
        ["bad signature", "expiry beyond the maximum"],
        "{downloads:#?}"
    );
    assert!(
        downloads
            .iter()
            .filter(|d| d["status"] == 200)
            .all(|d| d["reason"].is_null()),
        "{downloads:#?}"
    );

    assert_eq!(terminate(&mut child), Some(0));
}
