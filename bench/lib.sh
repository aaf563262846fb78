# Shared by the bench scripts: builds the release node (unless NODE_BIN names one), makes a
# scratch directory that is removed (with every process started through `track`) on exit, and
# waits for ports.
# Sets NODE_BIN and work.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
# NODE_BIN=/path/to/pika-node runs that build instead (to compare two builds of the node).
if [ -z "${NODE_BIN:-}" ]; then
  cargo build --release -q -p pika-node
  NODE_BIN="$CARGO_TARGET_DIR/release/pika-node"
fi
work="${WORK_DIR:-$(mktemp -d)}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# Remembers a background process for cleanup: `some-server & track $!`.
track() { pids+=("$1"); }
wait_port() { for _ in $(seq 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }

# A sharding-mode node `name` on `port` with `slots` slots (default 1), owning `owned` (default
# all of them), on CPU 0.
start_node() { # name port [slots] [owned]
  local slots="${3:-1}"
  local owned="${4:-0-$((slots - 1))}"
  mkdir -p "$work/$1"
  cat > "$work/$1/pika.conf" <<CONF
port : $2
bind : 127.0.0.1
instance-mode : sharding
default-slot-num : $slots
db-path : $work/$1/db
log-path : $work/$1/log
CONF
  taskset -c 0 "$NODE_BIN" -c "$work/$1/pika.conf" 2>"$work/$1.log" &
  track $!
  wait_port "$2"
  redis-cli -p "$2" pkcluster addslots "$owned" >/dev/null
}

# The local runtime (`pika-operator local`, release build) on the manifest `$work/cluster.yaml`:
# its proxy on `proxy`, node ports from `base`, the operator's log in `$work/operator.log`;
# extra arguments go to `local`.
start_local() { # proxy base [args...]
  local proxy="$1" base="$2"
  shift 2
  cargo build --release -q -p pika-proxy -p pika-operator
  "$CARGO_TARGET_DIR/release/pika-operator" --log-json local -f "$work/cluster.yaml" --data-dir "$work/data" \
    --proxy-listen "127.0.0.1:$proxy" --node-port-base "$base" --node-bin "$NODE_BIN" \
    --proxy-bin "$CARGO_TARGET_DIR/release/pika-proxy" "$@" 2> "$work/operator.log" &
  track $!
}
