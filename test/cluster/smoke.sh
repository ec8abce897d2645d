#!/usr/bin/env bash
# Smoke test of the test control plane: start a cluster in a temp dir, run
# smoke.py against it, stop it, verify nothing is left running.
# Exit status non-zero on any failure. Prints "N passed, N failed" at the end.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=$(mktemp -d /tmp/runboat-smoke.XXXXXX)
KEEP=${KEEP:-} # KEEP=1: keep DIR (logs) even on success
rc=0

cleanup() {
  "$HERE/cluster.sh" stop "$DIR" || rc=1
  # nothing of ours may be left: any process whose command line names DIR
  left=
  for p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" in *"$DIR/"*) left="$left ${p#/proc/}" ;; esac
  done
  if [ -n "$left" ]; then
    echo "FAIL: processes left: $left" >&2
    rc=1
  fi
  if [ "$rc" -eq 0 ] && [ -z "$KEEP" ]; then
    rm -rf "$DIR"
  else
    echo "cluster state and logs kept in $DIR" >&2
  fi
  if [ "$rc" -eq 0 ]; then echo "smoke: 1 passed, 0 failed"; else echo "smoke: 0 passed, 1 failed"; fi
  exit "$rc"
}
trap cleanup EXIT

"$HERE/cluster.sh" build >/dev/null || { rc=1; exit 1; }
t0=$(date +%s)
env_file=$("$HERE/cluster.sh" start "$DIR") || { rc=1; exit 1; }
echo "cluster started in $(($(date +%s) - t0))s"
# shellcheck disable=SC1090
. "$env_file"
python3 "$HERE/smoke.py" || rc=1
