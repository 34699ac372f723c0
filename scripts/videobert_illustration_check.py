#!/usr/bin/env python3
"""How often `tessera videobert illustrate` draws the object a sentence names.

For every object of the generated corpus, the sentence "the next step is to VERB the OBJECT"
(VERB a fixed verb phrase) is illustrated with one visual word; the clip drawn for it is looked
up in the corpus's groundtruth.jsonl, and the step that clip lies in names an object. Prints
per object what was drawn and the share of sentences whose drawn clip shows their object
(chance: the share of clips showing it, printed beside).

    python scripts/videobert_illustration_check.py TESSERA MODEL FEATURES CORPUS [--verb drop]

TESSERA is the binary, MODEL a `videobert pretrain` run directory, FEATURES the corpus's clip
features (`tessera video features`), CORPUS a `tessera data videos` directory.
"""
import argparse
import collections
import json
import os
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tessera")
    ap.add_argument("model")
    ap.add_argument("features")
    ap.add_argument("corpus")
    ap.add_argument("--verb", default="drop", help="verb phrase of the sentences (default: drop)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.threads < 1:
        sys.exit("--threads must be at least 1")
    truth_path = os.path.join(a.corpus, "groundtruth.jsonl")
    if not os.path.isfile(truth_path):
        sys.exit(f"{a.corpus}: no groundtruth.jsonl (not a `tessera data videos` directory?)")
    steps = {}
    clip_objects = collections.Counter()
    with open(truth_path) as f:
        for n, line in enumerate(f, 1):
            try:
                d = json.loads(line)
                steps[d["video"]] = [(s["start"], s["end"], s["object"]) for s in d["steps"]]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                sys.exit(f"{truth_path}:{n}: not a video with steps ({e})")
    for spans in steps.values():
        for start, end, obj in spans:
            clip_objects[obj] += end - start
    total = sum(clip_objects.values())
    if total <= 0:
        sys.exit(f"{truth_path}: no step with a positive length, nothing to illustrate")
    objects = sorted(clip_objects)
    out = os.path.join(a.model, ".illustration-check.png")
    right = 0
    for obj in objects:
        text = f"the next step is to {a.verb} the {obj}"
        p = subprocess.run(
            [a.tessera, "videobert", "illustrate", "--model", a.model, "--text", text,
             "--words", "1", "--features", a.features, "--videos", a.corpus, "--output", out,
             "--threads", str(a.threads), "--json"],
            capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"illustrate failed for {text!r}: {p.stderr.strip()}")
        clip = json.loads(p.stdout.splitlines()[0])["clips"][0]
        middle = (clip["start"] + clip["end"]) / 2
        drawn = next((o for s, e, o in steps.get(clip["video"], []) if s <= middle < e), "none")
        right += drawn == obj
        print(f"{obj:>10}: drew {drawn} ({clip['video']} {clip['start']}-{clip['end']} s; "
              f"chance {clip_objects[obj] / total:.3f})")
    if os.path.exists(out):
        os.remove(out)
    print(f"{right} of {len(objects)} sentences drawn with their object "
          f"({right / len(objects):.2f}; chance about {1 / len(objects):.2f})")


if __name__ == "__main__":
    main()
