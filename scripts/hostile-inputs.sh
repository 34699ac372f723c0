#!/usr/bin/env bash
# The hostile-input sweep (tests/hostile.rs) with its table: every case, its class (clear error,
# quiet end on a broken pipe, success, unhelpful error, panic, abort, hang, silently wrong) and
# the counts per class. TESSERA_BIN=/path/to/tessera sweeps another build.
#
#   bash scripts/hostile-inputs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --release --test hostile --no-capture "$@"
