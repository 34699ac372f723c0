#!/usr/bin/env python3
"""An independent YOLO (darknet) detector in numpy, written from darknet's definitions
(pjreddie/darknet 61c9d02e: parser.c, image.c, convolutional_layer.c, blas.c, maxpool_layer.c,
upsample_layer.c, route_layer.c, yolo_layer.c, box.c, detector.c), not from Tessera's code: the
reference Tessera's `detect` is checked against (tests/detect.rs) and timed beside
(bench/detect_vs_darknet.sh).

    python scripts/yolo_reference.py --model data/yolov3-tiny IMAGE... [--threshold 0.25]
        [--nms 0.45] [--out detections.jsonl] [--repeat N]

Prints (or writes) one JSON object per image: image, width, height, detections (box x1, y1, x2,
y2 in pixels clamped to the image, label, class_id, score), and the seconds of the forward pass.
Needs numpy and pillow.
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np
from PIL import Image


def parse_cfg(path):
    sections = []
    for raw in open(path, encoding="latin-1"):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            sections.append((line[1:-1], {}))
        else:
            k, v = line.split("=", 1)
            sections[-1][1][k] = v
    return sections


def load_image(path):
    """RGB floats in [0, 1], planar (C, H, W), as darknet's load_image_color."""
    im = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return np.ascontiguousarray(im.transpose(2, 0, 1))


def resize_image(im, w, h):
    """darknet's resize_image: corner-aligned bilinear, columns then rows, float32."""
    c, ih, iw = im.shape
    part = np.zeros((c, ih, w), np.float32)
    w_scale = np.float32(iw - 1) / np.float32(w - 1) if w > 1 else np.float32(0)
    h_scale = np.float32(ih - 1) / np.float32(h - 1) if h > 1 else np.float32(0)
    for col in range(w):
        if col == w - 1 or iw == 1:
            part[:, :, col] = im[:, :, iw - 1]
        else:
            sx = np.float32(col) * w_scale
            ix = int(sx)
            dx = np.float32(sx - np.float32(ix))
            part[:, :, col] = (np.float32(1) - dx) * im[:, :, ix] + dx * im[:, :, ix + 1]
    out = np.zeros((c, h, w), np.float32)
    for r in range(h):
        sy = np.float32(r) * h_scale
        iy = int(sy)
        dy = np.float32(sy - np.float32(iy))
        out[:, r, :] = (np.float32(1) - dy) * part[:, iy, :]
        if r == h - 1 or ih == 1:
            continue
        out[:, r, :] = out[:, r, :] + dy * part[:, iy + 1, :]
    return out


def letterbox_dims(w, h, netw, neth):
    if netw / w < neth / h:
        return netw, max(1, (h * netw) // w)
    return max(1, (w * neth) // h), neth


def letterbox(im, netw, neth):
    c, h, w = im.shape
    nw, nh = letterbox_dims(w, h, netw, neth)
    resized = resize_image(im, nw, nh)
    boxed = np.full((c, neth, netw), 0.5, np.float32)
    dx, dy = (netw - nw) // 2, (neth - nh) // 2
    boxed[:, dy:dy + nh, dx:dx + nw] = resized
    return boxed


def conv2d(x, w, stride, pad):
    """Cross-correlation of x (C, H, W) with w (N, C, k, k) by im2col and a float32 product."""
    c, h, wd = x.shape
    n, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - k) // stride + 1
    ow = (wd + 2 * pad - k) // stride + 1
    cols = np.empty((c, k, k, oh, ow), np.float32)
    for i in range(k):
        for j in range(k):
            cols[:, i, j] = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
    out = w.reshape(n, -1) @ cols.reshape(c * k * k, oh * ow)
    return out.reshape(n, oh, ow)


def activate(x, kind):
    if kind == "leaky":
        return np.where(x > 0, x, np.float32(0.1) * x)
    if kind == "linear":
        return x
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "logistic":
        return 1 / (1 + np.exp(-x))
    if kind == "mish":
        return x * np.tanh(np.log1p(np.exp(x)))
    raise SystemExit(f"activation {kind} not implemented in the reference")


class Net:
    def __init__(self, cfg, weights):
        sections = parse_cfg(cfg)
        net = sections[0][1]
        self.w, self.h, self.c = int(net["width"]), int(net["height"]), int(net.get("channels", 3))
        self.layers = []
        data = np.fromfile(weights, dtype=np.uint8)
        major, minor, _rev = np.frombuffer(data[:12].tobytes(), "<i4")
        pos = 20 if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000 else 16
        floats = lambda n: np.frombuffer(data[pos:pos + 4 * n].tobytes(), "<f4").astype(np.float32)
        c, h, w = self.c, self.h, self.w
        shapes = []
        for name, o in sections[1:]:
            i = len(self.layers)
            if name in ("convolutional", "conv"):
                n, k = int(o.get("filters", 1)), int(o.get("size", 1))
                s = int(o.get("stride", 1))
                p = k // 2 if int(o.get("pad", 0)) else int(o.get("padding", 0))
                bn = int(o.get("batch_normalize", 0))
                L = {"type": "conv", "stride": s, "pad": p, "act": o.get("activation", "logistic")}
                L["bias"] = floats(n); pos += 4 * n
                if bn:
                    L["scales"] = floats(n); pos += 4 * n
                    L["mean"] = floats(n); pos += 4 * n
                    L["var"] = floats(n); pos += 4 * n
                L["w"] = floats(n * c * k * k).reshape(n, c, k, k); pos += 4 * n * c * k * k
                L["bn"] = bn
                c, h, w = n, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            elif name in ("maxpool", "max"):
                s = int(o.get("stride", 1))
                k = int(o.get("size", s))
                p = int(o.get("padding", k - 1))
                L = {"type": "max", "size": k, "stride": s, "pad": p}
                h, w = (h + p - k) // s + 1, (w + p - k) // s + 1
                L["out"] = (h, w)
            elif name == "upsample":
                s = int(o.get("stride", 2))
                L = {"type": "up", "stride": s}
                h, w = h * s, w * s
            elif name == "route":
                idx = [int(v) for v in o["layers"].split(",")]
                idx = [i + v if v < 0 else v for v in idx]
                L = {"type": "route", "layers": idx}
                c = sum(shapes[j][0] for j in idx)
                h, w = shapes[idx[0]][1:]
            elif name == "shortcut":
                f = int(o["from"])
                L = {"type": "shortcut", "from": i + f if f < 0 else f, "act": o.get("activation", "linear")}
            elif name == "yolo":
                anchors = [int(v) for v in o["anchors"].split(",")]
                mask = [int(v) for v in o["mask"].split(",")]
                L = {"type": "yolo", "classes": int(o["classes"]),
                     "anchors": [(anchors[2 * m], anchors[2 * m + 1]) for m in mask]}
            else:
                raise SystemExit(f"layer {name} not implemented in the reference")
            self.layers.append(L)
            shapes.append((c, h, w))
        if pos != len(data):
            raise SystemExit(f"{weights}: {len(data) - pos} bytes left after the last layer")

    def forward(self, x):
        outs, yolo = [], []
        for L in self.layers:
            t = L["type"]
            if t == "conv":
                y = conv2d(x, L["w"], L["stride"], L["pad"])
                if L["bn"]:
                    # blas.c normalize_cpu, then scale_bias and add_bias
                    y = (y - L["mean"][:, None, None]) / (np.sqrt(L["var"])[:, None, None] + np.float32(0.000001))
                    y = y * L["scales"][:, None, None]
                y = y + L["bias"][:, None, None]
                x = activate(y.astype(np.float32), L["act"])
            elif t == "max":
                k, s, p = L["size"], L["stride"], L["pad"]
                oh, ow = L["out"]
                off = -(p // 2)
                c, h, w = x.shape
                y = np.full((c, oh, ow), -np.finfo(np.float32).max, np.float32)
                for n in range(k):
                    for m in range(k):
                        for i in range(oh):
                            ch = off + i * s + n
                            if ch < 0 or ch >= h:
                                continue
                            cw = off + np.arange(ow) * s + m
                            ok = (cw >= 0) & (cw < w)
                            y[:, i, ok] = np.maximum(y[:, i, ok], x[:, ch, cw[ok]])
                x = y
            elif t == "up":
                s = L["stride"]
                x = x.repeat(s, axis=1).repeat(s, axis=2)
            elif t == "route":
                x = np.concatenate([outs[j] for j in L["layers"]], axis=0)
            elif t == "shortcut":
                x = activate(x + outs[L["from"]], L["act"])
            elif t == "yolo":
                na, nc = len(L["anchors"]), L["classes"]
                c, h, w = x.shape
                v = x.reshape(na, 5 + nc, h, w).copy()
                logistic = lambda a: 1 / (1 + np.exp(-a))
                v[:, 0:2] = logistic(v[:, 0:2])
                v[:, 4:] = logistic(v[:, 4:])
                yolo.append((v, L))
            outs.append(x)
        return yolo


def detect(net, path, names, thresh, nms, timings):
    im = load_image(path)
    _, h, w = im.shape
    x = letterbox(im, net.w, net.h)
    t0 = time.perf_counter()
    yolo = net.forward(x)
    timings.append(time.perf_counter() - t0)
    dets = []  # [x, y, w, h, objectness, probs]
    for v, L in yolo:
        na, _, lh, lw = v.shape
        for i in range(lh * lw):
            row, col = divmod(i, lw)
            for n in range(na):
                obj = v[n, 4, row, col]
                if obj <= thresh:
                    continue
                bx = (col + v[n, 0, row, col]) / lw
                by = (row + v[n, 1, row, col]) / lh
                bw = np.exp(v[n, 2, row, col]) * L["anchors"][n][0] / net.w
                bh = np.exp(v[n, 3, row, col]) * L["anchors"][n][1] / net.h
                probs = obj * v[n, 5:, row, col]
                probs = np.where(probs > thresh, probs, 0).astype(np.float32)
                dets.append([np.float32(bx), np.float32(by), np.float32(bw), np.float32(bh), obj, probs])
    # correct_yolo_boxes
    nw, nh = letterbox_dims(w, h, net.w, net.h)
    for d in dets:
        d[0] = np.float32((float(d[0]) - (net.w - nw) / 2.0 / net.w) / float(np.float32(nw) / np.float32(net.w)))
        d[1] = np.float32((float(d[1]) - (net.h - nh) / 2.0 / net.h) / float(np.float32(nh) / np.float32(net.h)))
        d[2] = np.float32(d[2] * np.float32(net.w / nw))
        d[3] = np.float32(d[3] * np.float32(net.h / nh))

    def iou(a, b):
        def ov(x1, w1, x2, w2):
            return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
        iw, ih = ov(a[0], a[2], b[0], b[2]), ov(a[1], a[3], b[1], b[3])
        inter = 0 if iw < 0 or ih < 0 else iw * ih
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)

    classes = len(dets[0][5]) if dets else 0
    for k in range(classes):
        dets.sort(key=lambda d: -d[5][k])
        for i in range(len(dets)):
            if dets[i][5][k] == 0:
                continue
            for j in range(i + 1, len(dets)):
                if iou(dets[i], dets[j]) > nms:
                    dets[j][5][k] = 0
    out = []
    for d in dets:
        for k, p in enumerate(d[5]):
            if p > thresh:
                clamp = lambda v, hi: float(min(max(v, 0.0), hi - 1))
                out.append({
                    "box": [clamp((d[0] - d[2] / 2) * w, w), clamp((d[1] - d[3] / 2) * h, h),
                            clamp((d[0] + d[2] / 2) * w, w), clamp((d[1] + d[3] / 2) * h, h)],
                    "label": names[k], "class_id": k, "score": float(p)})
    out.sort(key=lambda o: -o["score"])
    return {"image": path, "width": w, "height": h, "detections": out, "seconds": timings[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="directory with one .cfg, .weights and .names")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--threshold", type=float, default=0.25)
    ap.add_argument("--nms", type=float, default=0.45)
    ap.add_argument("--out")
    ap.add_argument("--repeat", type=int, default=1, help="detect every image this many times (timing)")
    a = ap.parse_args()
    one = lambda ext: glob.glob(os.path.join(a.model, "*." + ext))[0]
    net = Net(one("cfg"), one("weights"))
    names = [l.strip() for l in open(one("names"))]
    timings, results = [], []
    for _ in range(a.repeat):
        results = [detect(net, p, names, a.threshold, a.nms, timings) for p in a.images]
    text = "".join(json.dumps(r) + "\n" for r in results)
    if a.out:
        open(a.out, "w").write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
