#!/usr/bin/env bash
# An ensemble trained in one job against its members trained one after another on the same ranks:
#   bash launch/scripts/bench_ensemble.sh [CONFIG] [RANKS] [--set key=value ...]
# CONFIG (default configs/fashion_mnist_ensemble.yaml) is trained once as an ensemble
# (`mpirun -np RANKS resnet train`, RANKS default 2) and once member by member, each member's own
# config.yaml trained data-parallel on all RANKS ranks; both runs end with the same scoring of
# the members and the ensemble (1 and 10 crops). Prints both tables and the wall times.
# Runs go to /tmp/resnet-ensemble-bench (BENCH_DIR); the machine should be otherwise idle.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
resnet=${RESNET_BIN:-$root/build/resnet}
config=${1:-$root/configs/fashion_mnist_ensemble.yaml}
ranks=${2:-2}
shift $(( $# > 2 ? 2 : $# ))
dir=${BENCH_DIR:-/tmp/resnet-ensemble-bench}
rm -rf "$dir" && mkdir -p "$dir"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run() { mpirun --oversubscribe -np "$ranks" "$resnet" "$@"; }
now() { date +%s.%N; }
took() { awk "BEGIN { printf \"%.1f\", $2 - $1 }"; }

echo "== ensemble in one job: $ranks rank(s)"
t0=$(now)
run train --config "$config" --set run_dir="$dir/together" "$@" > "$dir/together.out" \
  2> "$dir/together.err" || { tail -5 "$dir/together.err"; exit 1; }
together=$(took "$t0" "$(now)")
grep -v '^final:' "$dir/together.out"

echo "== the members one after another, each on all $ranks rank(s)"
t0=$(now)
for member_config in "$dir"/together/*/config.yaml; do
  m=$(basename "$(dirname "$member_config")")
  t1=$(now)
  run train --config "$member_config" --set run_dir="$dir/apart/$m" \
    > "$dir/apart_$m.out" 2> "$dir/apart_$m.err" || { tail -5 "$dir/apart_$m.err"; exit 1; }
  echo "$m: $(took "$t1" "$(now)") s"
done
run eval --config "$config" --set run_dir="$dir/apart" "$@" --crops 1,10 > "$dir/apart.out" \
  2> "$dir/apart.err" || { tail -5 "$dir/apart.err"; exit 1; }
apart=$(took "$t0" "$(now)")
grep -v '^eval:' "$dir/apart.out"

echo "== wall time (training and the final scoring): in one job $together s, one after another $apart s"
