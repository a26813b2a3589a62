#!/usr/bin/env bash
# libFuzzer over the project's parsers (clang 14, AddressSanitizer + UBSan):
#   bash launch/scripts/fuzz.sh [SECONDS] [TARGET...]
#   RESNET_FUZZ_PARALLEL=2 bash launch/scripts/fuzz.sh 600   # two targets at a time
# Targets (tests/fuzz): config (YAML + --set), idx, cifar, image (JPEG/PNG decode + augment),
# packed, checkpoint, array (infer/step files); all of them when none is named. Each runs
# SECONDS (default 600), RESNET_FUZZ_PARALLEL targets at a time (default 1) sharing the cores,
# from a seed corpus made by the project's own writers (fuzz_seeds, and configs/ for config)
# plus what earlier runs kept in the corpus folder.
# A crash, a leak, an uncaught exception other than rn::Error or a timeout fails the run; the
# input is kept in fuzz-out/TARGET/ and tests/fuzz/regressions/TARGET/ takes it as a test.
# RESNET_FUZZ_QUICK=1 (CI) builds and runs only the io targets (no oneDNN build needed).
set -euo pipefail

seconds=${1:-600}
shift || true
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${RESNET_FUZZ_BUILD:-$root/build-fuzz}
work=${RESNET_FUZZ_WORK:-$root/fuzz-out}
all=(config idx cifar image packed checkpoint array)
[ "${RESNET_FUZZ_QUICK:-0}" = 1 ] && all=(idx cifar image packed checkpoint)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

if ! command -v clang++-14 > /dev/null ||
  [ ! -e "$(clang++-14 -print-resource-dir)/lib/linux/libclang_rt.fuzzer-x86_64.a" ]; then
  echo "fuzz: needs clang-14, libclang-rt-14-dev, libfuzzer-14-dev and libomp-14-dev" \
    "(bash launch/scripts/setup.sh hardening installs them)" >&2
  exit 1
fi
mkdir -p "$build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRESNET_CUDA=OFF \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DRESNET_SANITIZE=address,undefined -DRESNET_FUZZ=ON -DBUILD_TESTING=OFF \
  > "$build/configure.log" || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" --target fuzz_seeds $(printf '%s_fuzz ' "${targets[@]}")

seeds=$work/seeds
rm -rf "$seeds"
"$build/tests/fuzz/fuzz_seeds" "$seeds"
mkdir -p "$seeds/config"
i=0
for f in "$root"/configs/*.yaml "$root"/configs/*/*.yaml; do
  [ -f "$f" ] || continue
  cp "$f" "$seeds/config/$(basename "$f")"
  # The same config with overrides after a NUL byte.
  { cat "$f"; printf '\0train.epochs=2\noptim.lr=0.05\ndata.batch_size=8'; } > "$seeds/config/set$i"
  i=$((i + 1))
done

export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$root/launch/scripts/sanitize/lsan.supp:print_suppressions=0"
export OMP_NUM_THREADS=1
parallel=${RESNET_FUZZ_PARALLEL:-1}
workers=$(( $(nproc) / parallel ))
[ "$workers" -ge 1 ] || workers=1

# One target: libFuzzer in fork mode (workers restart after a crash, so one run finds more than
# one; each crash's input lands in fuzz-out/TARGET/), then its summary line in fuzz-out/TARGET/.
run_target() {
  local t=$1 corpus=$work/corpus/$1 out=$work/$1 regress=$root/tests/fuzz/regressions/$1
  local extra=() rc crashes last execs cov ft rate
  mkdir -p "$corpus" "$out"
  rm -f "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* "$out/summary" "$out/findings"
  [ -d "$regress" ] && extra+=("$regress")
  echo "fuzz: $t for $seconds s ($workers worker(s)), log $out/fuzz.log"
  set +e
  "$build/tests/fuzz/${t}_fuzz" "$corpus" "$seeds/$t" "${extra[@]}" \
    -max_total_time="$seconds" -fork="$workers" -ignore_crashes=1 -ignore_timeouts=1 \
    -ignore_ooms=1 -timeout=20 -rss_limit_mb=4096 -max_len=4194304 -artifact_prefix="$out/" \
    -print_final_stats=1 > "$out/fuzz.log" 2>&1
  rc=$?
  set -e
  # libFuzzer's fork mode counts any sanitizer report in a job's output as that job's crash,
  # the report of a probe_in_child child (which dies so that the reader does not) included:
  # each input is run again, and only those that still fail are findings.
  local replayed=0 f
  rm -rf "$out/child-reports"
  for f in "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*; do
    [ -e "$f" ] || continue
    if "$build/tests/fuzz/${t}_fuzz" -timeout=20 -rss_limit_mb=4096 "$f" > /dev/null 2>&1; then
      mkdir -p "$out/child-reports"
      mv "$f" "$out/child-reports/"
      replayed=$((replayed + 1))
    fi
  done
  crashes=$(find "$out" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o \
    -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  last=$(grep -E '^#[0-9]+' "$out/fuzz.log" | tail -1 || true)
  execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<< "$last")
  cov=$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<< "$last")
  ft=$(sed -nE 's/.*ft: ([0-9]+).*/\1/p' <<< "$last")
  rate=$(awk -v e="${execs:-0}" -v s="$seconds" 'BEGIN { printf "%.0f", e / s }')
  echo "$t: ${execs:-0} runs in $seconds s (${rate}/s, $workers worker(s)), coverage ${cov:-?}" \
    "edges, ${ft:-?} features, corpus $(ls "$corpus" | wc -l) files, $crashes finding(s)" \
    "(rc $rc; $replayed report(s) of probe children, whose inputs replay cleanly)" \
    > "$out/summary"
  if [ "$crashes" -gt 0 ]; then
    for f in "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-*; do
      [ -e "$f" ] || continue
      echo "$f: $("$build/tests/fuzz/${t}_fuzz" "$f" 2>&1 | grep -m1 -E "ERROR|uncaught|terminate")"
    done > "$out/findings"
  fi
}

export RN_FUZZ_DIR=${RN_FUZZ_DIR:-/dev/shm}
running=0
for t in "${targets[@]}"; do
  run_target "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

status=0
for t in "${targets[@]}"; do
  cat "$work/$t/summary"
  if [ -s "$work/$t/findings" ]; then
    status=1
    sed "s/^/  /" "$work/$t/findings"
  fi
done
exit $status
