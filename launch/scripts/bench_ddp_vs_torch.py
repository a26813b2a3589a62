#!/usr/bin/env python3
"""Data-parallel step time, side by side: `mpirun -np N resnet bench` (bucketed MPI all-reduce
overlapped with backward) against PyTorch DistributedDataParallel (gloo) on the same N processes
with one thread each, as a user runs it ("default") and at its best here ("tuned": channels-last
and tcmalloc), each timed with and without gradient communication, in one run.

  /usr/bin/python3 launch/scripts/bench_ddp_vs_torch.py [--ranks 2] [--rounds 1]
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CASES = [("resnet20", 1, 28, 64, 10), ("resnet50", 3, 224, 16, 1000)]


def ours(binary, ranks, model, c, hw, batch, classes, warmup, iters):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMP_NUM_THREADS="1")
    cmd = ["mpirun", "--oversubscribe", "-np", str(ranks), binary, "bench", "--model", model,
           "--input", f"{c}x{hw}x{hw}", "--classes", str(classes), "--batch", str(batch),
           "--threads", "1", "--train-only", "--warmup", str(warmup), "--iters", str(iters),
           "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["train_iter_s_median"], r["train_iter_s_no_comm"]


def torch_worker(rank, ranks, peer, model_name, c, hw, batch, classes, warmup, iters, port, q,
                 channels_last):
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("torch_peer", peer)
    tp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tp)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=ranks)
    torch.manual_seed(0)
    x = torch.randn(batch, c, hw, hw)
    y = torch.randint(0, classes, (batch,))
    crit = nn.CrossEntropyLoss()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)

    def build():
        return tp.build_model(model_name, c, classes).to(memory_format=fmt)

    def timed(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        ts = []
        for i in range(warmup + iters):
            dist.barrier()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            crit(model(x), y).backward()
            opt.step()
            if i >= warmup:
                ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    local = timed(build())
    ddp = timed(DDP(build()))
    if rank == 0:
        q.put((ddp, local))
    dist.destroy_process_group()


def torch_ddp_here(peer, ranks, model, c, hw, batch, classes, warmup, iters, port, channels_last):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=torch_worker,
                         args=(r, ranks, peer, model, c, hw, batch, classes, warmup, iters, port, q,
                               channels_last))
             for r in range(ranks)]
    for p in procs:
        p.start()
    result = q.get()
    for p in procs:
        p.join()
    return result


def torch_ddp(peer, ranks, model, c, hw, batch, classes, warmup, iters, port, tuned):
    """PyTorch in a fresh interpreter: tcmalloc must be preloaded before Python starts."""
    env = dict(os.environ)
    if tuned:
        env["LD_PRELOAD"] = TCMALLOC
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-only", "--peer", peer, "--ranks",
           str(ranks), "--case", f"{model},{c},{hw},{batch},{classes},{warmup},{iters},{port}"]
    if tuned:
        cmd.append("--channels-last")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return tuple(json.loads(out.strip().splitlines()[-1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--peer", default=os.path.join(ROOT, "..", "shared", "bench", "torch_peer.py"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "resnet"))
    ap.add_argument("--models", default=",".join(c[0] for c in CASES))
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_only:
        model, *nums = a.case.split(",")
        c, hw, batch, classes, warmup, iters, port = map(int, nums)
        print(json.dumps(torch_ddp_here(a.peer, a.ranks, model, c, hw, batch, classes, warmup,
                                        iters, port, a.channels_last)))
        return
    if not os.path.exists(a.peer):
        sys.exit(f"bench_ddp_vs_torch: {a.peer}: not found (pass --peer PATH to torch_peer.py)")
    print("Step time in seconds with gradient communication / without; comm = the difference as a "
          "share of the step.\n")
    print("| model | input | batch per rank | ranks x threads | resnet | resnet comm "
          "| DDP default | DDP default comm | DDP tuned | DDP tuned comm "
          "| resnet faster than default / tuned |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    port = 29500
    for model, c, hw, batch, classes in CASES:
        if model not in a.models.split(","):
            continue
        warmup, iters = (3, 20) if hw < 64 else (2, 6)
        rs, ds, ts = [], [], []
        for _ in range(a.rounds):
            rs.append(ours(a.binary, a.ranks, model, c, hw, batch, classes, warmup, iters))
            port += 1
            ds.append(torch_ddp(a.peer, a.ranks, model, c, hw, batch, classes, warmup, iters, port,
                                False))
            port += 1
            ts.append(torch_ddp(a.peer, a.ranks, model, c, hw, batch, classes, warmup, iters, port,
                                True))

        def med(runs):
            comm = statistics.median(r[0] for r in runs)
            none = statistics.median(r[1] for r in runs)
            return comm, none, f"{comm:.4f} / {none:.4f}", f"{100 * (comm - none) / comm:.1f}%"

        r, d, t = med(rs), med(ds), med(ts)
        print(f"| {model} | {c}x{hw}x{hw} | {batch} | {a.ranks} x 1 | {r[2]} | {r[3]} | {d[2]} "
              f"| {d[3]} | {t[2]} | {t[3]} | {d[0] / r[0]:.2f}x / {t[0] / r[0]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
