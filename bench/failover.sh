#!/usr/bin/env bash
# Failover time with the lease, in the local runtime (the failover code the Kubernetes operator
# runs too), release builds, on loopback: 2 groups x (master + replica), failoverAfterSeconds
# FAILOVER_AFTER (default 3), spec.durability.mode MODE (default replicated). A writer sends SETs
# through the proxy meanwhile. For `kill -9` and then SIGSTOP of group 0's master: the time until
# writes to every slot of that group succeed again (redis-cli waits: the proxy holds requests
# for a master that cannot be reached), and whether any write failed.
#
#   ./bench/failover.sh            FAILOVER_AFTER=10 MODE=async ./bench/failover.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
FAILOVER_AFTER="${FAILOVER_AFTER:-3}"
MODE="${MODE:-replicated}"
BASE=27400
PROXY=27390

cat > "$work/cluster.yaml" <<YAML
apiVersion: pika.sharding.io/v1alpha1
kind: PikaCluster
metadata:
  name: bench
spec:
  groups: 2
  replicasPerGroup: 1
  slots: 64
  failoverAfterSeconds: $FAILOVER_AFTER
  durability:
    mode: $MODE
YAML
start_local $PROXY $BASE
# 40 keys: about half of them live in group 0.
all_ok() { local i; for i in $(seq 40); do [ "$(redis-cli -p $PROXY set "probe-$i" 1 2>/dev/null)" = OK ] || return 1; done; }
for _ in $(seq 600); do all_ok && break; sleep 0.1; done
all_ok || { tail "$work/operator.log"; exit 1; }
echo "== machine: $(nproc) cores; failoverAfterSeconds $FAILOVER_AFTER, durability $MODE"

# The port of group 0's master: the member that accepts writes.
g0_master() {
  local m
  for m in 0 1; do
    [ -n "$(redis-cli -p $((BASE + m)) pkcluster writable 2>/dev/null | sed -n 3p)" ] && { echo $((BASE + m)); return; }
  done
}
# Both members of both groups streaming again (each group's master lists a streaming replica
# for every slot it owns).
whole() {
  local g m n
  for g in 0 1; do
    for m in 0 1; do
      n=$(redis-cli -p $((BASE + 10 * g + m)) pkcluster info slot 0-63 2>/dev/null | grep -c SlaveBinlogSync || true)
      [ "$n" -gt 0 ] && continue 2
    done
    return 1
  done
}

# A steady writer through the proxy; its errors are counted.
(while :; do redis-cli -p $PROXY set "load-$RANDOM" x 2>&1 | grep -v '^OK$' || true; done) > "$work/writer.errors" &
writer=$!
track $writer

for signal in KILL STOP; do
  until whole; do sleep 0.2; done
  sleep 1
  port=$(g0_master)
  pid=$(ss -ltnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
  start=$(date +%s.%N)
  echo "   $(date -u +%T.%3N) SIG$signal to port $port"
  kill -$signal "$pid"
  until all_ok; do sleep 0.05; done
  printf '%-8s group 0 master (port %s): writes to all its slots served again after %.2f s\n' \
    "SIG$signal" "$port" "$(echo "$(date +%s.%N) - $start" | bc)"
  [ "$signal" = STOP ] && { sleep 2; kill -CONT "$pid" 2>/dev/null || true; }
done
kill $writer 2>/dev/null || true
echo "== the operator's failovers (UTC):"
grep -E 'promoted for' "$work/operator.log" | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    print(e.get("timestamp", "")[11:23], e.get("fields", {}).get("message", ""))'
echo "== writes that got an error meanwhile: $(grep -vc '^$' "$work/writer.errors" || true)"
grep -v '^$' "$work/writer.errors" | sort | uniq -c | sort -rn | head -5 || true
