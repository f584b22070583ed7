/* WRMSR/RDMSR at CPL0: LSTAR takes a value and reads it back; a write to an MSR that does not
   exist raises #GP, which the guest handles by skipping the instruction. */
#include "glassbox/boot/boot_info.h"
  .code64
  .section .text.entry
  .globl _start
_start:
  test %rsi, %rsi
  jnz park
  mov $13, %edi
  lea gp_handler(%rip), %rsi
  call set_gate
  call load_idt
  xor %r15, %r15

  mov $0xc0000082, %ecx   /* IA32_LSTAR */
  mov $0x81234567, %eax
  mov $0xffffffff, %edx
  wrmsr
  xor %eax, %eax
  xor %edx, %edx
  rdmsr
  shl $32, %rdx
  or %rax, %rdx
  mov %rdx, %r12
  lea lstar_msg(%rip), %rdi
  call puts
  mov %r12, %rdi
  call put_hex
  lea newline(%rip), %rdi
  call puts

  mov $0x4b564d99, %ecx   /* no such MSR */
  xor %eax, %eax
  xor %edx, %edx
  wrmsr
  lea after_msg(%rip), %rdi
  call puts
  mov $0xffffffff81234567, %rax
  xor %edi, %edi
  cmp %rax, %r12
  setne %dil
  cmp $1, %r15
  je 1f
  mov $3, %edi
1:
  call poweroff

gp_handler:
  inc %r15
  add $8, %rsp            /* error code */
  addq $2, (%rsp)         /* skip the 2-byte WRMSR */
  push %rdi
  lea gp_msg(%rip), %rdi
  call puts
  pop %rdi
  iretq

  .section .rodata
lstar_msg:
  .asciz "lstar reads back "
gp_msg:
  .asciz "#GP on unknown MSR handled\n"
after_msg:
  .asciz "wrmsr done\n"
newline:
  .asciz "\n"
