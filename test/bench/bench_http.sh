#!/usr/bin/env bash
# Requests per second and latency percentiles of /healthz over keep-alive
# connections (wrk), against the release build. runboat runs on one core
# (its one loop, pinned with taskset), wrk on the other.
# Usage: test/bench/bench_http.sh [duration_seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10}
conns=${2:-64}
bin=${RUNBOAT_BIN:-build/runboat}
[ -x "$bin" ] || { cmake -S . -B build -G Ninja >/dev/null && cmake --build build >/dev/null; }
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir "$tmp/kubefiles" && touch "$tmp/kubefiles/"{deployment,initialize,cleanup}.yaml # required by the config check
for access in true false; do
	cat >"$tmp/runboat.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
access_log = $access
max_connections = 4096
[kubernetes]
namespace = "bench"
[build]
domain = "bench.test"
TOML
	taskset -c 0 "$bin" --config "$tmp/runboat.toml" 2>"$tmp/log" >/dev/null &
	pid=$!
	for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
	echo "== /healthz, $conns keep-alive connections, ${duration}s, access log $access"
	taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" --latency "http://127.0.0.1:$port/healthz" |
		grep -E "Requests/sec|Latency|50%|75%|90%|99%|requests in|Socket errors|Non-2xx"
	echo "runboat peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
	kill -TERM "$pid"
	wait "$pid" || true
done
