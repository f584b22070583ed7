#include "kvm/vm.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

namespace glassbox::kvm {

int Vm::check_extension(long cap) const {
  int r = ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

SysResult<void> Vm::enable_cap(std::uint32_t cap, std::uint64_t arg0, std::uint64_t arg1) {
  kvm_enable_cap req{};
  req.cap = cap;
  req.args[0] = arg0;
  req.args[1] = arg1;
  if (ioctl(fd_.get(), KVM_ENABLE_CAP, &req) != 0) {
    return sys_error("KVM_ENABLE_CAP(" + std::to_string(cap) + ")");
  }
  return {};
}

SysResult<void> Vm::set_user_memory_region(std::uint32_t slot, std::uint64_t gpa,
                                           std::uint64_t size, void* host, std::uint32_t flags) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<std::uint64_t>(host);
  if (ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) != 0) {
    return sys_error("KVM_SET_USER_MEMORY_REGION(slot " + std::to_string(slot) + ")");
  }
  return {};
}

SysResult<void> Vm::set_tss_addr(std::uint64_t gpa) {
  if (ioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(gpa)) != 0) {
    return sys_error("KVM_SET_TSS_ADDR");
  }
  return {};
}

SysResult<void> Vm::set_identity_map_addr(std::uint64_t gpa) {
  std::uint64_t addr = gpa;
  if (ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr) != 0) {
    return sys_error("KVM_SET_IDENTITY_MAP_ADDR");
  }
  return {};
}

SysResult<void> Vm::create_irqchip() {
  if (ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) != 0) return sys_error("KVM_CREATE_IRQCHIP");
  return {};
}

SysResult<void> Vm::create_pit2() {
  kvm_pit_config config{};
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  if (ioctl(fd_.get(), KVM_CREATE_PIT2, &config) != 0) return sys_error("KVM_CREATE_PIT2");
  return {};
}

SysResult<void> Vm::irq_line(std::uint32_t gsi, bool level) {
  kvm_irq_level irq{};
  irq.irq = gsi;
  irq.level = level ? 1 : 0;
  if (ioctl(fd_.get(), KVM_IRQ_LINE, &irq) != 0) return sys_error("KVM_IRQ_LINE");
  return {};
}

SysResult<void> Vm::set_msr_filter(const kvm_msr_filter& filter) {
  if (ioctl(fd_.get(), KVM_X86_SET_MSR_FILTER, &filter) != 0) {
    return sys_error("KVM_X86_SET_MSR_FILTER");
  }
  return {};
}

SysResult<void> Vm::signal_msi(std::uint64_t address, std::uint32_t data) {
  kvm_msi msi{};
  msi.address_lo = static_cast<std::uint32_t>(address);
  msi.address_hi = static_cast<std::uint32_t>(address >> 32);
  msi.data = data;
  if (ioctl(fd_.get(), KVM_SIGNAL_MSI, &msi) < 0) return sys_error("KVM_SIGNAL_MSI");
  return {};
}

SysResult<Vcpu> Vm::create_vcpu(int index) {
  int fd = ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(index));
  if (fd < 0) return sys_error("KVM_CREATE_VCPU(" + std::to_string(index) + ")");
  UniqueFd owned(fd);
  void* run = mmap(nullptr, static_cast<size_t>(vcpu_mmap_size_), PROT_READ | PROT_WRITE,
                   MAP_SHARED, fd, 0);
  if (run == MAP_FAILED) return sys_error("mmap kvm_run of vCPU " + std::to_string(index));
  return Vcpu(index, std::move(owned), static_cast<kvm_run*>(run),
              static_cast<std::size_t>(vcpu_mmap_size_));
}

}  // namespace glassbox::kvm
