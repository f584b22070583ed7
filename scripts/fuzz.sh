#!/usr/bin/env bash
# Builds the fuzz targets (GCC + ASan/UBSan + libFuzzer's engine, see fuzz/README.md) in
# build/fuzz and runs each for SECONDS (default 60) from the committed seed corpus.
# Exit status: 0 when no target crashed, hung, leaked or timed out.
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${GLASSBOX_FUZZ_BUILD_DIR:-$root/build/fuzz}"

cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DGLASSBOX_SANITIZE=address,undefined \
  -DGLASSBOX_BUILD_BENCH=OFF \
  -DGLASSBOX_FUZZ=ON >/dev/null
cmake --build "$build" --target receiver_fuzz

# New inputs the fuzzer finds go to a scratch corpus, so the committed seeds stay reviewable;
# crashes land in $build/fuzz-artifacts.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/fuzz-artifacts"
cp "$root"/fuzz/corpus/receiver/* "$work/"

# -timeout: one input running longer than 10 s is a hang; -rss_limit_mb bounds memory;
# -max_len covers a handshake plus a few dozen messages; leaks are on by default under ASan.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
"$build/fuzz/receiver_fuzz" \
  -max_total_time="$seconds" \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -max_len=65536 \
  -print_final_stats=1 \
  -artifact_prefix="$build/fuzz-artifacts/" \
  "$work"
echo "fuzz.sh: receiver_fuzz ran ${seconds}s without a finding"
