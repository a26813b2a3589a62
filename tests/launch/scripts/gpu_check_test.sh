#!/usr/bin/env bash
# The GPU check's mechanics, run where there may be no GPU: each stage's time limits fit one
# device run, each stage ends with its summary as the last line and leaves exactly the three
# files a device run brings back (of 8 allowed), and results.json accounts for every step.
#   gpu_check_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
script=$src/launch/scripts/gpu_check.sh
fail() { echo "FAIL: $*" >&2; exit 1; }

plan=$(bash "$script" plan)
echo "$plan"
for stage in tests bench; do
  sum=$(sed -n "s/^stage $stage: .* limits sum to \([0-9]*\) s.*/\1/p" <<< "$plan")
  [ -n "$sum" ] || fail "plan names no limits for stage $stage"
  [ "$sum" -le 480 ] || fail "stage $stage's limits sum to $sum s, over 480 s"
done

# A budget too small for the limits is refused before anything runs.
if RESNET_GPU_STAGE_S=100 OUT=$(mktemp -d) bash "$script" tests > /dev/null 2> /tmp/gpu_check_err.$$; then
  fail "a stage whose limits exceed its budget ran"
fi
grep -q "over its budget of 100 s" /tmp/gpu_check_err.$$ || fail "no budget error: $(cat /tmp/gpu_check_err.$$)"
rm -f /tmp/gpu_check_err.$$

has_gpu=0
command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1 && has_gpu=1
for stage in tests bench; do
  out=$(mktemp -d)
  set +e
  OUT=$out RESNET_GPU_CHECK_BUILD=$build RESNET_TORCH_PEER=$src/tests/launch/scripts/no_peer.py \
    bash "$script" "$stage" > "$out.stdout" 2>&1
  rc=$?
  set -e
  cat "$out.stdout"
  files=$(cd "$out" && ls | sort | tr '\n' ' ')
  [ "$files" = "logs.tar.gz results.json summary.txt " ] || fail "stage $stage left '$files'"
  last=$(tail -n 1 "$out.stdout")
  [[ $last =~ ^gpu_check\ $stage:\ (ok|FAILED)$ ]] || fail "stage $stage's last line is '$last'"
  [ "$last" = "$(tail -n 1 "$out/summary.txt")" ] || fail "summary.txt differs from the output"
  /usr/bin/python3 - "$out/results.json" "$stage" "$rc" "$has_gpu" <<'PY' || fail "results.json of $stage"
import json, sys
r = json.load(open(sys.argv[1])); stage, rc, gpu = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
assert r["stage"] == stage, r
names = [s["name"] for s in r["steps"]]
assert len(names) == len(set(names)) and len(names) >= 3, names
assert all(s["exit"] != "skipped" for s in r["steps"]), "a step was skipped within the budget"
assert r["ok"] == (rc == 0), (r["ok"], rc)
if stage == "tests":
    # Every suite reported through its XML, failing nothing (the CUDA tests skip without a GPU).
    assert all(s["gtest"] is not None and s["gtest"]["failed"] == 0 for s in r["steps"]), r["steps"]
elif not gpu:
    # Without a GPU our benchmark ends in its one-line error and the summary says FAILED.
    assert not r["ok"] and all(b["ours"] is None for b in r["bench"]), r["bench"]
print(stage, "results.json ok:", names)
PY
  listing=$(tar -tzf "$out/logs.tar.gz")
  grep -q "steps.tsv" <<< "$listing" || fail "logs.tar.gz holds no steps.tsv"
  rm -rf "$out" "$out.stdout"
done
echo "gpu_check mechanics: ok"
