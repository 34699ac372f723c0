"""How many examples does a MiniLM-initialised VideoBERT need to read a visual word? A check in
PyTorch (transformers), outside Tessera: sentences "now let me show you how to VERB the [MASK]"
followed by `[>]` and two visual words that name the masked object (one new embedding row per
object, or --rows-per-object rows), the object masked in every sentence, so that every example
carries the link. Prints held-out accuracy of the masked object as training goes.

    python scripts/videobert_binding_check.py [--minilm data/minilm] [--rows-per-object 1]
        [--lr 5e-4] [--steps 300] [--batch 32] [--threads 2]

In VideoBERT's pretraining only a masked object of an aligned joint sequence carries the link
(about 3 of the 32 sequences of a batch); compare the examples this check needs with the
examples a pretraining run gives each visual word.
"""

import argparse
import math
import random
import time

import torch
from transformers import BertForMaskedLM, BertTokenizerFast

OBJECTS = ["bag", "coat", "dress", "eight", "five", "four", "nine", "one", "seven", "shirt",
           "six", "sneaker", "three", "two", "zero", "sandal", "trouser", "pullover"]
VERBS = ["drop", "lift", "flip", "spin", "fade"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minilm", default="data/minilm")
    ap.add_argument("--rows-per-object", type=int, default=1)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    for name in ("rows_per_object", "steps", "batch", "threads"):
        if getattr(a, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    if not (math.isfinite(a.lr) and a.lr > 0):
        ap.error(f"--lr must be a finite number greater than 0, got {a.lr}")
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    torch.set_num_threads(a.threads)
    tok = BertTokenizerFast.from_pretrained(a.minilm)
    object_ids = tok.convert_tokens_to_ids(OBJECTS)
    model = BertForMaskedLM.from_pretrained(a.minilm)
    text_vocab = model.config.vocab_size
    rows = a.rows_per_object
    model.resize_token_embeddings(text_vocab + 1 + len(OBJECTS) * rows)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)

    def batch(n):
        ids, types, labels = [], [], []
        for _ in range(n):
            o = rng.randrange(len(OBJECTS))
            text = tok(f"now let me show you how to {rng.choice(VERBS)} the",
                       add_special_tokens=False)["input_ids"]
            word = text_vocab + 1 + o * rows + rng.randrange(rows)
            seq = [tok.cls_token_id] + text + [tok.mask_token_id, text_vocab, word, word,
                                                tok.sep_token_id]
            label = [-100] * len(seq)
            label[len(text) + 1] = object_ids[o]
            ids.append(seq)
            types.append([0] * (len(text) + 2) + [1] * 4)
            labels.append(label)
        return torch.tensor(ids), torch.tensor(types), torch.tensor(labels)

    start = time.time()
    model.train()
    for step in range(1, a.steps + 1):
        ids, types, labels = batch(a.batch)
        loss = model(input_ids=ids, token_type_ids=types, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                ids, types, labels = batch(256)
                logits = model(input_ids=ids, token_type_ids=types).logits
                at = labels != -100
                acc = (logits[at].argmax(-1) == labels[at]).float().mean().item()
            model.train()
            print(f"step {step:4d}  examples {step * a.batch:6d}  loss {loss.item():.3f}  "
                  f"held-out accuracy {acc:.3f}  ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
