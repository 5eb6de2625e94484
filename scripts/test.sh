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

fuzz() { go test -run '^$' -fuzz "^$1\$" -fuzztime "${FUZZTIME:-10s}" "$2"; }
fuzz FuzzVerify ./cookie
fuzz FuzzTake ./cookie
fuzz FuzzEvaluate ./internal/protocol
