"""Reads a resnet checkpoint with plain h5py: every dataset against its crc32 attribute, and,
where torchvision is installed, /model against torchvision's resnet50().state_dict() (names,
shapes, and load_state_dict of the values). Exit status 0 when all hold."""
import sys
import zlib

import h5py
import numpy as np

path = sys.argv[1]
with h5py.File(path, "r") as f:
    bad, count = [], 0

    def check(name, obj):
        global count
        if not isinstance(obj, h5py.Dataset):
            return
        value = obj[()]
        raw = value if isinstance(value, bytes) else np.ascontiguousarray(value).tobytes()
        count += 1
        if zlib.crc32(raw) != int(obj.attrs["crc32"]):
            bad.append(name)

    f.visititems(check)
    print(f"h5py: {count} datasets read, {len(bad)} failing their crc32 {bad}")
    if bad:
        sys.exit(1)
    model = {k: tuple(f["model"][k].shape) for k in f["model"]}
    try:
        import torch
        import torchvision
    except ImportError:
        print("torchvision: not installed, names not compared")
        sys.exit(0)
    reference = torchvision.models.resnet50().state_dict()
    want = {k: tuple(v.shape) for k, v in reference.items()}
    if model != want:
        print("missing:", sorted(set(want) - set(model))[:10])
        print("unexpected:", sorted(set(model) - set(want))[:10])
        print("shapes:", [k for k in want if k in model and want[k] != model[k]][:10])
        sys.exit(1)
    net = torchvision.models.resnet50()
    net.load_state_dict({k: torch.from_numpy(np.asarray(f["model"][k][()])) for k in want})
    print(f"torchvision: {len(want)} names and shapes equal resnet50().state_dict(); loaded")
