// KVMI_VCPU_GET_MTRR_TYPE's computation from MTRR MSR values (Intel SDM vol. 3, 11.11).
#include <gtest/gtest.h>

#include "introspection/vcpu_commands.h"

namespace glassbox::introspection {
namespace {

constexpr std::uint8_t kUc = 0, kWc = 1, kWt = 4, kWb = 6;

MtrrState enabled(std::uint8_t default_type) {
  MtrrState m;
  m.cap = 0x508;  // 8 variable ranges, fixed ranges, WC (as KVM reports)
  m.def_type = (1u << 11) | default_type;
  return m;
}

TEST(MtrrType, DisabledMtrrsMeanUncacheable) {
  MtrrState m = enabled(kWb);
  m.def_type = kWb;  // E bit clear
  EXPECT_EQ(mtrr_memory_type(m, 0x100000), kUc);
}

TEST(MtrrType, DefaultTypeAppliesWhereNoRangeMatches) {
  EXPECT_EQ(mtrr_memory_type(enabled(kWb), 0x12345000), kWb);
}

TEST(MtrrType, FixedRangesCoverTheFirstMegabyteWhenEnabled) {
  MtrrState m = enabled(kWb);
  m.def_type |= 1u << 10;              // fixed ranges on
  m.fixed[0] = 0x0606060606060606ULL;  // 0-512K: WB
  m.fixed[2] = 0x0000000000000001ULL;  // 0xA0000: WC, rest UC
  m.fixed[3] = 0x0505050505050505ULL;  // 0xC0000-0xC7FFF: WP
  EXPECT_EQ(mtrr_memory_type(m, 0x7000), kWb);
  EXPECT_EQ(mtrr_memory_type(m, 0xa0000), kWc);
  EXPECT_EQ(mtrr_memory_type(m, 0xa4000), kUc);
  EXPECT_EQ(mtrr_memory_type(m, 0xc1000), 5);
  EXPECT_EQ(mtrr_memory_type(m, 0x100000), kWb) << "above 1 MiB the fixed ranges do not apply";
}

TEST(MtrrType, VariableRangesWithUcAndWtPrecedence) {
  MtrrState m = enabled(kWb);
  // 0xC0000000 + 1 GiB: UC; 0x80000000 + 256 MiB: WT; overlapping WB at 0x80000000 + 2 GiB.
  m.var_base[0] = 0xc0000000ULL | kUc;
  m.var_mask[0] = 0xfc0000000ULL | (1u << 11);
  m.var_base[1] = 0x80000000ULL | kWt;
  m.var_mask[1] = 0xff0000000ULL | (1u << 11);
  m.var_base[2] = 0x0ULL | kWb;
  m.var_mask[2] = 0xf80000000ULL | (1u << 11);
  m.var_base[3] = 0x80000000ULL | kWb;
  m.var_mask[3] = 0xf80000000ULL | (1u << 11);
  EXPECT_EQ(mtrr_memory_type(m, 0xfee00000), kUc);
  EXPECT_EQ(mtrr_memory_type(m, 0x80001000), kWt) << "WT wins over an overlapping WB";
  EXPECT_EQ(mtrr_memory_type(m, 0x90000000), kWb);
  m.var_mask[0] &= ~(1ULL << 11);  // invalid ranges are ignored
  EXPECT_EQ(mtrr_memory_type(m, 0xfee00000), kWb);
}

}  // namespace
}  // namespace glassbox::introspection
