#!/usr/bin/env bash
# Starts throwaway PostgreSQL and MariaDB servers on free loopback ports in a temporary
# folder, exports their URLs, runs the given command, and stops the servers afterwards
# (also when the command fails or is interrupted). Installs Debian's `postgresql` and
# `mariadb-server` packages first when they are missing.
#
#   scripts/test-services.sh cargo test
#
# Exported to the command:
#   FERRY_TEST_PG_URL     postgres://ferry:ferry@127.0.0.1:PORT/ferry_test
#   FERRY_TEST_MYSQL_URL  mysql://ferry:ferry@127.0.0.1:PORT/ferry_test
# Both accounts own their test database; nothing listens beyond 127.0.0.1.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

log() { echo "test-services: $*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
maria_bin() { command -v mariadbd || ls /usr/sbin/mariadbd 2>/dev/null || true; }

missing=()
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
[ -n "$(maria_bin)" ] || missing+=(mariadb-server)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "missing packages: ${missing[*]}; install them (as root: apt-get install ${missing[*]})"
        exit 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    # The packages' own services may try to start on the default ports; ours use others.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PG_BIN="$(pg_bin)"
MARIADBD="$(maria_bin)"
tmp="$(mktemp -d /tmp/ferry-services.XXXXXX)"
chmod 755 "$tmp"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

as_user() {
    local user="$1"
    shift
    if [ "$(id -un)" = "$user" ] || [ "$(id -u)" -ne 0 ]; then
        "$@"
    else
        runuser -u "$user" -- "$@"
    fi
}

pg_user=postgres
maria_user=mysql
if [ "$(id -u)" -ne 0 ]; then
    pg_user="$(id -un)"
    maria_user="$(id -un)"
fi

cleanup() {
    set +e
    if [ -f "$tmp/pg/postmaster.pid" ]; then
        as_user "$pg_user" "$PG_BIN/pg_ctl" -D "$tmp/pg" -m immediate -w stop >/dev/null 2>&1
    fi
    if [ -f "$tmp/mariadb-run/mariadb.pid" ]; then
        local pid
        pid="$(cat "$tmp/mariadb-run/mariadb.pid")"
        kill "$pid" 2>/dev/null
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PostgreSQL
pg_port="$(free_port)"
mkdir -p "$tmp/pg" "$tmp/pgsock"
chown -R "$pg_user" "$tmp/pg" "$tmp/pgsock"
as_user "$pg_user" "$PG_BIN/initdb" -D "$tmp/pg" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$tmp/pg-init.log" 2>&1 \
    || { cat "$tmp/pg-init.log" >&2; exit 1; }
# The test role logs in with a password (SCRAM), so tests can check authentication
# failures; the admin role `postgres` is trusted on loopback for setup and checks.
cat >"$tmp/pg/pg_hba.conf" <<'HBA'
local all all                   trust
host  all postgres 127.0.0.1/32 trust
host  all all      127.0.0.1/32 scram-sha-256
HBA
as_user "$pg_user" "$PG_BIN/pg_ctl" -D "$tmp/pg" -l "$tmp/pgsock/pg.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $tmp/pgsock -c fsync=off -c shared_buffers=128MB" start >/dev/null \
    || { cat "$tmp/pgsock/pg.log" >&2; exit 1; }
psql_admin() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }
psql_admin -d postgres -c "CREATE ROLE ferry LOGIN PASSWORD 'ferry'" \
    -c "CREATE DATABASE ferry_test OWNER ferry" >/dev/null
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"

# MariaDB
my_port="$(free_port)"
mkdir -p "$tmp/mariadb" "$tmp/mariadb-run"
chown -R "$maria_user" "$tmp/mariadb" "$tmp/mariadb-run"
install_db="$(command -v mariadb-install-db || echo /usr/bin/mariadb-install-db)"
"$install_db" --no-defaults --user="$maria_user" --datadir="$tmp/mariadb" \
    --auth-root-authentication-method=normal --skip-test-db >"$tmp/mariadb-init.log" 2>&1 \
    || { cat "$tmp/mariadb-init.log" >&2; exit 1; }
"$MARIADBD" --no-defaults --datadir="$tmp/mariadb" --socket="$tmp/mariadb-run/mariadb.sock" \
    --port="$my_port" --bind-address=127.0.0.1 --user="$maria_user" --pid-file="$tmp/mariadb-run/mariadb.pid" \
    --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2 --skip-name-resolve \
    --log-error="$tmp/mariadb-run/mariadb.log" 2>/dev/null &
for _ in $(seq 1 300); do
    [ -S "$tmp/mariadb-run/mariadb.sock" ] && mariadb --no-defaults -S "$tmp/mariadb-run/mariadb.sock" -u root -e "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.1
done
mariadb --no-defaults -S "$tmp/mariadb-run/mariadb.sock" -u root -e "
    CREATE DATABASE ferry_test CHARACTER SET utf8mb4;
    CREATE USER 'ferry'@'127.0.0.1' IDENTIFIED BY 'ferry';
    GRANT ALL ON ferry_test.* TO 'ferry'@'127.0.0.1';
    GRANT PROCESS, CONNECTION ADMIN ON *.* TO 'ferry'@'127.0.0.1';" \
    || { cat "$tmp/mariadb-run/mariadb.log" >&2; exit 1; }
log "MariaDB $("$MARIADBD" --version | awk '{print $3}') on 127.0.0.1:$my_port"

export FERRY_TEST_PG_URL="postgres://ferry:ferry@127.0.0.1:$pg_port/ferry_test"
export FERRY_TEST_MYSQL_URL="mysql://ferry:ferry@127.0.0.1:$my_port/ferry_test"
export FERRY_TEST_PG_ADMIN_URL="postgres://postgres@127.0.0.1:$pg_port/ferry_test"
export FERRY_TEST_MYSQL_SOCKET="$tmp/mariadb-run/mariadb.sock"

set +e
"$@"
status=$?
set -e
exit "$status"
