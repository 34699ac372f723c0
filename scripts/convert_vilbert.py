#!/usr/bin/env python3
"""Turn an official ViLBERT checkpoint (github facebookresearch/vilbert-multi-task, a
`pytorch_model.bin` of `BertForMultiModalPreTraining` or `VILBertForVLTasks`) into a Tessera
ViLBERT model directory:

- `model.safetensors`: the state dict under its own names (`bert.*`, `cls.*`, the unused
  `q_dense*` included), without the `module.` prefix of DataParallel. The MLM decoder is tied to
  the word embeddings, so it is stored once (as the word embeddings), as a PyTorch state dict
  saved to safetensors keeps a tied tensor. A fine-tuned checkpoint's `vil_prediction` (VQA) and
  `vil_logit` (retrieval) heads are kept and named in the config; its other tasks' heads too
  (Tessera skips them when loading).
- `config.json`: the official config JSON (e.g. `config/bert_base_6layer_6conect.json`), with
  `num_labels` and `with_retrieval_head` set from the heads the checkpoint holds.
- `vocab.txt`: the BERT vocabulary given.

    python scripts/convert_vilbert.py pytorch_model.bin CONFIG.json VOCAB.txt OUT_DIR

Needs torch and safetensors.
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file


def convert(checkpoint, config, vocab, out):
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        sys.exit(f"{checkpoint}: not a state dict")
    tensors = {}
    for k, v in state.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if torch.is_tensor(v):
            tensors[k] = v.detach().to(torch.float32).contiguous().clone()
    words = tensors.get("bert.embeddings.word_embeddings.weight")
    if words is None:
        sys.exit(f"{checkpoint}: no `bert.embeddings.word_embeddings.weight`: not a ViLBERT checkpoint")
    decoder = "cls.predictions.decoder.weight"
    if decoder in tensors and torch.equal(tensors[decoder], words):
        del tensors[decoder]  # tied: stored once
    cfg = json.load(open(config)) if isinstance(config, str) else dict(config)
    if "vil_prediction.logit_fc.3.weight" in tensors:
        cfg["num_labels"] = tensors["vil_prediction.logit_fc.3.weight"].shape[0]
    cfg["with_retrieval_head"] = "vil_logit.weight" in tensors
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    shutil.copyfile(vocab, os.path.join(out, "vocab.txt"))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    convert(*sys.argv[1:])
    print(f"wrote {sys.argv[4]}")
