#!/usr/bin/python3
"""A scaling model of data-parallel training: step time and efficiency at 2 to 512 ranks.

    scaling_model.py measure [--resnet build/resnet] [--rates 1gbit,4gbit] [--out FILE]
        (root) brings up a simulated cluster (launch/scripts/local_cluster.sh), shapes its link
        with tc tbf at each rate (and not at all), times the all-reduce of 4 KiB..64 MiB between
        two nodes (`resnet bench --allreduce --sweep`), and fits each link to the ring
        all-reduce's cost per step, alpha + beta * bytes. Then it checks the model: ResNet-20
        data-parallel steps on 2 and 4 nodes (one rank each) at the slowest rate, measured
        with and without the all-reduce, against the model's prediction from the step without
        it. Writes FILE (default runs/scaling/fit.json).
    scaling_model.py predict [--fit FILE] [--model resnet50] [--compute-ms MS | --img-per-s R]
                             [--batch B] [--rate 100gbit] [--delay 5us] [--ranks 2,4,...,512]
                             [--plot FILE.png]
        the table of predicted step time and scaling efficiency, from a per-rank step time
        (measured here by `resnet bench`, or a GPU figure given with --compute-ms/--img-per-s)
        and a link: the fitted one (--link NAME of the fit file) or a nominal one (--rate,
        --delay, --overhead-us per ring step).

The model. A ring all-reduce of B bytes over N ranks takes 2(N-1) steps of B/N bytes each:
T(B, N) = 2(N-1) * (alpha + beta * B/N). The gradient bucketer sends a 1 MiB bucket, then 25 MiB
ones, in reverse order of the parameters; gradients are taken as ready in proportion to their
bytes over backward (two thirds of the step), and the buckets' all-reduces run one after
another on the link, each as soon as its gradients are ready and the previous one is done.
The step ends when the compute and the last all-reduce have: efficiency = compute / step.
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER = os.path.join(ROOT, "launch", "scripts", "local_cluster.sh")
MIB = 1 << 20
SWEEP_MAX_MIB = 64  # the largest all-reduce `measure` times


def fail(msg):
    print(f"scaling_model: error: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_rate(text):
    """'10gbit' -> bytes per second."""
    m = re.fullmatch(r"([0-9.]+)\s*([kmg]?)bit", text.strip().lower())
    if not m:
        fail(f"'{text}' is not a rate such as 10gbit or 100mbit")
    scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
    return float(m.group(1)) * scale / 8


def parse_time(text):
    """'5us' -> seconds."""
    m = re.fullmatch(r"([0-9.]+)\s*(s|ms|us|ns)", text.strip().lower())
    if not m:
        fail(f"'{text}' is not a time such as 5us or 1ms")
    return float(m.group(1)) * {"s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[m.group(2)]


def fit_line(xs, ys):
    """Least squares y = a + b x, weighted by 1/y (relative errors count alike)."""
    w = [1 / (y * y) for y in ys]
    sw = sum(w)
    sx = sum(wi * x for wi, x in zip(w, xs))
    sy = sum(wi * y for wi, y in zip(w, ys))
    sxx = sum(wi * x * x for wi, x in zip(w, xs))
    sxy = sum(wi * x * y for wi, x, y in zip(w, xs, ys))
    b = (sw * sxy - sx * sy) / (sw * sxx - sx * sx)
    a = (sy - b * sx) / sw
    return max(a, 0.0), b


def ring_time(nbytes, n, alpha, beta):
    return 0.0 if n < 2 else 2 * (n - 1) * (alpha + beta * nbytes / n)


def buckets(total_bytes, first=1 * MIB, rest=25 * MIB):
    out, left = [], total_bytes
    size = first
    while left > 0:
        out.append(min(size, left))
        left -= out[-1]
        size = rest
    return out


def step_time(compute_s, grad_bytes, n, alpha, beta):
    """The step with the bucketer's overlap; returns (step, all-reduce time, exposed)."""
    if n < 2:
        return compute_s, 0.0, 0.0
    forward = compute_s / 3
    backward = compute_s - forward
    end, done, total_comm = 0.0, 0, 0.0
    for b in buckets(grad_bytes):
        done += b
        ready = forward + backward * done / grad_bytes
        c = ring_time(b, n, alpha, beta)
        total_comm += c
        end = max(end, ready) + c
    step = max(compute_s, end)
    return step, total_comm, step - compute_s


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        fail(f"{' '.join(cmd[:6])}...: exit {p.returncode}: {(p.stderr or p.stdout).strip()[-400:]}")
    return p.stdout


def cluster(*args, env=None):
    return run(["bash", CLUSTER, *args], env=env)


def json_lines(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def measure(args):
    if os.geteuid() != 0:
        fail("measure needs root (network namespaces)")
    env = dict(os.environ, RESNET_CLUSTER_NAME="rnsm", RESNET_CLUSTER_SLOTS="1")
    links = {}
    result = {"links": links, "validation": []}
    try:
        cluster("down", env=env)
        cluster("up", "2", env=env)
        for rate in ["off"] + args.rates.split(","):
            if rate == "off":
                cluster("shape", "off", env=env)
            else:
                parse_rate(rate)
                shape_rate(env, 2, rate)
            out = cluster("mpirun", "-np", "2", "--map-by", "node", args.resnet, "bench",
                          "--allreduce", "--sweep", "--max-mib", str(SWEEP_MAX_MIB), "--iters",
                          str(args.iters), env=env)
            rows = json_lines(out)
            # Two ranks: T = 2 alpha + beta * B, over the sizes the bucketer sends (its first
            # bucket is 1 MiB, the others 25 MiB); smaller messages are reported, not fitted.
            fitted = [r for r in rows if r["bytes"] >= args.fit_min_kib * 1024]
            a, b = fit_line([r["bytes"] for r in fitted], [r["seconds"] for r in fitted])
            alpha, beta = a / 2, b
            err = max(abs(ring_time(r["bytes"], 2, alpha, beta) - r["seconds"]) / r["seconds"]
                      for r in fitted)
            links[rate] = {"alpha_s": alpha, "beta_s_per_byte": beta,
                           "gb_per_s": 1 / beta / 1e9 if beta > 0 else None,
                           "max_fit_error": err, "sweep": rows}
            small = ", ".join(f"{r['bytes'] // 1024} KiB {r['seconds'] * 1e3:.1f} ms"
                              for r in rows if r not in fitted)
            print(f"[scaling] link {rate}: alpha {alpha * 1e6:.1f} us per ring step, "
                  f"{1 / beta / 1e9:.3f} GB/s, fit within {100 * err:.0f}% over "
                  f"{len(fitted)} sizes >= {args.fit_min_kib} KiB (below: {small})", flush=True)
        cluster("down", env=env)
        # The model against measured steps, at the slowest rate: 2 and 4 nodes of one rank.
        rate = args.rates.split(",")[0]
        for n in (2, 4):
            cluster("up", str(n), env=env)
            shape_rate(env, n, rate)
            out = cluster("mpirun", "-np", str(n), "--map-by", "node", args.resnet, "bench",
                          "--model", args.model, "--input", args.input, "--classes",
                          str(args.classes),
                          "--batch", str(args.batch), "--threads", "1", "--iters",
                          str(args.iters), "--train-only", "--json", env=env)
            r = json_lines(out)[-1]
            params = model_params(args.resnet, args.model, args.input, args.classes)
            link = links[rate]
            predicted, comm, _ = step_time(r["train_iter_s_no_comm"], 4 * params, n,
                                           link["alpha_s"], link["beta_s_per_byte"])
            measured = r["train_iter_s_median"]
            result["validation"].append({
                "ranks": n, "link": rate, "model": args.model, "batch": args.batch,
                "compute_s": r["train_iter_s_no_comm"], "measured_step_s": measured,
                "predicted_step_s": predicted, "allreduce_s": comm,
                "error": (predicted - measured) / measured})
            print(f"[scaling] {n} nodes at {rate}: step measured {measured * 1e3:.1f} ms, "
                  f"predicted {predicted * 1e3:.1f} ms ({100 * (predicted - measured) / measured:+.0f}%), "
                  f"compute alone {r['train_iter_s_no_comm'] * 1e3:.1f} ms", flush=True)
            cluster("down", env=env)
    finally:
        subprocess.run(["bash", CLUSTER, "down"], env=env, capture_output=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"[scaling] wrote {args.out}")
    return 0


def shape_rate(env, nodes, rate):
    """Every node's link at `rate` (tc tbf; no added delay: kernels without netem have none)."""
    cluster("shape", rate, env=env)


def model_params(resnet, model, input_shape, classes):
    out = run([resnet, "info", "--model", model, "--input", input_shape, "--classes",
               str(classes), "--json"])
    return json.loads(out)["params"]


def predict(args):
    if args.fit and os.path.isfile(args.fit):
        with open(args.fit) as f:
            fit = json.load(f)
    else:
        fit = None
    if args.link:
        if not fit or args.link not in fit["links"]:
            fail(f"--link {args.link}: not in {args.fit} (run measure first)")
        alpha = fit["links"][args.link]["alpha_s"]
        beta = fit["links"][args.link]["beta_s_per_byte"]
        link_text = f"measured link '{args.link}'"
    else:
        # A nominal link: its rate, and its delay plus a software cost per ring step (NCCL's
        # and MPI's; --overhead-us, 0 by default: the simulated link's is Open MPI's TCP on
        # veth under load and says nothing of a real fabric).
        alpha = parse_time(args.delay) + args.overhead_us * 1e-6
        beta = 1 / parse_rate(args.rate)
        link_text = f"{args.rate}, {args.delay} + {args.overhead_us:g} us per ring step"
    params = args.params or model_params(args.resnet, args.model, args.input, args.classes)
    grad_bytes = 4 * params
    if args.compute_ms:
        compute = args.compute_ms / 1e3
    elif args.img_per_s:
        compute = args.batch / args.img_per_s
    else:
        fail("give the per-rank step time: --compute-ms MS or --img-per-s R (with --batch)")
    ranks = [int(x) for x in args.ranks.split(",")]
    print(f"{args.model}: {params / 1e6:.1f} M parameters ({grad_bytes / MIB:.0f} MiB of fp32 "
          f"gradients, {len(buckets(grad_bytes))} buckets); compute {compute * 1e3:.1f} ms per "
          f"step (batch {args.batch} per rank); link {link_text}")
    print("| ranks | all-reduce (ms) | exposed (ms) | step (ms) | efficiency | img/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    rows = []
    for n in ranks:
        step, comm, exposed = step_time(compute, grad_bytes, n, alpha, beta)
        eff = compute / step
        rows.append((n, eff))
        print(f"| {n} | {comm * 1e3:.1f} | {exposed * 1e3:.1f} | {step * 1e3:.1f} | "
              f"{100 * eff:.1f}% | {n * args.batch / step:.0f} |")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r[0] for r in rows], [100 * r[1] for r in rows], "-o", markersize=3)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ranks")
        ax.set_ylabel("scaling efficiency (%)")
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
        ax.set_title(f"{args.model}, {compute * 1e3:.0f} ms/step, {link_text}", fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"[scaling] wrote {args.plot}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["measure", "predict"])
    p.add_argument("--resnet", default=os.path.join(ROOT, "build", "resnet"))
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "scaling", "fit.json"))
    p.add_argument("--fit", default=os.path.join(ROOT, "runs", "scaling", "fit.json"))
    p.add_argument("--rates", default="1gbit,4gbit")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--fit-min-kib", type=int, default=1024,
                   help="fit the all-reduce sizes from this one up (default 1024: the bucketer's)")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--input", default="1x28x28")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--params", type=int, default=0, help="parameters (default: resnet info's)")
    p.add_argument("--compute-ms", type=float, default=0)
    p.add_argument("--img-per-s", type=float, default=0)
    p.add_argument("--link", help="a measured link of the fit file (off, 1gbit, ...)")
    p.add_argument("--rate", default="100gbit")
    p.add_argument("--delay", default="5us")
    p.add_argument("--overhead-us", type=float, default=0.0,
                   help="software cost per ring step added to a nominal link's delay")
    p.add_argument("--ranks", default="2,4,8,16,32,64,128,256,512")
    p.add_argument("--plot")
    args = p.parse_args()
    # The fit needs two sizes of the sweep (powers of two up to SWEEP_MAX_MIB) at least.
    if not 0 < args.fit_min_kib <= SWEEP_MAX_MIB * 1024 // 2:
        fail(f"--fit-min-kib must be in 1..{SWEEP_MAX_MIB * 1024 // 2} (the sweep ends at "
             f"{SWEEP_MAX_MIB} MiB), got {args.fit_min_kib}")
    if args.action == "measure":
        return measure(args)
    return predict(args)


if __name__ == "__main__":
    sys.exit(main())
