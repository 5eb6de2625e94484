#!/usr/bin/env bash
# Installs the Debian packages the tests and scripts need, where missing:
#   gcc              the C compiler that `go test -race` needs (cgo)
#   python3          the Python example and scripts/demo.sh
#   python3-jwt      PyJWT: the Python example checks the gateway's signed assertion
#   nodejs, npm      the Node example (Express) and internal/adopt's legacy apps:
#                    `npm ci` from their lockfiles, so the tests need the npm registry
#   php-cli, php-fpm the PHP example
#   chromium         the browser test (headless)
#   wrk, curl        scripts/load.sh
# Go itself (go.mod's version) is not installed: get it from https://go.dev/dl/.
# Idempotent: does nothing when everything is there. Installing needs root or
# password-less sudo; otherwise it prints the apt-get line to run and fails.
set -euo pipefail

# package -> a command it provides
declare -A provides=(
	[gcc]=gcc
	[python3]=python3
	[python3-jwt]=python3-jwt
	[nodejs]=node
	[npm]=npm
	[chromium]=chromium
	[php-cli]=php
	[php-fpm]=php-fpm
	[wrk]=wrk
	[curl]=curl
)

have() {
	# php-fpm is installed as /usr/sbin/php-fpmX.Y, often outside a user's PATH;
	# older Debian releases call Node's binary nodejs.
	if [[ $1 == php-fpm ]]; then
		command -v php-fpm >/dev/null || compgen -G '/usr/sbin/php-fpm*' >/dev/null
	elif [[ $1 == python3-jwt ]]; then
		python3 -c 'import jwt' 2>/dev/null || /usr/bin/python3 -c 'import jwt' 2>/dev/null
	elif [[ $1 == node ]]; then
		command -v node >/dev/null || command -v nodejs >/dev/null
	else
		command -v "$1" >/dev/null
	fi
}

missing=()
for pkg in gcc python3 python3-jwt nodejs npm php-cli php-fpm chromium wrk curl; do
	if have "${provides[$pkg]}"; then
		echo "deps.sh: $pkg: present"
	else
		missing+=("$pkg")
	fi
done
if ((${#missing[@]} == 0)); then
	echo "deps.sh: nothing to install"
	exit 0
fi

echo "deps.sh: missing: ${missing[*]}"
if ! command -v apt-get >/dev/null; then
	echo "deps.sh: no apt-get here; install these yourself (Debian names): ${missing[*]}" >&2
	exit 1
fi
sudo=()
if [[ $(id -u) != 0 ]]; then
	# Not root: use sudo only when it works without asking (a password prompt
	# would hang a CI job); otherwise say what to run.
	if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		sudo=(sudo -n)
	else
		echo "deps.sh: installing needs root. Run this, then run the tests again:" >&2
		echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
		echo "deps.sh: (plain 'go test ./...' needs none of these: it runs the fast tests, with Go only)" >&2
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive
# apt-get update only when the package lists are empty or do not know a package.
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
	echo "deps.sh: apt-get update"
	"${sudo[@]}" apt-get update -q || { echo "deps.sh: apt-get update failed" >&2; exit 1; }
fi
echo "deps.sh: apt-get install ${missing[*]}"
if ! "${sudo[@]}" apt-get install -y -q "${missing[@]}"; then
	echo "deps.sh: apt-get install ${missing[*]} failed" >&2
	exit 1
fi

# Check the result, so a package that installs no such command fails here
# and not later in a test.
for pkg in "${missing[@]}"; do
	have "${provides[$pkg]}" || { echo "deps.sh: $pkg installed but ${provides[$pkg]} not found" >&2; exit 1; }
done
echo "deps.sh: done"
