// The floor under every exit-driven figure: a bare VM with one vCPU running a few bytes of code
// at CPL0, driven by a minimal KVM_RUN loop that does only what any VMM must do for that exit
// (no glassbox machinery). Header-only, shared by the benchmarks.
#pragma once

#include <sys/mman.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <span>

#include "kvm/long_mode.h"
#include "kvm/system.h"
#include "kvm/vcpu.h"

namespace glassbox::bench {

// Runs `code` (position-independent, entered at its first byte) and calls `on_exit` after every
// KVM_RUN; returns the µs per exit over `exits` exits after a warm-up, or 0 when the VM could not
// be built. `on_exit` returns false to report a failure (then 0 is returned as well).
inline double bare_loop_us(const kvm::System& system, std::span<const std::uint8_t> code, int exits,
                           bool sync_regs, std::uint32_t guest_debug,
                           const std::function<bool(kvm::Vcpu&)>& on_exit) {
  auto vm = system.create_vm();
  if (!vm) return 0;
  constexpr std::size_t kSize = 2 << 20;
  void* mem = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 0;
  std::span<std::uint8_t> ram(static_cast<std::uint8_t*>(mem), kSize);
  (void)vm->set_user_memory_region(0, 0, kSize, mem);
  const auto cr3 = kvm::long_mode::write_identity_page_tables(ram, 0x8000, 1ULL << 30);
  kvm::long_mode::write_gdt(ram.subspan(0x6000, 24));
  std::memcpy(ram.data() + 0x1000, code.data(), code.size());
  double result = 0;
  if (auto vcpu = vm->create_vcpu(0)) {
    (void)vcpu->set_cpuid(*system.supported_cpuid());
    auto sregs = vcpu->get_sregs();
    kvm::long_mode::set_long_mode_sregs(*sregs, 0x6000, cr3);
    (void)vcpu->set_sregs(*sregs);
    kvm_regs regs{};
    regs.rip = 0x1000;
    regs.rsp = 0x5000;
    regs.rflags = 2;
    (void)vcpu->set_regs(regs);
    if (guest_debug != 0) {
      kvm_guest_debug debug{};
      debug.control = KVM_GUESTDBG_ENABLE | guest_debug;
      (void)vcpu->set_guest_debug(debug);
    }
    if (sync_regs) {
      vcpu->enable_sync_regs(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS);
    }
    auto step = [&] { return vcpu->run_once().has_value() && on_exit(*vcpu); };
    bool ok = true;
    for (int i = 0; i < 100 && ok; ++i) ok = step();  // warm up
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < exits && ok; ++i) ok = step();
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    if (ok) result = us / exits;
  }
  munmap(mem, kSize);
  return result;
}

}  // namespace glassbox::bench
