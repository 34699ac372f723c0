"""How far a small non-transformer network gets on easy-VQA from a region file: a bag of the
question's words and the concatenated region features, each through two tanh layers, multiplied
and classified (the easy-VQA author's baseline design). With --standardize the features are
z-scored with the training file's per-dimension statistics first (what `tessera
regions-standardize` does). Prints train and test accuracy per epoch.

    python scripts/easy_vqa_bow_check.py TRAIN_ANN TEST_ANN TRAIN.safetensors TEST.safetensors [--standardize]

TRAIN_ANN / TEST_ANN: annotations.jsonl of `tessera data import --format easy-vqa`.
"""
import json
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file

torch.manual_seed(0)
train_ann, test_ann, train_regions, test_regions = sys.argv[1:5]
standardize = "--standardize" in sys.argv[5:]


def load(ann, regions):
    feats = load_file(regions)["features"]
    ids = json.loads(safe_open(regions, "np").metadata()["image_ids"])
    row = {k: j for j, k in enumerate(ids)}
    qs, ims, ans = [], [], []
    for line in open(ann):
        r = json.loads(line)
        image = r["image"].split("/")[-1].rsplit(".", 1)[0]
        for qa in r["qa"]:
            qs.append(qa["question"])
            ims.append(row[image])
            ans.append(qa["answer"])
    return feats.reshape(len(feats), -1), qs, np.array(ims), ans


ftr, qtr, itr, atr = load(train_ann, train_regions)
fte, qte, ite, ate = load(test_ann, test_regions)
if standardize:
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    ftr, fte = (ftr - mu) / sd, (fte - mu) / sd
words = sorted({w for q in qtr for w in q.replace("?", "").split()})
widx = {w: i for i, w in enumerate(words)}
answers = sorted(set(atr))
aidx = {a: i for i, a in enumerate(answers)}


def bow(qs):
    x = np.zeros((len(qs), len(words)), np.float32)
    for i, q in enumerate(qs):
        for w in q.replace("?", "").split():
            if w in widx:
                x[i, widx[w]] = 1
    return torch.tensor(x)


Itr, Ite = torch.tensor(ftr), torch.tensor(fte)
Btr, Bte = bow(qtr), bow(qte)
Ytr = torch.tensor([aidx[a] for a in atr])
Yte = torch.tensor([aidx.get(a, -1) for a in ate])
nn = torch.nn
image = nn.Sequential(nn.Linear(Itr.shape[1], 64), nn.Tanh(), nn.Linear(64, 32), nn.Tanh())
question = nn.Sequential(nn.Linear(len(words), 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh())
head = nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, len(answers)))
params = [*image.parameters(), *question.parameters(), *head.parameters()]
opt = torch.optim.Adam(params, 1e-3)
forward = lambda i, q: head(image(i) * question(q))
itr_t, ite_t = torch.tensor(itr), torch.tensor(ite)
for epoch in range(1, 31):
    perm = torch.randperm(len(Ytr))
    for b in range(0, len(perm), 64):
        j = perm[b:b + 64]
        loss = nn.functional.cross_entropy(forward(Itr[itr_t[j]], Btr[j]), Ytr[j])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        train = (forward(Itr[itr_t], Btr).argmax(1) == Ytr).float().mean().item()
        test = (forward(Ite[ite_t], Bte).argmax(1) == Yte).float().mean().item()
    print(f"epoch {epoch:2d}  train {train:.4f}  test {test:.4f}", flush=True)
