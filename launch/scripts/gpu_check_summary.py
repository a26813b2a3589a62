#!/usr/bin/env python3
"""results.json and summary.txt of a gpu_check.sh run, from its logs.

    gpu_check_summary.py MODE LOGS OUT WALL_S EXPECTED_SKIPS

MODE: all, tests or bench. LOGS holds steps.tsv (name, exit, seconds, limit per step), each
step's log, the gtest XML of the test steps and their test lists (NAME.list). EXPECTED_SKIPS:
comma-separated test names that may skip on a GPU machine. A test step is ok when it exited 0,
failed nothing, and every listed test passed but those; a bench pair gives images/s of ours and
PyTorch's, their ratio, and the fraction of the bf16 peak.
"""
import json
import pathlib
import re
import sys
import xml.etree.ElementTree as ET


def gtest_results(xml):
    """{"passed": [...], "failed": [...], "skipped": [...]} of a gtest XML report, or None."""
    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError):
        return None
    r = {"passed": [], "failed": [], "skipped": []}
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        if case.find("failure") is not None:
            r["failed"].append(name)
        elif case.find("skipped") is not None or case.get("result") == "skipped":
            r["skipped"].append(name)
        else:
            r["passed"].append(name)
    return r


def last_line(logs, name):
    p = logs / f"{name}.log"
    text = p.read_text(errors="replace").strip().splitlines() if p.exists() else []
    return text[-1][:200] if text else ""


def last_json(logs, name, prefix=""):
    p = logs / f"{name}.log"
    if not p.exists():
        return None
    for line in reversed(p.read_text(errors="replace").splitlines()):
        if line.startswith(prefix + "{"):
            try:
                return json.loads(line[len(prefix):])
            except ValueError:
                return None
    return None


def versions(logs):
    """The GPU (nvidia-smi) and the runtime libraries (`resnet info --devices`)."""
    p = logs / "versions.log"
    lines = p.read_text(errors="replace").splitlines() if p.exists() else []
    info = {}
    for line in lines:
        m = re.match(r"^(cpu_isa|cuda|cuda_driver|cuda_runtime|cudnn|cublas|nccl|gpus|gpu\d+)\s+(.*)$", line)
        if m:
            info[m.group(1)] = m.group(2)
    smi = next((l for l in lines if "," in l and not re.match(r"^\w+\s{2,}", l)), "")
    return smi.strip(), info


def test_lines(steps, logs, expected):
    lines, ok = [], True
    for s in steps:
        r = gtest_results(logs / f"{s['name']}.xml")
        listed_path = logs / f"{s['name']}.list"
        listed = listed_path.read_text().split() if listed_path.exists() else []
        s["gtest"] = {k: len(v) for k, v in r.items()} if r else None
        s["listed"] = len(listed)
        if r is None:
            ok = False
            lines.append(f"  {s['name']}: exit {s['exit']}, {s['seconds']:.0f} s: no test report "
                         f"({last_line(logs, s['name'])})")
            continue
        may_skip = [t for t in listed if t in expected]
        must_pass = len(listed) - len(may_skip) if listed else len(r["passed"]) + len(r["failed"])
        unexpected = [t for t in r["skipped"] if t not in expected]
        step_ok = s["exit"] == 0 and not r["failed"] and len(r["passed"]) >= must_pass and not unexpected
        s["skipped_tests"] = r["skipped"]
        ok &= step_ok
        lines.append(f"  {s['name']}: exit {s['exit']}, {s['seconds']:.0f} s: {len(r['passed'])} of "
                     f"{must_pass} passed, {len(r['failed'])} failed, {len(r['skipped'])} skipped"
                     + ("" if step_ok else "  <- not ok"))
        for t in r["failed"][:10]:
            lines.append(f"    failed: {t}")
        if r["skipped"]:
            shown = ", ".join(r["skipped"][:6]) + (f", ... ({len(r['skipped'])})" if len(r["skipped"]) > 6 else "")
            lines.append(f"    skipped: {shown}" + (" (expected)" if not unexpected else
                                                     f" (only {', '.join(sorted(expected))} may skip)"))
    return lines, ok


def bench_lines(steps, logs, gpu, results):
    # Dense bf16 tensor-core rates, by the name nvidia-smi prints: the data sheets' (SXM H100 and
    # H200: 989.4 TFLOP/s) and, for the H200, the rate measured on this workplace's machines.
    sheet = 989.4e12 if re.search(r"H100 80GB HBM3|H100 SXM|H200", gpu) else \
        756.0e12 if "H100 PCIe" in gpu else 835.5e12 if "H100 NVL" in gpu else None
    measured = 790e12 if "H200" in gpu else None
    results.update({"bf16_peak_datasheet": sheet, "bf16_peak_measured": measured, "bench": []})
    lines = [f"  dense bf16 peak: data sheet {sheet / 1e12 if sheet else '?'} TFLOP/s, measured here "
             f"{measured / 1e12 if measured else '?'} TFLOP/s"]
    names = {s["name"] for s in steps}
    pairs = [(m, p) for m, p in [("resnet50", "bf16"), ("resnext50_32x4d", "bf16"), ("resnet50", "fp32"),
                                 ("resnet50", "bf16_nccl")] if f"ours_{m}_{p}" in names]
    for model, prec in pairs:
        ours = last_json(logs, f"ours_{model}_{prec}")
        torch = last_json(logs, f"torch_{model}_{prec}", "RESULT ")
        results["bench"].append({"model": model, "precision": prec, "ours": ours, "torch": torch})
        if not ours:
            lines.append(f"  {model} {prec}: no result of ours ({last_line(logs, f'ours_{model}_{prec}')})")
            continue
        ips = ours["train_img_per_s"]
        tflops = 3 * 2 * ours["fwd_macs_per_img"] * ips
        frac = lambda peak: f"{tflops / peak:.1%}" if peak else "?"
        t_ips = torch.get("img_per_s_median") if torch else None
        vs = f", PyTorch {t_ips} img/s, ours/PyTorch {ips / t_ips:.2f}x" if t_ips else \
            ("" if prec == "bf16_nccl" else f", no PyTorch result ({last_line(logs, f'torch_{model}_{prec}')})")
        comm = (f", all-reduce {ours.get('allreduce')} {ours.get('comm_overhead', 0):.1%} of the step"
                if prec == "bf16_nccl" else "")
        lines.append(f"  {model} {prec} b256: ours {ips:.1f} img/s{vs}, {tflops / 1e12:.1f} TFLOP/s"
                     f" = {frac(sheet)} of the data-sheet peak, {frac(measured)} of the measured{comm}")
        lines.append(f"    first step (cuDNN's algorithm search at batch 256) {ours.get('first_step_s', 0):.1f} s")
        if ours.get("upload_s_pinned"):
            lines.append(f"    upload of the {ours['batch_mib']:.0f} MiB batch (not in the step): "
                         f"{ours['upload_s_pageable'] * 1e3:.1f} ms pageable (train's way today), "
                         f"{ours['upload_s_pinned'] * 1e3:.1f} ms pinned; step with the next upload "
                         f"overlapped {ours['train_iter_s_upload_overlapped'] * 1e3:.1f} ms against "
                         f"{ours['train_iter_s_median'] * 1e3:.1f} ms")
    return lines, bool(pairs) and all(r["ours"] for r in results["bench"])


def main():
    mode, logs, out, wall, expected = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), \
        int(sys.argv[4]), set(filter(None, sys.argv[5].split(",")))
    steps = []
    for line in (logs / "steps.tsv").read_text().splitlines():
        name, rc, secs, limit = line.split("\t")
        steps.append({"name": name, "exit": rc if rc == "skipped" else int(rc),
                      "seconds": float(secs), "limit_s": int(limit)})
    smi, info = versions(logs)
    results = {"stage": mode, "wall_s": wall, "steps": steps, "gpu": smi, "runtime": info}
    lines = [f"gpu_check {mode}: {len(steps)} steps in {wall} s, limits summing to "
             f"{sum(s['limit_s'] for s in steps)} s",
             f"  gpu: {smi or '? (nvidia-smi gave nothing)'}",
             "  runtime: " + ", ".join(f"{k} {info[k]}" for k in ("cuda", "cuda_driver", "cudnn", "cublas",
                                                                  "nccl") if k in info)]
    ok = True
    test_steps = [s for s in steps if s["name"] in ("core_cuda", "launch_cuda", "distributed_nccl")]
    if test_steps:
        t_lines, t_ok = test_lines(test_steps, logs, expected)
        lines += t_lines
        ok &= t_ok
    if any(s["name"].startswith("ours_") for s in steps):
        b_lines, b_ok = bench_lines(steps, logs, smi, results)
        lines += b_lines
        ok &= b_ok
    for s in steps:
        if s["exit"] == "skipped":
            lines.append(f"  {s['name']}: skipped, the budget was spent")
            ok = False
        elif s["exit"] in (124, 137):
            lines.append(f"  {s['name']}: stopped at its limit of {s['limit_s']} s")
    results["ok"] = ok
    lines.append(f"gpu_check {mode}: {'ok' if ok else 'FAILED'}")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "summary.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
