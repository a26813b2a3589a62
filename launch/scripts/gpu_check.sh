#!/usr/bin/env bash
# The GPU check of the CUDA backend: the CUDA tests, then the benchmarks beside PyTorch, in ONE
# device `run` (a start costs one to two minutes of a session's 15; one call leaves time for a
# second). The steps' time limits sum to at most 480 s (checked below), so the call ends well
# inside its 540 s; three files come back (of the 8 a run returns): logs.tar.gz (every log and
# gtest XML), results.json, and summary.txt, which is also printed last.
#
# On the build machine (CUDA toolkit, no GPU needed), from the repository root:
#   cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DRESNET_CUDA=ON -DRESNET_NATIVE=OFF \
#         -DCMAKE_CUDA_ARCHITECTURES=90
#   cmake --build build-gpu -j2
#   bash launch/scripts/gpu_check.sh pack     # .gpu/: bundle, run-on-gpu.sh, torch_peer.py
# (RESNET_NATIVE=OFF: the GPU machine's processor may lack this one's instructions.)
#
# On the GPU machine, one device `run`, carry [".gpu"], timeout_s 540:
#   bash .gpu/run-on-gpu.sh 'bash launch/scripts/gpu_check.sh all'
# Stages, also alone for a rerun (`tests`, `bench`):
#   tests: the CUDA tests of core_tests and launch_tests, and distributed_tests' NCCL tests on one
#          rank (NCCL needs a GPU per rank). A stage is ok only when every listed test passed but
#          the expected skips (the no-GPU error test); skips are listed by name.
#   bench: `resnet bench --device cuda` beside `torch_peer.py train --device cuda`, resnet50 and
#          resnext50_32x4d at 3x224x224 batch 256 on a batch resident on the GPU, as the peer's:
#          bf16 (PyTorch: AMP, channels-last), fp32 with TF32 (PyTorch: its defaults, TF32
#          convolutions), and resnet50 bf16 with the gradient bucketer summing through NCCL on one
#          rank (--data-parallel). Also reported: the first step (cuDNN's algorithm search at batch
#          256) and the batch's upload (pageable, pinned, overlapped with the step).
# Before any step: ldd of every program (a "not found" stops the check in one line), and the
# runtime versions of the CUDA driver, cuDNN, cuBLAS and NCCL it loads (`resnet info --devices`).
#
#   bash launch/scripts/gpu_check.sh plan     # the steps, their limits and their sum
#
# Without a GPU the same stages run to the end (the tests skip, the benchmarks fail in one line,
# the summary says FAILED), which is how the mechanics are checked on the build machine:
# RESNET_GPU_CHECK_BUILD=build puts that build's programs on PATH instead of the bundle's.
set -uo pipefail
mode=${1:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

budget_s=${RESNET_GPU_CHECK_S:-480}   # every step ends by then
programs=(resnet core_tests launch_tests distributed_tests)
# The tests each suite may skip on a GPU machine, by name (comma-separated).
expected_skips="CudaTrainTest.WithoutAGpuCudaIsOneClearError"

# name|time limit (s)|command. The limits sum to at most the budget (checked below), and no step
# starts with less than 20 s of the budget left.
versions_steps=(
  "versions|10|nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv,noheader; resnet info --devices"
)
tests_steps=(
  "core_cuda|75|core_tests --gtest_filter=*Cuda* --gtest_output=xml:\$LOGS/core_cuda.xml"
  "launch_cuda|70|launch_tests --gtest_filter=*Cuda* --gtest_output=xml:\$LOGS/launch_cuda.xml"
  "distributed_nccl|25|NCCL_DEBUG=WARN distributed_tests --gtest_filter=*Nccl*:RankEnvironment* --gtest_output=xml:\$LOGS/distributed_nccl.xml"
)
bench_common="--input 3x224x224 --classes 1000 --batch 256 --device cuda --warmup 3 --iters 15 --train-only --json"
# The peer runs with the machine's own library path (PyTorch's cuDNN, cuBLAS and NCCL), not the
# bundle's.
peer="env LD_LIBRARY_PATH=\"\${RN_HOST_LD_LIBRARY_PATH-\$LD_LIBRARY_PATH}\" python3 \$PEER train --device cuda --hw 224 --batch 256 --warmup 3 --iters 15"
bench_steps=(
  "ours_resnet50_bf16|45|resnet bench --model resnet50 $bench_common --precision bf16"
  "torch_resnet50_bf16|40|$peer --model resnet50 --amp bf16 --channels-last"
  "ours_resnet50_bf16_nccl|35|NCCL_DEBUG=WARN resnet bench --model resnet50 $bench_common --precision bf16 --data-parallel"
  "ours_resnext50_32x4d_bf16|45|resnet bench --model resnext50_32x4d $bench_common --precision bf16"
  "torch_resnext50_32x4d_bf16|40|$peer --model resnext50_32x4d --amp bf16 --channels-last"
  "ours_resnet50_fp32|45|resnet bench --model resnet50 $bench_common --precision fp32"
  "torch_resnet50_fp32|40|$peer --model resnet50 --channels-last"
)

limit_sum() {  # the sum of the steps' time limits
  local s=0 step
  for step in "$@"; do
    IFS='|' read -r _ limit _ <<< "$step"
    s=$((s + limit))
  done
  echo "$s"
}

case "$mode" in
  all) steps=("${versions_steps[@]}" "${tests_steps[@]}" "${bench_steps[@]}") ;;
  tests) steps=("${versions_steps[@]}" "${tests_steps[@]}") ;;
  bench) steps=("${versions_steps[@]}" "${bench_steps[@]}") ;;
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
    steps=("${versions_steps[@]}" "${tests_steps[@]}" "${bench_steps[@]}")
    echo "gpu_check all: ${#steps[@]} steps, limits sum to $(limit_sum "${steps[@]}") s" \
         "(budget $budget_s s; one device run with timeout_s 540)"
    for step in "${steps[@]}"; do
      IFS='|' read -r name limit cmd <<< "$step"
      printf '  %-28s %4s s  %s\n' "$name" "$limit" "$cmd"
    done
    echo "files back: logs.tar.gz results.json summary.txt (a run returns at most 8)"
    exit 0
    ;;
  *)
    echo "usage: $0 all|tests|bench|pack|plan" >&2
    exit 2
    ;;
esac

total=$(limit_sum "${steps[@]}")
if [ "$total" -gt "$budget_s" ]; then
  echo "gpu_check: the $mode steps' time limits sum to $total s, over the budget of $budget_s s" >&2
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

# Every program must start: a missing library would waste the call step after step.
lacking=0
for p in "${programs[@]}"; do
  path=$(command -v "$p") || { echo "gpu_check: $p is not on PATH (run it through run-on-gpu.sh)"; lacking=1; continue; }
  missing=$(ldd "$path" 2>&1 | awk '/not found/ {print $1}' | tr '\n' ' ')
  [ -z "$missing" ] || { echo "gpu_check: $p cannot load: ${missing% } (nothing was run)"; lacking=1; }
done
[ "$lacking" = 0 ] || exit 3
RN_RESNET_BINARY=$(command -v resnet)
export RN_RESNET_BINARY

start=$(date +%s)
: > "$LOGS/steps.tsv"
for step in "${steps[@]}"; do
  IFS='|' read -r name limit cmd <<< "$step"
  left=$((budget_s - ($(date +%s) - start)))
  if [ "$left" -lt 20 ]; then
    printf '%s\t%s\t%s\t%s\n' "$name" "skipped" 0 "$limit" >> "$LOGS/steps.tsv"
    continue
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  # The tests a suite lists, for the summary's count of what must pass.
  if [[ $cmd =~ ^(NCCL_DEBUG=WARN\ )?([a-z_]+_tests)\ (--gtest_filter=[^ ]*) ]]; then
    "${BASH_REMATCH[2]}" "${BASH_REMATCH[3]}" --gtest_list_tests 2> /dev/null |
      awk '/^[^ ]/ {suite = $1} /^  / {print suite $1}' > "$LOGS/$name.list"
  fi
  t0=$(date +%s%N)
  echo "gpu_check: $name (limit $limit s): $cmd"
  timeout --kill-after=5 "$limit" bash -c "$cmd" > "$LOGS/$name.log" 2>&1
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  printf '%s\t%s\t%d.%03d\t%s\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000)) "$limit" >> "$LOGS/steps.tsv"
done

python3 "$root/launch/scripts/gpu_check_summary.py" "$mode" "$LOGS" "$OUT" \
  "$(($(date +%s) - start))" "$expected_skips"
tar -C "$LOGS" -czf "$OUT/logs.tar.gz" .
cat "$OUT/summary.txt"
grep -q "^gpu_check $mode: ok" "$OUT/summary.txt"
