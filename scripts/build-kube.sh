#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and kube-scheduler from the Kubernetes Go
# modules pinned in e2e/kube/go.mod and caches them outside the work tree. Prints the bin dir.
#   build-kube.sh --check   exits 0 when the binaries are already built (nothing to do)
#   KUBE_BIN_CACHE=DIR   cache root (default ~/.cache/pika-kube)
set -euo pipefail
cd "$(dirname "$0")/../e2e/kube"
version="$(awk '/^require k8s.io\/kubernetes/ {print $3}' go.mod)"
out="${KUBE_BIN_CACHE:-$HOME/.cache/pika-kube}/$version"
if [ "${1:-}" = --check ]; then
  for cmd in kube-apiserver kube-controller-manager kube-scheduler; do [ -x "$out/$cmd" ] || exit 1; done
  exit 0
fi
mkdir -p "$out"
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
  if [ ! -x "$out/$cmd" ]; then
    echo "building $cmd $version (several minutes on 2 cores)" >&2
    # The version the binaries report (Helm checks a chart's kubeVersion against it).
    v="k8s.io/component-base/version"
    minor="$(echo "$version" | cut -d. -f2)"
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean" \
      -o "$out/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
    mv "$out/$cmd.tmp" "$out/$cmd"
  fi
done
echo "$out"
