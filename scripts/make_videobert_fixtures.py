"""Reference outputs for VideoBERT's network parity test, from transformers run outside the
project (VideoBERT has no faithful public code; its network is BERT with BERT's pretraining
heads over a joint text + visual-word vocabulary, so `BertForPreTraining` is the reference).

    python scripts/make_videobert_fixtures.py OUT_DIR

Needs torch, transformers and safetensors from PyPI. Writes OUT_DIR/model (a small random
BertForPreTraining directory with VideoBERT's config keys: 50 text tokens + [>] + 12 visual
words) and OUT_DIR/reference.safetensors: two padded sequences `[CLS] text [>] words [SEP]`
(ids, token types, mask) and the network's last hidden states, token scores over the joint
vocabulary and alignment scores in eval mode; then one training step's loss on those
sequences with fixed masks (`masked_input_ids`, `text_target_*`, `word_target_*`,
`alignment_labels`; MLM + 0.5 MFM + 2 alignment, each a mean, dropout 0) and the gradient of
every parameter under its state-dict name (`grad.<name>`).
"""

import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import BertConfig, BertForPreTraining

out = sys.argv[1]
text_vocab, words = 50, 12
cfg = BertConfig(
    vocab_size=text_vocab + 1 + words, hidden_size=32, num_hidden_layers=2,
    num_attention_heads=2, intermediate_size=64, max_position_embeddings=40,
    hidden_act="gelu", layer_norm_eps=1e-12,
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
)
torch.manual_seed(0)
model = BertForPreTraining(cfg).eval()
# Non-zero biases and LayerNorm parameters, so that every parameter is checked.
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.endswith("bias") or "LayerNorm" in name:
            p.add_(torch.randn_like(p) * 0.1)
model_dir = os.path.join(out, "model")
model.save_pretrained(model_dir, safe_serialization=True)
c = json.load(open(os.path.join(model_dir, "config.json")))
c["text_vocab_size"], c["visual_words"] = text_vocab, words
json.dump(c, open(os.path.join(model_dir, "config.json"), "w"), indent=1)

cls, sep, start = 2, 3, text_vocab
word = lambda w: text_vocab + 1 + w
seqs = [
    [cls, 10, 11, 12, start, word(0), word(5), word(11), sep],
    [cls, 20, 21, start, word(3), word(3), sep],
]
L = max(len(s) for s in seqs)
ids = np.zeros((2, L), np.int64)
types = np.zeros((2, L), np.int64)
mask = np.zeros((2, L), np.int64)
for i, s in enumerate(seqs):
    ids[i, : len(s)] = s
    mask[i, : len(s)] = 1
    k = s.index(start)
    types[i, k : len(s)] = 1
with torch.no_grad():
    o = model(
        input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types),
        attention_mask=torch.from_numpy(mask), output_hidden_states=True,
    )
# One training step: [MASK] (id 4) over text tokens and visual words, targets the originals.
masked = ids.copy()
text_pos = [(0, 2), (1, 1)]
word_pos = [(0, 5), (0, 7), (1, 4)]
masked[0, 2] = 4
masked[1, 1] = 4
masked[0, 5] = 4
masked[0, 7] = word(2)  # BERT's 10%: a random other token
text_targets = np.array([ids[r, c] for r, c in text_pos], np.int64)
word_targets = np.array([ids[r, c] for r, c in word_pos], np.int64)
alignment = np.array([0, 1], np.int64)  # 0: text and video go together (BERT's is-next)
model.train()
model.zero_grad()
o2 = model(
    input_ids=torch.from_numpy(masked), token_type_ids=torch.from_numpy(types),
    attention_mask=torch.from_numpy(mask),
)
ce = torch.nn.functional.cross_entropy
logits = o2.prediction_logits
pick = lambda pos: logits[[r for r, _ in pos], [c for _, c in pos]]
loss = (
    ce(pick(text_pos), torch.from_numpy(text_targets))
    + 0.5 * ce(pick(word_pos), torch.from_numpy(word_targets))
    + 2.0 * ce(o2.seq_relationship_logits, torch.from_numpy(alignment))
)
loss.backward()
grads = {f"grad.{n}": p.grad.numpy().copy() for n, p in model.named_parameters()}
save_file(
    {
        "input_ids": ids, "token_type_ids": types, "attention_mask": mask,
        "last_hidden_state": o.hidden_states[-1].numpy(),
        "prediction_logits": o.prediction_logits.numpy(),
        "seq_relationship_logits": o.seq_relationship_logits.numpy(),
        "masked_input_ids": masked,
        "text_target_positions": np.array(text_pos, np.int64),
        "text_targets": text_targets,
        "word_target_positions": np.array(word_pos, np.int64),
        "word_targets": word_targets,
        "alignment_labels": alignment,
        "loss": np.array([loss.item()], np.float32),
        **grads,
    },
    os.path.join(out, "reference.safetensors"),
)
print("wrote", model_dir, "and reference.safetensors")
