#!/usr/bin/env bash
# Runs every test of runboat: unit tests under ASan+UBSan, the end-to-end
# tests against the real binary (sanitizer build) and the local Kubernetes
# control plane, and the HTTP fuzzer for a bounded time.
#   FUZZ_SECONDS   how long the fuzzer runs (default 60)
#   KEEP_CLUSTER=1 leave the test control plane running at the end
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="/usr/local/go/bin:$PATH"
export RUNBOAT_SHARED="${RUNBOAT_SHARED:-$root/../shared}"
fuzz_seconds=${FUZZ_SECONDS:-60}
venv="${RUNBOAT_CACHE:-$HOME/.cache/runboat}/venv"

bash scripts/install-deps.sh || exit 1

passed=0
failed=0
failures=()
step() {
	local name=$1
	shift
	echo "=== $name"
	local t0=$SECONDS
	if "$@"; then
		passed=$((passed + 1))
		echo "=== $name: ok ($((SECONDS - t0))s)"
	else
		failed=$((failed + 1))
		failures+=("$name")
		echo "=== $name: FAILED ($((SECONDS - t0))s)"
	fi
}

build() {
	local dir=$1
	shift
	cmake -S . -B "$dir" -G Ninja -DRUNBOAT_WERROR=ON "$@" >/dev/null && cmake --build "$dir"
}

step "build (release)" build build
step "build (asan+ubsan)" build build-asan -DRUNBOAT_SANITIZE=ON
step "build (fuzz, clang)" env CC=clang CXX=clang++ bash -c "$(declare -f build); build build-fuzz -DRUNBOAT_FUZZ=ON"

cluster_dir=""
if [ -x test/cluster/cluster.sh ]; then
	step "test control plane: build" test/cluster/cluster.sh build
	cluster_dir=$(mktemp -d /tmp/runboat-cluster.XXXXXX)
	if test/cluster/cluster.sh start "$cluster_dir"; then
		export RUNBOAT_TEST_CLUSTER="$cluster_dir"
		export RUNBOAT_TEST_KUBECONFIG="$cluster_dir/kubeconfig"
		[ "${KEEP_CLUSTER:-}" = 1 ] || trap 'test/cluster/cluster.sh stop "$cluster_dir"' EXIT
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failures+=("test control plane: start")
	fi
fi

step "unit tests (asan+ubsan)" ctest --test-dir build-asan --output-on-failure --timeout 300
step "end-to-end tests" env RUNBOAT_BIN="$root/build-asan/runboat" \
	"$venv/bin/python" -m pytest -q -p no:cacheprovider test/e2e

fuzz() {
	local work
	work=$(mktemp -d)
	cp test/fuzz/corpus/http/* "$work/"
	(cd "$work" && "$root/build-fuzz/fuzz_http" -max_total_time="$fuzz_seconds" -max_len=8192 \
		-print_final_stats=1 "$work" 2>&1 | tail -12)
	local rc=${PIPESTATUS[0]}
	rm -rf "$work"
	return "$rc"
}
step "fuzz http (${fuzz_seconds}s)" fuzz

echo
if ((failed)); then
	echo "failed steps: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
((failed == 0))
