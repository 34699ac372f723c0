#!/usr/bin/env python3
"""Reference outputs of Hugging Face ViT and DINOv2 for Tessera's ViT.

Saves two tiny randomly initialised models (32x32 images, patch 8, width 32, 2 layers, 4 heads)
as Hugging Face directories under tests/fixtures/ (`vit-tiny/`, `dinov2-tiny/`: config.json +
model.safetensors) and, in tests/fixtures/vit_reference.json, a batch of pixel values with each
model's `last_hidden_state` and `pooler_output` (ViT: the class token after the final
LayerNorm, which is what Tessera returns) and the classifier's logits for the ViT.

    python3 -m venv .venv && .venv/bin/pip install torch transformers
    .venv/bin/python scripts/make_vit_fixtures.py
"""
import json
import pathlib

import torch
import transformers

torch.manual_seed(0)
root = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"
common = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
              num_attention_heads=4, num_channels=3)
pixels = torch.randn(2, 3, 32, 32)
out = {"pixel_values": {"shape": list(pixels.shape), "data": [float(v) for v in pixels.reshape(-1)]}}

vit_cfg = transformers.ViTConfig(intermediate_size=64, num_labels=5, **common)
vit = transformers.ViTForImageClassification(vit_cfg).eval()
dino_cfg = transformers.Dinov2Config(mlp_ratio=2, layerscale_value=0.5, **common)
dino = transformers.Dinov2Model(dino_cfg).eval()
with torch.no_grad():
    # Random values everywhere (HF initialises some tensors to zeros or ones).
    for model in (vit, dino):
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    v = vit(pixel_values=pixels, output_hidden_states=True)
    last = vit.vit.layernorm(v.hidden_states[-1])
    out["vit"] = {"last_hidden_state": [float(x) for x in last.reshape(-1)],
                  "pooler_output": [float(x) for x in last[:, 0].reshape(-1)],
                  "logits": [float(x) for x in v.logits.reshape(-1)]}
    d = dino(pixel_values=pixels)
    out["dinov2"] = {"last_hidden_state": [float(x) for x in d.last_hidden_state.reshape(-1)],
                     "pooler_output": [float(x) for x in d.pooler_output.reshape(-1)]}
    # Another resolution (56 x 40: a 7 x 5 grid from the 4 x 4 one): interpolated positions.
    big = torch.randn(1, 3, 56, 40)
    out["pixel_values_56x40"] = {"shape": list(big.shape), "data": [float(v) for v in big.reshape(-1)]}
    d = dino(pixel_values=big)
    out["dinov2_56x40"] = {"last_hidden_state": [float(x) for x in d.last_hidden_state.reshape(-1)]}
    v = vit.vit(pixel_values=big, interpolate_pos_encoding=True)
    out["vit_56x40"] = {"last_hidden_state": [float(x) for x in v.last_hidden_state.reshape(-1)]}
vit.save_pretrained(root / "vit-tiny", safe_serialization=True)
dino.save_pretrained(root / "dinov2-tiny", safe_serialization=True)
(root / "vit_reference.json").write_text(json.dumps(out))
print(f"wrote {root}/vit-tiny, dinov2-tiny, vit_reference.json (transformers {transformers.__version__})")
