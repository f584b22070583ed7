#include "vmm/x86/boot_setup.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "kvm/long_mode.h"
#include "vmm/loader/linux_loader.h"

namespace glassbox::vmm::x86 {

namespace {
constexpr std::uint64_t kIdentityMapBytes = 4ULL << 30;
static_assert(GLASSBOX_PAGE_TABLES_GPA + 7 * 4096 <= GLASSBOX_BOOT_STACKS_GPA);
static_assert(GLASSBOX_BOOT_STACKS_GPA + GLASSBOX_MAX_VCPUS * GLASSBOX_BOOT_STACK_SIZE <=
              GLASSBOX_LOW_RESERVED_END);
}  // namespace

std::expected<std::uint64_t, std::string> write_boot_structures(GuestMemory& memory,
                                                                const BootParameters& params) {
  if (params.cmdline.size() >= GLASSBOX_CMDLINE_MAX) {
    return std::unexpected(fmt::format("the command line is {} bytes; at most {} fit",
                                       params.cmdline.size(), GLASSBOX_CMDLINE_MAX - 1));
  }
  auto ram = memory.all();
  kvm::long_mode::write_gdt(memory.span(GLASSBOX_GDT_GPA, 24));
  const std::uint64_t cr3 =
      kvm::long_mode::write_identity_page_tables(ram, GLASSBOX_PAGE_TABLES_GPA, kIdentityMapBytes);
  std::memset(ram.data() + GLASSBOX_BOOT_STACKS_GPA, 0,
              GLASSBOX_LOW_RESERVED_END - GLASSBOX_BOOT_STACKS_GPA);

  glassbox_boot_info info{};
  info.magic = GLASSBOX_BOOT_MAGIC;
  info.version = GLASSBOX_BOOT_VERSION;
  info.vcpu_count = static_cast<std::uint32_t>(params.vcpu_count);
  info.memory_size = memory.size();
  info.doorbell_port = GLASSBOX_PORT_DOORBELL;
  info.power_port = GLASSBOX_PORT_POWER;
  info.serial_port = GLASSBOX_PORT_COM1;
  info.cpuid_flags = params.cpuid_flags;
  info.tsc_khz = params.tsc_khz;
  // The memory map a PC guest expects: low RAM, the boot area reserved, RAM from 1 MiB.
  auto add = [&](std::uint64_t addr, std::uint64_t size, std::uint32_t type) {
    info.e820[info.e820_count++] = glassbox_e820_entry{addr, size, type, 0};
  };
  add(0, GLASSBOX_LOW_RESERVED_END, GLASSBOX_E820_RESERVED);
  add(GLASSBOX_LOW_RESERVED_END, 0x9fc00 - GLASSBOX_LOW_RESERVED_END, GLASSBOX_E820_RAM);
  add(0x9fc00, GLASSBOX_KERNEL_MIN_GPA - 0x9fc00, GLASSBOX_E820_RESERVED);
  add(GLASSBOX_KERNEL_MIN_GPA, memory.size() - GLASSBOX_KERNEL_MIN_GPA, GLASSBOX_E820_RAM);
  info.cmdline_length = static_cast<std::uint32_t>(params.cmdline.size());
  std::memcpy(info.cmdline, params.cmdline.data(), params.cmdline.size());
  memory.write(GLASSBOX_BOOT_INFO_GPA, &info, sizeof info);
  return cr3;
}

std::vector<kvm_cpuid_entry2> guest_cpuid(const std::vector<kvm_cpuid_entry2>& supported, int index,
                                          int count, const CpuidPersonality& personality) {
  std::vector<kvm_cpuid_entry2> entries;
  entries.reserve(supported.size() + 2);
  const auto apic_id = static_cast<std::uint32_t>(index);
  for (auto e : supported) {
    // KVM's own paravirtual leaves are replaced by glassbox's (below).
    if (personality.glassbox_leaves && e.function >= 0x40000000 && e.function <= 0x4fffffff) {
      continue;
    }
    switch (e.function) {
      case 1:
        e.ebx = (e.ebx & 0x0000ffff) | (apic_id << 24) |
                (static_cast<std::uint32_t>(std::min(count, 255)) << 16);
        e.ecx |= 1u << 31;  // running under a hypervisor
        if (personality.tsc_deadline_timer) e.ecx |= 1u << 24;
        if (count > 1) e.edx |= 1u << 28;  // HTT: more than one logical processor
        break;
      case 0xb:
      case 0x1f:
        e.edx = apic_id;  // x2APIC id of this vCPU
        break;
      default:
        break;
    }
    entries.push_back(e);
  }
  if (!personality.glassbox_leaves) return entries;
  kvm_cpuid_entry2 signature{};
  signature.function = GLASSBOX_CPUID_SIGNATURE_LEAF;
  signature.eax = GLASSBOX_CPUID_FEATURES_LEAF;
  signature.ebx = GLASSBOX_CPUID_SIG_EBX;
  signature.ecx = GLASSBOX_CPUID_SIG_ECX;
  signature.edx = GLASSBOX_CPUID_SIG_EDX;
  kvm_cpuid_entry2 features{};
  features.function = GLASSBOX_CPUID_FEATURES_LEAF;
  features.eax = GLASSBOX_PORT_DOORBELL;
  features.ebx = personality.cpuid_flags;
  features.ecx = GLASSBOX_PORT_POWER;
  entries.push_back(signature);
  entries.push_back(features);
  return entries;
}

std::vector<kvm_msr_entry> boot_msrs() {
  constexpr std::uint32_t kMtrrDefType = 0x2ff, kMiscEnable = 0x1a0;
  return {
      kvm_msr_entry{kMtrrDefType, 0, (1u << 11) | 6},  // MTRRs enabled, default write-back
      kvm_msr_entry{kMiscEnable, 0, 1},                // fast string operations
  };
}

kvm_regs boot_regs(std::uint64_t entry_gpa, int index) {
  kvm_regs regs{};
  regs.rip = entry_gpa;
  regs.rdi = GLASSBOX_BOOT_INFO_GPA;
  regs.rsi = static_cast<std::uint64_t>(index);
  regs.rsp =
      GLASSBOX_BOOT_STACKS_GPA + (static_cast<std::uint64_t>(index) + 1) * GLASSBOX_BOOT_STACK_SIZE;
  regs.rflags = 0x2;
  return regs;
}

void set_boot_sregs(kvm_sregs& sregs, std::uint64_t cr3) {
  kvm::long_mode::set_long_mode_sregs(sregs, GLASSBOX_GDT_GPA, cr3);
}

std::uint64_t write_linux_boot_structures(GuestMemory& memory) {
  kvm::long_mode::write_gdt(memory.span(kLinuxGdtGpa, kvm::long_mode::kLinuxBootGdt.bytes()),
                            kvm::long_mode::kLinuxBootGdt);
  return kvm::long_mode::write_identity_page_tables(memory.all(), kLinuxPageTablesGpa,
                                                    kIdentityMapBytes, /*map_page_zero=*/true);
}

kvm_regs linux_boot_regs(std::uint64_t entry_gpa, std::uint64_t boot_params_gpa) {
  kvm_regs regs{};
  regs.rip = entry_gpa;
  regs.rsi = boot_params_gpa;
  regs.rflags = 0x2;  // interrupts off, as the protocol requires
  return regs;
}

void set_linux_boot_sregs(kvm_sregs& sregs, std::uint64_t cr3) {
  kvm::long_mode::set_long_mode_sregs(sregs, kLinuxGdtGpa, cr3, kvm::long_mode::kLinuxBootGdt);
}

kvm_fpu boot_fpu() {
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  return fpu;
}

}  // namespace glassbox::vmm::x86
