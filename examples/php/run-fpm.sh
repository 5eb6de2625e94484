#!/usr/bin/env bash
# Runs php-fpm in the foreground with a minimal config written to a temp dir,
# independent of the system php-fpm service and its pools.
#   FPM_LISTEN: 127.0.0.1:9000 (default) or a unix socket path
#   ASSERTION_JWKS_URL, ASSERTION_AUDIENCE: passed to the app (lib/assertion.php)
set -euo pipefail

listen="${FPM_LISTEN:-127.0.0.1:9000}"
fpm="$(command -v php-fpm || true)"
[[ -n "$fpm" ]] || fpm="$(ls /usr/sbin/php-fpm* 2>/dev/null | sort -V | tail -n1 || true)"
if [[ -z "$fpm" ]]; then
	echo "run-fpm.sh: php-fpm not found; install it with scripts/deps.sh (apt-get install php-fpm)" >&2
	exit 1
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/caddy-session-fpm.XXXXXX")"
pid=""
cleanup() {
	[[ -z "$pid" ]] || { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# php-fpm refuses to run as root unless told to (-R) and given a pool user.
user_lines="" root_flag=()
if [[ $(id -u) == 0 ]]; then
	user_lines=$'user = root\ngroup = root'
	root_flag=(-R)
fi
# The path prefix the app is served under, if any (Caddyfile.example's blog).
base_line=""
[[ -z "${BASE_PATH:-}" ]] || base_line="env[BASE_PATH] = $BASE_PATH"
cat >"$dir/php-fpm.conf" <<CONF
[global]
pid = $dir/php-fpm.pid
error_log = /dev/stderr
daemonize = no

[app]
$user_lines
listen = $listen
pm = static
pm.max_children = 4
catch_workers_output = yes
; Where the app fetches the gateway's keys, and the audience it expects
; (lib/assertion.php): from this script's environment, never from a request.
env[ASSERTION_JWKS_URL] = ${ASSERTION_JWKS_URL:-http://127.0.0.1:8080/.well-known/caddy-session/jwks.json}
env[ASSERTION_AUDIENCE] = ${ASSERTION_AUDIENCE:-example-app}
$base_line
CONF

echo "run-fpm.sh: $fpm listening on $listen" >&2
# Not exec: cleanup removes the temp dir when php-fpm stops.
"$fpm" --nodaemonize --fpm-config "$dir/php-fpm.conf" "${root_flag[@]}" &
pid=$!
wait "$pid"
