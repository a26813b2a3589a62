#!/usr/bin/env bash
# The GPU checks of the CUDA backend, prepared to run once on a lent GPU machine. It builds
# nothing there: the programs are built on the build machine and packed by the shared
# bundle.sh (see /work/shared/device/README.md).
#
# On the build machine (CUDA toolkit, no GPU needed), from the repository root:
#   cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DRESNET_CUDA=ON -DRESNET_NATIVE=OFF \
#         -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
#         -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache
#   cmake --build build-gpu -j2
#   bash launch/scripts/gpu_check.sh pack        # .gpu/: bundle, run-on-gpu.sh, torch_peer.py
# (RESNET_NATIVE=OFF: the GPU machine's processor may lack this one's instructions.)
#
# On the GPU machine (one device `run` with carry [".gpu"], timeout_s 540 or so):
#   bash .gpu/run-on-gpu.sh 'bash launch/scripts/gpu_check.sh run'
# It runs the CUDA tests of core_tests, launch_tests and distributed_tests (NCCL, one rank), then `resnet bench --device cuda` for
# resnet50 and resnext50_32x4d (3x224x224, bf16, batch 256) side by side with PyTorch
# (torch_peer.py train --device cuda --amp bf16 --channels-last) in the same run, and writes
# everything under $OUT, ending with $OUT/summary.txt (also printed).
set -uo pipefail
mode=${1:-run}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

case "$mode" in
  pack)
    build=${RESNET_GPU_BUILD:-build-gpu}
    shared=${RESNET_SHARED:-/work/shared}
    for p in resnet tests/core_tests tests/launch_tests tests/distributed_tests; do
      [ -x "$build/$p" ] || { echo "gpu_check: $build/$p is not built" >&2; exit 2; }
    done
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    grep -qx "/.gpu/" "$exclude" 2>/dev/null || echo "/.gpu/" >> "$exclude"
    bash "$shared/device/bundle.sh" .gpu "$build/resnet" "$build/tests/core_tests" \
      "$build/tests/launch_tests" "$build/tests/distributed_tests"
    cp "$shared/bench/torch_peer.py" .gpu/
    du -sh .gpu
    exit 0
    ;;
  run) ;;
  *)
    echo "usage: $0 pack|run" >&2
    exit 2
    ;;
esac

OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
peer=${RESNET_TORCH_PEER:-$root/.gpu/torch_peer.py}
export RN_RESNET_BINARY
RN_RESNET_BINARY=$(command -v resnet)
[ -n "$RN_RESNET_BINARY" ] || { echo "gpu_check: resnet is not on PATH (run it through run-on-gpu.sh)" >&2; exit 2; }
status=()

# 1. The GPU tests: every CUDA test of the core and launch suites (they skip nowhere here).
timeout 240 core_tests --gtest_filter='*Cuda*' --gtest_output="xml:$OUT/core_cuda.xml" \
  > "$OUT/core_cuda.log" 2>&1
status+=("core_tests *Cuda*: exit $? ($(grep -c '^\[       OK \]' "$OUT/core_cuda.log") passed, $(grep -c '^\[  FAILED  \]' "$OUT/core_cuda.log") failed lines)")
timeout 180 launch_tests --gtest_filter='*Cuda*' --gtest_output="xml:$OUT/launch_cuda.xml" \
  > "$OUT/launch_cuda.log" 2>&1
status+=("launch_tests *Cuda*: exit $? ($(grep -c '^\[       OK \]' "$OUT/launch_cuda.log") passed, $(grep -c '^\[  FAILED  \]' "$OUT/launch_cuda.log") failed lines)")

# One rank (NCCL needs a GPU per rank, and the machine has one): Open MPI runs as a singleton.
timeout 60 distributed_tests --gtest_filter='*Nccl*:LocalRank*' \
  --gtest_output="xml:$OUT/distributed_nccl.xml" > "$OUT/distributed_nccl.log" 2>&1
status+=("distributed_tests *Nccl*: exit $? ($(grep -c '^\[       OK \]' "$OUT/distributed_nccl.log") passed, $(grep -c '^\[  FAILED  \]' "$OUT/distributed_nccl.log") failed lines)")

# 2. Training throughput, ours and PyTorch's, one model after the other on the same GPU.
for model in resnet50 resnext50_32x4d; do
  timeout 150 resnet bench --model "$model" --input 3x224x224 --classes 1000 --batch 256 \
    --device cuda --precision bf16 --warmup 5 --iters 20 --train-only --json \
    > "$OUT/ours_$model.json" 2> "$OUT/ours_$model.err"
  status+=("resnet bench $model: exit $?")
  timeout 150 python3 "$peer" train --device cuda --amp bf16 --channels-last --model "$model" \
    --hw 224 --batch 256 --warmup 5 --iters 20 > "$OUT/torch_$model.txt" 2>&1
  status+=("torch_peer $model: exit $?")
done
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > "$OUT/gpu.txt" 2>&1

# 3. The summary: images/s, ours / PyTorch, and the fraction of the GPU's dense bf16 peak
# (training counted as 3 x 2 x forward multiply-adds per image).
python3 - "$OUT" "${status[@]}" <<'EOF' | tee "$OUT/summary.txt"
import json, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
for s in sys.argv[2:]:
    print(s)
gpu = (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").exists() else "?"
# Dense bf16 tensor-core peaks (NVIDIA data sheets, SXM parts).
peak = 989.4e12 if ("H100" in gpu or "H200" in gpu) else None
print(f"gpu: {gpu}; dense bf16 peak used: {peak / 1e12 if peak else '?'} TFLOP/s")
for model in ("resnet50", "resnext50_32x4d"):
    ours = torch = None
    try:
        ours = json.loads((out / f"ours_{model}.json").read_text().strip().splitlines()[-1])
    except Exception as e:
        print(f"{model}: no result of ours ({e})")
    try:
        line = [l for l in (out / f"torch_{model}.txt").read_text().splitlines() if l.startswith("RESULT ")][-1]
        torch = json.loads(line[len("RESULT "):])
    except Exception as e:
        print(f"{model}: no PyTorch result ({e})")
    if not ours:
        continue
    ips = ours["train_img_per_s"]
    flops = 3 * 2 * ours["fwd_macs_per_img"] * ips
    frac = f"{flops / peak:.1%}" if peak else "?"
    t_ips = torch.get("img_per_s_median") if torch else None
    ratio = f"{ips / t_ips:.2f}x" if t_ips else "?"
    print(f"{model} bf16 b256 224px: ours {ips:.1f} img/s, PyTorch {t_ips} img/s, "
          f"ours/PyTorch {ratio}, {flops / 1e12:.1f} TFLOP/s = {frac} of bf16 peak")
EOF
