#!/usr/bin/env bash
# The cost of replicated acknowledgement (min-replica-acks 1) against asynchronous replication:
# redis-benchmark SET and HSET at -P 1 and -P 16 against a master with one streaming replica,
# the same run switching the mode with CONFIG SET between the two. Release build, loopback;
# master and replica on CPU 0, the load generator on CPU 1. Prints req/s and the ratio.
#
#   ./bench/durability.sh
set -euo pipefail
REQUESTS="${REQUESTS:-200000}"
CLIENTS="${CLIENTS:-50}"
M_PORT=29401
R_PORT=29402
source "$(dirname "$0")/lib.sh"


# req/s of one run. redis-benchmark 7 stops at the first error reply ("Error from server"):
# its output is kept in $work/errors to count them.
rps() { # test pipeline
  taskset -c 1 redis-benchmark -p $M_PORT -t "$1" -n "$REQUESTS" -c "$CLIENTS" -P "$2" -r 100000 -q \
    2>&1 | tr '\r' '\n' | grep -v '^WARNING' | tee -a "$work/errors" | awk '/requests per second/ {print $2; exit}'
}

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
start_node master $M_PORT 16
start_node replica $R_PORT 16
redis-cli -p $R_PORT pkcluster slotsslaveof 127.0.0.1 $M_PORT 0-15 >/dev/null
until redis-cli -p $M_PORT pkcluster info slot 0-15 | grep -c SlaveBinlogSync | grep -qx 16; do sleep 0.1; done

printf '%-8s %-4s %12s %12s %7s\n' test P async replicated ratio
for t in set hset; do
  for p in 1 16; do
    redis-cli -p $M_PORT config set min-replica-acks 0 >/dev/null
    a=$(rps "$t" "$p")
    redis-cli -p $M_PORT config set min-replica-acks 1 >/dev/null
    r=$(rps "$t" "$p")
    printf '%-8s %-4s %12s %12s %7s\n' "$t" "$p" "$a" "$r" "$(echo "scale=2; $r / $a" | bc)"
  done
done
echo "== runs stopped by an error reply: $(grep -c 'Error from server' "$work/errors" || true)"
grep 'Error from server' "$work/errors" | sort | uniq -c | head -3 || true
