#!/usr/bin/env bash
# Soak benchmark (soak.py): MINUTES (default 30; --minutes N or SOAK_MINUTES)
# of random pushes, PR events, start/stop clicks and WebSocket subscribers
# against the release runboat, through the fault-injecting proxy
# (test/faultproxy), with faults injected (quiet spells, idle gaps longer than
# the apiserver's idle time-out, apiserver restarts and freezes, proxy
# blackholes, resets and delays), checking the invariants all along.
# Starts a private control plane unless one is given (the soak restarts and
# freezes its apiserver), and stops the one it started.
# Usage: test/bench/soak.sh [soak.py options]   e.g. --minutes 2 --seed 1
#   RUNBOAT_TEST_CLUSTER=DIR   use this running cluster (never a shared one)
#   RUNBOAT_BIN=PATH           the runboat binary (default build/runboat)
#   RUNBOAT_WATCH_CACHE=true   the control plane it starts has kube-apiserver's watch cache
#                              (periodic bookmarks, as in real clusters)
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${RUNBOAT_PYTHON:-$HOME/.cache/runboat/venv/bin/python}
[ -x "$py" ] || py=python3
bin=${RUNBOAT_BIN:-build/runboat}
[ -x "$bin" ] || { cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build >/dev/null; }
export RUNBOAT_BIN=$(realpath "$bin")

if [ -z "${RUNBOAT_TEST_CLUSTER:-}" ]; then
	dir=$(mktemp -d /tmp/runboat-soak-cluster.XXXXXX)
	trap 'test/cluster/cluster.sh stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
	test/cluster/cluster.sh start "$dir" >/dev/null
	export RUNBOAT_TEST_CLUSTER=$dir
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$py" test/bench/soak.py "$@"
