"""Fixture for core::losses' contrastive losses (CBT's visual InfoNCE and cross-modal loss),
computed with PyTorch autograd as the CBT paper's formulas (Sun et al., 2019; ../shared/MODELS.md
section 7) read:

- visual: -log exp(e_t . y_t / tau) / sum_j exp(e_j . y_t / tau), the sum over every candidate
  feature of the batch (the positive among them);
- cross-modal: -log MI(x, y) / (MI(x, y) + sum_x' MI(x', y)), MI = exp(score), the mismatched
  videos x' of the batch: with score[i, j] = s(video j, text i), the positive on the diagonal.

Each averaged over its rows. Cases include a negative equal to the positive (a repeated feature,
a tied score) and a large temperature. Writes tests/fixtures/cbt/contrastive.safetensors: the
inputs, the positives (as floats), the losses and the gradients of each loss with respect to its
inputs.

    python scripts/make_contrastive_loss_fixtures.py [OUTPUT_DIR]
"""
import os
import sys

import torch
from safetensors.torch import save_file

out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/cbt"
torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
tensors = {}


def visual(name, queries, keys, positives, tau):
    q = queries.clone().requires_grad_()
    k = keys.clone().requires_grad_()
    logits = q @ k.T / tau
    # Written out rather than through cross_entropy, as the paper's formula.
    rows = torch.arange(len(positives))
    loss = (-(logits[rows, positives]) + torch.logsumexp(logits, dim=1)).mean()
    loss.backward()
    tensors[f"{name}.queries"] = queries
    tensors[f"{name}.keys"] = keys
    tensors[f"{name}.positives"] = positives.double()
    tensors[f"{name}.temperature"] = torch.tensor([tau])
    tensors[f"{name}.loss"] = loss.detach().reshape(1)
    tensors[f"{name}.grad_queries"] = q.grad
    tensors[f"{name}.grad_keys"] = k.grad


def cross_modal(name, scores):
    s = scores.clone().requires_grad_()
    mi = torch.exp(s)
    n = len(s)
    eye = torch.eye(n, dtype=torch.bool)
    positive = mi[eye]
    negatives = (mi * (~eye)).sum(dim=1)
    loss = (-torch.log(positive / (positive + negatives))).mean()
    loss.backward()
    tensors[f"{name}.scores"] = scores
    tensors[f"{name}.loss"] = loss.detach().reshape(1)
    tensors[f"{name}.grad_scores"] = s.grad


# 5 masked positions predicted among 9 clip features (D = 8).
q = torch.randn(5, 8)
k = torch.randn(9, 8)
pos = torch.tensor([0, 3, 4, 7, 8])
visual("visual", q, k, pos, 1.0)
# A negative equal to the positive: feature 2 repeats feature 0 (row 0's positive), and row 1's
# prediction is feature 3 itself.
k2 = k.clone()
k2[2] = k2[0]
q2 = q.clone()
q2[1] = k2[3]
visual("visual_tie", q2, k2, pos, 1.0)
visual("visual_tau", q * 3, k * 3, pos, 0.07)

# 4 videos x 4 texts.
s = torch.randn(4, 4) * 2
cross_modal("cross", s)
s2 = s.clone()
s2[1, 2] = s2[1, 1]  # a mismatched video scored as the positive
s2[3, :] = 0.5  # every video alike for text 3
cross_modal("cross_tie", s2)

os.makedirs(out_dir, exist_ok=True)
save_file({k: v.float().contiguous() for k, v in tensors.items()},
          os.path.join(out_dir, "contrastive.safetensors"))
print(f"wrote {len(tensors)} tensors to {out_dir}/contrastive.safetensors")
