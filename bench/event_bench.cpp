// KVMI event round trips against floors measured in the same run (issue 6, "Must show"):
//   floors: a bare vCPU exiting on the same instruction (INT3, OUT) in a minimal KVM_RUN loop,
//           and a raw unix-socket exchange shaped like an event (568 bytes out, 24 back);
//   events: guest instruction → VMM → event to the tool (glassbox's client library) → reply →
//           guest re-entered → the same instruction again, for BREAKPOINT answered RETRY (the
//           INT3 re-executes at once: the pure event loop) and CONTINUE (the #BP goes to the
//           guest's handler first), HYPERCALL (the doorbell OUT), MSR (WRMSR of LSTAR, filter
//           exit) and PF (a store to a read-only slot) answered CONTINUE; each as a ratio to the
//           exit floor + socket floor (the OUT exit floor stands for the MSR and MMIO exits, which
//           cost the same here: notes/kvm-backends.md §4, §6);
//   throughput: breakpoint events per second with 1 and 2 vCPUs raising them at once.
// It starts the real glassbox with the event_loop scenario guest itself.
//
//   build/release/bench/event_bench [--runs N]
#include <linux/kvm.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "bare_vcpu.h"
#include "bench_support.h"
#include "glassbox/boot/boot_info.h"
#include "glassbox/client/session.h"
#include "kvm/host_probe.h"
#include "kvm/system.h"

namespace fs = std::filesystem;
namespace kvmi = glassbox::kvmi;
using Clock = std::chrono::steady_clock;
using glassbox::bench::median;
using glassbox::client::ReceivedEvent;
using glassbox::client::Session;

namespace {

constexpr std::size_t kEventBytes = 8 + 544;    // MsgHdr + kvmi_event (+ up to 24 specific)
constexpr std::size_t kReplyBytes = 8 + 8 + 8;  // MsgHdr + VcpuHdr + EventReply

// ---- floors ---------------------------------------------------------------------------------

// INT3; JMP back. Hardware KVM reports it as KVM_EXIT_DEBUG (with USE_SW_BP), KVM-PVM as an
// emulation failure with byte 0xCC; either way RIP is at the INT3 and the VMM steps past it.
double bare_int3_us(const glassbox::kvm::System& system, int exits) {
  static const std::uint8_t code[] = {0xcc, 0xeb, 0xfd};
  return glassbox::bench::bare_loop_us(
      system, code, exits, true, KVM_GUESTDBG_USE_SW_BP, [](glassbox::kvm::Vcpu& vcpu) {
        kvm_run* run = vcpu.run();
        if (run->exit_reason != KVM_EXIT_DEBUG && run->exit_reason != KVM_EXIT_INTERNAL_ERROR) {
          return false;
        }
        run->s.regs.regs.rip += 1;
        run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
        return true;
      });
}

// MOV $doorbell, %DX; 1: OUT %AL, %DX; JMP 1b.
double bare_out_us(const glassbox::kvm::System& system, int exits) {
  static const std::uint8_t code[] = {
      0x66, 0xba, GLASSBOX_PORT_DOORBELL & 0xff, GLASSBOX_PORT_DOORBELL >> 8, 0xee, 0xeb, 0xfd};
  return glassbox::bench::bare_loop_us(system, code, exits, true, 0, [](glassbox::kvm::Vcpu& vcpu) {
    return vcpu.run()->exit_reason == KVM_EXIT_IO;
  });
}

// ---- glassbox events ------------------------------------------------------------------------

struct Vm {
  Vm(int mode, int cpus, const fs::path& dir)
      : socket(dir / "kvmi.sock"),
        vmm({"--log-level", "error", "run", "--kernel",
             std::string(GLASSBOX_SCENARIO_DIR) + "/event_loop.elf", "--cpus", std::to_string(cpus),
             "--cmdline", std::to_string(mode), "--introspect", "listen:unix:" + socket.string()},
            socket) {
    for (int i = 0; i < 400 && !tool; ++i) {
      if (auto s = Session::connect(socket)) {
        tool = std::move(*s);
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
      }
    }
  }
  fs::path socket;
  glassbox::bench::BackgroundVmm vmm;
  std::unique_ptr<Session> tool;
};

// Median µs from one reply to the next event (the whole loop the guest sees), over `events`.
double event_round_trip_us(Session& tool, int events, kvmi::EventAction action) {
  std::vector<double> samples;
  auto first = tool.wait_event(std::chrono::seconds(30));
  if (!first) return 0;
  auto last = Clock::now();
  (void)tool.reply_event(*first, action);
  for (int i = 0; i < events; ++i) {
    auto event = tool.wait_event(std::chrono::seconds(30));
    if (!event) return 0;
    const auto now = Clock::now();
    samples.push_back(std::chrono::duration<double, std::micro>(now - last).count());
    last = Clock::now();
    (void)tool.reply_event(*event, action);
  }
  return median(std::move(samples));
}

double events_per_second(Session& tool, std::chrono::milliseconds window) {
  const auto end = Clock::now() + window;
  long count = 0;
  while (Clock::now() < end) {
    auto event = tool.wait_event(std::chrono::seconds(30));
    if (!event) break;
    ++count;
    (void)tool.reply_event(*event, kvmi::EventAction::Retry);
  }
  return static_cast<double>(count) / (std::chrono::duration<double>(window).count());
}

// The guest-physical address of a symbol of the event_loop guest (identity-mapped), from nm.
std::uint64_t guest_symbol(const std::string& name) {
  const std::string command =
      "nm -P " + std::string(GLASSBOX_SCENARIO_DIR) + "/event_loop.elf 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return 0;
  char line[256];
  std::uint64_t address = 0;
  while (fgets(line, sizeof line, pipe)) {
    char symbol[128];
    char type;
    unsigned long long value = 0;
    if (std::sscanf(line, "%127s %c %llx", symbol, &type, &value) == 3 && name == symbol) {
      address = value;
    }
  }
  pclose(pipe);
  return address;
}

double msr_event_round_trip_us(Session& tool, int events) {
  std::vector<double> samples;
  auto last = Clock::now();
  for (int i = 0; i <= events; ++i) {
    auto event = tool.wait_event(std::chrono::seconds(30));
    if (!event) return 0;
    const auto now = Clock::now();
    if (i > 0) samples.push_back(std::chrono::duration<double, std::micro>(now - last).count());
    last = now;
    const auto msr = event->specific_as<kvmi::EventMsr>();
    const auto reply = std::as_bytes(std::span(&msr.new_value, 1));
    (void)tool.reply_event(*event, kvmi::EventAction::Continue, reply);
  }
  return median(std::move(samples));
}

struct Row {
  const char* name;
  std::vector<double> glassbox, floor;
};

}  // namespace

int main(int argc, char** argv) {
  const int runs = glassbox::bench::runs_argument(argc, argv, 5);
  auto system = glassbox::kvm::System::open();
  if (!system) {
    std::fprintf(stderr, "%s\n", system.error().message().c_str());
    return 1;
  }
  auto quirks = glassbox::kvm::probe_host(*system);
  std::printf("host: %s; medians of %d runs\n\n",
              quirks ? glassbox::kvm::to_string(quirks->backend) : "unknown", runs);

  char pattern[] = "/tmp/glassbox-event-bench-XXXXXX";
  const fs::path dir = mkdtemp(pattern);
  constexpr int kEvents = 1000;
  constexpr int kFloorExits = 5000;

  std::vector<double> socket_floor, int3_floor, out_floor;
  Row bp_retry{"BREAKPOINT, RETRY (INT3 → tool → INT3)", {}, {}};
  Row bp_continue{"BREAKPOINT, CONTINUE (#BP to the guest handler)", {}, {}};
  Row hypercall{"HYPERCALL (doorbell OUT), CONTINUE", {}, {}};
  Row msr{"MSR (WRMSR LSTAR), CONTINUE with the value", {}, {}};
  Row pf{"PF write (read-only slot), CONTINUE", {}, {}};
  const std::uint64_t store_page = guest_symbol("store_page");
  std::vector<double> rate1, rate2;
  for (int r = 0; r < runs; ++r) {
    socket_floor.push_back(glassbox::bench::raw_round_trip_us(5000, kEventBytes, kReplyBytes));
    int3_floor.push_back(bare_int3_us(*system, kFloorExits));
    out_floor.push_back(bare_out_us(*system, kFloorExits));
    {
      Vm vm(/*mode own INT3*/ 1, 1, dir);
      if (!vm.tool) break;
      (void)vm.tool->control_vcpu_events(0, kvmi::EventId::Breakpoint, true);
      bp_retry.glassbox.push_back(event_round_trip_us(*vm.tool, kEvents, kvmi::EventAction::Retry));
      bp_continue.glassbox.push_back(
          event_round_trip_us(*vm.tool, kEvents, kvmi::EventAction::Continue));
      rate1.push_back(events_per_second(*vm.tool, std::chrono::milliseconds(1000)));
    }
    {
      Vm vm(1, 2, dir);
      if (!vm.tool) break;
      for (std::uint16_t v : {0, 1}) {
        (void)vm.tool->control_vcpu_events(v, kvmi::EventId::Breakpoint, true);
      }
      rate2.push_back(events_per_second(*vm.tool, std::chrono::milliseconds(1000)));
    }
    {
      Vm vm(/*mode hypercall*/ 2, 1, dir);
      if (!vm.tool) break;
      (void)vm.tool->control_vcpu_events(0, kvmi::EventId::Hypercall, true);
      hypercall.glassbox.push_back(
          event_round_trip_us(*vm.tool, kEvents, kvmi::EventAction::Continue));
    }
    {
      Vm vm(/*mode WRMSR*/ 4, 1, dir);
      if (!vm.tool) break;
      (void)vm.tool->control_vcpu_events(0, kvmi::EventId::Msr, true);
      if (vm.tool->control_msr(0, 0xc0000082, true)) {
        msr.glassbox.push_back(msr_event_round_trip_us(*vm.tool, kEvents));
      }
    }
    if (store_page != 0) {
      Vm vm(/*mode store*/ 8, 1, dir);
      if (!vm.tool) break;
      (void)vm.tool->control_vcpu_events(0, kvmi::EventId::Pf, true);
      if (vm.tool->set_page_access(store_page, 4096, kvmi::kPageAccessR | kvmi::kPageAccessX)) {
        pf.glassbox.push_back(event_round_trip_us(*vm.tool, kEvents, kvmi::EventAction::Continue));
      }
    }
  }
  fs::remove_all(dir);

  const double sock = median(socket_floor), int3 = median(int3_floor), out = median(out_floor);
  std::printf("%-50s %10s\n", "floor", "µs");
  std::printf("%-50s %10.2f\n", "raw unix socket, 552 B out / 24 B back", sock);
  std::printf("%-50s %10.2f\n", "bare vCPU: INT3 exit, step past, re-enter", int3);
  std::printf("%-50s %10.2f\n\n", "bare vCPU: OUT exit, re-enter", out);
  std::printf("%-50s %10s %10s %8s\n", "event round trip (guest sees)", "µs", "floor µs", "ratio");
  auto row = [](const char* name, double us, double floor) {
    std::printf("%-50s %10.2f %10.2f %8.2f\n", name, us, floor, floor > 0 ? us / floor : 0.0);
  };
  row(bp_retry.name, median(bp_retry.glassbox), int3 + sock);
  row(bp_continue.name, median(bp_continue.glassbox), int3 + sock);
  row(hypercall.name, median(hypercall.glassbox), out + sock);
  // Both exits are the same kind of round trip as the OUT floor (notes/kvm-backends.md §4, §6).
  row(msr.name, median(msr.glassbox), out + sock);
  row(pf.name, median(pf.glassbox), out + sock);
  std::printf("\n%-50s %10s\n", "throughput", "events/s");
  std::printf("%-50s %10.0f\n", "BREAKPOINT RETRY, 1 vCPU", median(rate1));
  std::printf("%-50s %10.0f\n", "BREAKPOINT RETRY, 2 vCPUs", median(rate2));
  return 0;
}
