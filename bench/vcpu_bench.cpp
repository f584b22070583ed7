// KVMI vCPU command costs against floors measured in the same run (issue 5, "Must show"):
//   1. raw unix-socket ping-pong shaped like GET_REGISTERS (24-byte request, 488-byte reply);
//   2. bare kick latency: pthread_kill of a signal whose handler sets kvm_run.immediate_exit, to
//      KVM_RUN returning EINTR on a bare vCPU spinning in the guest (no glassbox machinery);
//   3. GET_REGISTERS on a vCPU waiting in an event (vCPU 1 paused, its PAUSE event unanswered),
//      as a ratio to (1);
//   4. GET_REGISTERS on a running vCPU (vCPU 1 spinning at CPL3 in the beacon), as a ratio to
//      (1) + (2); and on a halted one (vCPU 0, HLT in the in-kernel irqchip) for comparison;
//   5. stop the world with 2 vCPUs: pause_all() until both PAUSE events are in, then resume_all().
// It starts the real glassbox (the guest kernel in beacon mode, 2 vCPUs, --introspect
// listen:unix:...) itself. A run measures everything once, floors included (so that the host's
// load, which can change a lot between runs on a small shared host, hits both sides of a ratio
// alike); each figure is the median of per-call times within a run, and the median of that over
// the runs. Also shown: VM_GET_INFO (the KVMI stack without a vCPU), GET_REGISTERS on the halted
// vCPU 0, and where the time of a stop of the world goes.
//
//   build/release/bench/vcpu_bench [--runs N]
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "glassbox/client/session.h"
#include "kvm/host_probe.h"
#include "kvm/long_mode.h"
#include "kvm/system.h"

namespace fs = std::filesystem;
namespace kvmi = glassbox::kvmi;
using Clock = std::chrono::steady_clock;
using glassbox::client::Session;

namespace {

double us_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

using glassbox::bench::median;

// One figure per run; reported as the median over runs, with the spread of the runs.
struct Figure {
  std::vector<double> values;
  void add(double v) { values.push_back(v); }
  double median() const { return ::median(values); }
  double low() const {
    return values.empty() ? 0 : *std::min_element(values.begin(), values.end());
  }
  double high() const {
    return values.empty() ? 0 : *std::max_element(values.begin(), values.end());
  }
};

// ---- (1) raw socket floor -----------------------------------------------------------------------

constexpr std::size_t kRequestBytes = 24;  // MsgHdr + VcpuHdr + VcpuGetRegisters
constexpr std::size_t kReplyBytes = 488;   // MsgHdr + ErrorCode + VcpuGetRegistersReply

double raw_round_trip_us(int iterations) {
  return glassbox::bench::raw_round_trip_us(iterations, kRequestBytes, kReplyBytes);
}

// ---- (2) bare kick floor ------------------------------------------------------------------------

thread_local kvm_run* t_kick_run = nullptr;
void on_kick(int) {
  if (t_kick_run != nullptr) t_kick_run->immediate_exit = 1;
}

// Median µs from pthread_kill to KVM_RUN returning EINTR on a bare vCPU spinning in the guest:
// at CPL0 `jmp .`, or at CPL3 `pause; jmp` (the beacon's kind of loop) with user page tables and
// DPL3 segments.
double bare_kick_us(const glassbox::kvm::System& system, int kicks, bool cpl3) {
  namespace lm = glassbox::kvm::long_mode;
  auto vm = system.create_vm();
  if (!vm) return 0;
  constexpr std::size_t kSize = 2 << 20;
  void* mem = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  std::span<std::uint8_t> ram(static_cast<std::uint8_t*>(mem), kSize);
  (void)vm->set_user_memory_region(0, 0, kSize, mem);
  const auto cr3 = lm::write_identity_page_tables(ram, 0x8000, 1ULL << 30);
  lm::write_gdt(ram.subspan(0x6000, 24));
  const std::uint8_t spin_cpl0[] = {0xeb, 0xfe};              // jmp .
  const std::uint8_t spin_cpl3[] = {0xf3, 0x90, 0xeb, 0xfc};  // 1: pause; jmp 1b
  if (cpl3) {
    std::memcpy(ram.data() + 0x1000, spin_cpl3, sizeof spin_cpl3);
    // Every present paging entry gets U/S; the GDT's code and data descriptors get DPL3.
    const std::size_t tables = lm::identity_page_tables_size(1ULL << 30);
    for (std::size_t off = 0; off < tables; off += 8) {
      std::uint64_t e;
      std::memcpy(&e, ram.data() + 0x8000 + off, 8);
      if (e & 1) e |= 4;
      std::memcpy(ram.data() + 0x8000 + off, &e, 8);
    }
    const std::uint64_t gdt[3] = {0, 0x00affb000000ffffULL, 0x00cff3000000ffffULL};
    std::memcpy(ram.data() + 0x6000, gdt, sizeof gdt);
  } else {
    std::memcpy(ram.data() + 0x1000, spin_cpl0, sizeof spin_cpl0);
  }
  auto vcpu = vm->create_vcpu(0);
  if (!vcpu) return 0;
  (void)vcpu->set_cpuid(*system.supported_cpuid());
  auto sregs = vcpu->get_sregs();
  lm::set_long_mode_sregs(*sregs, 0x6000, cr3);
  if (cpl3) {
    for (kvm_segment* s :
         {&sregs->cs, &sregs->ds, &sregs->es, &sregs->fs, &sregs->gs, &sregs->ss}) {
      s->dpl = 3;
      s->selector |= 3;
    }
  }
  (void)vcpu->set_sregs(*sregs);
  kvm_regs regs{};
  regs.rip = 0x1000;
  regs.rsp = 0x5000;
  regs.rflags = 2;
  (void)vcpu->set_regs(regs);

  std::atomic<bool> stop{false};
  std::atomic<int> entering{0}, interrupted{0}, other_exits{0};
  std::atomic<Clock::rep> returned_at{0};
  std::atomic<pthread_t> handle{};
  std::thread runner([&] {
    t_kick_run = vcpu->run();
    handle.store(pthread_self());
    while (!stop.load()) {
      entering.fetch_add(1);
      auto outcome = vcpu->run_once();
      const auto now = Clock::now();
      vcpu->run()->immediate_exit = 0;
      if (!outcome) {
        interrupted.fetch_add(1);  // do not leave the kicker waiting
        interrupted.notify_one();
        break;
      }
      if (*outcome == glassbox::kvm::Vcpu::RunOutcome::kInterrupted) {
        returned_at.store(now.time_since_epoch().count());
        interrupted.fetch_add(1);
        interrupted.notify_one();
      } else {
        other_exits.fetch_add(1);
      }
    }
    t_kick_run = nullptr;
  });
  while (entering.load() == 0) std::this_thread::yield();

  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(kicks));
  constexpr int kWarmUp = 50;
  for (int i = 0; i < kWarmUp + kicks; ++i) {
    // Let the vCPU thread get back into the guest before the next kick.
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    const int before = interrupted.load();
    const auto start = Clock::now();
    pthread_kill(handle.load(), SIGRTMIN);
    // Blocking, not spinning: on a 2-CPU host a spinning waiter would take the CPU the vCPU
    // thread may need. The time taken is the vCPU thread's, so this wake-up is not measured.
    interrupted.wait(before);
    const Clock::time_point back{Clock::duration{returned_at.load()}};
    if (i >= kWarmUp)
      samples.push_back(std::chrono::duration<double, std::micro>(back - start).count());
  }
  stop.store(true);
  pthread_kill(handle.load(), SIGRTMIN);
  runner.join();
  munmap(mem, kSize);
  if (other_exits.load() > 0)
    std::fprintf(stderr, "vcpu_bench: the bare %s vCPU also exited %d times (not EINTR)\n",
                 cpl3 ? "CPL3" : "CPL0", other_exits.load());
  return median(samples);
}

// ---- the real VMM -------------------------------------------------------------------------------

// glassbox with the guest kernel in beacon mode.
struct Vmm : glassbox::bench::BackgroundVmm {
  explicit Vmm(const fs::path& socket)
      : BackgroundVmm({"run", "--kernel", GLASSBOX_GUEST_KERNEL, "--cpus", "2", "--cmdline",
                       "beacon", "--introspect", "listen:unix:" + socket.string()},
                      socket) {}
};

// Median µs per get_registers(vcpu); counts the replies that showed CPL3 in *user.
double get_registers_us(Session& s, std::uint16_t vcpu, int calls, int* user = nullptr,
                        std::vector<double>* all = nullptr) {
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(calls));
  for (int i = 0; i < calls; ++i) {
    const auto start = Clock::now();
    auto regs = s.get_registers(vcpu);
    samples.push_back(us_since(start));
    if (!regs) {
      std::fprintf(stderr, "vcpu_bench: get_registers(%u): %s\n", vcpu,
                   regs.error().message.c_str());
      return 0;
    }
    if (user != nullptr && (regs->sregs.cs.selector & 3) == 3) ++*user;
  }
  if (all != nullptr) all->insert(all->end(), samples.begin(), samples.end());
  return median(samples);
}

// Pauses `vcpu` and returns its PAUSE event (other events are answered CONTINUE).
std::optional<glassbox::client::ReceivedEvent> pause_one(Session& s, std::uint16_t vcpu) {
  if (!s.pause_vcpu(vcpu, true)) return std::nullopt;
  for (;;) {
    auto event = s.wait_event(std::chrono::seconds(10));
    if (!event) return std::nullopt;
    if (event->event_id() == static_cast<std::uint8_t>(kvmi::EventId::PauseVcpu) &&
        event->vcpu() == vcpu)
      return std::move(*event);
    (void)s.reply_event(*event, kvmi::EventAction::Continue);
  }
}

// Where a stop of the world goes: pause_vcpu(0, wait) and pause_vcpu(1, wait) one after the
// other, then both PAUSE events. Medians of each part, in µs.
struct StopParts {
  double pause0 = 0, pause1 = 0, events = 0;
};
StopParts stop_parts_us(Session& s, int stops) {
  std::vector<double> p0, p1, ev;
  for (int i = 0; i < stops; ++i) {
    auto start = Clock::now();
    if (!s.pause_vcpu(0, true)) return {};
    p0.push_back(us_since(start));
    start = Clock::now();
    if (!s.pause_vcpu(1, true)) return {};
    p1.push_back(us_since(start));
    start = Clock::now();
    std::vector<glassbox::client::ReceivedEvent> paused;
    while (paused.size() < 2) {
      auto event = s.wait_event(std::chrono::seconds(10));
      if (!event) return {};
      paused.push_back(std::move(*event));
    }
    ev.push_back(us_since(start));
    (void)s.resume_all(paused);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return {median(p0), median(p1), median(ev)};
}

// Median µs of pause_all() over `stops` stops, each followed by resume_all() and a short rest.
double stop_the_world_us(Session& s, int stops) {
  std::vector<double> samples;
  for (int i = 0; i < stops; ++i) {
    const auto start = Clock::now();
    auto paused = s.pause_all();
    const double us = us_since(start);
    if (!paused || paused->size() != 2) {
      std::fprintf(stderr, "vcpu_bench: pause_all failed\n");
      return 0;
    }
    samples.push_back(us);
    (void)s.resume_all(*paused);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return median(samples);
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = glassbox::bench::runs_argument(argc, argv);
  auto system = glassbox::kvm::System::open();
  if (!system) {
    std::fprintf(stderr, "%s\n", system.error().message().c_str());
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_kick;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  sigaction(SIGRTMIN, &sa, nullptr);

  char dir_template[] = "/tmp/glassbox-vcpu-bench-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return 1;
  const fs::path dir = dir_template;
  const fs::path socket = dir / "kvmi.sock";

  constexpr int kRoundTrips = 5000;
  constexpr int kKicks = 2000;
  constexpr int kCalls = 2000;
  constexpr int kStops = 100;

  auto quirks = glassbox::kvm::probe_host(*system);
  std::printf("vcpu_bench: host %s, %u CPUs, median of %d runs\n\n",
              quirks ? glassbox::kvm::to_string(quirks->backend) : "unknown",
              std::thread::hardware_concurrency(), runs);

  Figure raw, kick0, kick3, waiting, running, halted, world, version;
  StopParts parts;
  int user_replies = 0;
  std::vector<double> running_all;
  int status = 0;
  {
    Vmm vmm(socket);
    auto session = Session::connect(socket);
    if (!session) {
      std::fprintf(stderr, "vcpu_bench: cannot connect to glassbox: %s\n",
                   session.error().message.c_str());
      status = 1;
    } else {
      auto& s = **session;
      // vCPU 0 finishes its workers in ~0.2 s and halts; vCPU 1 spins in the beacon.
      std::this_thread::sleep_for(std::chrono::milliseconds(1000));
      get_registers_us(s, 1, 200);  // warm-up
      // Every run measures the floors and the VMM one after the other, so that a change in the
      // host's load between runs hits both sides of a ratio alike. The beacon spins (one host
      // CPU busy) throughout, the floors included.
      for (int r = 0; r < runs; ++r) {
        raw.add(raw_round_trip_us(kRoundTrips));
        kick3.add(bare_kick_us(*system, kKicks, true));
        kick0.add(bare_kick_us(*system, kKicks, false));
        auto event = pause_one(s, 1);
        if (!event) {
          status = 1;
          break;
        }
        waiting.add(get_registers_us(s, 1, kCalls));
        (void)s.reply_event(*event, kvmi::EventAction::Continue);
        running.add(get_registers_us(s, 1, kCalls, &user_replies, &running_all));
        halted.add(get_registers_us(s, 0, kCalls));
        std::vector<double> samples;
        for (int i = 0; i < kCalls; ++i) {
          const auto start = Clock::now();
          (void)s.get_vcpu_count();
          samples.push_back(us_since(start));
        }
        version.add(median(samples));
        world.add(stop_the_world_us(s, kStops));
      }
      parts = stop_parts_us(s, kStops);
      s.close();
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (status != 0) return status;

  const double kick = kick3.median();  // the beacon spins at CPL3, so that is its floor
  auto row = [](const char* name, const Figure& f) {
    std::printf("%-58s %9.2f  %9.2f..%-9.2f\n", name, f.median(), f.low(), f.high());
  };
  std::printf("%-58s %9s  %20s\n", "measurement", "µs", "run medians min..max");
  row("(1) raw unix-socket ping-pong, 24 B / 488 B (floor)", raw);
  row("(2) bare kick, pthread_kill -> KVM_RUN EINTR, CPL3 spin", kick3);
  row("    bare kick, CPL0 `jmp .`", kick0);
  row("(3) GET_REGISTERS, vCPU 1 waiting in a PAUSE event", waiting);
  row("(4) GET_REGISTERS, vCPU 1 running (beacon, CPL3)", running);
  row("    GET_REGISTERS, vCPU 0 halted (HLT, in-kernel irqchip)", halted);
  row("(5) stop the world, 2 vCPUs (pause_all until both events)", world);
  row("    VM_GET_INFO (a VM command, no vCPU involved)", version);
  std::printf(
      "\n(5) broken down (one run of %d stops, medians): pause_vcpu(0, wait) %.2f µs, "
      "pause_vcpu(1, wait) %.2f µs, both PAUSE events after that %.2f µs\n",
      kStops, parts.pause0, parts.pause1, parts.events);
  std::printf("(4) replies showing vCPU 1 at CPL3: %d of %d\n", user_replies, runs * kCalls);
  std::sort(running_all.begin(), running_all.end());
  if (!running_all.empty()) {
    auto at = [&](double q) {
      return running_all[static_cast<std::size_t>(q * (running_all.size() - 1))];
    };
    std::printf("(4) all calls: p10 %.1f, p25 %.1f, p50 %.1f, p75 %.1f, p90 %.1f, p99 %.1f µs\n",
                at(0.1), at(0.25), at(0.5), at(0.75), at(0.9), at(0.99));
  }
  std::printf("\nratios\n");
  std::printf("%-58s %9.2fx  (target <= 2x)\n", "(3) waiting GET_REGISTERS / (1)",
              waiting.median() / raw.median());
  std::printf("%-58s %9.2fx  (target <= 1.5x)\n", "(4) running GET_REGISTERS / ((1) + (2))",
              running.median() / (raw.median() + kick));
  std::printf("%-58s %9.2fx\n", "    halted GET_REGISTERS / ((1) + (2))",
              halted.median() / (raw.median() + kick));
  std::printf("%-58s %9.2fx\n", "(5) stop the world / (1)", world.median() / raw.median());
  std::printf("%-58s %9.2fx\n", "    VM_GET_INFO / (1) (KVMI stack, no vCPU hop)",
              version.median() / raw.median());
  std::printf("%-58s %9.2fx\n", "    (3) waiting GET_REGISTERS / VM_GET_INFO",
              waiting.median() / version.median());
  return 0;
}
