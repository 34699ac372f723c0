#!/usr/bin/env python3
"""VL-BERT parity fixture (tests/vlbert.rs) from the official code (github jackroos/VL-BERT).

Runs the official `VisualLinguisticBertForPretraining` (common/visual_linguistic_bert.py), its
`coordinate_embeddings` (common/utils/bbox.py) and `soft_cross_entropy` (common/utils/misc.py)
with small random weights on real text and random region features. Two pieces of the official
pretraining network cannot be imported without its compiled RoIAlign extension or its dataset
code; they are re-written here exactly as the official code computes them, with the line they
follow named:
- `FastRCNN.forward` with `IMAGE_FEAT_PRECOMPUTED` (common/fast_rcnn.py): coordinate embedding of
  (box, image size) concatenated before the feature -> Dropout -> Linear -> ReLU, padded boxes 0;
- `ResNetVLBERTForPretraining.forward` (pretrain/modules/resnet_vlbert_for_pretraining.py) and
  the test-time data side of `ConceptualCaptionsDataset.__getitem__`
  (pretrain/data/datasets/conceptual_captions.py: boxes sorted by descending top class score,
  the whole image as box 0 with the mean feature, `Resize(600, 1000)`, clamping).

Writes tests/fixtures/vlbert/: `model/` (made by scripts/convert_vlbert.py from an official-style
`.model` checkpoint and YAML), `sentences.txt`, `regions.tsv` (bottom-up layout), and
`reference.safetensors`: `text_hidden`, `object_hidden`, `mlm_logits`, `mvrc_logits` as
`tessera vlbert features` writes them, the pretraining losses on a fixed masking, and the
text-only rows of the multitask network beside those pairs (`aux_text_hidden`,
`aux_mlm_logits`, `mlm_loss_aux`), packed as `ResNetVLBERTForPretrainingMultitask.forward`.

    python scripts/make_vlbert_fixtures.py OFFICIAL_CHECKOUT     (needs torch, numpy, pyyaml,
                                                                 safetensors)
"""
import base64
import json
import os
import sys
import tempfile
import types

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

if len(sys.argv) != 2:
    sys.exit(__doc__)
official = os.path.abspath(sys.argv[1])
here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, "..", "tests", "fixtures", "vlbert")
sys.path.insert(0, official)
sys.path.insert(0, here)
# The official package imports download helpers at import time; none is used here.
for m in ["boto3", "botocore", "botocore.exceptions", "requests", "tqdm"]:
    sys.modules[m] = types.ModuleType(m)
sys.modules["botocore.exceptions"].ClientError = Exception
sys.modules["botocore"].exceptions = sys.modules["botocore.exceptions"]
sys.modules["tqdm"].tqdm = None

from common.visual_linguistic_bert import VisualLinguisticBertForPretraining  # noqa: E402
from common.utils.bbox import coordinate_embeddings  # noqa: E402
from common.utils.misc import soft_cross_entropy  # noqa: E402
from external.pytorch_pretrained_bert.tokenization import BertTokenizer  # noqa: E402
from convert_vlbert import convert  # noqa: E402



class EasyDict(dict):
    """The official configs are easydict objects: a dict with attribute access."""
    __getattr__ = dict.__getitem__


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
vocab_file = os.path.join(root, "vocab.txt")
with open(vocab_file, "w") as f:
    f.write("\n".join(vocab) + "\n")
tok = BertTokenizer(vocab_file, do_lower_case=True)
with open(os.path.join(root, "sentences.txt"), "w") as f:
    f.write("\n".join(sentences) + "\n")

# --- random regions: 3 images, 4/6/2 detector boxes, features F, class scores C ------------
F, C, CD = 24, 7, 16
images = []
for image_id, (iw, ih, k) in {"img0": (640, 480, 4), "img1": (500, 375, 6), "img2": (300, 600, 2)}.items():
    x1 = rng.uniform(0, iw * 0.6, k)
    y1 = rng.uniform(0, ih * 0.6, k)
    boxes = np.stack([x1, y1, np.minimum(x1 + rng.uniform(5, iw / 2, k), iw - 1),
                      np.minimum(y1 + rng.uniform(5, ih / 2, k), ih - 1)], 1).astype(np.float32)
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
H = 32
cfg = {
    "SCALES": [600, 1000],
    "NETWORK": {
        "IMAGE_FEAT_PRECOMPUTED": True, "IMAGE_FINAL_DIM": H, "IMAGE_SEMANTIC": False,
        "ADD_IMAGE_AS_A_BOX": True, "WITH_MLM_LOSS": True, "WITH_MVRC_LOSS": True,
        "WITH_REL_LOSS": False, "BERT_MODEL_NAME": "",
        "VLBERT": {
            "with_pooler": False, "input_transform_type": 1, "visual_size": H, "hidden_size": H,
            "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": 64, "type_vocab_size": 3, "vocab_size": len(vocab),
            "initializer_range": 0.02, "visual_scale_text_init": 0.0,
            "visual_scale_object_init": 0.0, "visual_ln": True, "pos_embedding_frozen": False,
            "word_embedding_frozen": False, "obj_pos_id_relative": True,
            "position_padding_idx": -1, "object_word_embed_mode": 2,
            "visual_region_classes": C,
        },
    },
}
vl_cfg = EasyDict(cfg["NETWORK"]["VLBERT"])
vlbert = VisualLinguisticBertForPretraining(vl_cfg, with_rel_head=False, with_mlm_head=True,
                                            with_mvrc_head=True)


class ObjDownsample(torch.nn.Module):
    """FastRCNN's `obj_downsample` under its name (image_feature_extractor.obj_downsample)."""

    def __init__(self):
        super().__init__()
        self.obj_downsample = torch.nn.Sequential(torch.nn.Dropout(p=0.1),
                                                  torch.nn.Linear(8 * CD + F, H),
                                                  torch.nn.ReLU(inplace=True))


class Pretraining(torch.nn.Module):
    """ResNetVLBERTForPretraining's parameters under their names (IMAGE_FEAT_PRECOMPUTED)."""

    def __init__(self):
        super().__init__()
        self.image_feature_extractor = ObjDownsample()
        self.object_linguistic_embeddings = torch.nn.Embedding(1, H)
        self.object_mask_visual_embedding = torch.nn.Embedding(1, F)
        self.object_mask_word_embedding = torch.nn.Embedding(1, H)
        # ResNetVLBERTForPretrainingMultitask's one more parameter (text-only corpora)
        self.aux_text_visual_embedding = torch.nn.Embedding(1, H)
        self.vlbert = vlbert


net = Pretraining()
with torch.no_grad():
    # Random weights large enough that every path (the visual LayerNorm scales start at 0 in the
    # official initialisation) shows in the outputs.
    for name, p in net.named_parameters():
        if "LayerNorm" in name or "visual_ln" in name:
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn_like(p))
        else:
            p.normal_(0.0, 0.3)
net.eval()


# --- the data side (ConceptualCaptionsDataset.__getitem__ at test time) ---------------------
def get_size(w, h, min_size=600, max_size=1000):  # pretrain/data/transforms/transforms.py Resize
    size = min_size
    mn, mx = float(min((w, h))), float(max((w, h)))
    if mx / mn * size > max_size:
        size = int(max_size * mn / mx)
    if (w <= h and w == size) or (h <= w and h == size):
        return w, h
    if w < h:
        return size, int(size * h / w)
    return int(size * w / h), size


def prepare(im):
    inds = np.argsort(im["cls_prob"].max(axis=1))[::-1]
    boxes = torch.as_tensor(im["boxes"][inds])
    feats = torch.as_tensor(im["features"][inds])
    probs = im["cls_prob"][inds]
    w0, h0 = im["w"], im["h"]
    boxes = torch.cat((torch.as_tensor([[0.0, 0.0, w0 - 1.0, h0 - 1.0]]), boxes), 0)
    feats = torch.cat((feats.mean(dim=0, keepdim=True), feats), 0)
    im_info = torch.tensor([w0, h0, 1.0, 1.0, 0])
    size = get_size(w0, h0)
    ratios = [size[0] * 1.0 / w0, size[1] * 1.0 / h0]
    boxes[:, [0, 2]] *= ratios[0]
    boxes[:, [1, 3]] *= ratios[1]
    im_info[0], im_info[1] = size
    im_info[2], im_info[3] = ratios
    w, h = im_info[0].item(), im_info[1].item()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clamp(min=0, max=w - 1)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clamp(min=0, max=h - 1)
    return boxes, feats, probs, im_info


def forward(text_ids, boxes_feats, im_infos, mvrc_ops=None, aux_ids=None):
    """ResNetVLBERTForPretraining.forward (precomputed features), returning the text and object
    outputs as well as the heads' logits. With `aux_ids` (text-only sequences), the packing of
    ResNetVLBERTForPretrainingMultitask.forward: those rows after the pairs, their tokens seeing
    `aux_text_visual_embedding`, no objects."""
    B = len(text_ids)
    T = max(len(t) for t in text_ids)
    R = max(len(b) for b, _ in boxes_feats)
    text = torch.zeros((B, T), dtype=torch.long)
    boxes = torch.full((B, R, 4 + F), -2.0)
    ops = torch.zeros((B, R), dtype=torch.long)
    for i, (t, (b, f)) in enumerate(zip(text_ids, boxes_feats)):
        text[i, :len(t)] = torch.as_tensor(t)
        boxes[i, :len(b), :4] = b
        boxes[i, :len(b), 4:] = f
        if mvrc_ops is not None:
            ops[i, :len(mvrc_ops[i])] = torch.as_tensor(mvrc_ops[i])
    im_info = torch.stack(im_infos)
    box_mask = boxes[:, :, 0] > -1.5
    box_features = boxes[:, :, 4:]
    box_features[ops == 1] = net.object_mask_visual_embedding.weight[0]
    boxes[:, :, 4:] = box_features
    # FastRCNN.forward, IMAGE_FEAT_PRECOMPUTED
    box_inds = box_mask.nonzero()
    post_roialign = boxes[box_inds[:, 0], box_inds[:, 1]][:, 4:]
    coord = coordinate_embeddings(
        torch.cat((boxes[box_inds[:, 0], box_inds[:, 1]][:, :4], im_info[box_inds[:, 0], :2]), 1), CD)
    feats = torch.cat((coord.view((coord.shape[0], -1)), post_roialign), -1)
    final = net.image_feature_extractor.obj_downsample(feats)
    obj_reps = final.new_zeros((B, R, H))
    obj_reps[box_mask] = final
    # ResNetVLBERTForPretraining.forward
    text_mask = text > 0
    text_visual = obj_reps[:, 0:1].expand(B, T, H)  # _collect_obj_reps with all tags 0
    obj_ling = net.object_linguistic_embeddings(boxes.new_zeros((B, R)).long())
    obj_ling[ops == 1] = net.object_mask_word_embedding.weight[0]
    obj_vl = torch.cat((obj_reps, obj_ling), -1)
    if aux_ids is not None:
        A = len(aux_ids)
        aux_text = torch.zeros((A, max(len(t) for t in aux_ids)), dtype=torch.long)
        for i, t in enumerate(aux_ids):
            aux_text[i, :len(t)] = torch.as_tensor(t)
        T2 = max(T, aux_text.shape[1])
        text_multi = text.new_zeros((B + A, T2))
        text_multi[:B, :T] = text
        text_multi[B:, :aux_text.shape[1]] = aux_text
        visual_multi = text_visual.new_zeros((B + A, T2, H))
        visual_multi[:B, :T] = text_visual
        visual_multi[B:] = net.aux_text_visual_embedding.weight[0]
        obj_vl_multi = obj_vl.new_zeros((B + A, *obj_vl.shape[1:]))
        obj_vl_multi[:B] = obj_vl
        box_mask_multi = box_mask.new_zeros((B + A, *box_mask.shape[1:]))
        box_mask_multi[:B] = box_mask
        text, text_visual, obj_vl, box_mask = text_multi, visual_multi, obj_vl_multi, box_mask_multi
        text_mask = text > 0
    text_out, object_out, _ = super(VisualLinguisticBertForPretraining, vlbert).forward(
        text, torch.zeros_like(text), text_visual, text_mask, obj_vl, box_mask,
        output_all_encoded_layers=False, output_text_and_object_separately=True)
    _, mlm, mvrc = vlbert(text, torch.zeros_like(text), text_visual, text_mask, obj_vl, box_mask)
    assert torch.equal(mlm, vlbert.mlm_head(text_out)) and torch.equal(mvrc, vlbert.mvrc_head(object_out))
    return text_out, object_out, mlm, mvrc, text_mask, box_mask


prepared = [prepare(im) for im in images]
text_ids = [tok.convert_tokens_to_ids(["[CLS]"] + tok.tokenize(s) + ["[SEP]"]) for s in sentences]
assert tok.vocab["[UNK]"] not in sum(text_ids, [])
with torch.no_grad():
    text_out, object_out, mlm, mvrc, text_mask, box_mask = forward(
        text_ids, [(b, f) for b, f, _, _ in prepared], [i for _, _, _, i in prepared])
# Padded positions are zeros in Tessera's output (the official text output holds the RoIs there).
zt = text_mask[:, :, None].float()
zo = box_mask[:, :, None].float()
ref = {"text_hidden": text_out * zt, "object_hidden": object_out * zo, "mlm_logits": mlm * zt,
       "mvrc_logits": mvrc * zo}

# --- the pretraining losses on a fixed masking -------------------------------------------------
mask_id = tok.vocab["[MASK]"]
mlm_positions = [[2, 5], [1], [3, 4, 9]]  # token positions (after [CLS]) whose word is masked


def mask_at(ids, positions):
    """[MASK] at `positions`: (masked ids, labels with -1 elsewhere)."""
    ids, labels = list(ids), [-1] * len(ids)
    for p in positions:
        labels[p], ids[p] = ids[p], mask_id
    return ids, labels


masked_ids, mlm_labels = map(list, zip(*[mask_at(t, pos) for t, pos in zip(text_ids, mlm_positions)]))
mvrc_ops = [[0, 1, 0, 1, 0], [0, 0, 1, 0, 0, 0, 0], [0, 0, 1]]  # box 0 is the whole image
boxes_feats, mvrc_labels = [], []
for (b, f, probs, _), ops in zip(prepared, mvrc_ops):
    f = f.clone()
    # The whole image's feature without the masked boxes (precomputed features).
    n_real, n_masked = len(b) - 1, 0
    f[0] *= n_real
    for op, feat in zip(ops, f):
        if op == 1:
            n_masked += 1
            f[0] -= feat
    f[0] /= (n_real - n_masked + 1e-5)
    boxes_feats.append((b, f))
    labels = np.zeros((len(b), C), np.float32)
    for r, op in enumerate(ops):
        if op == 1:
            labels[r] = probs[r - 1]
    mvrc_labels.append(labels)
with torch.no_grad():
    _, _, mlm2, mvrc2, _, _ = forward(masked_ids, boxes_feats, [i for _, _, _, i in prepared], mvrc_ops)
T = mlm2.shape[1]
labels = torch.full((len(sentences), T), -1, dtype=torch.long)
for i, l in enumerate(mlm_labels):
    labels[i, :len(l)] = torch.as_tensor(l)
mlm_loss = torch.nn.functional.cross_entropy(mlm2.reshape(-1, mlm2.shape[-1]), labels.view(-1),
                                             ignore_index=-1)
R = mvrc2.shape[1]
mlabels = torch.zeros((len(sentences), R, C))
for i, l in enumerate(mvrc_labels):
    mlabels[i, :len(l)] = torch.as_tensor(l)
mvrc_loss = soft_cross_entropy(mvrc2.reshape(-1, C), mlabels.reshape(-1, C))
ref["mlm_loss"] = mlm_loss.reshape(1)
ref["mvrc_loss"] = mvrc_loss.reshape(1)

# --- text-only sequences beside the masked pairs (the multitask network) -----------------------
# GeneralCorpus gives word-piece ids with no [CLS]/[SEP]; masked positions fixed here.
aux_texts = ["the child watches dogs on the grass", "a red bicycle near a busy street"]
aux_positions = [[2, 3], [0, 3, 6]]
aux_ids, aux_labels = map(list, zip(*[mask_at(tok.convert_tokens_to_ids(tok.tokenize(s_)), pos)
                                       for s_, pos in zip(aux_texts, aux_positions)]))
assert tok.vocab["[UNK]"] not in sum(aux_ids, [])
with torch.no_grad():
    text3, _, mlm3, mvrc3, text_mask3, _ = forward(
        masked_ids, boxes_feats, [i for _, _, _, i in prepared], mvrc_ops, aux_ids)
B = len(sentences)
T3 = mlm3.shape[1]
labels = torch.full((len(aux_ids), T3), -1, dtype=torch.long)
for i, l in enumerate(aux_labels):
    labels[i, :len(l)] = torch.as_tensor(l)
ref["mlm_loss_aux"] = torch.nn.functional.cross_entropy(
    mlm3[B:].reshape(-1, mlm3.shape[-1]), labels.view(-1), ignore_index=-1).reshape(1)
z3 = text_mask3[B:, :, None].float()
ref["aux_text_hidden"] = text3[B:] * z3
ref["aux_mlm_logits"] = mlm3[B:] * z3
# The pairs' rows do not see the text-only ones: the same losses as without them.
labels = torch.full((B, T3), -1, dtype=torch.long)
for i, l in enumerate(mlm_labels):
    labels[i, :len(l)] = torch.as_tensor(l)
wvc = torch.nn.functional.cross_entropy(mlm3[:B].reshape(-1, mlm3.shape[-1]), labels.view(-1),
                                        ignore_index=-1)
assert abs(wvc.item() - mlm_loss.item()) < 1e-5 and torch.allclose(mvrc3[:B, :R], mvrc2, atol=1e-5)
save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(root, "reference.safetensors"))
with open(os.path.join(root, "masking.json"), "w") as f:
    json.dump({"mlm_positions": mlm_positions, "mvrc_ops": mvrc_ops, "aux_texts": aux_texts,
               "aux_positions": aux_positions}, f)

# --- the model directory, through the converter from an official-style checkpoint -------------
with tempfile.TemporaryDirectory() as tmp:
    ckpt = os.path.join(tmp, "vl-bert_base_res101_pretrain-0001.model")
    state = {"module." + k: v for k, v in net.state_dict().items()}
    torch.save({"epoch": 1, "state_dict": state, "optimizer": {}}, ckpt)
    yml = os.path.join(tmp, "config.yaml")
    with open(yml, "w") as f:
        yaml.safe_dump(cfg, f)
    convert(ckpt, yml, os.path.join(root, "model"), vocab=vocab_file, coordinate_embedding_dim=CD)
os.remove(vocab_file)
print("wrote", os.path.normpath(root), {k: tuple(v.shape) for k, v in ref.items()})
