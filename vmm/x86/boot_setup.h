// Everything the ELF direct boot writes before the first guest instruction: boot structures in
// guest RAM (GDT, identity page tables, boot info, boot stacks) and the per-vCPU architectural
// state (CPUID, MSRs, registers).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <expected>
#include <string>
#include <vector>

#include "glassbox/boot/boot_info.h"
#include "kvm/host_probe.h"
#include "vmm/guest_memory.h"

namespace glassbox::vmm::x86 {

struct BootParameters {
  std::string cmdline;
  int vcpu_count = 1;
  std::uint32_t cpuid_flags = GLASSBOX_CPUID_FLAG_DOORBELL;  // GLASSBOX_CPUID_FLAG_*
  std::uint64_t tsc_khz = 0;
};

// Writes GDT, page tables and boot info below 1 MiB. Returns the CR3 value.
std::expected<std::uint64_t, std::string> write_boot_structures(GuestMemory& memory,
                                                                const BootParameters& params);

// Which hypervisor a guest is shown in the 0x40000000 leaves.
struct CpuidPersonality {
  // Glassbox's leaves (doorbell port, flags) replace KVM's: the bundled guest's contract. A Linux
  // guest keeps KVM's instead, so it uses kvmclock and the paravirtual features stock KVM offers.
  bool glassbox_leaves = true;
  std::uint32_t cpuid_flags = GLASSBOX_CPUID_FLAG_DOORBELL;  // GLASSBOX_CPUID_FLAG_*
  // KVM_CAP_TSC_DEADLINE_TIMER: KVM emulates it but leaves the CPUID bit to user space.
  bool tsc_deadline_timer = false;
};

// The host's supported CPUID adjusted for vCPU `index` of `count`: APIC ids, the hypervisor bit,
// topology leaves, and the hypervisor leaves of `personality`.
std::vector<kvm_cpuid_entry2> guest_cpuid(const std::vector<kvm_cpuid_entry2>& supported, int index,
                                          int count, const CpuidPersonality& personality);

// The Linux 64-bit boot protocol's machine state: a GDT with __BOOT_CS/__BOOT_DS and page tables
// identity-mapping the first 4 GiB (written at the loader's addresses). Returns the CR3 value.
std::uint64_t write_linux_boot_structures(GuestMemory& memory);
kvm_regs linux_boot_regs(std::uint64_t entry_gpa, std::uint64_t boot_params_gpa);
void set_linux_boot_sregs(kvm_sregs& sregs, std::uint64_t cr3);

// MSR values every vCPU starts with (default write-back memory type, fast strings).
std::vector<kvm_msr_entry> boot_msrs();

// Register state at the ELF entry for vCPU `index` (see boot_info.h for the contract).
kvm_regs boot_regs(std::uint64_t entry_gpa, int index);
void set_boot_sregs(kvm_sregs& sregs, std::uint64_t cr3);
kvm_fpu boot_fpu();

}  // namespace glassbox::vmm::x86
