// What the KVMI server needs from the VM it introspects, and nothing more.
//
// The receiver and the VM commands see the VM only through this interface, so a fuzz target or a
// unit test can run the real protocol code over a socketpair against plain memory, without KVM
// (memory_target.h). The VMM adapts its Machine in machine_target.h.
#pragma once

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <string>

#include "glassbox/kvmi/ids.h"

namespace glassbox::vmm {
class VcpuThread;
}

namespace glassbox::introspection {

// Facts about the host that change what the server may promise a tool.
struct HostFacts {
  // kvmi_features.singlestep of GET_VERSION: VCPU_CONTROL_SINGLESTEP can work here.
  bool singlestep = false;
  // VCPU_CONTROL_SINGLESTEP is accepted: every CPL on hardware KVM; CPL0 code only on KVM-PVM
  // (its CPL3 code runs natively and cannot be stepped), which is why `singlestep` stays false
  // there.
  bool can_singlestep = false;
  // WRMSR interception through the MSR filter (KVM_CAP_X86_USER_SPACE_MSR).
  bool msr_filter = false;
  // Events the host has a user-space mechanism for. Stock KVM never exits to user space on CR
  // writes, XSETBV or descriptor-table instructions (spec §P2), so those are off by default.
  // A guest INT3 reaches the VMM (the start-up probe saw it as KVM_EXIT_DEBUG or as an
  // emulation failure). Where it goes straight to the guest (seen under QEMU TCG's nested SVM,
  // which checks INT3 against the INTn intercept instead of the #BP one), BREAKPOINT is refused.
  bool can_intercept_breakpoint = true;
  bool can_intercept_cr = false;
  bool can_intercept_xsetbv = false;
  bool can_intercept_descriptor = false;

  bool can_intercept(kvmi::EventId event) const {
    switch (event) {
      case kvmi::EventId::Msr:
        return msr_filter;
      case kvmi::EventId::Singlestep:
        return can_singlestep;
      case kvmi::EventId::Breakpoint:
        return can_intercept_breakpoint;
      case kvmi::EventId::Cr:
        return can_intercept_cr;
      case kvmi::EventId::Xsetbv:
        return can_intercept_xsetbv;
      case kvmi::EventId::Descriptor:
        return can_intercept_descriptor;
      default:
        return true;
    }
  }
};

// Who the VM is, as the handshake hello tells the tool (spec §5.3).
struct VmIdentity {
  std::array<std::uint8_t, 16> uuid{};
  std::int64_t start_time_ms = 0;  // VM start, milliseconds since the epoch
  std::string name;                // sent NUL-terminated, at most 63 bytes
};

class VmTarget {
 public:
  virtual ~VmTarget() = default;

  // Online vCPUs (VM_GET_INFO; the index space of vCPU headers).
  virtual std::uint32_t vcpu_count() const = 0;
  // One past the highest guest frame backed by memory (VM_GET_MAX_GFN).
  virtual std::uint64_t max_gfn() const = 0;
  // Copy guest-physical memory through the VMM's mapping. False when any byte of the range is not
  // backed by guest RAM (the caller answers -KVM_ENOENT). Called from the receiving thread while
  // vCPUs run: the guest may change the bytes concurrently, as on real KVM.
  virtual bool read_physical(std::uint64_t gpa, std::span<std::byte> out) = 0;
  virtual bool write_physical(std::uint64_t gpa, std::span<const std::byte> in) = 0;
  virtual HostFacts host_facts() const = 0;
  // The thread of vCPU `index`, where vCPU commands run as jobs; null when the target has no
  // running vCPUs (memory-only targets: vCPU commands then answer -KVM_EAGAIN).
  virtual vmm::VcpuThread* vcpu_thread(std::uint32_t /*index*/) { return nullptr; }

  // ---- VM-wide interceptions (the events issue); defaults for targets without KVM ----
  // KVMI_VM_SET_PAGE_ACCESS for one frame: the allowed accesses become exactly `access` (R=1,
  // W=2, X=4; 7 forgets the frame). 0 or a negative errno (ENOMEM: slot budget exhausted).
  virtual int set_page_access(std::uint64_t /*gfn*/, std::uint8_t /*access*/) { return -ENOSYS; }
  // The allowed accesses of a frame (7 when unrestricted).
  virtual std::uint8_t page_access(std::uint64_t /*gfn*/) const { return 7; }
  // Drops every restriction (unhook).
  virtual void clear_page_access() {}
  // WRMSR of these MSRs exits to user space on every vCPU (the union of the vCPUs' tracked
  // sets); an empty set removes the filter. False when the host cannot filter.
  virtual bool set_msr_write_intercepts(const std::set<std::uint32_t>& /*msrs*/) { return false; }
};

}  // namespace glassbox::introspection
