#!/usr/bin/env bash
# Lifecycle benchmark (bench_lifecycle.py) of the release runboat against a
# real control plane: webhook -> objects -> started (one build, bursts of 100
# at the default and a raised client rate limit), and the resync of 10,000
# builds after a restart. Starts a test control plane unless one is given,
# and stops the one it started.
# Usage: test/bench/bench_lifecycle.sh [bench_lifecycle.py options]
#   e.g. --burst 100 --singles 3 --resync 10000 --skip-resync --only-qps 200
#   RUNBOAT_TEST_CLUSTER=DIR   use this running cluster (left running; the
#                              benchmark's namespaces are deleted)
#   RUNBOAT_BIN=PATH           the runboat binary (default build/runboat)
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${RUNBOAT_PYTHON:-$HOME/.cache/runboat/venv/bin/python}
[ -x "$py" ] || py=python3
bin=${RUNBOAT_BIN:-build/runboat}
[ -x "$bin" ] || { cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build >/dev/null; }
export RUNBOAT_BIN=$(realpath "$bin")

extra=()
if [ -z "${RUNBOAT_TEST_CLUSTER:-}" ]; then
	dir=$(mktemp -d /tmp/runboat-bench-cluster.XXXXXX)
	trap 'test/cluster/cluster.sh stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
	# kube-controller-manager's own client rate limit (20/s by default) would
	# take ~15 minutes to process 10,000 new Deployments before the resync
	# RUNBOAT_AUDIT: an audit log, from which runboat's API requests are counted
	# RUNBOAT_WATCH_CACHE: kube-apiserver's watch cache, on as in real clusters
	# (the test suite's clusters have it off, for deterministic 410s)
	RUNBOAT_WATCH_CACHE=${RUNBOAT_WATCH_CACHE:-true} RUNBOAT_AUDIT=1 \
		RUNBOAT_KCM_ARGS="--kube-api-qps=500 --kube-api-burst=1000 ${RUNBOAT_KCM_ARGS:-}" \
		test/cluster/cluster.sh start "$dir" >/dev/null
	export RUNBOAT_TEST_CLUSTER=$dir
	# the whole cluster goes away; its kube-controller-manager is ours to pause
	extra=(--no-cleanup --pause-kcm)
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$py" test/bench/bench_lifecycle.py "${extra[@]}" "$@"
