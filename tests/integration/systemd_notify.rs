//! `ferry serve` under systemd `Type=notify` (issue 15 item 1): with `NOTIFY_SOCKET` and
//! `WATCHDOG_USEC` set as systemd sets them, it sends `READY=1` once started, `WATCHDOG=1`
//! pings at half the watchdog interval, and `STOPPING=1` on SIGTERM. The socket is a real
//! Unix datagram socket read here, as systemd's.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::support::{Project, terminate};

/// The next message on `sock`, within `limit`.
fn next(sock: &UnixDatagram, limit: Duration) -> Option<String> {
    sock.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn serve_tells_systemd_ready_alive_and_stopping() {
    let p = Project::fixture("project");
    let path = p.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut child = p
        .command(&["serve"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = next(&sock, Duration::from_secs(30)).expect("READY=1 from ferry serve");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains("STATUS=scheduling"), "{ready}");
    // Pings every 200 ms: three within two seconds.
    let start = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        let m = next(&sock, Duration::from_secs(2)).expect("a watchdog ping");
        if m.lines().any(|l| l == "WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!(start.elapsed() < Duration::from_secs(5));
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let mut stopping = false;
    while let Some(m) = next(&sock, Duration::from_secs(30)) {
        if m.lines().any(|l| l == "STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "no STOPPING=1");
    assert_eq!(terminate(&mut child), Some(0));
}
