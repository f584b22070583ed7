#include "vmm/devices/serial_8250.h"

#include <unistd.h>

#include <cerrno>

namespace glassbox::vmm {

namespace {
// Register offsets (DLAB selects the divisor latch at 0 and 1).
constexpr std::uint64_t kData = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6,
                        kScr = 7;
constexpr std::uint8_t kLcrDlab = 0x80;
constexpr std::uint8_t kMcrLoop = 0x10;
constexpr std::uint8_t kLsrDataReady = 0x01, kLsrThrEmpty = 0x20, kLsrTxEmpty = 0x40;
constexpr std::uint8_t kIirNoInterrupt = 0x01, kIirFifoEnabled = 0xc0;
constexpr std::size_t kMaxLine = 4096;
}  // namespace

Serial8250::~Serial8250() {
  flush();
}

void Serial8250::read(const AccessContext&, std::uint64_t offset, std::span<std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  // Wider accesses read consecutive registers, as the ISA bus would split them.
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = read_register(offset + i);
}

void Serial8250::write(const AccessContext&, std::uint64_t offset,
                       std::span<const std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < data.size(); ++i) write_register(offset + i, data[i]);
}

std::uint8_t Serial8250::read_register(std::uint64_t offset) {
  const bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (offset) {
    case kData:
      if (dlab) return dll_;
      if (loopback_rx_full_) {
        loopback_rx_full_ = false;
        return loopback_rx_;
      }
      return 0;
    case kIer:
      return dlab ? dlm_ : ier_;
    case kIirFcr:
      return static_cast<std::uint8_t>(kIirNoInterrupt | ((fcr_ & 1) ? kIirFifoEnabled : 0));
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      return static_cast<std::uint8_t>(kLsrThrEmpty | kLsrTxEmpty |
                                       (loopback_rx_full_ ? kLsrDataReady : 0));
    case kMsr:
      if (mcr_ & kMcrLoop) {
        // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        const std::uint8_t m = mcr_;
        return static_cast<std::uint8_t>(((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) |
                                         ((m & 0x08) << 4));
      }
      return 0xb0;  // DCD, DSR, CTS asserted: a terminal is attached
    case kScr:
      return scr_;
    default:
      return 0xff;
  }
}

void Serial8250::write_register(std::uint64_t offset, std::uint8_t value) {
  const bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (offset) {
    case kData:
      if (dlab) {
        dll_ = value;
      } else if (mcr_ & kMcrLoop) {
        loopback_rx_ = value;
        loopback_rx_full_ = true;
      } else {
        transmit(value);
      }
      break;
    case kIer:
      if (dlab)
        dlm_ = value;
      else
        ier_ = value & 0x0f;
      break;
    case kIirFcr:
      fcr_ = value;
      break;
    case kLcr:
      lcr_ = value;
      break;
    case kMcr:
      mcr_ = value & 0x1f;
      break;
    case kScr:
      scr_ = value;
      break;
    default:
      break;  // LSR and MSR are read-only
  }
}

void Serial8250::transmit(std::uint8_t byte) {
  pending_.push_back(static_cast<char>(byte));
  if (byte == '\n' || pending_.size() >= kMaxLine) flush_locked();
}

void Serial8250::flush() {
  std::lock_guard lock(mutex_);
  flush_locked();
}

void Serial8250::flush_locked() {
  std::size_t done = 0;
  while (done < pending_.size()) {
    ssize_t n = ::write(output_fd_, pending_.data() + done, pending_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // console gone (e.g. closed pipe): drop the output, keep the VM running
    done += static_cast<std::size_t>(n);
  }
  pending_.clear();
}

}  // namespace glassbox::vmm
