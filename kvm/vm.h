// A KVM VM fd: memory slots, the in-kernel irqchip, VM capabilities, vCPU creation, MSR filter.
// VM ioctls may be issued from any thread (they are cheap and serialised by KVM).
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "kvm/error.h"
#include "kvm/fd.h"
#include "kvm/vcpu.h"

namespace glassbox::kvm {

class Vm {
 public:
  Vm(UniqueFd fd, int vcpu_mmap_size) : fd_(std::move(fd)), vcpu_mmap_size_(vcpu_mmap_size) {}

  int check_extension(long cap) const;
  SysResult<void> enable_cap(std::uint32_t cap, std::uint64_t arg0 = 0, std::uint64_t arg1 = 0);
  SysResult<void> set_user_memory_region(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size,
                                         void* host, std::uint32_t flags = 0);
  SysResult<void> set_tss_addr(std::uint64_t gpa);
  SysResult<void> set_identity_map_addr(std::uint64_t gpa);
  SysResult<void> create_irqchip();
  // The in-kernel i8254 PIT (port 0x61's speaker bits answered by KVM too).
  SysResult<void> create_pit2();
  // Drives the in-kernel PIC/IOAPIC input `gsi` (KVM_IRQ_LINE); ISA devices pulse it.
  SysResult<void> irq_line(std::uint32_t gsi, bool level);
  SysResult<void> set_msr_filter(const kvm_msr_filter& filter);
  SysResult<void> signal_msi(std::uint64_t address, std::uint32_t data);
  SysResult<Vcpu> create_vcpu(int index);

  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  int vcpu_mmap_size_;
};

}  // namespace glassbox::kvm
