#!/usr/bin/env bash
# CBT against the same network in PyTorch (scripts/cbt_reference.py, the parity test's reference;
# there is no public CBT code), identical sizes, random weights and features, the same thread
# count, side by side:
#   1. inference: the visual transformer (2 layers), the frozen text BERT (all-MiniLM-L6-v2's
#      size: hidden 384, 6 layers, 12 heads) and the cross-modal transformer (1 layer) over every
#      text-video pair of each micro-batch, for 32 examples of 6 clip features (384 values) and
#      20 text tokens, in micro-batches of 16 (16 x 16 pairs each);
#   2. one pretraining step of the same: the visual InfoNCE over the masked clips, the cross-modal
#      loss against every other video of the micro-batch, backward, AdamW (BERT frozen).
# Ours runs the micro-batches on its worker threads, PyTorch one after the other with its
# intra-op threads. Ours and the peer take turns, ROUNDS times (default 2), each process timing
# REPEATS runs (default 5) after a warm-up; the median over all of a side's runs is reported
# with its peak memory.
#
#   bash bench/cbt_vs_pytorch.sh   (venv: $TESSERA_BENCH_VENV or ~/.cache/tessera/venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TESSERA_BENCH_VENV:-$HOME/.cache/tessera/venv}
THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-2}
REPEATS=${REPEATS:-5}
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "$VENV/bin/pip" install -q torch
fi
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tessera"  # the build the README commands use
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for round in $(seq "$ROUNDS"); do
    for mode in infer train; do
        "$BIN" cbt bench --mode "$mode" --repeats "$REPEATS" --threads "$THREADS" \
            > "$work/ours_${mode}_$round.json"
        "$VENV/bin/python" scripts/cbt_reference.py bench --mode "$mode" --repeats "$REPEATS" \
            --threads "$THREADS" > "$work/peer_${mode}_$round.json"
    done
done
python3 bench/side_by_side.py "$work" "$THREADS" "$ROUNDS" \
    "CBT against the same network in PyTorch (CPU)" PyTorch \
    "inference, 32 x (6 clips + 20 tokens), 16 x 16 pairs a micro-batch" \
    "pretraining step, 32 x (6 clips + 20 tokens), 16 x 16 pairs a micro-batch"
