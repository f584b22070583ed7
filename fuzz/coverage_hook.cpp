// Edge coverage for libFuzzer from GCC's -fsanitize-coverage=trace-pc.
//
// The project's C++23 cannot be compiled by the clang here (clang 14 with libstdc++ 12 has no
// std::expected), so -fsanitize=fuzzer is out. GCC instruments every basic block with a call to
// __sanitizer_cov_trace_pc(); libFuzzer 14 no longer consumes those calls (its own definition only
// prints "no longer supported" and exits; fuzz/CMakeLists.txt links a copy of the runtime where
// that definition is weak). This file turns the calls into what libFuzzer does consume: an inline
// 8-bit counter table, indexed AFL-style by (previous block, current block) so edges count, not
// just blocks. This file must itself be built without coverage instrumentation.
#include <cstddef>
#include <cstdint>

extern "C" void __sanitizer_cov_8bit_counters_init(std::uint8_t* start, std::uint8_t* stop);

namespace {

constexpr std::size_t kCounters = 1 << 16;  // edges hash into this many slots; collisions are rare
                                            // at the receiver's size and harmless otherwise
alignas(64) std::uint8_t counters[kCounters];
thread_local std::uintptr_t previous_block = 0;

// Registered before main(), as an instrumented module's constructor would do.
[[gnu::constructor]] void register_counters() {
  __sanitizer_cov_8bit_counters_init(counters, counters + kCounters);
}

}  // namespace

extern "C" [[gnu::no_sanitize_address]] void __sanitizer_cov_trace_pc() {
  auto pc = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
  std::uintptr_t block = (pc ^ (pc >> 16)) & (kCounters - 1);
  counters[block ^ previous_block]++;
  // Shifted so that A->B and B->A, and A->A and B->B, land in different slots.
  previous_block = block >> 1;
}

// GCC's trace-cmp also reports floating-point comparisons, which libFuzzer has no use for (it
// defines only the integer ones); without these the link fails.
extern "C" void __sanitizer_cov_trace_cmpf(float, float) {}
extern "C" void __sanitizer_cov_trace_cmpd(double, double) {}
