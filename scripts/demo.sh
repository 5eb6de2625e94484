#!/usr/bin/env bash
# The demo: builds ./caddy with this module, starts the Python example app and
# Caddy with Caddyfile.example in front of it. Ctrl-C stops both.
#
#   ./scripts/demo.sh                       sessions in memory
#   MONGODB_URI=mongodb://... ./scripts/demo.sh   sessions in MongoDB
#
# PORT (default 8080) and APP_PORT (default 8000) change the ports. CADDY=path
# runs that Caddy binary (built with this module; a relative path is taken from
# the repository's root) instead of building ./caddy.
# Caddy's own settings apply too, e.g. CADDY_ADMIN (its admin endpoint,
# default localhost:2019).
set -euo pipefail
cd "$(dirname "$0")/.."

port="${PORT:-8080}"
app_port="${APP_PORT:-8000}"

command -v python3 >/dev/null || { echo "demo.sh: python3 is needed (apt-get install python3)" >&2; exit 1; }
caddy="${CADDY:-}"
if [[ -z "$caddy" ]]; then
	command -v go >/dev/null || { echo "demo.sh: Go is needed to build Caddy (https://go.dev/dl/)" >&2; exit 1; }
	./xcaddy.sh
	caddy=./caddy
fi
[[ -x "$caddy" ]] || { echo "demo.sh: no Caddy binary at $caddy" >&2; exit 1; }

if [[ -n "${MONGODB_URI:-}" ]]; then
	export SESSION_STORE=mongodb
	echo "demo.sh: sessions in MongoDB (MONGODB_URI is set)"
else
	export SESSION_STORE=memory
	echo "demo.sh: sessions in memory (set MONGODB_URI to use MongoDB)"
fi
export PORT="$port" UPSTREAM="127.0.0.1:$app_port"

app_pid="" caddy_pid=""
stop() {
	trap - EXIT INT TERM
	[[ -z "$caddy_pid" ]] || kill "$caddy_pid" 2>/dev/null || true
	[[ -z "$app_pid" ]] || kill "$app_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	echo "demo.sh: stopped"
}
trap stop EXIT
trap 'exit 130' INT TERM

APP_PORT="$app_port" python3 examples/python/app.py &
app_pid=$!

"$caddy" run --config Caddyfile.example --adapter caddyfile &
caddy_pid=$!

# Wait until Caddy answers (or either process died) before printing the URL.
up=""
for _ in $(seq 300); do
	kill -0 "$app_pid" 2>/dev/null || { echo "demo.sh: the Python app exited (is port $app_port free?)" >&2; exit 1; }
	kill -0 "$caddy_pid" 2>/dev/null || { echo "demo.sh: Caddy exited (is port $port free?)" >&2; exit 1; }
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		up=1
		break
	fi
	sleep 0.1
done
[[ -n "$up" ]] || { echo "demo.sh: Caddy does not answer on port $port after 30 s" >&2; exit 1; }

cat <<MSG

  Open http://localhost:$port/
  /account needs a login; any name will do. Ctrl-C stops the demo.

MSG
# Return when either process exits (or on Ctrl-C, which exits 130 through the
# trap); the EXIT trap stops the other. A process ending on its own is a failure.
wait -n "$app_pid" "$caddy_pid" || true
kill -0 "$caddy_pid" 2>/dev/null || echo "demo.sh: Caddy exited" >&2
kill -0 "$app_pid" 2>/dev/null || echo "demo.sh: the Python app exited" >&2
exit 1
