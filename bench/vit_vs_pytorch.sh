#!/usr/bin/env bash
# ViT against PyTorch CPU (Hugging Face transformers' ViT), identical shapes, random weights and
# inputs, the same thread count, side by side:
#   1. ViT-B/16 inference on 8 images of 224 x 224 (no gradients);
#   2. one training step (forward, backward, AdamW) of a small ViT: patch 4, 32 x 32 input,
#      width 192, 6 layers, 3 heads, batch 128, 10 classes.
# Ours and the peer take turns, ROUNDS times (default 2), each process timing 5 runs after a
# warm-up; the median over all of a side's timed runs is reported (turns spread the drift of a
# shared machine over both sides), with the peak memory of its processes.
#
#   bash bench/vit_vs_pytorch.sh       (venv: $TESSERA_BENCH_VENV or ~/.cache/tessera/venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TESSERA_BENCH_VENV:-$HOME/.cache/tessera/venv}
THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-2}
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c "import transformers, torch" 2>/dev/null; then
    "$VENV/bin/pip" install -q torch transformers
fi
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tessera"  # the build the README commands use
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ours() {
    case $1 in
    infer) "$BIN" vit bench --mode infer --preset b16 --image 224 --batch 8 --threads "$THREADS" ;;
    train) "$BIN" vit bench --mode train --preset cifar --hidden 192 --layers 6 --heads 3 --patch 4 \
        --image 32 --batch 128 --threads "$THREADS" ;;
    esac
}
peer() {
"$VENV/bin/python" - "$1" "$THREADS" <<'PY'
import json, resource, statistics, sys, time
import torch, transformers
mode, threads = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
if mode == "infer":
    cfg = transformers.ViTConfig(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12,
                                 num_attention_heads=12, intermediate_size=3072)
    model = transformers.ViTModel(cfg, add_pooling_layer=False).eval()
    x = torch.randn(8, 3, 224, 224)
    def run():
        with torch.no_grad():
            model(pixel_values=x)
else:
    cfg = transformers.ViTConfig(image_size=32, patch_size=4, hidden_size=192, num_hidden_layers=6,
                                 num_attention_heads=3, intermediate_size=768, num_labels=10,
                                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = transformers.ViTForImageClassification(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    x = torch.randn(128, 3, 32, 32)
    y = torch.arange(128) % 10
    def run():
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
run()
times = []
for _ in range(5):
    t0 = time.perf_counter(); run(); times.append(time.perf_counter() - t0)
print(json.dumps({"seconds_median": statistics.median(times), "seconds": times,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
PY

}
for round in $(seq "$ROUNDS"); do
    for mode in infer train; do
        ours "$mode" > "$work/ours_${mode}_$round.json"
        peer "$mode" > "$work/peer_${mode}_$round.json"
    done
done
python3 bench/side_by_side.py "$work" "$THREADS" "$ROUNDS" \
    "ViT against PyTorch (transformers) CPU" PyTorch \
    "ViT-B/16 inference, 8 x 224x224" \
    "train step, patch 4, 32x32, d192, L6, b128"
