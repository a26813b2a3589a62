#!/usr/bin/python3
"""Side-by-side CPU training benchmark: `resnet bench` against PyTorch (torch_peer.py) as a
user runs it by default and at its best tuning (channels-last + tcmalloc), alternating in one
run, medians over rounds. Prints a Markdown table with ratios, GFLOP/s as a fraction of the
machine's fp32 peak, and peak resident memory.

  /usr/bin/python3 launch/scripts/bench_vs_torch.py [--rounds 2] [--peer ../shared/bench/torch_peer.py]
      [--models resnet20,resnet18,resnet50,resnext50_32x4d] [--conv-algorithms direct,auto]
      [--mode train|infer]

With several --conv-algorithms, ours runs once per algorithm in each round (train.conv_algorithm:
direct, winograd or auto) and the table has a column for each, the ratios taken from the last.
--mode infer times inference (eval-mode forward passes, PyTorch under no_grad) instead of training.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
# Runs torch_peer.py in-process, then reports the process's peak resident memory.
PEAK_WRAPPER = ("import resource, runpy, sys; sys.argv = sys.argv[1:]; "
                "runpy.run_path(sys.argv[0], run_name='__main__'); "
                "print('PEAK_RSS_MIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")

CASES = [  # model, channels, hw, batch, warmup, iters
    ("resnet20", 1, 28, 128, 5, 20),
    ("resnet18", 3, 224, 32, 2, 5),
    ("resnet50", 3, 224, 16, 2, 5),
    ("resnext50_32x4d", 3, 224, 16, 2, 5),
]


def run(cmd, env=None):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return out.stdout


def ours(binary, model, c, hw, batch, warmup, iters, threads, algorithm="auto", mode="train"):
    out = run([binary, "bench", "--model", model, "--input", f"{c}x{hw}x{hw}", "--batch", str(batch),
               "--threads", str(threads), "--warmup", str(warmup), "--iters", str(iters),
               "--train-only" if mode == "train" else "--infer-only", "--json",
               "--conv-algorithm", algorithm])
    d = json.loads(out.strip().splitlines()[-1])
    return d[f"{mode}_img_per_s"], d["peak_rss_mib"], d["fwd_macs_per_img"]


def torch(peer, model, c, hw, batch, warmup, iters, threads, tuned, mode="train"):
    env = dict(os.environ)
    cmd = ["/usr/bin/python3", "-c", PEAK_WRAPPER, peer, mode, "--model", model, "--in-ch", str(c),
           "--hw", str(hw), "--batch", str(batch), "--threads", str(threads), "--warmup", str(warmup),
           "--iters", str(iters)]
    if model != "resnet20":
        cmd += ["--num-classes", "1000"]
    if tuned:
        cmd.append("--channels-last")
        env["LD_PRELOAD"] = TCMALLOC
    out = run(cmd, env)
    res = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])
    peak = float([l for l in out.splitlines() if l.startswith("PEAK_RSS_MIB")][-1].split()[1])
    return res["img_per_s_median"], peak


def fmnist(a):
    """One Fashion-MNIST epoch of the default job's network and batch, ours against PyTorch's."""
    import tempfile
    r = {"ours": [], "default": [], "tuned": []}
    for _ in range(a.rounds):
        with tempfile.TemporaryDirectory() as d:
            run([a.binary, "train", "--config", os.path.join(ROOT, "configs", "fashion_mnist_resnet20.yaml"),
                 "--set", "train.epochs=1", "--set", f"run_dir={d}", "--set", f"train.threads={a.threads}"])
            m = json.loads(open(os.path.join(d, "metrics.jsonl")).read().splitlines()[-1])
            r["ours"].append((m["img_per_s"], m["epoch_train_s"]))
        for kind in ("default", "tuned"):
            env = dict(os.environ)
            cmd = ["/usr/bin/python3", a.peer, "fmnist", "--threads", str(a.threads)]
            if kind == "tuned":
                cmd.append("--channels-last")
                env["LD_PRELOAD"] = TCMALLOC
            out = run(cmd, env)
            res = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][7:])
            r[kind].append((res["train_img_per_s"], res["epoch_wall_s_extrapolated"]))
        print(f"# fmnist epoch: ours {r['ours'][-1]}, torch default {r['default'][-1]}, "
              f"tuned {r['tuned'][-1]} (img/s, s)", file=sys.stderr, flush=True)
    med = {k: (statistics.median(x for x, _ in v), statistics.median(y for _, y in v)) for k, v in r.items()}
    print("| Fashion-MNIST epoch, resnet20, batch 128, crop+flip | img/s | epoch s | ours faster by |")
    print("|---|---|---|---|")
    for k, name in (("ours", "resnet train"), ("default", "PyTorch default"), ("tuned", "PyTorch tcmalloc")):
        print(f"| {name} | {med[k][0]:.0f} | {med[k][1]:.1f} | {med[k][1] / med['ours'][1]:.2f}x |")


def measured_peak(binary, threads):
    """The fp32 FMA peak on `threads` threads (AVX-512 or AVX2, whichever the CPU has), as the
    step profile measures it: a one-step profile of a small network reports it."""
    out = subprocess.run([binary, "bench", "--model", "resnet20", "--input", "1x28x28",
                          "--classes", "10", "--batch", "8", "--iters", "1", "--warmup", "0",
                          "--train-only", "--profile", "--threads", str(threads), "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["profile_train"]["peak_gflops"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peak-gflops", type=float,
                    help="this machine's fp32 FMA peak on --threads threads (default: measured, "
                         "as `resnet bench --profile` measures it)")
    ap.add_argument("--peer", default=os.path.join(ROOT, "..", "shared", "bench", "torch_peer.py"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "resnet"))
    ap.add_argument("--models", default=",".join(c[0] for c in CASES))
    ap.add_argument("--fmnist", action="store_true", help="also time one Fashion-MNIST epoch")
    ap.add_argument("--conv-algorithms", default="auto",
                    help="ours once per algorithm, comma-separated (direct, winograd, auto)")
    ap.add_argument("--mode", default="train", choices=["train", "infer"])
    a = ap.parse_args()
    if a.peak_gflops is None:
        a.peak_gflops = measured_peak(a.binary, a.threads)
    algorithms = a.conv_algorithms.split(",")
    if a.fmnist:
        fmnist(a)
    rows = []
    for model, c, hw, batch, warmup, iters in CASES:
        if model not in a.models.split(","):
            continue
        r = {k: [] for k in algorithms + ["default", "tuned"]}
        peak = {}
        for _ in range(a.rounds):  # alternate, so that drifts of a noisy machine hit all of them
            for alg in algorithms:
                ips, peak[alg], macs = ours(a.binary, model, c, hw, batch, warmup, iters, a.threads, alg,
                                            a.mode)
                r[alg].append(ips)
            ips, peak["default"] = torch(a.peer, model, c, hw, batch, warmup, iters, a.threads, False,
                                         a.mode)
            r["default"].append(ips)
            ips, peak["tuned"] = torch(a.peer, model, c, hw, batch, warmup, iters, a.threads, True,
                                       a.mode)
            r["tuned"].append(ips)
            print(f"# {model}: " + ", ".join(f"ours {k} {r[k][-1]:.2f}" for k in algorithms) +
                  f", torch default {r['default'][-1]:.2f}, torch tuned {r['tuned'][-1]:.2f} img/s",
                  file=sys.stderr, flush=True)
        med = {k: statistics.median(v) for k, v in r.items()}
        passes = 3 if a.mode == "train" else 1  # forward, backward-data, backward-weights
        gf = {k: v * passes * 2 * macs / 1e9 for k, v in med.items()}
        rows.append((model, f"{c}x{hw}x{hw}", batch, med, gf, peak))
    last = algorithms[-1]
    ours_cols = " | ".join(f"ours {k} img/s" for k in algorithms)
    print(f"{a.mode}, {a.threads} threads:")
    print(f"| model | input | batch | {ours_cols} | torch default | torch tuned | ours {last} / default | "
          f"ours {last} / tuned | ours {last} GFLOP/s (of {a.peak_gflops:.0f}) | tuned GFLOP/s | "
          f"peak RSS MiB ours {last} / default / tuned |")
    print("|---" * (10 + len(algorithms)) + "|")
    for model, inp, batch, med, gf, peak in rows:
        ours_vals = " | ".join(f"{med[k]:.1f}" for k in algorithms)
        print(f"| {model} | {inp} | {batch} | {ours_vals} | {med['default']:.1f} | {med['tuned']:.1f} | "
              f"{med[last] / med['default']:.2f}x | {med[last] / med['tuned']:.2f}x | "
              f"{gf[last]:.0f} ({gf[last] / a.peak_gflops:.0%}) | {gf['tuned']:.0f} ({gf['tuned'] / a.peak_gflops:.0%}) | "
              f"{peak[last]:.0f} / {peak['default']:.0f} / {peak['tuned']:.0f} |")

if __name__ == "__main__":
    main()
