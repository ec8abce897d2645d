#!/usr/bin/env bash
# Runs runboat.
#
#   scripts/run.sh                   the demo: with no KUBECONFIG, builds and
#                                    starts the local control plane first
#                                    (test/cluster), then runs runboat with a
#                                    demo configuration, feeds it a few signed
#                                    GitHub webhooks and prints the dashboard
#                                    URL. Ctrl-C stops everything.
#   KUBECONFIG=... scripts/run.sh    the same demo on that cluster (namespace
#                                    $RUNBOAT_NAMESPACE, default runboat-demo,
#                                    created with kubectl when missing).
#   scripts/run.sh --config FILE     runboat with your configuration.
#
# Environment: RUNBOAT_PORT (default 8000), RUNBOAT_NAMESPACE.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="/usr/local/go/bin:$PATH"

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target runboat >/dev/null

if [ $# -gt 0 ]; then
	exec build/runboat "$@"
fi

cache=${RUNBOAT_CACHE:-$HOME/.cache/runboat}
demo=$cache/demo
port=${RUNBOAT_PORT:-8000}
ns=${RUNBOAT_NAMESPACE:-runboat-demo}
secret=demo-webhook-secret
# the fake GitHub below checks this token as GitHub would: statuses and
# the periodic sync are authorized, and runboat has no token to warn about
gh_token=demo-github-token
venv=$cache/venv/bin/python
mkdir -p "$demo"
pids=()
cluster=""

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "$cluster" ]; then
		echo "stopping the local control plane..."
		test/cluster/cluster.sh stop "$cluster" >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A Kubernetes cluster: the user's, or the local control plane.
if [ -n "${KUBECONFIG:-}" ]; then
	kubeconfig=$KUBECONFIG
	echo "using the cluster of KUBECONFIG=$kubeconfig, namespace $ns"
else
	echo "no KUBECONFIG: building the local control plane (the first time takes 10 to 25 minutes)..."
	test/cluster/cluster.sh build >/dev/null
	cluster=$demo/cluster
	test/cluster/cluster.sh stop "$cluster" >/dev/null 2>&1 || true
	rm -rf "$cluster"
	test/cluster/cluster.sh start "$cluster" >/dev/null
	kubeconfig=$cluster/kubeconfig
fi

# The namespace, and the pod simulator's pace (local cluster only: a real
# cluster runs real pods).
"$venv" - "$kubeconfig" "$ns" "${cluster:+podsim}" <<'EOF'
import sys
sys.path.insert(0, "test/e2e")
from kube_helpers import Kube
import os, pathlib
kubeconfig, ns, podsim = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""
if podsim:
    k = Kube(pathlib.Path(kubeconfig).parent)
    k.ensure_namespace(ns)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "podsim", "namespace": ns},
          "data": {"delay_ms": "6000"}}
    r = k.apply(cm)
    assert r.status_code in (200, 201), r.text
EOF

# On the user's cluster, the namespace is made with the user's own kubectl
# (runboat itself only has rights inside it).
if [ -z "$cluster" ]; then
	if ! command -v kubectl >/dev/null; then
		echo "kubectl not found: namespace $ns must exist already" >&2
	elif ! kubectl --kubeconfig "$kubeconfig" get namespace "$ns" >/dev/null 2>&1; then
		kubectl --kubeconfig "$kubeconfig" create namespace "$ns"
	fi
fi

# A fake GitHub (heads for the trigger routes and the sync, commit statuses
# shown in its log), that wants the demo token.
"$venv" test/e2e/fake_github.py --port 0 --token "$gh_token" --exit-on-eof \
	> "$demo/github.log" 2>&1 < <(sleep infinity) &
pids+=($!)
for _ in $(seq 50); do grep -q "listening on" "$demo/github.log" 2>/dev/null && break; sleep 0.1; done
gh_port=$(sed -n 's/.*listening on \([0-9]*\).*/\1/p' "$demo/github.log" | head -1)

cat >"$demo/runboat.toml" <<TOML
# The demo configuration written by scripts/run.sh (see runboat.toml.sample).
[server]
listen = "127.0.0.1:$port"
base_url = "http://127.0.0.1:$port"

[admin]
user = "admin"
password = "admin"

[limits]
max_initializing = 2
max_started = 2
max_deployed = 10
start_after_init = false

[kubernetes]
namespace = "$ns"
kubeconfig = "$kubeconfig"

[build]
domain = "runboat.localhost"
kubefiles = "$root/kubefiles"

[build.env]
PGHOST = "postgres"
PGUSER = "odoo"

[github]
api_url = "http://127.0.0.1:$gh_port"
token = "$gh_token"
webhook_secret = "$secret"

[[repos]]
repo = ".*"
branch = ".*"
image = "ghcr.io/oca/oca-ci/py3.10-odoo16.0:latest"
TOML

build/runboat --config "$demo/runboat.toml" 2>&1 | tee "$demo/runboat.log" &
pids+=($!)
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
	sleep 0.2
done

# GitHub's own example payloads, signed with the demo secret; the fake
# GitHub is told the same heads first, so that the sync agrees with them.
"$venv" - "$port" "$secret" "$gh_port" <<'EOF'
import hashlib, hmac, json, os, sys, urllib.request
port, secret, gh_port = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
base = os.environ.get("RUNBOAT_SHARED", "../shared") + "/fixtures/github-webhooks/"
def control(path, data):
    req = urllib.request.Request(f"http://127.0.0.1:{gh_port}/_control/{path}", method="PUT",
        data=json.dumps(data).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
def send(event, payload):
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/webhooks/github", data=body,
        headers={"X-GitHub-Event": event, "X-Hub-Signature-256": sig, "Content-Type": "application/json"})
    try:
        print(event, urllib.request.urlopen(req).read().decode())
    except Exception as e:
        print(event, e)
push = json.load(open(base + "push-with-new-branch.payload.json"))
pr = json.load(open(base + "pull_request-opened.payload.json"))
branches = ["16.0", "17.0", "feature/login-page"]
heads = {b: hashlib.sha1(b.encode()).hexdigest() for b in branches}
repo = push["repository"]["full_name"]
control("branches", [{"repo": repo, "branch": b, "sha": s} for b, s in heads.items()])
control("pulls", [{"repo": pr["repository"]["full_name"], "number": pr["number"],
                   "head_sha": pr["pull_request"]["head"]["sha"],
                   "base_ref": pr["pull_request"]["base"]["ref"],
                   "head_ref": pr["pull_request"]["head"]["ref"]}])
for branch in branches:
    send("push", dict(push, ref="refs/heads/" + branch, after=heads[branch]))
send("pull_request", pr)
EOF

cat <<MSG

  runboat is running: http://127.0.0.1:$port/
  builds initialize (about 6 seconds each, two at a time), then stop; press Start on one.
  admin: admin / admin; logs in $demo; Ctrl-C stops everything.

MSG
wait "${pids[-1]}"
