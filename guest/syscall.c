/* System calls. Entry: SYSCALL through LSTAR where it reaches CPL0, else INT3 from user mode
 * (vector 3, DPL3); both build a struct frame and call syscall_dispatch. Number in RAX,
 * arguments in RDI/RSI/RDX, result in RAX. The table lives alone in a kernel data page. */
#include "kernel.h"

long peek_byte(u64 addr);
long peek_qword(u64 addr);
long peek_msr(u64 msr);

volatile u32 probe_active;

static struct frame* ret(struct frame* f, u64 value) {
  f->rax = value;
  return f;
}

static struct frame* sys_write(struct frame* f) {
  u64 buf = f->rdi, len = f->rsi;
  if (len > 256 || buf < USER_CODE_VA || buf + len > USER_STACK_TOP) return ret(f, -1);
  console_write((const char*)buf, len);
  return ret(f, len);
}

static struct frame* sys_yield(struct frame* f) {
  return schedule(ret(f, 0));
}

static struct frame* sys_exit(struct frame* f) {
  return proc_exit(f, PROC_EXITED);
}

static struct frame* sys_getpid(struct frame* f) {
  return ret(f, current_proc(f)->pid);
}

static struct frame* sys_hypercall(struct frame* f) {
  if (!(user_shared.cpuid_flags & GLASSBOX_CPUID_FLAG_VMCALL)) return ret(f, -1);
  u64 rax = 34;
  __asm__ volatile("vmcall" : "+a"(rax) : "D"(24), "S"(0) : "memory");
  return ret(f, rax);
}

/* UNSAFE, attack mode only: poke(kind, addr, value) writes kernel memory or an MSR. */
static struct frame* sys_poke(struct frame* f) {
  if (!user_shared.attack) return ret(f, -1);
  switch (f->rdi) {
    case POKE_BYTE:
      return ret(f, poke_byte(f->rsi, f->rdx));
    case POKE_QWORD:
      return ret(f, poke_qword(f->rsi, f->rdx));
    case POKE_MSR:
      return ret(f, poke_msr(f->rsi, f->rdx));
  }
  return ret(f, -1);
}

/* UNSAFE, attack mode only: peek(kind, addr) reads kernel memory or an MSR. */
static struct frame* sys_peek(struct frame* f) {
  if (!user_shared.attack) return ret(f, -1);
  switch (f->rdi) {
    case POKE_BYTE:
      return ret(f, peek_byte(f->rsi));
    case POKE_QWORD:
      return ret(f, peek_qword(f->rsi));
    case POKE_MSR:
      return ret(f, peek_msr(f->rsi));
  }
  return ret(f, -1);
}

syscall_fn glassbox_syscall_table[NR_SYSCALLS]
    __attribute__((section(".data.syscall_table"), aligned(4096))) = {
        [SYS_WRITE] = sys_write,   [SYS_YIELD] = sys_yield,         [SYS_EXIT] = sys_exit,
        [SYS_GETPID] = sys_getpid, [SYS_HYPERCALL] = sys_hypercall, [SYS_POKE] = sys_poke,
        [SYS_PEEK] = sys_peek,
};

struct frame* syscall_dispatch(struct frame* f) {
  u64 n = f->rax;
  current_proc(f)->syscalls++;
  if (n < NR_SYSCALLS) return glassbox_syscall_table[n](f);
  if (probe_active) probe_leave(1); /* the probe's SYSCALL arrived at CPL0 */
  return ret(f, -1);
}

/* What the attacker installs in the table: a "rootkit" hook that still answers getpid. */
struct frame* sys_evil_getpid(struct frame* f) {
  return sys_getpid(f);
}

/* The kernel-text byte the attacker patches. Never executed. */
__attribute__((noinline, used)) void attack_text_target(void) {
  __asm__ volatile("nop; nop; nop");
}

/* Does SYSCALL enter CPL0 here? Run user_probe (SYSCALL with an out-of-range number) once at
 * CPL3 in process 1's address space. At CPL0 it reaches syscall_dispatch (probe_leave(1)); on
 * KVM-PVM it stays at CPL3 and faults fetching the supervisor page at LSTAR (probe_leave(0)). */
static struct proc probe_proc;

void syscall_probe(void) {
  struct proc* p = &probe_proc;
  p->pid = 0;
  p->cr3 = glassbox_procs[0].cr3;
  p->frame.rip = (u64)user_probe;
  p->frame.cs = SEL_UCODE;
  p->frame.rflags = 0x2; /* IF=0: no timer during the probe */
  p->frame.rsp = USER_STACK_TOP - 8;
  p->frame.ss = SEL_UDATA;
  cpus[0].tss.rsp0 = (u64)(&p->frame + 1);
  write_cr3(p->cr3);
  probe_active = 1;
  int works = probe_enter_user(&p->frame);
  probe_active = 0;
  user_shared.use_syscall = (u32)works;
  kprintf(works ? "syscall: SYSCALL enters CPL0 (LSTAR 0x%lx)\n"
                : "syscall: SYSCALL does not enter CPL0 here; using the INT3 gate (LSTAR 0x%lx)\n",
          rdmsr(MSR_LSTAR));
}
