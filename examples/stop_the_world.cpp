// An introspection tool in ~100 lines: connects to a running glassbox, stops every vCPU, shows
// where each one was (registers, LSTAR, the physical address of RIP), and, when the guest kernel
// runs in beacon mode, ends the beacon process by writing its R12 while its vCPU is paused.
//
//   glassbox run --kernel guest/glassbox-guest.elf --cpus 2 --cmdline beacon
//       --introspect listen:unix:/tmp/gb.sock &
//   glassbox-example-stop-the-world /tmp/gb.sock
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "glassbox/client/session.h"

using namespace std::chrono_literals;
using glassbox::client::Session;
namespace kvmi = glassbox::kvmi;

namespace {

constexpr std::uint32_t kMsrLstar = 0xc0000082;
constexpr std::uint64_t kBeaconValue = 0x600dcafe;

std::unique_ptr<Session> connect(const char* path) {
  for (int i = 0; i < 100; ++i) {
    if (auto s = Session::connect(path)) return std::move(*s);
    std::this_thread::sleep_for(100ms);
  }
  return nullptr;
}

// True when RIP is inside the beacon's spin loop: `pause; test %r12,%r12; jz` (f3 90 4d 85 e4 74).
// Setting R12 anywhere else (e.g. before the loop clears it) would be lost.
bool at_beacon_loop(Session& tool, std::uint16_t vcpu, std::uint64_t rip) {
  static const std::uint8_t loop[] = {0xf3, 0x90, 0x4d, 0x85, 0xe4, 0x74};
  auto gpa = tool.translate_gva(vcpu, rip - 8);
  if (!gpa || *gpa == ~0ULL || ((*gpa & 0xfff) > 0xfff - 24)) return false;
  auto bytes = tool.read_physical(*gpa, 24);
  if (!bytes) return false;
  for (std::size_t start = 0; start + sizeof loop <= bytes->size(); ++start) {
    if (std::memcmp(bytes->data() + start, loop, sizeof loop) != 0) continue;
    const std::uint64_t loop_rip = rip - 8 + start;
    return rip == loop_rip || rip == loop_rip + 2 || rip == loop_rip + 5;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SOCKET (the VMM's --introspect listen:unix:SOCKET)\n", argv[0]);
    return 2;
  }
  auto tool = connect(argv[1]);
  if (!tool) {
    std::fprintf(stderr, "cannot connect to %s\n", argv[1]);
    return 1;
  }
  std::printf("tool: attached to VM \"%s\"\n", tool->vm().name.c_str());

  // Stop the world, look around, and start it again: several times, to catch the beacon (the
  // only process on the last vCPU) in user mode.
  for (int round = 1; round <= 50; ++round) {
    const auto start = std::chrono::steady_clock::now();
    auto paused = tool->pause_all();
    if (!paused) {
      std::fprintf(stderr, "pause_all: %s\n", paused.error().message.c_str());
      return 1;
    }
    const auto stopped_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now() - start)
                                .count();
    bool beacon_done = false;
    for (const auto& event : *paused) {
      const std::uint32_t msrs[] = {kMsrLstar};
      auto regs = tool->get_registers(event.vcpu(), msrs);
      if (!regs) continue;
      auto gpa = tool->translate_gva(event.vcpu(), regs->regs.rip);
      const bool user = (regs->sregs.cs.selector & 3) == 3;
      if (round == 1 || user) {
        std::printf(
            "tool: round %d (world stopped in %lld us): vCPU %u at rip %#llx (gpa %#llx) "
            "cpl %d cr3 %#llx lstar %#llx\n",
            round, static_cast<long long>(stopped_us), event.vcpu(),
            static_cast<unsigned long long>(regs->regs.rip),
            static_cast<unsigned long long>(gpa ? *gpa : ~0ULL), user ? 3 : 0,
            static_cast<unsigned long long>(regs->sregs.cr3),
            static_cast<unsigned long long>(regs->msrs[0].data));
      }
      // The beacon spins at CPL3 on the last vCPU until its R12 changes.
      if (user && event.vcpu() + 1u == paused->size() &&
          at_beacon_loop(*tool, event.vcpu(), regs->regs.rip)) {
        kvm_regs changed = regs->regs;
        changed.r12 = kBeaconValue;
        if (tool->set_registers(event.vcpu(), changed)) {
          std::printf("tool: set r12=%#llx on vCPU %u while it is paused\n",
                      static_cast<unsigned long long>(kBeaconValue), event.vcpu());
          beacon_done = true;
        }
      }
    }
    if (!tool->resume_all(*paused)) return 1;
    if (beacon_done) {
      std::printf("tool: resumed; the guest should now report the beacon\n");
      return 0;
    }
    std::this_thread::sleep_for(20ms);
  }
  std::printf("tool: never caught the beacon in user mode (is the guest in beacon mode?)\n");
  return 0;
}
