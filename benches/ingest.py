#!/usr/bin/env python3
"""Query-by-email benchmark (issue 13's performance section), run by benches/ingest.sh
under the throwaway servers of scripts/test-services.sh (Dovecot, Postfix).

Phase A: N small requests (default 500) are appended at once to the request folder of a
running `ferry serve`; measured: the time from the first append to the last reply in the
sender's mailbox (replies go out through Postfix and come back into Dovecot), requests
per second, and the peak RSS of `ferry serve` (/usr/bin/time).

Phase B: a fresh `ferry serve` answers ten ~9.5 MB requests (a small query and a 9.5 MB
attachment that is not a query, under the 10 MB `max_mail_bytes`); measured: its peak RSS
(the target is at most 150 MB).

Only the Python standard library is used (imaplib, sqlite3, subprocess).
"""

import imaplib
import json
import os
import random
import sqlite3
import subprocess
import sys
import time

FERRY = sys.argv[1]
OUT = sys.argv[2]
N = int(os.environ.get("REQUESTS", "500"))
BIG = int(os.environ.get("BIG_REQUESTS", "10"))
IMAP_PORT = int(os.environ["FERRY_TEST_IMAP_PORT"])
SMTP_PORT = int(os.environ["FERRY_TEST_SMTP_PORT"])
FERRY_USER = os.environ["FERRY_TEST_SMTP_USER"]
FERRY_PW = os.environ["FERRY_TEST_SMTP_PASSWORD"]
ALICE = "alice@example.test"
ALICE_PW = os.environ["FERRY_TEST_IMAP_PASSWORD"]
STAMP = time.strftime("%Y%m%d%H%M%S")


def project(folder):
    d = os.path.join(OUT, folder)
    os.makedirs(d, exist_ok=True)
    db = os.path.join(d, "sales.db")
    if not os.path.exists(db):
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, day TEXT, amount REAL)")
        con.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)",
            [(i, "2026-12-06", i * 1.5) for i in range(1, 201)],
        )
        con.commit()
        con.close()
    with open(os.path.join(d, "config.yaml"), "w") as f:
        f.write(
            f"""timezone: Asia/Shanghai
store: {{ url: "sqlite://data/ferry.db" }}
tasks_dir: tasks
datasources:
  sales: {{ type: sqlite, url: "sqlite://sales.db" }}
channels:
  reply:
    type: email
    host: 127.0.0.1
    port: {SMTP_PORT}
    security: none
    from: {FERRY_USER}
ingest:
  imap:
    host: 127.0.0.1
    port: {IMAP_PORT}
    security: none
    username: {FERRY_USER}
    password: {FERRY_PW}
  folders:
    requests: {folder}
    processed: {folder}-processed
    rejected: {folder}-rejected
    ignored: {folder}-ignored
  poll_every: 1s
  authserv_id: mx.example.test
  senders:
    - address: {ALICE}
      databases: [sales]
      daily_quota: 100000
  reply:
    channel: reply
    daily_cap: 100000
"""
        )
    os.makedirs(os.path.join(d, "tasks"), exist_ok=True)
    return d


def request(mid, extra=b""):
    head = (
        "Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\r\n"
        f"From: Alice <{ALICE}>\r\nTo: {FERRY_USER}\r\nSubject: bench {mid}\r\n"
        f"Message-ID: <{mid}@bench.example.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\ndatabase: sales\r\n"
        "--b\r\nContent-Type: application/octet-stream; name=\"orders.sql\"\r\n"
        "Content-Disposition: attachment; filename=\"orders.sql\"\r\n\r\n"
        "SELECT id, day, amount FROM orders ORDER BY id\r\n"
    ).encode()
    if extra:
        head += (
            b"--b\r\nContent-Type: image/png; name=\"photo.png\"\r\n"
            b"Content-Disposition: attachment; filename=\"photo.png\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + extra + b"\r\n"
        )
    return head + b"--b--\r\n"


def imap(user, pw):
    c = imaplib.IMAP4("127.0.0.1", IMAP_PORT)
    c.login(user, pw)
    return c


def replies(prefix):
    c = imap(ALICE, ALICE_PW)
    c.select("INBOX")
    typ, data = c.uid("SEARCH", None, "HEADER", "In-Reply-To", prefix)
    c.logout()
    return len(data[0].split()) if data and data[0] else 0


def serve(d, name):
    log = open(os.path.join(d, f"{name}.log"), "w")
    timing = os.path.join(d, f"{name}.time")
    env = dict(os.environ, FERRY_LOG="info")
    p = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M %e %U %S", "-o", timing, FERRY, "--config", "config.yaml", "serve"],
        cwd=d,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    deadline = time.time() + 60
    while "ferry serve started" not in open(os.path.join(d, f"{name}.log")).read():
        if time.time() > deadline or p.poll() is not None:
            sys.exit(f"ferry serve did not start; see {d}/{name}.log")
        time.sleep(0.1)
    return p, timing


def stop(p, timing):
    # /usr/bin/time forwards nothing: signal ferry itself (the time process's child).
    children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    for c in children:
        os.kill(int(c), 15)
    p.wait(timeout=120)
    kb, wall, user, sys_ = open(timing).read().split()[-4:]
    return {"peak_rss_mb": round(int(kb) / 1024, 1), "wall_s": float(wall), "cpu_s": round(float(user) + float(sys_), 2)}


def wait_replies(prefix, n, limit):
    deadline = time.time() + limit
    while True:
        got = replies(prefix)
        if got >= n:
            return time.time()
        if time.time() > deadline:
            sys.exit(f"only {got} of {n} replies after {limit} s")
        time.sleep(0.2)


def main():
    results = {"requests": N, "big_requests": BIG}
    # Phase A.
    folder = f"benchA{STAMP}"
    d = project(folder)
    c = imap(FERRY_USER, FERRY_PW)
    c.create(folder)
    p, timing = serve(d, "serve-a")
    mails = [request(f"a{STAMP}-{i}") for i in range(N)]
    t0 = time.time()
    for m in mails:
        c.append(folder, None, None, m)
    appended = time.time()
    c.logout()
    done = wait_replies(f"<a{STAMP}-", N, 1800)
    res = stop(p, timing)
    results["phase_a"] = {
        "append_s": round(appended - t0, 2),
        "first_append_to_last_reply_s": round(done - t0, 2),
        "requests_per_s": round(N / (done - t0), 1),
        **res,
    }
    print(json.dumps(results["phase_a"]))
    # Phase B.
    folder = f"benchB{STAMP}"
    d = project(folder)
    c = imap(FERRY_USER, FERRY_PW)
    c.create(folder)
    raw = bytes(random.getrandbits(8) for _ in range(7_000_000))
    import base64

    blob = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    p, timing = serve(d, "serve-b")
    t0 = time.time()
    sizes = []
    for i in range(BIG):
        m = request(f"b{STAMP}-{i}", blob)
        sizes.append(len(m))
        c.append(folder, None, None, m)
    c.logout()
    done = wait_replies(f"<b{STAMP}-", BIG, 1800)
    res = stop(p, timing)
    results["phase_b"] = {
        "mail_bytes": sizes[0],
        "first_append_to_last_reply_s": round(done - t0, 2),
        **res,
    }
    print(json.dumps(results["phase_b"]))
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=2)


main()
