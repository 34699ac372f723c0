#!/usr/bin/env bash
# Sentence embeddings with all-MiniLM-L6-v2: Tessera against sentence-transformers on PyTorch
# CPU, the same 10,000 generated sentences, batch 32, mean pooling + L2 normalisation, the same
# thread count, side by side. Prints sentences per second for both, the ratio, peak memory and
# the largest difference between the two sets of embeddings.
#
#   bash bench/text_embed_vs_pytorch.sh      (venv: $TESSERA_BENCH_VENV or ~/.cache/tessera/venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TESSERA_BENCH_VENV:-$HOME/.cache/tessera/venv}
THREADS=${THREADS:-$(nproc)}
N=${N:-10000}

if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c "import sentence_transformers, torch" 2>/dev/null; then
    echo "installing PyTorch and sentence-transformers into $VENV" >&2
    "$VENV/bin/pip" install -q torch sentence-transformers
fi
bash scripts/fetch-data.sh minilm >&2
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tessera"  # the build the README commands use

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Sentences of 4 to 40 whole words drawn from the model's vocabulary (seeded).
"$VENV/bin/python" - "$N" "$work/sentences.txt" <<'PY'
import random, sys
n, out = int(sys.argv[1]), sys.argv[2]
words = [w.strip() for w in open("data/minilm/vocab.txt", encoding="utf-8")]
words = [w for w in words if w.isalpha() and w.isascii() and len(w) > 1]
rng = random.Random(0)
with open(out, "w") as f:
    for _ in range(n):
        s = " ".join(rng.choice(words) for _ in range(rng.randint(4, 40)))
        f.write(s[0].upper() + s[1:] + ".\n")
PY

echo "tessera ..." >&2
/usr/bin/time -f "%M" -o "$work/ours.rss" "$BIN" text embed --model data/minilm \
    --input "$work/sentences.txt" --output "$work/ours.safetensors" --normalize \
    --batch-size 32 --threads "$THREADS" --json > "$work/ours.json"
echo "sentence-transformers ..." >&2
/usr/bin/time -f "%M" -o "$work/peer.rss" "$VENV/bin/python" - "$work" "$THREADS" <<'PY' > "$work/peer.json"
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
from sentence_transformers import SentenceTransformer
work = sys.argv[1]
texts = [l.rstrip("\n") for l in open(f"{work}/sentences.txt", encoding="utf-8")]
model = SentenceTransformer("data/minilm", device="cpu")
t0 = time.perf_counter()
emb = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
seconds = time.perf_counter() - t0
import numpy as np
np.save(f"{work}/peer.npy", emb)
print(json.dumps({"texts": len(texts), "seconds": seconds, "texts_per_second": len(texts) / seconds}))
PY

"$VENV/bin/python" - "$work" "$THREADS" <<'PY'
import json, sys
import numpy as np
from safetensors.numpy import load_file
work, threads = sys.argv[1], sys.argv[2]
ours, peer = json.load(open(f"{work}/ours.json")), json.load(open(f"{work}/peer.json"))
rss = {k: int(open(f"{work}/{k}.rss").read().split()[-1]) / 1024 for k in ("ours", "peer")}
diff = float(np.abs(load_file(f"{work}/ours.safetensors")["embeddings"] - np.load(f"{work}/peer.npy")).max())
print(f"all-MiniLM-L6-v2, {ours['texts']} sentences (4-40 words), batch 32, mean pooling + L2, {threads} threads")
print(f"{'run':<34}{'seconds':>9}{'sent/s':>9}{'peak MiB':>10}{'speed-up':>10}")
for name, r, m in [("tessera (burn flex)", ours, rss["ours"]), ("sentence-transformers (PyTorch)", peer, rss["peer"])]:
    print(f"{name:<34}{r['seconds']:>9.2f}{r['texts_per_second']:>9.0f}{m:>10.0f}{ours['texts_per_second'] / r['texts_per_second']:>9.2f}x")
print(f"max |embedding difference|: {diff:.2e}   (speed-up: our sentences/s over the peer's; peak memory is the process's, model loading included)")
PY
