// KVMI costs against floors measured in the same run (issue 4, "Must show"):
//   raw unix-socket ping-pong (the floor a KVMI round trip cannot beat) vs GET_VERSION;
//   memcpy of 4 KiB vs READ_PHYSICAL of 4 KiB, one at a time and pipelined.
// It starts the real glassbox (a long-running scenario guest, --introspect listen:unix:...)
// itself, prints one table of medians over several runs, and the ratios.
//
//   build/release/bench/kvmi_bench [--runs N]
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "glassbox/client/session.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kPage = 4096;

// The real VMM with the io_loop guest, which runs far longer than the benchmark.
struct Vmm : glassbox::bench::BackgroundVmm {
  explicit Vmm(const fs::path& socket)
      : BackgroundVmm({"run", "--kernel", std::string(GLASSBOX_SCENARIO_DIR) + "/io_loop.elf",
                       "--cmdline", "1000000000", "--cpus", "2", "--memory", "128M", "--introspect",
                       "listen:unix:" + socket.string()},
                      socket) {}
};

// Seconds per round trip over a unix socketpair, shaped like GET_VERSION: an 8-byte request,
// a 32-byte reply.
double raw_round_trip(int iterations) {
  return glassbox::bench::raw_round_trip_us(iterations, 8, 32) / 1e6;
}

double get_version_round_trip(glassbox::client::Session& s, int iterations) {
  auto start = Clock::now();
  for (int i = 0; i < iterations; ++i) {
    if (!s.get_version()) return 0;
  }
  return std::chrono::duration<double>(Clock::now() - start).count() / iterations;
}

// Bytes per second reading distinct 4 KiB pages of a 64 MiB window, one request at a time.
double read_one_at_a_time(glassbox::client::Session& s, int pages) {
  std::vector<std::byte> buf(kPage);
  auto start = Clock::now();
  for (int i = 0; i < pages; ++i) {
    std::uint64_t gpa = 0x1000000 + (static_cast<std::uint64_t>(i) % 16384) * kPage;
    if (!s.read_physical(gpa, buf)) return 0;
    benchmark::DoNotOptimize(buf.data());
  }
  return static_cast<double>(pages) * kPage /
         std::chrono::duration<double>(Clock::now() - start).count();
}

double read_pipelined(glassbox::client::Session& s, int pages, std::size_t window) {
  std::deque<glassbox::client::PendingReply> in_flight;
  int submitted = 0;
  auto start = Clock::now();
  while (submitted < pages || !in_flight.empty()) {
    while (submitted < pages && in_flight.size() < window) {
      std::uint64_t gpa = 0x1000000 + (static_cast<std::uint64_t>(submitted) % 16384) * kPage;
      auto p = s.submit_read_physical(gpa, kPage);
      if (!p) return 0;
      in_flight.push_back(std::move(*p));
      ++submitted;
    }
    auto reply = in_flight.front().wait();
    in_flight.pop_front();
    if (!reply || reply->data().size() != kPage) return 0;
    benchmark::DoNotOptimize(reply->payload.data());
  }
  return static_cast<double>(pages) * kPage /
         std::chrono::duration<double>(Clock::now() - start).count();
}

// memcpy of 4 KiB pages. `span` bytes of source are walked page by page: 4 KiB keeps it in L1
// (the best case), 64 MiB makes every page come from memory, as guest pages a tool reads do.
double memcpy_rate(std::size_t span, int pages) {
  std::vector<std::byte> src(span, std::byte{1});
  std::vector<std::byte> dst(kPage);
  const std::size_t slots = span / kPage;
  auto start = Clock::now();
  for (int i = 0; i < pages; ++i) {
    std::memcpy(dst.data(), src.data() + (static_cast<std::size_t>(i) % slots) * kPage, kPage);
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  return static_cast<double>(pages) * kPage /
         std::chrono::duration<double>(Clock::now() - start).count();
}

using glassbox::bench::median;

double median_of(int runs, const std::function<double()>& once) {
  std::vector<double> values;
  for (int i = 0; i < runs; ++i) values.push_back(once());
  return median(values);
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = glassbox::bench::runs_argument(argc, argv);
  char dir_template[] = "/tmp/glassbox-bench-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return 1;
  const fs::path dir = dir_template;
  const fs::path socket = dir / "kvmi.sock";

  constexpr int kRoundTrips = 20000;
  constexpr int kPagesSingle = 5000;
  constexpr int kPagesPipelined = 20000;
  constexpr std::size_t kWindow = 64;

  int status = 0;
  {
    Vmm vmm(socket);
    auto session = glassbox::client::Session::connect(socket);
    if (!session) {
      std::fprintf(stderr, "kvmi_bench: cannot connect to glassbox: %s\n",
                   session.error().message.c_str());
      status = 1;
    } else {
      auto& s = **session;
      // Warm-up: first touches of guest pages and of the code paths are not what is measured.
      get_version_round_trip(s, 1000);
      read_pipelined(s, 16384, kWindow);

      const double raw = median_of(runs, [] { return raw_round_trip(kRoundTrips); });
      const double version =
          median_of(runs, [&] { return get_version_round_trip(s, kRoundTrips); });
      const double single = median_of(runs, [&] { return read_one_at_a_time(s, kPagesSingle); });
      const double piped =
          median_of(runs, [&] { return read_pipelined(s, kPagesPipelined, kWindow); });
      const double copy_hot = median_of(runs, [] { return memcpy_rate(kPage, 1 << 20); });
      const double copy_cold = median_of(runs, [] { return memcpy_rate(64 << 20, 1 << 18); });

      std::printf("kvmi_bench: median of %d runs each\n\n", runs);
      std::printf("%-44s %14s\n", "measurement", "value");
      std::printf("%-44s %11.2f us\n", "raw unix-socket ping-pong (8 B / 32 B)", raw * 1e6);
      std::printf("%-44s %11.2f us\n", "KVMI GET_VERSION round trip", version * 1e6);
      std::printf("%-44s %9.1f MB/s\n", "READ_PHYSICAL 4 KiB, one at a time", single / 1e6);
      std::printf("%-44s %9.1f MB/s\n", "READ_PHYSICAL 4 KiB, 64 in flight", piped / 1e6);
      std::printf("%-44s %9.1f MB/s\n", "memcpy 4 KiB (hot, L1)", copy_hot / 1e6);
      std::printf("%-44s %9.1f MB/s\n", "memcpy 4 KiB pages of 64 MiB (cold)", copy_cold / 1e6);
      std::printf("\nratios\n");
      std::printf("%-44s %10.2fx  (target <= 1.5x)\n", "GET_VERSION / raw ping-pong",
                  version / raw);
      std::printf("%-44s %10.2fx\n", "pipelined / one-at-a-time READ_PHYSICAL", piped / single);
      std::printf("%-44s %10.4f\n", "one-at-a-time READ_PHYSICAL / memcpy (cold)",
                  single / copy_cold);
      std::printf("%-44s %10.4f\n", "pipelined READ_PHYSICAL / memcpy (cold)", piped / copy_cold);
      std::printf("%-44s %10.4f\n", "pipelined READ_PHYSICAL / memcpy (hot)", piped / copy_hot);
      s.close();
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return status;
}
