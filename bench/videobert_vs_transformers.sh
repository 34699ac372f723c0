#!/usr/bin/env bash
# VideoBERT against transformers' BertForPreTraining on PyTorch CPU (VideoBERT's network is BERT
# with BERT's pretraining heads over the joint text + [>] + visual-word vocabulary; no faithful
# public VideoBERT exists), identical sizes, random weights and sequences, the same thread count,
# side by side:
#   1. inference of all-MiniLM-L6-v2's size (hidden 384, 6 layers, 12 heads, feed-forward 1536)
#      over 30,522 text tokens + [>] + 144 visual words, on 32 joint sequences
#      [CLS] 24 text tokens [>] 16 visual words [SEP] (43 positions);
#   2. one pretraining step of the same: forward, masked-token loss over the joint vocabulary
#      on 15% of text tokens and visual words, alignment loss on [CLS], backward, AdamW.
# (Ours computes masked language and masked frame modelling as two means, transformers one mean
# over both: the same work.) Ours and the peer take turns, ROUNDS times (default 2), each
# process timing REPEATS runs (default 5) after a warm-up; the median over all of a side's runs
# is reported with its peak memory.
#
#   bash bench/videobert_vs_transformers.sh   (venv: $TESSERA_BENCH_VENV or ~/.cache/tessera/venv)
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
    "$BIN" videobert bench --mode "$1" --repeats "$REPEATS" --threads "$THREADS"
}
peer() {
"$VENV/bin/python" - "$1" "$THREADS" "$REPEATS" <<'PY'
import json, resource, statistics, sys, time
import torch, transformers
mode, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
text_vocab, words = 30522, 144
cfg = transformers.BertConfig(vocab_size=text_vocab + 1 + words, hidden_size=384,
                              num_hidden_layers=6, num_attention_heads=12,
                              intermediate_size=1536)
B, T, W = 32, 24, 16
ids = torch.cat([torch.full((B, 1), 101), torch.randint(1000, text_vocab, (B, T)),
                 torch.full((B, 1), text_vocab), torch.randint(text_vocab + 1, text_vocab + 1 + words, (B, W)),
                 torch.full((B, 1), 102)], 1)
types = torch.cat([torch.zeros(B, T + 1, dtype=torch.long), torch.ones(B, W + 2, dtype=torch.long)], 1)
mask = torch.ones_like(ids)
if mode == "infer":
    model = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    def run():
        with torch.no_grad():
            model(input_ids=ids, token_type_ids=types, attention_mask=mask)
else:
    model = transformers.BertForPreTraining(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    picked = torch.rand(ids.shape) < 0.15
    picked[:, 0] = False; picked[:, T + 1] = False; picked[:, -1] = False
    labels = torch.where(picked, ids, torch.full_like(ids, -100))
    inputs = torch.where(picked, torch.full_like(ids, 103), ids)
    aligned = torch.arange(B) % 2
    def run():
        out = model(input_ids=inputs, token_type_ids=types, attention_mask=mask, labels=labels,
                    next_sentence_label=aligned)
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
    "VideoBERT against transformers BertForPreTraining (PyTorch CPU)" PyTorch \
    "inference, MiniLM size, 32 x (24 + 16)" \
    "pretraining step, MiniLM size, 32 x (24 + 16)"
