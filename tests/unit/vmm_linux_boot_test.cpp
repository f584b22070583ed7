// The Linux boot protocol's header checks and the ACPI tables, without a VM.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "vmm/loader/linux_loader.h"
#include "vmm/x86/acpi_tables.h"

namespace glassbox::vmm {
namespace {

// A minimal well-formed bzImage: setup header of protocol 2.15, 64-bit entry, 4 setup sectors.
std::vector<std::uint8_t> fake_bzimage() {
  std::vector<std::uint8_t> b(5 * 512 + 4096, 0);
  auto put16 = [&](std::size_t at, std::uint16_t v) { std::memcpy(&b[at], &v, 2); };
  auto put32 = [&](std::size_t at, std::uint32_t v) { std::memcpy(&b[at], &v, 4); };
  auto put64 = [&](std::size_t at, std::uint64_t v) { std::memcpy(&b[at], &v, 8); };
  b[0x1f1] = 4;
  put16(0x1fe, 0xaa55);
  b[0x200] = 0xeb;
  b[0x201] = 0x6a;  // header ends at 0x26c
  put32(0x202, 0x53726448);
  put16(0x206, 0x020f);
  b[0x211] = 0x01;  // LOADED_HIGH
  put32(0x22c, 0x7fffffff);
  put32(0x230, 0x200000);
  b[0x234] = 1;
  put16(0x236, 0x7f);
  put32(0x238, 2047);
  put64(0x258, 0x1000000);
  put32(0x260, 0x100000);
  return b;
}

TEST(LinuxImage, ParsesTheSetupHeader) {
  auto b = fake_bzimage();
  EXPECT_TRUE(looks_like_bzimage(b));
  auto image = parse_linux_image(b, "k");
  ASSERT_TRUE(image) << image.error();
  EXPECT_EQ(image->protocol, 0x020f);
  EXPECT_EQ(image->setup_bytes, 5u * 512);
  EXPECT_EQ(image->pref_address, 0x1000000u);
  EXPECT_EQ(image->cmdline_size, 2047u);
  EXPECT_EQ(image->header_end, 0x26cu);
}

TEST(LinuxImage, RefusesWhatItCannotBootWithTheReason) {
  auto expect_error = [](std::vector<std::uint8_t> b, const std::string& reason) {
    auto image = parse_linux_image(b, "vmlinuz-test");
    ASSERT_FALSE(image) << reason;
    EXPECT_NE(image.error().find("vmlinuz-test"), std::string::npos) << image.error();
    EXPECT_NE(image.error().find(reason), std::string::npos) << image.error();
  };
  auto b = fake_bzimage();
  b[0x236] &= static_cast<std::uint8_t>(~1);
  expect_error(b, "32-bit-only");
  b = fake_bzimage();
  b[0x206] = 0x0b;
  expect_error(b, "protocol 2.11");
  b = fake_bzimage();
  b[0x211] = 0;
  expect_error(b, "loads low");
  b = fake_bzimage();
  b.resize(5 * 512);
  expect_error(b, "truncated");
  b = fake_bzimage();
  b[0x202] = 'X';
  expect_error(b, "not a Linux bzImage");
  b = fake_bzimage();
  std::uint32_t tiny = 16;
  std::memcpy(&b[0x260], &tiny, 4);
  expect_error(b, "init_size");
}

TEST(AcpiTables, EveryTableSumsToZeroAndTheMadtListsEachCpu) {
  const std::uint64_t base = x86::kAcpiTablesGpa;
  const auto t = x86::build_acpi_tables(3, base);
  ASSERT_EQ(std::string(t.begin(), t.begin() + 8), "RSD PTR ");
  auto sum = [&](std::size_t at, std::size_t len) {
    std::uint8_t s = 0;
    for (std::size_t i = 0; i < len; ++i) s = static_cast<std::uint8_t>(s + t.at(at + i));
    return s;
  };
  EXPECT_EQ(sum(0, 20), 0);
  EXPECT_EQ(sum(0, 36), 0);
  std::uint64_t xsdt = 0;
  std::memcpy(&xsdt, &t[24], 8);
  auto table = [&](std::uint64_t gpa) {
    const std::size_t at = gpa - base;
    std::uint32_t len = 0;
    std::memcpy(&len, &t.at(at + 4), 4);
    EXPECT_EQ(sum(at, len), 0) << std::string(t.begin() + at, t.begin() + at + 4);
    return std::pair{at, len};
  };
  auto [xat, xlen] = table(xsdt);
  ASSERT_EQ(xlen, 36u + 16u);
  int cpus = 0;
  bool fadt = false;
  for (std::size_t i = 0; i < 2; ++i) {
    std::uint64_t entry = 0;
    std::memcpy(&entry, &t[xat + 36 + 8 * i], 8);
    auto [at, len] = table(entry);
    const std::string sig(t.begin() + at, t.begin() + at + 4);
    if (sig == "APIC") {
      for (std::size_t p = at + 44; p < at + len; p += t[p + 1]) cpus += t[p] == 0;
    } else if (sig == "FACP") {
      fadt = true;
      EXPECT_EQ(len, 276u);
      std::uint32_t dsdt = 0;
      std::memcpy(&dsdt, &t[at + 40], 4);
      table(dsdt);
    }
  }
  EXPECT_EQ(cpus, 3);
  EXPECT_TRUE(fadt);
}

}  // namespace
}  // namespace glassbox::vmm
