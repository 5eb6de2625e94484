#!/usr/bin/env bash
# The test command: every test. Installs the Debian packages the tests need
# when they are missing (scripts/deps.sh), then runs every test with the race
# detector and the `e2e` build tag, in the main module and in the nested
# modules examples/ and internal/faults, then each fuzz target briefly, then a
# CI-sized soak.
#
# Plain `go test ./...` (no tag, only Go needed) runs the fast subset of the
# main module; this script runs everything, and .ci/run runs this script.
#
# MongoDB tests run against $MONGODB_URI when it is set; otherwise they
# build and start an embedded FerretDB (internal/ferretdb) themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

# Two lanes at once, one test binary each (-p 1), so the machine runs two
# test binaries at a time as one `go test ./...` over every package would:
# the main module in the foreground; the nested modules (the examples behind
# the xcaddy-built Caddy and the fault scenarios, each one long package; verify/,
# the assertion verifier, which has no dependencies) in the background, their
# lines prefixed with the module's folder. (.ci/run vets every module.)
e2e=(test -race -count=1 -timeout 40m -tags e2e -p 1)
nested() {
	local status=0 mod
	for mod in examples internal/faults verify; do
		go -C "$mod" "${e2e[@]}" ./... 2>&1 | sed -u "s|^|$mod: |" || status=1
	done
	return $status
}
nested &
nested_pid=$!
trap 'kill $nested_pid 2>/dev/null || true' EXIT
status=0
go "${e2e[@]}" ./... || status=1
wait $nested_pid || status=1
trap - EXIT
((status == 0)) || { echo "test.sh: tests failed" >&2; exit 1; }

# A count rather than a duration: a duration can end the run while a
# worker is mid-input, which go test reports as "context deadline exceeded".
fuzz() { go test -run '^$' -fuzz "^$1\$" -fuzztime "${FUZZTIME:-$3}" "$2"; }
fuzz FuzzVerify ./cookie 200000x
fuzz FuzzTake ./cookie 100000x
fuzz FuzzEvaluate ./internal/protocol 100000x
fuzz FuzzAppendString ./internal/protocol 50000x
fuzz FuzzCanonicalNumber ./internal/protocol 50000x
fuzz FuzzTakeVerified ./cookie 50000x
go -C verify test -run '^$' -fuzz '^FuzzParse$' -fuzztime "${FUZZTIME:-50000x}" .
fuzz FuzzScope ./internal/protocol 50000x
fuzz FuzzOpen ./store/mongostore 50000x

# A CI-sized soak (per store) with the Caddy the examples' tests built;
# scripts/soak.sh 5 is the full run (docs/reliability.md).
caddy_bin=""; [[ -x ./caddy ]] && caddy_bin=./caddy
SOAK_SECONDS=${SOAK_SECONDS:-45} CADDY=$caddy_bin bash scripts/soak.sh
