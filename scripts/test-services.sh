#!/usr/bin/env bash
# Starts throwaway PostgreSQL and MariaDB servers on free loopback ports in a temporary
# folder, exports their URLs, runs the given command, and stops the servers afterwards
# (also when the command fails or is interrupted). Installs Debian's `postgresql` and
# `mariadb-server` packages first when they are missing (and `sqlite3`, the shell the
# store-fault tests lock the run store with).
#
#   scripts/test-services.sh cargo test
#
# Exported to the command:
#   FERRY_TEST_PG_URL     postgres://ferry:ferry@127.0.0.1:PORT/ferry_test
#   FERRY_TEST_MYSQL_URL  mysql://ferry:ferry@127.0.0.1:PORT/ferry_test
#   FERRY_TEST_DB_CA      the CA (PEM) that signed both servers' TLS certificate
#   FERRY_TEST_PG_SUPER_URL     postgres://ferry_super:ferry_super@127.0.0.1:PORT/ferry_test
#   FERRY_TEST_MYSQL_SUPER_URL  mysql://ferry_super:ferry_super@127.0.0.1:PORT/ferry_test
#                         superuser accounts (PostgreSQL SUPERUSER; MariaDB ALL ON *.* WITH
#                         GRANT OPTION) that log in with a password like a datasource
#                         would; the SQL-gate corpus (tests/integration/sqlgate_corpus.rs)
#                         runs its attacks as them, to show that only the gate stops them
#   FERRY_TEST_DB_FILES   a folder (mode 1777) both servers may write files into: MariaDB's
#                         secure_file_priv (INTO OUTFILE/DUMPFILE, LOAD_FILE) and the target
#                         of PostgreSQL lo_export, so the corpus can check no file appears
# Both test accounts own their test database; nothing listens beyond 127.0.0.1. Both servers
# also accept TLS (plain connections keep working) with a certificate from a throwaway CA
# that names only IP 127.0.0.1 (not `localhost`), so tests can check host-name failures.
# Mail (Postfix delivering into Dovecot; Debian's `postfix`, `dovecot-imapd` and
# `dovecot-lmtpd`; see the mail block below):
#   FERRY_TEST_SMTP_PORT           plain SMTP, no TLS, no AUTH
#   FERRY_TEST_SMTP_STARTTLS_PORT  STARTTLS and AUTH required
#   FERRY_TEST_SMTPS_PORT          implicit TLS and AUTH required
#   FERRY_TEST_SMTP_CA             the CA (PEM) that signed the server certificate
#   FERRY_TEST_SMTP_USER/PASSWORD  the AUTH account (ferry@example.test)
#   FERRY_TEST_IMAP_PORT           IMAP (STARTTLS offered, not required); users alice, bob,
#                                  carol, dave @example.test
#   FERRY_TEST_IMAPS_PORT          IMAP over implicit TLS (certificate of FERRY_TEST_SMTP_CA)
#   FERRY_TEST_IMAP_NOMOVE_PORT    a second Dovecot on the same mail, without MOVE
#                                  (plain SMTP answers 451 for tempfail@, 550 for rejected@)
#   FERRY_TEST_IMAP_PASSWORD       their password
#   FERRY_TEST_MAIL_LOG            Postfix's log
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

log() { echo "test-services: $*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
maria_bin() { command -v mariadbd || ls /usr/sbin/mariadbd 2>/dev/null || true; }

# ---------------------------------------------------------------------------------------
# Mail: Postfix (SMTP) delivering over LMTP into Dovecot (IMAP), for the email channel tests.
# Everything below is self-contained: mail_packages (missing Debian packages), mail_start,
# mail_stop. Both servers run with their own configuration under $tmp/mail, loopback only.
# Postfix listeners: plain SMTP (no TLS, no AUTH), submission (STARTTLS and AUTH required)
# and smtps (implicit TLS, AUTH required); the certificate comes from a throwaway CA.
# Dovecot users (passwd-file): alice, bob, carol, dave @example.test with the password
# $FERRY_TEST_IMAP_PASSWORD, and the sending account ferry@example.test.
# Needs root (Postfix's master and Dovecot drop privileges themselves); without root the
# mail variables stay unset and the email tests skip (they fail under CI=true).
mail_packages() {
    [ -x /usr/sbin/postfix ] || echo postfix
    [ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] || echo dovecot-imapd
    [ -x /usr/lib/dovecot/lmtp ] || echo dovecot-lmtpd
    command -v openssl >/dev/null 2>&1 || echo openssl
}

mail_preseed() {
    # Install Postfix without asking and without writing a system configuration.
    if command -v debconf-set-selections >/dev/null 2>&1; then
        echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    fi
}

mail_wait_port() {
    local port="$1"
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    log "nothing listens on 127.0.0.1:$port"
    return 1
}

mail_start() {
    if [ "$(id -u)" -ne 0 ]; then
        log "mail: Postfix and Dovecot need root; email tests will not find a server"
        return 0
    fi
    local d="$tmp/mail"
    local pf="$d/postfix" pq="$d/postfix-queue" pd="$d/postfix-data" dv="$d/dovecot"
    local smtp_port submission_port smtps_port imap_port imaps_port imap_nomove_port lmtp_port auth_port
    smtp_port="$(free_port)"
    submission_port="$(free_port)"
    smtps_port="$(free_port)"
    imap_port="$(free_port)"
    imaps_port="$(free_port)"
    imap_nomove_port="$(free_port)"
    lmtp_port="$(free_port)"
    auth_port="$(free_port)"
    mkdir -p "$pf" "$pq" "$pd" "$dv/run" "$dv/state" "$d/tls" "$d/store"

    # A private CA and a server certificate for localhost / 127.0.0.1.
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ferry test CA" \
        -keyout "$d/tls/ca.key" -out "$d/tls/ca.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$d/tls/server.key" -out "$d/tls/server.csr" >/dev/null 2>&1
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "extendedKeyUsage=serverAuth" >"$d/tls/ext.cnf"
    openssl x509 -req -in "$d/tls/server.csr" -CA "$d/tls/ca.pem" -CAkey "$d/tls/ca.key" \
        -CAcreateserial -days 2 -extfile "$d/tls/ext.cnf" -out "$d/tls/server.pem" >/dev/null 2>&1
    chmod 644 "$d/tls/ca.pem"
    openssl dhparam -dsaparam -out "$d/tls/dh.pem" 2048 >/dev/null 2>&1

    # Dovecot: IMAP for the tests, LMTP for Postfix, SASL for Postfix. Mail is stored as
    # the `mail` user (uid 8): Dovecot refuses to deliver as root.
    local u mail_uid mail_gid
    mail_uid="$(id -u mail)"
    mail_gid="$(id -g mail)"
    : >"$dv/users"
    for u in alice bob carol dave; do
        echo "$u@example.test:{PLAIN}$mail_imap_password:$mail_uid:$mail_gid::$d/store/$u::" >>"$dv/users"
    done
    echo "ferry@example.test:{PLAIN}$mail_smtp_password:$mail_uid:$mail_gid::$d/store/ferry::" >>"$dv/users"
    chown mail:mail "$d/store"
    cat >"$dv/dovecot.conf" <<CONF
base_dir = $dv/run
state_dir = $dv/state
log_path = $dv/dovecot.log
instance_name = ferry-test-$$
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <$d/tls/server.pem
ssl_key = <$d/tls/server.key
ssl_dh = <$d/tls/dh.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = $mail_uid
first_valid_gid = $mail_gid
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dv/users
}
userdb {
  driver = passwd-file
  args = $dv/users
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp_port
  }
}
service auth {
  inet_listener sasl {
    address = 127.0.0.1
    port = $auth_port
  }
}
CONF
    dovecot -c "$dv/dovecot.conf" </dev/null >>"$dv/dovecot.log" 2>&1 \
        || { cat "$dv/dovecot.log" >&2; return 1; }
    mail_dovecot_conf="$dv/dovecot.conf"

    # A second Dovecot on the same users and mail, offering neither MOVE nor the other
    # post-login extensions ingest does not need: the poller's copy + \Deleted +
    # UID EXPUNGE path runs against it (FERRY_TEST_IMAP_NOMOVE_PORT).
    local dv2="$d/dovecot-nomove"
    mkdir -p "$dv2/run" "$dv2/state"
    sed -e "s|^base_dir = .*|base_dir = $dv2/run|" \
        -e "s|^state_dir = .*|state_dir = $dv2/state|" \
        -e "s|^log_path = .*|log_path = $dv2/dovecot.log|" \
        -e "s|^instance_name = .*|instance_name = ferry-test-nomove-$$|" \
        -e "s|^protocols = .*|protocols = imap|" \
        "$dv/dovecot.conf" | awk '/^service imap-login/ {exit} {print}' >"$dv2/dovecot.conf"
    cat >>"$dv2/dovecot.conf" <<CONF
imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED LITERAL+
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_nomove_port
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    port = 0
  }
}
CONF
    dovecot -c "$dv2/dovecot.conf" </dev/null >>"$dv2/dovecot.log" 2>&1 \
        || { cat "$dv2/dovecot.log" >&2; return 1; }
    mail_dovecot_nomove_conf="$dv2/dovecot.conf"

    # Postfix: its own config, queue and data folders (the config folder must hold only
    # root's files, so the queue lives beside it). No chroot, loopback only.
    cat >"$pf/master.cf" <<MASTER
127.0.0.1:$smtp_port inet n - n - - smtpd
127.0.0.1:$submission_port inet n - n - - smtpd
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
127.0.0.1:$smtps_port inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
lmtp      unix  - - n -     - lmtp
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
MASTER
    # maillog_file outside /var needs maillog_file_prefixes.
    cat >"$pf/main.cf" <<MAIN
compatibility_level = 3.6
queue_directory = $pq
data_directory = $pd
myhostname = mail.example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
maillog_file_prefixes = /var, $d
maillog_file = $d/postfix.log
message_size_limit = 104857600
# Postfix drops Bcc: headers by default; keeping them lets the tests see one ferry leaked.
message_drop_headers = content-length, return-path
virtual_mailbox_domains = example.test
virtual_transport = lmtp:inet:127.0.0.1:$lmtp_port
smtpd_tls_cert_file = $d/tls/server.pem
smtpd_tls_key_file = $d/tls/server.key
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:$auth_port
smtpd_sasl_auth_enable = no
# Fixed answers for the tests' error classification: 451 (try later) and 550 (rejected).
smtpd_recipient_restrictions = check_recipient_access inline:{
    { tempfail@example.test = 451 4.3.0 try again later },
    { rejected@example.test = 550 5.1.1 no such mailbox } },
  permit_mynetworks, reject_unauth_destination
MAIN
    chown postfix "$pd"
    postfix -c "$pf" start </dev/null >"$d/postfix-start.log" 2>&1 \
        || { cat "$d/postfix-start.log" "$d/postfix.log" >&2; return 1; }
    mail_postfix_dir="$pf"
    for port in "$smtp_port" "$submission_port" "$smtps_port" "$imap_port" "$imaps_port" "$imap_nomove_port"; do
        mail_wait_port "$port" || { cat "$d/postfix.log" "$dv/dovecot.log" >&2; return 1; }
    done

    export FERRY_TEST_SMTP_PORT="$smtp_port"
    export FERRY_TEST_SMTP_STARTTLS_PORT="$submission_port"
    export FERRY_TEST_SMTPS_PORT="$smtps_port"
    export FERRY_TEST_SMTP_CA="$d/tls/ca.pem"
    export FERRY_TEST_SMTP_USER="ferry@example.test"
    export FERRY_TEST_SMTP_PASSWORD="$mail_smtp_password"
    export FERRY_TEST_IMAP_PORT="$imap_port"
    export FERRY_TEST_IMAPS_PORT="$imaps_port"
    export FERRY_TEST_IMAP_NOMOVE_PORT="$imap_nomove_port"
    export FERRY_TEST_IMAP_PASSWORD="$mail_imap_password"
    export FERRY_TEST_MAIL_LOG="$d/postfix.log"
    log "Postfix $(postconf -c "$pf" -h mail_version) on 127.0.0.1:$smtp_port (plain)," \
        "$submission_port (STARTTLS+AUTH), $smtps_port (TLS+AUTH); Dovecot $(dovecot --version | awk '{print $1}') IMAP on 127.0.0.1:$imap_port"
}

mail_stop() {
    if [ -n "${mail_postfix_dir:-}" ]; then
        local mpid
        mpid="$(cat "$(postconf -c "$mail_postfix_dir" -h queue_directory)/pid/master.pid" 2>/dev/null | tr -d " " || true)"
        postfix -c "$mail_postfix_dir" abort >/dev/null 2>&1
        for _ in $(seq 1 100); do
            [ -n "$mpid" ] && kill -0 "$mpid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    local conf pidfile pid
    for conf in "${mail_dovecot_nomove_conf:-}" "${mail_dovecot_conf:-}"; do
        [ -n "$conf" ] || continue
        pidfile="$(dirname "$conf")/run/master.pid"
        pid="$(cat "$pidfile" 2>/dev/null || true)"
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null
        fi
    done
}
mail_postfix_dir=""
mail_dovecot_conf=""
mail_dovecot_nomove_conf=""
mail_imap_password="ferry-test-imap"
mail_smtp_password="ferry-test-smtp"
# --------------------------------------------------------------------------- end of mail


missing=()
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
[ -n "$(maria_bin)" ] || missing+=(mariadb-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The store-fault tests lock the run store from a second process, as an operator's shell does.
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
# The JSON Schema test (tests/integration/schema.rs) validates with Python's jsonschema.
python3 -c 'import jsonschema, yaml' >/dev/null 2>&1 || missing+=(python3-jsonschema python3-yaml)
# The shell-help tests (tests/integration/shell.rs) run the completions and render the man pages.
for shell in zsh fish; do command -v "$shell" >/dev/null 2>&1 || missing+=("$shell"); done
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
[ "$(id -u)" -ne 0 ] || for p in $(mail_packages); do missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "missing packages: ${missing[*]}; install them (as root: apt-get install ${missing[*]})"
        exit 1
    fi
    log "installing ${missing[*]}"
    mail_preseed
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
    mail_stop
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

# TLS for both database servers: a throwaway CA and a server certificate for IP 127.0.0.1
# only. Each server gets its own copy of the key, owned by its user (PostgreSQL refuses a
# key others can read).
db_tls="$tmp/db-tls"
mkdir -p "$db_tls" "$tmp/pg-tls" "$tmp/mariadb-tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ferry test database CA" \
    -keyout "$db_tls/ca.key" -out "$db_tls/ca.pem" >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$db_tls/server.key" -out "$db_tls/server.csr" >/dev/null 2>&1
printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=CA:FALSE" \
    "extendedKeyUsage=serverAuth" >"$db_tls/ext.cnf"
openssl x509 -req -in "$db_tls/server.csr" -CA "$db_tls/ca.pem" -CAkey "$db_tls/ca.key" \
    -CAcreateserial -days 2 -extfile "$db_tls/ext.cnf" -out "$db_tls/server.pem" >/dev/null 2>&1
chmod 644 "$db_tls/ca.pem"
for d in pg-tls mariadb-tls; do
    cp "$db_tls/server.pem" "$db_tls/server.key" "$db_tls/ca.pem" "$tmp/$d/"
    chmod 600 "$tmp/$d/server.key"
done
chown -R "$pg_user" "$tmp/pg-tls"
chown -R "$maria_user" "$tmp/mariadb-tls"

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
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $tmp/pgsock -c fsync=off -c shared_buffers=128MB -c ssl=on -c ssl_cert_file=$tmp/pg-tls/server.pem -c ssl_key_file=$tmp/pg-tls/server.key" start >/dev/null \
    || { cat "$tmp/pgsock/pg.log" >&2; exit 1; }
psql_admin() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"; }
psql_admin -d postgres -c "CREATE ROLE ferry LOGIN PASSWORD 'ferry'" \
    -c "CREATE ROLE ferry_super LOGIN SUPERUSER PASSWORD 'ferry_super'" \
    -c "CREATE DATABASE ferry_test OWNER ferry" >/dev/null
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"

# A folder both servers may write into (see FERRY_TEST_DB_FILES above).
mkdir -p "$tmp/db-files"
chmod 1777 "$tmp/db-files"

# MariaDB
my_port="$(free_port)"
# Its own temporary folder: two servers sharing /tmp (two suites on one machine) can
# collide on MariaDB's temporary table names during install.
mkdir -p "$tmp/mariadb" "$tmp/mariadb-run" "$tmp/mariadb-tmp"
chown -R "$maria_user" "$tmp/mariadb" "$tmp/mariadb-run" "$tmp/mariadb-tmp"
install_db="$(command -v mariadb-install-db || echo /usr/bin/mariadb-install-db)"
"$install_db" --no-defaults --user="$maria_user" --datadir="$tmp/mariadb" \
    --tmpdir="$tmp/mariadb-tmp" --auth-root-authentication-method=normal --skip-test-db >"$tmp/mariadb-init.log" 2>&1 \
    || { cat "$tmp/mariadb-init.log" >&2; exit 1; }
"$MARIADBD" --no-defaults --datadir="$tmp/mariadb" --tmpdir="$tmp/mariadb-tmp" \
    --socket="$tmp/mariadb-run/mariadb.sock" \
    --port="$my_port" --bind-address=127.0.0.1 --user="$maria_user" --pid-file="$tmp/mariadb-run/mariadb.pid" \
    --innodb-buffer-pool-size=256M --innodb-flush-log-at-trx-commit=2 --skip-name-resolve \
    --ssl-cert="$tmp/mariadb-tls/server.pem" --ssl-key="$tmp/mariadb-tls/server.key" \
    --ssl-ca="$tmp/mariadb-tls/ca.pem" --secure-file-priv="$tmp/db-files" \
    --log-error="$tmp/mariadb-run/mariadb.log" 2>/dev/null &
for _ in $(seq 1 300); do
    [ -S "$tmp/mariadb-run/mariadb.sock" ] && mariadb --no-defaults -S "$tmp/mariadb-run/mariadb.sock" -u root -e "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.1
done
mariadb --no-defaults -S "$tmp/mariadb-run/mariadb.sock" -u root -e "
    CREATE DATABASE ferry_test CHARACTER SET utf8mb4;
    CREATE USER 'ferry'@'127.0.0.1' IDENTIFIED BY 'ferry';
    GRANT ALL ON ferry_test.* TO 'ferry'@'127.0.0.1';
    GRANT PROCESS, CONNECTION ADMIN ON *.* TO 'ferry'@'127.0.0.1';
    CREATE USER 'ferry_super'@'127.0.0.1' IDENTIFIED BY 'ferry_super';
    GRANT ALL ON *.* TO 'ferry_super'@'127.0.0.1' WITH GRANT OPTION;" \
    || { cat "$tmp/mariadb-run/mariadb.log" >&2; exit 1; }
log "MariaDB $("$MARIADBD" --version | awk '{print $3}') on 127.0.0.1:$my_port"

mail_start || exit 1

export FERRY_TEST_PG_URL="postgres://ferry:ferry@127.0.0.1:$pg_port/ferry_test"
export FERRY_TEST_MYSQL_URL="mysql://ferry:ferry@127.0.0.1:$my_port/ferry_test"
export FERRY_TEST_PG_ADMIN_URL="postgres://postgres@127.0.0.1:$pg_port/ferry_test"
export FERRY_TEST_MYSQL_SOCKET="$tmp/mariadb-run/mariadb.sock"
export FERRY_TEST_DB_CA="$db_tls/ca.pem"
export FERRY_TEST_PG_SUPER_URL="postgres://ferry_super:ferry_super@127.0.0.1:$pg_port/ferry_test"
export FERRY_TEST_MYSQL_SUPER_URL="mysql://ferry_super:ferry_super@127.0.0.1:$my_port/ferry_test"
export FERRY_TEST_DB_FILES="$tmp/db-files"

set +e
"$@"
status=$?
set -e
exit "$status"
