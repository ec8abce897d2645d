#!/usr/bin/env bash
# Test Kubernetes control plane for runboat: etcd + kube-apiserver +
# kube-controller-manager + podsim (fake node / pod phases), all built from Go
# modules and listening on 127.0.0.1 only. See README.md beside this file.
#
#   cluster.sh build                      build (cached) binaries, print their dir
#   cluster.sh bindir                     print the binary dir (no build)
#   cluster.sh start DIR                  start a cluster with its state in DIR
#   cluster.sh stop DIR                   stop it; verify nothing is left
#   cluster.sh status DIR                 show what runs
#   cluster.sh kill-apiserver DIR [SIG]   kill kube-apiserver (default SIGKILL)
#   cluster.sh start-apiserver DIR        start it again on the same port, wait ready
#   cluster.sh restart-apiserver DIR      both
#   cluster.sh kill DIR NAME [SIG] / start-component DIR NAME   same, any component
#                                         (etcd kube-apiserver kube-controller-manager podsim)
#   cluster.sh compact DIR                compact etcd to its current revision
# RUNBOAT_AUDIT=1 at start: kube-apiserver writes an audit log (DIR/audit.log,
# level Metadata, the admin user's requests only)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${RUNBOAT_CACHE:-$HOME/.cache/runboat}
export GOMODCACHE=${GOMODCACHE:-$CACHE/gomod}
export GOCACHE=${GOCACHE:-$CACHE/gobuild}
export PATH=/usr/local/go/bin:$PATH
GO=${GO:-go}
NODE_NAME=podsim-node
COMPONENTS=(etcd kube-apiserver kube-controller-manager podsim) # start order
BINARIES=(etcd etcdcompact kube-apiserver kube-controller-manager podsim)

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
STARTING=
die() {
  log "ERROR: $*"
  if [ -n "$STARTING" ]; then
    STARTING=
    log "start failed: stopping what was started (state and logs stay in $D)"
    cmd_stop "$D" || true
  fi
  exit 1
}

# ---------------------------------------------------------------- build ----

src_hash() {
  (
    cd "$HERE"
    "$GO" version
    find go.mod go.sum cmd -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort |
      while read -r f; do printf '%s ' "$f"; sha256sum <"$f"; done
  ) | sha256sum | cut -c1-16
}

bindir() { echo "$CACHE/cluster-bin/$(src_hash)"; }

cmd_build() {
  local dir t0 t1
  dir=$(bindir)
  if [ -f "$dir/.complete" ]; then
    log "binaries up to date in $dir (cached)"
    echo "$dir"
    return
  fi
  mkdir -p "$CACHE/cluster-bin"
  # one build at a time on this machine (CI and developers share the cache)
  exec 9>"$CACHE/cluster-bin/.lock"
  flock 9
  if [ -f "$dir/.complete" ]; then
    log "binaries built meanwhile in $dir"
    echo "$dir"
    return
  fi
  log "building ${BINARIES[*]} into $dir (cold: ~30 min on 2 cores; warm: seconds)"
  t0=$(date +%s)
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  local pkgs=()
  for b in "${BINARIES[@]}"; do pkgs+=("./cmd/$b"); done
  (cd "$HERE" && GOFLAGS=-mod=readonly "$GO" build -ldflags='-s -w' -o "$dir.tmp/" "${pkgs[@]}")
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  touch "$dir/.complete"
  # keep the 3 most recent binary sets (~280 MB each)
  ls -1dt "$CACHE"/cluster-bin/*/ 2>/dev/null | tail -n +4 | while read -r old; do
    log "pruning old binaries $old"
    rm -rf "$old"
  done
  t1=$(date +%s)
  log "build done in $((t1 - t0))s; $(du -sh "$dir" | cut -f1) of binaries"
  echo "$dir"
}

# ---------------------------------------------------------------- helpers ----

free_ports() { # N -> N distinct free ports on 127.0.0.1
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
EOF
}

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

pid_of() { cat "$D/pids/$1.pid" 2>/dev/null || true; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# curl as admin (client certificate)
acurl() {
  curl -sS --max-time 10 --cacert "$D/pki/ca.crt" --cert "$D/pki/admin.crt" --key "$D/pki/admin.key" "$@"
}

wait_for() { # DESCRIPTION TIMEOUT_S COMPONENT_TO_WATCH cmd...
  local what=$1 timeout=$2 comp=$3; shift 3
  local deadline=$(($(date +%s) + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$comp" ] && ! alive "$(pid_of "$comp")"; then
      tail -n 30 "$D/logs/$comp.log" >&2 || true
      die "$comp exited while waiting for $what (log: $D/logs/$comp.log)"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "timeout (${timeout}s) waiting for $what"
    sleep 0.2
  done
}

apiserver_ready() { [ "$(acurl "$APISERVER_URL/readyz")" = ok ]; }

start_component() { # NAME: run DIR/run/NAME.sh in the background
  local name=$1 pid
  if alive "$(pid_of "$name")"; then
    log "$name already running (pid $(pid_of "$name"))"
    return
  fi
  rm -f "$D/pids/$name.pid"
  # the child writes its own pid, then execs (same pid) into the component
  setsid nohup bash -c 'echo $$ >"$1"; exec bash "$2"' _ "$D/pids/$name.pid" "$D/run/$name.sh" \
    >>"$D/logs/$name.log" 2>&1 </dev/null &
  for _ in $(seq 1 50); do [ -s "$D/pids/$name.pid" ] && break; sleep 0.05; done
  pid=$(pid_of "$name")
  log "$name started (pid $pid)"
}

kill_component() { # NAME [SIGNAL]
  local name=$1 sig=${2:-TERM} pid i
  pid=$(pid_of "$name")
  if ! alive "$pid"; then
    rm -f "$D/pids/$name.pid"
    return
  fi
  kill -s "$sig" "$pid" 2>/dev/null || true
  case "$sig" in STOP | SIGSTOP | CONT | SIGCONT)
    log "$name (pid $pid) sent SIG${sig#SIG}"
    return ;;
  esac
  kill -s CONT "$pid" 2>/dev/null || true # a stopped (SIGSTOP) process must see the signal
  for i in $(seq 1 100); do # 10s grace
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name (pid $pid) ignored SIG$sig for 10s; SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$D/pids/$name.pid"
  log "$name stopped"
}

load_env() {
  D=$(cd "$1" 2>/dev/null && pwd) || die "no cluster dir $1"
  [ -f "$D/env" ] || die "$D/env missing: not a cluster dir (start it first)"
  # shellcheck disable=SC1091
  . "$D/env"
}

# ---------------------------------------------------------------- pki ----

gen_pki() {
  local p=$D/pki
  mkdir -p "$p"
  cd "$p"
  local o="-sha256 -days 3650"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt $o -subj "/CN=runboat-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  # leaf NAME SUBJECT EXT
  leaf() {
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" $o -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
  }
  leaf apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  leaf admin "/O=system:masters/CN=runboat-admin" "$client"
  leaf kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  leaf podsim "/O=system:masters/CN=podsim" "$client"
  leaf apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  chmod 600 ./*.key
  cd - >/dev/null
}

write_kubeconfig() { # FILE USER (cert|token) CRED...
  local f=$1 user=$2 kind=$3 authinfo
  if [ "$kind" = cert ]; then
    authinfo="    client-certificate-data: $(base64 -w0 <"$4")
    client-key-data: $(base64 -w0 <"$5")"
  else
    authinfo="    token: $4"
  fi
  cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: runboat-test
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 <"$D/pki/ca.crt")
users:
- name: $user
  user:
$authinfo
contexts:
- name: runboat-test
  context:
    cluster: runboat-test
    user: $user
    namespace: default
current-context: runboat-test
EOF
  chmod 600 "$f"
}

# ---------------------------------------------------------------- start ----

cmd_start() {
  [ $# -ge 1 ] || die "usage: cluster.sh start DIR"
  D=$(abs_dir "$1")
  if [ -f "$D/env" ]; then
    for c in "${COMPONENTS[@]}"; do
      alive "$(pid_of "$c")" && die "a cluster is already running in $D (cluster.sh stop $D)"
    done
  fi
  local t0 BIN
  t0=$(date +%s.%N)
  BIN=$(cmd_build)
  mkdir -p "$D/logs" "$D/pids" "$D/run" "$D/etcd"
  chmod 700 "$D/etcd"
  gen_pki

  local ports
  read -r ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT KUBELET_PORT <<<"$(free_ports 5)"
  APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
  ETCD_URL=http://127.0.0.1:$ETCD_PORT
  ADMIN_TOKEN=$(openssl rand -hex 24)
  LIMITED_TOKEN=$(openssl rand -hex 24)
  # token,user,uid,"group1,group2"
  cat >"$D/tokens.csv" <<EOF
$ADMIN_TOKEN,runboat-admin-token,uid-admin,"system:masters"
$LIMITED_TOKEN,limited,uid-limited
EOF
  chmod 600 "$D/tokens.csv"

  write_kubeconfig "$D/kubeconfig" runboat-admin cert "$D/pki/admin.crt" "$D/pki/admin.key"
  write_kubeconfig "$D/kubeconfig-token" runboat-admin-token token "$ADMIN_TOKEN"
  write_kubeconfig "$D/kubeconfig-limited" limited token "$LIMITED_TOKEN"
  write_kubeconfig "$D/kube-controller-manager.kubeconfig" system:kube-controller-manager cert \
    "$D/pki/kube-controller-manager.crt" "$D/pki/kube-controller-manager.key"
  write_kubeconfig "$D/podsim.kubeconfig" podsim cert "$D/pki/podsim.crt" "$D/pki/podsim.key"

  local watch_cache=${RUNBOAT_WATCH_CACHE:-false}

  # RUNBOAT_AUDIT=1: an audit log of the admin user's requests (runboat's and
  # the tests'), level Metadata (verb, resource, user agent, code; no bodies),
  # in DIR/audit.log; benchmarks count runboat's calls from it
  local audit_args=
  if [ "${RUNBOAT_AUDIT:-0}" = 1 ]; then
    cat >"$D/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [runboat-admin, runboat-admin-token]
- level: None
EOF
    audit_args="--audit-policy-file=$D/audit-policy.yaml --audit-log-path=$D/audit.log --audit-log-mode=blocking --audit-log-maxsize=0"
  fi

  cat >"$D/run/etcd.sh" <<EOF
exec "$BIN/etcd" --name default --data-dir "$D/etcd" \\
  --listen-client-urls $ETCD_URL --advertise-client-urls $ETCD_URL \\
  --listen-peer-urls http://127.0.0.1:$ETCD_PEER_PORT \\
  --initial-advertise-peer-urls http://127.0.0.1:$ETCD_PEER_PORT \\
  --initial-cluster default=http://127.0.0.1:$ETCD_PEER_PORT \\
  --unsafe-no-fsync --log-level warn ${RUNBOAT_ETCD_ARGS:-}
EOF
  cat >"$D/run/kube-apiserver.sh" <<EOF
exec "$BIN/kube-apiserver" \\
  --etcd-servers=$ETCD_URL \\
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=$APISERVER_PORT \\
  --tls-cert-file="$D/pki/apiserver.crt" --tls-private-key-file="$D/pki/apiserver.key" \\
  --client-ca-file="$D/pki/ca.crt" --token-auth-file="$D/tokens.csv" \\
  --authorization-mode=Node,RBAC --anonymous-auth=false \\
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \\
  --service-account-key-file="$D/pki/sa.pub" --service-account-signing-key-file="$D/pki/sa.key" \\
  --service-cluster-ip-range=10.0.0.0/16 --endpoint-reconciler-type=none \\
  --kubelet-preferred-address-types=InternalIP \\
  --kubelet-client-certificate="$D/pki/apiserver-kubelet-client.crt" \\
  --kubelet-client-key="$D/pki/apiserver-kubelet-client.key" \\
  --watch-cache=$watch_cache \\
  --v=1 $audit_args ${RUNBOAT_APISERVER_ARGS:-}
EOF
  cat >"$D/run/kube-controller-manager.sh" <<EOF
exec "$BIN/kube-controller-manager" \\
  --kubeconfig="$D/kube-controller-manager.kubeconfig" \\
  --bind-address=127.0.0.1 --secure-port=$KCM_PORT \\
  --leader-elect=false --use-service-account-credentials=true \\
  --service-account-private-key-file="$D/pki/sa.key" --root-ca-file="$D/pki/ca.crt" \\
  --cluster-signing-cert-file="$D/pki/ca.crt" --cluster-signing-key-file="$D/pki/ca.key" \\
  --controllers='*' --v=1 ${RUNBOAT_KCM_ARGS:-}
EOF
  cat >"$D/run/podsim.sh" <<EOF
exec "$BIN/podsim" --kubeconfig="$D/podsim.kubeconfig" --node-name=$NODE_NAME \\
  --kubelet-port=$KUBELET_PORT ${RUNBOAT_PODSIM_ARGS:-}
EOF

  cat >"$D/env" <<EOF
# runboat test cluster; source me
export RUNBOAT_CLUSTER_DIR='$D'
export RUNBOAT_CLUSTER_BIN='$BIN'
export KUBECONFIG='$D/kubeconfig'
export KUBECONFIG_TOKEN='$D/kubeconfig-token'
export KUBECONFIG_LIMITED='$D/kubeconfig-limited'
export APISERVER_URL='$APISERVER_URL'
export APISERVER_PORT=$APISERVER_PORT
export ETCD_URL='$ETCD_URL'
export ETCD_PORT=$ETCD_PORT
export KCM_PORT=$KCM_PORT
export KUBELET_PORT=$KUBELET_PORT
export CA_CERT='$D/pki/ca.crt'
export ADMIN_CERT='$D/pki/admin.crt'
export ADMIN_KEY='$D/pki/admin.key'
export ADMIN_TOKEN='$ADMIN_TOKEN'
export LIMITED_TOKEN='$LIMITED_TOKEN'
export PODSIM_NODE='$NODE_NAME'
export PIDFILE_ETCD='$D/pids/etcd.pid'
export PIDFILE_APISERVER='$D/pids/kube-apiserver.pid'
export PIDFILE_KCM='$D/pids/kube-controller-manager.pid'
export PIDFILE_PODSIM='$D/pids/podsim.pid'
EOF
  cat >"$D/tokens.txt" <<EOF
# bearer tokens (see tokens.csv for the apiserver's --token-auth-file)
admin   (group system:masters): $ADMIN_TOKEN
limited (no cluster rights):    $LIMITED_TOKEN
EOF

  STARTING=1
  start_component etcd
  wait_for "etcd health" 60 etcd curl -sf --max-time 2 "$ETCD_URL/health"
  start_component kube-apiserver
  wait_for "kube-apiserver /readyz" 120 kube-apiserver apiserver_ready
  start_component kube-controller-manager
  start_component podsim
  wait_for "namespace default" 60 kube-apiserver acurl -f "$APISERVER_URL/api/v1/namespaces/default"
  wait_for "serviceaccount default/default" 120 kube-controller-manager \
    acurl -f "$APISERVER_URL/api/v1/namespaces/default/serviceaccounts/default"
  wait_for "node $NODE_NAME Ready" 60 podsim node_ready
  for c in "${COMPONENTS[@]}"; do
    alive "$(pid_of "$c")" || die "$c died during start (log: $D/logs/$c.log)"
  done
  STARTING=
  log "cluster up in $(python3 -c "import time;print(round(time.time()-$t0,1))")s: $APISERVER_URL"
  echo "$D/env"
}

node_ready() {
  acurl -f "$APISERVER_URL/api/v1/nodes/$NODE_NAME" | python3 -c '
import json,sys
n=json.load(sys.stdin)
ok=[c for c in n["status"].get("conditions",[]) if c["type"]=="Ready" and c["status"]=="True"]
sys.exit(0 if ok else 1)'
}

# ---------------------------------------------------------------- stop ----

# PIDs of processes whose command line mentions DIR (our components, and only
# ours: every one of them gets paths inside the unique DIR as arguments).
pids_in_dir() {
  local p cl
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] && continue
    cl=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
    case "$cl" in
      *"$D/"*) case "$cl" in *cluster.sh*) ;; *) echo "$p" ;; esac ;;
    esac
  done
}

cmd_stop() {
  [ $# -ge 1 ] || die "usage: cluster.sh stop DIR"
  D=$(cd "$1" 2>/dev/null && pwd) || { log "no dir $1; nothing to stop"; return 0; }
  local i c left
  # clients first (in parallel), etcd last
  for c in podsim kube-controller-manager kube-apiserver; do
    kill_component "$c" TERM &
  done
  wait
  kill_component etcd TERM
  left=$(pids_in_dir)
  if [ -n "$left" ]; then
    log "stray processes of $D: $left; SIGKILL"
    # shellcheck disable=SC2086
    kill -9 $left 2>/dev/null || true
    sleep 0.5
  fi
  left=$(pids_in_dir)
  [ -z "$left" ] || die "processes still running for $D: $left"
  log "cluster in $D stopped; nothing left running"
}

cmd_status() {
  load_env "$1"
  local c pid
  for c in "${COMPONENTS[@]}"; do
    pid=$(pid_of "$c")
    if alive "$pid"; then echo "$c running pid $pid"; else echo "$c not running"; fi
  done
  if apiserver_ready; then echo "apiserver ready at $APISERVER_URL"; else echo "apiserver not ready"; fi
}

cmd_kill() { # DIR NAME [SIG]
  load_env "$1"
  kill_component "$2" "${3:-KILL}"
}

cmd_start_component() { # DIR NAME
  load_env "$1"
  start_component "$2"
  case "$2" in
    kube-apiserver) wait_for "kube-apiserver /readyz" 120 kube-apiserver apiserver_ready ;;
    etcd) wait_for "etcd health" 60 etcd curl -sf --max-time 2 "$ETCD_URL/health" ;;
  esac
}

cmd_compact() {
  load_env "$1"
  local rev
  rev=$("$RUNBOAT_CLUSTER_BIN/etcdcompact" "$ETCD_URL")
  log "etcd compacted to revision $rev"
  echo "$rev"
}

# ---------------------------------------------------------------- main ----

cmd=${1:-}
shift || true
case "$cmd" in
  build) cmd_build ;;
  bindir) bindir ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  status) cmd_status "$@" ;;
  kill) cmd_kill "$@" ;;
  start-component) cmd_start_component "$@" ;;
  kill-apiserver) cmd_kill "$1" kube-apiserver "${2:-KILL}" ;;
  start-apiserver) cmd_start_component "$1" kube-apiserver ;;
  restart-apiserver)
    cmd_kill "$1" kube-apiserver "${2:-KILL}"
    cmd_start_component "$1" kube-apiserver
    ;;
  compact) cmd_compact "$@" ;;
  *)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
