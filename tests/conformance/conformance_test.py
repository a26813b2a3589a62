#!/usr/bin/env python3
"""Conformance of one network with PyTorch: a checkpoint from `resnet ckpt init` (with its BN
parameters, running statistics and momentum buffers randomised, so that none is trivially 0 or 1)
is loaded into the PyTorch model, and on the same inputs the test compares
  - eval-mode logits (`resnet infer`),
  - training-mode loss and every parameter's gradient (`resnet step`),
  - the weights and momentum after one SGD step (momentum 0.9, weight decay 5e-4, Nesterov off
    and on), and the BN running statistics after that step.
The reference runs in float64 (model.double()) from the same float32 values; the project runs in
float32. An error is max |ours - reference| / max |reference| over one tensor.

    conformance_test.py RESNET_BINARY MODEL [--break-padding]

Exit status 0 when every tolerance holds, 1 when one does not, 77 (skipped) when torch,
torchvision or h5py is missing.
"""
import argparse
import os
import subprocess
import sys
import tempfile

SKIP = 77
TOL = {"logits": 1e-4, "loss": 1e-4, "grad": 1e-3, "weight": 1e-5, "momentum": 1e-3,
       "bn_stats": 1e-4}

try:
    import h5py
    import numpy as np
    import torch
    import torchvision  # noqa: F401
except ImportError as e:
    print(f"SKIP: {e.name} is not importable (apt install python3-torch python3-torchvision "
          "python3-h5py)")
    sys.exit(SKIP)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "launch", "scripts"))
import convert_torchvision as conv  # noqa: E402
import reference_models  # noqa: E402

THREADS = 2
LR, MOMENTUM, WD = 0.1, 0.9, 5e-4


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS=str(THREADS)))
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{r.stdout}{r.stderr}")


def rel_err(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    scale = np.abs(ref).max()
    return float(np.abs(ours - ref).max() / (scale if scale > 0 else 1.0))


class Report:
    def __init__(self):
        self.worst, self.failed = {}, []

    def check(self, kind, name, ours, ref):
        e = rel_err(ours, ref)
        if kind not in self.worst or e > self.worst[kind][0]:
            self.worst[kind] = (e, name)
        if not e <= TOL[kind]:
            self.failed.append(f"{kind} {name}: {e:.3g} > {TOL[kind]:g}")


def randomise(path, rng):
    """BN gamma/beta, running statistics, fc bias and momentum buffers made non-trivial."""
    _, data = conv.read_checkpoint(path)
    new = {}
    for k, v in data.items():
        if not k.startswith(("model/", "optimizer/")) or k.endswith("num_batches_tracked"):
            continue
        bn = ".bn" in k or k.startswith(("model/bn", "optimizer/bn")) or "final_bn" in k or \
            "downsample.1" in k
        shape = np.shape(v)
        if k.startswith("optimizer/"):
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("resnet")
    p.add_argument("model")
    p.add_argument("--break-padding", action="store_true",
                   help="give the reference's stem one pixel too much padding: the test then "
                        "passes only when the comparison fails")
    args = p.parse_args()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    batch, (c, h, w), classes = reference_models.INPUTS[args.model]
    rep = Report()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, inp = os.path.join(tmp, "init.h5"), os.path.join(tmp, "in.h5")
        run([args.resnet, "ckpt", "init", "--model", args.model, "--in-channels", str(c),
             "--classes", str(classes), "--seed", "7", "--output", ckpt])
        randomise(ckpt, rng)
        _, data = conv.read_checkpoint(ckpt)
        images = rng.normal(0, 1, (batch, c, h, w)).astype(np.float32)
        labels = rng.integers(0, classes, batch).astype(np.int64)
        with h5py.File(inp, "w") as f:
            f["images"], f["labels"] = images, labels

        net = reference_models.build(args.model, c, classes, args.break_padding).double()
        state = {k[len("model/"):]: torch.from_numpy(np.array(v)) for k, v in data.items()
                 if k.startswith("model/")}
        net.load_state_dict({k: v.double() if v.is_floating_point() else v
                             for k, v in state.items()}, strict=True)
        x, y = torch.from_numpy(images).double(), torch.from_numpy(labels)

        # Eval-mode logits.
        out = os.path.join(tmp, "logits.h5")
        run([args.resnet, "infer", "--checkpoint", ckpt, "--input", inp, "--output", out,
             "--threads", str(THREADS)])
        net.eval()
        with torch.no_grad():
            ref = net(x).numpy()
        with h5py.File(out, "r") as f:
            rep.check("logits", "eval", f["logits"][()], ref)

        # One training step, Nesterov off and on, from the same weights and momentum.
        params = dict(net.named_parameters())
        start = {k: v.detach().clone() for k, v in net.state_dict().items()}
        for nesterov in (False, True):
            net.load_state_dict(start)
            net.train()
            net.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            grads = {k: p.grad.detach().clone() for k, p in params.items()}
            opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD,
                                  nesterov=nesterov)
            for k, p in params.items():
                opt.state[p]["momentum_buffer"] = torch.from_numpy(
                    np.array(data["optimizer/" + k])).double()
            opt.step()
            out = os.path.join(tmp, f"step{int(nesterov)}.h5")
            cmd = [args.resnet, "step", "--checkpoint", ckpt, "--input", inp, "--output", out,
                   "--lr", str(LR), "--momentum", str(MOMENTUM), "--weight-decay", str(WD),
                   "--threads", str(THREADS)]
            run(cmd + (["--nesterov"] if nesterov else []))
            tag = "nesterov" if nesterov else "momentum"
            with h5py.File(out, "r") as f:
                rep.check("loss", tag, f["loss"][()], loss.item())
                for k, p in params.items():
                    if not nesterov:  # the gradients do not depend on the update
                        rep.check("grad", k, f["grad"][k][()], grads[k].numpy())
                    rep.check("weight", f"{k} ({tag})", f["model"][k][()], p.detach().numpy())
                    rep.check("momentum", f"{k} ({tag})", f["optimizer"][k][()],
                              opt.state[p]["momentum_buffer"].numpy())
                for k, b in net.named_buffers():
                    if k.endswith(("running_mean", "running_var")):
                        rep.check("bn_stats", f"{k} ({tag})", f["model"][k][()], b.numpy())

    print(f"{args.model}: input {batch}x{c}x{h}x{w}, {classes} classes, {len(params)} parameter "
          f"tensors; reference float64 PyTorch {torch.__version__}, torchvision "
          f"{torchvision.__version__}")
    for kind, (e, name) in rep.worst.items():
        print(f"  {kind:9s} max rel err {e:.2e} (tolerance {TOL[kind]:g}; worst: {name})")
    if rep.failed:
        print(f"FAIL: {len(rep.failed)} comparison(s) beyond tolerance:")
        for line in rep.failed[:10]:
            print("  " + line)
    if args.break_padding:
        # Every kind of comparison must notice the broken reference, not just one.
        missed = sorted(set(TOL) - {line.split()[0] for line in rep.failed})
        if missed:
            print(f"FAIL: the wrong padding went unnoticed by: {', '.join(missed)}")
            return 1
        print("PASS: the deliberately wrong padding is detected")
        return 0
    if rep.failed:
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
