#!/usr/bin/python3
"""Experiments as data: the runs of one experiment, trained and plotted.

An experiment file (configs/experiments/<name>.yaml) names a base config, overrides for every
run, the runs (each a name and its own overrides, in `--set` form), and the plot:

    name: shortcuts
    title: "Shortcut kinds on ResNet-56 (He et al. 2016, Table 1)"
    base: configs/fashion_mnist_resnet56.yaml   # relative to the repository root
    set: {data.train_limit: 10000, train.epochs: 8}
    runs:
      - {name: original}
      - {name: gate_-6, set: {model.shortcut: exclusive_gate, model.gate_bias: -6}}
    plot: {x: epoch, paper: {original: "6.61"}, paper_metric: "CIFAR-10 test error (%)"}

    experiment.py run FILE [--out DIR] [--np N] [--parallel K] [--threads T] [--only NAME,...]
        trains the runs one after another (or K side by side, each on its own N ranks) into
        DIR/<run>/ (default: the file's `out`, else runs/experiments/<name>); a run that finished
        with the same settings is skipped (so experiments sharing a folder share identical
        runs), one that was interrupted resumes from its newest checkpoint (--resume auto).
    experiment.py plot FILE [--out DIR] [--formats png,svg]
        draws training error (dashed) and test error (solid) of every run against epochs or
        steps to DIR/<name>.png / .svg, and writes DIR/<name>.md: the final errors beside the
        paper's numbers, and each run's time.
    experiment.py list FILE
        prints each run's command.
"""
import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAVE_EVERY_S = 10  # how often the wall time of running runs is written to their experiment.json


def fail(msg):
    print(f"experiment: error: {msg}", file=sys.stderr)
    sys.exit(1)


def load(path):
    try:
        import yaml
    except ImportError:
        fail("python3-yaml is missing (apt-get install python3-yaml)")
    try:
        with open(path) as f:
            spec = yaml.safe_load(f)
    except OSError as e:
        fail(f"{path}: cannot read: {e.strerror}")
    except yaml.YAMLError as e:
        fail(f"{path}: malformed YAML: {str(e).splitlines()[0]}")
    if not isinstance(spec, dict):
        fail(f"{path}: must be a mapping (name, base, set, runs, plot)")
    known = {"name", "title", "base", "out", "set", "runs", "plot"}
    for key in spec:
        if key not in known:
            fail(f"{path}: unknown key '{key}'; valid keys: {', '.join(sorted(known))}")
    for key in ("name", "base", "runs"):
        if key not in spec:
            fail(f"{path}: '{key}' is missing")
    name = spec["name"]
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-." for c in name):
        fail(f"{path}: 'name' must be a folder name (letters, digits, '_', '-', '.'), got {name!r}")
    base = spec["base"]
    if not isinstance(base, str):
        fail(f"{path}: 'base' must be a config path, got {base!r}")
    spec["base_path"] = base if os.path.isabs(base) else os.path.join(ROOT, base)
    if not os.path.isfile(spec["base_path"]):
        fail(f"{path}: 'base': no such config '{base}'")
    spec["set"] = check_overrides(path, "set", spec.get("set") or {})
    runs = spec["runs"]
    if not isinstance(runs, list) or not runs:
        fail(f"{path}: 'runs' must be a non-empty list of {{name, set}}")
    seen = set()
    for i, run in enumerate(runs):
        at = f"runs[{i}]"
        if not isinstance(run, dict) or "name" not in run:
            fail(f"{path}: '{at}' must be a mapping with a 'name'")
        for key in run:
            if key not in ("name", "set"):
                fail(f"{path}: unknown key '{at}.{key}'; valid keys: name, set")
        rname = run["name"]
        if (not isinstance(rname, str) or not rname or rname in (".", "..")
                or not all(c.isalnum() or c in "_-." for c in rname)):
            fail(f"{path}: '{at}.name' must be a folder name, got {rname!r}")
        if rname in seen:
            fail(f"{path}: '{at}.name': run '{rname}' appears more than once")
        seen.add(rname)
        run["set"] = check_overrides(path, f"{at}.set", run.get("set") or {})
    plot = spec.get("plot") or {}
    if not isinstance(plot, dict):
        fail(f"{path}: 'plot' must be a mapping (x, paper, paper_metric)")
    for key in plot:
        if key not in ("x", "paper", "paper_metric", "ylim"):
            fail(f"{path}: unknown key 'plot.{key}'; valid keys: x, paper, paper_metric, ylim")
    if plot.get("x", "epoch") not in ("epoch", "step"):
        fail(f"{path}: 'plot.x' must be epoch or step, got {plot.get('x')!r}")
    paper = plot.get("paper") or {}
    if not isinstance(paper, dict):
        fail(f"{path}: 'plot.paper' must map run names to the paper's numbers")
    for key in paper:
        if key not in seen:
            fail(f"{path}: 'plot.paper.{key}' names no run")
    spec["plot"] = plot
    return spec


def check_overrides(path, at, value):
    if not isinstance(value, dict):
        fail(f"{path}: '{at}' must map dotted config keys to values, as {{train.epochs: 8}}")
    for key in value:
        if not isinstance(key, str) or "." not in key:
            fail(f"{path}: '{at}': '{key}' is not a dotted config key such as optim.lr")
        if key == "run_dir":
            fail(f"{path}: '{at}' cannot set run_dir (each run trains in <out>/<run>)")
    return value


def yaml_value(v):
    """A value as --set reads it (YAML): lists in flow form, booleans lower case."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ",".join(yaml_value(x) for x in v) + "]"
    return str(v)


def out_dir(args, spec):
    if args.out:
        return args.out
    if spec.get("out"):
        return spec["out"] if os.path.isabs(spec["out"]) else os.path.join(ROOT, spec["out"])
    return os.path.join(ROOT, "runs", "experiments", spec["name"])


def settings_of(spec, run):
    """What decides a run's result: the base config and every override, as text."""
    sets = dict(spec["set"])
    sets.update(run["set"])
    return {"base": os.path.relpath(spec["base_path"], ROOT),
            "set": {k: yaml_value(v) for k, v in sorted(sets.items())}}


def run_command(args, spec, run, run_dir):
    sets = dict(spec["set"])
    sets.update(run["set"])
    cmd = []
    if args.np > 1 or args.mpirun:
        cmd += ["mpirun", "-np", str(args.np), "--oversubscribe", "--bind-to", "none"]
        if os.geteuid() == 0:
            cmd += ["--allow-run-as-root"]
    cmd += [args.resnet, "train", "--config", spec["base_path"], "--resume", "auto"]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={yaml_value(value)}"]
    threads = args.threads
    if not threads and args.parallel > 1:
        # Side by side, each job only sees its own ranks: share this machine's cores out here.
        threads = max(1, len(os.sched_getaffinity(0)) // (args.parallel * args.np))
    if threads:
        cmd += ["--set", f"train.threads={threads}"]
    cmd += ["--set", f"run_dir={run_dir}"]
    return cmd


def state_of(run_dir):
    path = os.path.join(run_dir, "experiment.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def save_state(run_dir, state):
    tmp = os.path.join(run_dir, "experiment.json.tmp")
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, os.path.join(run_dir, "experiment.json"))


def cmd_run(args, spec):
    out = out_dir(args, spec)
    os.makedirs(out, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    if only:
        unknown = only - {r["name"] for r in spec["runs"]}
        if unknown:
            fail(f"--only: no run named {', '.join(sorted(unknown))} in {args.file}")
    todo = []
    for run in spec["runs"]:
        if only and run["name"] not in only:
            continue
        run_dir = os.path.join(out, run["name"])
        state = state_of(run_dir)
        settings = settings_of(spec, run)
        if state.get("settings") not in (None, settings):
            fail(f"run '{run['name']}' in {run_dir} was trained with other settings "
                 f"({json.dumps(state['settings'])}); give another --out or remove that folder")
        state["settings"] = settings
        if state.get("done"):
            print(f"[experiment] {run['name']}: done ({state.get('wall_s', 0):.0f} s), skipped",
                  flush=True)
            continue
        todo.append((run, run_dir, state))
    running = []  # (process, run, run_dir, state, start)
    failed = []
    stop = {"signal": None}

    def forward(signum, _frame):
        stop["signal"] = signum
        for p, *_ in running:
            try:
                p.send_signal(signal.SIGUSR1)  # train checkpoints and stops on SIGUSR1
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)

    def save_progress():
        # A runner killed outright (SIGKILL, a session or allocation that ends) keeps the
        # settings and the wall time of its runs up to the last save.
        for _p, _run, run_dir, state, start in running:
            save_state(run_dir, dict(state, wall_s=state.get("wall_s", 0) + time.time() - start))

    def finish_one():
        # Waits for any run to end while every run stays in `running`, where a signal reaches it.
        last_save = time.time()
        while True:
            done = [e for e in running if e[0].poll() is not None]
            if done:
                break
            if time.time() - last_save >= SAVE_EVERY_S:
                save_progress()
                last_save = time.time()
            time.sleep(0.2)
        entry = done[0]
        running.remove(entry)
        p, run, run_dir, state, start = entry
        rc = p.wait()
        state["wall_s"] = state.get("wall_s", 0) + time.time() - start
        metrics = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
        # Done when the last epoch finished (a stop by signal also exits 0, after a checkpoint).
        epochs = last_config_epochs(run_dir)
        state["done"] = rc == 0 and bool(metrics) and epochs is not None and \
            metrics[-1].get("epoch") == epochs
        save_state(run_dir, state)
        status = "done" if state["done"] else f"stopped (exit {rc})"
        print(f"[experiment] {run['name']}: {status} after {state['wall_s']:.0f} s in all",
              flush=True)
        if rc != 0:
            failed.append(run["name"])

    for run, run_dir, state in todo:
        if stop["signal"]:
            break
        while len(running) >= args.parallel:
            finish_one()
        if stop["signal"]:  # it came while a run finished: start no other
            break
        os.makedirs(run_dir, exist_ok=True)
        cmd = run_command(args, spec, run, run_dir)
        resumed = any(n.endswith(".h5") for n in os.listdir(os.path.join(run_dir, "checkpoints"))) \
            if os.path.isdir(os.path.join(run_dir, "checkpoints")) else False
        print(f"[experiment] {run['name']}: {'resuming' if resumed else 'starting'}: "
              f"{shlex.join(cmd)}", flush=True)
        state["attempts"] = state.get("attempts", 0) + 1
        state["done"] = False
        save_state(run_dir, state)  # the settings are on disk before the first checkpoint
        log = open(os.path.join(run_dir, "experiment.log"), "a")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        running.append((p, run, run_dir, state, time.time()))
    while running:
        finish_one()
    if stop["signal"]:
        print("[experiment] stopped by signal: run the same command again to resume", flush=True)
        return 1
    if failed:
        fail(f"{len(failed)} run(s) failed: {', '.join(failed)} (see <out>/<run>/experiment.log)")
    return 0


def read_jsonl(path):
    rows = []
    if not os.path.isfile(path):
        return rows
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a crash
    return rows


def last_config_epochs(run_dir):
    path = os.path.join(run_dir, "config.yaml")
    try:
        import yaml
        with open(path) as f:
            return int(yaml.safe_load(f)["train"]["epochs"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def dedupe(rows, key):
    """The last row for each value of `key`: a resumed run repeats the steps it redoes."""
    by = {}
    for r in rows:
        if key in r:
            by[r[key]] = r
    return [by[k] for k in sorted(by)]


def cmd_plot(args, spec):
    out = out_dir(args, spec)
    plot = spec["plot"]
    x_key = plot.get("x", "epoch")
    curves = []
    for run in spec["runs"]:
        run_dir = os.path.join(out, run["name"])
        epochs = dedupe(read_jsonl(os.path.join(run_dir, "metrics.jsonl")), "epoch")
        steps = dedupe(read_jsonl(os.path.join(run_dir, "steps.jsonl")), "step")
        if not epochs:
            print(f"[experiment] {run['name']}: no metrics yet in {run_dir}, left out",
                  file=sys.stderr)
            continue
        curves.append((run, epochs, steps, state_of(run_dir)))
    if not curves:
        fail(f"no run of {spec['name']} has metrics under {out}")
    formats = [f for f in args.formats.split(",") if f]
    for f in formats:
        if f not in ("png", "svg", "pdf"):
            fail(f"--formats: '{f}' is not png, svg or pdf")
    if formats:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            fail("python3-matplotlib is missing (apt-get install python3-matplotlib)")
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (run, epochs, steps, _) in enumerate(curves):
            c = colors[i % len(colors)]
            if x_key == "step" and steps:
                ax.plot([s["step"] for s in steps], [100 * (1 - s["train_top1"]) for s in steps],
                        "--", color=c, linewidth=0.8, alpha=0.8)
                steps_per_epoch = epochs[-1]["step"] / epochs[-1]["epoch"]
                ax.plot([e["epoch"] * steps_per_epoch for e in epochs],
                        [100 * (1 - e["test_top1"]) for e in epochs], "-o", color=c,
                        markersize=3, linewidth=1.6, label=run["name"])
            else:
                ax.plot([e["epoch"] for e in epochs], [100 * (1 - e["train_top1"]) for e in epochs],
                        "--", color=c, linewidth=1.0)
                ax.plot([e["epoch"] for e in epochs], [100 * (1 - e["test_top1"]) for e in epochs],
                        "-o", color=c, markersize=3, linewidth=1.6, label=run["name"])
        ax.set_xlabel("iterations" if x_key == "step" else "epochs")
        ax.set_ylabel("error (%)")
        if plot.get("ylim"):
            ax.set_ylim(*plot["ylim"])
        ax.set_title(spec.get("title", spec["name"]), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title="dashed: training error, solid: test error",
                  title_fontsize=8)
        fig.tight_layout()
        for f in formats:
            path = os.path.join(out, f"{spec['name']}.{f}")
            fig.savefig(path, dpi=110)
            print(f"[experiment] wrote {path}")
    paper = plot.get("paper") or {}
    metric = plot.get("paper_metric", "paper")
    lines = [f"| run | train error (%) | test error (%) | best test error (%) | {metric} | "
             f"epochs | time |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for run, epochs, _, state in curves:
        last = epochs[-1]
        best = min(1 - e["test_top1"] for e in epochs)
        wall = state.get("wall_s")
        lines.append(f"| {run['name']} | {100 * (1 - last['train_top1']):.2f} | "
                     f"{100 * (1 - last['test_top1']):.2f} | {100 * best:.2f} | "
                     f"{paper.get(run['name'], '')} | {last['epoch']} | "
                     f"{'%.0f s' % wall if wall else ''} |")
    table = "\n".join(lines) + "\n"
    path = os.path.join(out, f"{spec['name']}.md")
    with open(path, "w") as f:
        f.write(table)
    print(table, end="")
    print(f"[experiment] wrote {path}")
    return 0


def cmd_list(args, spec):
    out = out_dir(args, spec)
    for run in spec["runs"]:
        print(shlex.join(run_command(args, spec, run, os.path.join(out, run["name"]))))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["run", "plot", "list"])
    p.add_argument("file", help="configs/experiments/<name>.yaml")
    p.add_argument("--out", help="where the runs go (default runs/experiments/<name>)")
    p.add_argument("--np", type=int, default=1, help="MPI ranks per run (default 1)")
    p.add_argument("--mpirun", action="store_true", help="start runs under mpirun even with 1 rank")
    p.add_argument("--parallel", type=int, default=1, help="runs side by side (default 1)")
    p.add_argument("--threads", type=int, default=0,
                   help="train.threads of each rank (default: the trainer's choice; with "
                        "--parallel, the cores divided among every run's ranks)")
    p.add_argument("--only", help="comma-separated run names")
    p.add_argument("--resnet", default=os.path.join(ROOT, "build", "resnet"),
                   help="the resnet binary (default build/resnet)")
    p.add_argument("--formats", default="png,svg", help="plot formats (default png,svg)")
    args = p.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `list | head` ends quietly
    if args.np < 1 or args.parallel < 1:
        fail("--np and --parallel must be at least 1")
    spec = load(args.file)
    if args.action == "run" and not os.access(args.resnet, os.X_OK):
        fail(f"--resnet: '{args.resnet}' is not an executable (build it first)")
    return {"run": cmd_run, "plot": cmd_plot, "list": cmd_list}[args.action](args, spec)


if __name__ == "__main__":
    sys.exit(main())
