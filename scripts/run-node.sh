#!/usr/bin/env bash
# Starts one sharding-mode pika-node on 127.0.0.1:9221 owning all 1024 slots, in ./data/.
# Connect with: redis-cli -p 9221
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
cargo build --release -p pika-node
mkdir -p data/node-9221
"$CARGO_TARGET_DIR/release/pika-node" -c node/pika.conf.example &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM EXIT
for _ in $(seq 100); do
  redis-cli -p 9221 ping >/dev/null 2>&1 && break
  sleep 0.1
done
# Owning a slot twice is an error; on a restart the slots are already owned.
redis-cli -p 9221 pkcluster addslots 0-1023 >/dev/null || true
echo "pika-node ready on 127.0.0.1:9221 (metrics: http://127.0.0.1:9231/metrics); Ctrl-C stops it"
wait $pid
