#!/usr/bin/env bash
# pika-node against Debian's redis-server, same redis-benchmark workload, in one run.
# Prints ops/s for both and the ratio node/redis for each test and pipeline depth.
#
#   REQUESTS=1000000 REPS=3 ./bench/node-vs-redis.sh
#
# Method (see bench/RESULTS.md): servers pinned to CPU 0, the client to CPU 1; the reference and
# ours run back to back per test; the median of REPS repetitions is reported.
set -euo pipefail
REQUESTS="${REQUESTS:-1000000}"
REPS="${REPS:-3}"
CLIENTS="${CLIENTS:-50}"
KEYSPACE="${KEYSPACE:-100000}"
TESTS="${TESTS:-set,get,incr,lpush,lpop,hset,sadd,zadd,mset}"
REDIS_PORT=26379
NODE_PORT=29221
source "$(dirname "$0")/lib.sh"

pin_client() { taskset -c 1 "$@"; }

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
taskset -c 0 redis-server --port $REDIS_PORT --save '' --appendonly no --dir "$work" --daemonize no >/dev/null &
track $!
cat > "$work/pika.conf" <<CONF
port : $NODE_PORT
bind : 127.0.0.1
instance-mode : sharding
default-slot-num : 1024
db-path : $work/node/db
log-path : $work/node/log
CONF
taskset -c 0 "$NODE_BIN" -c "$work/pika.conf" 2>"$work/node.log" &
node_pid=$!
track $node_pid
wait_port $REDIS_PORT
wait_port $NODE_PORT
redis-cli -p $NODE_PORT pkcluster addslots 0-1023 >/dev/null
echo "== pika-node RSS with 1024 empty slots: $(awk '/VmRSS/ {print $2, $3}' /proc/$node_pid/status)"

# One redis-benchmark run: prints requests per second.
run() { # port test pipeline
  pin_client redis-benchmark -p "$1" -t "$2" -P "$3" -c "$CLIENTS" -n "$REQUESTS" -r "$KEYSPACE" -q --csv 2>/dev/null \
    | awk -F, 'NR>1 || $1 !~ /test/ {gsub(/"/,"",$2); print $2; exit}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf "%-6s %3s %12s %12s %7s\n" test P redis node ratio
for pipeline in 1 16; do
  for t in ${TESTS//,/ }; do
    r=(); n=()
    for _ in $(seq "$REPS"); do
      r+=("$(run $REDIS_PORT "$t" "$pipeline")")
      n+=("$(run $NODE_PORT "$t" "$pipeline")")
    done
    rm=$(printf "%s\n" "${r[@]}" | median)
    nm=$(printf "%s\n" "${n[@]}" | median)
    ratio=$(awk -v a="$nm" -v b="$rm" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')
    printf "%-6s %3s %12s %12s %7s\n" "$t" "$pipeline" "$rm" "$nm" "$ratio"
  done
done
echo "== pika-node RSS after the run: $(awk '/VmRSS/ {print $2, $3}' /proc/$node_pid/status)"
