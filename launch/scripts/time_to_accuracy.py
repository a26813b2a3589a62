#!/usr/bin/python3
"""Time to accuracy: the default job's recipe trained to the end by `resnet train` and by PyTorch
on the same cores, alternating, each run's wall time (the whole process, start-up and data
included) and its test top-1 after every epoch.

The recipe (configs/fashion_mnist_resnet20.yaml): ResNet-20 with option-A shortcuts on
Fashion-MNIST, a global batch of 128, SGD lr 0.1 momentum 0.9 weight decay 5e-4, cosine decay
per step over the epochs, random crop after 2-pixel padding and horizontal flips, the whole test
set evaluated after each epoch. Ours runs as the README runs it: 2 ranks of 64, one thread each
(--ours-ranks 1: one rank of 128 on every thread). PyTorch runs in one process on --threads
threads with a batch of 128 (torch.set_num_threads), the network of
tests/conformance/reference_models.py initialised as torchvision initialises its ResNets (He
normal, fan-out), the augmentation done on whole batches of tensors (no DataLoader workers);
`tuned` adds channels-last and tcmalloc, `default` is neither.

  /usr/bin/python3 launch/scripts/time_to_accuracy.py [--rounds 1] [--epochs 8]
      [--peers tuned] [--results runs/time_to_accuracy.jsonl]

Each finished run is appended to --results as one JSON line; a rerun skips the runs that file
already holds (a long comparison goes on in a later session), then prints the table of all.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
DATA = "/usr/share/datasets/fashion-mnist"
CONFIG = os.path.join(ROOT, "configs", "fashion_mnist_resnet20.yaml")


def read_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def torch_run(a):
    """One PyTorch run (this script re-run as a child process): per-epoch JSON lines on stdout."""
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    sys.path.insert(0, os.path.join(ROOT, "tests", "conformance"))
    import reference_models

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr = torch.from_numpy(read_idx(f"{DATA}/train-images-idx3-ubyte.gz").copy()).float().div_(255)
    ytr = torch.from_numpy(read_idx(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64))
    xte = torch.from_numpy(read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz").copy()).float().div_(255)
    yte = torch.from_numpy(read_idx(f"{DATA}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    mean, std = xtr.mean().item(), xtr.std().item()
    xtr, xte = ((xtr - mean) / std).unsqueeze(1), ((xte - mean) / std).unsqueeze(1)

    model = reference_models.CifarResNet(20, False, 1, 10)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight), nn.init.zeros_(m.bias)
    memory = torch.channels_last if a.peer == "tuned" else torch.contiguous_format
    model = model.to(memory_format=memory)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    n, batch, pad = xtr.shape[0], 128, 2
    steps_per_epoch = (n + batch - 1) // batch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(a.seed)
    background = (0.0 - mean) / std
    rows = torch.arange(28)

    def augment(xb):
        k = xb.shape[0]
        xp = F.pad(xb, (pad, pad, pad, pad), value=background)
        oy = torch.randint(0, 2 * pad + 1, (k,), generator=g)
        ox = torch.randint(0, 2 * pad + 1, (k,), generator=g)
        out = xp[:, 0][torch.arange(k)[:, None, None], (oy[:, None] + rows)[:, :, None],
                       (ox[:, None] + rows)[:, None, :]].unsqueeze(1)
        flip = torch.rand(k, generator=g) < 0.5
        out[flip] = out[flip].flip(-1)
        return out.contiguous(memory_format=memory)

    for epoch in range(a.epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(augment(xtr[idx])), ytr[idx])
            loss.backward()
            opt.step()
            sched.step()
        train_s = time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, xte.shape[0], 500):
                x = xte[i:i + 500].contiguous(memory_format=memory)
                correct += (model(x).argmax(1) == yte[i:i + 500]).sum().item()
        print(json.dumps({"epoch": epoch + 1, "test_top1": correct / xte.shape[0],
                          "epoch_train_s": train_s}), flush=True)


def run_torch(a, peer, round_):
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    if peer == "tuned":
        env["LD_PRELOAD"] = TCMALLOC
    cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--torch-child", "--peer", peer,
           "--threads", str(a.threads), "--epochs", str(a.epochs), "--seed", str(a.seed)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"time_to_accuracy: PyTorch ({peer}) failed:\n{out.stderr[-2000:]}")
    epochs = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    return {"who": f"pytorch {peer}", "round": round_, "wall_s": round(wall, 1),
            "top1": [e["test_top1"] for e in epochs]}


def run_ours(a, round_):
    run_dir = os.path.join(a.work, f"ours-{round_}")
    subprocess.run(["rm", "-rf", run_dir], check=True)
    threads = max(1, a.threads // a.ours_ranks)
    cmd = ["mpirun", "--oversubscribe", "-np", str(a.ours_ranks)]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    cmd += [a.binary, "train", "--config", CONFIG, "--set", f"run_dir={run_dir}",
            "--set", f"train.epochs={a.epochs}", "--set", f"train.threads={threads}",
            "--set", f"data.batch_size={128 // a.ours_ranks}"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"time_to_accuracy: resnet train failed:\n{out.stderr[-2000:]}")
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        epochs = [json.loads(l) for l in f if l.strip()]
    return {"who": f"resnet ({a.ours_ranks} rank(s))", "round": round_, "wall_s": round(wall, 1),
            "top1": [e["test_top1"] for e in epochs]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peers", default="tuned", help="comma-separated: tuned, default")
    p.add_argument("--ours-ranks", type=int, default=2, choices=[1, 2])
    p.add_argument("--binary", default=os.path.join(ROOT, "build", "resnet"))
    p.add_argument("--work", default="/tmp/time_to_accuracy")
    p.add_argument("--results", default=os.path.join(ROOT, "runs", "time_to_accuracy.jsonl"))
    p.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--peer", default="tuned", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.torch_child:
        return torch_run(a)
    peers = [x for x in a.peers.split(",") if x]
    for x in peers:
        if x not in ("tuned", "default"):
            sys.exit(f"time_to_accuracy: --peers: unknown peer '{x}' (tuned, default)")
    if not os.access(a.binary, os.X_OK):
        sys.exit(f"time_to_accuracy: --binary {a.binary}: not an executable (build first)")
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.results)), exist_ok=True)
    done = []
    if os.path.exists(a.results):
        with open(a.results) as f:
            done = [json.loads(l) for l in f if l.strip()]
    key = {"epochs": a.epochs, "threads": a.threads}
    have = {(d["who"], d["round"]) for d in done if all(d.get(k) == v for k, v in key.items())}
    for round_ in range(a.rounds):
        # Alternating: ours, then each peer, in every round.
        jobs = [(f"resnet ({a.ours_ranks} rank(s))", lambda r=round_: run_ours(a, r))]
        jobs += [(f"pytorch {x}", lambda r=round_, x=x: run_torch(a, x, r)) for x in peers]
        for who, job in jobs:
            if (who, round_) in have:
                continue
            print(f"round {round_ + 1}/{a.rounds}: {who} ...", flush=True)
            d = dict(job(), **key)
            done.append(d)
            with open(a.results, "a") as f:
                f.write(json.dumps(d) + "\n")
            print(f"  {d['wall_s']:.1f} s, top-1 {d['top1'][-1]:.4f}", flush=True)
    rows = [d for d in done if all(d.get(k) == v for k, v in key.items())]
    print(f"\n| run | round | wall s | test top-1 after epoch 1..{a.epochs} |")
    print("|---|---:|---:|---|")
    for d in rows:
        print(f"| {d['who']} | {d['round'] + 1} | {d['wall_s']:.1f} | "
              + " ".join(f"{t:.4f}" for t in d["top1"]) + " |")
    ours = [d["wall_s"] for d in rows if d["who"].startswith("resnet")]
    for x in peers:
        theirs = [d["wall_s"] for d in rows if d["who"] == f"pytorch {x}"]
        if ours and theirs:
            print(f"PyTorch {x} / ours, wall time: {sum(theirs) / len(theirs) / (sum(ours) / len(ours)):.2f}x")


if __name__ == "__main__":
    main()
