#include "vmm/x86/acpi_tables.h"

#include <cstring>
#include <stdexcept>
#include <string_view>

#include "vmm/devices/acpi_pm.h"
#include "vmm/devices/i8042.h"

namespace glassbox::vmm::x86 {

namespace {

constexpr std::uint32_t kLapicGpa = 0xfee00000;
constexpr std::uint32_t kIoapicGpa = 0xfec00000;
constexpr std::uint16_t kSciIrq = 9;
constexpr std::size_t kHeaderSize = 36;

// Little-endian writer over a growing byte vector.
class Writer {
 public:
  std::size_t size() const { return bytes_.size(); }
  void u8(std::uint8_t v) { bytes_.push_back(v); }
  void u16(std::uint16_t v) { put(v, 2); }
  void u32(std::uint32_t v) { put(v, 4); }
  void u64(std::uint64_t v) { put(v, 8); }
  void text(std::string_view s, std::size_t width) {
    for (std::size_t i = 0; i < width; ++i)
      u8(i < s.size() ? static_cast<std::uint8_t>(s[i]) : ' ');
  }
  void zeros(std::size_t n) { bytes_.insert(bytes_.end(), n, 0); }
  void patch32(std::size_t at, std::uint32_t v) { std::memcpy(bytes_.data() + at, &v, 4); }
  void patch64(std::size_t at, std::uint64_t v) { std::memcpy(bytes_.data() + at, &v, 8); }
  std::vector<std::uint8_t>& bytes() { return bytes_; }

 private:
  void put(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) bytes_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  std::vector<std::uint8_t> bytes_;
};

// The common System Description Table header; length and checksum are filled by finish().
std::size_t begin_table(Writer& w, std::string_view signature, std::uint8_t revision) {
  const std::size_t start = w.size();
  w.text(signature, 4);
  w.u32(0);  // length
  w.u8(revision);
  w.u8(0);  // checksum
  w.text("GLSBOX", 6);
  w.text("GLASSBOX", 8);  // OEM table id
  w.u32(1);               // OEM revision
  w.text("GBOX", 4);      // creator id
  w.u32(1);               // creator revision
  return start;
}

void finish_table(Writer& w, std::size_t start) {
  const auto length = static_cast<std::uint32_t>(w.size() - start);
  w.patch32(start + 4, length);
  auto& b = w.bytes();
  b[start + 9] = acpi_checksum(std::span(b).subspan(start, length));
}

void align(Writer& w, std::size_t alignment) {
  while (w.size() % alignment) w.u8(0);
}

// A Generic Address Structure in system I/O space.
void io_address(Writer& w, std::uint8_t bits, std::uint8_t access_size, std::uint64_t port) {
  w.u8(1);  // system I/O
  w.u8(bits);
  w.u8(0);
  w.u8(access_size);
  w.u64(port);
}

}  // namespace

std::uint8_t acpi_checksum(std::span<const std::uint8_t> bytes) {
  std::uint8_t sum = 0;
  for (auto b : bytes) sum = static_cast<std::uint8_t>(sum + b);
  return static_cast<std::uint8_t>(-sum);
}

std::vector<std::uint8_t> build_acpi_tables(int cpus, std::uint64_t base) {
  Writer w;
  // RSDP (ACPI 2.0+, 36 bytes); its XSDT address is patched below.
  const std::size_t rsdp = w.size();
  w.text("RSD PTR ", 8);
  w.u8(0);  // checksum of the first 20 bytes
  w.text("GLSBOX", 6);
  w.u8(2);   // revision: XSDT present
  w.u32(0);  // no RSDT
  w.u32(36);
  w.u64(0);  // XSDT
  w.u8(0);   // extended checksum
  w.zeros(3);
  align(w, 16);

  // DSDT: just \_S5 = Package(4) {5, 5, 0, 0}, so Linux offers S5 (power off).
  const std::size_t dsdt = begin_table(w, "DSDT", 2);
  const std::uint8_t s5[] = {0x08, '_',
                             'S',  '5',
                             '_',  0x12,
                             0x08, 0x04,
                             0x0a, AcpiPm::kS5SleepType,
                             0x0a, AcpiPm::kS5SleepType,
                             0x00, 0x00};
  for (auto b : s5) w.u8(b);
  finish_table(w, dsdt);
  align(w, 16);

  // FADT, revision 6 (276 bytes). Fixed hardware: PM1a event and control blocks, no PM timer,
  // no GPEs, no SMI command port (already in ACPI mode).
  const std::size_t fadt = begin_table(w, "FACP", 6);
  w.u32(0);                                        // FIRMWARE_CTRL: no FACS
  w.u32(static_cast<std::uint32_t>(base + dsdt));  // DSDT
  w.u8(0);                                         // reserved
  w.u8(0);                                         // preferred PM profile: unspecified
  w.u16(kSciIrq);
  w.u32(0);  // SMI_CMD
  w.u8(0);   // ACPI_ENABLE
  w.u8(0);   // ACPI_DISABLE
  w.u8(0);   // S4BIOS_REQ
  w.u8(0);   // PSTATE_CNT
  w.u32(AcpiPm::kEventBlock);
  w.u32(0);  // PM1b_EVT_BLK
  w.u32(AcpiPm::kControlBlock);
  w.u32(0);     // PM1b_CNT_BLK
  w.u32(0);     // PM2_CNT_BLK
  w.u32(0);     // PM_TMR_BLK
  w.u32(0);     // GPE0_BLK
  w.u32(0);     // GPE1_BLK
  w.u8(4);      // PM1_EVT_LEN
  w.u8(2);      // PM1_CNT_LEN
  w.u8(0);      // PM2_CNT_LEN
  w.u8(0);      // PM_TMR_LEN
  w.u8(0);      // GPE0_BLK_LEN
  w.u8(0);      // GPE1_BLK_LEN
  w.u8(0);      // GPE1_BASE
  w.u8(0);      // CST_CNT
  w.u16(101);   // P_LVL2_LAT: C2 not supported
  w.u16(1001);  // P_LVL3_LAT: C3 not supported
  w.u16(0);     // FLUSH_SIZE
  w.u16(0);     // FLUSH_STRIDE
  w.u8(0);      // DUTY_OFFSET
  w.u8(0);      // DUTY_WIDTH
  w.u8(0);      // DAY_ALRM
  w.u8(0);      // MON_ALRM
  w.u8(0);      // CENTURY
  // IAPC_BOOT_ARCH: legacy devices (the UART), no 8042 keyboard, no VGA, MSIs not supported,
  // no CMOS RTC.
  w.u16((1u << 0) | (1u << 2) | (1u << 3) | (1u << 5));
  w.u8(0);
  // Flags: WBINVD, C1 on all processors, power and sleep buttons absent (control method),
  // reset register supported.
  w.u32((1u << 0) | (1u << 2) | (1u << 4) | (1u << 5) | (1u << 10));
  io_address(w, 8, 1, I8042::kCommandPort);     // RESET_REG
  w.u8(0xfe);                                   // RESET_VALUE: pulse the reset line
  w.u16(0);                                     // ARM_BOOT_ARCH
  w.u8(0);                                      // FADT minor version
  w.u64(0);                                     // X_FIRMWARE_CTRL
  w.u64(base + dsdt);                           // X_DSDT
  io_address(w, 32, 2, AcpiPm::kEventBlock);    // X_PM1a_EVT_BLK
  w.zeros(12);                                  // X_PM1b_EVT_BLK
  io_address(w, 16, 2, AcpiPm::kControlBlock);  // X_PM1a_CNT_BLK
  w.zeros(12 * 5);                              // X_PM1b_CNT, X_PM2_CNT, X_PM_TMR, X_GPE0, X_GPE1
  w.zeros(12 * 2);                              // SLEEP_CONTROL_REG, SLEEP_STATUS_REG
  w.text("GLASSBOX", 8);                        // hypervisor vendor identity
  finish_table(w, fadt);
  if (w.size() - fadt != 276) throw std::logic_error("FADT layout");
  align(w, 16);

  // MADT: one enabled local APIC per vCPU (APIC id = vCPU index), the IOAPIC, LINT1 as NMI.
  const std::size_t madt = begin_table(w, "APIC", 5);
  w.u32(kLapicGpa);
  w.u32(1);  // PCAT_COMPAT: dual 8259s present too
  for (int i = 0; i < cpus; ++i) {
    w.u8(0);  // processor local APIC
    w.u8(8);
    w.u8(static_cast<std::uint8_t>(i));  // ACPI processor uid
    w.u8(static_cast<std::uint8_t>(i));  // APIC id
    w.u32(1);                            // enabled
  }
  w.u8(1);  // IOAPIC
  w.u8(12);
  w.u8(0);  // IOAPIC id
  w.u8(0);
  w.u32(kIoapicGpa);
  w.u32(0);  // GSI base
  w.u8(2);   // interrupt source override: the SCI, level triggered, active high
  w.u8(10);
  w.u8(0);  // ISA
  w.u8(static_cast<std::uint8_t>(kSciIrq));
  w.u32(kSciIrq);
  w.u16(0x000d);
  w.u8(4);  // local APIC NMI on LINT1 of every processor
  w.u8(6);
  w.u8(0xff);
  w.u16(0);
  w.u8(1);
  finish_table(w, madt);
  align(w, 16);

  const std::size_t xsdt = begin_table(w, "XSDT", 1);
  w.u64(base + fadt);
  w.u64(base + madt);
  finish_table(w, xsdt);

  w.patch64(rsdp + 24, base + xsdt);
  auto& b = w.bytes();
  b[rsdp + 8] = acpi_checksum(std::span(b).subspan(rsdp, 20));
  b[rsdp + 32] = acpi_checksum(std::span(b).subspan(rsdp, 36));
  return std::move(b);
}

AcpiLayout write_acpi_tables(GuestMemory& memory, int cpus) {
  const auto tables = build_acpi_tables(cpus, kAcpiTablesGpa);
  if (kAcpiTablesGpa + tables.size() > kAcpiTablesEnd) throw std::length_error("ACPI tables");
  memory.write(kAcpiTablesGpa, tables.data(), tables.size());
  return {kAcpiTablesGpa, kAcpiTablesGpa + tables.size()};
}

}  // namespace glassbox::vmm::x86
