"""Fixture for core::decoder: PyTorch's nn.TransformerDecoderLayer (post-norm, GELU), two of
them stacked, with random weights (LayerNorms included), a causal target mask and padding on
both sides. Writes tests/fixtures/decoder/decoder.safetensors holding the weights under
Tessera's parameter names, the inputs and the output.

    python scripts/make_decoder_fixture.py [OUTPUT_DIR]
"""
import sys

import torch
from safetensors.torch import save_file

out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/decoder"
torch.manual_seed(0)
D, H, FF, LAYERS = 16, 4, 32, 2
layers = [
    torch.nn.TransformerDecoderLayer(
        D, H, FF, dropout=0.0, activation="gelu", batch_first=True, norm_first=False,
        layer_norm_eps=1e-5,
    )
    for _ in range(LAYERS)
]
for layer in layers:
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.3)
    layer.eval()

B, LT, LS = 2, 5, 4
tgt = torch.randn(B, LT, D)
memory = torch.randn(B, LS, D)
tgt_pad = torch.zeros(B, LT, dtype=torch.bool)
tgt_pad[1, 3:] = True
mem_pad = torch.zeros(B, LS, dtype=torch.bool)
mem_pad[1, 3:] = True
causal = torch.triu(torch.ones(LT, LT, dtype=torch.bool), diagonal=1)
x = tgt
with torch.no_grad():
    for layer in layers:
        x = layer(x, memory, tgt_mask=causal, tgt_key_padding_mask=tgt_pad,
                  memory_key_padding_mask=mem_pad)

tensors = {
    "input.target": tgt, "input.memory": memory,
    "input.target_padding": tgt_pad.float(), "input.memory_padding": mem_pad.float(),
    "output": x,
}
for i, layer in enumerate(layers):
    p = f"layer.{i}."
    for ours, attn in (("self_attention", layer.self_attn), ("cross_attention", layer.multihead_attn)):
        w = attn.in_proj_weight.detach()
        b = attn.in_proj_bias.detach()
        for j, name in enumerate(("query", "key", "value")):
            tensors[p + f"{ours}.{name}.weight"] = w[j * D:(j + 1) * D]
            tensors[p + f"{ours}.{name}.bias"] = b[j * D:(j + 1) * D]
        tensors[p + f"{ours}.output.weight"] = attn.out_proj.weight.detach()
        tensors[p + f"{ours}.output.bias"] = attn.out_proj.bias.detach()
    for ours, norm in (("self_attention_norm", layer.norm1), ("cross_attention_norm", layer.norm2),
                       ("output_norm", layer.norm3)):
        tensors[p + f"{ours}.weight"] = norm.weight.detach()
        tensors[p + f"{ours}.bias"] = norm.bias.detach()
    tensors[p + "intermediate.weight"] = layer.linear1.weight.detach()
    tensors[p + "intermediate.bias"] = layer.linear1.bias.detach()
    tensors[p + "output.weight"] = layer.linear2.weight.detach()
    tensors[p + "output.bias"] = layer.linear2.bias.detach()
save_file({k: v.contiguous() for k, v in tensors.items()}, f"{out_dir}/decoder.safetensors",
          metadata={"torch": torch.__version__})
print(f"wrote {out_dir}/decoder.safetensors (torch {torch.__version__})")
