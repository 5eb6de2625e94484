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

# listens PORT: true when something accepts connections on 127.0.0.1:PORT.
listens() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# caddy_answers PORT: true when Caddy (by its Server or Via header) answers GET / on
# 127.0.0.1:PORT with 200, which needs the app behind it too. Another program
# holding the port does not count.
caddy_answers() (
	exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
	printf 'GET / HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
	status="" server=""
	while IFS= read -r -t 2 line <&3; do
		line=${line%$'\r'}
		[[ -n $line ]] || break
		if [[ -z $status ]]; then status=$line; fi
		# reverse_proxy passes the app's Server header on and adds Via.
		if [[ ${line,,} == "server: caddy" || ${line,,} == via:*caddy* ]]; then server=1; fi
	done
	[[ $status == "HTTP/1."?" 200"* && -n $server ]]
) 2>/dev/null

# wait_for WHAT CHECK...: runs CHECK every 0.1 s until it succeeds, failing
# when a process has exited or after 30 s.
wait_for() {
	local what=$1 i
	shift
	for ((i = 0; i < 300; i++)); do
		kill -0 "$app_pid" 2>/dev/null || { echo "demo.sh: the Python app exited (is port $app_port free?)" >&2; exit 1; }
		[[ -z "$caddy_pid" ]] || kill -0 "$caddy_pid" 2>/dev/null ||
			{ echo "demo.sh: Caddy exited (is port $port free?)" >&2; exit 1; }
		"$@" && return 0
		sleep 0.1
	done
	echo "demo.sh: $what after 30 s" >&2
	exit 1
}

# The app first, so Caddy never answers 502 for want of it.
APP_PORT="$app_port" python3 examples/python/app.py &
app_pid=$!
wait_for "the Python app does not listen on port $app_port" listens "$app_port"

"$caddy" run --config Caddyfile.example --adapter caddyfile &
caddy_pid=$!
wait_for "Caddy does not answer on port $port" caddy_answers "$port"

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
