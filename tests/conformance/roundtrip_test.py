#!/usr/bin/env python3
"""The converter both ways: torchvision resnet18 weights (random, with non-trivial BN statistics
and num_batches_tracked) -> resnet checkpoint -> torchvision state_dict gives identical tensors
(names, order, dtypes, values); the converted checkpoint passes `resnet ckpt inspect` (every
checksum) and `resnet infer` on it gives torchvision's logits; it carries torchvision's 1000
ImageNet class names and evaluation transform, which `resnet predict` uses; a state_dict of
another network is one clear error.

    roundtrip_test.py RESNET_BINARY
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
    import torch
    import torchvision
    from PIL import Image
except ImportError as e:
    print(f"SKIP: {e.name} is not importable")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
CONVERTER = os.path.join(HERE, "..", "..", "launch", "scripts", "convert_torchvision.py")


def run(cmd, expect_ok=True):
    r = subprocess.run(cmd, capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="2"))
    if (r.returncode == 0) != expect_ok:
        sys.exit(f"FAIL: {' '.join(cmd)} exited {r.returncode}\n{r.stdout}{r.stderr}")
    return r


def main():
    resnet = sys.argv[1]
    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(1234)
    with tempfile.TemporaryDirectory() as tmp:
        pth, h5 = os.path.join(tmp, "tv.pth"), os.path.join(tmp, "tv.h5")
        back = os.path.join(tmp, "back.pth")
        torch.save(net.state_dict(), pth)
        py = sys.executable
        run([py, CONVERTER, "to-resnet", pth, "--model", "resnet18", "--output", h5,
             "--resnet", resnet])
        print(run([resnet, "ckpt", "inspect", h5]).stdout.strip().splitlines()[-1])
        # torchvision's 1000 ImageNet names and its evaluation transform go with the weights.
        info = json.loads(run([resnet, "ckpt", "inspect", h5, "--json"]).stdout)
        names = info["class_names"]
        if len(names) != 1000 or names[:2] != ["tench", "goldfish"] or names[-1] != "toilet tissue":
            sys.exit(f"FAIL: class names not torchvision's: {len(names)}, {names[:3]}")
        t = info["transform"]
        if (t["resize"], t["crop"]) != (256, 224) or not (
                np.allclose(t["mean"], [0.485, 0.456, 0.406], atol=1e-7)
                and np.allclose(t["std"], [0.229, 0.224, 0.225], atol=1e-7)):
            sys.exit(f"FAIL: transform not torchvision's: {t}")
        photo = os.path.join(tmp, "photo.jpg")
        Image.fromarray(np.random.RandomState(0).randint(0, 255, (300, 400, 3), np.uint8)).save(photo)
        pred = run([resnet, "predict", "--checkpoint", h5, "--top", "3", "--threads", "2", photo])
        first = pred.stdout.split(": ", 1)[1].split("  ")[0].rsplit(" ", 1)[0]
        if first not in names:
            sys.exit(f"FAIL: predict does not name an ImageNet class: {pred.stdout}")
        print("predict: " + pred.stdout.strip())
        run([py, CONVERTER, "to-torch", h5, "--output", back])
        a, b = net.state_dict(), torch.load(back)
        if list(a) != list(b):
            sys.exit(f"FAIL: names differ: {sorted(set(a) ^ set(b))[:5]}")
        differ = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
        if differ:
            sys.exit(f"FAIL: {len(differ)} tensors differ after the round trip: {differ[:5]}")
        print(f"round trip: {len(a)} tensors identical (names, order, dtype, values)")

        # The converted weights in the project give torchvision's logits.
        x = torch.randn(2, 3, 64, 64)
        inp, out = os.path.join(tmp, "in.h5"), os.path.join(tmp, "out.h5")
        with h5py.File(inp, "w") as f:
            f["images"] = x.numpy()
        run([resnet, "infer", "--checkpoint", h5, "--input", inp, "--output", out,
             "--threads", "2"])
        with torch.no_grad():
            ref = net.double().eval()(x.double()).numpy()
        with h5py.File(out, "r") as f:
            err = np.abs(f["logits"][()] - ref).max() / np.abs(ref).max()
        print(f"infer on the converted weights: max rel err {err:.2e} vs torchvision (float64)")
        if not err <= 1e-4:
            sys.exit("FAIL: logits beyond 1e-4")

        # Weights of another network: one line naming what does not fit.
        r = run([py, CONVERTER, "to-resnet", pth, "--model", "resnet34", "--output",
                 os.path.join(tmp, "x.h5"), "--resnet", resnet], expect_ok=False)
        if "does not fit model resnet34" not in r.stderr or os.path.exists(os.path.join(tmp, "x.h5")):
            sys.exit(f"FAIL: wrong network not reported clearly: {r.stderr}")
        print("wrong network: " + r.stderr.strip())
    print("PASS")


if __name__ == "__main__":
    main()
