#!/usr/bin/python3
"""The scaling model's arithmetic: the ring all-reduce's cost, the bucketer's buckets, the
overlap of its all-reduces with backward, the fit, and `predict` end to end on a given link.

    scaling_model_test.py RESNET
"""
import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPT = os.path.join(ROOT, "launch", "scripts", "scaling_model.py")
spec = importlib.util.spec_from_file_location("scaling_model", SCRIPT)
sm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sm)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")


def close(a, b, rel=1e-9):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-30)


MIB = 1 << 20
# Ring all-reduce: 2(N-1) steps of B/N bytes; one rank sends nothing.
check(sm.ring_time(8 * MIB, 1, 1e-5, 1e-9) == 0, "one rank costs nothing")
check(close(sm.ring_time(8 * MIB, 4, 1e-5, 1e-9), 6 * (1e-5 + 1e-9 * 2 * MIB)), "ring formula")
# Buckets: 1 MiB first, then 25 MiB, the rest last.
check(sm.buckets(60 * MIB) == [MIB, 25 * MIB, 25 * MIB, 9 * MIB], f"buckets {sm.buckets(60 * MIB)}")
check(sum(sm.buckets(97 * MIB + 5)) == 97 * MIB + 5, "buckets cover every byte")
# Overlap: a free link costs nothing; a slow one shows beyond the compute, never below it.
step, comm, exposed = sm.step_time(0.3, 100 * MIB, 8, 0.0, 0.0)
check(step == 0.3 and comm == 0 and exposed == 0, "a free link adds nothing")
step, comm, exposed = sm.step_time(0.3, 100 * MIB, 8, 1e-5, 1 / 1e9)
check(step >= 0.3 and close(step - 0.3, exposed), "the step is compute plus what is exposed")
check(exposed < comm, "backward hides part of the all-reduce")
# The last bucket's all-reduce starts at the end of backward at the earliest, so it is always
# exposed in full.
last = sm.ring_time(sm.buckets(100 * MIB)[-1], 8, 1e-5, 1 / 1e9)
check(exposed >= last - 1e-12, "the last bucket is exposed")
# More ranks never make the step shorter.
steps = [sm.step_time(0.1, 100 * MIB, n, 2e-5, 1 / 12.5e9)[0] for n in (2, 8, 64, 512)]
check(steps == sorted(steps), f"steps grow with ranks: {steps}")
# The fit recovers a line it is given.
a, b = sm.fit_line([1e6, 4e6, 16e6, 64e6], [0.002 + 3e-9 * x for x in (1e6, 4e6, 16e6, 64e6)])
check(close(a, 0.002, 1e-6) and close(b, 3e-9, 1e-6), f"fit {a} {b}")
check(close(sm.parse_rate("10gbit"), 1.25e9) and close(sm.parse_time("50us"), 5e-5), "units")

# predict end to end, on a nominal link.
p = subprocess.run([sys.executable, SCRIPT, "predict", "--resnet", sys.argv[1], "--model",
                    "resnet50", "--input", "3x224x224", "--classes", "1000", "--compute-ms",
                    "85", "--batch", "256", "--rate", "100gbit", "--delay", "5us", "--ranks",
                    "2,512", "--fit", "/nonexistent"], capture_output=True, text=True)
print(p.stdout, p.stderr)
check(p.returncode == 0, "predict runs")
check("25.6 M parameters" in p.stdout and "| 512 |" in p.stdout, "predict prints the table")
bad = subprocess.run([sys.executable, SCRIPT, "predict", "--resnet", sys.argv[1], "--rate",
                      "fast", "--compute-ms", "1"], capture_output=True, text=True)
check(bad.returncode == 1 and "'fast' is not a rate" in bad.stderr, "a bad rate is one error line")
bad = subprocess.run([sys.executable, SCRIPT, "measure", "--fit-min-kib", "65536"],
                     capture_output=True, text=True)
check(bad.returncode == 1 and bad.stderr.count("\n") == 1 and "--fit-min-kib must be in" in
      bad.stderr, f"a fit range past the sweep is one error line, before measuring: {bad.stderr!r}")
if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("ok")
