// One host thread per vCPU. The thread configures its vCPU (every vCPU ioctl runs on the vCPU's
// own thread), then runs the exit loop: KVM_RUN, dispatch the exit, repeat until the machine
// stops. Other threads get the vCPU's attention with kick(): a signal whose handler sets
// kvm_run.immediate_exit, so a kick that lands just before KVM_RUN is not lost either.
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>

#include "kvm/vcpu.h"

namespace glassbox::vmm {

class Machine;

class VcpuThread {
 public:
  VcpuThread(Machine& machine, kvm::Vcpu vcpu);
  ~VcpuThread();
  VcpuThread(const VcpuThread&) = delete;
  VcpuThread& operator=(const VcpuThread&) = delete;

  void start();
  void join();
  // Makes the vCPU leave KVM_RUN promptly (from any thread).
  void kick();

  int index() const { return vcpu_.index(); }
  // Exits handled so far (read by benchmarks and diagnostics).
  std::uint64_t exit_count() const { return exits_.load(std::memory_order_relaxed); }

  // Installs the process-wide kick signal handler; call once before any vCPU thread starts.
  static void install_kick_handler();

 private:
  void thread_main();
  bool configure();
  // Returns false when the machine must stop.
  bool handle_exit();
  void handle_io(kvm_run& run);
  void handle_mmio(kvm_run& run);
  bool handle_internal_error(kvm_run& run);
  void reinject_breakpoint(kvm_run& run, std::uint64_t insn_len);
  void fail(const std::string& what);

  Machine& machine_;
  kvm::Vcpu vcpu_;
  std::thread thread_;
  std::atomic<pthread_t> native_handle_{};
  std::atomic<bool> running_{false};
  std::atomic<std::uint64_t> exits_{0};
};

}  // namespace glassbox::vmm
