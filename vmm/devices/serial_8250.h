// A 16550A-compatible UART (COM1 by default) whose transmitter writes to a file descriptor (the
// console). It answers the register reads a Linux 8250 driver makes while probing and
// configuring: scratch register, IER, FCR/IIR with FIFOs, LCR/DLAB divisor latch, MCR loopback
// reflected in MSR, and an LSR whose transmitter is always empty. There is no receive source yet,
// so no interrupt is ever raised.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "vmm/io_bus.h"

namespace glassbox::vmm {

class Serial8250 final : public Device {
 public:
  explicit Serial8250(int output_fd) : output_fd_(output_fd) {}
  ~Serial8250() override;

  std::string name() const override { return "serial-8250"; }
  void read(const AccessContext& ctx, std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(const AccessContext& ctx, std::uint64_t offset,
             std::span<const std::uint8_t> data) override;

  // Writes out any partial line (called when the VM stops).
  void flush();

 private:
  std::uint8_t read_register(std::uint64_t offset);
  void write_register(std::uint64_t offset, std::uint8_t value);
  void transmit(std::uint8_t byte);
  void flush_locked();

  std::mutex mutex_;
  int output_fd_;
  std::string pending_;  // console output is written line by line
  std::uint8_t ier_ = 0, lcr_ = 0x03, mcr_ = 0x08, scr_ = 0, fcr_ = 0;
  std::uint8_t dll_ = 0x0c, dlm_ = 0;  // 9600 baud out of reset
  std::uint8_t loopback_rx_ = 0;
  bool loopback_rx_full_ = false;
};

}  // namespace glassbox::vmm
