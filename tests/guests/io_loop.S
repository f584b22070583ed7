/* Port I/O round trips: N times OUT to the UART scratch register and IN it back, checking the
   value. N comes from the command line (a decimal number; default 10000). Prints the count and
   powers off with 0, or with 1 when a read-back differs. */
#include "glassbox/boot/boot_info.h"
  .code64
  .section .text.entry
  .globl _start
_start:
  test %rsi, %rsi
  jnz park
  call cmdline_number
  test %rax, %rax
  jnz 1f
  mov $10000, %eax
1:
  mov %rax, %r12          /* iterations */
  xor %r13, %r13          /* done */
  mov $(GLASSBOX_PORT_COM1 + 7), %dx
2:
  cmp %r12, %r13
  je 3f
  mov %r13d, %eax
  outb %al, %dx
  xor %eax, %eax
  inb %dx, %al
  cmp %r13b, %al
  jne mismatch
  inc %r13
  jmp 2b
3:
  lea done_msg(%rip), %rdi
  call puts
  mov %r13, %rdi
  call put_dec
  lea newline(%rip), %rdi
  call puts
  xor %edi, %edi
  call poweroff
mismatch:
  lea bad_msg(%rip), %rdi
  call puts
  mov $1, %edi
  call poweroff

  .section .rodata
done_msg:
  .asciz "io loop round trips: "
bad_msg:
  .asciz "io loop: scratch register read back a different value\n"
newline:
  .asciz "\n"
