#!/usr/bin/env bash
# The operator's numbers, with the local runtime (the same planner, cutover and failover code the
# Kubernetes controllers run), release builds, on loopback:
#   1. load DATA_MB (default 1024) of 1 KiB values through the proxy into 2 groups x (master + replica);
#   2. grow to 3 groups while redis-benchmark writes through the proxy: time until the 1024 slots
#      are balanced, and the cutover pause of every batch (p50/p99, from the operator's log);
#   3. kill -9 a group master (default failoverAfterSeconds 10): time until writes through the
#      proxy succeed again.
#   DATA_MB=N  BATCH=N (slots per cutover, default 16)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DATA_MB="${DATA_MB:-1024}"
BATCH="${BATCH:-16}"
BASE=27300
PROXY=27290

manifest() {
  printf 'apiVersion: pika.sharding.io/v1alpha1\nkind: PikaCluster\nmetadata:\n  name: bench\nspec:\n  groups: %s\n  replicasPerGroup: 1\n  slots: 1024\n' "$1" > "$work/cluster.yaml.tmp"
  mv "$work/cluster.yaml.tmp" "$work/cluster.yaml"
}

# Slots group g's master accepts writes for (member 0 unless a failover moved it).
owned() {
  local g="$1" m n
  for m in 0 1; do
    n="$(redis-cli -p $((BASE + 10 * g + m)) pkcluster writable 2>/dev/null | sed -n 3p)"
    if [ -n "$n" ]; then
      python3 -c "import sys; s=sys.argv[1]; print(sum((int(b)-int(a)+1) if '-' in r else 1 for r in s.split(',') if r for a,_,b in [r.partition('-')]) if s else 0)" "$n"
      return
    fi
  done
  echo 0
}

manifest 2
start_local $PROXY $BASE --batch "$BATCH"
for _ in $(seq 600); do [ "$(redis-cli -p $PROXY set probe 1 2>/dev/null)" = OK ] && break; sleep 0.1; done
[ "$(redis-cli -p $PROXY set probe 1)" = OK ] || { tail "$work/operator.log"; exit 1; }

keys=$((DATA_MB * 1024))
echo "== loading $DATA_MB MB ($keys keys of 1 KiB) through the proxy"
start=$(date +%s.%N)
redis-benchmark -p $PROXY -t set -n "$keys" -r 1000000000 -d 1024 -c 50 -P 16 -q >/dev/null
printf 'loaded in %.1f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"
redis-cli -p $PROXY dbsize

echo "== growing to 3 groups under a SET load"
redis-benchmark -p $PROXY -t set -n 100000000 -r 1000000 -d 100 -c 20 -q >/dev/null 2>&1 & load=$!
sleep 2
start=$(date +%s.%N)
manifest 3
while :; do
  a=$(owned 0); b=$(owned 1); c=$(owned 2)
  if [ $((a + b + c)) -eq 1024 ] && [ "$c" -ge 341 ]; then break; fi
  sleep 0.2
done
rebalance=$(echo "$(date +%s.%N) - $start" | bc)
kill $load 2>/dev/null || true
wait $load 2>/dev/null || true
printf 'rebalanced 1024 slots over 3 groups (%s/%s/%s) in %.1f s\n' "$a" "$b" "$c" "$rebalance"
grep -o '"pause_ms":[0-9]*' "$work/operator.log" | cut -d: -f2 | sort -n > "$work/pauses" || true
python3 - "$work/pauses" <<'PY'
import sys
p = [int(x) for x in open(sys.argv[1]) if x.strip()]
q = lambda f: p[min(len(p) - 1, int(f * len(p)))]
print(f"cutover pause per batch: {len(p)} batches, p50 {q(0.5)} ms, p99 {q(0.99)} ms, max {p[-1]} ms")
PY

echo "== failover: kill -9 of group 0's master (failoverAfterSeconds 10)"
pid=$(ss -ltnp "sport = :$BASE" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
start=$(date +%s.%N)
kill -9 "$pid"
# 40 keys: some of them live in group 0 (each lands there with probability 1/3).
all_ok() { local i; for i in $(seq 40); do [ "$(redis-cli -p $PROXY set "probe-$i" 1 2>/dev/null)" = OK ] || return 1; done; }
until all_ok; do sleep 0.1; done
printf 'writes to group 0 served again after %.1f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"
