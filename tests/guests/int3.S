/* INT3 at CPL0 with the guest's own #BP handler: the handler must run once with the return
   address just after the INT3, and execution must continue there. */
#include "glassbox/boot/boot_info.h"
  .code64
  .section .text.entry
  .globl _start
_start:
  test %rsi, %rsi
  jnz park
  mov $3, %edi
  lea bp_handler(%rip), %rsi
  call set_gate
  call load_idt
  xor %r15, %r15          /* handler runs */
  int3
after_int3:
  lea resumed_msg(%rip), %rdi
  call puts
  xor %edi, %edi
  cmp $1, %r15
  setne %dil
  call poweroff

bp_handler:
  inc %r15
  mov (%rsp), %rax
  lea after_int3(%rip), %rcx
  cmp %rcx, %rax
  jne 1f
  lea ok_msg(%rip), %rdi
  call puts
  iretq
1:
  mov %rax, %r14
  lea bad_msg(%rip), %rdi
  call puts
  mov %r14, %rdi
  call put_hex
  mov $2, %edi
  call poweroff

  .section .rodata
ok_msg:
  .asciz "breakpoint handler: return address ok\n"
bad_msg:
  .asciz "breakpoint handler: wrong return address "
resumed_msg:
  .asciz "resumed after int3\n"
