#!/usr/bin/python3
"""Mixed precision on the CPU, side by side in one run: `resnet bench` in fp32 and bf16 against
PyTorch (torch_peer.py) in fp32 as a user runs it, fp32 at its best (channels-last + tcmalloc) and
bf16 autocast at its best (torch.autocast("cpu", torch.bfloat16), channels-last + tcmalloc),
rounds alternating so that a noisy machine's drifts hit every column; medians over rounds. The
yardstick is `resnet bench --peak`: the fp32 and bf16 convolution GFLOP/s oneDNN reaches here.

  /usr/bin/python3 launch/scripts/bench_bf16.py [--rounds 2] [--models resnet50,resnet20,resnext50_32x4d]

Needs libtcmalloc-minimal4 (apt-get install libtcmalloc-minimal4) for PyTorch's tuned runs.
Prints Markdown tables: training, then inference (ours only: PyTorch's peer times training).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
CASES = {  # model: channels, hw, batch, warmup, iters
    "resnet50": (3, 224, 16, 2, 5),
    "resnet20": (1, 28, 128, 5, 20),
    "resnext50_32x4d": (3, 224, 16, 2, 5),
}


def run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return out.stdout


def ours(a, model, precision):
    c, hw, batch, warmup, iters = CASES[model]
    out = run([a.binary, "bench", "--model", model, "--input", f"{c}x{hw}x{hw}", "--batch",
               str(batch), "--threads", str(a.threads), "--warmup", str(warmup), "--iters",
               str(iters), "--precision", precision, "--json"]
              + (["--classes", "10"] if model == "resnet20" else []))
    d = json.loads(out.strip().splitlines()[-1])
    return d["train_img_per_s"], d["infer_img_per_s"], d["fwd_macs_per_img"]


def torch(a, model, kind):
    c, hw, batch, warmup, iters = CASES[model]
    env = dict(os.environ)
    cmd = ["/usr/bin/python3", a.peer, "train", "--model", model, "--in-ch", str(c), "--hw",
           str(hw), "--batch", str(batch), "--threads", str(a.threads), "--warmup", str(warmup),
           "--iters", str(iters)]
    if kind != "default":
        cmd.append("--channels-last")
        env["LD_PRELOAD"] = TCMALLOC
    if kind == "bf16":
        cmd += ["--amp", "bf16"]
    out = run(cmd, env)
    return json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])[
        "img_per_s_median"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer", default=os.path.join(ROOT, "..", "shared", "bench", "torch_peer.py"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "resnet"))
    ap.add_argument("--models", default=",".join(CASES))
    a = ap.parse_args()
    peak = {}

    def measure_peak():
        """`resnet bench --peak`, once per round: the best convolution GFLOP/s seen so far."""
        out = json.loads(run([a.binary, "bench", "--peak", "--threads", str(a.threads),
                              "--json"]).strip().splitlines()[-1])
        for r in out["peak"]:
            peak[r["precision"]] = max(peak.get(r["precision"], 0.0), r["gflops"])
        return out["backend"]
    results = []
    for model in a.models.split(","):
        cols = ("fp32", "bf16", "torch_default", "torch_tuned", "torch_bf16")
        r = {k: [] for k in cols}
        inf = {"fp32": [], "bf16": []}
        macs = 0
        for _ in range(a.rounds):
            backend = measure_peak()
            for p in ("fp32", "bf16"):
                t, i, macs = ours(a, model, p)
                r[p].append(t)
                inf[p].append(i)
            for kind in ("default", "tuned", "bf16"):
                r["torch_" + kind].append(torch(a, model, kind))
            print(f"# {model}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in r.items()),
                  file=sys.stderr, flush=True)
        results.append((model, {k: statistics.median(v) for k, v in r.items()},
                        {k: statistics.median(v) for k, v in inf.items()}, macs))
    train_rows, infer_rows = [], []
    for model, med, imed, macs in results:
        best_torch = max(med["torch_default"], med["torch_tuned"], med["torch_bf16"])
        gf = med["bf16"] * 6 * macs / 1e9
        c, hw, batch, _, _ = CASES[model]
        train_rows.append(
            f"| {model} | {c}x{hw}x{hw} | {batch} | {med['fp32']:.1f} | {med['bf16']:.1f} | "
            f"{med['bf16'] / med['fp32']:.2f}x | {med['torch_default']:.1f} | "
            f"{med['torch_tuned']:.1f} | {med['torch_bf16']:.1f} | "
            f"{med['bf16'] / med['torch_bf16']:.2f}x | {med['bf16'] / best_torch:.2f}x | "
            f"{gf:.0f} ({gf / peak.get('bf16', float('nan')):.0%}) |")
        infer_rows.append(f"| {model} | {batch} | {imed['fp32']:.1f} | {imed['bf16']:.1f} | "
                          f"{imed['bf16'] / imed['fp32']:.2f}x |")
    print(f"backend {backend}; convolution peak (resnet bench --peak, best of every round): "
          + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in peak.items()))
    print("\n| model | input | batch | ours fp32 | ours bf16 | bf16 / fp32 | torch fp32 default | "
          "torch fp32 tuned | torch bf16 tuned | ours bf16 / torch bf16 | ours bf16 / torch best "
          "| ours bf16 GFLOP/s (of bf16 peak) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(train_rows))
    print("\n| inference | batch | ours fp32 img/s | ours bf16 img/s | bf16 / fp32 |")
    print("|---|---|---|---|---|")
    print("\n".join(infer_rows))


if __name__ == "__main__":
    main()
