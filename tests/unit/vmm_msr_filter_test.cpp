// Unit tests of the MSR write filter builder (vmm/msr_filter.h): which writes exit, how the
// ranges are laid out, and that the empty set removes the filter.
#include <gtest/gtest.h>

#include "vmm/msr_filter.h"

namespace glassbox::vmm {
namespace {

constexpr std::uint32_t kLstar = 0xc0000082;
constexpr std::uint32_t kTscAux = 0xc0000103;
constexpr std::uint32_t kSysenterCs = 0x174;

TEST(MsrWriteFilter, EmptySetHasNoRangesAndAllowsEverything) {
  const MsrWriteFilter filter({});
  EXPECT_EQ(filter.filter().flags, static_cast<std::uint32_t>(KVM_MSR_FILTER_DEFAULT_ALLOW));
  EXPECT_EQ(filter.range_count(), 0u);
  for (const auto& range : filter.filter().ranges) {
    EXPECT_EQ(range.nmsrs, 0u);
    EXPECT_EQ(range.flags, 0u);
    EXPECT_EQ(range.bitmap, nullptr);
  }
  EXPECT_FALSE(filter.write_exits(kLstar));
  EXPECT_FALSE(filter.write_exits(0));
}

TEST(MsrWriteFilter, HighMsrOnlyUsesOneWriteRange) {
  const MsrWriteFilter filter({kLstar});
  ASSERT_EQ(filter.range_count(), 1u);
  const auto& range = filter.filter().ranges[0];
  EXPECT_EQ(range.flags, static_cast<std::uint32_t>(KVM_MSR_FILTER_WRITE));
  EXPECT_EQ(range.base, 0xc0000000u);
  EXPECT_EQ(range.nmsrs, 0x2000u);
  // Bit 0x82 is clear (exit), every other bit set (allowed).
  EXPECT_EQ(range.bitmap[0x82 / 8], static_cast<std::uint8_t>(~(1u << (0x82 % 8))));
  for (std::uint32_t i = 0; i < 0x2000 / 8; ++i) {
    if (i != 0x82 / 8) {
      EXPECT_EQ(range.bitmap[i], 0xff) << i;
    }
  }
  EXPECT_TRUE(filter.write_exits(kLstar));
  EXPECT_FALSE(filter.write_exits(kLstar - 1));
  EXPECT_FALSE(filter.write_exits(kLstar + 1));
  EXPECT_FALSE(filter.write_exits(0x82));  // the same offset in the low region
  EXPECT_EQ(filter.filter().ranges[1].nmsrs, 0u);
}

TEST(MsrWriteFilter, BothRegionsGetOneRangeEach) {
  const MsrWriteFilter filter({kSysenterCs, kLstar, kTscAux, 0x0, 0x1fff, 0xc0001fff});
  ASSERT_EQ(filter.range_count(), 2u);
  EXPECT_EQ(filter.filter().ranges[0].base, 0u);
  EXPECT_EQ(filter.filter().ranges[1].base, 0xc0000000u);
  for (std::uint32_t msr : {kSysenterCs, kLstar, kTscAux, 0x0u, 0x1fffu, 0xc0001fffu}) {
    EXPECT_TRUE(filter.write_exits(msr)) << std::hex << msr;
  }
  for (std::uint32_t msr : {0x175u, 0x1ffeu, 0xc0000081u, 0xc0001ffeu, 0x2000u, 0xc0002000u}) {
    EXPECT_FALSE(filter.write_exits(msr)) << std::hex << msr;
  }
  // Reads are never filtered: no range carries the READ flag.
  for (std::size_t i = 0; i < filter.range_count(); ++i) {
    EXPECT_EQ(filter.filter().ranges[i].flags & KVM_MSR_FILTER_READ, 0u);
  }
}

TEST(MsrWriteFilter, LowMsrOnlyUsesOneRange) {
  const MsrWriteFilter filter({kSysenterCs});
  ASSERT_EQ(filter.range_count(), 1u);
  EXPECT_EQ(filter.filter().ranges[0].base, 0u);
  EXPECT_TRUE(filter.write_exits(kSysenterCs));
  EXPECT_FALSE(filter.write_exits(kLstar));
}

TEST(MsrWriteFilter, OnlyTheKvmiRegionsAreFilterable) {
  EXPECT_TRUE(MsrWriteFilter::filterable(0));
  EXPECT_TRUE(MsrWriteFilter::filterable(0x1fff));
  EXPECT_TRUE(MsrWriteFilter::filterable(0xc0000000));
  EXPECT_TRUE(MsrWriteFilter::filterable(0xc0001fff));
  EXPECT_FALSE(MsrWriteFilter::filterable(0x2000));
  EXPECT_FALSE(MsrWriteFilter::filterable(0xbfffffff));
  EXPECT_FALSE(MsrWriteFilter::filterable(0xc0002000));
  EXPECT_FALSE(MsrWriteFilter::filterable(0xffffffff));
  // Out-of-range indices are ignored by the builder.
  const MsrWriteFilter filter({0x4b564d99});
  EXPECT_EQ(filter.range_count(), 0u);
}

TEST(MsrWriteFilter, MatchesTheCLayoutTheIoctlNumberEncodes) {
  EXPECT_EQ(sizeof(kvm_msr_filter), 392u);
  EXPECT_EQ(_IOC_SIZE(KVM_X86_SET_MSR_FILTER), sizeof(kvm_msr_filter));
}

}  // namespace
}  // namespace glassbox::vmm
