#!/bin/sh
# Runs a batch job and reports it to a canaryd heartbeat check:
#   /ping/<check>/start before, /ping/<check>/<exit code> after, with the tail of its output.
#
#   CANARYD_URL=http://127.0.0.1:9464 HEARTBEAT_TOKEN=... examples/ping.sh nightly-invoices ./make-invoices --all
#
# The job's output and exit code are passed on, so cron still mails failures as before. A ping
# that cannot be delivered never fails the job: canaryd reports the check late instead. The token
# goes to curl in a file, not on its command line, where `ps` would show it.
set -u
check=$1
shift
url=${CANARYD_URL:-http://127.0.0.1:9464}/ping/$check
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/headers"
if [ -n "${HEARTBEAT_TOKEN:-}" ]; then
    printf 'Authorization: Bearer %s\n' "$HEARTBEAT_TOKEN" >"$tmp/headers"
fi

ping() { # ping SUFFIX BODY_FILE
    curl -fsS -m 10 --retry 3 -H "@$tmp/headers" --data-binary "@$2" "$url$1" >/dev/null ||
        echo "ping.sh: could not report to canaryd at $url$1" >&2
}

: >"$tmp/empty"
ping /start "$tmp/empty"
"$@" >"$tmp/log" 2>&1
code=$?
cat "$tmp/log"
tail -c 10000 "$tmp/log" >"$tmp/tail"
ping "/$code" "$tmp/tail"
exit "$code"
