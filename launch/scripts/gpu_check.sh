#!/usr/bin/env bash
# The GPU checks of the CUDA backend, in two stages that each fit one device `run` (600 s at
# most; each stage stops its own steps by 480 s) and bring back at most 3 of the 8 files a run
# returns: logs.tar.gz (every log and gtest XML), results.json, summary.txt (also printed last).
#
# On the build machine (CUDA toolkit, no GPU needed), from the repository root:
#   cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DRESNET_CUDA=ON -DRESNET_NATIVE=OFF \
#         -DCMAKE_CUDA_ARCHITECTURES=90
#   cmake --build build-gpu -j2
#   bash launch/scripts/gpu_check.sh pack     # .gpu/: bundle, run-on-gpu.sh, torch_peer.py
# (RESNET_NATIVE=OFF: the GPU machine's processor may lack this one's instructions.)
#
# On the GPU machine, one device `run` per stage, carry [".gpu"], timeout_s 540:
#   bash .gpu/run-on-gpu.sh 'bash launch/scripts/gpu_check.sh tests'
#   bash .gpu/run-on-gpu.sh 'bash launch/scripts/gpu_check.sh bench'
#   tests: the CUDA tests of core_tests and launch_tests, and distributed_tests' NCCL tests on one
#          rank (NCCL needs a GPU per rank);
#   bench: `resnet bench --device cuda` beside `torch_peer.py train --device cuda`, resnet50 and
#          resnext50_32x4d at 3x224x224 batch 256: bf16 (PyTorch: AMP, channels-last), fp32 with
#          TF32 (PyTorch: its defaults, TF32 convolutions), and resnet50 bf16 with the gradient
#          bucketer summing through NCCL on one rank (--data-parallel).
#
#   bash launch/scripts/gpu_check.sh plan     # each stage's steps, time limits and their sums
#
# Without a GPU the same stages run to the end (the tests skip, the benchmarks fail in one line),
# which is how the mechanics are checked on the build machine: RESNET_GPU_CHECK_BUILD=build puts
# that build's programs on PATH instead of the bundle's.
set -uo pipefail
mode=${1:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

stage_budget_s=${RESNET_GPU_STAGE_S:-480}   # every step of a stage ends by then
models=(resnet50 resnext50_32x4d)

# name|time limit (s)|command. The limits of a stage sum to at most its budget (checked below),
# and no step starts with less than 20 s of the budget left.
tests_steps=(
  "core_cuda|200|core_tests --gtest_filter=*Cuda* --gtest_output=xml:\$LOGS/core_cuda.xml"
  "launch_cuda|150|launch_tests --gtest_filter=*Cuda* --gtest_output=xml:\$LOGS/launch_cuda.xml"
  "distributed_nccl|60|distributed_tests --gtest_filter=*Nccl*:LocalRank* --gtest_output=xml:\$LOGS/distributed_nccl.xml"
)
bench_common="--input 3x224x224 --classes 1000 --batch 256 --device cuda --warmup 5 --iters 20 --train-only --json"
peer_common="train --device cuda --hw 224 --batch 256 --warmup 5 --iters 20"
bench_steps=(
  "ours_resnet50_bf16|55|resnet bench --model resnet50 $bench_common --precision bf16"
  "torch_resnet50_bf16|70|python3 \$PEER $peer_common --model resnet50 --amp bf16 --channels-last"
  "ours_resnext50_32x4d_bf16|55|resnet bench --model resnext50_32x4d $bench_common --precision bf16"
  "torch_resnext50_32x4d_bf16|70|python3 \$PEER $peer_common --model resnext50_32x4d --amp bf16 --channels-last"
  "ours_resnet50_fp32|55|resnet bench --model resnet50 $bench_common --precision fp32"
  "torch_resnet50_fp32|70|python3 \$PEER $peer_common --model resnet50 --channels-last"
  "ours_resnet50_bf16_nccl|60|resnet bench --model resnet50 $bench_common --precision bf16 --data-parallel"
  "gpu|10|nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader"
)

limit_sum() {  # the sum of a stage's time limits
  local s=0 step
  for step in "$@"; do
    IFS='|' read -r _ limit _ <<< "$step"
    s=$((s + limit))
  done
  echo "$s"
}

case "$mode" in
  pack)
    build=${RESNET_GPU_BUILD:-build-gpu}
    shared=${RESNET_SHARED:-$root/../shared}
    for p in resnet tests/core_tests tests/launch_tests tests/distributed_tests; do
      [ -x "$build/$p" ] || { echo "gpu_check: $build/$p is not built" >&2; exit 2; }
    done
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    grep -qx "/.gpu/" "$exclude" 2>/dev/null || echo "/.gpu/" >> "$exclude"
    bash "$shared/device/bundle.sh" .gpu "$build/resnet" "$build/tests/core_tests" \
      "$build/tests/launch_tests" "$build/tests/distributed_tests" || exit 1
    cp "$shared/bench/torch_peer.py" .gpu/
    du -sh .gpu
    exit 0
    ;;
  plan)
    for stage in tests bench; do
      declare -n steps="${stage}_steps"
      echo "stage $stage: ${#steps[@]} steps, limits sum to $(limit_sum "${steps[@]}") s" \
           "(budget $stage_budget_s s; run it with timeout_s 540)"
      for step in "${steps[@]}"; do
        IFS='|' read -r name limit cmd <<< "$step"
        printf '  %-28s %4s s  %s\n' "$name" "$limit" "$cmd"
      done
    done
    echo "files back per stage: logs.tar.gz results.json summary.txt (a run returns at most 8)"
    exit 0
    ;;
  tests | bench) ;;
  *)
    echo "usage: $0 pack|plan|tests|bench" >&2
    exit 2
    ;;
esac

declare -n steps="${mode}_steps"
total=$(limit_sum "${steps[@]}")
if [ "$total" -gt "$stage_budget_s" ]; then
  echo "gpu_check: stage $mode's time limits sum to $total s, over its budget of $stage_budget_s s" >&2
  exit 2
fi

OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
LOGS=$(mktemp -d)
export LOGS
trap 'rm -rf "$LOGS"' EXIT
if [ -n "${RESNET_GPU_CHECK_BUILD:-}" ]; then
  export PATH="$RESNET_GPU_CHECK_BUILD:$RESNET_GPU_CHECK_BUILD/tests:$PATH"
fi
PEER=${RESNET_TORCH_PEER:-$root/.gpu/torch_peer.py}
[ -f "$PEER" ] || PEER=$root/../shared/bench/torch_peer.py
export PEER
RN_RESNET_BINARY=$(command -v resnet)
export RN_RESNET_BINARY
[ -n "$RN_RESNET_BINARY" ] ||
  { echo "gpu_check: resnet is not on PATH (run it through run-on-gpu.sh)" >&2; exit 2; }

start=$(date +%s)
: > "$LOGS/steps.tsv"
for step in "${steps[@]}"; do
  IFS='|' read -r name limit cmd <<< "$step"
  left=$((stage_budget_s - ($(date +%s) - start)))
  if [ "$left" -lt 20 ]; then
    printf '%s\t%s\t%s\t%s\n' "$name" "skipped" 0 "$limit" >> "$LOGS/steps.tsv"
    continue
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  t0=$(date +%s%N)
  echo "gpu_check: $name (limit $limit s): $cmd"
  timeout --kill-after=5 "$limit" bash -c "$cmd" > "$LOGS/$name.log" 2>&1
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  printf '%s\t%s\t%d.%03d\t%s\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000)) "$limit" >> "$LOGS/steps.tsv"
done

# results.json and summary.txt from the logs; the summary is printed last.
python3 - "$mode" "$LOGS" "$OUT" "$(($(date +%s) - start))" <<'EOF'
import json, pathlib, re, sys
import xml.etree.ElementTree as ET

mode, logs, out, wall = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), int(sys.argv[4])
steps = []
for line in (logs / "steps.tsv").read_text().splitlines():
    name, rc, secs, limit = line.split("\t")
    steps.append({"name": name, "exit": rc if rc == "skipped" else int(rc),
                  "seconds": float(secs), "limit_s": int(limit)})
lines = [f"gpu_check {mode}: {len(steps)} steps in {wall} s"]

def gtest_counts(xml):
    try:
        root = ET.parse(xml).getroot()
    except Exception as e:
        return None
    c = {"tests": 0, "failed": 0, "skipped": 0}
    for case in root.iter("testcase"):
        c["tests"] += 1
        if case.find("failure") is not None:
            c["failed"] += 1
        elif case.find("skipped") is not None or case.get("result") == "skipped":
            c["skipped"] += 1
    c["passed"] = c["tests"] - c["failed"] - c["skipped"]
    return c

def last_line(name):
    p = logs / f"{name}.log"
    text = p.read_text(errors="replace").strip().splitlines() if p.exists() else []
    return text[-1][:200] if text else ""

results = {"stage": mode, "wall_s": wall, "steps": steps}
if mode == "tests":
    ok = True
    for s in steps:
        c = gtest_counts(logs / f"{s['name']}.xml")
        s["gtest"] = c
        ok &= s["exit"] == 0 and c is not None and c["failed"] == 0
        counts = (f"{c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
                  if c else f"no test report ({last_line(s['name'])})")
        lines.append(f"  {s['name']}: exit {s['exit']}, {s['seconds']:.0f} s: {counts}")
    results["ok"] = ok
else:
    def last_json(name, prefix=""):
        p = logs / f"{name}.log"
        if not p.exists():
            return None
        for l in reversed(p.read_text(errors="replace").splitlines()):
            if l.startswith(prefix + "{"):
                try:
                    return json.loads(l[len(prefix):])
                except ValueError:
                    return None
        return None
    gpu_step = next((s for s in steps if s["name"] == "gpu"), None)
    gpu = (logs / "gpu.log").read_text().strip() if gpu_step and gpu_step["exit"] == 0 else ""
    # Dense bf16 tensor-core rates, by the name nvidia-smi prints: the data sheets' (SXM H100 and
    # H200: 989.4 TFLOP/s) and, for the H200, the rate measured on this workplace's machines.
    sheet = 989.4e12 if re.search(r"H100 80GB HBM3|H100 SXM|H200", gpu) else \
            756.0e12 if "H100 PCIe" in gpu else 835.5e12 if "H100 NVL" in gpu else None
    measured = 790e12 if "H200" in gpu else None
    results.update({"gpu": gpu, "bf16_peak_datasheet": sheet, "bf16_peak_measured": measured,
                    "bench": []})
    lines.append(f"  gpu: {gpu or '? (nvidia-smi gave nothing)'}; dense bf16 peak: data sheet "
                 f"{sheet / 1e12 if sheet else '?'} TFLOP/s, measured here "
                 f"{measured / 1e12 if measured else '?'} TFLOP/s")
    pairs = [("resnet50", "bf16"), ("resnext50_32x4d", "bf16"), ("resnet50", "fp32"),
             ("resnet50", "bf16_nccl")]
    for model, prec in pairs:
        ours = last_json(f"ours_{model}_{prec}")
        torch = last_json(f"torch_{model}_{prec}", "RESULT ")
        row = {"model": model, "precision": prec, "ours": ours, "torch": torch}
        results["bench"].append(row)
        if not ours:
            lines.append(f"  {model} {prec}: no result of ours ({last_line(f'ours_{model}_{prec}')})")
            continue
        ips = ours["train_img_per_s"]
        tflops = 3 * 2 * ours["fwd_macs_per_img"] * ips
        frac = lambda peak: f"{tflops / peak:.1%}" if peak else "?"
        t_ips = torch.get("img_per_s_median") if torch else None
        vs = f", PyTorch {t_ips} img/s, ours/PyTorch {ips / t_ips:.2f}x" if t_ips else \
             ("" if prec == "bf16_nccl" else f", no PyTorch result ({last_line(f'torch_{model}_{prec}')})")
        comm = (f", all-reduce {ours.get('allreduce')} {ours.get('comm_overhead', 0):.1%} of the step"
                if prec == "bf16_nccl" else "")
        lines.append(f"  {model} {prec} b256: ours {ips:.1f} img/s{vs}, {tflops / 1e12:.1f} TFLOP/s"
                     f" = {frac(sheet)} of the data-sheet peak, {frac(measured)} of the measured"
                     f"{comm}")
    results["ok"] = all(r["ours"] for r in results["bench"])
for s in steps:
    if s["exit"] == "skipped":
        lines.append(f"  {s['name']}: skipped, the stage's budget was spent")
    elif s["exit"] == 124 or s["exit"] == 137:
        lines.append(f"  {s['name']}: stopped at its limit of {s['limit_s']} s")
lines.append(f"gpu_check {mode}: {'ok' if results['ok'] else 'FAILED'}")
(out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
(out / "summary.txt").write_text("\n".join(lines) + "\n")
EOF
tar -C "$LOGS" -czf "$OUT/logs.tar.gz" .
cat "$OUT/summary.txt"
grep -q "^gpu_check $mode: ok" "$OUT/summary.txt"
