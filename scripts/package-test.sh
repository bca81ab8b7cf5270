#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine, checks the systemd unit, runs the
# example task as the `ferry` user, and purges the package (issue 15 item 1).
#
# Needs root, cargo-deb (`cargo install cargo-deb`) and dpkg. With systemd running (PID 1)
# the service is started and its readiness checked; without, the installed unit is checked
# with `systemd-analyze verify`. Usage: scripts/package-test.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

# What it needs, installed when missing (scripts/test.sh runs it on a fresh CI machine).
# cargo-deb is pinned: a version known to build with rustc 1.95 and to read our metadata.
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version >/dev/null 2>&1; then
    echo "== installing cargo-deb $CARGO_DEB_VERSION (cargo install, about 2 minutes)"
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v adduser >/dev/null 2>&1 || missing+=(adduser)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "${1:-}" != "--no-build" ]]; then
    echo "== cargo deb (a release build: several minutes on a fresh machine)"
    cargo deb -- --locked
fi
deb=$(ls -t target/debian/ferry_*.deb | head -1)
echo "== package: $deb"
dpkg-deb --info "$deb" | sed -n '1,20p'
dpkg-deb --contents "$deb"

cleanup() { apt-get purge -y ferry >/dev/null 2>&1 || dpkg --purge ferry >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== install"
apt-get install -y "./$deb" >/dev/null 2>&1 || dpkg -i "$deb"
getent passwd ferry
test -x /usr/bin/ferry
stat -c '%U:%G %a %n' /etc/ferry /etc/ferry/config.yaml
test "$(stat -c '%a' /etc/ferry/config.yaml)" = 640

echo "== unit"
systemd-analyze verify /usr/lib/systemd/system/ferry.service

echo "== validate and run the example task as ferry"
install -d -o ferry -g ferry -m 0750 /var/lib/ferry /var/log/ferry
cd /var/lib/ferry
runuser -u ferry -- /usr/bin/ferry --config /etc/ferry/config.yaml validate
runuser -u ferry -- /usr/bin/ferry --config /etc/ferry/config.yaml run example
ls -l /var/lib/ferry/exports/example/
runuser -u ferry -- /usr/bin/ferry --config /etc/ferry/config.yaml history --task example
echo "== serve as ferry for a few seconds: it logs to /var/log/ferry/ferry.log"
runuser -u ferry -- timeout -s TERM 5 /usr/bin/ferry --config /etc/ferry/config.yaml serve || test $? = 124
grep -q "scheduler started" /var/log/ferry/ferry.log
grep -q "retention pass done" /var/log/ferry/ferry.log
tail -3 /var/log/ferry/ferry.log
cd - >/dev/null

if [[ "$(ps -p 1 -o comm=)" == "systemd" ]]; then
    echo "== systemd: start, wait for READY, stop"
    systemctl start ferry
    systemctl is-active ferry
    systemctl show -p StatusText ferry
    systemctl stop ferry
fi

echo "== purge"
cleanup
trap - EXIT
! test -e /usr/bin/ferry
! test -e /var/lib/ferry
echo "package test passed"
