#!/usr/bin/env bash
# Runs every test of runboat: unit tests under ASan+UBSan, the dashboard's
# logic under node's test runner, the end-to-end
# tests against the real binary (sanitizer build) and the local Kubernetes
# control plane, and the fuzzers for a bounded time.
#   FUZZ_SECONDS   the fuzzers' total budget, split evenly between the
#                  targets (default 150, at least 5 s per target)
#   KEEP_CLUSTER=1 leave the test control plane running at the end
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="/usr/local/go/bin:$PATH"
export RUNBOAT_SHARED="${RUNBOAT_SHARED:-$root/../shared}"
fuzz_seconds=${FUZZ_SECONDS:-150}
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
# the dashboard's pure logic (web/logic.mjs), with node's own test runner
step "web logic tests (node)" node --test test/web/*.test.mjs
step "end-to-end tests" env RUNBOAT_BIN="$root/build-asan/runboat" \
	"$venv/bin/python" -m pytest -q -p no:cacheprovider test/e2e test/faultproxy

# One libFuzzer target for a bounded time, from its seed corpus in
# test/fuzz/corpus/<target>/ (copied: what it finds stays out of the tree).
# A crash, a leak, a hang (-timeout per input) or an RSS beyond the limit
# fails the step; the input is kept in build-fuzz/artifacts/ and the end of
# the report is printed.
fuzz() {
	local target=$1 seconds=$2 max_len=$3 work rc
	work=$(mktemp -d)
	cp "test/fuzz/corpus/$target/"* "$work/"
	mkdir -p "$root/build-fuzz/artifacts"
	(cd "$work" && "$root/build-fuzz/fuzz_$target" -max_total_time="$seconds" \
		-max_len="$max_len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$root/build-fuzz/artifacts/$target-" "$work" >"$work.log" 2>&1)
	rc=$?
	if ((rc)); then
		grep -v '^#' "$work.log" | tail -60
	else
		grep -E '^(Done|stat::(number_of_executed_units|new_units_added|peak_rss_mb))' "$work.log"
	fi
	rm -rf "$work" "$work.log"
	return "$rc"
}
# target:max_len; the budget is split evenly between them
fuzz_targets=(http:8192 ws:4096 mustache:4096 yaml_json:4096 kubeconfig:4096 toml_config:16384 json_skim:8192)
per_target=$((fuzz_seconds / ${#fuzz_targets[@]}))
((per_target < 5)) && per_target=5
for t in "${fuzz_targets[@]}"; do
	step "fuzz ${t%%:*} (${per_target}s)" fuzz "${t%%:*}" "$per_target" "${t##*:}"
done

echo
if ((failed)); then
	echo "failed steps: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
((failed == 0))
