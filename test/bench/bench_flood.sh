#!/usr/bin/env bash
# Hostile-client floods (bench_flood.py) against the release runboat on a
# real control plane: pipelining without reading, a WebSocket ping flood
# without reading, 1,024 idle sockets, big unsigned webhooks, slow bodies.
# Prints runboat's RSS and another client's /healthz latency under each.
# Starts a test control plane unless one is given, and stops the one it
# started.
# Usage: test/bench/bench_flood.sh [bench_flood.py options]
#   e.g. --duration 8 --conns 100 --only pipeline,ping
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
	test/cluster/cluster.sh start "$dir" >/dev/null
	export RUNBOAT_TEST_CLUSTER=$dir
	extra=(--no-cleanup) # the whole cluster goes away
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$py" test/bench/bench_flood.py "${extra[@]}" "$@"
