#!/usr/bin/env python3
"""What a generated corpus's visual words say about its steps, read with the labels.

A naive-Bayes classifier from each training step's visual words (the clips whose span lies at
least half inside the step) to its verb and its object, counted on the training split and scored
on the test split: top-1 and top-5 per step. It sees the labels, which VideoBERT's zero-shot
never does, so it is a reference for how much of a step the words carry, not a rival.

    python scripts/visual_word_ceiling.py TRAIN_WORDS TRAIN_CORPUS TEST_WORDS TEST_CORPUS

WORDS is `tessera video tokenize` JSONL; CORPUS a `tessera data videos` directory (its
groundtruth.jsonl).
"""
import argparse
import collections
import json
import math
import os
import sys


def read_jsonl(path):
    out = []
    if not os.path.isfile(path):
        sys.exit(f"{path}: no such file")
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON ({e})")
            if not isinstance(out[-1], dict):
                sys.exit(f"{path}:{n}: not a JSON object")
    return out


def steps(words_path, corpus):
    truth_path = os.path.join(corpus, "groundtruth.jsonl")
    if not os.path.isfile(truth_path):
        sys.exit(f"{corpus}: no groundtruth.jsonl (not a `tessera data videos` directory?)")
    truth = {d["video"]: d for d in read_jsonl(truth_path)}
    out = []
    for n, d in enumerate(read_jsonl(words_path), 1):
        for field in ("video", "words", "times"):
            if field not in d:
                sys.exit(f"{words_path}:{n}: no field {field!r}")
        if d["video"] not in truth:
            sys.exit(f"{words_path}:{n}: video {d['video']!r} is not in {truth_path}")
        for s in truth[d["video"]]["steps"]:
            inside = [
                w
                for w, (a, b) in zip(d["words"], d["times"])
                if min(b, s["end"]) - max(a, s["start"]) >= 0.5 * (b - a)
            ]
            out.append((inside, s["verb"], s["object"]))
    if not out:
        sys.exit(f"{words_path}: no step of {corpus} has visual words")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("train_words", "train_corpus", "test_words", "test_corpus"):
        ap.add_argument(name)
    a = ap.parse_args()
    train = steps(a.train_words, a.train_corpus)
    test = steps(a.test_words, a.test_corpus)
    print(f"{len(train)} training steps, {len(test)} test steps, "
          f"{sum(len(s[0]) for s in test) / len(test):.2f} words a test step")
    for slot, name in ((1, "verb"), (2, "object")):
        labels = sorted({s[slot] for s in train})
        prior = collections.Counter(s[slot] for s in train)
        counts = collections.defaultdict(collections.Counter)
        for s in train:
            for w in s[0]:
                counts[w][s[slot]] += 1
        total = sum(prior.values())
        hits = [0, 0]
        for s in test:
            def score(c):
                # log P(c) + sum over words of log P(c | w) / P(c), add-half smoothed.
                p = (prior[c] + 1) / (total + len(labels))
                out = math.log(p)
                for w in s[0]:
                    n = sum(counts[w].values())
                    out += math.log((counts[w][c] + 0.5) / (n + 0.5 * len(labels))) - math.log(p)
                return out
            order = sorted(labels, key=lambda c: (-score(c), c))
            hits[0] += order[0] == s[slot]
            hits[1] += s[slot] in order[:5]
        print(f"{name}: {len(labels)} labels, top-1 {hits[0] / len(test):.3f}, "
              f"top-5 {hits[1] / len(test):.3f} (chance {1 / len(labels):.3f} / "
              f"{min(1, 5 / len(labels)):.3f})")


if __name__ == "__main__":
    main()
