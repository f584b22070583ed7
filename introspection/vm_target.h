// What the KVMI server needs from the VM it introspects, and nothing more.
//
// The receiver and the VM commands see the VM only through this interface, so a fuzz target or a
// unit test can run the real protocol code over a socketpair against plain memory, without KVM
// (memory_target.h). The VMM adapts its Machine in machine_target.h.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
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
  // Events the host has a user-space mechanism for. Stock KVM never exits to user space on CR
  // writes, XSETBV or descriptor-table instructions (spec §P2), so those are off by default.
  bool can_intercept_cr = false;
  bool can_intercept_xsetbv = false;
  bool can_intercept_descriptor = false;

  bool can_intercept(kvmi::EventId event) const {
    switch (event) {
      // Not wired to a KVM mechanism yet (the events issue): refusing them beats accepting an
      // enable that would never produce an event.
      case kvmi::EventId::Hypercall:
      case kvmi::EventId::Breakpoint:
      case kvmi::EventId::Msr:
      case kvmi::EventId::Pf:
      case kvmi::EventId::Singlestep:
        return false;
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
};

}  // namespace glassbox::introspection
