#!/usr/bin/env bash
# The test suite: fetches the real data sets the tests read (idempotent), then runs every test in
# its own process with cargo-nextest (release build: training tests need optimised code).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
bash scripts/fetch-data.sh ml-100k minilm dinov2-s14 digits
cargo nextest run --release --no-fail-fast "$@"
