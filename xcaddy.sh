#!/usr/bin/env bash
# Builds ./caddy: Caddy v2.11.9 with this module compiled in, from the working tree.
# The first build takes about 3 minutes on 2 cores with cold Go caches (it downloads
# about 1 GB of modules); later builds are faster. Skips the build when ./caddy is
# newer than every Go source and go.mod/go.sum, unless FORCE=1.
set -euo pipefail
cd "$(dirname "$0")"

# One build at a time (tests of several packages may call this at once): the
# lock is held on this script itself, so no lock file is left behind.
if command -v flock >/dev/null; then
	exec 9<"$(basename "$0")"
	flock 9
fi

if [[ "${FORCE:-0}" != 1 && -x ./caddy ]]; then
	# Any .go/go.mod/go.sum newer than the binary means a rebuild. The nested modules
	# (internal/ferretdb, internal/faults, examples) and tests are never compiled into
	# Caddy, so skip them.
	newer=$(find . -path ./internal/ferretdb -prune -o -path ./internal/faults -prune -o -path ./examples -prune -o -path ./.git -prune -o \
		\( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) -newer ./caddy -print -quit)
	if [[ -z "$newer" ]]; then
		echo "xcaddy.sh: ./caddy is up to date (FORCE=1 to rebuild)"
		exit 0
	fi
fi

echo "xcaddy.sh: building ./caddy (Caddy v2.11.9 + github.com/sessiongate/caddy-session)..."
# @v0.0.0 pins the module version so xcaddy does not ask the proxy for "latest"
# of a module that only exists here; "=." replaces it with this working tree.
go run github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5 build v2.11.9 \
	--with github.com/sessiongate/caddy-session@v0.0.0=. \
	--output ./caddy
echo "xcaddy.sh: built ./caddy"
