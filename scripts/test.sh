#!/usr/bin/env bash
# Runs every test: installs what is missing, builds the release, ASan+UBSan and TSan builds, and
# runs the unit and integration tests (real /dev/kvm, real guests) in each.
#   scripts/test.sh            all three builds, then 60 s of fuzzing
#   scripts/test.sh release    one build only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
presets=("$@")
if [ ${#presets[@]} -eq 0 ]; then presets=(release asan tsan); fi
jobs=$(nproc)
for preset in "${presets[@]}"; do
  echo "=== $preset: build"
  scripts/build.sh "$preset"
  echo "=== $preset: test"
  case "$preset" in
    asan) export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ;;
    tsan) export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 ;;
  esac
  ctest --preset "$preset" -j "$jobs"
done
# A full run also fuzzes the KVMI receiver and handshake for a bounded time (fuzz/README.md).
if [ ${#@} -eq 0 ]; then
  echo "=== fuzz: receiver and handshake, 60 s"
  scripts/fuzz.sh 60
fi
