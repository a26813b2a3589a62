#!/usr/bin/env python3
"""Converts between torchvision state_dicts and resnet checkpoints.

    convert_torchvision.py to-resnet STATE_DICT.pth --model NAME --output CKPT.h5 [--resnet BIN]
    convert_torchvision.py to-torch CKPT.h5 --output STATE_DICT.pth

to-resnet asks `resnet ckpt init` for a fresh checkpoint of NAME (input channels and classes read
from the state_dict's conv1.weight and fc.weight), checks that the state_dict has exactly its
tensor names and shapes, and writes the values in, with their crc32 checksums, zero momentum and
step 0: `resnet train --resume`, `eval` and `infer` accept the file. to-torch verifies every
checksum and writes /model as a state_dict that torchvision's load_state_dict takes (strict).
The names are torchvision's on both sides, so nothing is renamed or transposed.

Needs torch, numpy and h5py. The `resnet` executable is --resnet, else $RESNET, else `resnet` on
PATH, else build/resnet of this source tree.
"""
import argparse
import os
import shutil
import subprocess
import sys
import zlib

import h5py
import numpy as np


def fail(msg):
    sys.exit(f"convert_torchvision: error: {msg}")


def find_resnet(explicit=None):
    for cand in (explicit, os.environ.get("RESNET"), shutil.which("resnet"),
                 os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build",
                              "resnet")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    fail("cannot find the resnet executable: pass --resnet PATH or set RESNET")


def crc32_of(value):
    raw = value if isinstance(value, bytes) else np.ascontiguousarray(value).tobytes()
    return zlib.crc32(raw)


def read_checkpoint(path):
    """The root attributes and every dataset (path -> numpy value), each checked against its
    crc32; a missing, foreign or damaged file is one error line."""
    if not os.path.isfile(path):
        fail(f"checkpoint '{path}': no such file")
    if not h5py.is_hdf5(path):
        fail(f"checkpoint '{path}': not an HDF5 file")
    out = {}
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        if attrs.get("format") != "resnet-checkpoint":
            fail(f"checkpoint '{path}': not a resnet checkpoint (no format attribute "
                 f"'resnet-checkpoint')")

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                value = obj[()]
                if "crc32" not in obj.attrs:
                    fail(f"checkpoint '{path}': dataset '/{name}' has no crc32 attribute")
                if crc32_of(value) != int(obj.attrs["crc32"]):
                    fail(f"checkpoint '{path}': dataset '/{name}' fails its checksum: the file is "
                         "damaged")
                out[name] = value

        f.visititems(visit)
    return attrs, out


def update_checkpoint(path, values):
    """Overwrites existing datasets of a checkpoint (path -> array of the same shape) and their
    crc32. A BN buffer under model/ is also written as every rank's copy under
    trainer/rank_buffers/, which a resume on the same number of ranks restores."""
    with h5py.File(path, "r+") as f:
        for key, value in values.items():
            if key not in f:
                fail(f"checkpoint '{path}': no dataset '/{key}'")
            d = f[key]
            v = np.asarray(value).astype(d.dtype)
            if v.shape != d.shape:
                fail(f"checkpoint '{path}': '/{key}' is {d.shape}, the new value {v.shape}")
            d[()] = v
            d.attrs["crc32"] = np.uint32(crc32_of(v))
            rank_key = "trainer/rank_buffers/" + key[len("model/"):]
            if key.startswith("model/") and rank_key in f:
                rows = np.broadcast_to(v.reshape(1, -1), f[rank_key].shape).astype(np.float32)
                f[rank_key][()] = rows
                f[rank_key].attrs["crc32"] = np.uint32(crc32_of(rows))


# torchvision's evaluation transform of its ImageNet weights: Resize(256), CenterCrop(224),
# ToTensor, Normalize(ImageNet's mean and std).
IMAGENET_TRANSFORM = {"channels": 3, "channel_order": "RGB", "resize": 256, "crop": 224,
                      "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                      "pixel_scale": "1/255"}


def write_model_use(path, in_channels, classes):
    """A 1000-class RGB network is taken for torchvision's ImageNet weights: the 1000 names
    torchvision ships (torchvision/models/_meta.py) and its evaluation transform go to /meta,
    as `resnet train` writes them. Returns whether it wrote them."""
    if in_channels != 3 or classes != 1000:
        return False
    try:
        from torchvision.models import _meta
        names = list(_meta._IMAGENET_CATEGORIES)
    except Exception:
        return False
    if len(names) != 1000:
        return False
    import json
    texts = {"meta/class_names": "\n".join(names).encode(),
             "meta/transform": json.dumps(IMAGENET_TRANSFORM).encode()}
    with h5py.File(path, "r+") as f:
        for key, raw in texts.items():
            if key in f:
                del f[key]
            d = f.create_dataset(key, data=np.bytes_(raw))
            d.attrs["crc32"] = np.uint32(crc32_of(raw))
    return True


def load_state_dict_file(path):
    import torch
    if not os.path.isfile(path):
        fail(f"state_dict '{path}': no such file")
    try:
        sd = torch.load(path, map_location="cpu")
    except Exception as e:  # torch raises many kinds for a file that is not its own
        fail(f"state_dict '{path}': cannot be read by torch.load: {e}")
    if hasattr(sd, "state_dict") and not isinstance(sd, dict):
        sd = sd.state_dict()
    for wrapper in ("state_dict", "model"):  # training scripts often wrap the weights
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not sd:
        fail(f"state_dict '{path}': not a dict of tensors")
    # DistributedDataParallel prefixes every name with "module.".
    return {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def to_resnet(state_dict_path, model, output, resnet=None):
    sd = load_state_dict_file(state_dict_path)
    for key in ("conv1.weight", "fc.weight"):
        if key not in sd:
            fail(f"state_dict '{state_dict_path}': no '{key}' (not a ResNet of this family?)")
    in_channels, classes = int(sd["conv1.weight"].shape[1]), int(sd["fc.weight"].shape[0])
    tmp = output + ".converting"
    cmd = [find_resnet(resnet), "ckpt", "init", "--model", model, "--in-channels",
           str(in_channels), "--classes", str(classes), "--seed", "0", "--output", tmp]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        fail(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "resnet ckpt init failed")
    try:
        with h5py.File(tmp, "r") as f:
            want = {k: f["model"][k].shape for k in f["model"]}
        have = {k: tuple(v.shape) for k, v in sd.items()}
        missing = sorted(set(want) - set(have))
        # num_batches_tracked is optional on both sides (older PyTorch did not save it).
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        unexpected = sorted(set(have) - set(want))
        misshaped = [f"{k} (model {want[k]}, state_dict {have[k]})" for k in sorted(want)
                     if k in have and tuple(want[k]) != have[k]]
        if missing or unexpected or misshaped:
            parts = [f"{len(v)} {w} ({', '.join(v[:6])}{', ...' if len(v) > 6 else ''})"
                     for w, v in (("missing", missing), ("unexpected", unexpected),
                                  ("wrongly shaped", misshaped)) if v]
            fail(f"state_dict '{state_dict_path}' does not fit model {model}: " + "; ".join(parts))
        values = {}
        for k, v in sd.items():
            a = v.detach().cpu().numpy()
            values["model/" + k] = a.astype(np.int64 if k.endswith("num_batches_tracked")
                                            else np.float32)
        update_checkpoint(tmp, values)
        named = write_model_use(tmp, in_channels, classes)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f"wrote {output}: {model}, {len(sd)} tensors, {in_channels} channel(s), {classes} classes"
          + (", ImageNet's class names and evaluation transform" if named else ""))


def to_torch(checkpoint, output):
    import torch
    attrs, data = read_checkpoint(checkpoint)
    model = {k[len("model/"):]: v for k, v in data.items() if k.startswith("model/")}
    order = list(model)
    try:  # torchvision's own order where it defines the network
        import torchvision
        ref = getattr(torchvision.models, attrs.get("model", ""))(
            num_classes=int(model["fc.weight"].shape[0])).state_dict()
        if set(ref) == set(model):
            order = list(ref)
    except Exception:
        pass
    sd = {}
    for k in order:
        v = np.asarray(model[k])
        sd[k] = torch.tensor(int(v), dtype=torch.int64) if k.endswith("num_batches_tracked") \
            else torch.from_numpy(np.array(v, dtype=np.float32))
    torch.save(sd, output)
    print(f"wrote {output}: {attrs.get('model')}, {len(sd)} tensors")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("to-resnet", help="torchvision state_dict -> resnet checkpoint")
    a.add_argument("state_dict")
    a.add_argument("--model", required=True, help="the network's name (resnet50, ...)")
    a.add_argument("--output", required=True)
    a.add_argument("--resnet", help="the resnet executable")
    b = sub.add_parser("to-torch", help="resnet checkpoint -> torchvision state_dict")
    b.add_argument("checkpoint")
    b.add_argument("--output", required=True)
    args = p.parse_args(argv)
    if args.cmd == "to-resnet":
        to_resnet(args.state_dict, args.model, args.output, args.resnet)
    else:
        to_torch(args.checkpoint, args.output)


if __name__ == "__main__":
    main()
