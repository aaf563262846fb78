#!/usr/bin/env bash
# Loads about DATA_GB of 1 KiB values into one sharding-mode pika-node (1024 slots owned, default
# block cache) and reports its RSS before, during and after, and the on-disk size.
#
#   DATA_GB=5 ./bench/rss-5gb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
DATA_GB="${DATA_GB:-5}"
VALUE=1024
KEYS=$(( DATA_GB * 1024 * 1024 * 1024 / VALUE ))
PORT=29222
cargo build --release -q -p pika-node
work="${WORK_DIR:-$(mktemp -d)}"
cat > "$work/pika.conf" <<CONF
port : $PORT
bind : 127.0.0.1
instance-mode : sharding
db-path : $work/db
log-path : $work/log
CONF
"$CARGO_TARGET_DIR/release/pika-node" -c "$work/pika.conf" 2>"$work/node.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 200); do redis-cli -p $PORT ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p $PORT pkcluster addslots 0-1023 >/dev/null
rss() { awk '/VmRSS/ {printf "%d MiB", $2/1024}' /proc/$pid/status; }
echo "RSS empty, 1024 slots owned: $(rss)"
echo "loading $KEYS keys of $VALUE bytes (keyspace:__rand_int__ over a sequential counter)..."
start=$(date +%s)
# -r with a keyspace as large as the key count makes most keys distinct.
redis-benchmark -p $PORT -t set -n "$KEYS" -r "$KEYS" -d $VALUE -P 32 -c 8 -q >/dev/null
echo "load took $(( $(date +%s) - start )) s; RSS after load: $(rss)"
sleep 10
echo "RSS after 10 s settle: $(rss); on disk: $(du -sh "$work/db" | cut -f1)"
for i in 1 2 3; do redis-benchmark -p $PORT -t get -n 200000 -r "$KEYS" -c 50 -q >/dev/null; done
echo "RSS after 600k random GETs: $(rss)"
