#!/usr/bin/env bash
# Runs every test suite. Installs what a fresh machine lacks (Debian packages, helm, kubectl, the
# Kubernetes control plane, PyPI tools, cargo-fuzz), then: unit and integration tests of the
# workspace, and a bounded fuzz run of the RESP parsers.
#   FUZZ_SECONDS=N   seconds per fuzz target (default 60; 0 skips fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pika-target}"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"

if [ ! -d "$CARGO_TARGET_DIR/debug" ]; then
  echo "== first run: installing tools, building the Kubernetes control plane and RocksDB takes about 35 minutes on 2 cores (later runs about 7)"
fi
./scripts/install-deps.sh all

echo "== unit and integration tests (cargo test --workspace; builds into $CARGO_TARGET_DIR)"
cargo test --workspace -- --test-threads=2

if [ "$FUZZ_SECONDS" -gt 0 ]; then
  if rustup toolchain list | grep -q nightly; then
    echo "== fuzzing the RESP parsers for ${FUZZ_SECONDS}s each"
    for target in resp_request resp_reply; do
      (cd fuzz && cargo +nightly fuzz run --target-dir "${CARGO_TARGET_DIR}-fuzz" "$target" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048)
    done
  else
    echo "== fuzzing skipped: no nightly Rust toolchain (cargo fuzz needs one)"
  fi
fi
echo "== all tests passed"
