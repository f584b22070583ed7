/* Prints one line on the serial console and powers off with status 0. Other vCPUs park. */
#include "glassbox/boot/boot_info.h"
  .code64
  .section .text.entry
  .globl _start
_start:
  test %rsi, %rsi
  jnz park
  lea message(%rip), %rdi
  call puts
  xor %edi, %edi
  call poweroff

  .section .rodata
message:
  .asciz "Hello from a glassbox guest!\n"
