#!/usr/bin/env bash
# Informer benchmark against a real kube-apiserver: builds bench_informer
# (release build, no sanitizers, in build-bench/), starts a test control plane
# unless one is given, runs the benchmark, and stops the cluster it started.
# Usage: test/bench/bench_informer.sh [OBJECTS [PATCHES]]   (10000, 2000)
#   RUNBOAT_TEST_CLUSTER=DIR   use this running cluster (left running)
#   RUNBOAT_WATCH_CACHE=true   start the cluster with kube-apiserver's watch cache
set -euo pipefail
cd "$(dirname "$0")/../.."
objects=${1:-10000}
patches=${2:-2000}
build=${RUNBOAT_BENCH_BUILD:-build-bench}

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target bench_informer >/dev/null

started=""
if [ -z "${RUNBOAT_TEST_CLUSTER:-}" ]; then
	dir=$(mktemp -d /tmp/runboat-bench-cluster.XXXXXX)
	trap 'test/cluster/cluster.sh stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
	test/cluster/cluster.sh start "$dir" >/dev/null
	export RUNBOAT_TEST_CLUSTER=$dir
	started=1
fi
echo "== informer benchmark: $objects Deployments, $patches patches (cluster ${RUNBOAT_TEST_CLUSTER}${started:+, started here})"
"$build/bench/bench_informer" "$objects" "$patches"
