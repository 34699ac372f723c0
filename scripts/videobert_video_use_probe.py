"""Does a VideoBERT run use the video? Loads a `tessera videobert pretrain` run directory with
transformers (`BertForPreTraining`) and masks the object word of narration sentences of a
generated corpus, each followed by the visual words of its own clips, by none (the text-only
layout), and by the words of another sentence's clips; prints the mean probability of the true
object word in each case (objects of one word piece).

    python scripts/videobert_video_use_probe.py RUN_DIR WORDS_JSONL [--sentences 200]

WORDS_JSONL: `tessera video tokenize` output (or scripts/oracle_visual_words.py's) of the corpus;
the object is the narration's word from the generated corpus's object names.
"""

import argparse
import json
import random

import torch
from transformers import BertForPreTraining, BertTokenizerFast

OBJECTS = ["ankle boot", "bag", "coat", "dress", "eight", "five", "four", "nine", "one",
           "pullover", "sandal", "seven", "shirt", "six", "sneaker", "t-shirt", "three",
           "trouser", "two", "zero"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("words")
    ap.add_argument("--sentences", type=int, default=200)
    a = ap.parse_args()
    model = BertForPreTraining.from_pretrained(a.run).eval()
    tok = BertTokenizerFast.from_pretrained(a.run)
    text_vocab = json.load(open(f"{a.run}/config.json"))["text_vocab_size"]
    items = []
    for line in open(a.words):
        v = json.loads(line)
        for seg in v["narration"]:
            words = [w for w, (s, e) in zip(v["words"], v["times"]) if s < seg["end"] and e > seg["start"]]
            obj = next((o for o in OBJECTS if f" {o} " in f" {seg['text']} "), None)
            # Objects of one word piece: a later piece is given away by the earlier ones.
            if words and obj and len(tok.tokenize(obj)) == 1:
                items.append((seg["text"], obj, words))
    rng = random.Random(0)
    rng.shuffle(items)
    items = items[: a.sentences]

    def p_object(text, obj, words):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        target = tok(obj, add_special_tokens=False)["input_ids"][-1]
        pos = len(ids) - 1 - ids[::-1].index(target)
        ids[pos] = tok.mask_token_id
        seq = [tok.cls_token_id] + ids
        types = [0] * len(seq)
        if words is not None:
            seq += [text_vocab] + [text_vocab + 1 + w for w in words]
            types += [1] * (len(words) + 1)
        seq.append(tok.sep_token_id)
        types.append(int(words is not None))
        with torch.no_grad():
            out = model(input_ids=torch.tensor([seq]), token_type_ids=torch.tensor([types]))
        return float(torch.softmax(out.prediction_logits[0, pos + 1, :text_vocab], -1)[target])

    own = none = other = 0.0
    for k, (text, obj, words) in enumerate(items):
        own += p_object(text, obj, words)
        none += p_object(text, obj, None)
        other += p_object(text, obj, items[(k + 1) % len(items)][2])
    n = len(items)
    print(
        f"{n} sentences: mean p(object) with its own clips' words {own / n:.4f}, "
        f"no video {none / n:.4f}, another sentence's words {other / n:.4f}"
    )


if __name__ == "__main__":
    main()
