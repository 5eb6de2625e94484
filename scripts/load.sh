#!/usr/bin/env bash
# Load comparison: Caddy with `session { store memory }` in front of reverse_proxy, against plain reverse_proxy,
# both to the same upstream, measured with wrk in one run. Each round runs both sites, in alternating order, and gives
# one ratio session/plain; the result is the median of the rounds' ratios. With PROFILE set it then captures a CPU
# profile of the gateway process through Caddy's admin endpoint (/debug/pprof/profile) while wrk loads the session
# site, and prints the gateway's own share of it.
# It reports; it does not enforce a threshold: it exits 0 whatever the ratio, and non-zero only when the set-up
# fails (no binary, no wrk, a server that does not start, no session cookie).
#
# Traffic goes to 127.0.0.1 only. Everything the script starts is stopped on exit.
#
# Settings (environment):
#   WORKLOAD=                               WORKLOAD=sessions runs scripts/load-sessions.sh instead
#   DURATION=10s THREADS=2 CONNECTIONS=32   wrk parameters, the same for both sites
#   ROUNDS=5                                measured rounds; each round runs both sites, in alternating order
#   WARMUP=2s                               untimed wrk run against each site before measuring
#   CADDY=./caddy                           the binary (built with ./xcaddy.sh when CADDY is not set)
#   PIN=0                                   PIN=1: gateway on CPU 0, upstream and wrk on CPU 1 (taskset), so the
#                                           gateway is the bottleneck and the ratio is its own cost
#   PROFILE=0                               PROFILE=N: after the rounds, a CPU profile of N seconds of the gateway
#                                           under wrk on the session site (needs Go for `go tool pprof`)
#   PROFILE_OUT=./load-cpu.pprof            where that profile is written (read it with `go tool pprof`)
#   ASSERTION=0                             ASSERTION=1: the session site also signs every request (`assertion`)
#
# The gateway's own share of the profile: the samples whose innermost frame from this module
# (github.com/sessiongate/caddy-session/...) is nearer the leaf than any frame of reverse_proxy or of the writers the
# gateway's response writer passes calls on to (net/http's response, Caddy's writer wrappers). So the session
# handler's work before it calls the next handler counts, and so does the save path that runs inside reverse_proxy's
# WriteHeader; reverse_proxy's own work, and the writes that pass through the gateway's writer, do not. Allocation
# and GC assist inside the counted frames count; background GC workers are in no one's share.
set -euo pipefail
cd "$(dirname "$0")/.."

# WORKLOAD=sessions: the many-sessions workload on the MongoDB store, read cache on and off, against the seed's koa
# stack (scripts/load-sessions.sh says how).
[[ "${WORKLOAD:-}" == sessions ]] && exec bash scripts/load-sessions.sh

DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-2s}
PIN=${PIN:-0}
PROFILE=${PROFILE:-0}
PROFILE_OUT=${PROFILE_OUT:-./load-cpu.pprof}

say() { printf 'load.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v wrk >/dev/null || die "wrk not found: install it with 'apt-get install wrk' (Debian package wrk)"
command -v curl >/dev/null || die "curl not found: install it with 'apt-get install curl'"
command -v python3 >/dev/null || die "python3 not found: install it with 'apt-get install python3'"
[[ $PROFILE == 0 ]] || command -v go >/dev/null || die "PROFILE needs Go for 'go tool pprof' (https://go.dev/dl/)"

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

# Four free loopback ports: the upstream, the session site, the plain site and the gateway's admin endpoint.
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
read -r up_port session_port plain_port admin_port < <(free_ports 4)

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

# The gateway: one Caddy, two sites, the same upstream. Its admin endpoint serves /debug/pprof/ (PROFILE).
cat >"$tmp/gateway.caddyfile" <<EOF
{
	admin 127.0.0.1:$admin_port
	storage file_system $tmp/storage
}
http://127.0.0.1:$session_port {
	bind 127.0.0.1
	session {
		store memory
		secret $secret$( [[ "${ASSERTION:-0}" == 1 ]] && printf '\n\t\tassertion {\n\t\t\taudience load\n\t\t}' )
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
if [[ -z "$cookie" ]]; then
	say "GET /login through the session site set no session cookie; the gateway's log:"
	tail -n 50 "$tmp/gateway.log" >&2
	exit 1
fi
# The cookie value is a live token: it is never printed, and curl and wrk read it from files in the private temporary
# directory rather than from their command lines, where ps would show it.
printf 'Cookie: %s\n' "$cookie" >"$tmp/cookie.header"
printf 'wrk.headers["Cookie"] = "%s"\n' "$cookie" >"$tmp/cookie.lua"
seen=$(curl -s --max-time 5 -H @"$tmp/cookie.header" "http://127.0.0.1:$session_port/echo")
[[ "$seen" == '{"n":1}' ]] || die "with the cookie, the upstream saw X-Session '$seen', want {\"n\":1}"

run_wrk() { # port duration -> requests/s and average latency, tab-separated
	local out
	out=$("${client_cpu[@]}" timeout 120 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2" -s "$tmp/cookie.lua" "http://127.0.0.1:$1/") ||
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

ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
	order=(plain session)
	((r % 2 == 0)) && order=(session plain)
	declare -A rps=()
	for site in "${order[@]}"; do
		port=$plain_port
		[[ $site == session ]] && port=$session_port
		res=$(run_wrk "$port" "$DURATION") || exit 1
		IFS=$'\t' read -r rate lat <<<"$res"
		rps[$site]=$rate
		printf '  round %d  %-7s  %10.0f req/s  latency avg %s\n' "$r" "$site" "$rate" "$lat"
	done
	ratio=$(awk -v s="${rps[session]}" -v p="${rps[plain]}" 'BEGIN {printf "%.3f", s / p}')
	printf '  round %d  ratio session/plain %s\n' "$r" "$ratio"
	ratios+=("$ratio")
done

printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {
	m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
	printf "ratio session/plain: median %.3f of %d rounds (min %.3f, max %.3f)\n", m, NR, v[1], v[NR]
}'

[[ $PROFILE == 0 ]] && exit 0

# The profile: wrk on the session site for a little longer than the profile, so the whole profile is under load.
say "CPU profile of the gateway: ${PROFILE}s under wrk on the session site"
run_wrk "$session_port" "$((PROFILE + 2))s" >/dev/null &
wrk_pid=$!
pids+=("$wrk_pid")
sleep 1
curl -s -f --max-time "$((PROFILE + 30))" -o "$PROFILE_OUT" \
	"http://127.0.0.1:$admin_port/debug/pprof/profile?seconds=$PROFILE" ||
	die "could not fetch the profile from the gateway's admin endpoint"
wait "$wrk_pid" || die "wrk during the profile failed"
go tool pprof -traces "$PROFILE_OUT" 2>/dev/null | python3 -c '
import re, sys
unit = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
# Frames of the next handler, and the writers that the gateway response writer passes calls on to.
NEXT = re.compile(r"caddyhttp/reverseproxy\.|net/http\.\(\*(response|chunkWriter)\)\."
                  r"|caddyhttp\.\(\*\w+\)\.(Write|WriteHeader|ReadFrom|Flush|FlushError)$")
own = next_ = total = 0.0
value, frames = None, []
def flush():
    global own, next_, total
    if value is None:
        return
    total += value
    for f in frames:  # leaf first
        if "sessiongate/caddy-session/" in f:
            own += value
            return
        if NEXT.search(f):
            next_ += value
            return
for line in sys.stdin:
    if line.startswith("-----------+"):
        flush()
        value, frames = None, []
        continue
    m = re.match(r"^\s+([0-9.]+)(ns|us|µs|ms|s)\s+(\S+)", line)
    if m:
        value, frames = float(m.group(1)) * unit[m.group(2)], [m.group(3)]
    elif value is not None and line.strip():
        frames.append(line.split()[0])
flush()
if total == 0:
    sys.exit("load.sh: the profile has no samples")
print(f"profile: {total:.2f}s of CPU samples; the gateway (this module) {100 * own / total:.1f}%, "
      f"reverse_proxy and the response writes {100 * next_ / total:.1f}%, the rest (net/http, Caddy, runtime, GC) "
      f"{100 * (total - own - next_) / total:.1f}%")
' || die "could not read the profile with go tool pprof"
say "profile written to $PROFILE_OUT (go tool pprof -top $PROFILE_OUT)"
exit 0
