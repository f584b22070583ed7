// The minimal ACPI a Linux guest needs from glassbox: RSDP -> XSDT -> {FADT -> DSDT, MADT}.
// The MADT lists one local APIC per vCPU and the IOAPIC, which is how Linux brings up
// `--cpus N`; the FADT points at the ACPI PM registers (devices/acpi_pm.h) and the DSDT holds
// only \_S5, so `poweroff` ends the VM; the FADT's reset register is the keyboard controller's
// reset command, so `reboot` does too. The FADT also says there is no CMOS RTC and no i8042
// keyboard (wall time comes from kvmclock), so Linux does not probe them.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/guest_memory.h"

namespace glassbox::vmm::x86 {

// Where the tables live: in the BIOS area Linux scans for the RSDP (reserved in the e820 map).
inline constexpr std::uint64_t kAcpiTablesGpa = 0xe0000;
inline constexpr std::uint64_t kAcpiTablesEnd = 0x100000;

struct AcpiLayout {
  std::uint64_t rsdp_gpa = 0;
  std::uint64_t end_gpa = 0;  // first byte after the tables
};

// Builds the tables for `cpus` vCPUs (the IOAPIC and LAPIC at their PC addresses).
std::vector<std::uint8_t> build_acpi_tables(int cpus, std::uint64_t base_gpa);
// Writes them at kAcpiTablesGpa.
AcpiLayout write_acpi_tables(GuestMemory& memory, int cpus);

// The ACPI checksum: the byte that makes `bytes` sum to zero.
std::uint8_t acpi_checksum(std::span<const std::uint8_t> bytes);

}  // namespace glassbox::vmm::x86
