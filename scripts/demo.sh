#!/usr/bin/env bash
# The demo: builds ./caddy with this module, starts the Python example app and
# Caddy with Caddyfile.example in front of it. Ctrl-C stops both.
#
#   ./scripts/demo.sh                               sessions in memory
#   FERRETDB=1 ./scripts/demo.sh                    sessions in MongoDB: the embedded FerretDB
#                                                   (internal/ferretdb), no MongoDB needed
#   MONGODB_URI=mongodb://... ./scripts/demo.sh     sessions in your MongoDB
#
# Environment:
#   PORT         where Caddy listens                     (default 8080)
#   APP_PORT     where the Python app listens            (default 8000)
#   CADDY_ADMIN  Caddy's admin endpoint, Caddy's own variable (default localhost:2019);
#                set it when another Caddy already holds 2019, e.g. CADDY_ADMIN=localhost:2020
#   CADDY        a Caddy binary built with this module to run instead of building ./caddy
#                (a relative path is taken from the repository's root)
#
# Nothing is left behind: Caddy's state (autosave.json, the generated cookie
# signing key) and FerretDB's data go to a temporary folder that is removed on
# exit, never to ~/.config/caddy or ~/.local/share/caddy, so the demo shares no
# key with another Caddy of yours. The only file it writes in the repository
# is ./caddy, the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${PORT:-8080}"
app_port="${APP_PORT:-8000}"
admin="${CADDY_ADMIN:-localhost:2019}"

# The app checks the gateway's signature with PyJWT (Debian's python3-jwt),
# which another python3 earlier on PATH may lack.
py=python3; "$py" -c 'import jwt' 2>/dev/null || py=/usr/bin/python3
"$py" -c 'import jwt' 2>/dev/null || { echo "demo.sh: python3 with PyJWT is needed (apt-get install python3 python3-jwt)" >&2; exit 1; }
caddy="${CADDY:-}"
if [[ -z "$caddy" ]]; then
	command -v go >/dev/null || { echo "demo.sh: Go is needed to build Caddy (https://go.dev/dl/)" >&2; exit 1; }
	./xcaddy.sh
	caddy=./caddy
fi
[[ -x "$caddy" ]] || { echo "demo.sh: no Caddy binary at $caddy" >&2; exit 1; }

# listens HOST PORT: true when something accepts connections there.
listens() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Name a taken port before starting anything: Caddy's own message for a taken
# admin port does not say which of its addresses it was.
taken() {
	echo "demo.sh: $1 is taken: something already listens there. $2" >&2
	exit 1
}
listens 127.0.0.1 "$port" && taken "port $port (PORT, where Caddy serves the demo)" "Stop it, or set PORT=8081."
listens 127.0.0.1 "$app_port" && taken "port $app_port (APP_PORT, the Python app)" "Stop it, or set APP_PORT=8001."
if [[ $admin != unix/* && $admin =~ ^(.*):([0-9]+)$ ]]; then
	admin_host=${BASH_REMATCH[1]:-localhost}
	admin_host=${admin_host#[}; admin_host=${admin_host%]}
	listens "$admin_host" "${BASH_REMATCH[2]}" &&
		taken "Caddy's admin endpoint $admin (CADDY_ADMIN; is another Caddy running?)" "Stop it, or set CADDY_ADMIN=localhost:2020."
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/caddy-session-demo.XXXXXX")
app_pid="" caddy_pid="" ferretdb_pid=""
stop() {
	trap - EXIT INT TERM
	local p
	for p in "$caddy_pid" "$app_pid" "$ferretdb_pid"; do
		[[ -z "$p" ]] || kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$tmp"
	echo "demo.sh: stopped"
}
trap stop EXIT
trap 'exit 130' INT TERM

if [[ -n "${FERRETDB:-}" && -z "${MONGODB_URI:-}" ]]; then
	# The embedded FerretDB (a MongoDB-wire server on SQLite) of the tests, built
	# from the nested module internal/ferretdb; its data lives in $tmp.
	echo "demo.sh: building and starting the embedded FerretDB (the first build takes a few minutes)"
	go -C internal/ferretdb build -o "$tmp/ferretdb" .
	"$tmp/ferretdb" -listen 127.0.0.1:0 -dir "$tmp/ferretdb-data" -log-level error >"$tmp/ferretdb.out" &
	ferretdb_pid=$!
	line=""
	for _ in $(seq 100); do
		line=$(head -n1 "$tmp/ferretdb.out" 2>/dev/null || true)
		[[ $line == "ferretdb ready "* ]] && break
		kill -0 "$ferretdb_pid" 2>/dev/null || break
		sleep 0.2
	done
	[[ $line =~ ^ferretdb\ ready\ (mongodb://[^/]+/) ]] || { echo "demo.sh: FerretDB did not start" >&2; exit 1; }
	export MONGODB_URI=${BASH_REMATCH[1]}
fi

if [[ -n "${MONGODB_URI:-}" ]]; then
	export SESSION_STORE=mongodb
	echo "demo.sh: sessions in MongoDB (the database the URI names, else caddy; collection ${MONGODB_COLLECTION:-sessions})"
else
	export SESSION_STORE=memory
	echo "demo.sh: sessions in memory (FERRETDB=1 or MONGODB_URI=... for MongoDB)"
fi
echo "demo.sh: Caddy's state (autosave.json, the cookie signing key) in $tmp, removed on exit"
export PORT="$port" UPSTREAM="127.0.0.1:$app_port" CADDY_ADMIN="$admin"

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
			{ echo "demo.sh: Caddy exited (its output above says why)" >&2; exit 1; }
		"$@" && return 0
		sleep 0.1
	done
	echo "demo.sh: $what after 30 s" >&2
	exit 1
}

# The app first, so Caddy never answers 502 for want of it.
ASSERTION_JWKS_URL="http://127.0.0.1:$port/.well-known/caddy-session/jwks.json" APP_PORT="$app_port" "$py" examples/python/app.py &
app_pid=$!
wait_for "the Python app does not listen on port $app_port" listens 127.0.0.1 "$app_port"

# Caddy's config and data folders (XDG) in $tmp: only for Caddy, so the Go
# build above kept the user's own go env settings.
XDG_CONFIG_HOME="$tmp/config" XDG_DATA_HOME="$tmp/data" "$caddy" run --config Caddyfile.example --adapter caddyfile &
caddy_pid=$!
wait_for "Caddy does not answer on port $port" caddy_answers "$port"

cat <<MSG

  Open http://localhost:$port/
  /account needs a login; any name will do. Ctrl-C stops the demo.

MSG
# Return when a process exits (or on Ctrl-C, which exits 130 through the
# trap); the EXIT trap stops the others. A process ending on its own is a failure.
wait -n $app_pid $caddy_pid $ferretdb_pid || true
kill -0 "$caddy_pid" 2>/dev/null || echo "demo.sh: Caddy exited" >&2
kill -0 "$app_pid" 2>/dev/null || echo "demo.sh: the Python app exited" >&2
[[ -z "$ferretdb_pid" ]] || kill -0 "$ferretdb_pid" 2>/dev/null || echo "demo.sh: FerretDB exited" >&2
exit 1
