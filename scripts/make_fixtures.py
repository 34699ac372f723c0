#!/usr/bin/env python3
"""Reference outputs from PyTorch for Tessera's shared attention and encoder layers.

Writes tests/fixtures/encoder_reference.json: random weights (PyTorch layout, [out, in]), an
input batch with key padding, and the outputs of torch.nn.MultiheadAttention and
torch.nn.TransformerEncoderLayer (post-norm and pre-norm, GELU, no dropout); for the layers also
the gradients of sum(output * probe) with respect to the input and the feed-forward weight;
exact GELU and its derivative on a sweep; softmax cross-entropy and its gradient.

    python3 -m venv .venv && .venv/bin/pip install torch numpy
    .venv/bin/python scripts/make_fixtures.py
"""
import json
import pathlib

import torch

torch.manual_seed(0)
D, H, FF, B, L = 8, 2, 16, 2, 5
EPS = 1e-12


def t(x):
    return {"shape": list(x.shape), "data": [float(v) for v in x.detach().reshape(-1)]}


x = torch.randn(B, L, D)
pad = torch.zeros(B, L, dtype=torch.bool)
pad[1, 3:] = True  # second sequence: last two positions are padding

out = {"hidden": D, "heads": H, "intermediate": FF, "eps": EPS,
       "input": t(x), "key_padding": [[bool(v) for v in row] for row in pad]}

# Multi-head attention
mha = torch.nn.MultiheadAttention(D, H, batch_first=True, dropout=0.0)
with torch.no_grad():
    for p in mha.parameters():
        p.copy_(torch.randn_like(p) * 0.3)
wq, wk, wv = mha.in_proj_weight.chunk(3)
bq, bk, bv = mha.in_proj_bias.chunk(3)
attn_out, _ = mha(x, x, x, key_padding_mask=pad, need_weights=False)
out["attention"] = {
    "tensors": {
        "query.weight": t(wq), "query.bias": t(bq),
        "key.weight": t(wk), "key.bias": t(bk),
        "value.weight": t(wv), "value.bias": t(bv),
        "output.weight": t(mha.out_proj.weight), "output.bias": t(mha.out_proj.bias),
    },
    "output": t(attn_out),
}

layers = {}
for name, norm_first in [("post_norm", False), ("pre_norm", True)]:
    layer = torch.nn.TransformerEncoderLayer(
        D, H, dim_feedforward=FF, dropout=0.0, activation="gelu",
        batch_first=True, norm_first=norm_first, layer_norm_eps=EPS)
    layer.eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        y = layer(x, src_key_padding_mask=pad)
        # PyTorch's fast path may zero padded rows; recompute through the slow path for all rows.
        sa = layer.self_attn
        def block(z):
            return sa(z, z, z, key_padding_mask=pad, need_weights=False)[0]
        def ff(z):
            return layer.linear2(torch.nn.functional.gelu(layer.linear1(z)))
        if norm_first:
            a = x + block(layer.norm1(x))
            y = a + ff(layer.norm2(a))
        else:
            a = layer.norm1(x + block(x))
            y = layer.norm2(a + ff(a))
    wq, wk, wv = layer.self_attn.in_proj_weight.chunk(3)
    bq, bk, bv = layer.self_attn.in_proj_bias.chunk(3)
    out[name] = {
        "tensors": {
            "attention.query.weight": t(wq), "attention.query.bias": t(bq),
            "attention.key.weight": t(wk), "attention.key.bias": t(bk),
            "attention.value.weight": t(wv), "attention.value.bias": t(bv),
            "attention.output.weight": t(layer.self_attn.out_proj.weight),
            "attention.output.bias": t(layer.self_attn.out_proj.bias),
            "attention_norm.weight": t(layer.norm1.weight), "attention_norm.bias": t(layer.norm1.bias),
            "intermediate.weight": t(layer.linear1.weight), "intermediate.bias": t(layer.linear1.bias),
            "output.weight": t(layer.linear2.weight), "output.bias": t(layer.linear2.bias),
            "output_norm.weight": t(layer.norm2.weight), "output_norm.bias": t(layer.norm2.bias),
        },
        "output": t(y),
    }
    layers[name] = (layer, norm_first)

# Gradients, from a generator of their own so that the values above stay as they were.
g = torch.Generator().manual_seed(1)
probe = torch.randn(B, L, D, generator=g)
out["probe"] = t(probe)
for name, (layer, norm_first) in layers.items():
    sa = layer.self_attn
    xg = x.clone().requires_grad_(True)
    def block(z):
        return sa(z, z, z, key_padding_mask=pad, need_weights=False)[0]
    def ff(z):
        return layer.linear2(torch.nn.functional.gelu(layer.linear1(z)))
    if norm_first:
        a = xg + block(layer.norm1(xg))
        y = a + ff(layer.norm2(a))
    else:
        a = layer.norm1(xg + block(xg))
        y = layer.norm2(a + ff(a))
    layer.zero_grad()
    (y * probe).sum().backward()
    out[name]["grad_input"] = t(xg.grad)
    out[name]["grad_intermediate_weight"] = t(layer.linear1.weight.grad)
    out[name]["grad_intermediate_bias"] = t(layer.linear1.bias.grad)
    for norm in ("norm1", "norm2"):
        out[name][f"grad_{norm}_weight"] = t(getattr(layer, norm).weight.grad)
        out[name][f"grad_{norm}_bias"] = t(getattr(layer, norm).bias.grad)

xs = torch.linspace(-6.0, 6.0, 241, dtype=torch.float64).requires_grad_(True)
ys = torch.nn.functional.gelu(xs)
ys.sum().backward()
out["gelu"] = {"x": t(xs), "y": t(ys), "dy": t(xs.grad)}

logits = (torch.randn(6, 11, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
targets = torch.randint(0, 11, (6,), generator=g)
loss = torch.nn.functional.cross_entropy(logits, targets)
loss.backward()
out["cross_entropy"] = {"logits": t(logits), "targets": [int(v) for v in targets],
                        "loss": float(loss.detach()), "grad": t(logits.grad)}
logits.grad = None
smoothed = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.1)
smoothed.backward()
out["cross_entropy"]["smoothed_0.1"] = {"loss": float(smoothed.detach()), "grad": t(logits.grad)}

path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "encoder_reference.json"
path.write_text(json.dumps(out, indent=1))
print(f"wrote {path} (torch {torch.__version__})")
