#!/usr/bin/env python3
"""Turn an official VL-BERT checkpoint (github jackroos/VL-BERT, a `.model` file written by its
training script) into a Tessera VL-BERT model directory:

- `model.safetensors`: the pretraining network's state dict under its own names, without the
  `module.` prefix of DataParallel and without the image backbone (Tessera reads region features
  from region files): `vlbert.*`, `object_linguistic_embeddings`, `object_mask_visual_embedding`,
  `object_mask_word_embedding`, `image_feature_extractor.obj_downsample.1.*` (and, for fine-tuned
  checkpoints, their heads, kept under their names). The MLM decoder is tied to the word
  embeddings, so it is stored once (as the word embeddings), as a PyTorch state dict saved to
  safetensors keeps a tied tensor.
- `config.json`: the `NETWORK.VLBERT` keys of the training YAML (flat), the `NETWORK` flags that
  shape the network, and `object_feature_size` / `coordinate_embedding_dim`, the two sizes the
  official code hard-wires (2048 and 256).
- `vocab.txt`: from `--vocab`, else from the YAML's `NETWORK.BERT_MODEL_NAME` directory.

    python scripts/convert_vlbert.py CHECKPOINT.model CONFIG.yaml OUT_DIR [--vocab vocab.txt]
        [--coordinate-embedding-dim 256]

Needs torch, pyyaml and safetensors.
"""
import argparse
import json
import os
import shutil
import sys

import torch
import yaml
from safetensors.torch import save_file

NETWORK_FLAGS = ["IMAGE_FEAT_PRECOMPUTED", "IMAGE_FINAL_DIM", "ADD_IMAGE_AS_A_BOX", "SCALES",
                 "WITH_MLM_LOSS", "WITH_MVRC_LOSS", "WITH_REL_LOSS", "IMAGE_SEMANTIC",
                 "MLM_LOSS_NORM_IN_BATCH_FIRST", "MVRC_LOSS_NORM_IN_BATCH_FIRST"]
# Defaults of the official pretrain/function/config.py for what a YAML may leave out.
DEFAULTS = {"IMAGE_FEAT_PRECOMPUTED": False, "IMAGE_FINAL_DIM": 512, "ADD_IMAGE_AS_A_BOX": True,
            "SCALES": [600, 1000], "WITH_MLM_LOSS": True, "WITH_MVRC_LOSS": True,
            "WITH_REL_LOSS": True, "IMAGE_SEMANTIC": False, "MLM_LOSS_NORM_IN_BATCH_FIRST": False,
            "MVRC_LOSS_NORM_IN_BATCH_FIRST": False}
VLBERT_DEFAULTS = {"input_transform_type": 1, "word_embedding_frozen": False,
                   "pos_embedding_frozen": False, "obj_pos_id_relative": True,
                   "hidden_size": 512, "visual_size": 512, "num_hidden_layers": 4,
                   "num_attention_heads": 8, "intermediate_size": 2048, "hidden_act": "gelu",
                   "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                   "max_position_embeddings": 512, "type_vocab_size": 3, "vocab_size": 30522,
                   "initializer_range": 0.02, "visual_scale_text_init": 0.0,
                   "visual_scale_object_init": 0.0, "visual_ln": False, "object_word_embed_mode": 2,
                   "with_pooler": True, "visual_region_classes": 1601, "position_padding_idx": -1}
KEEP = ("vlbert.", "object_linguistic_embeddings.", "object_mask_visual_embedding.",
        "object_mask_word_embedding.", "image_feature_extractor.obj_downsample.",
        "image_feature_extractor.object_embed.")
BACKBONE = "image_feature_extractor."


def convert(checkpoint, config, out, vocab=None, coordinate_embedding_dim=256):
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict):
        sys.exit(f"{checkpoint}: not a state dict or a checkpoint holding `state_dict`")
    cfg = yaml.safe_load(open(config)) if isinstance(config, str) else config
    network = cfg.get("NETWORK", {})
    tensors = {}
    for k, v in state.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if k.startswith(BACKBONE) and not k.startswith(KEEP):
            continue  # the ResNet backbone and its RoI head: Tessera reads region features
        if not torch.is_tensor(v):
            continue
        tensors[k] = v.detach().to(torch.float32).contiguous().clone()
    words = tensors.get("vlbert.word_embeddings.weight")
    decoder = "vlbert.mlm_head.predictions.decoder.weight"
    if decoder in tensors and words is not None and torch.equal(tensors[decoder], words):
        del tensors[decoder]  # tied: stored once
    if "vlbert.word_embeddings.weight" not in tensors:
        sys.exit(f"{checkpoint}: no `vlbert.word_embeddings.weight`: not a VL-BERT checkpoint")

    flat = dict(VLBERT_DEFAULTS)
    flat.update(network.get("VLBERT", {}))
    for k in NETWORK_FLAGS:
        flat[k] = network.get(k, cfg.get(k, DEFAULTS[k])) if k != "SCALES" else cfg.get("SCALES", DEFAULTS[k])
    flat["SCALES"] = list(flat["SCALES"])
    flat["vocab_size"] = int(words.shape[0])
    # The multitask network (text-only corpora) has one more embedding; its module, not a flag,
    # says so in the official code.
    flat["WITH_TEXT_ONLY"] = "aux_text_visual_embedding.weight" in tensors
    down = tensors.get("image_feature_extractor.obj_downsample.1.weight")
    flat["coordinate_embedding_dim"] = coordinate_embedding_dim
    if down is not None:
        flat["object_feature_size"] = int(down.shape[1]) - 8 * coordinate_embedding_dim
    else:
        flat["object_feature_size"] = 2048
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(flat, f, indent=2, sort_keys=True)
    if vocab is None:
        name = network.get("BERT_MODEL_NAME", "")
        candidate = os.path.join(name, "vocab.txt")
        vocab = candidate if os.path.isfile(candidate) else None
    if vocab is None:
        print(f"warning: no vocab.txt found; copy the BERT vocabulary into {out}", file=sys.stderr)
    else:
        shutil.copyfile(vocab, os.path.join(out, "vocab.txt"))
    return tensors, flat


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("config", help="the training YAML the checkpoint was made with")
    p.add_argument("out")
    p.add_argument("--vocab")
    p.add_argument("--coordinate-embedding-dim", type=int, default=256)
    a = p.parse_args()
    tensors, _ = convert(a.checkpoint, a.config, a.out, a.vocab, a.coordinate_embedding_dim)
    print(f"{a.out}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
