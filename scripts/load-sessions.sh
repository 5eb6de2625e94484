#!/usr/bin/env bash
# The many-sessions workload (docs/benchmarks.md, "The read cache"): SESSIONS sessions on the MongoDB store (the
# embedded FerretDB test server), requests spread over them by a Zipf law (s = ZIPF_S), measured with wrk for three
# stacks on the same server, one after the other:
#   cache  Caddy, `session { store mongodb { cache <TTL> } }` in front of reverse_proxy
#   plain  the same without cache
#   koa    the seed's stack: Koa + koa-session + koa-session-mongoose (internal/adopt/testdata/node/koa.js)
# For the two gateway sites it reads the store finds off Caddy's metrics and prints finds per request, and for the
# cache the simple expiry model's prediction at the measured rate: a session asked p_i of R requests a second misses
# once per TTL at most, so it costs 1 / (1 + R * p_i * TTL) finds per request.
# It reports; it does not enforce a threshold. Run it through `WORKLOAD=sessions ./scripts/load.sh` or directly.
#
# Settings (environment):
#   SESSIONS=10000 ZIPF_S=1.1 TTL=1s      the workload and the cache's staleness bound
#   DURATION=10s THREADS=2 CONNECTIONS=32 wrk parameters
#   KOA=1                                 KOA=0 leaves the koa stack out (it needs Node and npm)
#   KOA_SESSIONS=$SESSIONS                the koa stack's sessions: its logins upsert through mongoose, which the test
#                                         server makes slow past a few thousand; fewer sessions only favour koa
#   CADDY=./caddy                         the binary (built with ./xcaddy.sh when CADDY is not set)
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-10000}
ZIPF_S=${ZIPF_S:-1.1}
TTL=${TTL:-1s}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
KOA=${KOA:-1}
KOA_SESSIONS=${KOA_SESSIONS:-$SESSIONS}

say() { printf 'load-sessions.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

for tool in wrk curl python3 go; do
	command -v "$tool" >/dev/null || die "$tool not found (scripts/deps.sh installs what the tests need)"
done
if [[ $KOA == 1 ]]; then
	command -v node >/dev/null && command -v npm >/dev/null || die "KOA=1 needs node and npm (or set KOA=0)"
fi
if [[ -z "${CADDY:-}" ]]; then
	./xcaddy.sh >&2 || die "building ./caddy with ./xcaddy.sh failed"
	CADDY=./caddy
fi
[[ -x "$CADDY" ]] || die "no Caddy binary at $CADDY"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/caddy-session-load.XXXXXX")
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export XDG_DATA_HOME="$tmp/data" XDG_CONFIG_HOME="$tmp/config"

read -r db_port up_port cache_port plain_port admin_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')

wait_line() { # file pattern what
	local i
	for ((i = 0; i < 600; i++)); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	say "$3 did not start; its log:"; cat "$1" >&2; exit 1
}

say "building and starting the MongoDB test server (FerretDB)"
go -C internal/ferretdb build -o "$tmp/ferretdb" . || die "building internal/ferretdb failed"
mkdir -p "$tmp/db"
"$tmp/ferretdb" -listen "127.0.0.1:$db_port" -dir "$tmp/db" >"$tmp/ferretdb.log" 2>&1 &
pids+=($!)
wait_line "$tmp/ferretdb.log" . "FerretDB"
uri="mongodb://127.0.0.1:$db_port/"
secret=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)

cat >"$tmp/Caddyfile" <<EOF
{
	admin 127.0.0.1:$admin_port
	storage file_system $tmp/storage
	metrics
}
(session) {
	secret $secret
	idle_timeout 2h
}
http://127.0.0.1:$up_port {
	bind 127.0.0.1
	header /login X-Session-Patch \`{"n":1}\`
	respond "ok"
}
http://127.0.0.1:$cache_port {
	bind 127.0.0.1
	session {
		import session
		store mongodb {
			uri $uri
			database load_cache
			cache $TTL
		}
	}
	reverse_proxy 127.0.0.1:$up_port
}
http://127.0.0.1:$plain_port {
	bind 127.0.0.1
	session {
		import session
		store mongodb {
			uri $uri
			database load_plain
		}
	}
	reverse_proxy 127.0.0.1:$up_port
}
EOF
"$CADDY" run --adapter caddyfile --config "$tmp/Caddyfile" >"$tmp/caddy.log" 2>&1 &
pids+=($!)
for ((i = 0; i < 100; i++)); do
	curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$plain_port/" && break
	sleep 0.1
done

# sessions port cookie-names... -> one Cookie header value per line in $tmp/<port>.cookies
login() { # port path names [sessions]
	python3 - "$1" "$2" "$3" "${4:-$SESSIONS}" >"$tmp/$1.cookies" <<-'EOF'
		import http.client, sys, concurrent.futures
		port, path, names, n = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
		def batch(count):
		    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
		    out = []
		    for _ in range(count):
		        c.request("GET", path)
		        r = c.getresponse()
		        r.read()
		        jar = {}
		        for k, v in r.getheaders():
		            if k.lower() == "set-cookie":
		                name, _, rest = v.partition("=")
		                jar[name] = rest.split(";")[0]
		        if not all(x in jar for x in names):
		            sys.exit(f"{path} on port {port} set no {names} cookie")
		        out.append("; ".join(f"{x}={jar[x]}" for x in names))
		    return out
		with concurrent.futures.ThreadPoolExecutor(8) as ex:
		    parts = list(ex.map(batch, [n // 8 + (i < n % 8) for i in range(8)]))
		print("\n".join(c for p in parts for c in p))
	EOF
}

# The wrk script: every request carries one of the cookies, chosen by the Zipf law (rank 1 the hottest).
cat >"$tmp/zipf.lua" <<EOF
local cookies, cdf = {}, {}
init = function(args)
	for line in io.lines(args[1]) do cookies[#cookies + 1] = line end
	local total = 0
	for i = 1, #cookies do total = total + 1 / i ^ $ZIPF_S; cdf[i] = total end
	for i = 1, #cookies do cdf[i] = cdf[i] / total end
	math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
request = function()
	local u, lo, hi = math.random(), 1, #cookies
	while lo < hi do
		local mid = math.floor((lo + hi) / 2)
		if cdf[mid] < u then lo = mid + 1 else hi = mid end
	end
	return wrk.format("GET", PATH, { ["Cookie"] = cookies[lo] })
end
EOF

run_wrk() { # port path -> requests, requests/s and error answers (503 when the server is overloaded), tab-separated
	local out
	out=$(sed "s#PATH#\"$2\"#" "$tmp/zipf.lua" >"$tmp/run.lua" &&
		timeout 300 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$tmp/run.lua" "http://127.0.0.1:$1/" \
			-- "$tmp/$1.cookies") || die "wrk against port $1 failed"
	awk '/requests in/ {n = $1} /^Requests\/sec:/ {r = $2} /Non-2xx/ {e = $NF}
		END {printf "%s\t%s\t%d\n", n, r, e}' <<<"$out"
}

finds() { # -> store finds so far, from Caddy's metrics (one site is loaded at a time)
	curl -s "http://127.0.0.1:$admin_port/metrics" |
		awk '/^caddy_session_store_duration_seconds_count/ && /op="find"/ {n += $2} END {print n + 0}'
}

say "creating $SESSIONS sessions on each gateway site"
login "$cache_port" /login session
login "$plain_port" /login session
results=()
for site in cache plain; do
	port=$cache_port
	[[ $site == plain ]] && port=$plain_port
	run_wrk "$port" / >/dev/null # warm-up, and fills the cache
	before=$(finds)
	IFS=$'\t' read -r n rate errs < <(run_wrk "$port" /)
	after=$(finds)
	results+=("$site $n $rate $((after - before)) $errs")
done

if [[ $KOA == 1 ]]; then
	say "starting the koa stack (koa-session + koa-session-mongoose) on the same server"
	(cd internal/adopt/testdata/node && { [[ -d node_modules ]] || npm ci --silent; }) >&2 || die "npm ci failed"
	KOA_KEYS="$secret" STORE=mongoose MONGODB_URI="$uri" MONGODB_DB=load_koa \
		node internal/adopt/testdata/node/koa.js >"$tmp/koa.log" 2>&1 &
	pids+=($!)
	wait_line "$tmp/koa.log" '^listening' "the koa app"
	koa_port=$(awk '/^listening/ {print $2; exit}' "$tmp/koa.log")
	login "$koa_port" /login koa.sess,koa.sess.sig "$KOA_SESSIONS"
	run_wrk "$koa_port" /whoami >/dev/null
	IFS=$'\t' read -r n rate errs < <(run_wrk "$koa_port" /whoami)
	results+=("koa $n $rate - $errs")
fi

printf '%s\n' "${results[@]}" | python3 -c '
import sys
sessions, s, ttl = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ttl_s = float(ttl[:-2]) / 1000 if ttl.endswith("ms") else float(ttl[:-1])
w = [1 / (i ** s) for i in range(1, sessions + 1)]
tot = sum(w)
p = [x / tot for x in w]
rows = [line.split() for line in sys.stdin]
rate = {r[0]: float(r[2]) for r in rows}
print(f"{sessions} sessions, Zipf s={s}, cache ttl {ttl}")
print("%-6s %10s %10s %7s  note" % ("stack", "req/s", "finds/req", "errors"))
for name, n, r, f, e in rows:
    fpr = "-" if f == "-" else f"{int(f) / int(n):.3f}"
    note = ""
    if name == "cache":
        model = sum(pi / (1 + float(r) * pi * ttl_s) for pi in p)
        note = f"model {model:.3f} at {float(r):.0f} req/s"
    if name != "koa" and "koa" in rate:
        note += "  %.2fx koa" % (float(r) / rate["koa"])
    print(f"{name:6} {float(r):>10.0f} {fpr:>10} {e:>7}  {note}")
' "$SESSIONS" "$ZIPF_S" "$TTL"
