#!/bin/sh
# Runs a batch job and reports it to a canaryd heartbeat check:
#   /ping/<check>/start before, /ping/<check>/<exit code> after, with the tail of its output.
#
#   CANARYD_URL=http://127.0.0.1:9464 HEARTBEAT_TOKEN=... examples/ping.sh nightly-invoices ./make-invoices --all
#
# With replicas (docs/operations.md, "Running at scale"), CANARYD_URL lists every replica that watches the
# check, separated by spaces: each gets every ping, so none of them reports the job late.
#
# The job's output and exit code are passed on, so cron still mails failures as before. A ping
# that cannot be delivered never fails the job: canaryd reports the check late instead. The token
# goes to curl in a file, not on its command line, where `ps` would show it.
set -u
check=$1
shift
urls=${CANARYD_URL:-http://127.0.0.1:9464}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/headers"
if [ -n "${HEARTBEAT_TOKEN:-}" ]; then
    printf 'Authorization: Bearer %s\n' "$HEARTBEAT_TOKEN" >"$tmp/headers"
fi

ping() { # ping SUFFIX BODY_FILE
    for base in $urls; do
        url=$base/ping/$check$1
        curl -fsS -m 10 --retry 3 -H "@$tmp/headers" --data-binary "@$2" "$url" >/dev/null ||
            echo "ping.sh: could not report to canaryd at $url" >&2
    done
}

: >"$tmp/empty"
ping /start "$tmp/empty"
"$@" >"$tmp/log" 2>&1
code=$?
cat "$tmp/log"
tail -c 10000 "$tmp/log" >"$tmp/tail"
ping "/$code" "$tmp/tail"
exit "$code"
