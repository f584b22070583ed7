#include "vmm/vcpu_thread.h"

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/machine.h"
#include "vmm/x86/boot_setup.h"
#include "vmm/x86/page_walk.h"
#include "vmm/x86/register_dump.h"

namespace glassbox::vmm {

namespace {
thread_local kvm_run* t_run = nullptr;

int kick_signal() {
  return SIGRTMIN;
}

void on_kick(int) {
  if (t_run != nullptr) t_run->immediate_exit = 1;
}

constexpr std::uint64_t kSyncRegs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;
}  // namespace

void VcpuThread::install_kick_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_kick;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  sigaction(kick_signal(), &sa, nullptr);
}

VcpuThread::VcpuThread(Machine& machine, kvm::Vcpu vcpu)
    : machine_(machine), vcpu_(std::move(vcpu)) {}

VcpuThread::~VcpuThread() {
  join();
}

void VcpuThread::start() {
  thread_ = std::thread([this] { thread_main(); });
}

void VcpuThread::join() {
  if (thread_.joinable()) thread_.join();
}

void VcpuThread::kick() {
  {
    // Taking the lock orders this wake-up with a waiter that is about to block.
    std::lock_guard lock(work_mutex_);
  }
  work_cv_.notify_all();
  // Only a thread in (or about to enter) KVM_RUN needs the signal; one blocked in
  // run_work_until() was woken above. Pairs with the store-then-check in thread_main().
  if (in_guest_.load(std::memory_order_seq_cst)) {
    pthread_kill(native_handle_.load(std::memory_order_acquire), kick_signal());
  }
}

void VcpuThread::post(Work work) {
  {
    std::lock_guard lock(work_mutex_);
    work_.push_back(std::move(work));
    work_pending_.store(true, std::memory_order_seq_cst);
  }
  kick();
}

void VcpuThread::run_posted_work(const std::function<bool()>& stop_after) {
  for (;;) {
    Work job;
    {
      std::lock_guard lock(work_mutex_);
      if (work_.empty()) {
        work_pending_.store(false, std::memory_order_release);
        return;
      }
      job = std::move(work_.front());
      work_.pop_front();
    }
    job(*this);
    if (stop_after && stop_after()) {
      // Jobs queued behind it wait: the caller acts on the state this job left (e.g. an event's
      // answer) before later commands (a page access change sent right after it) can alter it.
      std::lock_guard lock(work_mutex_);
      if (work_.empty()) work_pending_.store(false, std::memory_order_release);
      return;
    }
  }
}

bool VcpuThread::run_work_until(const std::function<bool()>& done, bool stop_at_done) {
  for (;;) {
    run_posted_work(stop_at_done ? done : std::function<bool()>{});
    if (done()) return true;
    if (machine_.stop_requested()) return false;
    // A tool usually follows an event with commands at once; a short spin catches them without
    // the cost of blocking and being woken (bounded, so an idle wait does not burn a core).
    const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    while (!work_pending_.load(std::memory_order_acquire) &&
           std::chrono::steady_clock::now() < spin_until) {
      __builtin_ia32_pause();
    }
    if (work_pending_.load(std::memory_order_acquire)) continue;
    std::unique_lock lock(work_mutex_);
    work_cv_.wait(lock, [&] { return !work_.empty() || machine_.stop_requested(); });
  }
}

kvm_regs& VcpuThread::mutable_regs() {
  vcpu_.run()->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
  return vcpu_.run()->s.regs.regs;
}

kvm_sregs& VcpuThread::mutable_sregs() {
  vcpu_.run()->kvm_dirty_regs |= KVM_SYNC_X86_SREGS;
  return vcpu_.run()->s.regs.sregs;
}

kvm_vcpu_events& VcpuThread::mutable_events() {
  vcpu_.run()->kvm_dirty_regs |= KVM_SYNC_X86_EVENTS;
  return vcpu_.run()->s.regs.events;
}

SysResult<void> VcpuThread::set_guest_debug_flags(std::uint32_t flags) {
  guest_debug_flags_ = flags;
  return write_guest_debug(flags);
}

SysResult<void> VcpuThread::write_guest_debug(std::uint32_t flags) {
  if (flags == applied_debug_flags_) return {};
  kvm_guest_debug debug{};
  debug.control = flags != 0 ? (KVM_GUESTDBG_ENABLE | flags) : 0;
  if (auto r = vcpu_.set_guest_debug(debug); !r) return r;
  applied_debug_flags_ = flags;
  return {};
}

void VcpuThread::apply_entry_debug_flags() {
  std::uint32_t flags = guest_debug_flags_;
  // KVM-PVM runs CPL3 code natively: a step there would hand the trap to the guest's own #DB
  // handler (notes/kvm-backends.md §3). Step only while the vCPU is in (emulated) CPL0 code.
  if ((flags & KVM_GUESTDBG_SINGLESTEP) && machine_.quirks().backend == kvm::Backend::kPvm &&
      (sregs().cs.selector & 3) != 0) {
    flags &= ~static_cast<std::uint32_t>(KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ);
  }
  if (auto r = write_guest_debug(flags); !r) {
    spdlog::warn("vCPU {}: {}", vcpu_.index(), r.error().message());
  }
}

SysResult<kvm::Vcpu::RunOutcome> VcpuThread::run_guest_once() {
  in_guest_.store(true, std::memory_order_seq_cst);
  if (machine_.stop_requested()) {
    in_guest_.store(false, std::memory_order_seq_cst);
    return kvm::Vcpu::RunOutcome::kInterrupted;
  }
  auto outcome = vcpu_.run_once();
  in_guest_.store(false, std::memory_order_seq_cst);
  vcpu_.run()->immediate_exit = 0;
  if (outcome && *outcome == kvm::Vcpu::RunOutcome::kInterrupted) {
    // Consume the kick; the exit loop sees its reason (posted work, a stop) next.
    sigset_t kick_set;
    sigemptyset(&kick_set);
    sigaddset(&kick_set, kick_signal());
    const timespec no_wait{};
    while (sigtimedwait(&kick_set, nullptr, &no_wait) > 0) {
    }
  }
  return outcome;
}

bool VcpuThread::configure() {
  const int index = vcpu_.index();
  const auto& boot = machine_.boot();
  auto check = [&](const SysResult<void>& r) {
    if (!r) fail(fmt::format("vCPU {} setup: {}", index, r.error().message()));
    return r.has_value();
  };
  if (!check(vcpu_.set_cpuid(x86::guest_cpuid(machine_.supported_cpuid(), index,
                                              machine_.vcpu_count(), boot.cpuid)))) {
    return false;
  }
  auto msrs = x86::boot_msrs();
  if (auto r = vcpu_.set_msrs(msrs); !r || *r != msrs.size()) {
    spdlog::debug("vCPU {}: not every boot MSR was accepted", index);
  }
  // The bundled guest starts every vCPU at its entry in long mode, without INIT/SIPI. A Linux
  // kernel starts on vCPU 0; the others stay in reset, waiting in KVM for the INIT/SIPI the kernel
  // sends when it brings them up (their KVM_RUN blocks until then).
  const bool linux_guest = boot.protocol == BootProtocol::kLinux;
  if (!linux_guest || index == 0) {
    auto sregs = vcpu_.get_sregs();
    if (!sregs) return check(std::unexpected(sregs.error()));
    if (linux_guest) {
      x86::set_linux_boot_sregs(*sregs, boot.cr3);
    } else {
      x86::set_boot_sregs(*sregs, boot.cr3);
    }
    const kvm_regs regs = linux_guest ? x86::linux_boot_regs(boot.entry_gpa, boot.boot_params_gpa)
                                      : x86::boot_regs(boot.entry_gpa, index);
    if (!check(vcpu_.set_sregs(*sregs)) || !check(vcpu_.set_regs(regs)) ||
        !check(vcpu_.set_fpu(x86::boot_fpu()))) {
      return false;
    }
  }
  if (!linux_guest && !check(vcpu_.set_mp_state(KVM_MP_STATE_RUNNABLE))) return false;
  sigset_t run_mask;
  pthread_sigmask(SIG_SETMASK, nullptr, &run_mask);
  sigdelset(&run_mask, kick_signal());
  if (!check(vcpu_.set_signal_mask(run_mask))) return false;
  vcpu_.enable_sync_regs(kSyncRegs);
  // Jobs may read the synced registers before the first exit has filled them in.
  auto regs = vcpu_.get_regs();
  auto current_sregs = vcpu_.get_sregs();
  auto events = vcpu_.get_events();
  if (!regs || !current_sregs || !events) {
    fail(fmt::format("vCPU {} setup: reading back the initial state failed", index));
    return false;
  }
  vcpu_.run()->s.regs.regs = *regs;
  vcpu_.run()->s.regs.sregs = *current_sregs;
  vcpu_.run()->s.regs.events = *events;
  return true;
}

void VcpuThread::thread_main() {
  t_run = vcpu_.run();
  // The kick signal stays blocked on this thread except inside KVM_RUN (KVM_SET_SIGNAL_MASK): a
  // kick that lands anywhere else stays pending and makes the next KVM_RUN return at once, so it
  // is never lost, whatever a signal handler's timing (sanitizers defer handlers).
  sigset_t kick_set;
  sigemptyset(&kick_set);
  sigaddset(&kick_set, kick_signal());
  pthread_sigmask(SIG_BLOCK, &kick_set, nullptr);
  native_handle_.store(pthread_self(), std::memory_order_release);
  // A stop requested before this thread existed must not be missed.
  if (configure()) {
    kvm_run* run = vcpu_.run();
    while (!machine_.stop_requested()) {
      // Jobs first, then the gate; the gate may wait in an event while more jobs or another
      // gate request (a pause, an injection) arrive, so repeat until both are quiet.
      for (;;) {
        if (work_pending_.load(std::memory_order_acquire)) run_posted_work();
        if (!gate_requested_.exchange(false, std::memory_order_acq_rel)) break;
        if (VcpuEntryGate* gate = machine_.entry_gate()) gate->before_entry(*this);
        if (machine_.stop_requested()) break;
      }
      if (machine_.stop_requested()) break;
      // Announce the entry, then look once more: a kick either sees in_guest_ and signals
      // (immediate_exit makes KVM_RUN return at once), or its flag is seen here.
      in_guest_.store(true, std::memory_order_seq_cst);
      if (work_pending_.load(std::memory_order_seq_cst) ||
          gate_requested_.load(std::memory_order_seq_cst) || machine_.stop_requested()) {
        in_guest_.store(false, std::memory_order_seq_cst);
        continue;
      }
      apply_entry_debug_flags();
      auto outcome = vcpu_.run_once();
      in_guest_.store(false, std::memory_order_seq_cst);
      run->immediate_exit = 0;
      if (!outcome) {
        fail(fmt::format("vCPU {}: {}", vcpu_.index(), outcome.error().message()));
        break;
      }
      if (*outcome == kvm::Vcpu::RunOutcome::kInterrupted) {
        // Consume the kick(s) that ended KVM_RUN; they stay pending otherwise.
        const timespec no_wait{};
        while (sigtimedwait(&kick_set, nullptr, &no_wait) > 0) {
        }
        continue;
      }
      const bool stepping = (applied_debug_flags_ & KVM_GUESTDBG_SINGLESTEP) != 0;
      const std::uint32_t reason = run->exit_reason;
      if (!handle_exit()) break;
      // A step that ended in another exit (I/O, MMIO, MSR, ...) did not complete as a step
      // (spec/kvmi-v7.md §3.4.11 failed = 1).
      if (stepping && reason != KVM_EXIT_DEBUG && reason != KVM_EXIT_INTR &&
          (guest_debug_flags_ & KVM_GUESTDBG_SINGLESTEP) && !machine_.stop_requested()) {
        machine_.intercepts().on_single_step(*this, true);
      }
    }
  }
  t_run = nullptr;
}

void VcpuThread::fail(const std::string& what) {
  const std::string dump = x86::dump_vcpu_state(vcpu_, machine_.memory());
  spdlog::error("{}\n{}", what, dump);
  machine_.request_stop(StopRequest{StopKind::kGuestFault, kGuestFaultStatus, what});
}

bool VcpuThread::handle_exit() {
  kvm_run& run = *vcpu_.run();
  switch (run.exit_reason) {
    case KVM_EXIT_IO:
      handle_io(run);
      return true;
    case KVM_EXIT_MMIO:
      handle_mmio(run);
      return true;
    case KVM_EXIT_HLT:
      // Only without an in-kernel irqchip; the next KVM_RUN halts again inside KVM.
      return true;
    case KVM_EXIT_INTR:
      return true;
    case KVM_EXIT_SHUTDOWN:
      fail(fmt::format("vCPU {}: the guest triple-faulted (KVM_EXIT_SHUTDOWN)", vcpu_.index()));
      return false;
    case KVM_EXIT_FAIL_ENTRY:
      fail(fmt::format("vCPU {}: KVM could not enter the guest (hardware reason {:#x})",
                       vcpu_.index(), run.fail_entry.hardware_entry_failure_reason));
      return false;
    case KVM_EXIT_INTERNAL_ERROR:
      return handle_internal_error(run);
    case KVM_EXIT_DEBUG:
      return handle_debug(run);
    case KVM_EXIT_SYSTEM_EVENT:
      switch (run.system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
          machine_.request_stop({StopKind::kPowerOff, 0, "guest requested shutdown"});
          return false;
        case KVM_SYSTEM_EVENT_RESET:
          machine_.request_stop({StopKind::kReset, 0, "guest requested a reset"});
          return false;
        default:
          fail(fmt::format("vCPU {}: system event {}", vcpu_.index(), run.system_event.type));
          return false;
      }
    case KVM_EXIT_X86_RDMSR:
      run.msr.error = 1;  // the VMM filters writes only; a read exit means a foreign filter
      return true;
    case KVM_EXIT_X86_WRMSR:
      handle_msr_write(run);
      return true;
    case KVM_EXIT_XEN:
      if (run.xen.type == KVM_EXIT_XEN_HCALL) {
        // VMCALL with the Xen intercept (hardware KVM): the KVMI hypercall is RAX = 34,
        // RDI = 24 (spec/kvmi-v7.md §3.4.3); other Xen calls are not ours.
        const bool kvmi = run.xen.u.hcall.input == 34 && run.xen.u.hcall.params[0] == 24;
        run.xen.u.hcall.result =
            kvmi ? machine_.intercepts().on_hypercall(*this) : static_cast<std::uint64_t>(-38);
      }
      return true;
    default:
      fail(fmt::format("vCPU {}: unhandled KVM exit reason {}", vcpu_.index(), run.exit_reason));
      return false;
  }
}

void VcpuThread::handle_io(kvm_run& run) {
  auto* data = reinterpret_cast<std::uint8_t*>(&run) + run.io.data_offset;
  const AccessContext ctx{vcpu_.index(), this};
  for (std::uint32_t i = 0; i < run.io.count; ++i) {
    std::span<std::uint8_t> chunk(data + i * run.io.size, run.io.size);
    if (run.io.direction == KVM_EXIT_IO_OUT) {
      machine_.io_bus().write(ctx, run.io.port, chunk);
    } else {
      machine_.io_bus().read(ctx, run.io.port, chunk);
    }
  }
}

void VcpuThread::handle_mmio(kvm_run& run) {
  const AccessContext ctx{vcpu_.index(), this};
  std::span<std::uint8_t> data(run.mmio.data, run.mmio.len);
  if (machine_.memory().contains(run.mmio.phys_addr, run.mmio.len)) {
    // Guest RAM without a writable slot: a restricted page, or one whose slot is being rebuilt.
    RamAccess access{.gpa = run.mmio.phys_addr,
                     .access = run.mmio.is_write ? PageAccess::kWrite : PageAccess::kRead,
                     .data = data,
                     .retired = run.mmio.is_write != 0};
    const auto verdict = machine_.intercepts().on_ram_access(*this, access);
    if (run.mmio.is_write) {
      if (verdict == RamAccessVerdict::kComplete) {
        machine_.memory().write(run.mmio.phys_addr, data.data(), data.size());
      }
    } else {
      machine_.memory().read(run.mmio.phys_addr, data.data(), data.size());
    }
    return;
  }
  if (run.mmio.is_write) {
    machine_.mmio_bus().write(ctx, run.mmio.phys_addr, data);
  } else {
    machine_.mmio_bus().read(ctx, run.mmio.phys_addr, data);
  }
}

bool VcpuThread::handle_internal_error(kvm_run& run) {
  // An intercept that explained an emulation failure may have run the vCPU on, on this thread
  // (one instruction with a restricted page mapped for it, introspection/intercept_page.cpp).
  // The exit that ended that run is then in kvm_run and is handled like any other. A new
  // emulation failure is left alone: re-entering reproduces it (RIP is still at the
  // instruction), which also keeps this from recursing.
  auto handle_exit_left_by_intercept = [this](kvm_run& r) {
    return r.exit_reason == KVM_EXIT_INTERNAL_ERROR || handle_exit();
  };
  if (run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
      (run.emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
    const auto* insn = run.emulation_failure.insn_bytes;
    // KVM-PVM cannot emulate INT3 at CPL0 and hands it to us; it belongs to the guest.
    if (insn[0] == 0xcc) {
      on_guest_breakpoint(run, 1);
      return true;
    }
    if (insn[0] == 0xcd && insn[1] == 0x03) {
      on_guest_breakpoint(run, 2);
      return true;
    }
    const std::size_t size = std::min<std::size_t>(run.emulation_failure.insn_size, 15);
    if (machine_.intercepts().on_emulation_failure(*this, {insn, size})) {
      return handle_exit_left_by_intercept(run);
    }
  } else if (run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
             machine_.intercepts().on_fetch_fault(*this)) {
    // No instruction bytes: the fetch itself failed, e.g. from a page taken out of its slot.
    return handle_exit_left_by_intercept(run);
  }
  if (run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION && (sregs().cs.selector & 3) != 0) {
    // Outside the kernel an unemulatable instruction is the guest's problem: KVM itself queues
    // #UD there when it keeps emulation failures (KVM_CAP_EXIT_ON_EMULATION_FAILURE off).
    spdlog::debug("vCPU {}: emulation failure at CPL{} rip {:#x}: #UD to the guest", vcpu_.index(),
                  sregs().cs.selector & 3, regs().rip);
    inject_exception_without_error_code(6);
    return true;
  }
  std::string bytes;
  if (run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION &&
      (run.emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
    for (unsigned i = 0; i < run.emulation_failure.insn_size && i < 15; ++i) {
      bytes += fmt::format(" {:02x}", run.emulation_failure.insn_bytes[i]);
    }
  }
  fail(fmt::format("vCPU {}: KVM internal error (suberror {}){}{}", vcpu_.index(),
                   run.internal.suberror, bytes.empty() ? "" : ", instruction bytes:", bytes));
  return false;
}

bool VcpuThread::handle_debug(kvm_run& run) {
  constexpr std::uint64_t kDr6SingleStep = 1u << 14;
  if (run.debug.arch.exception == 3) {
    // Hardware KVM with USE_SW_BP: RIP at the breakpoint; INT3 or INT 3 by its bytes.
    std::uint8_t bytes[2] = {};
    std::uint64_t insn_len = 1;
    if (auto gpa = x86::translate(machine_.memory(), sregs().cr3, sregs().cs.base + regs().rip)) {
      machine_.memory().read(gpa->gpa, bytes, sizeof bytes);
      if (bytes[0] == 0xcd && bytes[1] == 0x03) insn_len = 2;
    }
    on_guest_breakpoint(run, insn_len);
    return true;
  }
  if (run.debug.arch.exception == 1 && (run.debug.arch.dr6 & kDr6SingleStep) &&
      (guest_debug_flags_ & KVM_GUESTDBG_SINGLESTEP)) {
    machine_.intercepts().on_single_step(*this, false);
    return true;
  }
  spdlog::debug("vCPU {}: debug exit (exception {}, dr6 {:#x}) nobody asked for", vcpu_.index(),
                run.debug.arch.exception, run.debug.arch.dr6);
  return true;
}

void VcpuThread::handle_msr_write(kvm_run& run) {
  auto value = machine_.intercepts().on_msr_write(*this, run.msr.index, run.msr.data);
  if (!value) {
    run.msr.error = 1;  // the guest gets #GP at the WRMSR
    return;
  }
  // The filter sent the write here; it lands only if the VMM applies it (host-initiated writes
  // bypass the filter).
  const kvm_msr_entry entry{.index = run.msr.index, .reserved = 0, .data = *value};
  auto written = vcpu_.set_msrs({&entry, 1});
  run.msr.error = (written && *written == 1) ? 0 : 1;
}

void VcpuThread::on_guest_breakpoint(kvm_run& run, std::uint64_t insn_len) {
  const auto verdict =
      machine_.intercepts().on_breakpoint(*this, static_cast<std::uint8_t>(insn_len));
  if (verdict == BreakpointVerdict::kGuest) reinject_breakpoint(run, insn_len);
}

void VcpuThread::reinject_breakpoint(kvm_run& run, std::uint64_t insn_len) {
  // Through the synced registers: no extra ioctl, KVM applies them at the next KVM_RUN.
  if (machine_.quirks().reinjection == kvm::BreakpointReinjection::kRipAfterInt3) {
    mutable_regs().rip += insn_len;
  }
  (void)run;
  inject_exception_without_error_code(3);
}

void VcpuThread::inject_exception_without_error_code(std::uint8_t vector) {
  // Through the synced events: KVM delivers it at the next KVM_RUN, no extra ioctl.
  auto& events = mutable_events();
  events.exception.injected = 1;
  events.exception.nr = vector;
  events.exception.has_error_code = 0;
  events.exception.error_code = 0;
  events.exception.pending = 0;
  events.flags = 0;
}

}  // namespace glassbox::vmm
