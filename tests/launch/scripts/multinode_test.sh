#!/usr/bin/env bash
# Training on a simulated cluster of two nodes (launch/scripts/local_cluster.sh: network
# namespaces on one bridge, mpirun launching across them):
#
#   multinode_test.sh RESNET CASE
#
#   same_weights   2 nodes x 1 and x 2 ranks train to the same weights as the same ranks on one
#                  host; the log names the nodes and ranks per node, and 1 thread per rank
#   checkpoint     a checkpoint written across the nodes resumes byte-exact across them (its
#                  reader broadcasts between the nodes), and at another node count
#   node_killed    every rank of node 2 killed mid-step: the job ends non-zero within 60 s,
#                  naming a rank, with no process left on either node
#   link_down      node 2's link taken down mid-step: the stall watchdog names what it waited
#                  on, and the job ends non-zero within 60 s, no process left on either node
#
# Exit 77 (skip) with one line where this is not root or the kernel refuses namespaces.
set -uo pipefail

resnet=$1
case_name=$2
here=$(cd "$(dirname "$0")" && pwd)
cluster="$here/../../../launch/scripts/local_cluster.sh"
export RESNET_CLUSTER_NAME=rnt$$
export RESNET_CLUSTER_DIR=/tmp/resnet-cluster-test-$$
work=$(mktemp -d /tmp/rn_multinode_XXXXXX)
trap 'bash "$cluster" down > /dev/null 2>&1; rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*"
  exit 1
}

if ! up=$(bash "$cluster" up 2 2>&1); then
  case "$up" in
    *"needs root"* | *"refuses"*)
      echo "SKIP: $up"
      exit 77
      ;;
  esac
  fail "cluster up: $up"
fi

cat > "$work/config.yaml" << EOF
run_dir: $work/unused
model: {name: resnet20, in_channels: 1, num_classes: 10}
data: {kind: synthetic, synthetic_size: 256, height: 12, width: 12, batch_size: 16,
       test_batch_size: 64, test_limit: 64, workers: 1}
optim: {lr: 0.05, momentum: 0.9, weight_decay: 1.0e-4, schedule: cosine}
train: {epochs: 3, seed: 5, log_every: 2}
checkpoint: {every_epochs: 1, keep_last: 50}
EOF

ckpt() { printf '%s/%s/checkpoints/ckpt-s%010d.h5' "$work" "$1" "$2"; }

# on_cluster NP RUN ARGS...: resnet train on the two nodes, NP ranks spread over them.
on_cluster() {
  local np=$1 run=$2
  shift 2
  bash "$cluster" mpirun -np "$np" --map-by node "$resnet" train --config "$work/config.yaml" \
    --set "run_dir=$work/$run" "$@"
}

# on_host NP RUN ARGS...: the same on this host alone.
on_host() {
  local np=$1 run=$2
  shift 2
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np "$np" \
    "$resnet" train --config "$work/config.yaml" --set "run_dir=$work/$run" "$@"
}

same_tensors() {
  h5diff "$1" "$2" /model /model > /dev/null && h5diff "$1" "$2" /optimizer /optimizer > /dev/null
}

nothing_left() {
  [ -z "$(bash "$cluster" pids 1)" ] && [ -z "$(bash "$cluster" pids 2)" ]
}

# start_then NP SECONDS: starts a long run on the cluster in the background, waits SECONDS.
start_long_run() {
  on_cluster 4 long --set train.epochs=1000 --set checkpoint.every_epochs=0 \
    --set data.synthetic_size=4096 --set distributed.timeout_s=10 > "$work/long.out" 2>&1 &
  job=$!
  for _ in $(seq 1 300); do
    grep -q "step 4/" "$work/long.out" 2> /dev/null && return 0
    sleep 0.1
  done
  cat "$work/long.out"
  fail "the long run did not start training within 30 s"
}

# wait_end SECONDS: waits for the background job; sets rc and took.
wait_end() {
  local t0=$SECONDS
  for _ in $(seq 1 $(($1 * 10))); do
    if ! kill -0 "$job" 2> /dev/null && nothing_left; then break; fi
    sleep 0.1
  done
  took=$((SECONDS - t0))
  if kill -0 "$job" 2> /dev/null || ! nothing_left; then
    echo "left on node 1: $(bash "$cluster" pids 1 | tr '\n' ' ') node 2: $(bash "$cluster" pids 2 | tr '\n' ' ')"
    cat "$work/long.out"
    fail "the job did not end within $1 s"
  fi
  wait "$job"
  rc=$?
}

case "$case_name" in
  same_weights)
    for per_node in 1 2; do
      np=$((2 * per_node))
      out=$(on_cluster "$np" "cluster$np" 2>&1) || fail "cluster run: $out"
      grep -q "data-parallel: $np ranks on 2 nodes ($per_node + $per_node ranks)" <<< "$out" ||
        fail "the log does not name 2 nodes of $per_node ranks: $(echo "$out" | grep data-parallel)"
      # mpirun binds each rank to a core: one thread each, whichever node it is on.
      grep -q "1 threads" <<< "$out" || fail "not 1 thread per rank: $(echo "$out" | grep backend)"
      host=$(on_host "$np" "host$np" 2>&1) || fail "host run: $host"
      same_tensors "$(ckpt "cluster$np" $((48 / np)))" "$(ckpt "host$np" $((48 / np)))" ||
        fail "$np ranks on 2 nodes and on one host trained to different weights"
      echo "ok: $np ranks on 2 nodes = $np ranks on one host (model and momentum)"
    done
    ;;
  checkpoint)
    # 4 ranks, 4 steps per epoch, 12 in all; step 6 is in the middle of epoch 2.
    on_cluster 4 a --set checkpoint.every_steps=3 > "$work/a.out" 2>&1 || fail "$(cat "$work/a.out")"
    out=$(on_cluster 4 b --resume "$(ckpt a 6)" 2>&1) || fail "resume on the cluster: $out"
    grep -q "resumed from $(ckpt a 6) at epoch 2, step 6" <<< "$out" || fail "no resume: $out"
    same_tensors "$(ckpt a 12)" "$(ckpt b 12)" || fail "the resumed run differs from the uninterrupted one"
    echo "ok: written and resumed across 2 nodes, byte-exact"
    # Another node count: the same checkpoint on 2 nodes x 1 rank, and on one host.
    out=$(on_cluster 2 c --resume "$(ckpt a 6)" 2>&1) || fail "2 nodes x 1 rank: $out"
    grep -q "resumed from" <<< "$out" || fail "no resume on 2 nodes x 1 rank: $out"
    [ -e "$(ckpt c 24)" ] || fail "2 nodes x 1 rank did not finish (no checkpoint at step 24)"
    out=$(on_host 2 d --resume "$(ckpt a 6)" 2>&1) || fail "one host: $out"
    same_tensors "$(ckpt c 24)" "$(ckpt d 24)" ||
      fail "continued on 2 nodes x 1 rank and on 1 host x 2 ranks: different weights"
    echo "ok: read at another node count (2 x 1 and 1 x 2 agree)"
    ;;
  node_killed)
    start_long_run
    kill -9 $(bash "$cluster" pids 2 | while read -r p; do
      [ "$(cat /proc/"$p"/comm 2> /dev/null)" = resnet ] && echo "$p"
    done) || fail "no resnet process on node 2"
    wait_end 60
    [ "$rc" -ne 0 ] || fail "the job exited 0"
    grep -qE "rank [0-9]+ .*(exited on signal|killed)|process rank [0-9]+" "$work/long.out" ||
      fail "no line names a rank: $(tail -5 "$work/long.out")"
    echo "ok: node 2's ranks killed: the job ended with $rc after $took s; $(grep -m1 -E "rank [0-9]+" "$work/long.out" | grep -v info)"
    ;;
  link_down)
    start_long_run
    bash "$cluster" link 2 down
    wait_end 60
    [ "$rc" -ne 0 ] || fail "the job exited 0"
    grep -q "\[watchdog\] rank .* not complete after 10 s" "$work/long.out" ||
      fail "the watchdog said nothing: $(tail -5 "$work/long.out")"
    echo "ok: link down: the job ended with $rc after $took s; $(grep -m1 watchdog "$work/long.out")"
    ;;
  *)
    fail "unknown case '$case_name'"
    ;;
esac
