// One host thread per vCPU. The thread configures its vCPU (every vCPU ioctl runs on the vCPU's
// own thread), then runs the exit loop: KVM_RUN, dispatch the exit, repeat until the machine
// stops. Other threads get the vCPU's attention with kick(): a signal whose handler sets
// kvm_run.immediate_exit, so a kick that lands just before KVM_RUN is not lost either.
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "kvm/error.h"
#include "kvm/vcpu.h"

namespace glassbox::vmm {

class Machine;
class VcpuThread;

// Code that must run on a vCPU's thread right before a guest entry, outside any job: the
// introspection server delivers pause events and exception injections here (they may block the
// vCPU in an event, which a job must not do inside another event's wait).
class VcpuEntryGate {
 public:
  virtual ~VcpuEntryGate() = default;
  virtual void before_entry(VcpuThread& vcpu) = 0;
};

class VcpuThread {
 public:
  VcpuThread(Machine& machine, kvm::Vcpu vcpu);
  ~VcpuThread();
  VcpuThread(const VcpuThread&) = delete;
  VcpuThread& operator=(const VcpuThread&) = delete;

  void start();
  void join();
  // Makes the vCPU leave KVM_RUN promptly, or wakes it from run_work_until() (any thread).
  void kick();

  // ---- The vCPU's work queue (where a job is queued) ----
  // Work other threads need done on this vCPU's thread: it runs in FIFO order before the next
  // guest entry, or while the thread waits in run_work_until(). post() is callable from any
  // thread; it raises the request flag and kicks the vCPU.
  using Work = std::function<void(VcpuThread&)>;
  void post(Work work);
  // On this vCPU's thread: runs posted work, blocking for more, until done() holds or the machine
  // stops (then returns false). done() is checked after each job and after each wake-up.
  // With stop_at_done, jobs queued behind the one that made done() true stay queued (they run
  // before the next guest entry): an event's caller acts on the state its answer left.
  bool run_work_until(const std::function<bool()>& done, bool stop_at_done = false);

  // Asks the vCPU to pass through the machine's entry gate before its next entry (any thread).
  // Call post() or kick() afterwards to get it out of KVM_RUN.
  void request_gate() { gate_requested_.store(true, std::memory_order_seq_cst); }

  // ---- State access for code running on this vCPU's thread ----
  kvm::Vcpu& vcpu() { return vcpu_; }
  // Registers as of the last exit (KVM_CAP_SYNC_REGS). Changes made through the mutable
  // accessors are handed to KVM at the next KVM_RUN.
  const kvm_regs& regs() const { return vcpu_.run()->s.regs.regs; }
  const kvm_sregs& sregs() const { return vcpu_.run()->s.regs.sregs; }
  const kvm_vcpu_events& events() const { return vcpu_.run()->s.regs.events; }
  kvm_regs& mutable_regs();
  kvm_sregs& mutable_sregs();
  kvm_vcpu_events& mutable_events();
  Machine& machine() { return machine_; }

  // ---- Guest debug, owned jointly by the VMM and the intercepts (vCPU thread only) ----
  // KVM_GUESTDBG_* bits beyond ENABLE: USE_SW_BP to see guest #BPs as KVM_EXIT_DEBUG (hardware
  // KVM), SINGLESTEP to step. Applied at once with KVM_SET_GUEST_DEBUG when they change.
  SysResult<void> set_guest_debug_flags(std::uint32_t flags);
  std::uint32_t guest_debug_flags() const { return guest_debug_flags_; }
  // One KVM_RUN outside the exit loop, for code that must run the guest itself (e.g. one access
  // on a page mapped for it), announced like the loop's so that a kick (a stop, a pause) ends it.
  // kInterrupted when a kick or a pending stop ended it before or during the run.
  SysResult<kvm::Vcpu::RunOutcome> run_guest_once();

  int index() const { return vcpu_.index(); }

  // Installs the process-wide kick signal handler; call once before any vCPU thread starts.
  static void install_kick_handler();

 private:
  void thread_main();
  bool configure();
  // Runs every job queued so far; returns once the queue is empty, or as soon as a job made
  // `stop_after` true.
  void run_posted_work(const std::function<bool()>& stop_after = {});
  // Returns false when the machine must stop.
  bool handle_exit();
  void handle_io(kvm_run& run);
  void handle_mmio(kvm_run& run);
  bool handle_internal_error(kvm_run& run);
  bool handle_debug(kvm_run& run);
  SysResult<void> write_guest_debug(std::uint32_t flags);
  // Right before KVM_RUN: the guest debug flags for this entry.
  void apply_entry_debug_flags();
  void handle_msr_write(kvm_run& run);
  // A guest #BP: the intercepts decide whether it goes back to the guest.
  void on_guest_breakpoint(kvm_run& run, std::uint64_t insn_len);
  void reinject_breakpoint(kvm_run& run, std::uint64_t insn_len);
  void inject_exception_without_error_code(std::uint8_t vector);
  void fail(const std::string& what);

  Machine& machine_;
  kvm::Vcpu vcpu_;
  std::thread thread_;
  std::atomic<pthread_t> native_handle_{};
  std::atomic<bool> in_guest_{false};  // between the last pre-entry check and KVM_RUN's return

  std::mutex work_mutex_;
  std::condition_variable work_cv_;
  std::deque<Work> work_;
  std::atomic<bool> work_pending_{false};   // the request flag, checked before every guest entry
  std::atomic<bool> gate_requested_{true};  // the gate sees every vCPU before its first entry
  std::uint32_t guest_debug_flags_ = 0;     // what the VMM and intercepts asked for
  std::uint32_t applied_debug_flags_ = 0;   // what KVM has (see apply_entry_debug_flags)
};

}  // namespace glassbox::vmm
