#!/usr/bin/env bash
# Installs what runboat needs to build, run and test on Debian 12, and only
# what is missing: safe to run any number of times. Used by both README
# commands and by .ci/run.
#   --build   only what building and installing runboat needs (the
#             Dockerfile's build stage): no test tools, no Go, no venv
set -euo pipefail

build_only=0
[ "${1:-}" = --build ] && build_only=1

build_packages=(
	build-essential cmake ninja-build pkg-config ca-certificates
	libuv1-dev libcurl4-openssl-dev libjansson-dev libwslay-dev libssl-dev
	libyaml-dev libtomlplusplus-dev node-llhttp libbsd-dev zlib1g-dev
)
packages=("${build_packages[@]}")
if ((!build_only)); then
	packages+=(
		git curl openssl
		clang libclang-rt-14-dev wrk
		python3 python3-venv nodejs
		chromium chromium-driver
	)
fi

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	echo "install-deps: installing ${missing[*]}"
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

((build_only)) && exit 0

# Go builds the test control plane (test/cluster); Kubernetes needs a recent one.
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null; then
	echo "install-deps: Go >= 1.24 is needed for the test control plane (test/cluster)," \
		"and Debian 12's golang is too old: install it from https://go.dev/dl/ into /usr/local/go" >&2
	exit 1
fi

# Python tools for the end-to-end tests, in a virtualenv outside the clone.
venv="${RUNBOAT_CACHE:-$HOME/.cache/runboat}/venv"
req="$(dirname "$0")/../test/e2e/requirements.txt"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ]; then
	python3 -m venv "$venv"
fi
if ! cmp -s "$req" "$stamp"; then
	"$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
	cp "$req" "$stamp"
fi
