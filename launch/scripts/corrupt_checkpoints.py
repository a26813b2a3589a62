#!/usr/bin/python3
"""Damaged checkpoints (or input files) against the commands that read them.

Makes COPIES copies of one `resnet ckpt init` checkpoint (resnet20, 1 x 28 x 28 inputs, 10
classes), each damaged one way, and gives each to `ckpt inspect`, `infer` and `train --resume`
(one step on synthetic data). Every run must end with status 0 (damage where nothing reads it) or
1 with one error line: a signal, an abort, a hang (past --timeout seconds) or any other status
is a failure, and its file is kept in --keep for a regression test.

With --inputs the damaged file is instead an input of `infer` and `step` as h5py writes it by
default (HDF5's original format, whose metadata has no checksums): /images (8 x 1 x 28 x 28
float32) and /labels (8 int64), chunked and deflated; "metadata" then leaves out the chunks.

Kinds of damage, in turn: 1, 4 or 32 random bits flipped anywhere in the file; the same in the
HDF5 metadata (the bytes outside the datasets' raw data, found with h5py, less the unused zeros
at the end of each metadata block); the same in the
first 8 KiB (superblock and root group); the file cut short at a random length.

  /usr/bin/python3 launch/scripts/corrupt_checkpoints.py [--copies 1000] [--seed 1] [--jobs 2]
      [--timeout 60] [--resnet build/resnet] [--keep /tmp/resnet-corrupt-failures] [--inputs]

Prints a Markdown table (command x outcome) and the failures; exits 1 if there were any.
"""
import argparse
import collections
import concurrent.futures
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMANDS = ("inspect", "infer", "train")
INPUT_COMMANDS = ("infer", "step")


def metadata_ranges(path):
    """[start, end) of the bytes outside the datasets' raw data, each range without its trailing
    zeros (the unused rest of HDF5's metadata blocks)."""
    raw = []
    with h5py.File(path, "r") as f:
        def visit(_, obj):
            if isinstance(obj, h5py.Dataset):
                off = obj.id.get_offset()
                if off is not None:
                    raw.append((off, off + obj.id.get_storage_size()))
                elif obj.chunks is not None:
                    for i in range(obj.id.get_num_chunks()):
                        c = obj.id.get_chunk_info(i)
                        raw.append((c.byte_offset, c.byte_offset + c.size))
        f.visititems(visit)
    size = os.path.getsize(path)
    out, pos = [], 0
    for a, b in sorted(raw):
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < size:
        out.append((pos, size))
    data = open(path, "rb").read()
    out = [(a, a + len(data[a:b].rstrip(b"\0"))) for a, b in out]
    return [(a, b) for a, b in out if b > a]


def damage(data, kind, rng, meta):
    """A damaged copy of `data` and a description of the damage."""
    if kind == "truncate":
        n = rng.randrange(0, len(data))
        return data[:n], f"cut to {n} of {len(data)} bytes"
    where, bits = kind
    out = bytearray(data)
    offsets = []
    for _ in range(bits):
        if where == "anywhere":
            off = rng.randrange(len(data))
        elif where == "first8k":
            off = rng.randrange(min(8192, len(data)))
        else:  # metadata: bytes weighted evenly over every metadata range
            total = sum(b - a for a, b in meta)
            k = rng.randrange(total)
            for a, b in meta:
                if k < b - a:
                    off = a + k
                    break
                k -= b - a
        bit = rng.randrange(8)
        out[off] ^= 1 << bit
        offsets.append(f"{off}.{bit}")
    return bytes(out), f"{bits} bit(s) flipped in {where}: byte.bit " + " ".join(offsets)


def classify(proc_rc, stderr, timed_out):
    if timed_out:
        return "hang"
    if proc_rc < 0:
        return "signal " + signal.Signals(-proc_rc).name
    if proc_rc == 0:
        return "ok"
    errors = [l for l in stderr.splitlines() if "error" in l.lower()]
    if proc_rc == 1 and len(errors) == 1:
        return "one error line"
    if proc_rc == 1:
        return f"status 1, {len(errors)} error lines"
    return f"status {proc_rc}"


def run_one(args, work, index, data, desc):
    folder = os.path.join(work, f"copy{index:05d}")
    os.makedirs(folder)
    damaged = os.path.join(folder, "damaged.h5")
    with open(damaged, "wb") as f:
        f.write(data)
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader")
    ckpt = os.path.join(work, "base.h5") if args.inputs else damaged
    images = damaged if args.inputs else os.path.join(work, "images.h5")
    out = os.path.join(folder, "out.h5")
    cmds = {
        "inspect": [args.resnet, "ckpt", "inspect", ckpt],
        "infer": [args.resnet, "infer", "--checkpoint", ckpt, "--input", images, "--output", out,
                  "--threads", "1"],
        "step": [args.resnet, "step", "--checkpoint", ckpt, "--input", images, "--output", out,
                 "--threads", "1"],
        "train": [args.resnet, "train", "--config", os.path.join(work, "train.yaml"), "--set",
                  f"run_dir={folder}/run", "--resume", ckpt],
    }
    results = {}
    for name in args.commands:
        try:
            p = subprocess.run(cmds[name], capture_output=True, text=True, errors="replace",
                               env=env, timeout=args.timeout)
            outcome = classify(p.returncode, p.stderr, False)
            last = (p.stderr.strip().splitlines() or [""])[-1]
        except subprocess.TimeoutExpired:
            outcome, last = "hang", ""
        results[name] = (outcome, last[:200])
    failed = any(o not in ("ok", "one error line") for o, _ in results.values())
    if failed:
        os.makedirs(args.keep, exist_ok=True)
        shutil.copy(damaged, os.path.join(args.keep, f"copy{index:05d}.h5"))
    shutil.rmtree(folder, ignore_errors=True)
    return index, desc, results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--resnet", default=os.path.join(ROOT, "build", "resnet"))
    ap.add_argument("--keep", default="/tmp/resnet-corrupt-failures")
    ap.add_argument("--inputs", action="store_true",
                    help="damage an h5py-written input of infer and step instead")
    args = ap.parse_args()
    args.resnet = os.path.abspath(args.resnet)
    args.commands = INPUT_COMMANDS if args.inputs else COMMANDS

    work = tempfile.mkdtemp(prefix="resnet-corrupt-")
    try:
        base = os.path.join(work, "base.h5")
        subprocess.run([args.resnet, "ckpt", "init", "--model", "resnet20", "--in-channels", "1",
                        "--classes", "10", "--seed", "1", "--output", base], check=True,
                       stdout=subprocess.DEVNULL)
        with h5py.File(os.path.join(work, "images.h5"), "w") as f:
            f["images"] = np.random.default_rng(0).standard_normal((2, 1, 28, 28),
                                                                    dtype=np.float32)
        with h5py.File(os.path.join(work, "inputs.h5"), "w") as f:
            rng0 = np.random.default_rng(0)
            f.create_dataset("images", data=rng0.standard_normal((8, 1, 28, 28), dtype=np.float32),
                             chunks=(2, 1, 28, 28), compression="gzip")
            f.create_dataset("labels", data=rng0.integers(0, 10, 8), chunks=(2,),
                             compression="gzip")
        with open(os.path.join(work, "train.yaml"), "w") as f:
            f.write("model: {name: resnet20, in_channels: 1, num_classes: 10}\n"
                    "data: {kind: synthetic, synthetic_size: 8, height: 28, width: 28,"
                    " batch_size: 4, test_batch_size: 8, test_limit: 8, workers: 1}\n"
                    "train: {epochs: 1, max_steps: 1, seed: 1, threads: 1, log_every: 100}\n"
                    "checkpoint: {every_epochs: 0, every_steps: 0, keep_last: 1}\n")
        target = os.path.join(work, "inputs.h5") if args.inputs else base
        data = open(target, "rb").read()
        meta = metadata_ranges(target)
        kinds = [(w, b) for w in ("anywhere", "metadata", "first8k") for b in (1, 4, 32)]
        kinds.append("truncate")
        rng = random.Random(args.seed)
        print(f"{args.copies} damaged copies of a {len(data)}-byte "
              f"{'input file' if args.inputs else 'checkpoint'} "
              f"({sum(b - a for a, b in meta)} bytes of metadata); commands: "
              + ", ".join(args.commands), flush=True)
        tally = {c: collections.Counter() for c in args.commands}
        failures = []
        done = 0
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            # A few copies at a time, made in order from the one generator (the same damage for
            # the same seed), so that only those few are held in memory.
            for start in range(0, args.copies, 50):
                batch = [(i, *damage(data, kinds[i % len(kinds)], rng, meta))
                         for i in range(start, min(start + 50, args.copies))]
                futs = [pool.submit(run_one, args, work, *j) for j in batch]
                for fut in concurrent.futures.as_completed(futs):
                    index, desc, results = fut.result()
                    for c, (outcome, last) in results.items():
                        tally[c][outcome] += 1
                        if outcome not in ("ok", "one error line"):
                            failures.append((index, c, outcome, desc, last))
                    done += 1
                    if done % 100 == 0:
                        print(f"  {done}/{args.copies} copies, {len(failures)} failure(s)",
                              flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    outcomes = sorted({o for t in tally.values() for o in t})
    print("\n| command | " + " | ".join(outcomes) + " |")
    print("|---|" + "---:|" * len(outcomes))
    for c in args.commands:
        print(f"| {c} | " + " | ".join(str(tally[c][o]) for o in outcomes) + " |")
    for index, c, outcome, desc, last in sorted(failures):
        print(f"FAIL copy {index} ({desc}) {c}: {outcome}: {last}")
    if failures:
        print(f"failing files kept in {args.keep}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
