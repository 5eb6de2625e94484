#!/usr/bin/env bash
# The Go benchmarks, as one table: the source of every per-request figure in docs/benchmarks.md.
#
# Builds the test binary of each package below, runs its benchmarks (`-bench . -benchmem`) COUNT times and prints a
# Markdown table of the medians per benchmark (ns/op, B/op, allocs/op). In a package that has a BenchmarkBaseline
# (caddymodule: the benchmark's own request set-up and upstream stub), each other row also gets its cost above that
# baseline: the gateway's own cost. With CPU_OPS=N each round also measures the CPU time per operation of each
# benchmark (a run of N operations less a run of one): on a busy machine ns/op includes the time spent waiting for a
# CPU, the CPU time mostly does not.
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
#   COUNT=6         rounds: runs of each benchmark; the table shows the median
#   CPU_OPS=        e.g. 200000: also measure CPU ns/op with runs of this many operations
#   BENCH=.         the -bench pattern
#   BENCHTIME=      passed as -benchtime when set (e.g. 2s or 100000x)
#   BEFORE=         compare with the checkout in this directory
#   OUT=            also write the table (with its header lines) to this file
#   RAW=            also keep the raw benchmark output in this file (RAW.before too, with BEFORE), for benchstat
#                   (the cpu-ns/op lines are in go test's format too)
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

# cpu_ops BIN: one line per benchmark, in go test's format, with the CPU time (user + system, all threads, GC
# included) per operation: the CPU time of a run of CPU_OPS operations less that of a run of one, divided by CPU_OPS.
# Time spent waiting for a CPU is not in it, which makes it steadier than ns/op on a busy machine.
cpu_ops() {
	python3 - "$1" "$BENCH" "$CPU_OPS" <<'PY'
import re, resource, subprocess, sys
binary, pattern, ops = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = [n for n in subprocess.run([binary, "-test.list", "^Benchmark"], capture_output=True, text=True,
                                   check=True).stdout.split() if re.search(pattern, n)]
def cpu(name, n):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([binary, "-test.run", "^$", "-test.bench", f"^{name}$", "-test.benchtime", f"{n}x"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
for name in names:
    per_op = (cpu(name, ops) - cpu(name, 1)) / ops
    print(f"{name} {ops} {per_op * 1e9:.1f} cpu-ns/op")
PY
}

sides=(after)
[[ -z $BEFORE ]] || sides=(before after)
args=(-test.run '^$' -test.bench "$BENCH" -test.benchmem -test.count 1)
[[ -z "${BENCHTIME:-}" ]] || args+=(-test.benchtime "$BENCHTIME")
# A test binary per package and tree; a package missing in one tree is benchmarked in the other only.
declare -A bin=() dirs=([after]=$PWD [before]=$BEFORE)
for side in "${sides[@]}"; do
	for pkg in "${pkgs[@]}"; do
		out="$tmp/$side.$(tr -c 'a-zA-Z0-9\n' _ <<<"$pkg").test"
		if (cd "${dirs[$side]}" && go test -c -o "$out" "$pkg") >&2 && [[ -x $out ]]; then
			bin[$side,$pkg]=$out
		else
			say "no test binary for $pkg in ${dirs[$side]}; skipped there"
		fi
	done
done
for ((i = 1; i <= COUNT; i++)); do
	order=("${sides[@]}")
	((i % 2 == 0 && ${#sides[@]} == 2)) && order=(after before)
	say "round $i of $COUNT: ${order[*]}"
	for side in "${order[@]}"; do
		for pkg in "${pkgs[@]}"; do
			[[ -n ${bin[$side,$pkg]:-} ]] || continue
			# Each binary runs in its package's directory, as go test runs it; its pkg: line names the package.
			(
				cd "${dirs[$side]}/$pkg"
				"${bin[$side,$pkg]}" "${args[@]}"
				if [[ -n ${CPU_OPS:-} ]]; then cpu_ops "${bin[$side,$pkg]}"; fi
			) | tee -a "$tmp/$side.txt" >&2
		done
	done
done
how="each package's test binary run $COUNT times with \`${args[*]}\`"
[[ -z ${CPU_OPS:-} ]] || how="$how, then each benchmark for CPU time per op ($CPU_OPS ops less 1 op)"
how="$how; medians"
trees="commit $(describe .)"
if [[ -n $BEFORE ]]; then
	how="$how; the two trees alternately, one run of each per round"
	trees="before: $BEFORE at $(describe "$BEFORE"); after: commit $(describe .)"
fi
[[ -s $raw ]] || { say "no benchmark ran in this tree (packages: ${pkgs[*]})"; exit 1; }
[[ -z $BEFORE || -s $tmp/before.txt ]] || { say "no benchmark ran in $BEFORE (packages: ${pkgs[*]})"; exit 1; }
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
    """The row's cost above its package's Baseline: "ns, allocs", with the CPU time when measured."""
    base = runs.get((key[0], "BenchmarkBaseline"))
    row = runs.get(key)
    if not base or not row or key[1] == "BenchmarkBaseline":
        return ""
    out = f"{num(row['ns/op'] - base['ns/op'])} ns"
    if "cpu-ns/op" in row and "cpu-ns/op" in base:
        out += f" (CPU {num(row['cpu-ns/op'] - base['cpu-ns/op'])} ns)"
    return out + f", {num(row.get('allocs/op', 0) - base.get('allocs/op', 0))} allocs"

after = parse(sys.argv[1])
if not sys.argv[2]:
    print("| package | benchmark | ns/op | CPU ns/op | B/op | allocs/op | above the package's Baseline |")
    print("|---|---|---:|---:|---:|---:|---|")
    for key, v in after.items():
        print(f"| {key[0]} | {key[1].removeprefix('Benchmark')} | {num(v.get('ns/op'))} | {num(v.get('cpu-ns/op'))} "
              f"| {num(v.get('B/op'))} | {num(v.get('allocs/op'))} | {above(after, key)} |")
else:
    before = parse(sys.argv[2])
    print("| package | benchmark | ns/op before | ns/op after | change | CPU ns/op before → after "
          "| allocs/op before → after | B/op before → after | above Baseline before → after |")
    print("|---|---|---:|---:|---:|---|---|---|---|")
    for key in list(before) + [k for k in after if k not in before]:
        b, a = before.get(key, {}), after.get(key, {})
        change = ""
        if b.get("ns/op") and a.get("ns/op"):
            change = f"{100 * (a['ns/op'] / b['ns/op'] - 1):+.0f}%"
        above_b, above_a = above(before, key), above(after, key)
        print(f"| {key[0]} | {key[1].removeprefix('Benchmark')} | {num(b.get('ns/op'))} | {num(a.get('ns/op'))} "
              f"| {change} | {num(b.get('cpu-ns/op'))} → {num(a.get('cpu-ns/op'))} "
              f"| {num(b.get('allocs/op'))} → {num(a.get('allocs/op'))} "
              f"| {num(b.get('B/op'))} → {num(a.get('B/op'))} "
              f"| {above_b + ' → ' + above_a if above_b or above_a else ''} |")
if not after:
    sys.exit("bench.sh: no benchmark results")
EOF
)
printf '\n%s\n\n%s\n' "$header" "$table"
[[ -z "${OUT:-}" ]] || printf '%s\n\n%s\n' "$header" "$table" >"$OUT"
