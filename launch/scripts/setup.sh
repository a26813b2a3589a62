#!/usr/bin/env bash
# Set-up on a fresh Debian 12 machine: installs what is missing, builds, then runs the default
# job (`run`) or the test suite (`test`).
#   bash launch/scripts/setup.sh run     # install, build, train ResNet-20 on Fashion-MNIST
#   bash launch/scripts/setup.sh test    # install, build, run every test (CTest, MPI included)
#   bash launch/scripts/setup.sh build   # install and build only
#   bash launch/scripts/setup.sh hardening  # install clang too; the short sanitizer and fuzz run
#                                           # of CI (launch/scripts/sanitize.sh, fuzz.sh)
#   bash launch/scripts/setup.sh format  # install clang-format 14; fail naming any file that
#                                        # drifts from .clang-format (launch/scripts/format.sh)
#   bash launch/scripts/setup.sh experiments [NAME...]  # the papers' experiments (configs/
#                                           # experiments), trained (resumable) and plotted
set -euo pipefail

mode=${1:-run}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${RESNET_BUILD_DIR:-$root/build}
jobs=$(nproc)

build_packages=(build-essential cmake pkg-config zlib1g-dev libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools libboost-log-dev libdnnl-dev libyaml-cpp-dev
  libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev libgtest-dev libonnx-dev libprotobuf-dev
  dataset-fashion-mnist)
# The experiments' runner reads YAML and plots with matplotlib.
experiment_packages=(python3-yaml python3-matplotlib)
# The tests compare against PyTorch and torchvision (on PIL) and read checkpoints with h5py; one
# runs a tiny experiment; the multi-node and Slurm tests build a simulated cluster of network
# namespaces (iproute2) and a single-host Slurm (launch/scripts/local_cluster.sh). The ONNX
# tests check exported files with onnx's checker and run them in OpenCV's DNN module.
test_packages=(python3-torch python3-torchvision python3-h5py python3-numpy python3-pil
  python3-onnx python3-opencv
  "${experiment_packages[@]}" iproute2 slurmctld slurmd slurm-client munge)
# libFuzzer and its runtimes (clang 14), with the OpenMP runtime clang builds need.
fuzz_packages=(clang-14 libclang-rt-14-dev libfuzzer-14-dev libomp-14-dev)
format_packages=(clang-format-14 git)

install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

do_build() {
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release
  cmake --build "$build" -j "$jobs"
}

case "$mode" in
  build)
    install_missing "${build_packages[@]}"
    do_build
    ;;
  run)
    install_missing "${build_packages[@]}"
    do_build
    cd "$root"
    # Two ranks, one core each (train.threads 0 divides the cores among the ranks).
    mpirun_flags=(--oversubscribe)
    [ "$(id -u)" -eq 0 ] && mpirun_flags+=(--allow-run-as-root)
    mpirun "${mpirun_flags[@]}" -np 2 "$build/resnet" train \
      --config configs/fashion_mnist_resnet20.yaml "${@:2}"
    ;;
  test)
    install_missing "${build_packages[@]}" "${test_packages[@]}"
    do_build
    cd "$build"
    ctest --output-on-failure --timeout 900 -j "$jobs"
    ;;
  experiments)
    install_missing "${build_packages[@]}" "${experiment_packages[@]}"
    do_build
    cd "$root"
    names=("${@:2}")
    [ ${#names[@]} -eq 0 ] && names=(degradation shortcuts activations cardinality)
    for name in "${names[@]}"; do
      /usr/bin/python3 launch/scripts/experiment.py run "configs/experiments/$name.yaml" \
        --resnet "$build/resnet"
      /usr/bin/python3 launch/scripts/experiment.py plot "configs/experiments/$name.yaml"
    done
    ;;
  format)
    install_missing "${format_packages[@]}"
    bash "$root/launch/scripts/format.sh"
    ;;
  hardening)
    install_missing "${build_packages[@]}" "${fuzz_packages[@]}"
    bash "$root/launch/scripts/sanitize.sh" quick
    RESNET_FUZZ_QUICK=1 RESNET_FUZZ_PARALLEL=$jobs bash "$root/launch/scripts/fuzz.sh" 15
    ;;
  *)
    echo "usage: $0 run|test|build|format|experiments|hardening" >&2
    exit 2
    ;;
esac
