// Unit tests of the VMM's pure parts: size parsing, the bus, the 8250 registers, the page walker.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "vmm/devices/serial_8250.h"
#include "vmm/guest_memory.h"
#include "vmm/io_bus.h"
#include "vmm/machine.h"
#include "vmm/x86/page_walk.h"

namespace glassbox::vmm {
namespace {

TEST(ParseSize, AcceptsUnitsAndRejectsGarbage) {
  EXPECT_EQ(parse_size("128M"), 128ULL << 20);
  EXPECT_EQ(parse_size("1G"), 1ULL << 30);
  EXPECT_EQ(parse_size("512MiB"), 512ULL << 20);
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("64k"), 64u << 10);
  EXPECT_FALSE(parse_size("lots"));
  EXPECT_FALSE(parse_size("12T"));
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("99999999999999999999G"));
}

class Recorder final : public Device {
 public:
  std::string name() const override { return "recorder"; }
  void read(const AccessContext&, std::uint64_t offset, std::span<std::uint8_t> data) override {
    std::memset(data.data(), static_cast<int>(offset), data.size());
  }
  void write(const AccessContext&, std::uint64_t offset, std::span<const std::uint8_t>) override {
    last_offset = offset;
  }
  std::uint64_t last_offset = ~0ULL;
};

TEST(Bus, DispatchesByRangeAndAnswersUnclaimedWithAllOnes) {
  Bus bus("test");
  auto dev = std::make_shared<Recorder>();
  bus.add(0x100, 8, dev);
  std::uint8_t byte = 0;
  bus.write({}, 0x105, std::span<const std::uint8_t>(&byte, 1));
  EXPECT_EQ(dev->last_offset, 5u);
  std::uint8_t data[2];
  bus.read({}, 0x103, data);
  EXPECT_EQ(data[0], 3);
  bus.read({}, 0x108, data);
  EXPECT_EQ(data[0], 0xff);
  EXPECT_EQ(data[1], 0xff);
  EXPECT_THROW(bus.add(0x104, 2, dev), std::invalid_argument);
  EXPECT_THROW(bus.add(0xff, 2, dev), std::invalid_argument);
  EXPECT_NO_THROW(bus.add(0x108, 1, dev));
}

struct SerialFixture : ::testing::Test {
  void SetUp() override { ASSERT_EQ(pipe(fds), 0); }
  void TearDown() override {
    close(fds[0]);
    close(fds[1]);
  }
  std::uint8_t in(Serial8250& s, std::uint64_t reg) {
    std::uint8_t v = 0;
    s.read({}, reg, std::span<std::uint8_t>(&v, 1));
    return v;
  }
  void out(Serial8250& s, std::uint64_t reg, std::uint8_t v) {
    s.write({}, reg, std::span<const std::uint8_t>(&v, 1));
  }
  int fds[2];
};

TEST_F(SerialFixture, AnswersTheRegistersALinuxDriverProbes) {
  Serial8250 uart(fds[1]);
  out(uart, 7, 0xa5);
  EXPECT_EQ(in(uart, 7), 0xa5);  // scratch register
  out(uart, 1, 0x0f);
  EXPECT_EQ(in(uart, 1), 0x0f);  // IER keeps its low nibble
  out(uart, 2, 0x01);
  EXPECT_EQ(in(uart, 2) & 0xc0, 0xc0);  // FIFOs reported enabled
  EXPECT_EQ(in(uart, 5) & 0x60, 0x60);  // transmitter always empty
  out(uart, 3, 0x80);                   // DLAB
  out(uart, 0, 0x01);
  out(uart, 1, 0x00);
  EXPECT_EQ(in(uart, 0), 0x01);  // divisor latch
  out(uart, 3, 0x03);
  out(uart, 4, 0x1f);  // loopback with all outputs
  EXPECT_EQ(in(uart, 6) & 0xf0, 0xf0);
  out(uart, 0, 'x');  // looped back, not transmitted
  EXPECT_EQ(in(uart, 5) & 1, 1);
  EXPECT_EQ(in(uart, 0), 'x');
  out(uart, 4, 0x08);
  for (char c : std::string("hi\n")) out(uart, 0, static_cast<std::uint8_t>(c));
  char buf[8] = {};
  ASSERT_EQ(read(fds[0], buf, sizeof buf), 3);
  EXPECT_STREQ(buf, "hi\n");
}

TEST_F(SerialFixture, ReceivedBytesRaiseTheInterruptAndAreReadInOrder) {
  int pulses = 0;
  Serial8250 uart(fds[1], [&] { ++pulses; });
  const std::uint8_t input[] = {'l', 's', '\n'};
  EXPECT_EQ(uart.receive(input), 3u);
  EXPECT_EQ(pulses, 0);  // no interrupt enabled, none delivered
  EXPECT_EQ(in(uart, 5) & 1, 1);
  out(uart, 4, 0x0b);  // DTR, RTS, OUT2: the line reaches the PIC
  out(uart, 1, 0x01);  // received-data interrupt
  EXPECT_EQ(pulses, 1);
  EXPECT_EQ(in(uart, 2) & 0x0f, 0x04);
  EXPECT_EQ(in(uart, 0), 'l');
  EXPECT_EQ(in(uart, 0), 's');
  EXPECT_EQ(in(uart, 0), '\n');
  EXPECT_EQ(in(uart, 2) & 0x0f, 0x01);  // nothing pending once the FIFO is drained
  EXPECT_EQ(in(uart, 5) & 1, 0);
  EXPECT_EQ(uart.receive(input), 3u);
  EXPECT_EQ(pulses, 2);  // a new edge for new data
  // The FIFO holds 16 bytes; the rest waits for the guest.
  std::vector<std::uint8_t> many(40, 'x');
  EXPECT_EQ(uart.receive(many), Serial8250::kFifoSize - 3);
  EXPECT_FALSE(uart.wait_for_room(0));
  in(uart, 0);
  EXPECT_TRUE(uart.wait_for_room(0));
}

TEST_F(SerialFixture, TransmitterEmptyInterruptDrivesAnInterruptDrivenWriter) {
  int pulses = 0;
  Serial8250 uart(fds[1], [&] { ++pulses; });
  out(uart, 4, 0x08);
  out(uart, 1, 0x02);  // enabling THRI with an empty holding register interrupts at once
  EXPECT_EQ(pulses, 1);
  EXPECT_EQ(in(uart, 2) & 0x0f, 0x02);
  EXPECT_EQ(in(uart, 2) & 0x0f, 0x01);  // the IIR read acknowledged it
  out(uart, 0, 'a');                    // each byte sent empties the register again
  EXPECT_EQ(pulses, 2);
  EXPECT_EQ(in(uart, 2) & 0x0f, 0x02);
  out(uart, 1, 0x00);
  out(uart, 0, '\n');
  EXPECT_EQ(pulses, 2);  // disabled: no more edges
  out(uart, 4, 0x00);    // OUT2 low gates the line even when enabled
  out(uart, 1, 0x02);
  EXPECT_EQ(pulses, 2);
  char buf[4] = {};
  ASSERT_EQ(read(fds[0], buf, sizeof buf), 2);
  EXPECT_STREQ(buf, "a\n");
}

TEST(PageWalk, FollowsFourLevelTablesWithPermissions) {
  auto mem = GuestMemory::create(4 << 20);
  ASSERT_TRUE(mem);
  auto put = [&](std::uint64_t gpa, std::uint64_t v) { mem->write(gpa, &v, 8); };
  // PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000 -> page 0x200000.
  const std::uint64_t gva = 0x0000'7f00'0040'1234ULL;
  const auto i4 = (gva >> 39) & 511, i3 = (gva >> 30) & 511, i2 = (gva >> 21) & 511,
             i1 = (gva >> 12) & 511;
  put(0x1000 + i4 * 8, 0x2000 | 7);
  put(0x2000 + i3 * 8, 0x3000 | 7);
  put(0x3000 + i2 * 8, 0x4000 | 5);  // read-only at this level
  put(0x4000 + i1 * 8, 0x200000 | 7 | (1ULL << 63));
  auto t = x86::translate(*mem, 0x1000, gva);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->gpa, 0x200234u);
  EXPECT_FALSE(t->writable);
  EXPECT_TRUE(t->user);
  EXPECT_FALSE(t->executable);
  EXPECT_FALSE(x86::translate(*mem, 0x1000, gva + 0x1000));        // PTE not present
  EXPECT_FALSE(x86::translate(*mem, 0x1000, 0x0000800000000000));  // not canonical
  // A 2 MiB page at the PD level.
  put(0x3000 + ((i2 + 1) & 511) * 8, 0x200000 | 0x83);
  auto big = x86::translate(*mem, 0x1000, gva + (1 << 21));
  ASSERT_TRUE(big);
  EXPECT_EQ(big->page_size, 2u << 20);
  EXPECT_EQ(big->gpa, 0x200000u + ((gva + (1 << 21)) & ((1 << 21) - 1)));
}

TEST(GuestMemory, RejectsRangesOutsideRam) {
  auto mem = GuestMemory::create(1 << 20);
  ASSERT_TRUE(mem);
  std::uint64_t v = 0;
  EXPECT_TRUE(mem->read_value((1 << 20) - 8, v));
  EXPECT_FALSE(mem->read_value((1 << 20) - 4, v));
  EXPECT_TRUE(mem->span(~0ULL - 2, 8).empty());
  EXPECT_EQ(mem->max_gfn(), 255u);
}

}  // namespace
}  // namespace glassbox::vmm
