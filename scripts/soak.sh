#!/usr/bin/env bash
# Soak: Caddy with the session handler under a mixed load (reads, patches,
# logins that regenerate, logouts, anonymous requests, bad cookies), first
# with the memory store, then with MongoDB (FerretDB from internal/ferretdb,
# or $MONGODB_URI when set). Every 10 s it samples Caddy's RSS, goroutines
# (admin /debug/pprof/goroutine?debug=1) and open fds and prints a table.
# Pass: after the first minute (or the first third of a shorter run), no
# sample exceeds the highest sample of that warm-up by more than 10%, and
# no request fails (no 5xx, no transport error).
#
#   scripts/soak.sh [minutes]     default 5 (per store); fractions work: 0.75
#   SOAK_SECONDS=45 scripts/soak.sh   CI-sized run (seconds, per store)
#   CLIENTS=16                        concurrent clients
#   CADDY=./caddy                     the binary (built with ./xcaddy.sh when CADDY is not set)
#
# Linux only (/proc). Everything the script starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-5}
if [[ -n "${SOAK_SECONDS:-}" ]]; then
	duration="${SOAK_SECONDS}s"
	secs=$SOAK_SECONDS
else
	secs=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
	duration="${secs}s"
fi
# The warm-up is one minute, or a third of a shorter run.
warm=$(( secs >= 180 ? 60 : secs / 3 ))
interval=10s
(( secs < 60 )) && interval=5s

if [[ -z "${CADDY:-}" ]]; then
	./xcaddy.sh
	CADDY=./caddy
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# internal/faults is a nested module (it holds toxiproxy, a test-only dependency).
go -C internal/faults build -o "$tmp/soak" ./soak

run() { "$tmp/soak" -caddy "$CADDY" -duration "$duration" -warmup "${warm}s" -interval "$interval" -clients "${CLIENTS:-16}" "$@"; }

status=0
run || status=1

uri=${MONGODB_URI:-}
if [[ -z "$uri" ]]; then
	(cd internal/ferretdb && GOWORK=off GOFLAGS=-mod=readonly go build -o "$tmp/ferretdb" .)
	"$tmp/ferretdb" -listen 127.0.0.1:0 -dir "$tmp/data" -log-level error >"$tmp/ferretdb.out" 2>"$tmp/ferretdb.err" &
	pids+=($!)
	for _ in $(seq 100); do
		line=$(head -n1 "$tmp/ferretdb.out" 2>/dev/null || true)
		[[ "$line" == "ferretdb ready "* ]] && break
		sleep 0.2
	done
	[[ "$line" == "ferretdb ready "* ]] || { echo "soak.sh: FerretDB did not start: $(cat "$tmp/ferretdb.out" "$tmp/ferretdb.err")" >&2; exit 1; }
	uri=$(sed -E 's/^ferretdb ready (mongodb:\/\/[^/]+\/).*/\1/' <<<"$line")
fi
run -mongodb "$uri" || status=1

if (( status == 0 )); then echo "soak.sh: PASS"; else echo "soak.sh: FAIL"; fi
exit $status
