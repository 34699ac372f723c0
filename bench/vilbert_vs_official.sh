#!/usr/bin/env bash
# ViLBERT against the official code (github facebookresearch/vilbert-multi-task,
# `BertForMultiModalPreTraining` of vilbert/vilbert.py) on PyTorch CPU, the published sizes
# (config/bert_base_6layer_6conect.json: text 12 x 768, image 6 x 1024, 6 co-attention layers of
# 1024), random weights and inputs, the same thread count, side by side:
#   1. inference (both streams, poolers, the three heads) on 8 pairs of 20 text tokens and 37
#      regions (36 boxes + the global token) of 2048-d features;
#   2. one pretraining step: forward, the three losses (masked LM and masked regions at 15%,
#      alignment), backward, AdamW.
# Ours and the official code take turns, ROUNDS times (default 2), each process timing REPEATS
# runs (default 5) after a warm-up; the median over all of a side's runs is reported with its
# peak memory.
#
#   bash bench/vilbert_vs_official.sh OFFICIAL_CHECKOUT
#        (venv: $TESSERA_BENCH_VENV or ~/.cache/tessera/venv, with torch and numpy)
set -euo pipefail
if [ $# -ne 1 ]; then sed -n 2,16p "$0"; exit 2; fi
OFFICIAL=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
VENV=${TESSERA_BENCH_VENV:-$HOME/.cache/tessera/venv}
THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-2}
REPEATS=${REPEATS:-5}
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
    "$VENV/bin/pip" install -q torch numpy
fi
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tessera"  # the build the README commands use
CONFIG="$OFFICIAL/config/bert_base_6layer_6conect.json"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ours() {
    "$BIN" vilbert bench --mode "$1" --config "$CONFIG" --batch 8 --text-len 20 --regions 37 \
        --repeats "$REPEATS" --threads "$THREADS"
}
peer() {
PYTHONPATH="$PWD/scripts" "$VENV/bin/python" - "$1" "$THREADS" "$REPEATS" "$OFFICIAL" "$CONFIG" <<'PY'
import io, json, resource, statistics, sys, time, contextlib
import torch
from official_vilbert import load
mode, threads, repeats, official, config = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
network, _ = load(official)
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = network.BertConfig.from_json_file(config)
cfg.fusion_method = cfg.__dict__.get("pooling_method", "mul")
for k, v in network.BertConfig(vocab_size_or_config_json_file=cfg.vocab_size).__dict__.items():
    cfg.__dict__.setdefault(k, v)
with contextlib.redirect_stdout(io.StringIO()):
    model = network.BertForMultiModalPreTraining(cfg)
B, T, R, C = 8, 20, 37, cfg.v_target_size
ids = torch.randint(1000, cfg.vocab_size, (B, T))
feats = torch.rand(B, R, cfg.v_feature_size)
locs = torch.rand(B, R, 5)
seg = torch.zeros(B, T, dtype=torch.long)
mask = torch.ones(B, T, dtype=torch.long)
img_mask = torch.ones(B, R, dtype=torch.long)
if mode == "infer":
    model.eval()
    def run():
        with torch.no_grad():
            model(ids, feats, locs, seg, mask, img_mask)
else:
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    lm = torch.full((B, T), -1)
    picked = torch.rand(B, T) < 0.15
    picked[:, 0] = picked[:, -1] = False
    lm[picked] = ids[picked]
    img_label = torch.where(torch.rand(B, R - 1) < 0.15, 1, -1)
    target = torch.zeros(B, R - 1, C)
    target.scatter_(2, torch.randint(0, C, (B, R - 1, 1)), 1.0)
    nsp = torch.randint(0, 2, (B,))
    def run():
        l_t, l_v, l_a = model(ids, feats, locs, seg, mask, img_mask, masked_lm_labels=lm,
                              image_label=img_label, image_target=target, next_sentence_label=nsp)
        opt.zero_grad()
        (l_t + l_v + l_a).sum().backward()
        opt.step()
run()
times = []
for _ in range(repeats):
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
    "ViLBERT against the official code (PyTorch CPU)" official \
    "inference, 6-layer base, 8 pairs x (20 + 37)" \
    "pretraining step, 6-layer base, 8 pairs x (20 + 37)"
