/* Processes and the per-vCPU round-robin scheduler. A process's user state lives in its
 * proc.frame; switching is: point TSS.rsp0 at the next frame, load its CR3, resume it. */
#include "kernel.h"

struct proc glassbox_procs[MAX_PROCS];
u32 glassbox_nprocs;
volatile u32 procs_alive;

_Static_assert(offsetof(struct proc, pid) == PROC_PID, "layout.h");
_Static_assert(offsetof(struct proc, state) == PROC_STATE, "layout.h");
_Static_assert(offsetof(struct proc, cpu) == PROC_CPU, "layout.h");
_Static_assert(offsetof(struct proc, kind) == PROC_KIND, "layout.h");
_Static_assert(offsetof(struct proc, cr3) == PROC_CR3, "layout.h");
_Static_assert(offsetof(struct proc, counter) == PROC_COUNTER, "layout.h");
_Static_assert(offsetof(struct proc, syscalls) == PROC_SYSCALLS, "layout.h");
_Static_assert(offsetof(struct proc, switches) == PROC_SWITCHES, "layout.h");
_Static_assert(offsetof(struct proc, name) == PROC_NAME, "layout.h");
_Static_assert(sizeof(struct proc) == PROC_SIZE, "layout.h");
_Static_assert(sizeof(struct frame) == FRAME_SIZE, "layout.h");
_Static_assert(offsetof(struct frame, rax) == FRAME_RAX, "layout.h");
_Static_assert(offsetof(struct frame, ss) == FRAME_SS, "layout.h");

/* Called by the boot vCPU only, before any vCPU schedules. */
struct proc* proc_create(u32 cpu, enum proc_kind kind, const char* name, u64 entry, u64 arg) {
  u32 slot = glassbox_nprocs++;
  struct proc* p = &glassbox_procs[slot];
  p->pid = slot + 1;
  p->cpu = cpu;
  p->kind = kind;
  for (u32 i = 0; name[i] && i < sizeof(p->name) - 1; i++) p->name[i] = name[i];
  p->cr3 = address_space_create(slot);
  p->frame.rip = entry;
  p->frame.cs = SEL_UCODE;
  p->frame.rflags = 0x202; /* IF */
  p->frame.rsp = USER_STACK_TOP - 8;
  p->frame.ss = SEL_UDATA;
  p->frame.rdi = arg;
  p->frame.rsi = p->pid;
  p->state = PROC_RUNNABLE;
  struct cpu* c = &cpus[cpu];
  c->run[c->nrun++] = p;
  procs_alive++;
  return p;
}

static struct frame* switch_to(struct cpu* c, struct proc* p) {
  c->tss.rsp0 = (u64)(&p->frame + 1);
  write_cr3(p->cr3);
  c->switches++;
  p->switches++;
  return &p->frame;
}

__attribute__((noreturn)) static void cpu_finished(struct cpu* c) {
  if (c->index != 0) {
    lapic_timer_stop();
    for (;;) __asm__ volatile("cli; hlt");
  }
  /* vCPU 0 waits for the other vCPUs' processes halted between timer ticks: a CPL0 spin would
   * keep a host core busy emulating it (the beacon can keep the VM up for a long time). */
  while (__atomic_load_n(&procs_alive, __ATOMIC_ACQUIRE)) __asm__ volatile("sti; hlt; cli");
  lapic_timer_stop();
  for (u32 i = 0; i < ncpu; i++)
    kprintf("cpu %u: %lu context switches, %lu timer ticks\n", i, cpus[i].switches,
            cpus[i].timer_ticks);
  char line[160];
  u32 n = 0;
  const char* head = "all processes done: counters";
  while (*head) line[n++] = *head++;
  for (u32 i = 0; i < glassbox_nprocs && n < sizeof(line) - 24; i++) {
    if (glassbox_procs[i].kind != KIND_WORKER) continue;
    char tmp[20];
    u32 k = 0;
    u64 v = glassbox_procs[i].counter;
    do tmp[k++] = (char)('0' + v % 10);
    while (v /= 10);
    line[n++] = ' ';
    while (k) line[n++] = tmp[--k];
  }
  line[n++] = '\n';
  console_write(line, n);
  power_off(0);
}

struct frame* schedule(struct frame* f) {
  struct proc* p = current_proc(f);
  struct cpu* c = &cpus[p->cpu];
  for (u32 i = 1; i <= c->nrun; i++) {
    u32 next = c->current + i;
    if (next >= c->nrun) next -= c->nrun;
    struct proc* q = c->run[next];
    if (q->state == PROC_RUNNABLE) {
      c->current = next;
      return q == p ? f : switch_to(c, q);
    }
  }
  cpu_finished(c);
}

struct frame* proc_exit(struct frame* f, u32 state) {
  struct proc* p = current_proc(f);
  p->counter = *(volatile u64*)user_page_phys(p->pid - 1, USER_DATA_VA);
  p->state = state;
  __atomic_sub_fetch(&procs_alive, 1, __ATOMIC_SEQ_CST);
  return schedule(f);
}

void proc_start_first(u32 index) {
  struct cpu* c = &cpus[index];
  if (c->nrun == 0) cpu_finished(c);
  c->current = 0;
  trap_return(switch_to(c, c->run[0]));
}
