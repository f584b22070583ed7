// The exits an introspection tool may own, as the VMM's exit loop sees them.
//
// The VMM does not know KVMI: at each exit that a tool might want to hear about (a breakpoint, a
// watched MSR write, the KVMI hypercall, a single step, an access to a restricted page) the vCPU
// thread asks the machine's VcpuIntercepts what to do. The defaults are what the VMM does with no
// tool attached; the introspection server overrides them (introspection/intercepts.cpp) and
// turns each into a KVMI event. Every method runs on the vCPU's own thread and may block it (an
// event waiting for the tool's reply).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace glassbox::vmm {

class VcpuThread;

// One access type (spec/kvmi-v7.md §2.3.20 bit values).
enum class PageAccess : std::uint8_t { kRead = 1, kWrite = 2, kExec = 4 };

enum class BreakpointVerdict {
  kGuest,    // the #BP belongs to the guest: re-inject it with the host's RIP rule
  kHandled,  // re-enter without injecting (the tool moved RIP or restored the byte)
};

// A guest access to RAM that left KVM (a restricted page, or a page whose slot is being rebuilt).
struct RamAccess {
  std::uint64_t gpa = 0;
  PageAccess access = PageAccess::kRead;
  std::span<std::uint8_t> data;  // write: the bytes written; read: to be filled
  // Write exits come after the instruction retired (read-only slot); read exits before.
  bool retired = false;
};

enum class RamAccessVerdict {
  kComplete,  // serve it from / into guest RAM
  kDrop,      // a write that must not land (reads are always served)
};

class VcpuIntercepts {
 public:
  virtual ~VcpuIntercepts() = default;

  // A guest INT3 (insn_len 1) or INT 3 (2) with RIP at the instruction.
  virtual BreakpointVerdict on_breakpoint(VcpuThread&, std::uint8_t /*insn_len*/) {
    return BreakpointVerdict::kGuest;
  }
  // A guest WRMSR that the MSR filter sent to user space. Returns the value to write, or nullopt
  // to fail the WRMSR with #GP.
  virtual std::optional<std::uint64_t> on_msr_write(VcpuThread&, std::uint32_t /*msr*/,
                                                    std::uint64_t value) {
    return value;
  }
  // The KVMI hypercall (doorbell OUT or intercepted VMCALL), registers as the guest left them.
  // Returns the value the guest gets in RAX.
  virtual std::uint64_t on_hypercall(VcpuThread&) { return static_cast<std::uint64_t>(-1000); }
  // A single-step exit (failed: the step ended in another exit, spec §3.4.11).
  virtual void on_single_step(VcpuThread&, bool /*failed*/) {}
  // A RAM access that exited to user space.
  virtual RamAccessVerdict on_ram_access(VcpuThread&, RamAccess&) {
    return RamAccessVerdict::kComplete;
  }
  // An instruction fetch KVM could not do (RIP points into a page that has no memory slot).
  // Returns false when the fetch is not from RAM the interceptor removed: the VM then stops.
  virtual bool on_fetch_fault(VcpuThread&) { return false; }
  // An instruction KVM's emulator could not complete (e.g. an AVX store to a read-only slot).
  // Returns false when the interceptor has no explanation for it: the VM then stops.
  virtual bool on_emulation_failure(VcpuThread&, std::span<const std::uint8_t> /*insn*/) {
    return false;
  }
};

}  // namespace glassbox::vmm
