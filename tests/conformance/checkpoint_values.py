"""Checkpoint values for the conformance tests: a `resnet ckpt init` checkpoint made less
trivial, written back with valid checksums by the converter (launch/scripts/convert_torchvision.py).
Needs numpy and h5py only."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "launch", "scripts"))
import convert_torchvision as conv  # noqa: E402


def randomise(path, rng, momentum=True):
    """BN gamma and beta, running statistics and the fc bias (and, with `momentum`, the momentum
    buffers) drawn at random, so that none is trivially 0 or 1 and no batch norm is the
    identity."""
    _, data = conv.read_checkpoint(path)
    new = {}
    for k, v in data.items():
        if not k.startswith(("model/", "optimizer/")) or k.endswith("num_batches_tracked"):
            continue
        bn = ".bn" in k or k.startswith(("model/bn", "optimizer/bn")) or "final_bn" in k or \
            "downsample.1" in k
        shape = np.shape(v)
        if k.startswith("optimizer/"):
            if momentum:
                new[k] = rng.normal(0, 0.01, shape)
        elif bn and k.endswith(".weight"):
            new[k] = rng.uniform(0.5, 1.5, shape)
        elif (bn and k.endswith(".bias")) or k == "model/fc.bias":
            new[k] = rng.normal(0, 0.1, shape)
        elif k.endswith("running_mean"):
            new[k] = rng.normal(0, 0.1, shape)
        elif k.endswith("running_var"):
            new[k] = rng.uniform(0.5, 1.5, shape)
    conv.update_checkpoint(path, new)
