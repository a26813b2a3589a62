#!/usr/bin/env bash
# Training under a single-host Slurm (launch/scripts/local_cluster.sh slurm up):
#
#   slurm_test.sh RESNET CASE
#
#   srun      `srun -n 2 resnet train` trains: 2 ranks on 1 node, 1 thread each on 2 CPUs
#             (found from the CPU set and the node's ranks, whatever started them)
#   scancel   `scancel` of a batch job: the ranks checkpoint and exit within Slurm's KillWait
#   signal    an `sbatch --signal=USR1@55 --time=1` job stops with a checkpoint when the signal
#             comes; the same job submitted again resumes from it and finishes
#
# Exit 77 (skip) with one line where Slurm cannot run here (not root, not installed, daemons that
# do not start, or no job step).
set -uo pipefail

resnet=$1
case_name=$2
here=$(cd "$(dirname "$0")" && pwd)
cluster="$here/../../../launch/scripts/local_cluster.sh"
export RESNET_CLUSTER_NAME=rns$$
export RESNET_CLUSTER_DIR=/tmp/resnet-slurm-test-$$
work=$(mktemp -d /tmp/rn_slurm_XXXXXX)
trap 'bash "$cluster" down > /dev/null 2>&1; rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*"
  exit 1
}

# Where Slurm's daemons cannot start (not root, not installed, a container that refuses them),
# the tests skip with the reason, as the GPU tests do without a GPU.
if ! up=$(timeout 60 bash "$cluster" slurm up 2>&1); then
  echo "SKIP: Slurm does not start here: $(echo "${up:-slurm up timed out}" | tr '\n' ' ')"
  exit 77
fi
export SLURM_CONF=$RESNET_CLUSTER_DIR/slurm/slurm.conf
cpus=$(nproc)
# Slurm itself must run a job step here (some containers cannot); resnet is not involved yet.
if ! probe=$(timeout 30 srun -n 1 true 2>&1); then
  echo "SKIP: Slurm cannot run a job step here: ${probe:-srun timed out}; $(tail -1 "$RESNET_CLUSTER_DIR/slurm/log/slurmd.log" 2> /dev/null)"
  exit 77
fi

cat > "$work/config.yaml" << EOF
run_dir: $work/run
model: {name: resnet20, in_channels: 1, num_classes: 10}
data: {kind: synthetic, synthetic_size: 256, height: 12, width: 12, batch_size: 16,
       test_batch_size: 64, test_limit: 64, workers: 1}
optim: {lr: 0.05, schedule: constant}
train: {epochs: 3, seed: 5, log_every: 4}
checkpoint: {every_epochs: 1, keep_last: 3}
EOF

# A batch job of 2 tasks training for long enough to be stopped (EPOCHS epochs).
write_job() {
  cat > "$work/job.sh" << EOF
#!/bin/bash
#SBATCH -n 2
#SBATCH -o $work/job-%j.out
srun "$resnet" train --config "$work/config.yaml" --set train.epochs=$1 \\
  --set data.synthetic_size=4096 --resume auto
EOF
}

# wait_job JOBID SECONDS: until the job leaves the queue; sets took.
wait_job() {
  local t0=$SECONDS
  for _ in $(seq 1 $(($2 * 5))); do
    timeout 5 squeue -h -j "$1" 2> /dev/null | grep -q . || break
    sleep 0.2
  done
  took=$((SECONDS - t0))
  timeout 5 squeue -h -j "$1" 2> /dev/null | grep -q . && fail "job $1 still queued or running after $2 s"
  true
}

# wait_training JOBID: until the job's output shows a training step.
wait_training() {
  for _ in $(seq 1 300); do
    grep -q "step [0-9]*/" "$work/job-$1.out" 2> /dev/null && return 0
    sleep 0.1
  done
  fail "job $1 did not start training within 30 s: $(cat "$work/job-$1.out" 2> /dev/null)"
}

case "$case_name" in
  srun)
    out=$(timeout 120 srun -n 2 "$resnet" train --config "$work/config.yaml" 2>&1) ||
      fail "srun -n 2 resnet train: $out"
    grep -q "data-parallel: 2 ranks on 1 node" <<< "$out" || fail "not 2 ranks on 1 node: $out"
    want=$((cpus / 2 > 0 ? cpus / 2 : 1))
    grep -q "oneDNN [0-9.]*, $want threads" <<< "$out" ||
      fail "not $want thread(s) per rank on $cpus CPUs: $(echo "$out" | grep backend)"
    grep -q "^final: resnet20 after 3 epoch(s)" <<< "$out" || fail "no final line: $out"
    echo "ok: srun -n 2: 2 ranks on 1 node, $want thread(s) each, trained"
    ;;
  scancel)
    write_job 1000
    jid=$(timeout 30 sbatch --parsable "$work/job.sh") || fail "sbatch failed"
    wait_training "$jid"
    timeout 10 scancel "$jid"
    killwait=$(timeout 10 scontrol show config | awk '/^KillWait/ {print $3}')
    wait_job "$jid" "$killwait"
    grep -q "stop signal: checkpoint written after step" "$work/job-$jid.out" ||
      fail "no checkpoint on scancel: $(tail -5 "$work/job-$jid.out")"
    ls "$work/run/checkpoints/"*.h5 > /dev/null 2>&1 || fail "no checkpoint file"
    echo "ok: scancel: checkpointed and gone after $took s (KillWait $killwait s)"
    ;;
  signal)
    write_job 1000
    jid=$(timeout 30 sbatch --parsable --time=1 --signal=USR1@55 "$work/job.sh") ||
      fail "sbatch failed"
    wait_job "$jid" 90
    grep -q "stop signal: checkpoint written after step" "$work/job-$jid.out" ||
      fail "no checkpoint on the signal: $(tail -5 "$work/job-$jid.out")"
    stopped=$(grep -o "after step [0-9]*" "$work/job-$jid.out" | head -1 | grep -o "[0-9]*")
    echo "ok: --signal=USR1@55: stopped with a checkpoint at step $stopped after $took s"
    # The same job again: it resumes where the first stopped and trains to the end (a shorter
    # run: the config's epochs lowered so that it ends soon after the step it resumes from).
    epochs=$((stopped / 128 + 2))
    write_job "$epochs"
    jid2=$(timeout 30 sbatch --parsable "$work/job.sh") || fail "second sbatch failed"
    wait_job "$jid2" 120
    grep -q "resumed from $work/run/checkpoints/ckpt-s$(printf %010d "$stopped").h5" \
      "$work/job-$jid2.out" || fail "the second job did not resume: $(head -5 "$work/job-$jid2.out")"
    grep -q "^final: resnet20 after $epochs epoch(s)" "$work/job-$jid2.out" ||
      fail "the second job did not finish: $(tail -3 "$work/job-$jid2.out")"
    echo "ok: the resubmitted job resumed from step $stopped and finished $epochs epochs"
    ;;
  *)
    fail "unknown case '$case_name'"
    ;;
esac
