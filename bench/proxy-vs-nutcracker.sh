#!/usr/bin/env bash
# pika-proxy against twemproxy (Debian's nutcracker), both in front of the same two pika-node
# processes, same redis-benchmark workload (GET, SET, MGET of 10 keys, MSET of 10 keys; -P 1 and
# -P 16). Prints ops/s for both, the ratio proxy/nutcracker, and how many commands the nodes
# executed per client request (nutcracker splits MGET/MSET per server entry).
#
#   REQUESTS=1000000 REPS=3 ./bench/proxy-vs-nutcracker.sh
#   PROXY=no ./bench/proxy-vs-nutcracker.sh     # nutcracker only (proxy column n/a)
#
# Layout (Pika's wiki recipe for twemproxy at 1024 slots): two sharding nodes with
# default-slot-num 1024, A owning 0-511 and B 512-1023; nutcracker with hash crc32a, distribution
# modula, no auto-ejection and 1024 server entries, entry i naming the node that owns slot i
# (the same host:port 512 times, told apart by the names slot0..slot1023: nutcracker refuses
# duplicate host:port entries in a pool unless they have distinct names). pika-proxy is given
# the two nodes as seeds and learns the slot map from them.
#
# Pinning: this machine has 2 cores. Both nodes share CPU 0; nutcracker, pika-proxy and
# redis-benchmark share CPU 1 (only one proxy is under load at a time, and the client competes
# with it for that core: absolute numbers are lower than on a real deployment, the ratio is
# what this measures). Each test runs nutcracker then the proxy back to back; the median of
# REPS repetitions is reported.
#
# When the pika-proxy crate is missing or does not build, or the proxy does not start, the
# proxy column says n/a and everything else still runs.
set -euo pipefail
REQUESTS="${REQUESTS:-200000}"
REPS="${REPS:-3}"
CLIENTS="${CLIENTS:-50}"
KEYSPACE="${KEYSPACE:-100000}"
PROXY="${PROXY:-auto}"         # auto: build and run pika-proxy if the crate is there; no: skip it
RUN_TIMEOUT="${RUN_TIMEOUT:-600}" # seconds per redis-benchmark run (a stuck proxy must not hang the script)
A_PORT=29411
B_PORT=29412
NC_PORT=29420
NC_STATS_PORT=29421
PROXY_PORT=29430
source "$(dirname "$0")/lib.sh"
mkdir -p "$work"

command -v nutcracker >/dev/null || PATH="$PATH:/usr/sbin:/usr/local/sbin"
command -v nutcracker >/dev/null || { echo "nutcracker not installed (apt-get install nutcracker)" >&2; exit 1; }

PROXY_BIN="$CARGO_TARGET_DIR/release/pika-proxy"
proxy_ok=no
proxy_why=""
if [ "$PROXY" = no ]; then
  proxy_why="PROXY=no"
elif [ ! -f proxy/Cargo.toml ]; then
  proxy_why="no proxy/ crate in this checkout"
elif ! cargo build --release -q -p pika-proxy 2>"$work/proxy-build.log"; then
  proxy_why="cargo build -p pika-proxy failed: $(grep -m1 '^error' "$work/proxy-build.log" || tail -1 "$work/proxy-build.log")"
elif [ ! -x "$PROXY_BIN" ]; then
  proxy_why="no binary at $PROXY_BIN"
else
  proxy_ok=yes
fi

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(nutcracker --version 2>&1 | head -1)"
start_node a $A_PORT 1024 0-511
start_node b $B_PORT 1024 512-1023

{
  echo "pika:"
  echo "  listen: 127.0.0.1:$NC_PORT"
  echo "  hash: crc32a"
  echo "  distribution: modula"
  echo "  auto_eject_hosts: false"
  echo "  redis: true"
  echo "  preconnect: true"
  echo "  servers:"
  for i in $(seq 0 1023); do
    echo "   - 127.0.0.1:$([ "$i" -lt 512 ] && echo $A_PORT || echo $B_PORT):1 slot$i"
  done
} > "$work/nutcracker.yml"
nutcracker -t -c "$work/nutcracker.yml" >/dev/null 2>&1 || { echo "nutcracker rejects $work/nutcracker.yml" >&2; exit 1; }
taskset -c 1 nutcracker -c "$work/nutcracker.yml" -s $NC_STATS_PORT -a 127.0.0.1 -o "$work/nutcracker.log" \
  -p "$work/nutcracker.pid" &
track $!
wait_port $NC_PORT

if [ $proxy_ok = yes ]; then
  taskset -c 1 "$PROXY_BIN" --listen 127.0.0.1:$PROXY_PORT --seed-nodes 127.0.0.1:$A_PORT,127.0.0.1:$B_PORT \
    >"$work/proxy.log" 2>&1 &
  track $!
  # Up and routing: an MSET of keys of both nodes answers OK (then they are deleted again).
  probes=(probe:0 x probe:1 x probe:2 x probe:3 x probe:4 x probe:5 x probe:6 x probe:7 x)
  proxy_ok=no
  for _ in $(seq 200); do
    if [ "$(redis-cli -p $PROXY_PORT mset "${probes[@]}" 2>/dev/null)" = OK ]; then proxy_ok=yes; break; fi
    sleep 0.05
  done
  if [ $proxy_ok = yes ]; then
    redis-cli -p $PROXY_PORT del probe:0 probe:1 probe:2 probe:3 probe:4 probe:5 probe:6 probe:7 >/dev/null
  else
    proxy_why="pika-proxy did not answer MSET with OK within 10 s (log: $(tail -1 "$work/proxy.log"))"
  fi
fi
[ $proxy_ok = yes ] && echo "== pika-proxy: $PROXY_BIN" || echo "== pika-proxy: n/a ($proxy_why)"

# Prefill every key redis-benchmark's -r $KEYSPACE can name (key:000000000000 ...), through
# nutcracker, in MSETs of 100 keys, so GET and MGET hit. Any reply but OK (Partition not found:
# a routing disagreement) stops the script.
echo "== prefilling $KEYSPACE keys through nutcracker"
awk -v n="$KEYSPACE" 'BEGIN { for (i = 0; i < n; i += 100) { printf "MSET"; for (j = i; j < i + 100 && j < n; j++) printf " key:%012d xxx", j; print "" } }' \
  | redis-cli -p $NC_PORT > "$work/prefill.out"
bad=$(grep -cv '^OK$' "$work/prefill.out" || true)
[ "$bad" = 0 ] || { echo "prefill: $bad replies not OK: $(grep -m1 -v '^OK$' "$work/prefill.out")" >&2; exit 1; }
keys=$(( $(redis-cli -p $A_PORT dbsize) + $(redis-cli -p $B_PORT dbsize) ))
[ "$keys" = "$KEYSPACE" ] || { echo "prefill: the nodes hold $keys keys, not $KEYSPACE" >&2; exit 1; }
mget=(MGET); for i in $(seq 10); do mget+=("key:__rand_int__"); done
check=(MGET); for i in 1 2 3 77777 99999 424 5 60000 7 8; do check+=("$(printf 'key:%012d' $(( i % KEYSPACE )))"); done
for port in $NC_PORT $([ $proxy_ok = yes ] && echo $PROXY_PORT); do
  got=$(redis-cli -p "$port" "${check[@]}" | grep -c '^xxx$' || true)
  [ "$got" = 10 ] || { echo "MGET of 10 prefilled keys through :$port found $got" >&2; exit 1; }
done

# Commands the nodes have executed (INFO stats), to count backend commands per request.
node_cmds() { for p in $A_PORT $B_PORT; do redis-cli -p "$p" info stats | tr -d '\r' | sed -n 's/^total_commands_processed://p'; done | awk '{s += $1} END {print s}'; }
# One redis-benchmark run: prints requests per second ("n/a" if it failed or timed out).
run() { # port test pipeline
  local args=(-t "$2")
  [ "$2" = mget ] && args=("${mget[@]}")
  local rps
  rps=$(taskset -c 1 timeout "$RUN_TIMEOUT" redis-benchmark -p "$1" -P "$3" -c "$CLIENTS" -n "$REQUESTS" \
    -r "$KEYSPACE" -q --csv "${args[@]}" 2>/dev/null | awk -F, 'NR>1 || $1 !~ /test/ {gsub(/"/,"",$2); print $2; exit}') || true
  echo "${rps:-n/a}"
}
median() { { grep -v n/a || true; } | sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "n/a")}'; }
per_req() { awk -v d="$1" -v n="$(( REQUESTS * REPS ))" 'BEGIN {printf "%.1f", d / n}'; }

printf "%-5s %3s %14s %12s %7s   %s\n" test P nutcracker proxy ratio "node cmds/request (nutcracker, proxy)"
for pipeline in 1 16; do
  for t in get set mget mset; do
    nc=(); px=(); nc_cmds=0; px_cmds=0
    for _ in $(seq "$REPS"); do
      before=$(node_cmds); nc+=("$(run $NC_PORT $t "$pipeline")"); nc_cmds=$(( nc_cmds + $(node_cmds) - before ))
      if [ $proxy_ok = yes ]; then
        before=$(node_cmds); px+=("$(run $PROXY_PORT $t "$pipeline")"); px_cmds=$(( px_cmds + $(node_cmds) - before ))
      fi
    done
    ncm=$(printf "%s\n" "${nc[@]}" | median)
    pxm=n/a; px_per=n/a
    if [ $proxy_ok = yes ]; then pxm=$(printf "%s\n" "${px[@]}" | median); px_per=$(per_req $px_cmds); fi
    ratio=$(awk -v a="$pxm" -v b="$ncm" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }')
    printf "%-5s %3s %14s %12s %7s   %s, %s\n" "$t" "$pipeline" "$ncm" "$pxm" "$ratio" "$(per_req $nc_cmds)" "$px_per"
  done
done
errors=$(grep -v "unsupported command 'CONFIG'" "$work/nutcracker.log" | grep -ciE 'error|fail|unsupported|closed' || true)
echo "== nutcracker log: $errors error lines$([ "$errors" != 0 ] && echo ": $(grep -v "unsupported command 'CONFIG'" "$work/nutcracker.log" | grep -m1 -iE 'error|fail|unsupported|closed')")"
