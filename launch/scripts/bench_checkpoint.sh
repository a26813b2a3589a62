#!/usr/bin/env bash
# Checkpoint throughput against dd: writes and reads a ResNet-50 checkpoint (weights + momentum)
# on 1 and 2 ranks, alternating with dd of the same bytes to and from the same folder (REPEAT
# rounds, default 5); then how long training pauses for a checkpoint.
#   bash launch/scripts/bench_checkpoint.sh [DIR] [MODEL]
# DIR (default /tmp/resnet-checkpoint-bench) should sit on the disk checkpoints go to. As root
# the page cache is dropped before every read (cold reads, from the disk); otherwise reads are
# warm and the table says so.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
resnet=${RESNET_BIN:-$root/build/resnet}
dir=${1:-/tmp/resnet-checkpoint-bench}
model=${2:-resnet50}
repeat=${REPEAT:-5}  # rounds
mkdir -p "$dir"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
drop=""
[ "$(id -u)" -eq 0 ] && drop="--drop-caches"

drop_caches() { [ -n "$drop" ] && sync && echo 3 > /proc/sys/vm/drop_caches || true; }
field() { sed -E "s/.*\"$1\": \"?([^,\"}]*).*/\1/" <<< "$2"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
med() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

# dd copies the bytes of a checkpoint of the same network (random weights, zero momentum, as
# `ckpt bench` writes) from memory: this disk stores runs of zeros faster than other bytes, so
# /dev/zero would flatter dd.
src=$(mktemp -p /dev/shm resnet-bench-XXXXXX.h5 2> /dev/null || mktemp)
trap 'rm -f "$src"' EXIT
"$resnet" ckpt init --model "$model" --seed 1 --output "$src" > /dev/null

# dd writes and reads of `bytes` in the folder, 3 of each as `ckpt bench --repeat 3` does: the
# median MB/s of each.
dd_rates() {
  local bytes=$1 mib=$(( $1 / 1048576 )) t0 t1 w=() r=()
  bytes=$(( mib * 1048576 ))  # whole MiB of the source
  for _ in 1 2 3; do
    rm -f "$dir/dd.bin"; sync  # a new file, as each checkpoint is
    t0=$(now); dd if="$src" of="$dir/dd.bin" bs=1M count="$mib" conv=fsync status=none; t1=$(now)
    w+=("$(calc "$bytes / 1000000 / ($t1 - $t0)")")
    drop_caches; sleep 1  # as `ckpt bench` does: the disk finishes with the writes first
    t0=$(now); dd if="$dir/dd.bin" of=/dev/null bs=1M status=none; t1=$(now)
    r+=("$(calc "$bytes / 1000000 / ($t1 - $t0)")")
  done
  rm -f "$dir/dd.bin"
  echo "$(med "${w[@]}") $(med "${r[@]}")"
}

# Rounds of (checkpoint write + read, median of 3; dd write + read), each round's ratio taken
# in the same minute, since this disk's speed drifts; the table gives the medians over rounds
# and the range of the rounds' ratios.
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f-%.0f%%", lo, hi }'; }
printf '%-6s %8s %12s %10s %8s %10s %12s %10s %8s %10s %6s\n' ranks MB write_MB/s dd_MB/s ratio \
  range read_MB/s dd_MB/s ratio range cache
for np in 1 2; do
  W=() DW=() RW=() R=() DR=() RR=()
  for _ in $(seq "$repeat"); do
    json=$(mpirun --oversubscribe -np "$np" "$resnet" ckpt bench --model "$model" --dir "$dir" \
      --repeat 3 $drop --json)
    bytes=$(field bytes "$json")
    read -r dw dr < <(dd_rates "$bytes")
    w=$(field write_mb_s "$json") r=$(field read_mb_s "$json")
    W+=("$w") DW+=("$dw") RW+=("$(calc "100 * $w / $dw")")
    R+=("$r") DR+=("$dr") RR+=("$(calc "100 * $r / $dr")")
  done
  printf '%-6s %8.1f %12.1f %10.1f %7.0f%% %10s %12.1f %10.1f %7.0f%% %10s %6s\n' "$np" \
    "$(calc "$bytes / 1000000")" "$(med "${W[@]}")" "$(med "${DW[@]}")" "$(med "${RW[@]}")" \
    "$(range "${RW[@]}")" "$(med "${R[@]}")" "$(med "${DR[@]}")" "$(med "${RR[@]}")" \
    "$(range "${RR[@]}")" "$(field read_cache "$json")"
done

# The pause in training: a few steps of the model on small synthetic images, a checkpoint every
# 2 steps; the trainer logs how long each write held training up.
cfg="$dir/pause.yaml"
cat > "$cfg" << EOF
run_dir: $dir/pause-run
model: {name: $model, in_channels: 3, num_classes: 1000}
data: {kind: synthetic, synthetic_size: 64, height: 32, width: 32, batch_size: 4, test_batch_size: 16, test_limit: 16, workers: 1}
train: {epochs: 1, max_steps: 6, seed: 1, threads: 1, log_every: 100}
checkpoint: {every_epochs: 0, every_steps: 2, keep_last: 1}
EOF
for np in 1 2; do
  rm -rf "$dir/pause-run"
  pauses=$(mpirun --oversubscribe -np "$np" "$resnet" train --config "$cfg" 2>&1 |
    sed -nE 's/.*written in ([0-9.]+) s.*/\1/p' | tr '\n' ' ')
  echo "training pause per checkpoint on $np rank(s), s: $pauses"
done
rm -rf "$dir/pause-run" "$cfg"
