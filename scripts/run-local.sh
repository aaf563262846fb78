#!/usr/bin/env bash
# The main job: a local sharded cluster run by the operator's local runtime from a PikaCluster
# manifest (default examples/cluster.yaml: 2 groups of master + replica, 1024 slots), with
# pika-proxy on 127.0.0.1:9221. Connect with: redis-cli -p 9221
# Edit the manifest while it runs (e.g. groups: 3) and the slots move. Ctrl-C stops everything.
#   ./scripts/run-local.sh [manifest.yaml]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
MANIFEST="${1:-examples/cluster.yaml}"
./scripts/install-deps.sh build
if [ ! -x "$CARGO_TARGET_DIR/release/pika-node" ]; then
  echo "== first build: compiling RocksDB and the three binaries takes 10-20 minutes on 2 cores (later builds take seconds; builds go to $CARGO_TARGET_DIR)"
else
  echo "== building pika-node, pika-proxy, pika-operator (release, into $CARGO_TARGET_DIR)"
fi
cargo build --release -p pika-node -p pika-proxy -p pika-operator
listen="${PROXY_LISTEN:-127.0.0.1:9221}"
echo "== starting the cluster of $MANIFEST (data in ./data/local); connect with: redis-cli -p ${listen##*:}"
exec "$CARGO_TARGET_DIR/release/pika-operator" local -f "$MANIFEST" --data-dir ./data/local --proxy-listen "$listen"
