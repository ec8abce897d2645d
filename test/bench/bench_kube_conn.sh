#!/usr/bin/env bash
# Connection-mode benchmark of the kube client against a real kube-apiserver:
# builds bench_kube_conn (release build, no sanitizers, in build-bench/),
# starts a test control plane unless one is given, then runs bursts of
# concurrent calls (merge PATCH / GET / server-side apply) over HTTP/2 and over
# HTTP/1.1 pools of several sizes, each without and with watches streaming
# beside them, and prints throughput, latency p50/p99/max, errors by kind and
# connections opened, with the machine load before and after. Then one round
# per mode in which one connection is silently dropped half-way (an in-process
# fault proxy: no FIN, no RST), to see how many calls one dead connection
# takes down. Takes ~20 min on a busy 2-core machine.
# Usage: test/bench/bench_kube_conn.sh [CALLS [ROUNDS [INFLIGHT]]]   (2000, 3, 100)
#   RUNBOAT_TEST_CLUSTER=DIR   use this running cluster (left running)
#   RUNBOAT_BENCH_MODES="h2 h1:32"   the modes to compare (default: h2 h1:8 h1:32 h1:100)
#   RUNBOAT_BENCH_WATCHES="0 4"      watch counts (default: 0 4)
#   RUNBOAT_BENCH_DROP=0             skip the dropped-connection rounds
set -euo pipefail
cd "$(dirname "$0")/../.."
calls=${1:-2000}
rounds=${2:-3}
inflight=${3:-100}
build=${RUNBOAT_BENCH_BUILD:-build-bench}
modes=${RUNBOAT_BENCH_MODES:-h2 h1:8 h1:32 h1:100}
watches=${RUNBOAT_BENCH_WATCHES:-0 4}

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target bench_kube_conn >/dev/null

started=""
if [ -z "${RUNBOAT_TEST_CLUSTER:-}" ]; then
	dir=$(mktemp -d /tmp/runboat-bench-cluster.XXXXXX)
	trap 'test/cluster/cluster.sh stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
	test/cluster/cluster.sh start "$dir" >/dev/null
	export RUNBOAT_TEST_CLUSTER=$dir
	started=1
fi
echo "== kube connection benchmark: $rounds rounds of $calls calls, $inflight in flight (cluster ${RUNBOAT_TEST_CLUSTER}${started:+, started here})"
echo "load before: $(uptime)"
for w in $watches; do
	for m in $modes; do
		mode=${m%%:*}
		pool=32
		[ "$m" != "$mode" ] && pool=${m#*:}
		"$build/bench/bench_kube_conn" --mode "$mode" --pool "$pool" --calls "$calls" \
			--rounds "$rounds" --inflight "$inflight" --watches "$w"
	done
done
if [ "${RUNBOAT_BENCH_DROP:-1}" != 0 ]; then
	for m in $modes; do
		mode=${m%%:*}
		pool=32
		[ "$m" != "$mode" ] && pool=${m#*:}
		"$build/bench/bench_kube_conn" --mode "$mode" --pool "$pool" --calls "$calls" \
			--rounds 1 --inflight "$inflight" --drop-one
	done
fi
echo "load after: $(uptime)"
