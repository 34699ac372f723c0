#!/usr/bin/env python3
"""Fixtures for the regions layer (tests/detect.rs), from independent Python code:

- tests/fixtures/roi_align_reference.json: torchvision.ops.roi_align on random maps and boxes
  (aligned and not, fixed and adaptive sampling), the reference of core::roi_align;
- tests/fixtures/regions/: two images' regions written as the bottom-up-attention TSV (base64 of
  float32, as its tools write it) and as an .npz directory (numpy.savez, float64 counts as int64,
  `x`/`bbox` names), with regions.json listing every value, which Tessera's readers must return.

    python scripts/make_region_fixtures.py      (needs numpy, torch, torchvision)
"""
import base64
import json
import os

import numpy as np
import torch
import torchvision

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
rng = np.random.default_rng(7)

# --- RoIAlign -----------------------------------------------------------------------------
cases = []
for aligned in (True, False):
    for sampling in (2, 0):
        c, h, w = 3, 9, 11
        fmap = rng.normal(size=(c, h, w)).astype(np.float32)
        boxes = []
        for _ in range(10):
            x1, y1 = rng.uniform(-4, 20), rng.uniform(-4, 16)
            boxes.append([x1, y1, x1 + rng.uniform(0.2, 12), y1 + rng.uniform(0.2, 10)])
        boxes.append([3.0, 3.0, 3.0, 3.0])  # degenerate: a point
        boxes.append([0.0, 0.0, 22.0, 18.0])  # the whole map at scale 0.5
        boxes = np.asarray(boxes, np.float32)
        rois = torch.cat([torch.zeros(len(boxes), 1), torch.from_numpy(boxes)], 1)
        out = torchvision.ops.roi_align(torch.from_numpy(fmap)[None], rois, output_size=(3, 4),
                                        spatial_scale=0.5, sampling_ratio=sampling, aligned=aligned)
        cases.append({"aligned": aligned, "sampling_ratio": sampling, "spatial_scale": 0.5,
                      "output": [3, 4], "map_shape": [c, h, w], "map": fmap.ravel().tolist(),
                      "boxes": boxes.tolist(), "pooled": out.numpy().ravel().tolist()})
json.dump({"torch": torch.__version__, "torchvision": torchvision.__version__, "cases": cases},
          open(os.path.join(root, "roi_align_reference.json"), "w"))

# --- region files ---------------------------------------------------------------------------
d = os.path.join(root, "regions")
os.makedirs(os.path.join(d, "npz"), exist_ok=True)
images = []
for image_id, (iw, ih, k) in {"COCO_val2014_000000000042": (640, 480, 3), "img7": (300, 200, 2)}.items():
    x1 = rng.uniform(0, iw / 2, k)
    y1 = rng.uniform(0, ih / 2, k)
    boxes = np.stack([x1, y1, x1 + rng.uniform(1, iw / 2, k), y1 + rng.uniform(1, ih / 2, k)], 1).astype(np.float32)
    feats = rng.normal(size=(k, 5)).astype(np.float32)
    probs = rng.dirichlet(np.ones(3), k).astype(np.float32)
    images.append({"image_id": image_id, "image_w": iw, "image_h": ih, "boxes": boxes,
                   "features": feats, "cls_prob": probs})
b64 = lambda a: base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode()
with open(os.path.join(d, "regions.tsv"), "w") as f:
    for im in images:
        f.write("\t".join([im["image_id"], str(im["image_w"]), str(im["image_h"]), str(len(im["boxes"])),
                           b64(im["boxes"]), b64(im["features"]), b64(im["cls_prob"])]) + "\n")
for im in images:
    np.savez(os.path.join(d, "npz", im["image_id"] + ".npz"), x=im["features"], bbox=im["boxes"],
             image_w=np.int64(im["image_w"]), image_h=np.int64(im["image_h"]),
             num_bbox=np.int64(len(im["boxes"])), cls_prob=im["cls_prob"])
json.dump([{k: (v.ravel().tolist() if isinstance(v, np.ndarray) else v) for k, v in im.items()} for im in images],
          open(os.path.join(d, "regions.json"), "w"))
print("wrote", os.path.join(root, "roi_align_reference.json"), "and", d)
