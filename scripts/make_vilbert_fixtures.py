#!/usr/bin/env python3
"""ViLBERT parity fixture (tests/vilbert.rs) from the official code
(github facebookresearch/vilbert-multi-task).

Runs the official `BertForMultiModalPreTraining` (vilbert/vilbert.py) with small random weights
(3 text layers of width 32, 2 image layers of width 24, co-attention of width 16 after image
layers 0 and 1 / text layers 1 and 2) on real text and random region features. The inputs are
prepared as the official data side does: the image features reader
(`vilbert/datasets/_image_features_reader.py`: the global token as the mean feature with location
[0, 0, 1, 1, 1], locations normalised by the image size) and, for the losses, the pretraining
batch (`concept_cap_dataset.py`: the official `random_word` and `random_region` with seeded
generators, the global feature recomputed over the boxes not masked by overlap, as
`ConceptCapLoaderTrain.__iter__`; arrays of each image's own box count, so no padded slot is
counted).

Writes tests/fixtures/vilbert/: `model/` (made by scripts/convert_vilbert.py from an official
`pytorch_model.bin` state dict and config JSON), `sentences.txt`, `regions.tsv` (bottom-up
layout), `masking.json` (the fixed masking), and `reference.safetensors`: the outputs
`tessera vilbert features` writes (padded positions zero) and `losses` [3] (masked LM, masked
regions, alignment).

    python scripts/make_vilbert_fixtures.py OFFICIAL_CHECKOUT   (needs torch, numpy,
                                                                transformers, safetensors)
"""
import base64
import json
import os
import random
import sys
import tempfile
import types

import numpy as np
import torch
from safetensors.torch import save_file

if len(sys.argv) != 2:
    sys.exit(__doc__)
official = os.path.abspath(sys.argv[1])
here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..", "tests", "fixtures", "vilbert")
sys.path.insert(0, here)
from transformers import BertTokenizer  # noqa: E402  (before the official code's stubs)
from convert_vilbert import convert  # noqa: E402
from official_vilbert import load  # noqa: E402

network, ccd = load(official)
BertConfig, BertForMultiModalPreTraining = network.BertConfig, network.BertForMultiModalPreTraining

torch.manual_seed(0)
rng = np.random.default_rng(0)
os.makedirs(root, exist_ok=True)

# --- real text, a vocabulary holding its words (and word pieces for two of them) -------------
sentences = [
    "a black dog runs across the grass to catch a red frisbee .",
    "two people are riding bicycles down a busy street",
    "the cat sleeps on a wooden chair near the window , while a child watches",
]
specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
words = sorted({w for s in sentences for w in s.split()} - {"bicycles", "watches"})
vocab = specials + words + ["bicycle", "##s", "watch", "##es", "##ing", "dogs"]
tmp = tempfile.mkdtemp()
vocab_file = os.path.join(tmp, "vocab.txt")
with open(vocab_file, "w") as f:
    f.write("\n".join(vocab) + "\n")
tok = BertTokenizer(vocab_file, do_lower_case=True)
with open(os.path.join(root, "sentences.txt"), "w") as f:
    f.write("\n".join(sentences) + "\n")

# --- random regions: 3 images, 4/6/2 boxes, features F, class scores C ----------------------
F, C = 20, 7
images = []
for image_id, (iw, ih, k) in {"img0": (640, 480, 4), "img1": (500, 375, 6), "img2": (300, 600, 2)}.items():
    x1 = rng.uniform(0, iw * 0.6, k)
    y1 = rng.uniform(0, ih * 0.6, k)
    boxes = np.stack([x1, y1, np.minimum(x1 + rng.uniform(5, iw / 2, k), iw - 1),
                      np.minimum(y1 + rng.uniform(5, ih / 2, k), ih - 1)], 1).astype(np.float32)
    if k == 6:
        boxes[5] = boxes[4] + np.float32(3.0)  # two boxes overlapping at IoU > 0.4
    logits = rng.normal(size=(k, C)) * 2
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    feats = np.abs(rng.normal(size=(k, F))).astype(np.float32)
    images.append({"image_id": image_id, "w": iw, "h": ih, "boxes": boxes, "features": feats,
                   "cls_prob": probs})
b64 = lambda a: base64.b64encode(np.ascontiguousarray(a, np.float32).tobytes()).decode()
with open(os.path.join(root, "regions.tsv"), "w") as f:
    for im in images:
        f.write("\t".join([im["image_id"], str(im["w"]), str(im["h"]), str(len(im["boxes"])),
                           b64(im["boxes"]), b64(im["features"]), b64(im["cls_prob"])]) + "\n")

# --- the official network with small random weights ----------------------------------------
config = {
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 48,
    "max_position_embeddings": 64, "num_attention_heads": 4, "num_hidden_layers": 3,
    "type_vocab_size": 2, "vocab_size": len(vocab), "v_feature_size": F, "v_target_size": C,
    "v_hidden_size": 24, "v_num_hidden_layers": 2, "v_num_attention_heads": 2,
    "v_intermediate_size": 40, "bi_hidden_size": 16, "bi_num_attention_heads": 2,
    "bi_intermediate_size": 40, "bi_attention_type": 1, "v_attention_probs_dropout_prob": 0.1,
    "v_hidden_act": "gelu", "v_hidden_dropout_prob": 0.1, "v_initializer_range": 0.02,
    "v_biattention_id": [0, 1], "t_biattention_id": [1, 2], "pooling_method": "mul",
}
full = BertConfig(vocab_size_or_config_json_file=len(vocab)).__dict__
full.update(config)
full["fusion_method"] = "mul"
cfg = BertConfig.from_dict(full)
net = BertForMultiModalPreTraining(cfg)
with torch.no_grad():
    # Random weights large enough that every path shows in the outputs.
    for name, p in net.named_parameters():
        if "LayerNorm" in name:
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn_like(p))
        else:
            p.normal_(0.0, 0.3)
net.eval()
ckpt = os.path.join(tmp, "pytorch_model.bin")
torch.save(net.state_dict(), ckpt)
config_file = os.path.join(tmp, "config.json")
json.dump(config, open(config_file, "w"))
convert(ckpt, config_file, vocab_file, os.path.join(root, "model"))


# --- the data side --------------------------------------------------------------------------
def reader(im):
    """_image_features_reader.py: global token first, locations normalised."""
    feats, boxes = im["features"], im["boxes"]
    n = feats.shape[0]
    g_feat = np.sum(feats, axis=0) / n
    feats = np.concatenate([g_feat[None], feats], 0)
    loc = np.zeros((n, 5), dtype=np.float32)
    loc[:, :4] = boxes
    loc[:, 4] = (loc[:, 3] - loc[:, 1]) * (loc[:, 2] - loc[:, 0]) / (float(im["w"]) * float(im["h"]))
    loc[:, 0] /= float(im["w"])
    loc[:, 1] /= float(im["h"])
    loc[:, 2] /= float(im["w"])
    loc[:, 3] /= float(im["h"])
    loc = np.concatenate([np.array([[0, 0, 1, 1, 1]], dtype=np.float32), loc], 0)
    return feats.astype(np.float32), loc


def run(ids_list, feats_list, locs_list, labels=None):
    B = len(ids_list)
    T = max(len(x) for x in ids_list)
    R = max(len(x) for x in feats_list)
    ids = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    feats = torch.zeros(B, R, F)
    locs = torch.zeros(B, R, 5)
    img_mask = torch.zeros(B, R, dtype=torch.long)
    for i in range(B):
        ids[i, :len(ids_list[i])] = torch.tensor(ids_list[i])
        mask[i, :len(ids_list[i])] = 1
        feats[i, :len(feats_list[i])] = torch.tensor(feats_list[i])
        locs[i, :len(locs_list[i])] = torch.tensor(locs_list[i])
        img_mask[i, :len(feats_list[i])] = 1
    seg = torch.zeros_like(ids)
    with torch.no_grad():
        if labels is not None:
            lm, img_label, img_target, nsp = labels
            return net(ids, feats, locs, seg, mask, img_mask, masked_lm_labels=lm,
                       image_label=img_label, image_target=img_target, next_sentence_label=nsp)
        st, sv, pt, pv, _ = net.bert(ids, feats, locs, seg, mask, img_mask,
                                     output_all_encoded_layers=False)
        pst, psv, rel = net.cls(st, sv, pt, pv)
    m_t = mask[:, :, None].float()
    m_v = img_mask[:, :, None].float()
    return {"sequence_output_t": st * m_t, "sequence_output_v": sv * m_v,
            "pooled_output_t": pt, "pooled_output_v": pv,
            "prediction_scores_t": pst * m_t, "prediction_scores_v": psv * m_v,
            "seq_relationship_score": rel}


token_ids = [tok.encode(s) for s in sentences]  # [CLS] ... [SEP]
prepared = [reader(im) for im in images]
out = run(token_ids, [p[0] for p in prepared], [p[1] for p in prepared])

# --- the losses on a fixed masking (the official random_word / random_region) ---------------
random.seed(3)
np.random.seed(3)
preprocess = types.SimpleNamespace(visualization=False)
captions = [tok.encode(s, add_special_tokens=False) for s in sentences]
aligned = [True, False, True]  # pair 1 gets pair 2's caption: not aligned (label 1)
masking, ids_list, feats_list, locs_list = [], [], [], []
R = max(len(im["boxes"]) for im in images)
lm_labels, img_labels, img_targets = [], [], []
T = 0
for i, im in enumerate(images):
    caption = list(captions[i] if aligned[i] else captions[2])
    tokens, labels = ccd.BertPreprocessBatch.random_word(preprocess, caption, tok, 0)
    n = len(im["boxes"])
    overlaps = ccd.iou(im["boxes"], im["boxes"])
    feat, loc = reader(im)
    box_feat = feat[1:].copy()
    box_feat, _, img_label, masked_label = ccd.BertPreprocessBatch.random_region(
        preprocess, box_feat, loc[1:], n, 0, overlaps)
    # ConceptCapLoaderTrain.__iter__: the global feature over the boxes not masked by overlap.
    sum_count = max(int(np.sum(masked_label == 0)), 1)
    g = np.sum(box_feat, axis=0) / sum_count
    ids = [tok.cls_token_id] + tokens + [tok.sep_token_id]
    ids_list.append(ids)
    feats_list.append(np.concatenate([g[None], box_feat], 0))
    locs_list.append(loc)
    lm_labels.append([-1] + labels + [-1])
    img_labels.append(img_label)
    target = np.zeros((R, C), dtype=np.float32)
    target[:n] = im["cls_prob"]
    img_targets.append(target)
    masking.append({
        "image": i, "input": ids,
        "mlm": [[p + 1, int(w)] for p, w in enumerate(labels) if w != -1],
        "picked": [l == 1 for l in img_label],
        "zeroed": [bool(l == 1 and not box_feat[k].any()) for k, l in enumerate(img_label)],
        "aligned": aligned[i],
    })
T = max(len(x) for x in ids_list)
lm = torch.full((3, T), -1, dtype=torch.long)
img_label = torch.full((3, R), -1, dtype=torch.long)
for i in range(3):
    lm[i, :len(lm_labels[i])] = torch.tensor(lm_labels[i])
    img_label[i, :len(img_labels[i])] = torch.tensor(img_labels[i])
nsp = torch.tensor([0 if a else 1 for a in aligned])
losses = run(ids_list, feats_list, locs_list,
             (lm, img_label, torch.tensor(np.stack(img_targets)), nsp))
out["losses"] = torch.cat([l.reshape(1) for l in losses])
assert all(m["picked"] for m in masking if any(m["picked"])) is not None
print("picked boxes:", [sum(m["picked"]) for m in masking], "zeroed:",
      [sum(m["zeroed"]) for m in masking], "masked words:", [len(m["mlm"]) for m in masking])
print("losses (masked LM, masked regions, alignment):", out["losses"].tolist())
with open(os.path.join(root, "masking.json"), "w") as f:
    json.dump(masking, f)
save_file({k: v.contiguous().float() for k, v in out.items()},
          os.path.join(root, "reference.safetensors"))
print("wrote", os.path.normpath(root))
