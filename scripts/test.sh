#!/usr/bin/env bash
# The test command. Installs the Debian packages the tests need when they
# are missing (scripts/deps.sh), then runs every test with the race
# detector and each fuzz target for a few seconds.
#
# MongoDB tests run against $MONGODB_URI when it is set; otherwise they
# build and start an embedded FerretDB (internal/ferretdb) themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

go test -race -count=1 -timeout 40m ./...
go -C verify vet ./... && go -C verify test -race -count=1 ./... # verify/ is a nested module

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

# A CI-sized soak (per store) with the Caddy the examples' tests built;
# scripts/soak.sh 5 is the full run (docs/reliability.md).
caddy_bin=""; [[ -x ./caddy ]] && caddy_bin=./caddy
SOAK_SECONDS=${SOAK_SECONDS:-45} CADDY=$caddy_bin bash scripts/soak.sh
