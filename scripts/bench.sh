#!/usr/bin/env bash
# The Go benchmarks, as one table: the source of every per-request figure in docs/benchmarks.md.
#
# Runs the benchmarks of the packages below (`-bench . -benchmem`, COUNT times) and prints a Markdown table of the
# medians per benchmark (ns/op, B/op, allocs/op). In a package that has a BenchmarkBaseline (caddymodule: the
# benchmark's own request set-up and upstream stub), each other row also gets its cost above that baseline: the
# gateway's own cost.
#
# With BEFORE=<another checkout of this repository> it compares the two trees instead: it builds each package's test
# binary in both, then runs them alternately, one run of each per round, so both see the same machine load (on a
# shared machine, times measured minutes apart are not comparable). The table then has both medians side by side.
#
#   ./scripts/bench.sh                            COUNT=6, the default packages
#   COUNT=10 OUT=/tmp/bench.md ./scripts/bench.sh
#   ./scripts/bench.sh ./cookie                   only these packages
#   git worktree add /tmp/before 5973826 && BEFORE=/tmp/before ./scripts/bench.sh
#
# Settings (environment):
#   COUNT=6         runs of each benchmark (rounds, with BEFORE); the table shows the median
#   BENCH=.         the -bench pattern
#   BENCHTIME=      passed as -benchtime when set (e.g. 2s or 100000x)
#   BEFORE=         compare with the checkout in this directory
#   OUT=            also write the table (with its header lines) to this file
#   RAW=            also keep the raw benchmark output in this file (RAW.before too, with BEFORE), for benchstat
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-6}
BENCH=${BENCH:-.}
BEFORE=${BEFORE:-}
pkgs=("$@")
((${#pkgs[@]})) || pkgs=(./caddymodule ./cookie ./internal/protocol ./store/memstore)

say() { printf 'bench.sh: %s\n' "$*" >&2; }
command -v go >/dev/null || { say "Go is needed (https://go.dev/dl/)"; exit 1; }
command -v python3 >/dev/null || { say "python3 is needed (scripts/deps.sh installs it)"; exit 1; }
if [[ -n $BEFORE ]]; then
	BEFORE=$(cd "$BEFORE" && pwd) || { say "BEFORE=$BEFORE is not a directory"; exit 1; }
	[[ -f $BEFORE/go.mod ]] || { say "BEFORE=$BEFORE is not a checkout of this repository (no go.mod)"; exit 1; }
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/caddy-session-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
raw=$tmp/after.txt

# describe DIR: the commit of a checkout, and whether it has uncommitted changes.
describe() {
	local c
	c=$(git -C "$1" rev-parse --short HEAD 2>/dev/null || echo unknown)
	git -C "$1" diff --quiet HEAD -- 2>/dev/null || c="$c + uncommitted changes"
	echo "$c"
}

if [[ -z $BEFORE ]]; then
	args=(-run '^$' -bench "$BENCH" -benchmem -count "$COUNT")
	[[ -z "${BENCHTIME:-}" ]] || args+=(-benchtime "$BENCHTIME")
	say "go test ${args[*]} ${pkgs[*]}"
	go test "${args[@]}" "${pkgs[@]}" | tee "$raw" >&2
	how="\`go test ${args[*]}\`, median of $COUNT runs"
	trees="commit $(describe .)"
else
	args=(-test.run '^$' -test.bench "$BENCH" -test.benchmem -test.count 1)
	[[ -z "${BENCHTIME:-}" ]] || args+=(-test.benchtime "$BENCHTIME")
	# Test binaries of every package in both trees; a package missing in one tree is benchmarked in the other only.
	declare -A bin=()
	for side in before after; do
		dir=$PWD
		[[ $side == before ]] && dir=$BEFORE
		for pkg in "${pkgs[@]}"; do
			out="$tmp/$side.$(tr -c 'a-zA-Z0-9\n' _ <<<"$pkg").test"
			if (cd "$dir" && go test -c -o "$out" "$pkg") >&2 && [[ -x $out ]]; then
				bin[$side,$pkg]=$out
			else
				say "no test binary for $pkg in the $side tree ($dir); skipped there"
			fi
		done
	done
	for ((i = 1; i <= COUNT; i++)); do
		order=(before after)
		((i % 2 == 0)) && order=(after before)
		say "round $i of $COUNT: ${order[*]}"
		for side in "${order[@]}"; do
			dir=$PWD
			[[ $side == before ]] && dir=$BEFORE
			for pkg in "${pkgs[@]}"; do
				[[ -n ${bin[$side,$pkg]:-} ]] || continue
				(cd "$dir/$pkg" && "${bin[$side,$pkg]}" "${args[@]}") >>"$tmp/$side.txt"
			done
		done
	done
	how="test binaries run with \`${args[*]}\`, before and after alternately, median of $COUNT rounds"
	trees="before: $BEFORE at $(describe "$BEFORE"); after: commit $(describe .)"
fi
[[ -z "${RAW:-}" ]] || cp "$raw" "$RAW"
[[ -z "${RAW:-}" || -z $BEFORE ]] || cp "$tmp/before.txt" "$RAW.before"

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
header="Measured $(date -u '+%Y-%m-%d %H:%M UTC'), $trees; $(go version | cut -d' ' -f3); ${cpu:-unknown CPU}, $(nproc) CPUs; load average $load at the end.
$how."

before_raw=""
[[ -z $BEFORE ]] || before_raw=$tmp/before.txt
table=$(python3 - "$raw" "$before_raw" <<'EOF'
import re, statistics, sys

line = re.compile(r"^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$")

def parse(path):
    runs, pkg = {}, ""  # (package, name) -> {unit: [values]}
    for text in open(path):
        if text.startswith("pkg: "):
            pkg = text[5:].strip().removeprefix("github.com/sessiongate/caddy-session/")
            continue
        m = line.match(text)
        if m:
            fields = m.group(2).split()
            vals = runs.setdefault((pkg, m.group(1)), {})
            for value, unit in zip(fields[::2], fields[1::2]):
                vals.setdefault(unit, []).append(float(value))
    return {k: {u: statistics.median(v) for u, v in vals.items()} for k, vals in runs.items()}

def num(x):
    return "—" if x is None else f"{x:,.0f}".replace(",", " ")

def above(runs, key):
    """The row's cost above its package's Baseline, as "ns, allocs"."""
    base = runs.get((key[0], "BenchmarkBaseline"))
    row = runs.get(key)
    if not base or not row or key[1] == "BenchmarkBaseline":
        return ""
    return f"{num(row['ns/op'] - base['ns/op'])} ns, {num(row.get('allocs/op', 0) - base.get('allocs/op', 0))} allocs"

after = parse(sys.argv[1])
if not sys.argv[2]:
    print("| package | benchmark | ns/op | B/op | allocs/op | above the package's Baseline |")
    print("|---|---|---:|---:|---:|---|")
    for key, v in after.items():
        print(f"| {key[0]} | {key[1].removeprefix('Benchmark')} | {num(v.get('ns/op'))} | {num(v.get('B/op'))} "
              f"| {num(v.get('allocs/op'))} | {above(after, key)} |")
else:
    before = parse(sys.argv[2])
    print("| package | benchmark | ns/op before | ns/op after | change | allocs/op before → after "
          "| B/op before → after | above Baseline before → after |")
    print("|---|---|---:|---:|---:|---|---|---|")
    for key in list(before) + [k for k in after if k not in before]:
        b, a = before.get(key, {}), after.get(key, {})
        change = ""
        if b.get("ns/op") and a.get("ns/op"):
            change = f"{100 * (a['ns/op'] / b['ns/op'] - 1):+.0f}%"
        above_b, above_a = above(before, key), above(after, key)
        print(f"| {key[0]} | {key[1].removeprefix('Benchmark')} | {num(b.get('ns/op'))} | {num(a.get('ns/op'))} "
              f"| {change} | {num(b.get('allocs/op'))} → {num(a.get('allocs/op'))} "
              f"| {num(b.get('B/op'))} → {num(a.get('B/op'))} "
              f"| {above_b + ' → ' + above_a if above_b or above_a else ''} |")
if not after:
    sys.exit("bench.sh: no benchmark results")
EOF
)
printf '\n%s\n\n%s\n' "$header" "$table"
[[ -z "${OUT:-}" ]] || printf '%s\n\n%s\n' "$header" "$table" >"$OUT"
