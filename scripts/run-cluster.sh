#!/usr/bin/env bash
# A local sharded cluster: two groups (a master and a replica each) of sharding-mode pika-nodes
# splitting the 1024 slots, and pika-proxy in front of them on 127.0.0.1:9221.
# Connect with: redis-cli -p 9221. Data in ./data/cluster/ (kept across runs). Ctrl-C stops all.
#
# (The operator's local runtime, issue 5, will replace this with `pika-operator local`.)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
PROXY_LISTEN="${PROXY_LISTEN:-127.0.0.1:9221}"
cargo build --release -p pika-node -p pika-proxy
bin="$CARGO_TARGET_DIR/release"
data="$PWD/data/cluster"
mkdir -p "$data"
pids=()
stop() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop INT TERM EXIT

wait_port() { for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

# group 1: 9301 (master), 9302 (replica), slots 0-511; group 2: 9303, 9304, slots 512-1023.
for port in 9301 9302 9303 9304; do
  mkdir -p "$data/$port"
  cat > "$data/$port/pika.conf" <<CONF
port : $port
bind : 127.0.0.1
http-port : $((port + 100))
instance-mode : sharding
default-slot-num : 1024
db-path : $data/$port/db
CONF
  "$bin/pika-node" -c "$data/$port/pika.conf" 2>>"$data/$port/node.log" &
  pids+=($!)
done
for port in 9301 9302 9303 9304; do wait_port $port; done
# Owning a slot twice is an error, and a connected replica is left as it is: both make a
# restart of this script a no-op for the slots.
redis-cli -p 9301 pkcluster addslots 0-511 >/dev/null || true
redis-cli -p 9302 pkcluster addslots 0-511 >/dev/null || true
redis-cli -p 9303 pkcluster addslots 512-1023 >/dev/null || true
redis-cli -p 9304 pkcluster addslots 512-1023 >/dev/null || true
redis-cli -p 9302 pkcluster slotsslaveof 127.0.0.1 9301 all >/dev/null
redis-cli -p 9304 pkcluster slotsslaveof 127.0.0.1 9303 all >/dev/null

"$bin/pika-proxy" --listen "$PROXY_LISTEN" --seed-nodes 127.0.0.1:9301,127.0.0.1:9303 \
  --http-listen 127.0.0.1:9220 2>>"$data/proxy.log" &
pids+=($!)
wait_port "${PROXY_LISTEN##*:}"
echo "cluster ready: redis-cli -p ${PROXY_LISTEN##*:} (proxy); groups 127.0.0.1:9301+9302 (slots 0-511),"
echo "127.0.0.1:9303+9304 (512-1023); metrics on :9220 (proxy), :9401-9404 (nodes). Ctrl-C stops everything."
wait
