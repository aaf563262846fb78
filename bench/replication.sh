#!/usr/bin/env bash
# Replication benchmarks, release build, loopback:
#  1. full sync of one slot holding ~DATA_MB of data: seconds, MB/s and keys/s;
#  2. the lag a replica shows under a steady redis-benchmark SET load (sampled every 100 ms
#     from the master's `pkcluster info slot`), at -P 1 and -P 16.
#
#   DATA_MB=1024 ./bench/replication.sh
#
# Master and replica share CPU 0, the load generator runs on CPU 1.
set -euo pipefail
DATA_MB="${DATA_MB:-1024}"
VALUE="${VALUE:-1000}"
LOAD_REQUESTS="${LOAD_REQUESTS:-2000000}"
M_PORT=29301
R_PORT=29302
source "$(dirname "$0")/lib.sh"


# The master's lag line for the replica (bytes), or "-" while it is not in BinlogSync.
lag() { redis-cli -p $M_PORT pkcluster info slot 0 | tr -d '\r' | awk '/replication_status/ {s=$2} /lag:/ {print (s=="SlaveBinlogSync" ? $2 : "-"); exit}'; }

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
start_node master $M_PORT
start_node replica $R_PORT

keys=$(( DATA_MB * 1024 * 1024 / VALUE ))
echo "== loading $keys keys of $VALUE bytes (~$DATA_MB MB of values) into the master's one slot"
t0=$(date +%s.%N)
# redis-benchmark picks keys at random in [0, keys): three passes leave ~95% of them written.
taskset -c 1 redis-benchmark -p $M_PORT -t set -d "$VALUE" -n $(( keys * 3 )) -r "$keys" -P 32 -c 8 -q >/dev/null
t1=$(date +%s.%N)
records=$(redis-cli -p $M_PORT pkcluster digest 0 | sed -n 3p)
echo "   loaded in $(echo "$t1 - $t0" | bc) s; $records records in the slot; db size $(du -sh "$work/master/db" | cut -f1)"

echo "== full sync"
t0=$(date +%s.%N)
redis-cli -p $R_PORT pkcluster slotsslaveof 127.0.0.1 $M_PORT 0 >/dev/null
until [ "$(lag)" = "0" ]; do sleep 0.1; done
t1=$(date +%s.%N)
line=$(grep "full sync done" "$work/replica.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')
bytes=$(echo "$line" | sed -n 's/.*bytes=\([0-9]*\).*/\1/p')
ms=$(echo "$line" | sed -n 's/.*elapsed_ms=\([0-9]*\).*/\1/p')
secs=$(echo "$t1 - $t0" | bc)
echo "   slotsslaveof -> lag 0: ${secs} s; snapshot stream: $bytes bytes, $records records in $ms ms"
echo "   => $(echo "scale=1; $bytes / 1048576 / ($ms / 1000)" | bc) MB/s, $(echo "$records * 1000 / $ms" | bc) keys/s (stream); $(echo "scale=1; $bytes / 1048576 / $secs" | bc) MB/s end to end"
[ "$(redis-cli -p $M_PORT pkcluster digest 0 | sed -n 2p)" = "$(redis-cli -p $R_PORT pkcluster digest 0 | sed -n 2p)" ] \
  && echo "   digests equal" || { echo "   DIGESTS DIFFER" >&2; exit 1; }

for pipeline in 1 16; do
  echo "== lag under SET load: redis-benchmark -t set -c 50 -P $pipeline -d 100 -n $LOAD_REQUESTS"
  taskset -c 1 redis-benchmark -p $M_PORT -t set -c 50 -P $pipeline -d 100 -r 100000 -n "$LOAD_REQUESTS" -q --csv \
    > "$work/load.csv" 2>/dev/null &
  load_pid=$!
  : > "$work/lags"
  while kill -0 $load_pid 2>/dev/null; do lag >> "$work/lags"; sleep 0.1; done
  rps=$(awk -F, 'NR>1 {gsub(/"/,"",$2); print $2; exit}' "$work/load.csv")
  grep -v -- - "$work/lags" | sort -n > "$work/lags.sorted" || true
  n=$(wc -l < "$work/lags.sorted")
  pct() { awk -v p="$1" -v n="$n" 'NR==int((n-1)*p)+1 {print; exit}' "$work/lags.sorted"; }
  echo "   $rps SET/s; $n lag samples: p50 $(pct 0.5) B, p99 $(pct 0.99) B, max $(tail -1 "$work/lags.sorted") B"
  until [ "$(lag)" = "0" ]; do sleep 0.1; done
done
[ "$(redis-cli -p $M_PORT pkcluster digest 0 | sed -n 2p)" = "$(redis-cli -p $R_PORT pkcluster digest 0 | sed -n 2p)" ] \
  && echo "== digests equal after the load" || { echo "== DIGESTS DIFFER after the load" >&2; exit 1; }
