/* glassbox guest kernel: common declarations. */
#ifndef GUEST_KERNEL_H
#define GUEST_KERNEL_H

#include <glassbox/boot/boot_info.h>
#include <stddef.h>
#include <stdint.h>

#include "layout.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* Saved user (or kernel) state, pushed by trap.S. */
struct frame {
  u64 r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
  u64 vector, error, rip, cs, rflags, rsp, ss;
};

/* 64-bit TSS followed by its I/O permission bitmap (ports 0 .. IOMAP_PORTS-1). */
#define IOMAP_PORTS 0x5000
struct tss {
  u32 reserved0;
  u64 rsp0, rsp1, rsp2;
  u64 reserved1;
  u64 ist[7];
  u64 reserved2;
  u16 reserved3;
  u16 iomap_base;
  u8 iomap[IOMAP_PORTS / 8];
  u8 iomap_end; /* must be 0xff */
} __attribute__((packed));

/* Per-vCPU state. KERNEL_GS_BASE points here (for the SYSCALL stub). */
struct cpu {
  u64 scratch;
  u64 index;
  struct tss tss;
  struct proc* run[MAX_PROCS]; /* this vCPU's processes, round-robin */
  u32 nrun;
  u32 current; /* index into run[] */
  u64 switches, timer_ticks, syscalls;
} __attribute__((aligned(64)));

enum proc_kind { KIND_WORKER, KIND_AGENT, KIND_ATTACKER, KIND_FAULTER, KIND_BEACON };

struct proc {
  u32 pid;
  u32 state;
  u32 cpu;
  u32 kind;
  u64 cr3;
  u64 counter; /* work units done (copied from the user data page at exit) */
  u64 syscalls;
  u64 switches;
  char name[16];
  u8 kstack[PROC_KSTACK_SIZE];
  struct frame frame; /* TSS.rsp0 = &frame + 1 while this process runs */
} __attribute__((aligned(16)));

/* Read-only page mapped into every process at USER_SHARED_VA. */
struct user_shared {
  u32 use_syscall; /* 1: SYSCALL reaches CPL0; 0: use INT3 */
  u32 ncpu;
  u32 attack;
  u32 cpuid_flags;
  u64 tsc_khz;
  u64 attack_text_addr; /* a byte of kernel text the attacker patches */
  u64 syscall_table_addr;
  u64 evil_handler_addr; /* what the attacker writes into the table */
  u64 evil_lstar;        /* what the attacker writes into LSTAR */
  /* CPUID 0x40000001 as the kernel saw it at CPL0 (on KVM-PVM, CPUID at CPL3 runs natively and
   * shows the host's leaves, not glassbox's). hv_ok = the glassbox signature was present. */
  u32 hv_ok;
  u32 hv_doorbell_port;
  u32 hv_flags;
};

/* Globals (names exported to tools). */
extern struct glassbox_boot_info* boot_info;
extern struct cpu cpus[MAX_CPUS];
extern struct proc glassbox_procs[MAX_PROCS];
extern u32 glassbox_nprocs;
extern struct user_shared user_shared;
typedef struct frame* (*syscall_fn)(struct frame*);
extern syscall_fn glassbox_syscall_table[NR_SYSCALLS];
extern u32 ncpu;
extern volatile u32 procs_alive;
extern char __kernel_text_start[], __kernel_text_end[];

/* serial.c */
void kprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void console_write(const char* s, u64 len);
__attribute__((noreturn)) void power_off(u8 status);

/* cpu.c */
void idt_init(void);
void tables_init(u32 ncpu);
void cpu_init(u32 index);
void lapic_timer_start(void);
void lapic_timer_stop(void);
void lapic_eoi(void);

/* paging.c */
void paging_init(u64 memory_size);
u64 address_space_create(u32 slot);
u64 user_page_phys(u32 slot, u64 va);

/* sched.c */
struct proc* proc_create(u32 cpu, enum proc_kind kind, const char* name, u64 entry, u64 arg);
void proc_start_first(u32 cpu) __attribute__((noreturn));
struct frame* schedule(struct frame* f);
struct frame* proc_exit(struct frame* f, u32 state);
/* While a process runs, its trap frame is proc.frame: the process is found from the frame. */
static inline struct proc* current_proc(struct frame* f) {
  return (struct proc*)((char*)f - offsetof(struct proc, frame));
}

/* syscall.c */
void syscall_probe(void);
struct frame* syscall_dispatch(struct frame* f);
struct frame* sys_evil_getpid(struct frame* f);
void attack_text_target(void);

/* trap.S / boot.S */
void trap_return(struct frame* f) __attribute__((noreturn));
void syscall_entry(void);
void syscall_hook(void);    /* a "rootkit" LSTAR that forwards to syscall_entry */
extern char trap_vectors[]; /* 32 exception stubs of TRAP_STUB_SIZE bytes */
extern char timer_stub[], spurious_stub[];
#define TRAP_STUB_SIZE 16
void gdt_load(void* gdtr, u32 tss_selector);
int probe_enter_user(struct frame* f); /* returns the value passed to probe_leave */
void probe_leave(int value) __attribute__((noreturn));
long poke_byte(u64 addr, u64 value); /* 0, or -1 if the write faulted */
long poke_qword(u64 addr, u64 value);
long poke_msr(u64 msr, u64 value);
long fixup_lookup(u64 rip); /* recovery RIP for a faulting poke, or 0 */

/* user programs (user/) */
void user_worker(u64 index, u64 pid);
void user_agent(u64 index, u64 pid);
void user_attacker(u64 index, u64 pid);
void user_faulter(u64 index, u64 pid);
void user_beacon(u64 index, u64 pid);
void user_probe(u64 index, u64 pid);

/* Small helpers. */
static inline void outb(u16 port, u8 v) {
  __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port));
}
static inline void wrmsr(u32 msr, u64 v) {
  __asm__ volatile("wrmsr" ::"c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}
static inline u64 rdmsr(u32 msr) {
  u32 lo, hi;
  __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return ((u64)hi << 32) | lo;
}
static inline void write_cr3(u64 v) {
  __asm__ volatile("mov %0, %%cr3" ::"r"(v) : "memory");
}
static inline u64 read_cr3(void) {
  u64 v;
  __asm__ volatile("mov %%cr3, %0" : "=r"(v));
  return v;
}
static inline u64 read_cr2(void) {
  u64 v;
  __asm__ volatile("mov %%cr2, %0" : "=r"(v));
  return v;
}
static inline __attribute__((always_inline)) void cpuid(u32 leaf, u32* a, u32* b, u32* c, u32* d) {
  __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}
static inline void cpu_relax(void) {
  __asm__ volatile("pause" ::: "memory");
}

static inline int cmdline_has(const char* word) {
  const char* s = boot_info->cmdline;
  for (; *s; s++) {
    const char* a = s;
    const char* b = word;
    while (*b && *a == *b) a++, b++;
    if (!*b) return 1;
  }
  return 0;
}

#endif
