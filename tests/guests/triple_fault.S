/* Loads an empty IDT and executes UD2: #UD cannot be delivered, then neither can #DF, so the
   vCPU triple-faults and the VMM must stop the VM with a diagnostic. */
#include "glassbox/boot/boot_info.h"
  .code64
  .section .text.entry
  .globl _start
_start:
  test %rsi, %rsi
  jnz park
  lea message(%rip), %rdi
  call puts
  lidt empty_idt(%rip)
  ud2

  .section .rodata
message:
  .asciz "about to triple fault\n"
  .balign 8
empty_idt:
  .word 0
  .quad 0
