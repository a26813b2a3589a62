#!/usr/bin/env bash
# A simulated cluster on this machine, for multi-node tests and measurements (run as root).
#
#   local_cluster.sh up N                  N "nodes": network namespaces <name>-n1 .. <name>-nN,
#                                          each with its own eth0 (10.77.0.K/24) on one bridge
#                                          (in namespace <name>-hub) and nothing else
#   local_cluster.sh mpirun ARGS...        mpirun from node 1 across the nodes: a hostfile of
#                                          the nodes (RESNET_CLUSTER_SLOTS per node, default 2),
#                                          this script as the launch agent instead of ssh, TCP on
#                                          the cluster's subnet only
#   local_cluster.sh exec K CMD...         CMD on node K (its namespace and host name)
#   local_cluster.sh link K down|up        takes node K's link down or up
#   local_cluster.sh shape RATE [DELAY]    every node's link at RATE (tc tbf: 1gbit, 10gbit),
#                                          with DELAY one way (tc netem: 5us, 50us; kernels
#                                          without sch_netem refuse it); `shape off` removes it
#   local_cluster.sh pids K                the processes running on node K
#   local_cluster.sh down                  kills every process on the nodes, removes the
#                                          namespaces and the state folder
#   local_cluster.sh slurm up|down         a single-host Slurm (slurmctld, slurmd, munged) with
#                                          every file under the state folder; `up` waits until
#                                          the node is idle. Export SLURM_CONF as `slurm env`
#                                          prints it.
#   local_cluster.sh status
#
# State lives in RESNET_CLUSTER_DIR (default /tmp/resnet-cluster-<name>); RESNET_CLUSTER_NAME
# (default rnc) prefixes the namespaces, so clusters of different names coexist. Nodes get host
# names node1 .. nodeN (a UTS namespace per process tree): Open MPI's shared-memory transport
# names its files by host, and two "nodes" with one name would collide in /dev/shm.
# A failure in `up` tears down what it built; `down` is safe to repeat.
set -euo pipefail

name=${RESNET_CLUSTER_NAME:-rnc}
state=${RESNET_CLUSTER_DIR:-/tmp/resnet-cluster-$name}
subnet=10.77.0
hub=$name-hub

die() {
  echo "local_cluster: $*" >&2
  exit 1
}

nodes() { cat "$state/nodes" 2>/dev/null || echo 0; }
ns_of() { echo "$name-n$1"; }

# The kernel must allow network namespaces and veth pairs; say so in one line where it does not.
check_kernel() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
  command -v ip > /dev/null || die "needs iproute2 (ip)"
  local probe=$name-probe$$
  ip netns add "$probe" 2> /dev/null || die "the kernel refuses network namespaces here"
  if ! ip -n "$probe" link add probe0 type veth peer name probe1 2> /dev/null; then
    ip netns del "$probe"
    die "the kernel refuses veth pairs here"
  fi
  ip netns del "$probe"
}

up() {
  local n=$1
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 2 ] && [ "$n" -le 200 ] || die "up N: N must be 2..200"
  [ -e "$state/nodes" ] && die "a cluster '$name' is up already ($state); run down first"
  check_kernel
  mkdir -p "$state"
  echo 0 > "$state/nodes"
  trap 'echo "local_cluster: up failed; tearing down" >&2; down > /dev/null 2>&1 || true' ERR
  ip netns add "$hub"
  ip -n "$hub" link set lo up
  ip -n "$hub" link add br0 type bridge
  ip -n "$hub" link set br0 up
  local k
  for k in $(seq 1 "$n"); do
    local ns
    ns=$(ns_of "$k")
    ip netns add "$ns"
    echo "$k" > "$state/nodes"
    ip -n "$ns" link set lo up
    # eth0 in the node, p<k> on the hub's bridge.
    ip -n "$hub" link add "p$k" type veth peer name eth0 netns "$ns"
    ip -n "$hub" link set "p$k" master br0
    ip -n "$hub" link set "p$k" up
    ip -n "$ns" addr add "$subnet.$k/24" dev eth0
    ip -n "$ns" link set eth0 up
    # A TCP connection with data in flight to a node that is gone gives up after about 13 s
    # of retransmissions instead of the kernel's default 15 minutes (tcp_retries2 15): mpirun
    # and its daemons then notice a lost node and end the job (see distributed/README.md, "Several nodes, and Slurm").
    ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_retries2=5
  done
  write_files "$n"
  trap - ERR
  echo "local_cluster: $n nodes up ($subnet.1-$n, namespaces $(ns_of 1)..$(ns_of "$n"), state $state)"
}

write_files() {
  local n=$1 slots=${RESNET_CLUSTER_SLOTS:-2} k
  : > "$state/hostfile"
  for k in $(seq 1 "$n"); do echo "$subnet.$k slots=$slots" >> "$state/hostfile"; done
  # The launch agent, called by mpirun as `agent [-x] HOST COMMAND...` in place of ssh.
  cat > "$state/agent" << EOF
#!/bin/sh
while [ "\$#" -gt 0 ] && [ "\${1#-}" != "\$1" ]; do shift; done
host=\$1
shift
k=\${host##*.}
exec ip netns exec $name-n\$k unshare --uts sh -c "hostname node\$k; \$*"
EOF
  chmod +x "$state/agent"
}

run_mpirun() {
  [ "$(nodes)" -ge 2 ] || die "no cluster '$name' is up (local_cluster.sh up N)"
  local root_flags=()
  [ "$(id -u)" -eq 0 ] && root_flags=(--allow-run-as-root)
  # Open MPI's out-of-band channel keeps TCP keepalive probes on, so that a daemon whose link to
  # mpirun is gone notices within about 20 s and exits instead of waiting forever.
  exec_on 1 mpirun "${root_flags[@]}" --hostfile "$state/hostfile" \
    --mca plm_rsh_agent "$state/agent" \
    --mca oob_tcp_if_include "$subnet.0/24" --mca btl_tcp_if_include "$subnet.0/24" \
    --mca btl self,vader,tcp \
    --mca oob_tcp_keepalive_time 5 --mca oob_tcp_keepalive_intvl 5 \
    --mca oob_tcp_keepalive_probes 3 "$@"
}

exec_on() {
  local k=$1
  shift
  [ "$k" -ge 1 ] && [ "$k" -le "$(nodes)" ] || die "no node $k (the cluster has $(nodes))"
  local cmd
  printf -v cmd '%q ' "$@"
  exec ip netns exec "$(ns_of "$k")" unshare --uts sh -c "hostname node$k; exec $cmd"
}

link() {
  local k=$1 how=$2
  [ "$how" = down ] || [ "$how" = up ] || die "link K down|up"
  [ "$k" -ge 1 ] && [ "$k" -le "$(nodes)" ] || die "no node $k"
  ip -n "$(ns_of "$k")" link set eth0 "$how"
}

shape() {
  local rate=$1 delay=${2:-} k
  for k in $(seq 1 "$(nodes)"); do
    local ns
    ns=$(ns_of "$k")
    tc -n "$ns" qdisc del dev eth0 root 2> /dev/null || true
    [ "$rate" = off ] && continue
    if [ -n "$delay" ]; then
      # netem delays every packet by DELAY; tbf below it caps the rate at RATE.
      tc -n "$ns" qdisc add dev eth0 root handle 1: netem delay "$delay" limit 100000 2> /dev/null ||
        die "shape: this kernel has no netem (sch_netem): give RATE alone for tbf without delay"
      tc -n "$ns" qdisc add dev eth0 parent 1:1 handle 10: tbf rate "$rate" burst 4mb latency 200ms
    else
      tc -n "$ns" qdisc add dev eth0 root tbf rate "$rate" burst 4mb latency 200ms
    fi
  done
}

kill_node_processes() {
  local ns=$1 pids
  pids=$(ip netns pids "$ns" 2> /dev/null || true)
  [ -n "$pids" ] && kill -9 $pids 2> /dev/null || true
}

down() {
  [ -d "$state" ] || return 0
  [ -e "$state/slurm/pids" ] && slurm_down
  local n k
  n=$(nodes)
  for k in $(seq 1 "$n"); do
    kill_node_processes "$(ns_of "$k")"
    ip netns del "$(ns_of "$k")" 2> /dev/null || true
  done
  kill_node_processes "$hub"
  ip netns del "$hub" 2> /dev/null || true
  rm -rf "$state"
}

# --- Slurm on this host: slurmctld, slurmd and munged, each started by hand, stopped by pid.

slurm_up() {
  [ "$(id -u)" -eq 0 ] || die "slurm: needs root"
  for b in slurmctld slurmd munged srun sbatch scontrol sinfo; do
    command -v "$b" > /dev/null || die "slurm: $b is missing (apt-get install slurmctld slurmd slurm-client munge)"
  done
  local s=$state/slurm
  [ -e "$s/pids" ] && die "slurm is up already ($s)"
  mkdir -p "$s"/{state,spool,log,run}
  : > "$s/pids"
  trap 'echo "local_cluster: slurm up failed; stopping it" >&2; slurm_down > /dev/null 2>&1 || true' ERR
  local host cpus
  host=$(hostname -s)
  cpus=$(nproc)
  # Addresses are given, not looked up: a host whose name does not resolve (a fresh root
  # without /etc/hosts entries) still runs it. munge's socket is this Slurm's own.
  cat > "$s/slurm.conf" << EOF
ClusterName=resnet
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$s/munge-socket/munge.socket
CryptoType=crypto/munge
StateSaveLocation=$s/state
SlurmdSpoolDir=$s/spool
SlurmctldPidFile=$s/run/slurmctld.pid
SlurmdPidFile=$s/run/slurmd.pid
SlurmctldLogFile=$s/log/slurmctld.log
SlurmdLogFile=$s/log/slurmd.log
SlurmctldPort=${RESNET_SLURMCTLD_PORT:-6917}
SlurmdPort=${RESNET_SLURMD_PORT:-6918}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
KillWait=${RESNET_SLURM_KILLWAIT:-30}
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  # munge: its key and sockets under the state folder.
  mkdir -p "$s/munge"
  chown munge:munge "$s/munge" 2> /dev/null || true
  chmod 700 "$s/munge"
  dd if=/dev/urandom of="$s/munge/munge.key" bs=1024 count=1 status=none
  chown munge:munge "$s/munge/munge.key" 2> /dev/null || true
  chmod 400 "$s/munge/munge.key"
  # The socket's folder must be open to every user (munged checks); the key's is munge's alone.
  mkdir -p "$s/munge-socket"
  chown munge:munge "$s/munge-socket" 2> /dev/null || true
  chmod 755 "$s/munge-socket"
  local munge_user=()
  id munge > /dev/null 2>&1 && munge_user=(runuser -u munge --)
  "${munge_user[@]}" munged --key-file "$s/munge/munge.key" --pid-file "$s/munge/munged.pid" \
    --log-file "$s/munge/munged.log" --seed-file "$s/munge/munged.seed" \
    --socket "$s/munge-socket/munge.socket"
  wait_for_file "$s/munge/munged.pid" "munged"
  cat "$s/munge/munged.pid" >> "$s/pids"
  export SLURM_CONF=$s/slurm.conf
  slurmctld -f "$s/slurm.conf"
  wait_for_file "$s/run/slurmctld.pid" "slurmctld"
  cat "$s/run/slurmctld.pid" >> "$s/pids"
  slurmd -f "$s/slurm.conf"
  wait_for_file "$s/run/slurmd.pid" "slurmd"
  cat "$s/run/slurmd.pid" >> "$s/pids"
  local i
  for i in $(seq 1 100); do
    if timeout 5 sinfo -h -o %t 2> /dev/null | grep -q idle; then
      trap - ERR
      echo "local_cluster: slurm up (export SLURM_CONF=$s/slurm.conf)"
      return 0
    fi
    sleep 0.2
  done
  false # the node never became idle
}

wait_for_file() {
  local i
  for i in $(seq 1 100); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  die "slurm: $2 did not start (see $state/slurm/log, $state/slurm/munge)"
}

slurm_down() {
  local s=$state/slurm pid
  [ -e "$s/pids" ] || return 0
  export SLURM_CONF=$s/slurm.conf
  timeout 5 scancel --full --quiet --user root 2> /dev/null || true
  # Reverse order: slurmd, slurmctld, munged.
  for pid in $(tac "$s/pids"); do kill "$pid" 2> /dev/null || true; done
  for pid in $(tac "$s/pids"); do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2> /dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2> /dev/null || true
  done
  rm -rf "$s"
}

case "${1:-}" in
  up) up "${2:-}" ;;
  mpirun)
    shift
    run_mpirun "$@"
    ;;
  exec)
    [ $# -ge 3 ] || die "exec K CMD..."
    k=$2
    shift 2
    exec_on "$k" "$@"
    ;;
  link) link "${2:-0}" "${3:-}" ;;
  shape)
    [ $# -ge 2 ] && [ $# -le 3 ] || die "shape RATE [DELAY] | shape off"
    shape "$2" "${3:-}"
    ;;
  pids) ip netns pids "$(ns_of "${2:-0}")" ;;
  down) down ;;
  slurm)
    case "${2:-}" in
      up) slurm_up ;;
      down) slurm_down ;;
      env) echo "export SLURM_CONF=$state/slurm/slurm.conf" ;;
      *) die "slurm up|down|env" ;;
    esac
    ;;
  status)
    echo "cluster '$name': $(nodes) node(s), state $state"
    [ -e "$state/slurm/pids" ] && echo "slurm: up (SLURM_CONF=$state/slurm/slurm.conf)"
    true
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
