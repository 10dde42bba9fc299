#!/usr/bin/env bash
# A local Kubernetes control plane for the end-to-end tests (tests/cluster.rs):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (one
# fake node, edge-1), built from the Go modules in tests/cluster/ and run on
# random loopback ports with their data in a temporary directory.
#
#   .ci/cluster.sh build        build the binaries into the cache (reused when present); prints the bin dir
#   .ci/cluster.sh start        build, start, wait until ready; prints `export` lines for eval
#   .ci/cluster.sh env [DIR]    prints the `export` lines of a running control plane again
#   .ci/cluster.sh stop [DIR]   stops it and removes its directory
#   .ci/cluster.sh shell        start one, open a shell with kubectl against it, stop it on exit
#
# DIR defaults to $WM_CLUSTER_DIR. Cache: $WM_CLUSTER_CACHE (~/.cache/wm-cluster).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kit=$root/tests/cluster
cache_root=${WM_CLUSTER_CACHE:-$HOME/.cache/wm-cluster}

log() { echo "cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# The k8s.io/kubernetes version that tests/cluster/kubernetes/go.mod requires.
k8s_version() {
  local v
  v=$(awk '($1 == "k8s.io/kubernetes" && $2 ~ /^v/) { print $2 } ($1 == "require" && $2 == "k8s.io/kubernetes") { print $3 }' \
    "$kit/kubernetes/go.mod" | head -n 1)
  [ -n "$v" ] || die "no k8s.io/kubernetes version in $kit/kubernetes/go.mod"
  echo "$v"
}

# The cache key: the Kubernetes version plus a hash of everything the binaries
# are built from (our go.mod/go.sum/main.go files and the Go toolchain).
bin_dir() {
  local hash
  hash=$( (cd "$kit" && cat kubernetes/go.mod kubernetes/go.sum etcd/go.mod etcd/go.sum etcd/main.go kwok/go.mod kwok/go.sum
    go version; sed -n '/^gobuild()/,/^}/p;/^cmd_build()/,/^}/p' "$root/.ci/cluster.sh") | sha256sum | cut -c1-12)
  echo "$cache_root/$(k8s_version)-$hash/bin"
}

need_go() {
  command -v go >/dev/null 2>&1 || die "go is not installed (Go >= 1.26 is needed to build the control plane)"
}

# go build into the cache; atomic (temp name, then rename), skipped when present.
gobuild() { # module-dir out-name package ldflags
  local dir=$1 name=$2 pkg=$3 ldflags=${4:-} out
  out=$(bin_dir)
  [ -x "$out/$name" ] && return 0
  mkdir -p "$out"
  log "building $name ($pkg)"
  (cd "$kit/$dir" && CGO_ENABLED=0 nice -n 10 go build -trimpath -buildvcs=false -mod=readonly \
    -ldflags "-s -w $ldflags" -o "$out/.$name.tmp" "$pkg")
  mv "$out/.$name.tmp" "$out/$name"
}

cmd_build() {
  need_go
  local v major minor ld t
  v=$(k8s_version)
  major=${v#v}; major=${major%%.*}
  minor=${v#v*.}; minor=${minor%%.*}
  ld=""
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitCommit=unknown -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for t in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    gobuild kubernetes "$t" "k8s.io/kubernetes/cmd/$t" "$ld"
  done
  gobuild etcd etcd . ""
  gobuild kwok kwok sigs.k8s.io/kwok/cmd/kwok \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=v0.8.0"
  # Builds from other sources are not reused: drop them (~350 MB each).
  local keep d
  keep=$(dirname "$(bin_dir)")
  for d in "$cache_root"/v*-*; do
    [ "$d" = "$keep" ] || rm -rf "$d"
  done
  bin_dir
}

# Free loopback ports, all held open at once so they differ.
free_ports() { # count
  python3 - "$1" <<'PY2'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY2
}

need_tools() {
  local missing=()
  for t in openssl python3 curl; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# A per-run CA, the API server's serving certificate (IP SAN 127.0.0.1), a
# client certificate for the admin (system:masters), and the ServiceAccount
# token signing key.
make_pki() { # dir
  local d=$1/pki
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 \
      -subj "/CN=wm-cluster-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 2 \
      -extfile <(printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
        "extendedKeyUsage=serverAuth" "keyUsage=critical,digitalSignature,keyEncipherment") 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=kubernetes-admin" 2>/dev/null
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 2 \
      -extfile <(printf '%s\n' "extendedKeyUsage=clientAuth" "keyUsage=critical,digitalSignature,keyEncipherment") 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ca.srl
  )
}

write_kubeconfig() { # dir api-port
  cat >"$1/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: wm-cluster
  cluster:
    certificate-authority: $1/pki/ca.crt
    server: https://127.0.0.1:$2
users:
- name: admin
  user:
    client-certificate: $1/pki/admin.crt
    client-key: $1/pki/admin.key
contexts:
- name: wm-cluster
  context: {cluster: wm-cluster, user: admin}
current-context: wm-cluster
KC
}

# Starts one component in the background, its output in logs/NAME.log.
run() { # dir name binary args...
  local dir=$1 name=$2; shift 2
  (cd "$dir" && exec setsid "$@" </dev/null >"$dir/logs/$name.log" 2>&1) &
  echo $! >"$dir/pids/$name"
}

alive_or_die() { # dir name
  local pid
  pid=$(cat "$1/pids/$2")
  kill -0 "$pid" 2>/dev/null && return 0
  log "$2 exited; last lines of $1/logs/$2.log:"
  tail -n 30 "$1/logs/$2.log" >&2
  return 1
}

# Polls `check` until it succeeds, while every component started so far lives.
wait_until() { # dir what seconds check...
  local dir=$1 what=$2 limit=$3; shift 3
  local deadline=$((SECONDS + limit)) p
  until "$@" >/dev/null 2>&1; do
    for p in "$dir"/pids/*; do alive_or_die "$dir" "$(basename "$p")" || return 1; done
    if [ $SECONDS -ge $deadline ]; then log "timed out after ${limit}s waiting for $what"; return 1; fi
    sleep 0.2
  done
}

print_env() { # dir
  cat "$1/env"
}

cmd_start() {
  need_tools
  local bin dir ports etcd_port peer_port api_port
  bin=$(cmd_build)
  dir=$(mktemp -d "${TMPDIR:-/tmp}/wm-cluster.XXXXXX")
  mkdir -p "$dir/logs" "$dir/pids" "$dir/etcd"
  # stop everything started so far if anything below fails
  trap 'cmd_stop "$dir" >/dev/null 2>&1 || true' ERR
  read -r etcd_port peer_port api_port < <(free_ports 3)
  make_pki "$dir"
  write_kubeconfig "$dir" "$api_port"
  # Audit: every request of a ServiceAccount outside kube-system (the managers
  # under test), one JSON line each; the tests count and attribute calls here.
  cat >"$dir/audit-policy.yaml" <<'AUDIT'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ["system:serviceaccounts:kube-system"]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
AUDIT
  local kc=$dir/kubeconfig pki=$dir/pki k="$bin/kubectl --kubeconfig $dir/kubeconfig"

  run "$dir" etcd "$bin/etcd" --name=default --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="default=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync --log-level=warn
  wait_until "$dir" etcd 60 curl -fsS "http://127.0.0.1:$etcd_port/health"

  run "$dir" kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --service-cluster-ip-range=10.43.0.0/16 --endpoint-reconciler-type=none \
    --audit-policy-file="$dir/audit-policy.yaml" --audit-log-path="$dir/logs/audit.jsonl" \
    --audit-log-mode=blocking --audit-log-format=json \
    --allow-privileged=true --profiling=false --v=1
  wait_until "$dir" kube-apiserver 120 $k get --raw /readyz

  run "$dir" kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$kc" --secure-port=0 \
    --use-service-account-credentials=true \
    --root-ca-file="$pki/ca.crt" --service-account-private-key-file="$pki/sa.key" \
    --cluster-name=wm-cluster --node-monitor-grace-period=3m20s \
    --concurrent-deployment-syncs=5 --profiling=false --v=1
  run "$dir" kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig="$kc" --secure-port=0 --profiling=false --v=1
  run "$dir" kwok "$bin/kwok" \
    --kubeconfig="$kc" --config="$kit/kwok/stages.yaml" --manage-all-nodes=true \
    --node-ip=192.168.50.10 --cidr=10.42.0.0/24 --v=1

  # One node, labelled as K3S labels its single server node.
  $k apply -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: edge-1
  labels:
    kubernetes.io/hostname: edge-1
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/control-plane: "true"
    node-role.kubernetes.io/master: "true"
    node.kubernetes.io/instance-type: k3s
  annotations:
    kwok.x-k8s.io/node: fake
NODE
  wait_until "$dir" "the controller manager's Lease" 120 $k -n kube-system get lease kube-controller-manager
  wait_until "$dir" "the scheduler's Lease" 120 $k -n kube-system get lease kube-scheduler
  wait_until "$dir" "node edge-1 Ready" 120 sh -c \
    "$k get node edge-1 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  wait_until "$dir" "the default ServiceAccount" 120 $k -n default get serviceaccount default

  cat >"$dir/env" <<ENV
export WM_CLUSTER_DIR=$dir
export KUBECONFIG=$kc
export WM_CLUSTER_API_URL=https://127.0.0.1:$api_port
export WM_CLUSTER_CA_FILE=$pki/ca.crt
export WM_CLUSTER_NODE=edge-1
export WM_CLUSTER_AUDIT_LOG=$dir/logs/audit.jsonl
export PATH=$bin:\$PATH
ENV
  trap - ERR
  log "control plane up in $dir (API https://127.0.0.1:$api_port, $(($SECONDS))s)"
  print_env "$dir"
}

cmd_stop() { # [dir]
  local dir=${1:-${WM_CLUSTER_DIR:-}} p pid name
  [ -n "$dir" ] || die "stop: no directory (pass it or set WM_CLUSTER_DIR)"
  [ -d "$dir/pids" ] || { log "stop: $dir is not a running control plane"; return 0; }
  # reverse start order: kwok and controllers first, etcd last
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    p=$dir/pids/$name
    [ -f "$p" ] || continue
    pid=$(cat "$p")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}

cmd_shell() {
  local env
  env=$(cmd_start)
  eval "$env"
  trap 'cmd_stop "$WM_CLUSTER_DIR"' EXIT
  log "KUBECONFIG=$KUBECONFIG; kubectl is on PATH; exit the shell to stop the control plane"
  "${SHELL:-bash}" -i || true
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start ;;
  env) d=${2:-${WM_CLUSTER_DIR:-}}; [ -f "$d/env" ] || die "env: no control plane in '$d'"; print_env "$d" ;;
  stop) cmd_stop "${2:-}" ;;
  shell) cmd_shell ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
