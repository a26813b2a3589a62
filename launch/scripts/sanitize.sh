#!/usr/bin/env bash
# The test suite under sanitizers (GCC):
#   bash launch/scripts/sanitize.sh address   # every test under AddressSanitizer + UBSan
#   bash launch/scripts/sanitize.sh thread    # ThreadSanitizer over the io tests (the loader,
#                                             # its workers, checkpoint reads) and the MPI tests
#                                             # (gradient bucketer, watchdogs) on 1, 2, 4 ranks
#   bash launch/scripts/sanitize.sh quick     # CI: the io tests under ASan + UBSan
#   bash launch/scripts/sanitize.sh all       # address, then thread
# Builds in build-asan / build-tsan beside build (RESNET_SANITIZE_ROOT moves them). Any report
# fails the run: ASan and UBSan stop the program at the first finding, TSan exits with status 66.
# The few suppressions are in launch/scripts/sanitize/, each with its reason.
set -euo pipefail

mode=${1:-all}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${RESNET_SANITIZE_ROOT:-$root}
supp=$root/launch/scripts/sanitize
jobs=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader

configure() {  # build dir, sanitizers
  mkdir -p "$1"
  cmake -S "$root" -B "$1" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRESNET_CUDA=OFF \
    -DRESNET_SANITIZE="$2" > "$1/configure.log" || { cat "$1/configure.log"; exit 1; }
}

asan_env() {
  # fast_unwind_on_malloc=0: full stacks, so that lsan.supp can match Open MPI's allocations.
  export ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0:halt_on_error=1:\
strict_string_checks=1:check_initialization_order=1"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
}

run_address() {
  local build=$out/build-asan
  configure "$build" address,undefined
  cmake --build "$build" -j "$jobs"
  asan_env
  # Sanitized code runs 2-3 times slower: tests without a time limit of their own get 1800 s.
  (cd "$build" && ctest --output-on-failure -j "$jobs" --timeout 1800)
  echo "sanitize: address,undefined: every test passed"
}

run_quick() {
  local build=$out/build-asan
  configure "$build" address,undefined
  cmake --build "$build" -j "$jobs" --target io_tests
  asan_env
  "$build/tests/io_tests" --gtest_brief=1
  echo "sanitize: address,undefined: io_tests passed"
}

run_thread() {
  local build=$out/build-tsan
  configure "$build" thread
  cmake --build "$build" -j "$jobs" --target io_tests distributed_tests
  export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$supp/tsan.supp"
  # One OpenMP thread: GCC's libgomp is not instrumented, so TSan cannot see its barriers and
  # would report every parallel loop; the threads under test are the project's own.
  OMP_NUM_THREADS=1 "$build/tests/io_tests" --gtest_brief=1
  for np in 1 2 4; do
    OMP_NUM_THREADS=1 mpirun --oversubscribe -np "$np" "$build/tests/distributed_tests" \
      --gtest_brief=1
  done
  echo "sanitize: thread: the loader, bucketer and watchdog tests passed"
}

case "$mode" in
  address) run_address ;;
  thread) run_thread ;;
  quick) run_quick ;;
  all) run_address && run_thread ;;
  *) echo "usage: $0 address|thread|quick|all" >&2; exit 2 ;;
esac
