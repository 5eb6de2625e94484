#!/usr/bin/env bash
# The Go benchmarks, as one table: the source of every per-request figure in docs/benchmarks.md.
#
# Runs `go test -run '^$' -bench . -benchmem -count $COUNT` in the packages below, then prints a Markdown table of the
# medians per benchmark (ns/op, B/op, allocs/op). In a package that has a BenchmarkBaseline (caddymodule: the
# benchmark's own request set-up and upstream stub), each other row also gets its cost above that baseline: the
# gateway's own cost.
#
#   ./scripts/bench.sh                      COUNT=6, the default packages
#   COUNT=10 OUT=/tmp/bench.md ./scripts/bench.sh
#   ./scripts/bench.sh ./cookie             only these packages
#
# Settings (environment):
#   COUNT=6         runs of each benchmark; the table shows the median
#   BENCH=.         the -bench pattern
#   BENCHTIME=      passed as -benchtime when set (e.g. 2s or 100000x)
#   OUT=            also write the table (with its header lines) to this file
#   RAW=            also keep go test's raw output in this file (for benchstat)
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-6}
BENCH=${BENCH:-.}
pkgs=("$@")
((${#pkgs[@]})) || pkgs=(./caddymodule ./cookie ./internal/protocol ./store/memstore)

command -v go >/dev/null || { echo "bench.sh: Go is needed (https://go.dev/dl/)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench.sh: python3 is needed (scripts/deps.sh installs it)" >&2; exit 1; }

raw=$(mktemp "${TMPDIR:-/tmp}/caddy-session-bench.XXXXXX")
trap 'rm -f "$raw"' EXIT

args=(-run '^$' -bench "$BENCH" -benchmem -count "$COUNT")
[[ -z "${BENCHTIME:-}" ]] || args+=(-benchtime "$BENCHTIME")
echo "bench.sh: go test ${args[*]} ${pkgs[*]}" >&2
go test "${args[@]}" "${pkgs[@]}" | tee "$raw" >&2
[[ -z "${RAW:-}" ]] || cp "$raw" "$RAW"

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || commit="$commit + uncommitted changes"
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)

table=$(python3 - "$raw" "$COUNT" "${args[*]}" "$commit" "$(go version)" "${cpu:-unknown CPU}, $(nproc) CPUs" "$load" <<'EOF'
import re, statistics, sys, time

raw, count, args, commit, gover, cpu, load = sys.argv[1:]
line = re.compile(r"^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$")
runs = {}  # (package, name) -> {unit: [values]}
pkg = ""
for text in open(raw):
    if text.startswith("pkg: "):
        pkg = text[5:].strip().removeprefix("github.com/sessiongate/caddy-session/")
        continue
    m = line.match(text)
    if not m:
        continue
    fields = m.group(2).split()
    vals = runs.setdefault((pkg, m.group(1)), {})
    for value, unit in zip(fields[::2], fields[1::2]):
        vals.setdefault(unit, []).append(float(value))

def med(vals, unit):
    v = vals.get(unit)
    return statistics.median(v) if v else None

def num(x, digits=0):
    return "—" if x is None else f"{x:,.{digits}f}".replace(",", " ")

print(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} at commit {commit}; {gover}; {cpu}; "
      f"load average {load} at the end.")
print(f"`go test {args}`, median of {count} runs.")
print()
print("| package | benchmark | ns/op | B/op | allocs/op | above the package's Baseline |")
print("|---|---|---:|---:|---:|---|")
for (p, name), vals in runs.items():
    ns, b, allocs = med(vals, "ns/op"), med(vals, "B/op"), med(vals, "allocs/op")
    base = runs.get((p, "BenchmarkBaseline"))
    above = ""
    if base and name != "BenchmarkBaseline" and ns is not None:
        dns = ns - med(base, "ns/op")
        dallocs = (allocs or 0) - (med(base, "allocs/op") or 0)
        above = f"{num(dns)} ns, {num(dallocs)} allocs"
    print(f"| {p} | {name.removeprefix('Benchmark')} | {num(ns)} | {num(b)} | {num(allocs)} | {above} |")
if not runs:
    sys.exit("bench.sh: no benchmark results in go test's output")
EOF
)
echo
echo "$table"
[[ -z "${OUT:-}" ]] || printf '%s\n' "$table" >"$OUT"
