// glassbox-ctl's argument parsers: what they accept, and that refusals say why.
#include <gtest/gtest.h>

#include "parse.h"

using namespace glassbox::ctl;

TEST(CtlParseSize, AcceptsDecimalHexAndBinarySuffixes) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("0x7000"), 0x7000u);
  EXPECT_EQ(parse_size("0X7ff000"), 0x7ff000u);
  EXPECT_EQ(parse_size("4K"), 4096u);
  EXPECT_EQ(parse_size("4k"), 4096u);
  EXPECT_EQ(parse_size("16M"), 16u << 20);
  EXPECT_EQ(parse_size("2MiB"), 2u << 20);
  EXPECT_EQ(parse_size("1G"), 1ull << 30);
  EXPECT_EQ(parse_size("0x10K"), 0x4000u);
  EXPECT_EQ(parse_size("0xffffffffffffffff"), ~0ull);
}

TEST(CtlParseSize, RefusesGarbageAndOverflowWithAReason) {
  EXPECT_NE(parse_size("").error().find("empty"), std::string::npos);
  EXPECT_NE(parse_size("zz").error().find("not a number"), std::string::npos);
  EXPECT_NE(parse_size("0x").error().find("not a number"), std::string::npos);
  EXPECT_NE(parse_size("5Q").error().find("suffix 'Q'"), std::string::npos);
  EXPECT_NE(parse_size("-1").error().find("not a number"), std::string::npos);
  EXPECT_NE(parse_size("0x1ffffffffffffffff").error().find("64 bits"), std::string::npos);
  EXPECT_NE(parse_size("17179869184G").error().find("64 bits"), std::string::npos);
}

TEST(CtlParseHexBytes, AcceptsPlainSpacedPrefixedAndColonSeparated) {
  auto expect =
      std::vector<std::byte>{std::byte{0xde}, std::byte{0xad}, std::byte{0xbe}, std::byte{0xef}};
  EXPECT_EQ(parse_hex_bytes("deadbeef"), expect);
  EXPECT_EQ(parse_hex_bytes("DE AD BE EF"), expect);
  EXPECT_EQ(parse_hex_bytes("0xdeadbeef"), expect);
  EXPECT_EQ(parse_hex_bytes("0xde 0xad 0xbe 0xef"), expect);
  EXPECT_EQ(parse_hex_bytes("de:ad:be:ef"), expect);
}

TEST(CtlParseHexBytes, RefusesOddCountsSplitBytesAndNonHex) {
  EXPECT_NE(parse_hex_bytes("abc").error().find("odd"), std::string::npos);
  EXPECT_NE(parse_hex_bytes("a bc").error().find("splits"), std::string::npos);
  EXPECT_NE(parse_hex_bytes("zz").error().find("'z' at offset 0"), std::string::npos);
  EXPECT_NE(parse_hex_bytes("  ").error().find("no bytes"), std::string::npos);
}

TEST(CtlParseEndpoint, TakesUnixPathsOnly) {
  EXPECT_EQ(parse_endpoint("unix:/run/vm.sock")->path, "/run/vm.sock");
  EXPECT_FALSE(parse_endpoint("/run/vm.sock"));
  EXPECT_FALSE(parse_endpoint("unix:"));
  EXPECT_FALSE(parse_endpoint("unix:/" + std::string(200, 'a')));
}

TEST(CtlParseGpaRange, AcceptsOneAddressAnExclusiveEndAndASize) {
  auto one = parse_gpa_range("0x100123");
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->start, 0x100123u);
  EXPECT_EQ(one->size, 1u);
  auto dots = parse_gpa_range("0x100000..0x103000");
  ASSERT_TRUE(dots.has_value());
  EXPECT_EQ(dots->start, 0x100000u);
  EXPECT_EQ(dots->size, 0x3000u);
  auto plus = parse_gpa_range("0x100000+16K");
  ASSERT_TRUE(plus.has_value());
  EXPECT_EQ(plus->size, 0x4000u);
}

TEST(CtlParseGpaRange, RefusesEmptyBackwardAndOverflowingRanges) {
  EXPECT_NE(parse_gpa_range("0x2000..0x1000").error().find("ends before"), std::string::npos);
  EXPECT_NE(parse_gpa_range("0x2000..0x2000").error().find("ends before"), std::string::npos);
  EXPECT_NE(parse_gpa_range("0x1000+0").error().find("empty"), std::string::npos);
  EXPECT_NE(parse_gpa_range("0xffffffffffffff00+0x200").error().find("past the end"),
            std::string::npos);
  EXPECT_NE(parse_gpa_range("zz..0x1000").error().find("not a number"), std::string::npos);
  EXPECT_FALSE(parse_gpa_range("").has_value());
}

TEST(CtlParsePageAccess, LettersInAnyOrderNoneAndNumbers) {
  EXPECT_EQ(parse_page_access("r"), 1);
  EXPECT_EQ(parse_page_access("rw"), 3);
  EXPECT_EQ(parse_page_access("rx"), 5);
  EXPECT_EQ(parse_page_access("XR"), 5);
  EXPECT_EQ(parse_page_access("rwx"), 7);
  EXPECT_EQ(parse_page_access("r-x"), 5);
  EXPECT_EQ(parse_page_access("none"), 0);
  EXPECT_EQ(parse_page_access("-"), 0);
  EXPECT_EQ(parse_page_access("6"), 6);
  EXPECT_NE(parse_page_access("rq").error().find("'q'"), std::string::npos);
  EXPECT_NE(parse_page_access("rr").error().find("twice"), std::string::npos);
  EXPECT_FALSE(parse_page_access("8").has_value());
  EXPECT_EQ(page_access_letters(5), "r-x");
  EXPECT_EQ(page_access_letters(7), "rwx");
  EXPECT_EQ(page_access_letters(0), "---");
}

TEST(CtlParseEventList, ShortAndKvmiNamesAndNumbersEachOnceInOrder) {
  auto ids = parse_event_list("breakpoint,MSR,pf,hypercall,singlestep,pause,KVMI_EVENT_TRAP,pf");
  ASSERT_TRUE(ids.has_value()) << ids.error();
  EXPECT_EQ(*ids, (std::vector<std::uint16_t>{3, 8, 9, 2, 10, 1, 5}));
  EXPECT_EQ(parse_event_list("9"), (std::vector<std::uint16_t>{9}));
  EXPECT_EQ(event_short_name(9), "pf");
  EXPECT_EQ(event_short_name(3), "breakpoint");
}

TEST(CtlParseEventList, RefusesUnknownEmptyAndVmWideEvents) {
  EXPECT_NE(parse_event_list("breakpoint,bogus").error().find("'bogus'"), std::string::npos);
  EXPECT_NE(parse_event_list("msr,,pf").error().find("empty"), std::string::npos);
  EXPECT_NE(parse_event_list("unhook").error().find("VM-wide"), std::string::npos);
  EXPECT_FALSE(parse_event_list("").has_value());
  EXPECT_FALSE(parse_event_list("11").has_value());
}

TEST(CtlParseEventAction, ThreeActionsCaseInsensitive) {
  EXPECT_EQ(parse_event_action("continue"), 0);
  EXPECT_EQ(parse_event_action("RETRY"), 1);
  EXPECT_EQ(parse_event_action("crash"), 2);
  EXPECT_NE(parse_event_action("skip").error().find("'skip'"), std::string::npos);
}

TEST(CtlParseMsr, NamesAndNumbers) {
  EXPECT_EQ(parse_msr("lstar"), 0xc0000082u);
  EXPECT_EQ(parse_msr("LSTAR"), 0xc0000082u);
  EXPECT_EQ(parse_msr("0x174"), 0x174u);
  EXPECT_NE(parse_msr("0x100000000").error().find("32 bits"), std::string::npos);
  EXPECT_FALSE(parse_msr("lstr").has_value());
  EXPECT_EQ(format_msr(0xc0000082), "lstar (0xc0000082)");
  EXPECT_EQ(format_msr(0x10), "msr 0x10");
}
