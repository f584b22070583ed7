/* Kernel entry and exit paths. Every entry builds a struct frame (layout.h). For traps from CPL3
 * the CPU pushes the hardware part at TSS.rsp0, which points just past the current process's
 * proc.frame, so the whole user state lands in the process table and a context switch is only
 * "return another frame". The C handlers return the frame to resume.
 *
 * CPL0 instructions are emulated on KVM-PVM (~1 us each): these paths are kept short.
 * System call through INT3: 2 pushes + 15 register pushes + 2 checks + call, the C dispatcher,
 * then 15 pops + add + IRETQ. */
#include "layout.h"

.macro SAVE_REGS
  push %rax
  push %rbx
  push %rcx
  push %rdx
  push %rsi
  push %rdi
  push %rbp
  push %r8
  push %r9
  push %r10
  push %r11
  push %r12
  push %r13
  push %r14
  push %r15
.endm

.macro RESTORE_REGS_AND_IRET
  pop %r15
  pop %r14
  pop %r13
  pop %r12
  pop %r11
  pop %r10
  pop %r9
  pop %r8
  pop %rbp
  pop %rdi
  pop %rsi
  pop %rdx
  pop %rcx
  pop %rbx
  pop %rax
  add $16, %rsp /* vector, error code */
  iretq
.endm

  .text
/* Exception stubs 0..31, TRAP_STUB_SIZE (16) bytes each. */
  .balign 16
  .globl trap_vectors
trap_vectors:
.irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
  .balign 16
.if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
  pushq $\vec
.else
  pushq $0
  pushq $\vec
.endif
  jmp trap_common
.endr

  .balign 16
  .globl timer_stub
timer_stub:
  pushq $0
  pushq $VEC_TIMER
  jmp trap_common

  .globl spurious_stub
spurious_stub:
  iretq /* spurious LAPIC interrupt: no EOI */

/* INT3 gate (vector 3, DPL3): the system-call entry from user mode on hosts where SYSCALL does
 * not reach CPL0. A #BP from CPL0 (never issued by this kernel) goes to the generic path. */
  .globl int3_entry
int3_entry:
  testb $3, 8(%rsp) /* CS of the hardware frame */
  jz 1f
  pushq $0
  pushq $VEC_BP
  SAVE_REGS
  mov %rsp, %rdi
  call syscall_dispatch
  mov %rax, %rsp
  RESTORE_REGS_AND_IRET
1:
  pushq $0
  pushq $VEC_BP
  jmp trap_common

trap_common:
  SAVE_REGS
  mov %rsp, %rdi
  call trap_handler
  mov %rax, %rsp
  .globl trap_exit
trap_exit:
  RESTORE_REGS_AND_IRET

/* trap_return(frame): resume a frame (first entry into a process). */
  .globl trap_return
trap_return:
  mov %rdi, %rsp
  jmp trap_exit

/* LSTAR target. Where SYSCALL really enters CPL0 this builds the same frame as INT3 does, on
 * TSS.rsp0 of this vCPU (KERNEL_GS_BASE = &cpus[i]), and returns through IRETQ. */
  .globl syscall_entry
syscall_entry:
  swapgs
  mov %rsp, %gs:CPU_SCRATCH
  mov %gs:CPU_TSS_RSP0, %rsp
  pushq $SEL_UDATA
  pushq %gs:CPU_SCRATCH
  push %r11 /* user RFLAGS */
  pushq $SEL_UCODE
  push %rcx /* user RIP */
  swapgs
  pushq $0
  pushq $VEC_SYSCALL
  SAVE_REGS
  mov %rsp, %rdi
  call syscall_dispatch
  mov %rax, %rsp
  jmp trap_exit

/* int probe_enter_user(frame): run a user frame once at boot; the trap it ends with calls
 * probe_leave(value), which returns here with that value. */
  .globl probe_enter_user
probe_enter_user:
  push %rbx
  push %rbp
  push %r12
  push %r13
  push %r14
  push %r15
  mov %rsp, probe_saved_rsp(%rip)
  mov %rdi, %rsp
  jmp trap_exit

  .globl probe_leave
probe_leave:
  mov probe_saved_rsp(%rip), %rsp
  mov %edi, %eax
  pop %r15
  pop %r14
  pop %r13
  pop %r12
  pop %rbp
  pop %rbx
  ret

/* The unsafe primitives of SYS_POKE/SYS_PEEK. Each faulting instruction has a fixup: a fault
 * there (for example a #GP from a filtered WRMSR) resumes at poke_fail, which returns -1. */
  .globl poke_byte, poke_qword, poke_msr, peek_byte, peek_qword, peek_msr, fixup_lookup
poke_byte:
.Lf0: movb %sil, (%rdi)
  xor %eax, %eax
  ret
poke_qword:
.Lf1: mov %rsi, (%rdi)
  xor %eax, %eax
  ret
poke_msr:
  mov %edi, %ecx
  mov %esi, %eax
  mov %rsi, %rdx
  shr $32, %rdx
.Lf2: wrmsr
  xor %eax, %eax
  ret
peek_byte:
.Lf3: movzbl (%rdi), %eax
  ret
peek_qword:
.Lf4: mov (%rdi), %rax
  ret
peek_msr:
  mov %edi, %ecx
.Lf5: rdmsr
  shl $32, %rdx
  or %rdx, %rax
  ret
poke_fail:
  mov $-1, %rax
  ret

/* fixup_lookup(rip): poke_fail if rip is one of the instructions above, else 0. */
fixup_lookup:
  lea fixups(%rip), %rdx
  mov $6, %ecx
1:
  cmp (%rdx), %rdi
  je 2f
  add $8, %rdx
  dec %ecx
  jnz 1b
  xor %eax, %eax
  ret
2:
  lea poke_fail(%rip), %rax
  ret

  .section .rodata
  .balign 8
fixups:
  .quad .Lf0, .Lf1, .Lf2, .Lf3, .Lf4, .Lf5

  .bss
  .balign 8
probe_saved_rsp:
  .quad 0

/* What the attacker writes into LSTAR: a hook that forwards to the real entry. */
  .text
  .globl syscall_hook
syscall_hook:
  jmp syscall_entry

  .section .note.GNU-stack, "", @progbits
