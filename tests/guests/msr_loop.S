/* Every vCPU writes LSTAR (and IA32_KERNEL_GS_BASE) at CPL0 in a loop and reads both back,
   printing one line per iteration:
     v<vcpu> i=<iteration> w=<LSTAR written> r=<LSTAR read back> gs=<ok|BAD> gp=<#GPs so far>
   The written value is unique per vCPU and iteration, 0xffffffff80000000 | vcpu << 24 | i << 4,
   so a tool can match its events to lines. A WRMSR that faults lands in the #GP handler, which
   counts it and skips the instruction. The command line gives the number of iterations (0 or
   none: forever); then each vCPU prints "v<vcpu> done" and vCPU 0 powers off with 0 once all
   have. */
#include "glassbox/boot/boot_info.h"
  .code64
  .section .text.entry
  .globl _start
_start:
  mov %rdi, %r12          /* boot info */
  mov %rsi, %r13          /* vCPU index */
  test %r13, %r13
  jnz 1f
  mov $13, %edi
  lea gp_handler(%rip), %rsi
  call set_gate
  movl $1, idt_ready(%rip)
1:
  pause
  cmpl $0, idt_ready(%rip)
  je 1b
  call load_idt
  mov %r12, %rdi
  call cmdline_number
  mov %rax, %r14          /* iterations, 0 = forever */
  mov GLASSBOX_BOOT_INFO_VCPU_COUNT(%r12), %eax
  mov %eax, vcpu_count(%rip)
  xor %r15, %r15          /* #GP count */
  xor %ebx, %ebx          /* iteration */

next:
  inc %rbx
  mov %r13, %rbp
  shl $24, %rbp
  mov %rbx, %rax
  shl $4, %rax
  or %rax, %rbp
  mov $0xffffffff80000000, %rax
  or %rax, %rbp           /* the LSTAR value of this iteration */

  mov $0xc0000082, %ecx   /* IA32_LSTAR: the MSR the tool watches */
  mov %rbp, %rax
  mov %rbp, %rdx
  shr $32, %rdx
  wrmsr
  mov $0xc0000082, %ecx
  rdmsr
  shl $32, %rdx
  mov %eax, %eax
  or %rax, %rdx
  mov %rdx, %r12          /* LSTAR read back */

  mov $0xc0000102, %ecx   /* IA32_KERNEL_GS_BASE: never watched */
  mov %rbp, %rax
  xor $0x5a0, %rax
  push %rax
  mov %rax, %rdx
  shr $32, %rdx
  wrmsr
  mov $0xc0000102, %ecx
  rdmsr
  shl $32, %rdx
  mov %eax, %eax
  or %rax, %rdx
  pop %rax
  lea gs_ok(%rip), %rsi
  lea gs_bad(%rip), %rdi
  cmp %rax, %rdx
  cmovne %rdi, %rsi
  push %rsi

  call lock_console
  lea v_msg(%rip), %rdi
  call puts
  mov %r13, %rdi
  call put_dec
  lea i_msg(%rip), %rdi
  call puts
  mov %rbx, %rdi
  call put_dec
  lea w_msg(%rip), %rdi
  call puts
  mov %rbp, %rdi
  call put_hex
  lea r_msg(%rip), %rdi
  call puts
  mov %r12, %rdi
  call put_hex
  pop %rdi
  call puts               /* " gs=ok" or " gs=BAD" */
  lea gp_msg(%rip), %rdi
  call puts
  mov %r15, %rdi
  call put_dec
  lea newline(%rip), %rdi
  call puts
  call unlock_console

  /* Pace the loop (~10-40 ms per line at CPL0, where every instruction is emulated) so the
     console stays readable and a test that reads it now and then never finds the pipe full. */
  mov $10000, %ecx
3:
  dec %ecx
  jnz 3b

  test %r14, %r14
  jz next
  cmp %r14, %rbx
  jb next

  call lock_console
  lea v_msg(%rip), %rdi
  call puts
  mov %r13, %rdi
  call put_dec
  lea done_msg(%rip), %rdi
  call puts
  call unlock_console
  lock incl finished(%rip)
  test %r13, %r13
  jnz park
2:
  pause
  mov finished(%rip), %eax
  cmp vcpu_count(%rip), %eax
  jne 2b
  xor %edi, %edi
  call poweroff

lock_console:
  mov $1, %eax
  xchg %eax, console_lock(%rip)
  test %eax, %eax
  jz 1f
  pause
  jmp lock_console
1:
  ret

unlock_console:
  movl $0, console_lock(%rip)
  ret

/* A refused WRMSR (or RDMSR): count it and go on after the 2-byte instruction. */
gp_handler:
  inc %r15
  add $8, %rsp            /* error code */
  addq $2, (%rsp)
  iretq

  .data
  .balign 4
idt_ready:
  .long 0
console_lock:
  .long 0
finished:
  .long 0
vcpu_count:
  .long 0

  .section .rodata
v_msg:
  .asciz "v"
i_msg:
  .asciz " i="
w_msg:
  .asciz " w="
r_msg:
  .asciz " r="
gs_ok:
  .asciz " gs=ok"
gs_bad:
  .asciz " gs=BAD"
gp_msg:
  .asciz " gp="
newline:
  .asciz "\n"
done_msg:
  .asciz " done\n"
