"""CBT's network in PyTorch, written from ../shared/MODELS.md section 7 and the choices named in
src/cbt/model.rs (there is no public CBT code): a visual transformer over projected clip features
(a learned mask embedding in place of masked clips, learned positions, LayerNorm) of BERT's
post-norm layers, the text through a BERT, and a cross-modal transformer over [h_x ; h_y] (plus a
learned modality embedding per half) whose first output goes through dense -> GELU -> score. The
visual InfoNCE scores each masked clip's output against the projected features of every clip of
the micro-batch; the cross-modal loss scores each text against every video of the micro-batch.

Two uses:

    python scripts/cbt_reference.py fixtures [OUTPUT_DIR]
        small random weights and inputs (padding, a repeated clip, a duplicated video: negatives
        equal to the positive); writes OUTPUT_DIR/network.safetensors (default tests/fixtures/cbt)
        with the weights under Tessera's checkpoint names, the inputs, the visual and text hidden
        states (and every visual hidden state of the unmasked input), the cross-modal scores, both losses and the gradient of their sum with respect to
        every trainable weight (the text BERT frozen, as the paper).

    python scripts/cbt_reference.py bench --threads 2 [sizes]
        times one training step (forward, both losses, backward, AdamW) of the same network with
        random weights and features, the batch split in micro-batches as Tessera's workers split
        it; prints JSON (bench/cbt_vs_pytorch.sh).
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F


def layer_names(prefix):
    return {
        "q": f"{prefix}.attention.self.query",
        "k": f"{prefix}.attention.self.key",
        "v": f"{prefix}.attention.self.value",
        "o": f"{prefix}.attention.output.dense",
        "ln1": f"{prefix}.attention.output.LayerNorm",
        "i": f"{prefix}.intermediate.dense",
        "out": f"{prefix}.output.dense",
        "ln2": f"{prefix}.output.LayerNorm",
    }


class Weights:
    """A flat dict of named tensors, created at random (BERT's normal(0, std) init, LayerNorm at
    1 / 0 plus noise so that the test sees them)."""

    def __init__(self, std, gen):
        self.t = {}
        self.std = std
        self.gen = gen

    def normal(self, name, shape, std=None):
        self.t[name] = torch.randn(*shape, generator=self.gen) * (std or self.std)

    def linear(self, name, d_in, d_out):
        self.normal(f"{name}.weight", (d_out, d_in))
        self.normal(f"{name}.bias", (d_out,))

    def norm(self, name, d):
        self.t[f"{name}.weight"] = 1 + 0.1 * torch.randn(d, generator=self.gen)
        self.t[f"{name}.bias"] = 0.1 * torch.randn(d, generator=self.gen)

    def encoder_layer(self, prefix, h, inter):
        n = layer_names(prefix)
        for k in ("q", "k", "v", "o"):
            self.linear(n[k], h, h)
        self.norm(n["ln1"], h)
        self.linear(n["i"], h, inter)
        self.linear(n["out"], inter, h)
        self.norm(n["ln2"], h)


def init_weights(cfg, gen):
    h, t = cfg["text"]["hidden_size"], cfg["text"]
    w = Weights(0.2, gen)
    w.linear("visual_embeddings.projection", cfg["feature_size"], h)
    w.normal("visual_embeddings.mask_embedding", (h,))
    w.normal("visual_embeddings.position_embeddings.weight", (cfg["max_clips"], h))
    w.norm("visual_embeddings.layer_norm", h)
    for i in range(cfg["visual_layers"]):
        w.encoder_layer(f"visual.layer.{i}", h, cfg["intermediate"])
    w.normal("text.embeddings.word_embeddings.weight", (t["vocab_size"], h))
    w.normal("text.embeddings.position_embeddings.weight", (t["max_position_embeddings"], h))
    w.normal("text.embeddings.token_type_embeddings.weight", (t["type_vocab_size"], h))
    w.norm("text.embeddings.LayerNorm", h)
    for i in range(t["num_hidden_layers"]):
        w.encoder_layer(f"text.encoder.layer.{i}", h, t["intermediate_size"])
    w.linear("text.pooler.dense", h, h)
    w.linear("text.cls.predictions.transform.dense", h, h)
    w.norm("text.cls.predictions.transform.LayerNorm", h)
    w.normal("text.cls.predictions.bias", (t["vocab_size"],))
    w.normal("modality_embeddings.weight", (2, h))
    for i in range(cfg["cross_layers"]):
        w.encoder_layer(f"cross.layer.{i}", h, cfg["intermediate"])
    w.linear("score_head.dense", h, h)
    w.linear("score_head.out", h, 1)
    return w.t


def lin(W, name, x):
    return F.linear(x, W[f"{name}.weight"], W[f"{name}.bias"])


def ln(W, name, x, eps):
    return F.layer_norm(x, x.shape[-1:], W[f"{name}.weight"], W[f"{name}.bias"], eps)


def encoder(W, prefix, layers, heads, x, padding, eps, states=None):
    """BERT's post-norm layers; padding [B, L] true at padding keys. `states`, a list, gets the
    input and every layer's output."""
    b, l, h = x.shape
    d = h // heads
    bias = torch.zeros(b, 1, 1, l, dtype=x.dtype)
    bias = bias.masked_fill(padding[:, None, None, :], float("-inf"))
    for i in range(layers):
        if states is not None:
            states.append(x)
        n = layer_names(f"{prefix}.{i}")
        split = lambda y: y.view(b, l, heads, d).transpose(1, 2)
        q, k, v = (split(lin(W, n[c], x)) for c in ("q", "k", "v"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, l, h)
        a = ln(W, n["ln1"], x + lin(W, n["o"], ctx), eps)
        x = ln(W, n["ln2"], a + lin(W, n["out"], F.gelu(lin(W, n["i"], a))), eps)
    if states is not None:
        states.append(x)
    return x


def visual_forward(W, cfg, feats, real, masked, states=None):
    eps = cfg["text"]["layer_norm_eps"]
    e = lin(W, "visual_embeddings.projection", feats)
    m = masked[..., None].to(e.dtype)
    x = e * (1 - m) + W["visual_embeddings.mask_embedding"] * m
    x = x + W["visual_embeddings.position_embeddings.weight"][: feats.shape[1]]
    x = ln(W, "visual_embeddings.layer_norm", x, eps)
    hid = encoder(W, "visual.layer", cfg["visual_layers"], cfg["heads"], x, ~real, eps, states)
    return e, hid


def text_forward(W, cfg, ids, mask):
    t = cfg["text"]
    l = ids.shape[1]
    x = (
        W["text.embeddings.word_embeddings.weight"][ids]
        + W["text.embeddings.position_embeddings.weight"][:l]
        + W["text.embeddings.token_type_embeddings.weight"][0]
    )
    x = ln(W, "text.embeddings.LayerNorm", x, t["layer_norm_eps"])
    return encoder(
        W, "text.encoder.layer", t["num_hidden_layers"], t["num_attention_heads"], x, ~mask,
        t["layer_norm_eps"],
    )


def cross_scores(W, cfg, hv, vpad, ht, tpad):
    """s[i, j] = score(video j, text i) over every pair."""
    b = hv.shape[0]
    vid = torch.arange(b).repeat(b)  # pair p = i * b + j: video j, text i
    txt = torch.arange(b).repeat_interleave(b)
    mod = W["modality_embeddings.weight"]
    x = torch.cat([hv[vid] + mod[0], ht[txt] + mod[1]], dim=1)
    pad = torch.cat([vpad[vid], tpad[txt]], dim=1)
    out = encoder(W, "cross.layer", cfg["cross_layers"], cfg["heads"], x, pad,
                  cfg["text"]["layer_norm_eps"])
    s = lin(W, "score_head.out", F.gelu(lin(W, "score_head.dense", out[:, 0])))
    return s.view(b, b)


def losses(W, cfg, feats, real, masked, ids, tmask, temperature=1.0):
    e, hv = visual_forward(W, cfg, feats, real, masked)
    b, l, h = e.shape
    flat_e, flat_h = e.reshape(b * l, h), hv.reshape(b * l, h)
    keys = real.reshape(-1).nonzero().squeeze(1)
    key_of = torch.full((b * l,), -1, dtype=torch.long)
    key_of[keys] = torch.arange(len(keys))
    q_pos = masked.reshape(-1).nonzero().squeeze(1)
    vis_scores = flat_h[q_pos] @ flat_e[keys].T / temperature
    # Written out as the paper's formula rather than through cross_entropy.
    rows = torch.arange(len(q_pos))
    visual = (-vis_scores[rows, key_of[q_pos]] + torch.logsumexp(vis_scores, 1)).mean()
    with torch.no_grad():  # the text BERT is frozen (the paper)
        ht = text_forward(W, cfg, ids, tmask)
    s = cross_scores(W, cfg, hv, ~real, ht, ~tmask)
    diag = torch.arange(b)
    cross = (-s[diag, diag] + torch.logsumexp(s, 1)).mean()
    return hv, ht, s, visual, cross


def config(feature_size, hidden, heads, inter, text_layers, vocab, visual_layers, cross_layers,
           max_clips, max_pos):
    return {
        "feature_size": feature_size,
        "visual_layers": visual_layers,
        "cross_layers": cross_layers,
        "heads": heads,
        "intermediate": inter,
        "max_clips": max_clips,
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "text": {
            "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": text_layers,
            "num_attention_heads": heads, "intermediate_size": inter, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
            "max_position_embeddings": max_pos, "type_vocab_size": 2, "initializer_range": 0.02,
            "layer_norm_eps": 1e-12, "pad_token_id": 0,
        },
    }


def fixtures(out_dir):
    from safetensors.torch import save_file

    torch.set_default_dtype(torch.float64)
    gen = torch.Generator().manual_seed(0)
    cfg = config(feature_size=10, hidden=16, heads=2, inter=24, text_layers=2, vocab=60,
                 visual_layers=2, cross_layers=1, max_clips=6, max_pos=16)
    W = init_weights(cfg, gen)
    b, l, f = 4, 5, cfg["feature_size"]
    lengths = [5, 3, 4, 3]
    feats = torch.randn(b, l, f, generator=gen)
    real = torch.zeros(b, l, dtype=torch.bool)
    for r, n in enumerate(lengths):
        real[r, :n] = True
    feats[~real] = 0
    # Negatives equal to the positive: a clip repeated inside a video, and video 3 a copy of
    # video 1 (same clips; the cross-modal scores of texts against them tie).
    feats[0, 3] = feats[0, 1]
    feats[3] = feats[1]
    masked = torch.zeros(b, l, dtype=torch.bool)
    # Video 3 masked as video 1, so that it is the same input to the network.
    for r, ps in enumerate([[1, 4], [0], [2], [0]]):
        masked[r, ps] = True
    tl = [7, 5, 6, 4]
    ids = torch.zeros(b, max(tl), dtype=torch.long)
    tmask = torch.zeros(b, max(tl), dtype=torch.bool)
    for r, n in enumerate(tl):
        ids[r, :n] = torch.randint(5, cfg["text"]["vocab_size"], (n,), generator=gen)
        ids[r, 0], ids[r, n - 1] = 1, 2
        tmask[r, :n] = True
    trainable = {k: v.clone().requires_grad_(not k.startswith("text.")) for k, v in W.items()}
    hv, ht, s, visual, cross = losses(trainable, cfg, feats, real, masked, ids, tmask)
    (visual + cross).backward()
    # What `cbt features --layers` reads: every hidden state of the unmasked visual pass.
    states = []
    with torch.no_grad():
        visual_forward(W, cfg, feats, real, torch.zeros_like(masked), states)
    out = {f"weight.{k}": v.float() for k, v in W.items()}
    for k, v in trainable.items():
        if v.grad is not None:
            out[f"grad.{k}"] = v.grad.float()
    out.update({
        "input.features": feats.float(),
        "input.real": real.float(),
        "input.masked": masked.float(),
        "input.ids": ids.float(),
        "input.text_mask": tmask.float(),
        "output.visual_hidden": hv.detach().float(),
        "output.visual_states_unmasked": torch.stack(states).float(),
        "output.text_hidden": ht.float(),
        "output.cross_scores": s.detach().float(),
        "output.visual_loss": visual.detach().reshape(1).float(),
        "output.cross_loss": cross.detach().reshape(1).float(),
    })
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "network.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path,
              metadata={"config": json.dumps(cfg)})
    print(f"wrote {path}: visual loss {visual.item():.6f}, cross loss {cross.item():.6f}")


def bench(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = config(feature_size=a.feature_size, hidden=a.hidden, heads=a.heads,
                 inter=4 * a.hidden, text_layers=a.text_layers, vocab=30522,
                 visual_layers=a.visual_layers, cross_layers=a.cross_layers, max_clips=a.clips,
                 max_pos=512)
    cfg["hidden_dropout"] = cfg["attention_dropout"] = 0.1
    gen = torch.Generator().manual_seed(0)
    W = init_weights(cfg, gen)
    params = {k: v.requires_grad_(not k.startswith("text.")) for k, v in W.items()}
    opt = torch.optim.AdamW([v for v in params.values() if v.requires_grad], lr=1e-4,
                            weight_decay=0.01)
    feats = torch.rand(a.batch, a.clips, a.feature_size) * 2 - 1
    real = torch.ones(a.batch, a.clips, dtype=torch.bool)
    masked = torch.zeros(a.batch, a.clips, dtype=torch.bool)
    k = max(1, round(0.15 * a.clips))
    for r in range(a.batch):
        masked[r, torch.randperm(a.clips)[:k]] = True
    ids = torch.randint(1000, 30000, (a.batch, a.text_len))
    ids[:, 0], ids[:, -1] = 101, 102
    tmask = torch.ones(a.batch, a.text_len, dtype=torch.bool)
    times = []
    for rep in range(a.repeats + 1):
        t0 = time.perf_counter()
        if a.mode == "train":
            opt.zero_grad()
            for lo in range(0, a.batch, a.micro_batch):
                hi = min(lo + a.micro_batch, a.batch)
                part = hi - lo
                _, _, _, v, c = losses(params, cfg, feats[lo:hi], real[lo:hi], masked[lo:hi],
                                       ids[lo:hi], tmask[lo:hi])
                ((v + c) * part / a.batch).backward()
            opt.step()
        else:
            with torch.no_grad():
                for lo in range(0, a.batch, a.micro_batch):
                    hi = min(lo + a.micro_batch, a.batch)
                    losses(params, cfg, feats[lo:hi], real[lo:hi], masked[lo:hi], ids[lo:hi],
                           tmask[lo:hi])
        if rep > 0:
            times.append(time.perf_counter() - t0)
    times.sort()
    import resource
    print(json.dumps({
        "mode": a.mode, "batch": a.batch, "micro_batch": a.micro_batch, "hidden": a.hidden,
        "torch": torch.__version__, "threads": a.threads,
        "seconds_median": times[len(times) // 2], "seconds": times,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "fixtures":
        fixtures(sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/cbt")
        return
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["bench"])
    p.add_argument("--mode", default="train", choices=["train", "infer"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--text-layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--visual-layers", type=int, default=2)
    p.add_argument("--cross-layers", type=int, default=1)
    p.add_argument("--feature-size", type=int, default=384)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--clips", type=int, default=6)
    p.add_argument("--text-len", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    bench(p.parse_args())


if __name__ == "__main__":
    main()
