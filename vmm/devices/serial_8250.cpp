#include "vmm/devices/serial_8250.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace glassbox::vmm {

namespace {
// Register offsets (DLAB selects the divisor latch at 0 and 1).
constexpr std::uint64_t kData = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6,
                        kScr = 7;
constexpr std::uint8_t kLcrDlab = 0x80;
constexpr std::uint8_t kMcrOut2 = 0x08, kMcrLoop = 0x10;
constexpr std::uint8_t kIerRxData = 0x01, kIerThrEmpty = 0x02;
constexpr std::uint8_t kFcrEnable = 0x01, kFcrClearRx = 0x02;
constexpr std::uint8_t kLsrDataReady = 0x01, kLsrThrEmpty = 0x20, kLsrTxEmpty = 0x40;
constexpr std::uint8_t kIirNoInterrupt = 0x01, kIirThrEmpty = 0x02, kIirRxData = 0x04,
                       kIirFifoEnabled = 0xc0;
constexpr std::size_t kMaxLine = 4096;
}  // namespace

Serial8250::~Serial8250() {
  flush();
}

void Serial8250::read(const AccessContext&, std::uint64_t offset, std::span<std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  // Wider accesses read consecutive registers, as the ISA bus would split them.
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = read_register(offset + i);
  update_interrupt();
}

void Serial8250::write(const AccessContext&, std::uint64_t offset,
                       std::span<const std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < data.size(); ++i) write_register(offset + i, data[i]);
  update_interrupt();
}

std::size_t Serial8250::receive(std::span<const std::uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  // In loopback the receiver is connected to the transmitter only.
  if (mcr_ & kMcrLoop) return 0;
  std::size_t taken = 0;
  while (taken < bytes.size() && rx_.size() < kFifoSize) rx_.push_back(bytes[taken++]);
  update_interrupt();
  return taken;
}

bool Serial8250::wait_for_room(int timeout_ms) {
  std::unique_lock lock(mutex_);
  return room_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                        [&] { return rx_.size() < kFifoSize && !(mcr_ & kMcrLoop); });
}

std::uint8_t Serial8250::pending_interrupt() const {
  if ((ier_ & kIerRxData) && !rx_.empty()) return kIirRxData;
  if ((ier_ & kIerThrEmpty) && thr_interrupt_) return kIirThrEmpty;
  return kIirNoInterrupt;
}

void Serial8250::update_interrupt() {
  // ISA interrupts are edges: one pulse each time an interrupt becomes pending. The guest's
  // handler reads IIR until nothing is pending, which re-arms the edge.
  const bool pending = pending_interrupt() != kIirNoInterrupt && (mcr_ & kMcrOut2) != 0;
  if (pending && !irq_raised_ && irq_) irq_();
  irq_raised_ = pending;
}

std::uint8_t Serial8250::read_register(std::uint64_t offset) {
  const bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (offset) {
    case kData: {
      if (dlab) return dll_;
      if (rx_.empty()) return 0;
      const std::uint8_t byte = rx_.front();
      rx_.pop_front();
      room_.notify_all();
      return byte;
    }
    case kIer:
      return dlab ? dlm_ : ier_;
    case kIirFcr: {
      const std::uint8_t id = pending_interrupt();
      // Reading IIR acknowledges a transmitter-empty interrupt (16550 data sheet).
      if (id == kIirThrEmpty) thr_interrupt_ = false;
      return static_cast<std::uint8_t>(id | ((fcr_ & kFcrEnable) ? kIirFifoEnabled : 0));
    }
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      return static_cast<std::uint8_t>(kLsrThrEmpty | kLsrTxEmpty |
                                       (rx_.empty() ? 0 : kLsrDataReady));
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
        // Loopback: what is sent is received (one byte deep is all a driver's probe needs).
        rx_.clear();
        rx_.push_back(value);
      } else {
        transmit(value);
      }
      // The byte left at once: the holding register is empty again.
      thr_interrupt_ = true;
      break;
    case kIer:
      if (dlab) {
        dlm_ = value;
      } else {
        // Enabling the transmitter-empty interrupt while the holding register is empty raises
        // it at once (which is how a driver starts a transmission).
        if ((value & kIerThrEmpty) && !(ier_ & kIerThrEmpty)) thr_interrupt_ = true;
        ier_ = value & 0x0f;
      }
      break;
    case kIirFcr:
      fcr_ = value;
      if (value & kFcrClearRx) {
        rx_.clear();
        room_.notify_all();
      }
      break;
    case kLcr:
      lcr_ = value;
      break;
    case kMcr: {
      const bool was_loop = (mcr_ & kMcrLoop) != 0;
      mcr_ = value & 0x1f;
      if (was_loop != ((mcr_ & kMcrLoop) != 0)) {
        rx_.clear();
        room_.notify_all();
      }
      break;
    }
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
