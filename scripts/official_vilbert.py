"""Import the official ViLBERT code (github facebookresearch/vilbert-multi-task) on current
PyTorch: its modules import download, logging and data-pipeline helpers at import time (boto3,
botocore, requests, tqdm, tensorboardX, lmdb, tensorpack, msgpack) and `torch._six`, which is gone
from current PyTorch; none of them is used by the network, so the missing ones are stubbed.

    from official_vilbert import load
    vilbert, concept_cap_dataset = load(OFFICIAL_CHECKOUT)
"""
import importlib.util
import os
import sys
import types


def load(checkout):
    checkout = os.path.abspath(checkout)
    sys.path.insert(0, checkout)
    for m in ["boto3", "botocore", "botocore.exceptions", "requests", "tqdm", "tensorboardX",
              "torch._six", "lmdb", "tensorpack", "tensorpack.dataflow", "msgpack",
              "msgpack_numpy"]:
        if m not in sys.modules:
            try:
                importlib.import_module(m)
            except ImportError:
                sys.modules[m] = types.ModuleType(m)
    for m, attr, value in [("botocore.exceptions", "ClientError", Exception), ("tqdm", "tqdm", None),
                           ("tensorboardX", "SummaryWriter", None), ("torch._six", "inf", float("inf")),
                           ("msgpack_numpy", "patch", lambda: None)]:
        if not hasattr(sys.modules[m], attr):
            setattr(sys.modules[m], attr, value)
    sys.modules["botocore"].exceptions = sys.modules["botocore.exceptions"]
    sys.modules["tensorpack"].dataflow = sys.modules["tensorpack.dataflow"]
    import vilbert.vilbert as network
    spec = importlib.util.spec_from_file_location(
        "concept_cap_dataset", os.path.join(checkout, "vilbert", "datasets", "concept_cap_dataset.py"))
    ccd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ccd)
    return network, ccd
