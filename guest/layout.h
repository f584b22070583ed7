/* Constants shared by the guest kernel's C code, its assembly and tools/gen_json.py.
 * Plain #defines only (included from .S files and parsed by the JSON generator). */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

#define MAX_CPUS 8
#define WORKERS_PER_CPU 3
#define MAX_PROCS (MAX_CPUS * WORKERS_PER_CPU + 4) /* + agent, attacker, faulter, beacon */

/* GDT selectors. The user selectors follow the SYSRET layout: STAR[63:48] = 0x18. */
#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UCODE32 0x1b
#define SEL_UDATA 0x23
#define SEL_UCODE 0x2b
#define SEL_TSS0 0x30 /* vCPU i uses SEL_TSS0 + 16 * i */

/* Vectors. */
#define VEC_BP 3         /* INT3 from CPL3: the system-call gate where SYSCALL does not work */
#define VEC_TIMER 0x20   /* LAPIC timer */
#define VEC_SYSCALL 0x80 /* pseudo vector pushed by the SYSCALL entry stub */
#define VEC_SPURIOUS 0xff

/* struct frame (trap.S pushes it; offsets in bytes). */
#define FRAME_R15 0
#define FRAME_RAX 112
#define FRAME_VECTOR 120
#define FRAME_ERROR 128
#define FRAME_RIP 136
#define FRAME_CS 144
#define FRAME_RFLAGS 152
#define FRAME_RSP 160
#define FRAME_SS 168
#define FRAME_SIZE 176

/* struct cpu: the SYSCALL stub reads these through %gs (KERNEL_GS_BASE = &cpus[i]). */
#define CPU_SCRATCH 0 /* user RSP saved by the SYSCALL stub */
#define CPU_TSS 16    /* struct tss starts here; rsp0 is at TSS offset 4 */
#define CPU_TSS_RSP0 20

/* struct proc (exported to tools through glassbox-guest.json). */
#define PROC_PID 0
#define PROC_STATE 4
#define PROC_CPU 8
#define PROC_KIND 12
#define PROC_CR3 16
#define PROC_COUNTER 24
#define PROC_SYSCALLS 32
#define PROC_SWITCHES 40
#define PROC_NAME 48 /* char[16] */
#define PROC_KSTACK_SIZE 4096
#define PROC_SIZE (64 + PROC_KSTACK_SIZE + FRAME_SIZE) /* frame ends 16-byte aligned */

/* Process states. */
#define PROC_UNUSED 0
#define PROC_RUNNABLE 1
#define PROC_EXITED 2
#define PROC_KILLED 3

/* User address space (identical in every process). */
#define USER_CODE_VA 0x40000000UL   /* user programs (shared, read-only) */
#define USER_SHARED_VA 0x40100000UL /* struct user_shared (read-only) */
#define USER_DATA_VA 0x40101000UL   /* private page: the process's counter lives at offset 0 */
#define USER_STACK_VA 0x40102000UL  /* private stack pages */
#define USER_STACK_PAGES 2
#define USER_STACK_TOP (USER_STACK_VA + USER_STACK_PAGES * 4096)
#define USER_PRIVATE_PAGES (1 + USER_STACK_PAGES)
#define USER_MAX_CODE_PAGES 64

/* System calls: number in RAX, arguments in RDI, RSI, RDX, result in RAX. */
#define SYS_WRITE 0 /* write(buf, len) to the console */
#define SYS_YIELD 1
#define SYS_EXIT 2 /* exit(status) */
#define SYS_GETPID 3
#define SYS_HYPERCALL 4 /* KVMI hypercall by VMCALL, only where CPUID says it is safe */
#define SYS_POKE 5      /* UNSAFE (attack mode only): poke(kind, addr, value) */
#define SYS_PEEK 6      /* UNSAFE (attack mode only): peek(kind, addr) */
#define NR_SYSCALLS 7

#define POKE_BYTE 0
#define POKE_QWORD 1
#define POKE_MSR 2

#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_SFMASK 0xc0000084
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102

#endif
