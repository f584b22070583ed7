// A KVM vCPU fd and its mapped kvm_run page. Every method issues an ioctl on this vCPU, so by the
// project's threading rule only the vCPU's own thread calls them once the vCPU runs.
#pragma once

#include <linux/kvm.h>
#include <signal.h>

#include <cstdint>
#include <span>
#include <vector>

#include "kvm/error.h"
#include "kvm/fd.h"

namespace glassbox::kvm {

class Vcpu {
 public:
  Vcpu(int index, UniqueFd fd, kvm_run* run, std::size_t run_size)
      : index_(index), fd_(std::move(fd)), run_(run), run_size_(run_size) {}
  ~Vcpu();
  Vcpu(Vcpu&& o) noexcept;
  Vcpu& operator=(Vcpu&&) = delete;
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  enum class RunOutcome { kExit, kInterrupted };
  // KVM_RUN. kInterrupted when a signal (or immediate_exit) ended it with EINTR; other failures
  // (e.g. EFAULT on a protected host page) are errors. run()->exit_reason is valid on kExit only.
  SysResult<RunOutcome> run_once();

  kvm_run* run() const { return run_; }
  int index() const { return index_; }
  int fd() const { return fd_.get(); }

  SysResult<kvm_regs> get_regs() const;
  SysResult<void> set_regs(const kvm_regs& regs);
  SysResult<kvm_sregs> get_sregs() const;
  SysResult<void> set_sregs(const kvm_sregs& sregs);
  SysResult<void> set_fpu(const kvm_fpu& fpu);
  SysResult<kvm_vcpu_events> get_events() const;
  SysResult<void> set_events(const kvm_vcpu_events& events);
  SysResult<kvm_mp_state> get_mp_state() const;
  SysResult<void> set_mp_state(std::uint32_t state);
  SysResult<void> set_cpuid(std::span<const kvm_cpuid_entry2> entries);
  SysResult<std::vector<kvm_cpuid_entry2>> get_cpuid() const;
  // Reads the given MSR indices; returns how many were read (KVM stops at the first unknown one).
  SysResult<std::size_t> get_msrs(std::span<kvm_msr_entry> entries) const;
  SysResult<std::size_t> set_msrs(std::span<const kvm_msr_entry> entries);
  SysResult<void> set_guest_debug(const kvm_guest_debug& debug);
  // The signal mask in force while this vCPU is inside KVM_RUN (KVM_SET_SIGNAL_MASK).
  SysResult<void> set_signal_mask(const sigset_t& mask);
  SysResult<std::uint32_t> get_tsc_khz() const;
  // The legacy 4096-byte XSAVE area (KVM_GET_XSAVE).
  SysResult<void> get_xsave(std::span<std::uint8_t, 4096> out) const;

  // KVM_CAP_SYNC_REGS: KVM copies these register sets into kvm_run on every exit.
  void enable_sync_regs(std::uint64_t mask) { run_->kvm_valid_regs = mask; }

 private:
  int index_;
  UniqueFd fd_;
  kvm_run* run_;
  std::size_t run_size_;
};

}  // namespace glassbox::kvm
