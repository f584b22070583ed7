// A 16550A-compatible UART (COM1 by default). The transmitter writes to a file descriptor (the
// console); the receiver takes bytes pushed by the VMM's console input (receive()) into a 16-byte
// FIFO. It answers the register reads a Linux 8250 driver makes while probing and configuring:
// scratch register, IER, FCR/IIR with FIFOs, LCR/DLAB divisor latch, MCR loopback reflected in
// MSR, and an LSR whose transmitter is always empty (output is written at once).
//
// Interrupts: received data (IER bit 0) and transmitter empty (IER bit 1), reported in IIR by the
// 16550's priorities and delivered as an edge on the ISA line when one becomes pending, gated by
// MCR.OUT2 as on a PC. The transmitter-empty interrupt is what Linux's driver waits for before
// sending the next bytes a program wrote to the tty, so without it user space output stalls.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <string>

#include "vmm/io_bus.h"

namespace glassbox::vmm {

class Serial8250 final : public Device {
 public:
  static constexpr std::size_t kFifoSize = 16;
  // Pulses the UART's interrupt line (called with the device's lock held; must not call back).
  using IrqPulse = std::function<void()>;

  explicit Serial8250(int output_fd, IrqPulse irq = {})
      : output_fd_(output_fd), irq_(std::move(irq)) {}
  ~Serial8250() override;

  std::string name() const override { return "serial-8250"; }
  void read(const AccessContext& ctx, std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(const AccessContext& ctx, std::uint64_t offset,
             std::span<const std::uint8_t> data) override;

  // Console input: queues as many of `bytes` as the receive FIFO has room for and returns how
  // many it took. Any thread.
  std::size_t receive(std::span<const std::uint8_t> bytes);
  // Waits until the FIFO has room, `timeout_ms` at most; true when it has.
  bool wait_for_room(int timeout_ms);

  // Writes out any partial line (called when the VM stops).
  void flush();

 private:
  std::uint8_t read_register(std::uint64_t offset);
  void write_register(std::uint64_t offset, std::uint8_t value);
  void transmit(std::uint8_t byte);
  void flush_locked();
  // The IIR value for the highest-priority pending interrupt (0x01 when none).
  std::uint8_t pending_interrupt() const;
  // Pulses the line when an interrupt became pending since the last look.
  void update_interrupt();

  std::mutex mutex_;
  std::condition_variable room_;
  int output_fd_;
  IrqPulse irq_;
  std::string pending_;  // console output is written line by line
  std::deque<std::uint8_t> rx_;
  std::uint8_t ier_ = 0, lcr_ = 0x03, mcr_ = 0x08, scr_ = 0, fcr_ = 0;
  std::uint8_t dll_ = 0x0c, dlm_ = 0;  // 9600 baud out of reset
  bool thr_interrupt_ = false;         // transmitter empty, not yet acknowledged by an IIR read
  bool irq_raised_ = false;            // an interrupt was pending at the last update
};

}  // namespace glassbox::vmm
