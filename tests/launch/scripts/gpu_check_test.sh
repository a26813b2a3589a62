#!/usr/bin/env bash
# The GPU check's mechanics, run where there may be no GPU: the steps' time limits fit one device
# run; a budget too small is refused before anything runs; a program that cannot load its
# libraries stops the check in one line before anything runs; the one-call run ends with its
# summary as the last line and leaves exactly the three files a device run brings back (of 8
# allowed); results.json accounts for every step, and a test stage whose tests all skipped is
# not ok.
#   gpu_check_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
script=$src/launch/scripts/gpu_check.sh
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

plan=$(bash "$script" plan)
echo "$plan"
sum=$(sed -n "s/^gpu_check all: .* limits sum to \([0-9]*\) s.*/\1/p" <<< "$plan")
[ -n "$sum" ] || fail "plan names no limits"
[ "$sum" -le 480 ] || fail "the limits sum to $sum s, over 480 s"

# A budget too small for the limits is refused before anything runs.
if RESNET_GPU_CHECK_S=100 OUT=$tmp/out0 bash "$script" all > /dev/null 2> "$tmp/err"; then
  fail "a run whose limits exceed its budget ran"
fi
grep -q "over the budget of 100 s" "$tmp/err" || fail "no budget error: $(cat "$tmp/err")"

# A program that cannot load a library: one line, exit 3, nothing run, nothing left in OUT.
mkdir -p "$tmp/bin" "$tmp/lib"
echo 'int gone(void) { return 0; }' > "$tmp/gone.c"
echo 'int gone(void); int main(void) { return gone(); }' > "$tmp/main.c"
gcc -shared -fPIC -o "$tmp/lib/libgone_for_gpu_check.so" "$tmp/gone.c"
gcc -o "$tmp/bin/core_tests" "$tmp/main.c" -L"$tmp/lib" -lgone_for_gpu_check
rm "$tmp/lib/libgone_for_gpu_check.so"
set +e
PATH="$tmp/bin:$build:$build/tests:$PATH" OUT=$tmp/out1 bash "$script" all > "$tmp/stop" 2>&1
rc=$?
set -e
cat "$tmp/stop"
[ "$rc" = 3 ] || fail "a program that cannot load gave exit $rc, not 3"
[ "$(wc -l < "$tmp/stop")" = 1 ] || fail "the stop is not one line"
grep -qx "gpu_check: core_tests cannot load: libgone_for_gpu_check.so (nothing was run)" "$tmp/stop" ||
  fail "the stop does not name the program and library"
[ -z "$(ls -A "$tmp/out1" 2> /dev/null)" ] || fail "the stopped check left files"

has_gpu=0
command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1 && has_gpu=1
out=$tmp/out
set +e
OUT=$out RESNET_GPU_CHECK_BUILD=$build RESNET_TORCH_PEER=$src/tests/launch/scripts/no_peer.py \
  bash "$script" all > "$tmp/stdout" 2>&1
rc=$?
set -e
cat "$tmp/stdout"
files=$(cd "$out" && ls | sort | tr '\n' ' ')
[ "$files" = "logs.tar.gz results.json summary.txt " ] || fail "the run left '$files'"
last=$(tail -n 1 "$tmp/stdout")
[[ $last =~ ^gpu_check\ all:\ (ok|FAILED)$ ]] || fail "the last line is '$last'"
[ "$last" = "$(tail -n 1 "$out/summary.txt")" ] || fail "summary.txt differs from the output"
# The runtime libraries, or (a build without CUDA) that there are none.
grep -Eq "runtime: (.*cudnn .*nccl [0-9]|cuda built without CUDA, nccl built without NCCL)" \
  "$out/summary.txt" || fail "the summary gives no runtime versions"
/usr/bin/python3 - "$out/results.json" "$rc" "$has_gpu" <<'PY' || fail "results.json"
import json, sys
r = json.load(open(sys.argv[1])); rc, gpu = int(sys.argv[2]), sys.argv[3] == "1"
names = [s["name"] for s in r["steps"]]
assert len(names) == len(set(names)) and names[0] == "versions" and len(names) == 11, names
assert all(s["exit"] != "skipped" for s in r["steps"]), "a step was skipped within the budget"
assert r["ok"] == (rc == 0), (r["ok"], rc)
assert "nccl" in r["runtime"] and ("cudnn" in r["runtime"] or r["runtime"].get("cuda") == "built without CUDA"), r["runtime"]
tests = [s for s in r["steps"] if s["name"] in ("core_cuda", "launch_cuda", "distributed_nccl")]
# Every suite reported through its XML and listed what it runs, failing nothing.
assert len(tests) == 3 and all(s["gtest"] is not None and s["gtest"]["failed"] == 0 and s["listed"] > 0
                               for s in tests), tests
if not gpu:
    # Without a GPU the CUDA tests skip: that is no pass, and the summary says so.
    assert not r["ok"] and all(b["ours"] is None for b in r["bench"]), r["bench"]
    for s in tests:
        g = s["gtest"]
        assert g["skipped"] > 0 and g["passed"] + g["skipped"] == s["listed"], s
print("results.json ok:", names)
PY
if [ "$has_gpu" = 0 ]; then
  grep -q "core_cuda: exit 0, .*: [0-9]* of [0-9]* passed, 0 failed, [1-9][0-9]* skipped  <- not ok" "$out/summary.txt" ||
    fail "the summary does not call an all-skipped test stage not ok"
  grep -q "only CudaTrainTest.WithoutAGpuCudaIsOneClearError may skip" "$out/summary.txt" ||
    fail "the summary does not name the skip that is allowed"
fi
listing=$(tar -tzf "$out/logs.tar.gz")
grep -q "steps.tsv" <<< "$listing" || fail "logs.tar.gz holds no steps.tsv"
echo "gpu_check mechanics: ok"
