#!/usr/bin/env python3
"""Time one training epoch of RecBole 1.2.1's BERT4Rec on ml-100k, as its users run it.

Prints one JSON line: train_seconds (the epoch alone, no evaluation), sequences, loss and
peak_rss_mib (the whole process). Usage: recbole_epoch.py DATA_DIR (the folder holding ml-100k/).
"""
import json
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import get_model, get_trainer, init_seed  # noqa: E402

data_dir = os.path.abspath(sys.argv[1])
tmp = tempfile.mkdtemp(prefix="recbole-bench-")
config = Config(
    model="BERT4Rec",
    dataset="ml-100k",
    config_dict={
        "data_path": data_dir,
        "epochs": 1,
        "train_neg_sample_args": None,
        "show_progress": False,
        "use_gpu": False,
        "device": "cpu",
        "checkpoint_dir": tmp,
        "log_wandb": False,
        "state": "ERROR",
    },
)
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
t0 = time.perf_counter()
loss = trainer._train_epoch(train_data, epoch_idx=0, show_progress=False)
seconds = time.perf_counter() - t0
import torch  # noqa: E402

print(json.dumps({
    "peer": "RecBole 1.2.1 BERT4Rec",
    "torch": torch.__version__,
    "threads": torch.get_num_threads(),
    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
    "sequences": len(train_data.dataset),
    "batch_size": config["train_batch_size"],
    "hidden": config["hidden_size"],
    "layers": config["n_layers"],
    "heads": config["n_heads"],
    "max_len": config["MAX_ITEM_LIST_LENGTH"],
    "train_seconds": seconds,
    "loss": float(loss) if not isinstance(loss, tuple) else float(sum(loss)),
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
