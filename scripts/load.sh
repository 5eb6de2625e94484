#!/usr/bin/env bash
# Load comparison: Caddy with `session { store memory }` in front of reverse_proxy, against plain reverse_proxy,
# both to the same upstream, measured with wrk in one run. Prints requests/s of each and their ratio.
# It reports; it does not enforce a threshold: it exits 0 whatever the ratio, and non-zero only when the set-up
# fails (no binary, no wrk, a server that does not start, no session cookie).
#
# Traffic goes to 127.0.0.1 only. Everything the script starts is stopped on exit.
#
# Settings (environment):
#   DURATION=10s THREADS=2 CONNECTIONS=32   wrk parameters, the same for both sites
#   ROUNDS=2                                measured rounds; each round runs both sites, in alternating order
#   WARMUP=2s                               untimed wrk run against each site before measuring
#   CADDY=./caddy                           the binary (built with ./xcaddy.sh when CADDY is not set)
#   PIN=0                                   PIN=1: gateway on CPU 0, upstream and wrk on CPU 1 (taskset), so the
#                                           gateway is the bottleneck and the ratio is its own cost
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-2s}
PIN=${PIN:-0}

say() { printf 'load.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v wrk >/dev/null || die "wrk not found: install it with 'apt-get install wrk' (Debian package wrk)"
command -v curl >/dev/null || die "curl not found: install it with 'apt-get install curl'"

if [[ -z "${CADDY:-}" ]]; then
	[[ -x ./xcaddy.sh ]] || die "./xcaddy.sh not found: run from a checkout of caddy-session"
	./xcaddy.sh >&2 || die "building ./caddy with ./xcaddy.sh failed"
	CADDY=./caddy
fi
[[ -x "$CADDY" ]] || die "no Caddy binary at $CADDY"
"$CADDY" list-modules 2>/dev/null | grep -qx 'http.handlers.session' ||
	die "$CADDY has no http.handlers.session module: build it with ./xcaddy.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/caddy-session-load.XXXXXX")
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Three free loopback ports: the upstream, the session site and the plain site.
free_ports() {
	python3 - "$1" <<-'EOF'
		import socket, sys
		socks = []
		for _ in range(int(sys.argv[1])):
		    s = socket.socket()
		    s.bind(("127.0.0.1", 0))
		    socks.append(s)
		print(" ".join(str(s.getsockname()[1]) for s in socks))
	EOF
}
read -r up_port session_port plain_port < <(free_ports 3)

# Keep Caddy's storage and autosaved config out of the user's home.
export XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config"
secret=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)

# The upstream: a second Caddy answering from memory, so the upstream is not the bottleneck.
# /login writes the session; every other path answers "ok" and changes nothing.
cat >"$tmp/upstream.caddyfile" <<EOF
{
	admin off
	storage file_system $tmp/storage
}
http://127.0.0.1:$up_port {
	bind 127.0.0.1
	header /login X-Session-Patch \`{"n":1}\`
	respond /echo "{http.request.header.X-Session}"
	respond "ok"
}
EOF

# The gateway: one Caddy, two sites, the same upstream.
cat >"$tmp/gateway.caddyfile" <<EOF
{
	admin off
	storage file_system $tmp/storage
}
http://127.0.0.1:$session_port {
	bind 127.0.0.1
	session {
		store memory
		secret $secret
	}
	reverse_proxy 127.0.0.1:$up_port
}
http://127.0.0.1:$plain_port {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:$up_port
}
EOF

# on CPU: with PIN=1 runs the command on one CPU, otherwise as is.
gateway_cpu=()
client_cpu=()
if [[ $PIN == 1 ]]; then
	command -v taskset >/dev/null || die "PIN=1 needs taskset (Debian package util-linux)"
	(($(nproc) >= 2)) || die "PIN=1 needs at least 2 CPUs"
	gateway_cpu=(taskset -c 0)
	client_cpu=(taskset -c 1)
fi

start() { # name caddyfile cpu...
	local name=$1 config=$2
	shift 2
	"$@" "$CADDY" run --adapter caddyfile --config "$config" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
}
wait_port() { # name port
	local i
	for ((i = 0; i < 100; i++)); do
		curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$2/" && return 0
		sleep 0.1
	done
	say "$1 did not start on 127.0.0.1:$2; its log:"
	cat "$tmp/$1.log" >&2
	exit 1
}

start upstream "$tmp/upstream.caddyfile" "${client_cpu[@]}"
wait_port upstream "$up_port"
start gateway "$tmp/gateway.caddyfile" "${gateway_cpu[@]}"
wait_port gateway "$session_port"
wait_port gateway "$plain_port"

# A valid session cookie, from the one path whose upstream response writes the session.
cookie=$(curl -s --max-time 5 -o /dev/null -D - "http://127.0.0.1:$session_port/login" |
	tr -d '\r' | sed -n 's/^[Ss][Ee][Tt]-[Cc][Oo][Oo][Kk][Ii][Ee]: \(session=[^;]*\).*/\1/p' | head -n 1)
[[ -n "$cookie" ]] || die "GET /login through the session site set no session cookie; gateway log: $tmp/gateway.log"
seen=$(curl -s --max-time 5 -H "Cookie: $cookie" "http://127.0.0.1:$session_port/echo")
[[ "$seen" == '{"n":1}' ]] || die "with the cookie, the upstream saw X-Session '$seen', want {\"n\":1}"
# The cookie value is a live token: it is never printed.

run_wrk() { # port duration -> requests/s and average latency, tab-separated
	local out
	out=$("${client_cpu[@]}" timeout 120 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2" -H "Cookie: $cookie" "http://127.0.0.1:$1/") ||
		die "wrk against 127.0.0.1:$1 failed"
	if grep -q 'Non-2xx or 3xx responses' <<<"$out"; then
		die "wrk against 127.0.0.1:$1 got error responses: $(grep 'Non-2xx' <<<"$out")"
	fi
	awk '/^Requests\/sec:/ {rps = $2} $1 == "Latency" && lat == "" {lat = $2} END {printf "%s\t%s\n", rps, lat}' <<<"$out"
}

pinned="not pinned"
[[ $PIN == 1 ]] && pinned="gateway on CPU 0, upstream and wrk on CPU 1"
say "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS round(s), $pinned, every request with a valid session cookie (upstream changes nothing)"
run_wrk "$plain_port" "$WARMUP" >/dev/null || exit 1
run_wrk "$session_port" "$WARMUP" >/dev/null || exit 1

sum_plain=0
sum_session=0
for ((r = 1; r <= ROUNDS; r++)); do
	order=(plain session)
	((r % 2 == 0)) && order=(session plain)
	for site in "${order[@]}"; do
		port=$plain_port
		[[ $site == session ]] && port=$session_port
		res=$(run_wrk "$port" "$DURATION") || exit 1
		IFS=$'\t' read -r rps lat <<<"$res"
		printf '  round %d  %-7s  %10.0f req/s  latency avg %s\n' "$r" "$site" "$rps" "$lat"
		if [[ $site == plain ]]; then
			sum_plain=$(awk -v a="$sum_plain" -v b="$rps" 'BEGIN {print a + b}')
		else
			sum_session=$(awk -v a="$sum_session" -v b="$rps" 'BEGIN {print a + b}')
		fi
	done
done

awk -v p="$sum_plain" -v s="$sum_session" -v n="$ROUNDS" 'BEGIN {
	printf "plain reverse_proxy:                %10.0f req/s (mean of %d)\n", p / n, n
	printf "session { store memory } + proxy:   %10.0f req/s (mean of %d)\n", s / n, n
	printf "ratio session/plain:                %10.3f (%.1f%%)\n", s / p, 100 * s / p
}'
exit 0
