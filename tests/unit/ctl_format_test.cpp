// glassbox-ctl's renderings, pinned byte for byte: scripts and eyes depend on them.
#include <gtest/gtest.h>

#include <array>
#include <string>

#include <cstring>

#include "event_json.h"
#include "format.h"
#include "glassbox/client/session.h"
#include "glassbox/kvmi/events.h"
#include "progress.h"

using namespace glassbox::ctl;

namespace {

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> out;
  for (char c : s) out.push_back(static_cast<std::byte>(c));
  return out;
}

}  // namespace

TEST(CtlHexDump, AlignedLineShowsAddressHexAndAscii) {
  EXPECT_EQ(hex_dump(0x7000, bytes_of("GLASSBOX")),
            "0000000000007000  47 4c 41 53 53 42 4f 58                           |GLASSBOX|\n");
}

TEST(CtlHexDump, UnalignedStartIsPaddedSoColumnsMatchAddresses) {
  auto dump = hex_dump(0x100e, bytes_of("ABCD"));
  EXPECT_EQ(
      dump,
      "0000000000001000                                             41 42  |              AB|\n"
      "0000000000001010  43 44                                             |CD|\n");
}

TEST(CtlHexDump, NonPrintableBytesShowAsDots) {
  std::vector<std::byte> b = {std::byte{0}, std::byte{0x7f}, std::byte{0x41}, std::byte{0xff}};
  EXPECT_NE(hex_dump(0, b).find("|..A.|"), std::string::npos);
  EXPECT_EQ(hex_dump(0, {}), "");
}

TEST(CtlFormat, HexBytesRatesUuidAndTime) {
  EXPECT_EQ(to_hex(bytes_of("GLASSBOX")), "474c415353424f58");
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(1 << 20), "1.0 MiB");
  EXPECT_EQ(format_rate(2'000'000, 2.0), "1.0 MB/s");
  EXPECT_EQ(format_rate(1, 0.0), "- MB/s");
  std::array<std::uint8_t, 16> uuid = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
                                       0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
  EXPECT_EQ(format_uuid(uuid), "12345678-9abc-def0-0123-456789abcdef");
  EXPECT_EQ(format_epoch_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_epoch_ms(1'700'000'000'123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(format_epoch_ms(-1), "1969-12-31T23:59:59.999Z");
}

TEST(CtlProgress, FrameShowsBarPercentCountsAndRate) {
  EXPECT_EQ(render_progress(0, 1 << 20, 0.0, 10), "[..........]   0%  0 B / 1.0 MiB  - MB/s");
  EXPECT_EQ(render_progress(1 << 19, 1 << 20, 1.0, 10),
            "[#####.....]  50%  512.0 KiB / 1.0 MiB  0.5 MB/s");
  EXPECT_EQ(render_progress(2 << 20, 1 << 20, 1.0, 4), "[####] 100%  1.0 MiB / 1.0 MiB  1.0 MB/s");
}

TEST(CtlProgress, DisabledBarNeverWrites) {
  char* buffer = nullptr;
  std::size_t size = 0;
  std::FILE* f = open_memstream(&buffer, &size);
  {
    ProgressBar bar(100, /*enabled=*/false, f);
    bar.update(50);
    bar.finish();
  }
  std::fclose(f);
  EXPECT_EQ(size, 0u);
  std::free(buffer);
}

TEST(CtlProgress, EnabledBarEndsItsLine) {
  char* buffer = nullptr;
  std::size_t size = 0;
  std::FILE* f = open_memstream(&buffer, &size);
  {
    ProgressBar bar(100, /*enabled=*/true, f);
    bar.update(50);
    bar.finish();
  }
  std::fclose(f);
  std::string text(buffer, size);
  std::free(buffer);
  EXPECT_EQ(text.front(), '\r');
  EXPECT_EQ(text.back(), '\n');
  EXPECT_NE(text.find("100%"), std::string::npos);
}

namespace {

// An event message as the VMM sends it: the common part, then `specific`.
template <typename T>
glassbox::client::ReceivedEvent make_event(glassbox::kvmi::EventId id, std::uint16_t vcpu,
                                           std::uint32_t seq, const T& specific) {
  namespace kvmi = glassbox::kvmi;
  kvmi::Event common{};
  common.size = kvmi::kEventCommonSize;
  common.vcpu = vcpu;
  common.event = static_cast<std::uint8_t>(id);
  common.arch.mode = 8;
  common.arch.regs.rip = 0x101234;
  common.arch.sregs.cr3 = 0x5000;
  common.arch.sregs.cs.selector = 0x08;
  glassbox::client::Message message;
  message.hdr.id = static_cast<std::uint16_t>(kvmi::MessageId::Event);
  message.hdr.seq = seq;
  message.payload.resize(sizeof common + sizeof specific);
  std::memcpy(message.payload.data(), &common, sizeof common);
  std::memcpy(message.payload.data() + sizeof common, &specific, sizeof specific);
  message.hdr.size = static_cast<std::uint16_t>(message.payload.size());
  return glassbox::client::ReceivedEvent(std::move(message));
}

}  // namespace

TEST(CtlEventJson, PageFaultCarriesGpaAccessAndANullUnknownGva) {
  glassbox::kvmi::EventPf pf{};
  pf.gva = ~0ull;
  pf.gpa = 0x102000;
  pf.access = glassbox::kvmi::kPageAccessW;
  auto j = event_json(make_event(glassbox::kvmi::EventId::Pf, 1, 42, pf));
  EXPECT_EQ(j["event"], "pf");
  EXPECT_EQ(j["vcpu"], 1);
  EXPECT_EQ(j["seq"], 42);
  EXPECT_EQ(j["rip"], "0x101234");
  EXPECT_EQ(j["cr3"], "0x5000");
  EXPECT_EQ(j["cpl"], 0);
  EXPECT_TRUE(j["gva"].is_null());
  EXPECT_EQ(j["gpa"], "0x102000");
  EXPECT_EQ(j["access"], "w");
}

TEST(CtlEventJson, MsrBreakpointAndSinglestepFields) {
  glassbox::kvmi::EventMsr msr{};
  msr.msr = 0xc0000082;
  msr.old_value = 0x100400;
  msr.new_value = 0xbad;
  auto m = event_json(make_event(glassbox::kvmi::EventId::Msr, 0, 1, msr));
  EXPECT_EQ(m["event"], "msr");
  EXPECT_EQ(m["msr"], "0xc0000082");
  EXPECT_EQ(m["old"], "0x100400");
  EXPECT_EQ(m["new"], "0xbad");

  glassbox::kvmi::EventBreakpoint bp{};
  bp.gpa = 0x101234;
  bp.insn_len = 1;
  auto b = event_json(make_event(glassbox::kvmi::EventId::Breakpoint, 0, 2, bp));
  EXPECT_EQ(b["event"], "breakpoint");
  EXPECT_EQ(b["gpa"], "0x101234");
  EXPECT_EQ(b["insn_len"], 1);

  glassbox::kvmi::EventSinglestep step{};
  step.failed = 1;
  auto s = event_json(make_event(glassbox::kvmi::EventId::Singlestep, 0, 3, step));
  EXPECT_EQ(s["event"], "singlestep");
  EXPECT_EQ(s["failed"], true);
}

TEST(CtlPageAccessEntries, OneEntryPerPageTheRangeTouches) {
  auto one = glassbox::client::page_access_entries(0x100fff, 2, 5);
  ASSERT_EQ(one.size(), 2u);
  EXPECT_EQ(one[0].gpa, 0x100000u);
  EXPECT_EQ(one[1].gpa, 0x101000u);
  EXPECT_EQ(one[1].access, 5);
  EXPECT_EQ(glassbox::client::page_access_entries(0x1000, 0x1000, 7).size(), 1u);
  EXPECT_TRUE(glassbox::client::page_access_entries(0x1000, 0, 7).empty());
  auto top = glassbox::client::page_access_entries(~0ull - 0xfff, ~0ull, 1);
  EXPECT_EQ(top.size(), 1u);
}
