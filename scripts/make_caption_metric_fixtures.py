"""Caption-metric fixtures: pycocoevalcap 1.2 (PTB tokenizer, BLEU, METEOR, ROUGE-L, CIDEr) on
random captions, for tests/core.rs. Usage: python scripts/make_caption_metric_fixtures.py OUT_DIR
(needs `pip install pycocoevalcap==1.2` and Java for the tokenizer and METEOR).

Writes OUT_DIR/captions.json (the tokenized captions and every score) and OUT_DIR/meteor.json:
METEOR 1.5 as pycocoevalcap runs it, on those tokenized captions and on raw sentences built to
reach each of its modules (stems, WordNet synonyms, paraphrases) and its normaliser
(punctuation, abbreviations, quotes, numbers), with the jar's statistics line per caption."""
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


# METEOR: the tokenized captions above, then raw sentences for its modules and normaliser.
subjects = ["a man", "the men", "a woman", "two women", "a person", "someone", "a large dog",
            "a big dog", "dogs", "a little girl", "a small child", "the kids", "a young boy"]
verbs = ["is riding", "rides", "rode", "riding", "is running on", "runs on", "ran across",
         "jumps over", "is jumping over", "leaps over", "sits on", "is sitting on", "cuts",
         "is slicing", "chops", "is cutting up", "looks at", "is watching", "stares at"]
things = ["a horse", "horses", "the bike", "a bicycle", "a skateboard", "a couch", "a sofa",
          "the onions", "an onion", "a wooden table", "the kitchen counter", "the television",
          "a tv", "the grass", "a field"]
places = ["", "", "quickly", "fast", "in the park", "at the beach", "on the street",
          "next to a building", "in front of the house", "near the water", "by the sea",
          "in order to", "as well as", "at the same time"]


def caption():
    words = [rng.choice(subjects), rng.choice(verbs), rng.choice(things), rng.choice(places)]
    return " ".join(w for w in words if w)


raw = [
    ("Mr. Jones' car isn't red -- it's blue.", ["mr. jones's car is not red, it is blue"]),
    ("The U.S.A. flag... waving!", ["the usa flag is waving", "a flag waves"]),
    ("3,000 people ran 2.5 km; wow", ["three thousand people ran 2.5 kilometers"]),
    ("\u201cquoted\u201d \u2018single\u2019 `text' here", ["quoted single text here"]),
    ("an e-mail re-use \u2013 test", ["an email reuse test"]),
    ("He said: 'hi' to No. 5 and Fig. 3.", ["he said hi to number 5 and figure 3"]),
    ("A dog's toy, etc. and so on...", ["the dogs toys and so on"]),
    ("Dr. Smith (the vet) looks at a cat's paw.", ["a vet looks at the paw of a cat"]),
    ("", ["an empty candidate"]),
    ("horse", ["horses"]),
    ("the horse", ["the horses"]),
    ("big dog", ["large dog"]),
    ("a man rides a horse", ["the men are riding horses", "a man is riding a horse"]),
]
meteor_items = []
for it in items:
    meteor_items.append({"candidate": res_t[it["id"]][0], "references": gts_t[it["id"]]})
for cand, refs in raw:
    meteor_items.append({"candidate": cand, "references": refs})
for i in range(120):
    refs = [caption() for _ in range(rng.randint(1, 4))]
    meteor_items.append({"candidate": caption(), "references": refs})

m = Meteor()
for it in meteor_items:
    it["stats"] = m._stat(it["candidate"], it["references"])
mg = {i: it["references"] for i, it in enumerate(meteor_items)}
mr = {i: [it["candidate"]] for i, it in enumerate(meteor_items)}
corpus, each = m.compute_score(mg, mr)
with open(f"{out}/meteor.json", "w") as f:
    json.dump({"items": meteor_items, "meteor": corpus, "meteor_each": each}, f, indent=1)
print(json.dumps({"meteor_items": len(meteor_items), "meteor": corpus}))
