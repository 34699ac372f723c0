"""Visual words that name each clip's step, for a generated video corpus (`tessera data videos`):
the upper bound of what a codebook can give VideoBERT, and a purity sweep below it.

    python scripts/oracle_visual_words.py CORPUS OUT_DIR [--noise P] [--clip-seconds 1.5] [--seed 0]
        [--features FEATURE_DIR] [--name step|object]

Writes OUT_DIR/words.jsonl (the format of `tessera video tokenize`: one line per video with its
clips' words, their times and the narration) and OUT_DIR/codebook.safetensors (one level of 196
words). A clip's word is verb * 20 + object of the step its middle falls in (180 words used);
with probability --noise it is replaced by a word drawn uniformly, so the word's purity falls.
With --name object a clip's word is its step's object alone (20 words used of a vocabulary of
20): each word then meets about ten times as many sentences in the same training, which shows
how much of the shortfall is examples per word. The codebook's centroids are random (only the vocabulary size matters to `videobert pretrain`),
or with --features (`tessera video features` of the corpus) each word's mean clip feature, so
that `videobert illustrate` shows clips of the word's verb and object.
"""

import argparse
import csv
import json
import math
import os

import numpy as np
from safetensors.numpy import save_file

VERBS = ["slide left", "slide right", "lift", "drop", "spin", "grow", "shrink", "fade", "flip"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--clip-seconds", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features")
    ap.add_argument("--name", choices=["step", "object"], default="step")
    a = ap.parse_args()
    if not 0.0 <= a.noise <= 1.0:
        ap.error(f"--noise must be a probability in [0, 1], got {a.noise}")
    if not (math.isfinite(a.clip_seconds) and a.clip_seconds > 0):
        ap.error(f"--clip-seconds must be a finite number greater than 0, got {a.clip_seconds}")
    rng = np.random.default_rng(a.seed)
    truth = [json.loads(l) for l in open(os.path.join(a.corpus, "groundtruth.jsonl")) if l.strip()]
    objects = sorted({s["object"] for v in truth for s in v["steps"]})
    levels, k = 1, (196 if a.name == "step" else len(objects))
    words_total = k**levels

    def word(step):
        o = objects.index(step["object"])
        return o if a.name == "object" else VERBS.index(step["verb"]) * len(objects) + o
    narration = {}
    with open(os.path.join(a.corpus, "narration.tsv")) as f:
        for row in csv.reader(f, delimiter="\t"):
            if not row or row[0].startswith("#"):
                continue
            narration.setdefault(row[0], []).append(
                {"start": float(row[1]), "end": float(row[2]), "text": row[3]}
            )
    os.makedirs(a.out, exist_ok=True)
    kept = 0
    with open(os.path.join(a.out, "words.jsonl"), "w") as out:
        for v in truth:
            n = int(v["duration"] // a.clip_seconds)
            words, times = [], []
            for c in range(n):
                t0, t1 = c * a.clip_seconds, (c + 1) * a.clip_seconds
                mid = (t0 + t1) / 2
                step = next((s for s in v["steps"] if s["start"] <= mid < s["end"]), None)
                if step is None:
                    continue
                w = word(step)
                if rng.random() < a.noise:
                    w = int(rng.integers(words_total))
                else:
                    kept += 1
                words.append(w)
                times.append([t0, t1])
            out.write(
                json.dumps(
                    {
                        "video": v["video"],
                        "duration": v["duration"],
                        "words": words,
                        "times": times,
                        "narration": narration.get(v["video"], []),
                    }
                )
                + "\n"
            )
    if a.features:
        from safetensors.numpy import load_file

        sums, counts = None, np.zeros(words_total, dtype=np.float32)
        for v in truth:
            f = load_file(os.path.join(a.features, v["video"] + ".safetensors"))
            for row, (t0, t1) in zip(f["features"], f["times"]):
                mid = (t0 + t1) / 2
                step = next((s for s in v["steps"] if s["start"] <= mid < s["end"]), None)
                if step is None:
                    continue
                w = word(step)
                if sums is None:
                    sums = np.zeros((words_total, row.shape[0]), dtype=np.float64)
                sums[w] += row
                counts[w] += 1
        mean = sums.sum(0) / counts.sum()
        centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], mean)
        centres = centres.astype(np.float32)
    else:
        centres = rng.standard_normal((words_total, 16)).astype(np.float32)
        counts = np.ones(words_total, dtype=np.float32)
    tensors = {"centres.0": centres, "counts.0": counts}
    meta = {
        "format": "tessera-hierarchical-kmeans",
        "levels": str(levels),
        "k": str(k),
        "dim": str(centres.shape[1]),
    }
    save_file(tensors, os.path.join(a.out, "codebook.safetensors"), metadata=meta)
    print(f"{len(truth)} videos, {len(objects)} objects, {kept} clips kept their step's word")


if __name__ == "__main__":
    main()
