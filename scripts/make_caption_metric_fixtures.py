"""Caption-metric fixture: pycocoevalcap 1.2 (PTB tokenizer, BLEU, METEOR, ROUGE-L, CIDEr) on
random captions, for tests/core.rs. Usage: python scripts/make_caption_metric_fixtures.py OUT_DIR
(needs `pip install pycocoevalcap==1.2` and Java for the tokenizer and METEOR)."""
import json
import random
import sys

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

out = sys.argv[1]
rng = random.Random(0)
verbs = ["slide", "lift", "drop", "spin", "grow", "shrink", "fade", "flip", "cut", "mix"]
objects = ["the seven", "a shirt", "the bag", "an ankle boot", "the zero", "some onions", "a pan"]
fillers = ["now", "then", "slowly", "carefully", "okay", "so", "we", "and", "you", "it"]
punct = [".", ",", "!", "?", ";", ":", " -", "..."]


def sentence():
    words = [rng.choice(fillers) for _ in range(rng.randint(0, 3))]
    words += [rng.choice(verbs), rng.choice(objects)]
    words += [rng.choice(fillers) for _ in range(rng.randint(0, 4))]
    rng.shuffle(words) if rng.random() < 0.2 else None
    text = " ".join(words)
    if rng.random() < 0.3:
        text = text.capitalize()
    if rng.random() < 0.3:
        text = text.replace(" it ", " it's ", 1).replace(" we ", " we'll ", 1)
    if rng.random() < 0.2:
        text = text.replace(" you ", " (you) ", 1).replace("now", "don't", 1)
    if rng.random() < 0.7:
        text += rng.choice(punct)
    if rng.random() < 0.2:
        text = text.replace(" ", ", ", 1)
    return text


items = []
for i in range(60):
    refs = [sentence() for _ in range(rng.randint(1, 5))]
    if rng.random() < 0.3:
        cand = refs[0]
    else:
        cand = sentence()
    items.append({"id": i, "candidate": cand, "references": refs})
items[7]["candidate"] = "."  # tokenizes to an empty caption
items[8]["candidate"] = "flip"

gts = {it["id"]: [{"caption": r} for r in it["references"]] for it in items}
res = {it["id"]: [{"caption": it["candidate"]}] for it in items}
tok = PTBTokenizer()
gts_t = tok.tokenize(gts)
res_t = tok.tokenize(res)
for it in items:
    it["candidate_tokens"] = res_t[it["id"]][0]
    it["references_tokens"] = gts_t[it["id"]]

bleu, _ = Bleu(4).compute_score(gts_t, res_t, verbose=0)
meteor, _ = Meteor().compute_score(gts_t, res_t)
rouge, rouge_each = Rouge().compute_score(gts_t, res_t)
cider, cider_each = Cider().compute_score(gts_t, res_t)
scores = {
    "bleu": list(bleu),
    "meteor": meteor,
    "rouge_l": float(rouge),
    "cider": float(cider),
    "rouge_l_each": [float(x) for x in rouge_each],
    "cider_each": [float(x) for x in cider_each],
}
with open(f"{out}/captions.json", "w") as f:
    json.dump({"items": items, "scores": scores}, f, indent=1)
print(json.dumps({k: v for k, v in scores.items() if not k.endswith("each")}))
