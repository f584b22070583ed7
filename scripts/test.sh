#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the release, ASan+UBSan and TSan builds, and
# runs the unit and integration tests (real /dev/kvm, real guests) in each.
#   scripts/test.sh                  all three builds, then 60 s of fuzzing
#   scripts/test.sh release [asan]   those builds only
#
# The builds always happen here. The tests need /dev/kvm: without a usable one they run in the
# KVM lab (scripts/lab.sh, one lab boot for all suites); GLASSBOX_LAB=1 forces the lab,
# GLASSBOX_LAB=0 forbids it. GLASSBOX_TEST_TIMEOUT bounds the lab run (seconds, default 3600).
#
# The release and ASan+UBSan builds run every test. The TSan build runs the unit tests and the
# introspection and concurrency tests (ctest label "concurrency": the KVMI server's threads, vCPU
# jobs, events, pauses and unhooks; tests/CMakeLists.txt), and builds only what those need: under
# the lab's instruction emulation the whole suite three times does not fit CI's time.
# GLASSBOX_TSAN_ALL=1 builds and runs all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/kvm_place.sh
presets=("$@")
if [ ${#presets[@]} -eq 0 ]; then presets=(release asan tsan); fi
for preset in "${presets[@]}"; do
  case "$preset" in
    release | asan | tsan) ;;
    *)
      echo "test.sh: unknown build '$preset' (release, asan or tsan)" >&2
      exit 2
      ;;
  esac
done

# Runs the tests of one build where this script runs, with its timing.
run_suite() {
  local preset=$1 started=$SECONDS status=0
  echo "=== $preset: test"
  case "$preset" in
    release) ;;
    asan) export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ;;
    tsan) export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ;;
  esac
  local select=()
  if [ "$preset" = tsan ] && [ -z "${GLASSBOX_TSAN_ALL-}" ]; then select=(-L 'unit|concurrency'); fi
  ctest --preset "$preset" -j "$(nproc)" "${select[@]}" || status=$?
  echo "=== $preset: tests took $((SECONDS - started)) s (status $status)"
  return "$status"
}

run_suites() {
  local status=0 preset
  for preset in "$@"; do run_suite "$preset" || status=1; done
  return "$status"
}

if [ -n "${GLASSBOX_IN_LAB-}" ]; then
  run_suites "${presets[@]}"
  exit
fi

scripts/setup.sh
place=$(kvm_place test.sh)
for preset in "${presets[@]}"; do
  echo "=== $preset: build"
  started=$SECONDS
  if [ "$preset" = tsan ] && [ -z "${GLASSBOX_TSAN_ALL-}" ]; then
    scripts/build.sh tsan concurrency_tests
  else
    scripts/build.sh "$preset"
  fi
  echo "=== $preset: build took $((SECONDS - started)) s"
done

status=0
# A full run also fuzzes the KVMI receiver and handshake for a bounded time (fuzz/README.md).
# The fuzz target needs no KVM: in the lab case it builds and runs here while the lab runs the
# suites (the lab's emulation uses one core), and its log follows theirs.
fuzz_pid=
fuzz_log=
if [ $# -eq 0 ] && [ "$place" = lab ]; then
  fuzz_log=$(mktemp)
  scripts/fuzz.sh 60 >"$fuzz_log" 2>&1 &
  fuzz_pid=$!
fi
if [ "$place" = lab ]; then
  echo "=== no usable /dev/kvm here: the tests run in the KVM lab (scripts/lab.sh, QEMU with nested SVM)"
  started=$SECONDS
  scripts/lab.sh --timeout "${GLASSBOX_TEST_TIMEOUT:-3600}" scripts/test.sh "${presets[@]}" || status=$?
  echo "=== lab: boot and all suites took $((SECONDS - started)) s (status $status)"
else
  run_suites "${presets[@]}" || status=$?
fi
if [ $# -eq 0 ]; then
  echo "=== fuzz: receiver and handshake, 60 s"
  if [ -n "$fuzz_pid" ]; then
    fuzz_status=0
    wait "$fuzz_pid" || fuzz_status=$?
    tail -n 40 "$fuzz_log"
    rm -f "$fuzz_log"
    [ "$fuzz_status" -eq 0 ] || status=$fuzz_status
  else
    scripts/fuzz.sh 60 || status=$?
  fi
fi
exit "$status"
