# Shared by the bench scripts: builds the release node, makes a scratch directory that is removed
# (with every process started through `track`) on exit, and waits for ports.
# Sets NODE_BIN and work.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
cargo build --release -q -p pika-node
NODE_BIN="$CARGO_TARGET_DIR/release/pika-node"
work="${WORK_DIR:-$(mktemp -d)}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# Remembers a background process for cleanup: `some-server & track $!`.
track() { pids+=("$1"); }
wait_port() { for _ in $(seq 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }
