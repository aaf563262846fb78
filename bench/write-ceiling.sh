#!/usr/bin/env bash
# How far pipelined writes can go on one core: the part of a pipelined SET spent outside RocksDB
# (a node built with `bench-skip-storage-writes`, whose data writes skip the storage engine) plus
# what RocksDB needs per put (the `rocksdb_puts` example: single puts, batches, sorted batches),
# against redis-server's SET in the same run.
#
#   REQUESTS=1000000 ./bench/write-ceiling.sh
set -euo pipefail
REQUESTS="${REQUESTS:-1000000}"
PUTS="${PUTS:-2000000}"
REDIS_PORT=26389
NODE_PORT=29231
NOSTORE_PORT=29232
source "$(dirname "$0")/lib.sh"

cp "$NODE_BIN" "$work/pika-node"
cargo build --release -q -p pika-node --features bench-skip-storage-writes
cp "$NODE_BIN" "$work/pika-node-nostore"
cargo build --release -q -p pika-node # the target directory keeps the real node
cargo build --release -q -p pika-node --example rocksdb_puts

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
taskset -c 0 redis-server --port $REDIS_PORT --save '' --appendonly no --dir "$work" --daemonize no >/dev/null &
track $!
start_node() { # binary port
  mkdir -p "$work/$2"
  printf 'port : %s\nbind : 127.0.0.1\ninstance-mode : sharding\ndefault-slot-num : 1024\ndb-path : %s\n' \
    "$2" "$work/$2/db" >"$work/$2/pika.conf"
  taskset -c 0 "$1" -c "$work/$2/pika.conf" 2>"$work/$2/node.log" &
  track $!
  wait_port "$2"
  redis-cli -p "$2" pkcluster addslots 0-1023 >/dev/null
}
wait_port $REDIS_PORT
start_node "$work/pika-node" $NODE_PORT
start_node "$work/pika-node-nostore" $NOSTORE_PORT

rps() { # port test
  taskset -c 1 redis-benchmark -p "$1" -t "$2" -P 16 -c 50 -n "$REQUESTS" -r 100000 -q --csv 2>/dev/null \
    | awk -F, 'NR>1 || $1 !~ /test/ {gsub(/"/,"",$2); print $2; exit}'
}
redis_set=$(rps $REDIS_PORT set)
node_set=$(rps $NODE_PORT set)
nostore_set=$(rps $NOSTORE_PORT set)
printf "%-38s %10s\n" "SET -P16 redis-server" "$redis_set" "SET -P16 pika-node" "$node_set" \
  "SET -P16 pika-node, no storage write" "$nostore_set"

echo "== RocksDB puts on CPU 0 (pika-node's key layout, WAL on)"
taskset -c 0 "$CARGO_TARGET_DIR/release/examples/rocksdb_puts" "$work/puts" "$PUTS" | tee "$work/puts.txt"

echo "== bound for SET -P16 = 1 / (time outside RocksDB + time per put)"
awk -v rest="$nostore_set" -v redis="$redis_set" -v node="$node_set" '
  { us = $(NF-1); label = $0; sub(/:.*/, "", label)
    bound = 1e6 / (1e6 / rest + us)
    printf "%-18s %9.0f SET/s  %.2fx redis\n", label, bound, bound / redis }
  END { printf "%-18s %9.0f SET/s  %.2fx redis\n", "(measured node)", node, node / redis }' "$work/puts.txt"
