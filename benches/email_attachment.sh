#!/usr/bin/env bash
# Email benchmark (not part of CI): peak memory of `ferry run` mailing one large CSV
# attachment (default 25 MB) through the test Postfix, against the same run without the
# notification and against Python's smtplib mailing the same file (the hand-written
# scripts ferry replaces). Needs the mail servers of scripts/test-services.sh, so run it
# through that script:
#
#   scripts/test-services.sh bash benches/email_attachment.sh [MB]
#
# Uses $FERRY if set, else builds the release binary. Writes under bench-out/email/.
# Results are recorded in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
MB="${1:-25}"
: "${FERRY_TEST_SMTP_PORT:?run this through scripts/test-services.sh}"
if [ -z "${FERRY:-}" ]; then
    cargo build --release --locked
    FERRY="${CARGO_TARGET_DIR:-target}/release/ferry"
fi
FERRY="$(realpath "$FERRY")"
OUT="$PWD/bench-out/email"
rm -rf "$OUT"
mkdir -p "$OUT/tasks" "$OUT/templates"
cp templates/report.md.j2 templates/report.subject.j2 templates/report.html.j2 "$OUT/templates/"
# 73 bytes a row: id, 64 hex characters.
ROWS=$((MB * 1000 * 1000 / 73))
cat >"$OUT/config.yaml" <<YAML
timezone: UTC
store: { url: "sqlite://data/ferry.db" }
datasources:
  db: { type: sqlite, url: "sqlite://bench.db", seed_sql: seed.sql }
channels:
  mail:
    type: email
    host: 127.0.0.1
    port: $FERRY_TEST_SMTP_PORT
    security: none
    from: "ferry <ferry@example.test>"
    to: [bob@example.test]
    max_attachment_bytes: 104857600
YAML
echo "CREATE TABLE one (x INTEGER); INSERT INTO one VALUES (1);" >"$OUT/seed.sql"
cat >"$OUT/tasks/big.yaml" <<YAML
schedule: "0 3 * * *"
source: db
query: |
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS)
  SELECT i, hex(randomblob(32)) AS h FROM n
output: { format: csv, file_name: big }
notify: [mail]
YAML
cd "$OUT"
measure() { # name command...
    local name="$1"
    shift
    /usr/bin/time -f '%e %M' -o "$name.time" "$@" >"$name.out"
    read -r secs kb <"$name.time"
    printf '%-28s %8.1f MB peak RSS %7.2f s\n' "$name" "$(echo "$kb / 1024" | bc -l)" "$secs"
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
measure "ferry run --no-notify" "$FERRY" run big --no-notify --json
FILE="$(python3 -c 'import json; print(json.load(open("ferry run --no-notify.out"))["files"][0]["path"])')"
echo "attachment: $FILE, $(stat -c %s "$FILE") bytes"
measure "ferry run (email)" "$FERRY" run big --json
python3 - <<'PY'
import json
d = json.load(open("ferry run (email).out"))["deliveries"]
assert d and d[0]["status"] == "sent", d
print("delivered:", d[0]["receipt"])
PY
cat >smtplib_send.py <<'PY'
import smtplib, sys
from email.message import EmailMessage
path, port = sys.argv[1], int(sys.argv[2])
msg = EmailMessage()
msg["From"], msg["To"], msg["Subject"] = "ferry@example.test", "bob@example.test", "big"
msg.set_content("see attachment")
with open(path, "rb") as f:
    msg.add_attachment(f.read(), maintype="text", subtype="csv", filename="big.csv")
with smtplib.SMTP("127.0.0.1", port) as s:
    s.send_message(msg)
PY
measure "python smtplib (baseline)" python3 smtplib_send.py "$FILE" "$FERRY_TEST_SMTP_PORT"
