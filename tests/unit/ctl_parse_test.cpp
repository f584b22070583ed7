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
