#!/usr/bin/env python3
"""Conformance of one network with PyTorch: a checkpoint from `resnet ckpt init` (with its BN
parameters, running statistics and momentum buffers randomised, so that none is trivially 0 or 1)
is loaded into the PyTorch model, and on the same inputs the test compares
  - eval-mode logits (`resnet infer`),
  - training-mode loss and every parameter's gradient (`resnet step`),
  - the weights and momentum after one SGD step (momentum 0.9, weight decay 5e-4, Nesterov off
    and on): against torch.optim.SGD applied to the project's gradients (the update rule), and
    against PyTorch's whole step (its own gradients too),
  - the BN running statistics after that step.
The reference runs in float64 (model.double()) from the same float32 values; the project runs in
float32; PyTorch is also run in float32 to show how far float32 itself lies from float64 on this
input. An error is max |ours - reference| / max |reference| over one tensor; the bounds are TOL.

Gradients are compared on the same side of every ReLU's kink: a float32 forward rounds the few
ReLU inputs that lie within its rounding error of 0 (a handful of a network's millions) to either
side, and there the gradient differs by the whole element, which a deep network spreads into
errors of 1e-1 (PyTorch's own float32 included). So the training-mode reference applies the
project's ReLU masks (`resnet step --relu-outputs`), and PyTorch float32's error is likewise
taken against a float64 run with its own masks; how many mask elements differ from the float64
forward's own is printed, and more than MAX_FLIPS of them fails the test.

    conformance_test.py RESNET_BINARY MODEL [--break-padding]

Exit status 0 when every bound holds, 1 when one does not, 77 (skipped) when torch, torchvision
or h5py is missing.
"""
import argparse
import os
import subprocess
import sys
import tempfile

SKIP = 77
# Max |ours - reference| / max |reference| per tensor. Where PyTorch's own float32 result lies
# further than TOL from the float64 reference on the test's input (a deep network's
# training-mode backward can amplify float32 rounding that much), the bound is FLOOR times
# PyTorch's own float32 error instead, and the output says so. `weight` and `momentum` are the
# SGD update applied (float64, torch.optim.SGD) to the project's own gradients: the update rule
# alone, which rounding cannot excuse; `weight_e2e` is the whole step against PyTorch's, so it
# carries the learning rate times the gradients' rounding: 5e-5, because the Winograd
# convolutions that train.conv_algorithm auto takes round up to ten times more than the direct
# ones (tests/core/backend/conv_test.cpp): resnet18's stem weights land 1.5e-5 away, and on AVX2,
# where auto takes the project's own Winograd in every pass from 16 channels, preact_resnet110's
# first 16-channel weights 3.3e-5 (its gradients within 1.3e-4 of float64, bound 1e-3).
TOL = {"logits": 1e-4, "loss": 1e-4, "grad": 1e-3, "bn_stats": 1e-4, "weight": 1e-5,
       "momentum": 1e-5, "weight_e2e": 5e-5}
NO_FLOOR = {"weight", "momentum"}
FLOOR = 3.0
MAX_FLIPS = 1e-4  # of all ReLU elements: more than rounding near the kink explains

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
from checkpoint_values import randomise  # noqa: E402
import reference_models  # noqa: E402

THREADS = int(os.environ.get("CONFORMANCE_THREADS", "2"))  # torch and `resnet` alike
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


class ReluMasks:
    """While active, every F.relu call (torchvision's nn.ReLU goes through it) records its own
    mask, and applies the next of `masks` in call order instead where they are given."""

    def __init__(self, masks=None):
        self.given, self.recorded, self.calls = masks, [], 0

    def __enter__(self):
        self.saved = torch.nn.functional.relu
        torch.nn.functional.relu = self.relu
        return self

    def __exit__(self, *exc):
        torch.nn.functional.relu = self.saved

    def relu(self, x, inplace=False):
        self.recorded.append((x.detach() > 0).numpy().copy())
        if self.given is None:
            return self.saved(x, inplace=inplace)
        if self.calls >= len(self.given):
            sys.exit(f"FAIL: the reference runs more ReLUs than the project's "
                     f"{len(self.given)}")
        mask = self.given[self.calls]
        if tuple(mask.shape) != tuple(x.shape):
            sys.exit(f"FAIL: ReLU {self.calls}: the project's output is {tuple(mask.shape)}, "
                     f"the reference's input {tuple(x.shape)}")
        self.calls += 1
        return x * torch.from_numpy(mask).to(x.dtype)


class Report:
    def __init__(self):
        self.rows = []  # (kind, name, our error, PyTorch float32's error or None)

    def check(self, kind, name, ours, ref64, ref32=None, base32=None):
        """PyTorch float32's `ref32` is measured against `base32` where given, else `ref64`."""
        self.rows.append((kind, name, rel_err(ours, ref64),
                          None if ref32 is None else
                          rel_err(ref32, ref64 if base32 is None else base32)))

    def summary(self):
        """Per kind: (worst error, its tensor, PyTorch float32's worst, bound); and failures."""
        kinds, failed = {}, []
        for kind in TOL:
            rows = [r for r in self.rows if r[0] == kind]
            if not rows:
                continue
            theirs = max((r[3] for r in rows if r[3] is not None), default=0.0)
            bound = TOL[kind] if kind in NO_FLOOR or theirs <= TOL[kind] else FLOOR * theirs
            worst = max(rows, key=lambda r: r[2])
            kinds[kind] = (worst[2], worst[1], theirs, bound)
            failed += [f"{kind} {r[1]}: {r[2]:.3g} > {bound:.3g}" for r in rows
                       if not r[2] <= bound]
        return kinds, failed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("resnet")
    p.add_argument("model")
    p.add_argument("--break-padding", action="store_true",
                   help="give the reference's stem one pixel too much padding: the test then "
                        "passes only when the comparison fails")
    p.add_argument("--batch", type=int, help="images per batch (default: the network's in "
                   "reference_models.INPUTS)")
    p.add_argument("--size", type=int, help="image height and width (default: as --batch)")
    p.add_argument("--seed", type=int, default=7, help="`resnet ckpt init --seed` (default 7)")
    args = p.parse_args()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    batch, (c, h, w), classes = reference_models.INPUTS[args.model]
    batch = args.batch or batch
    h, w = (args.size, args.size) if args.size else (h, w)
    rep = Report()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, inp = os.path.join(tmp, "init.h5"), os.path.join(tmp, "in.h5")
        run([args.resnet, "ckpt", "init", "--model", args.model, "--in-channels", str(c),
             "--classes", str(classes), "--seed", str(args.seed), "--output", ckpt])
        randomise(ckpt, rng)
        _, data = conv.read_checkpoint(ckpt)
        images = rng.normal(0, 1, (batch, c, h, w)).astype(np.float32)
        labels = rng.integers(0, classes, batch).astype(np.int64)
        with h5py.File(inp, "w") as f:
            f["images"], f["labels"] = images, labels

        state = {k[len("model/"):]: torch.from_numpy(np.array(v)) for k, v in data.items()
                 if k.startswith("model/")}
        y = torch.from_numpy(labels)

        def step_cmd(nesterov, out):
            return [args.resnet, "step", "--checkpoint", ckpt, "--input", inp, "--output", out,
                    "--lr", str(LR), "--momentum", str(MOMENTUM), "--weight-decay", str(WD),
                    "--threads", str(THREADS)] + (["--nesterov"] if nesterov else [])

        # The project's step first: its ReLU masks shape the training-mode reference.
        steps = {n: os.path.join(tmp, f"step{int(n)}.h5") for n in (False, True)}
        run(step_cmd(False, steps[False]) + ["--relu-outputs"])
        with h5py.File(steps[False], "r") as f:
            our_masks = [f["relu"][k][()] > 0 for k in sorted(f["relu"])]

        def reference(dtype, masks=None):
            """Eval logits, then one training forward and backward, of a fresh copy in dtype;
            with `masks` the training ReLUs apply them. Returns the results and the ReLUs' own
            masks (which inputs were > 0)."""
            net = reference_models.build(args.model, c, classes, args.break_padding).to(dtype)
            net.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v
                                 for k, v in state.items()}, strict=True)
            x = torch.from_numpy(images).to(dtype)
            net.eval()
            with torch.no_grad():
                logits = net(x).double().numpy()
            net.train()
            with ReluMasks(masks) as relus:
                loss = torch.nn.functional.cross_entropy(net(x), y)
            if masks is not None and relus.calls != len(masks):
                sys.exit(f"FAIL: the project ran {len(masks)} ReLUs, the reference "
                         f"{relus.calls}")
            loss.backward()
            stats = {k: b.double().numpy().copy() for k, b in net.named_buffers()
                     if k.endswith(("running_mean", "running_var"))}
            return dict(logits=logits, loss=loss.item(), stats=stats,
                        grads={k: p.grad.double().numpy() for k, p in net.named_parameters()}), \
                relus.recorded

        # The float64 reference on the project's side of each kink (a wrongly padded reference
        # has other shapes, so it keeps its own) with float64's own masks, PyTorch's float32,
        # and the float64 run on PyTorch float32's side that its error is measured against.
        r64, own64 = reference(torch.float64, None if args.break_padding else our_masks)
        r32, masks32 = reference(torch.float32)
        base32, _ = reference(torch.float64, masks32)
        names = list(r64["grads"])
        elements = sum(m.size for m in own64)
        flips = {who: sum(int((a != b).sum()) for a, b in zip(m, own64))
                 if len(m) == len(own64) and all(a.shape == b.shape for a, b in zip(m, own64))
                 else None for who, m in (("project", our_masks), ("PyTorch float32", masks32))}

        def sgd(grads, nesterov, dtype):
            """torch.optim.SGD from the checkpoint's weights and momentum with `grads`."""
            ps = {k: torch.from_numpy(np.array(data["model/" + k])).to(dtype).requires_grad_()
                  for k in names}
            opt = torch.optim.SGD(ps.values(), lr=LR, momentum=MOMENTUM, weight_decay=WD,
                                  nesterov=nesterov)
            for k, p in ps.items():
                p.grad = torch.from_numpy(np.asarray(grads[k])).to(dtype)
                opt.state[p]["momentum_buffer"] = torch.from_numpy(
                    np.array(data["optimizer/" + k])).to(dtype)
            opt.step()
            return ({k: p.detach().double().numpy() for k, p in ps.items()},
                    {k: opt.state[p]["momentum_buffer"].double().numpy() for k, p in ps.items()})

        # Eval-mode logits.
        out = os.path.join(tmp, "logits.h5")
        run([args.resnet, "infer", "--checkpoint", ckpt, "--input", inp, "--output", out,
             "--threads", str(THREADS)])
        with h5py.File(out, "r") as f:
            rep.check("logits", "eval", f["logits"][()], r64["logits"], r32["logits"])

        # One training step, Nesterov off and on, from the same weights and momentum.
        for nesterov in (False, True):
            out = steps[nesterov]
            if nesterov:
                run(step_cmd(True, out))
            tag = "nesterov" if nesterov else "momentum"
            with h5py.File(out, "r") as f:
                ours = {k: f["grad"][k][()] for k in names}
                rep.check("loss", tag, f["loss"][()], r64["loss"], r32["loss"])
                own_w, own_m = sgd(ours, nesterov, torch.float64)
                e2e64, _ = sgd(r64["grads"], nesterov, torch.float64)
                e2e32, _ = sgd(r32["grads"], nesterov, torch.float32)
                e2e_base32, _ = sgd(base32["grads"], nesterov, torch.float64)
                for k in names:
                    if not nesterov:  # the gradients do not depend on the update
                        rep.check("grad", k, ours[k], r64["grads"][k], r32["grads"][k],
                                  base32["grads"][k])
                    rep.check("weight", f"{k} ({tag})", f["model"][k][()], own_w[k])
                    rep.check("momentum", f"{k} ({tag})", f["optimizer"][k][()], own_m[k])
                    rep.check("weight_e2e", f"{k} ({tag})", f["model"][k][()], e2e64[k],
                              e2e32[k], e2e_base32[k])
                for k in r64["stats"]:
                    rep.check("bn_stats", f"{k} ({tag})", f["model"][k][()], r64["stats"][k],
                              r32["stats"][k])

    print(f"{args.model}: input {batch}x{c}x{h}x{w}, {classes} classes, {len(names)} parameter "
          f"tensors; reference float64 PyTorch {torch.__version__}, torchvision "
          f"{torchvision.__version__}")
    print("  ReLU mask elements on the other side of 0 than in the float64 forward: " +
          ", ".join(f"{who} {'(other shapes)' if n is None else n}" for who, n in flips.items()) +
          f" (of {elements})")
    kinds, failed = rep.summary()
    if not args.break_padding and (flips["project"] is None or
                                   flips["project"] > MAX_FLIPS * elements):
        failed.append(f"relu masks: {flips['project']} of {elements} elements differ from the "
                      f"float64 forward's, more than rounding near 0 explains")
    for kind, (e, name, theirs, bound) in kinds.items():
        line = f"  {kind:10s} max rel err {e:.2e} (bound {bound:.2g}"
        if kind not in NO_FLOOR:
            line += f"; PyTorch float32 {theirs:.2e}"
            if bound > TOL[kind]:
                line += f": above {TOL[kind]:g}, so {FLOOR:g}x it"
        print(line + f"; worst: {name})")
    if failed:
        print(f"FAIL: {len(failed)} comparison(s) beyond their bound:")
        for line in failed[:10]:
            print("  " + line)
    if args.break_padding:
        # Every comparison with PyTorch's own computation must notice the broken reference.
        missed = sorted(set(TOL) - NO_FLOOR - {line.split()[0] for line in failed})
        if missed:
            print(f"FAIL: the wrong padding went unnoticed by: {', '.join(missed)}")
            return 1
        print("PASS: the deliberately wrong padding is detected")
        return 0
    if failed:
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
