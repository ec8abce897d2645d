#!/usr/bin/env bash
# WebSocket fan-out benchmark (bench_ws.py) of the release runboat against a
# real control plane: 1,000 subscribers of /api/v1/ws, 100 build updates/s
# for 30 s; delivery latency, runboat's CPU and memory. Starts a test control
# plane unless one is given, and stops the one it started.
# Usage: test/bench/bench_ws.sh [bench_ws.py options]
#   e.g. --subs 1000 --rate 100 --duration 30 --builds 100 --procs 2 --filtered
#   RUNBOAT_TEST_CLUSTER=DIR   use this running cluster (left running; the
#                              benchmark's namespace is deleted)
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
"$py" test/bench/bench_ws.py "${extra[@]}" "$@"
