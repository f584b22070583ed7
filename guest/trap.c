/* Exceptions and interrupts (system calls go to syscall.c directly from trap.S). */
#include "kernel.h"

static const char* const names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#MF", "#TS",
    "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
    "#22", "#23", "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX", "#31",
};

extern volatile u32 probe_active;

static const char* vector_name(u64 v) {
  if (v < 32) return names[v];
  return "interrupt";
}

__attribute__((noreturn)) static void kernel_fault(struct frame* f) {
  u32 cpu = (u32)((struct cpu*)rdmsr(MSR_KERNEL_GS_BASE))->index;
  kprintf("KERNEL PANIC: cpu %u: exception %lu (%s) error 0x%lx at rip 0x%lx cr2 0x%lx rsp 0x%lx\n",
          cpu, f->vector, vector_name(f->vector), f->error, f->rip, read_cr2(), f->rsp);
  power_off(3);
}

struct frame* trap_handler(struct frame* f) {
  if (f->vector == VEC_TIMER) {
    lapic_eoi();
    if ((f->cs & 3) == 0) return f;
    struct proc* p = current_proc(f);
    cpus[p->cpu].timer_ticks++;
    return schedule(f); /* preempt: round robin */
  }
  if ((f->cs & 3) == 0) {
    long fixup = fixup_lookup(f->rip); /* an unsafe poke that faulted: it was blocked */
    if (fixup) {
      f->rip = (u64)fixup;
      return f;
    }
    kernel_fault(f);
  }
  if (probe_active) probe_leave(0); /* the SYSCALL probe trapped at CPL3: no CPL0 SYSCALL */
  struct proc* p = current_proc(f);
  kprintf("process %u killed: %s at rip 0x%lx (error 0x%lx, cr2 0x%lx)\n", p->pid,
          vector_name(f->vector), f->rip, f->error, f->vector == 14 ? read_cr2() : 0);
  return proc_exit(f, PROC_KILLED);
}
