#!/usr/bin/env bash
# VL-BERT against Hugging Face's VisualBERT on PyTorch CPU (transformers' `VisualBertModel` /
# `VisualBertForPreTraining`, the nearest maintained single-stream image-text BERT; VL-BERT
# itself has no maintained PyTorch package), identical sizes, random weights and inputs, the
# same thread count, side by side:
#   1. inference of a BERT-base-sized network (hidden 768, 12 layers, 12 heads) on 8 pairs of
#      20 text tokens and 36 regions of 2048-d features;
#   2. one pretraining step (forward, masked-LM + region losses, backward, AdamW) of the same.
# The peers differ in their visual input (VL-BERT: a 4 x 512 box embedding concatenated with the
# feature -> Linear 4096 -> 768, one extra [END] token; VisualBERT: Linear 2048 -> 768) and
# region loss (VL-BERT: masked-RoI soft cross-entropy over 1601 classes; VisualBERT: its
# sentence-image head), everything else being one BERT-base over 57 tokens.
# Ours and the peer take turns, ROUNDS times (default 2), each process timing REPEATS runs
# (default 5) after a warm-up; the median over all of a side's runs is reported with its peak
# memory.
#
#   bash bench/vlbert_vs_visualbert.sh      (venv: $TESSERA_BENCH_VENV or ~/.cache/tessera/venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TESSERA_BENCH_VENV:-$HOME/.cache/tessera/venv}
THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-2}
REPEATS=${REPEATS:-5}
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c "import transformers, torch" 2>/dev/null; then
    "$VENV/bin/pip" install -q torch transformers
fi
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tessera"  # the build the README commands use
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ours() {
    "$BIN" vlbert bench --mode "$1" --batch 8 --text-len 20 --regions 36 --repeats "$REPEATS" \
        --threads "$THREADS"
}
peer() {
"$VENV/bin/python" - "$1" "$THREADS" "$REPEATS" <<'PY'
import json, resource, statistics, sys, time
import torch, transformers
mode, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = transformers.VisualBertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                    intermediate_size=3072, visual_embedding_dim=2048)
B, T, R = 8, 20, 36
ids = torch.randint(1000, 30522, (B, T))
feats = torch.rand(B, R, 2048)
masks = dict(attention_mask=torch.ones(B, T, dtype=torch.long),
             visual_attention_mask=torch.ones(B, R, dtype=torch.long))
if mode == "infer":
    model = transformers.VisualBertModel(cfg).eval()
    def run():
        with torch.no_grad():
            model(input_ids=ids, visual_embeds=feats, **masks)
else:
    model = transformers.VisualBertForPreTraining(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    labels = torch.full((B, T + R), -100)
    picked = torch.rand(B, T) < 0.15
    labels[:, :T][picked] = ids[picked]
    def run():
        out = model(input_ids=ids, visual_embeds=feats, labels=labels, **masks,
                    sentence_image_labels=torch.ones(B, dtype=torch.long))
        opt.zero_grad()
        out.loss.backward()
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
    "VL-BERT against VisualBERT (transformers, PyTorch CPU)" PyTorch \
    "inference, base, 8 pairs x (20 + 36)" \
    "pretraining step, base, 8 pairs x (20 + 36)"
