#!/usr/bin/env bash
# Behaviour kept across a change: two builds of `resnet` run the same jobs, and their checkpoints
# are compared with h5diff (weights, momentum, config, trainer state; the wall time aside), and
# their error lines for bad inputs compared as text.
#   bash launch/scripts/compare_builds.sh OLD_RESNET NEW_RESNET [checkpoints|errors|all]
# checkpoints: the default job with train.max_steps=200 on 1 and 2 ranks, a 2-rank resume
# (100 steps, then --resume auto to 200) and the 3-member ensemble (2 ranks, 2 epochs on
# 2048/512 samples), each run by both builds in the same run_dir. errors: 24 bad inputs.
# Ends non-zero when anything differs. Run as root (mpirun --allow-run-as-root).
set -uo pipefail
old=$(realpath "$1") new=$(realpath "$2") what=${3:-all}
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
work=$(mktemp -d /tmp/compare_builds.XXXXXX)
trap 'rm -rf "$work"' EXIT
mpi=(mpirun --allow-run-as-root --oversubscribe)
default=configs/fashion_mnist_resnet20.yaml
status=0

run_jobs() {  # run_jobs BIN: every job into $work/run
  local bin=$1 o=$work/run
  mkdir -p "$o"
  "${mpi[@]}" -np 1 "$bin" train --config $default --set run_dir=$o/np1 \
    --set train.max_steps=200 > "$o/np1.log" 2>&1 || echo "compare: $bin np1 failed"
  "${mpi[@]}" -np 2 "$bin" train --config $default --set run_dir=$o/np2 \
    --set train.max_steps=200 > "$o/np2.log" 2>&1 || echo "compare: $bin np2 failed"
  "${mpi[@]}" -np 2 "$bin" train --config $default --set run_dir=$o/resume \
    --set train.max_steps=100 > "$o/resume1.log" 2>&1 || echo "compare: $bin resume1 failed"
  "${mpi[@]}" -np 2 "$bin" train --config $default --set run_dir=$o/resume \
    --set train.max_steps=200 --resume auto > "$o/resume2.log" 2>&1 ||
    echo "compare: $bin resume2 failed"
  "${mpi[@]}" -np 2 "$bin" train --config configs/fashion_mnist_ensemble.yaml \
    --set run_dir=$o/ensemble --set data.train_limit=2048 --set data.test_limit=512 \
    --set train.epochs=2 > "$o/ensemble.log" 2>&1 || echo "compare: $bin ensemble failed"
}

compare_checkpoints() {
  run_jobs "$old" && mv "$work/run" "$work/old"
  run_jobs "$new" && mv "$work/run" "$work/new"
  local n=0 bad=0
  for f in $(cd "$work/old" && find . -name '*.h5' | sort); do
    n=$((n + 1))
    local d=""
    [ -f "$work/new/$f" ] || d=" missing"
    for g in /model /optimizer /config; do
      h5diff "$work/old/$f" "$work/new/$f" $g $g > /dev/null 2>&1 || d="$d $g"
    done
    h5diff --exclude-path /train_time_s "$work/old/$f" "$work/new/$f" /trainer /trainer \
      > /dev/null 2>&1 || d="$d /trainer"
    if [ -n "$d" ]; then echo "compare: $f differs:$d"; bad=$((bad + 1)); fi
  done
  for l in np1 np2 resume2 ensemble; do
    echo "compare: $l: $(grep -h 'final:' "$work/old/$l.log" | cut -c1-90)"
    echo "compare: $l: $(grep -h 'final:' "$work/new/$l.log" | cut -c1-90)"
  done
  echo "compare: checkpoints compared: $n, differing: $bad"
  [ "$n" -gt 0 ] && [ "$bad" -eq 0 ] || status=1
}

compare_errors() {
  printf 'model:\n  name: resnet20\n  bogus: 1\n' > "$work/bad1.yaml"
  printf 'data: [1, 2\n' > "$work/bad2.yaml"
  echo "not hdf5" > "$work/bad.h5"
  local w=$work
  local cases=(
    "train --config /nonexistent.yaml"
    "train --config $w/bad1.yaml"
    "train --config $w/bad2.yaml"
    "train --config $default --set train.device=tpu"
    "train --config $default --set train.precision=fp8"
    "train --config $default --set optim.lr=-1"
    "train --config $default --set model.name=resnet21"
    "train --config $default --set data.kind=mnist"
    "train --config $default --set optim.schedule=linear"
    "train --config $default --set data.augment.recipe=torchvision"
    "train --config $default --set ensemble.split=random"
    "train --config $default --set nokey=1"
    "train --config $default --set data.root=/nonexistent --set run_dir=$w/errrun"
    "train --config $default --resume $w/bad.h5 --set run_dir=$w/errrun"
    "eval --config $default --checkpoint $w/bad.h5"
    "eval --config $default --checkpoint /nonexistent.h5 --crops 3"
    "infer --checkpoint $w/bad.h5 --input $w/bad.h5 --output $w/o.h5"
    "ckpt inspect $w/bad.h5"
    "bench --model resnet20 --device gpu"
    "bench --model resnet20 --batch 0"
    "info --model nosuch"
    "data pack --from /nonexistent --to $w/x.h5"
    "train --bogus-flag 1"
    "frobnicate")
  local same=0 differ=0
  for c in "${cases[@]}"; do
    local a b
    a=$("$old" $c 2>&1 | grep -v '^\[20' | head -1; echo "rc=${PIPESTATUS[0]}")
    b=$("$new" $c 2>&1 | grep -v '^\[20' | head -1; echo "rc=${PIPESTATUS[0]}")
    if [ "$a" = "$b" ]; then
      same=$((same + 1))
    else
      differ=$((differ + 1))
      printf 'compare: resnet %s\n  old: %s\n  new: %s\n' "$c" "$a" "$b"
    fi
  done
  echo "compare: error lines: $same the same, $differ different"
  [ "$differ" -eq 0 ] || status=1
}

case "$what" in
  checkpoints) compare_checkpoints ;;
  errors) compare_errors ;;
  all) compare_checkpoints; compare_errors ;;
  *) echo "usage: $0 OLD_RESNET NEW_RESNET [checkpoints|errors|all]" >&2; exit 2 ;;
esac
exit $status
