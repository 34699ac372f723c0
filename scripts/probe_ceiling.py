#!/usr/bin/env python3
"""How much of a step's verb and object its clip features hold, read with the labels.

Supervised classifiers from each training step's clip features to its verb and its object,
scored on the test split's steps: logistic regression over a range of C, MLPs and an RBF SVM on
the step's mean clip feature, and logistic regression on richer poolings (mean and max of the
step's clips; the step's mean beside the whole video's). A step's clips are those `tessera cbt
probe` takes (`video::spans::segment_clips`: middles inside the step, else those overlapping it).
The classifiers see the labels, so they bound what any representation of the same features can
give a linear probe: `cbt probe` on CBT's features is read against them (docs/results.md, CBT).

    python scripts/probe_ceiling.py TRAIN_FEATURES TRAIN_CORPUS TEST_FEATURES TEST_CORPUS

FEATURES is a `tessera video features` directory (<video>.safetensors with `features` and
`times`); CORPUS a `tessera data videos` directory (its groundtruth.jsonl). Needs numpy,
safetensors and scikit-learn.
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


def step_clips(times, start, end):
    mid = times.mean(1)
    inside = np.where((mid >= start) & (mid < end))[0]
    if len(inside):
        return inside
    return np.where((times[:, 0] < end) & (times[:, 1] > start))[0]


def read_steps(feature_dir, corpus):
    """(step clips [n, d], whole video [T, d], verb, object) per step with clips."""
    path = os.path.join(corpus, "groundtruth.jsonl")
    if not os.path.isfile(path):
        sys.exit(f"{path}: no such file (not a `tessera data videos` directory?)")
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                g = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: {e}")
            fp = os.path.join(feature_dir, f"{g['video']}.safetensors")
            if not os.path.isfile(fp):
                continue
            d = load_file(fp)
            x, times = d["features"], d["times"].astype(float)
            for s in g["steps"]:
                c = step_clips(times, s["start"], s["end"])
                if len(c):
                    out.append((x[c], x, s["verb"], s["object"]))
    if not out:
        sys.exit(f"no step of {path} has clips in {feature_dir}")
    return out


POOLINGS = {
    "mean": lambda step, video: step.mean(0),
    "mean and max": lambda step, video: np.concatenate([step.mean(0), step.max(0)]),
    "mean beside the video's mean": lambda step, video: np.concatenate(
        [step.mean(0), video.mean(0)]),
}


def classifiers():
    for c in [0.01, 0.1, 1.0, 10.0]:
        yield "mean", f"logistic regression C={c}", LogisticRegression(C=c, max_iter=3000)
    for pooling in ["mean and max", "mean beside the video's mean"]:
        yield pooling, "logistic regression C=1", LogisticRegression(max_iter=3000)
    for hidden, alpha in [((512,), 1e-3), ((1024,), 1e-2), ((512, 512), 1e-3)]:
        yield "mean", f"MLP {hidden} alpha={alpha}", MLPClassifier(
            hidden, alpha=alpha, max_iter=300, early_stopping=True, random_state=0)
    yield "mean", "RBF SVM C=10", SVC(C=10.0)


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    train = read_steps(sys.argv[1], sys.argv[2])
    test = read_steps(sys.argv[3], sys.argv[4])
    print(f"{len(train)} training steps, {len(test)} test steps")
    print(f"{'pooling':<30} {'classifier':<36} {'verb':>6} {'object':>6}")
    for pooling, name, clf in classifiers():
        pool = POOLINGS[pooling]
        xtr = np.array([pool(s, v) for s, v, _, _ in train])
        xte = np.array([pool(s, v) for s, v, _, _ in test])
        scores = []
        for k in (2, 3):
            ytr = [r[k] for r in train]
            yte = [r[k] for r in test]
            m = make_pipeline(StandardScaler(), clf).fit(xtr, ytr)
            scores.append(m.score(xte, yte))
        print(f"{pooling:<30} {name:<36} {scores[0]:>6.3f} {scores[1]:>6.3f}", flush=True)


if __name__ == "__main__":
    main()
