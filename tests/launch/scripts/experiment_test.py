#!/usr/bin/python3
"""An experiment of three tiny runs end to end: trained, interrupted, resumed, skipped when done,
plotted (PNG, SVG and the Markdown table); and bad experiment files answered in one line.

    experiment_test.py RESNET

Exit 77 (skip) where python3-yaml or python3-matplotlib is missing.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPT = os.path.join(ROOT, "launch", "scripts", "experiment.py")

try:
    import yaml  # noqa: F401
    import matplotlib  # noqa: F401
except ImportError as e:
    print(f"SKIP: {e.name} is missing (apt-get install python3-yaml python3-matplotlib)")
    sys.exit(77)

BASE = """run_dir: unused
model: {name: resnet20, in_channels: 1, num_classes: 4, blocks: [1, 1, 1]}
data: {kind: synthetic, synthetic_size: 1536, height: 28, width: 28, batch_size: 16,
       test_batch_size: 256, test_limit: 256}
optim: {lr: 0.05}
train: {epochs: 3, threads: 1, log_every: 8}
checkpoint: {every_epochs: 0, every_steps: 8, keep_last: 2}
"""

EXPERIMENT = """name: tiny
title: "two tiny runs"
base: {base}
set: {{optim.weight_decay: 0.0001}}
runs:
  - {{name: plain_shortcut}}
  - {{name: gated, set: {{model.shortcut: exclusive_gate, model.gate_bias: -2}}}}
  - {{name: dropped, set: {{model.shortcut: dropout, train.epochs: 1}}}}
plot: {{x: step, paper: {{gated: "8.70"}}, paper_metric: "paper (%)"}}
"""

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")


def run(*args, expect=0):
    p = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)
    if expect is not None and p.returncode != expect:
        print(p.stdout, p.stderr)
        check(False, f"{' '.join(args)}: exit {p.returncode}, expected {expect}")
    return p


def main():
    resnet = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="rn_experiment_test_")
    try:
        base = os.path.join(tmp, "base.yaml")
        with open(base, "w") as f:
            f.write(BASE)
        exp = os.path.join(tmp, "tiny.yaml")
        with open(exp, "w") as f:
            f.write(EXPERIMENT.format(base=base))
        out = os.path.join(tmp, "out")
        common = [exp, "--out", out, "--resnet", resnet]

        # First pass, stopped by a signal while the second run trains: the runner forwards
        # SIGUSR1, the trainer checkpoints and stops, the runner says how to continue.
        p = subprocess.Popen([sys.executable, SCRIPT, "run", *common], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        ckpts = os.path.join(out, "gated", "checkpoints")
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            if os.path.isdir(ckpts) and any(n.endswith(".h5") for n in os.listdir(ckpts)):
                p.send_signal(signal.SIGTERM)
                break
            time.sleep(0.005)
        first, _ = p.communicate(timeout=120)
        print(first)
        check(p.returncode == 1, f"interrupted run exits 1, got {p.returncode}")
        check("stopped by signal: run the same command again to resume" in first,
              "the interrupted runner says how to resume")
        state = json.load(open(os.path.join(out, "plain_shortcut", "experiment.json")))
        check(state.get("done") is True, "the first run is done")
        gated = json.load(open(os.path.join(out, "gated", "experiment.json")))
        check(gated.get("done") is False, "the interrupted run is not done")
        check(not os.path.exists(os.path.join(out, "dropped")), "no run starts after the signal")

        # Second pass: the finished run is skipped, the interrupted one resumes and finishes.
        second = run("run", *common).stdout
        print(second)
        check("plain_shortcut: done" in second and "skipped" in second, "a done run is skipped")
        check("gated: resuming" in second, "the interrupted run resumes")
        check("gated: done" in second, "the resumed run finishes")
        check("dropped: starting" in second and "dropped: done" in second, "the last run trains")
        with open(os.path.join(out, "gated", "train.log")) as f:
            log = f.read()
        check("resumed from" in log or "resume" in log, "the trainer resumed from a checkpoint")
        epochs = [json.loads(l)["epoch"] for l in open(os.path.join(out, "gated", "metrics.jsonl"))]
        check(sorted(set(epochs)) == [1, 2, 3], f"every epoch has metrics, got {epochs}")
        third = run("run", *common).stdout
        check(third.count("skipped") == 3, "a finished experiment trains nothing")

        # The plot and the table.
        plot = run("plot", exp, "--out", out).stdout
        print(plot)
        for ext in ("png", "svg", "md"):
            path = os.path.join(out, f"tiny.{ext}")
            check(os.path.isfile(path) and os.path.getsize(path) > 100, f"tiny.{ext} written")
        with open(os.path.join(out, "tiny.png"), "rb") as f:
            check(f.read(8) == b"\x89PNG\r\n\x1a\n", "the PNG is a PNG")
        with open(os.path.join(out, "tiny.md")) as f:
            table = f.read()
        check("| gated |" in table and "| 8.70 |" in table and "| plain_shortcut |" in table,
              "the table has both runs and the paper's number")

        # Changed settings under the same folder are refused, not silently reused.
        with open(exp, "w") as f:
            f.write(EXPERIMENT.format(base=base).replace("0.0001", "0.0005"))
        p = run("run", *common, expect=1)
        check("was trained with other settings" in p.stderr and p.stderr.count("\n") == 1,
              f"changed settings are one error line: {p.stderr!r}")

        # A runner killed outright (as when a session or allocation ends) has already written
        # the running run's settings, so a changed experiment cannot resume its checkpoint.
        with open(exp, "w") as f:
            f.write(EXPERIMENT.format(base=base))
        out2 = os.path.join(tmp, "out2")
        p = subprocess.Popen([sys.executable, SCRIPT, "run", exp, "--out", out2, "--resnet", resnet],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        ckpts = os.path.join(out2, "gated", "checkpoints")
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            if os.path.isdir(ckpts) and any(n.endswith(".h5") for n in os.listdir(ckpts)):
                os.killpg(p.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        p.wait(timeout=60)
        check(p.returncode == -signal.SIGKILL, f"the runner was killed, got {p.returncode}")
        gated = json.load(open(os.path.join(out2, "gated", "experiment.json")))
        check(gated.get("done") is False and gated.get("attempts") == 1 and
              gated.get("settings", {}).get("set", {}).get("model.gate_bias") == "-2",
              f"the killed run's state is on disk: {gated}")
        with open(exp, "w") as f:
            f.write(EXPERIMENT.format(base=base).replace("gate_bias: -2", "gate_bias: -3"))
        p = run("run", exp, "--out", out2, "--resnet", resnet, expect=1)
        check("'gated'" in p.stderr and "was trained with other settings" in p.stderr,
              f"the killed run refuses changed settings: {p.stderr!r}")

        # Bad experiment files: one line naming the file and the key.
        bad = {
            "runs: []\n": "'name' is missing",
            "name: x\nbase: nowhere.yaml\nruns: [{name: a}]\n": "'base': no such config",
            f"name: x\nbase: {base}\nruns: [{{name: a}}, {{name: a}}]\n": "appears more than once",
            f"name: x\nbase: {base}\nruns: [{{name: a, sett: {{}}}}]\n": "unknown key 'runs[0].sett'",
            f"name: x\nbase: {base}\nruns: [{{name: a, set: {{epochs: 3}}}}]\n":
                "'epochs' is not a dotted config key",
            f"name: x\nbase: {base}\nruns: [{{name: a}}]\nplot: {{x: time}}\n": "'plot.x' must be",
            "name: [x\n": "malformed YAML",
        }
        for text, want in bad.items():
            path = os.path.join(tmp, "bad.yaml")
            with open(path, "w") as f:
                f.write(text)
            p = run("list", path, expect=1)
            check(want in p.stderr and p.stderr.count("\n") == 1 and path in p.stderr,
                  f"{text!r}: {p.stderr!r} should name the file and say {want!r}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
