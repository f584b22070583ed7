// KVMI_VM_SET_PAGE_ACCESS restrictions and KVMI_EVENT_PF (spec/kvmi-v7.md §2.3.20, §3.4.10),
// enforced with memory slots (notes/kvm-backends.md §6; the layout is vmm::GuestMemory's).
//
// How each access to a restricted frame reaches us:
//   write to a read-only slot or a slot-less frame: KVM_EXIT_MMIO after the write *retired*
//                                         (RIP past it; no GVA) -> on_ram_access
//   read of a slot-less frame:            KVM_EXIT_MMIO before it completes -> on_ram_access
//   fetch from a slot-less frame:         emulation failure without bytes, RIP = target
//                                         -> on_fetch_fault
//   an instruction KVM cannot emulate against such a frame (AVX store to a read-only slot):
//                                         emulation failure with bytes -> on_emulation_failure
//
// Semantics chosen (per access type; the tool's answer to the PF event):
//   W (retired): CONTINUE -> the write lands. RETRY -> it cannot be re-executed (already
//                retired), so: if the tool lifted W meanwhile it lands (what re-execution would
//                do), otherwise it is dropped. CRASH -> dropped, the VM stops.
//   R:           CONTINUE and RETRY -> served from guest RAM (KVM has already started the
//                instruction; its pending MMIO read cannot be abandoned). CRASH -> VM stops.
//   X:           CONTINUE -> the frame is lifted into an ordinary slot for one single step (CPL0)
//                or until the vCPU's next exit (CPL3 on KVM-PVM, which cannot step native code),
//                then restricted again. RETRY -> re-entry, nothing else (the tool changed RIP or
//                the restriction; if it changed neither, the fetch faults and the event comes
//                again, as on v7).
//   emulation failures (AVX): as X, with the access the decoded memory operand makes.
//
// With no session, or KVMI_EVENT_PF not enabled on the vCPU, every access proceeds: v7 enforces
// a restriction only through the event (its page-tracking hooks allow the access when the event
// is off), and silently dropping guest writes nobody hears about would corrupt the guest.
//
// The window of a lift: while one vCPU runs an allowed access on a lifted frame, the frame is
// fully accessible to every vCPU (slots are VM-wide). Accesses by other vCPUs in that window
// are not reported. It lasts one instruction at CPL0 (tens of µs), longer at CPL3 on KVM-PVM:
// until the vCPU's next exit to user space. A slot update by anyone else waits for that exit
// (the vCPU is not in the exit loop, so it cannot be parked before).
//
// Every slot update (a SET_PAGE_ACCESS command as a whole, a lift, a relock, the clear at the
// end of a session) runs with every other vCPU parked in a job: KVM replaces a slot by delete +
// create, and a guest page walk or fetch through a frame in that gap takes a #PF the guest never
// earned (measured on KVM-PVM: a triple fault). Reads and writes of such frames would exit as
// MMIO and could be served, walks cannot.
//
// Measured on KVM-PVM: a native (CPL3) AVX store to a read-only slot lands without any exit, so
// no event can be raised for it; the emulation-failure path below is for hosts that report it.
#include <capstone/capstone.h>
#include <linux/kvm.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "glassbox/kvmi/events.h"
#include "glassbox/kvmi/ids.h"
#include "introspection/channel.h"
#include "introspection/intercepts.h"
#include "introspection/vcpu_events.h"
#include "vmm/machine.h"
#include "vmm/vcpu_thread.h"
#include "vmm/x86/page_walk.h"

namespace glassbox::introspection {

namespace {

constexpr std::uint64_t kCr4La57 = 1u << 12;
constexpr std::uint64_t kUnknownGva = ~0ull;  // §P4
constexpr std::uint64_t kPage = vmm::GuestMemory::kPageSize;
// A fetch or emulation failure on a frame that has a slot again (a rebuild raced with it) is
// retried; this many in a row at one RIP means something else is wrong and the VM stops.
constexpr unsigned kMaxRetriesAtOneRip = 10000;

std::uint8_t bit(vmm::PageAccess a) {
  return static_cast<std::uint8_t>(a);
}

// Per vCPU (every intercept runs on its vCPU's own thread).
struct RetryGuard {
  std::uint64_t rip = ~0ull;
  unsigned count = 0;
  bool again(std::uint64_t at) {
    if (at != rip) {
      rip = at;
      count = 0;
    }
    return ++count <= kMaxRetriesAtOneRip;
  }
};
thread_local RetryGuard t_retry;

// ---- Slot updates with every vCPU out of the guest (vmm::GuestMemory::UpdateGuard) ----

// The vCPU whose thread this is, while it updates slots itself (run_lifted); null elsewhere.
thread_local vmm::VcpuThread* t_self = nullptr;
// > 0 while this thread runs an update with the world stopped (nested updates run directly).
thread_local int t_world_stopped = 0;
// One stopper at a time: two vCPUs each waiting for the other to park would never meet.
std::mutex g_world_mutex;

struct ParkBarrier {
  std::mutex mutex;
  std::condition_variable cv;
  int arrived = 0;
  bool released = false;
};

void with_vcpus_parked(vmm::Machine& machine, const std::function<void()>& update) {
  if (t_world_stopped > 0) {
    update();
    return;
  }
  vmm::VcpuThread* self = t_self;
  // A vCPU waiting for its turn keeps running its jobs: the stopper of the moment parks it there.
  while (!g_world_mutex.try_lock()) {
    if (self != nullptr) self->run_work_until([] { return true; });
    std::this_thread::yield();
  }
  std::unique_lock world(g_world_mutex, std::adopt_lock);
  auto barrier = std::make_shared<ParkBarrier>();
  int expected = 0;
  for (int i = 0; i < machine.vcpu_count(); ++i) {
    vmm::VcpuThread& v = machine.vcpu(i);
    if (&v == self) continue;
    ++expected;
    // A job runs on the vCPU's thread outside KVM_RUN (before its next entry, or inside an event
    // wait), so once every job has started no vCPU is in the guest.
    v.post([barrier](vmm::VcpuThread& parked) {
      std::unique_lock lock(barrier->mutex);
      ++barrier->arrived;
      barrier->cv.notify_all();
      while (!barrier->released && !parked.machine().stop_requested()) {
        barrier->cv.wait_for(lock, std::chrono::milliseconds(20));
      }
    });
  }
  {
    std::unique_lock lock(barrier->mutex);
    while (barrier->arrived < expected && !machine.stop_requested()) {
      barrier->cv.wait_for(lock, std::chrono::milliseconds(20));
    }
  }
  ++t_world_stopped;
  update();
  --t_world_stopped;
  {
    std::lock_guard lock(barrier->mutex);
    barrier->released = true;
  }
  barrier->cv.notify_all();
}

EventOutcome raise_pf(vmm::VcpuThread& vcpu, Session& session, std::uint64_t gva, std::uint64_t gpa,
                      std::uint8_t access) {
  kvmi::EventPf pf{};
  pf.gva = gva;
  pf.gpa = gpa;
  pf.access = access;
  return raise_event(vcpu, session, kvmi::EventId::Pf, bytes_of(pf));
}

std::optional<std::uint64_t> gpa_of(vmm::VcpuThread& vcpu, std::uint64_t gva) {
  const auto& sregs = vcpu.sregs();
  auto t =
      vmm::x86::translate(vcpu.machine().memory(), sregs.cr3, gva, (sregs.cr4 & kCr4La57) != 0);
  if (!t || !vcpu.machine().memory().contains(t->gpa, 1)) return std::nullopt;
  return t->gpa;
}

// Without KVM_CAP_EXIT_ON_EMULATION_FAILURE, upstream KVM queues #UD along with an emulation
// failure at CPL0 (notes/kvm-backends.md §6 (c)). The failure is explained here, so the guest
// must not see it.
void drop_queued_ud(vmm::VcpuThread& vcpu) {
  constexpr std::uint8_t kUd = 6;
  const auto& events = vcpu.events();
  if ((events.exception.pending || events.exception.injected) && events.exception.nr == kUd) {
    auto& changed = vcpu.mutable_events();
    changed.exception.pending = 0;
    changed.exception.injected = 0;
  }
}

// Lets the instruction at RIP run with frame `gfn` in an ordinary slot, then restricts the frame
// again. The vCPU is run here, on its own thread: one single step at CPL0; on KVM-PVM at CPL3
// (native code cannot be stepped, notes/kvm-backends.md §3) the run lasts until the next exit.
// Whatever exit ended the run stays in kvm_run for the exit loop to handle (an I/O the
// instruction made, the step's debug exit, ...).
bool run_lifted(vmm::VcpuThread& vcpu, std::uint64_t gfn) {
  t_self = &vcpu;
  auto& memory = vcpu.machine().memory();
  auto& vm = vcpu.machine().vm();
  if (int r = memory.lift_page(vm, gfn); r != 0) {
    spdlog::warn("vCPU {}: cannot map frame {:#x} for one access ({})", vcpu.index(), gfn, -r);
    return false;
  }
  const std::uint32_t flags = vcpu.guest_debug_flags();
  const bool native =
      vcpu.machine().quirks().backend == kvm::Backend::kPvm && (vcpu.sregs().cs.selector & 3) != 0;
  bool stepping = false;
  if (!native && !(flags & KVM_GUESTDBG_SINGLESTEP)) {
    stepping = vcpu.set_guest_debug_flags(flags | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ)
                   .has_value();
  }
  bool ok = true;
  // A kick that was already on its way ends KVM_RUN at once (EINTR); the posted work it
  // announces waits for the exit loop, one instruction later.
  for (int attempt = 0; attempt < 8 && !vcpu.machine().stop_requested(); ++attempt) {
    auto outcome = vcpu.run_guest_once();
    if (!outcome) {
      spdlog::error("vCPU {}: {}", vcpu.index(), outcome.error().message());
      ok = false;
      break;
    }
    if (*outcome == kvm::Vcpu::RunOutcome::kExit) break;
  }
  if (stepping) (void)vcpu.set_guest_debug_flags(flags);
  memory.relock_page(vm, gfn);
  return ok;
}

// ---- Decoding the instruction KVM could not emulate (Capstone) ----

struct MemoryOperand {
  std::uint64_t gva = 0;
  std::uint32_t size = 0;
  vmm::PageAccess access = vmm::PageAccess::kRead;
};

std::optional<std::uint64_t> register_value(const kvm_regs& r, x86_reg reg) {
  switch (reg) {
    case X86_REG_INVALID:
      return 0;
    case X86_REG_RAX:
      return r.rax;
    case X86_REG_RBX:
      return r.rbx;
    case X86_REG_RCX:
      return r.rcx;
    case X86_REG_RDX:
      return r.rdx;
    case X86_REG_RSI:
      return r.rsi;
    case X86_REG_RDI:
      return r.rdi;
    case X86_REG_RSP:
      return r.rsp;
    case X86_REG_RBP:
      return r.rbp;
    case X86_REG_R8:
      return r.r8;
    case X86_REG_R9:
      return r.r9;
    case X86_REG_R10:
      return r.r10;
    case X86_REG_R11:
      return r.r11;
    case X86_REG_R12:
      return r.r12;
    case X86_REG_R13:
      return r.r13;
    case X86_REG_R14:
      return r.r14;
    case X86_REG_R15:
      return r.r15;
    case X86_REG_EAX:
      return r.rax & 0xffffffffu;
    case X86_REG_EBX:
      return r.rbx & 0xffffffffu;
    case X86_REG_ECX:
      return r.rcx & 0xffffffffu;
    case X86_REG_EDX:
      return r.rdx & 0xffffffffu;
    case X86_REG_ESI:
      return r.rsi & 0xffffffffu;
    case X86_REG_EDI:
      return r.rdi & 0xffffffffu;
    case X86_REG_ESP:
      return r.rsp & 0xffffffffu;
    case X86_REG_EBP:
      return r.rbp & 0xffffffffu;
    default:
      return std::nullopt;
  }
}

// The first memory operand of the instruction at RIP, as a linear address.
std::optional<MemoryOperand> decode_memory_operand(vmm::VcpuThread& vcpu,
                                                   std::span<const std::uint8_t> insn) {
  const auto& regs = vcpu.regs();
  const auto& sregs = vcpu.sregs();
  const std::uint8_t mode = vcpu_mode(sregs);
  csh handle = 0;
  const cs_mode cs_m = mode == 8 ? CS_MODE_64 : mode == 4 ? CS_MODE_32 : CS_MODE_16;
  if (cs_open(CS_ARCH_X86, cs_m, &handle) != CS_ERR_OK) return std::nullopt;
  cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON);
  cs_insn* decoded = nullptr;
  std::optional<MemoryOperand> result;
  if (cs_disasm(handle, insn.data(), insn.size(), regs.rip, 1, &decoded) == 1) {
    const cs_x86& x86 = decoded->detail->x86;
    for (std::uint8_t i = 0; i < x86.op_count && !result; ++i) {
      const cs_x86_op& op = x86.operands[i];
      if (op.type != X86_OP_MEM) continue;
      std::uint64_t base = 0;
      if (op.mem.base == X86_REG_RIP) {
        base = regs.rip + decoded->size;
      } else if (auto v = register_value(regs, static_cast<x86_reg>(op.mem.base))) {
        base = *v;
      } else {
        break;
      }
      auto index = register_value(regs, static_cast<x86_reg>(op.mem.index));
      if (!index) break;
      std::uint64_t segment_base = 0;
      if (op.mem.segment == X86_REG_FS) segment_base = sregs.fs.base;
      if (op.mem.segment == X86_REG_GS) segment_base = sregs.gs.base;
      MemoryOperand m;
      m.gva = segment_base + base + *index * static_cast<std::uint64_t>(op.mem.scale) +
              static_cast<std::uint64_t>(op.mem.disp);
      if (mode != 8) m.gva &= 0xffffffffu;
      m.size = op.size != 0 ? op.size : 1;
      m.access = (op.access & CS_AC_WRITE) ? vmm::PageAccess::kWrite : vmm::PageAccess::kRead;
      result = m;
    }
    cs_free(decoded, 1);
  }
  cs_close(&handle);
  return result;
}

}  // namespace

// Declared where used (vm_commands.cpp): intercepts.h is shared with other interceptions.
void run_page_access_update(vmm::VcpuThread& any_vcpu, const std::function<void()>& update) {
  vmm::Machine& machine = any_vcpu.machine();
  // Installed on the first use: every update after it (lifts, the unhook's clear) is guarded.
  machine.memory().set_update_guard(
      [&machine](const std::function<void()>& u) { with_vcpus_parked(machine, u); });
  with_vcpus_parked(machine, update);
}

vmm::RamAccessVerdict SessionIntercepts::on_ram_access(vmm::VcpuThread& vcpu,
                                                       vmm::RamAccess& access) {
  auto& memory = vcpu.machine().memory();
  const std::uint64_t gfn = access.gpa / kPage;
  const std::uint8_t type = bit(access.access);
  // Allowed (a slot-less frame that allows this access, or ordinary RAM whose slot is being
  // rebuilt right now): the exit loop serves it.
  if (memory.page_access(gfn) & type) return vmm::RamAccessVerdict::kComplete;
  auto session = session_for(vcpu, kvmi::EventId::Pf);
  if (!session) return vmm::RamAccessVerdict::kComplete;  // see the file comment
  const EventOutcome outcome = raise_pf(vcpu, *session, kUnknownGva, access.gpa, type);
  switch (outcome.action) {
    case kvmi::EventAction::Crash:
      return vmm::RamAccessVerdict::kDrop;
    case kvmi::EventAction::Retry:
      if (!access.retired) return vmm::RamAccessVerdict::kComplete;
      // Re-executing a retired write is impossible; it lands only if it would now succeed.
      return (memory.page_access(gfn) & type) ? vmm::RamAccessVerdict::kComplete
                                              : vmm::RamAccessVerdict::kDrop;
    default:
      return vmm::RamAccessVerdict::kComplete;
  }
}

bool SessionIntercepts::on_fetch_fault(vmm::VcpuThread& vcpu) {
  auto& memory = vcpu.machine().memory();
  const std::uint64_t gva = vcpu.sregs().cs.base + vcpu.regs().rip;
  const auto gpa = gpa_of(vcpu, gva);
  if (!gpa) return false;  // not a fetch from RAM: the VM stops as before
  const std::uint64_t gfn = *gpa / kPage;
  if (memory.current_kind(gfn) != vmm::SlotKind::kNone) {
    // The frame has a slot (again): the fetch raced with a layout change. Just re-enter.
    if (!t_retry.again(gva)) return false;
    drop_queued_ud(vcpu);
    return true;
  }
  t_retry = {};
  drop_queued_ud(vcpu);
  const std::uint8_t allowed = memory.page_access(gfn);
  if (!(allowed & kvmi::kPageAccessX)) {
    if (auto session = session_for(vcpu, kvmi::EventId::Pf)) {
      const EventOutcome outcome = raise_pf(vcpu, *session, gva, *gpa, kvmi::kPageAccessX);
      // RETRY: the tool changed RIP or the restriction; CRASH: the VM is stopping.
      if (outcome.action != kvmi::EventAction::Continue) return true;
    }
  }
  // CONTINUE, no event, or X allowed on a frame that is slot-less for R: the fetch proceeds.
  return run_lifted(vcpu, gfn);
}

bool SessionIntercepts::on_emulation_failure(vmm::VcpuThread& vcpu,
                                             std::span<const std::uint8_t> insn) {
  auto& memory = vcpu.machine().memory();
  const auto operand = decode_memory_operand(vcpu, insn);
  if (!operand) return false;
  // The operand may straddle two frames; the first one that is not plain RAM explains the failure.
  std::optional<std::uint64_t> gva_hit;
  std::optional<std::uint64_t> gpa_hit;
  for (std::uint64_t gva : {operand->gva, operand->gva + operand->size - 1}) {
    auto gpa = gpa_of(vcpu, gva);
    if (!gpa) continue;
    if (memory.current_kind(*gpa / kPage) != vmm::SlotKind::kNormal ||
        memory.page_access(*gpa / kPage) != kvmi::kPageAccessRwx) {
      gva_hit = gva;
      gpa_hit = gpa;
      break;
    }
  }
  // Neither frame is restricted nor slot-less: not ours, the VM stops as before.
  if (!gpa_hit) return false;
  drop_queued_ud(vcpu);
  const std::uint64_t gfn = *gpa_hit / kPage;
  const std::uint8_t type = bit(operand->access);
  if (!(memory.page_access(gfn) & type)) {
    if (auto session = session_for(vcpu, kvmi::EventId::Pf)) {
      // Here the GVA is known: the decoded operand's address.
      const EventOutcome outcome = raise_pf(vcpu, *session, *gva_hit, *gpa_hit, type);
      if (outcome.action != kvmi::EventAction::Continue) return true;
    }
  }
  // The instruction has not retired (RIP at it): run it once with the frame mapped normally.
  return run_lifted(vcpu, gfn);
}

}  // namespace glassbox::introspection
