/* MMIO: a write and a read to an address no device claims (the read must return all ones), and a
   read of the in-kernel LAPIC id register. */
#include "glassbox/boot/boot_info.h"
  .code64
  .section .text.entry
  .globl _start
_start:
  test %rsi, %rsi
  jnz park
  mov $0xd0000000, %rbx
  movl $0x12345678, (%rbx)
  movl (%rbx), %eax
  mov %eax, %r12d
  lea unclaimed_msg(%rip), %rdi
  call puts
  mov %r12, %rdi
  call put_hex
  lea newline(%rip), %rdi
  call puts
  mov $0xfee00020, %rbx
  movl (%rbx), %eax
  shr $24, %eax
  mov %rax, %r13
  lea apic_msg(%rip), %rdi
  call puts
  mov %r13, %rdi
  call put_dec
  lea newline(%rip), %rdi
  call puts
  xor %edi, %edi
  cmp $0xffffffff, %r12d
  setne %dil
  call poweroff

  .section .rodata
unclaimed_msg:
  .asciz "mmio unclaimed read: "
apic_msg:
  .asciz "lapic id: "
newline:
  .asciz "\n"
