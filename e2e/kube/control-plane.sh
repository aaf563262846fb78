#!/usr/bin/env bash
# Starts a real Kubernetes control plane on loopback for the operator's tests: etcd (Debian),
# kube-apiserver and kube-controller-manager (built by scripts/build-kube.sh). No kubelet and no
# scheduler: pods are created but never run, which is what control-plane tests need.
#   control-plane.sh start DIR   -> DIR/admin.kubeconfig once the API answers
#   control-plane.sh stop DIR
# Ports: PORT_BASE (default 26000) + 0 etcd client, +1 etcd peer, +2 apiserver.
set -euo pipefail
cmd="$1"; dir="$(mkdir -p "$2" && cd "$2" && pwd)"
bin="${KUBE_BIN:-$("$(dirname "$0")/../../scripts/build-kube.sh")}"
base="${PORT_BASE:-26000}"

if [ "$cmd" = stop ]; then
  for p in controller-manager apiserver etcd; do
    [ -f "$dir/$p.pid" ] && kill "$(cat "$dir/$p.pid")" 2>/dev/null || true
  done
  sleep 1
  for p in controller-manager apiserver etcd; do
    [ -f "$dir/$p.pid" ] && kill -9 "$(cat "$dir/$p.pid")" 2>/dev/null || true
    rm -f "$dir/$p.pid"
  done
  exit 0
fi

token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
echo "$token,admin,admin-uid,\"system:masters\"" > "$dir/tokens.csv"
[ -f "$dir/sa.key" ] || openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null

etcd --name e2e --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$base" --advertise-client-urls "http://127.0.0.1:$base" \
  --listen-peer-urls "http://127.0.0.1:$((base + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((base + 1))" \
  --initial-cluster "e2e=http://127.0.0.1:$((base + 1))" >"$dir/etcd.log" 2>&1 &
echo $! > "$dir/etcd.pid"

"$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$base" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$((base + 2))" \
  --cert-dir "$dir/certs" --token-auth-file "$dir/tokens.csv" --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$dir/sa.pub" \
  --service-account-signing-key-file "$dir/sa.key" --service-cluster-ip-range 10.96.0.0/16 \
  --enable-priority-and-fairness=false >"$dir/apiserver.log" 2>&1 &
echo $! > "$dir/apiserver.pid"

cat > "$dir/admin.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:$((base + 2))
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $token
contexts:
- name: e2e
  context: {cluster: e2e, user: admin, namespace: default}
current-context: e2e
KC

for _ in $(seq 1 120); do
  if KUBECONFIG="$dir/admin.kubeconfig" kubectl get --raw /readyz >/dev/null 2>&1; then break; fi
  sleep 0.5
done
KUBECONFIG="$dir/admin.kubeconfig" kubectl get --raw /readyz >/dev/null || { tail -20 "$dir/apiserver.log" >&2; exit 1; }

# Garbage collection (owner references), the workload controllers (StatefulSet -> Pods) and the
# volume binder (claims bound to the volumes a test creates, so that they can be resized).
"$bin/kube-controller-manager" --kubeconfig "$dir/admin.kubeconfig" --authentication-kubeconfig "$dir/admin.kubeconfig" \
  --authorization-kubeconfig "$dir/admin.kubeconfig" --leader-elect=false --secure-port 0 \
  --controllers garbagecollector,statefulset,deployment,replicaset,serviceaccount,serviceaccount-token,namespace,disruption,persistentvolume-binder \
  --service-account-private-key-file "$dir/sa.key" --root-ca-file "$dir/certs/apiserver.crt" \
  --use-service-account-credentials=false >"$dir/controller-manager.log" 2>&1 &
echo $! > "$dir/controller-manager.pid"
echo "$dir/admin.kubeconfig"
