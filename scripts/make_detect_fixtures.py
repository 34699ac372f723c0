#!/usr/bin/env python3
"""Fixtures for the detector (tests/detect.rs), from the independent numpy reference
(scripts/yolo_reference.py):

- tests/fixtures/darknet-tiny/: a small YOLO network using every supported layer kind
  (convolutions with and without batch norm, leaky/linear/logistic, max pools of stride 2 and 1,
  upsample, route, shortcut, two yolo heads), random weights, a random 37x29 image, and the
  reference's letterboxed input, raw yolo outputs and detections (threshold 0.25);
- tests/fixtures/yolov3_tiny_reference.json (when data/yolov3-tiny and data/darknet-photos exist):
  the reference's detections of YOLOv3-tiny on darknet's photos at the default thresholds.

    python scripts/make_detect_fixtures.py       (needs numpy, pillow)
"""
import json
import os
import sys

import numpy as np
from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import yolo_reference as ref  # noqa: E402

repo = os.path.join(here, "..")
fix = os.path.join(repo, "tests", "fixtures")
d = os.path.join(fix, "darknet-tiny")
os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(11)
cfg = """[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
filters=16
size=1
stride=1
pad=1
activation=linear

[shortcut]
from=-2
activation=leaky

[maxpool]
size=2
stride=1

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[yolo]
mask = 2,3,4
anchors = 4,5, 7,9, 10,14, 16,12, 20,24, 30,28
classes=2
num=6

[route]
layers = -3

[convolutional]
batch_normalize=1
filters=4
size=1
stride=1
pad=1
activation=logistic

[upsample]
stride=2

[route]
layers = -1, 1

[convolutional]
size=1
stride=1
pad=1
filters=14
activation=linear

[yolo]
mask = 0,1
anchors = 4,5, 7,9, 10,14, 16,12, 20,24, 30,28
classes=2
num=6
"""
open(os.path.join(d, "tiny.cfg"), "w").write(cfg)
open(os.path.join(d, "tiny.names"), "w").write("circle\nsquare\n")
# Weights in darknet's order, for the convolutions of the cfg: (filters, in channels, size, bn).
convs = [(8, 3, 3, 1), (16, 8, 3, 1), (16, 16, 1, 0), (21, 16, 1, 0), (4, 16, 1, 1), (14, 4 + 8, 1, 0)]
parts = [np.array([0, 2, 0], "<i4").tobytes(), np.array([12345], "<u8").tobytes()]
for n, c, k, bn in convs:
    parts.append(rng.normal(-0.5, 0.5, n).astype("<f4").tobytes())  # biases
    if bn:
        parts.append(rng.uniform(0.5, 1.5, n).astype("<f4").tobytes())  # scales
        parts.append(rng.normal(0, 0.2, n).astype("<f4").tobytes())  # rolling mean
        parts.append(rng.uniform(0.5, 2.0, n).astype("<f4").tobytes())  # rolling variance
    parts.append(rng.normal(0, 0.6 / np.sqrt(c * k * k), n * c * k * k).astype("<f4").tobytes())
open(os.path.join(d, "tiny.weights"), "wb").write(b"".join(parts))
img = rng.integers(0, 256, (29, 37, 3), dtype=np.uint8)
Image.fromarray(img).save(os.path.join(d, "image.png"))

net = ref.Net(os.path.join(d, "tiny.cfg"), os.path.join(d, "tiny.weights"))
x = ref.letterbox(ref.load_image(os.path.join(d, "image.png")), net.w, net.h)
yolo = net.forward(x)
det = ref.detect(net, os.path.join(d, "image.png"), ["circle", "square"], 0.25, 0.45, [])
det["image"] = "image.png"
json.dump({"input": x.ravel().tolist(),
           "yolo": [v.ravel().tolist() for v, _ in yolo],
           "detections": det}, open(os.path.join(d, "reference.json"), "w"))

photos = os.path.join(repo, "data", "darknet-photos")
model = os.path.join(repo, "data", "yolov3-tiny")
if os.path.isdir(photos) and os.path.isdir(model):
    net = ref.Net(os.path.join(model, "yolov3-tiny.cfg"), os.path.join(model, "yolov3-tiny.weights"))
    names = [l.strip() for l in open(os.path.join(model, "coco.names"))]
    out = []
    for f in sorted(os.listdir(photos)):
        r = ref.detect(net, os.path.join(photos, f), names, 0.25, 0.45, [])
        r["image"] = f
        del r["seconds"]
        out.append(r)
    json.dump(out, open(os.path.join(fix, "yolov3_tiny_reference.json"), "w"), indent=1)
    print("YOLOv3-tiny on", len(out), "photos:", sum(len(r["detections"]) for r in out), "detections")
print("wrote", d)
