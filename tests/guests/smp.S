/* Every vCPU writes its index under a spinlock and counts itself in; vCPU 0 waits for all of
   them (count from the boot info) and powers off with 0. */
#include "glassbox/boot/boot_info.h"
  .code64
  .section .text.entry
  .globl _start
_start:
  mov %rdi, %r12          /* boot info */
  mov %rsi, %r13          /* vCPU index */
1:
  mov $1, %eax
  xchg %eax, spin_lock(%rip)
  test %eax, %eax
  jnz 1b
  lea vcpu_msg(%rip), %rdi
  call puts
  mov %r13, %rdi
  call put_dec
  lea online_msg(%rip), %rdi
  call puts
  movl $0, spin_lock(%rip)
  lock incl online(%rip)
  test %r13, %r13
  jnz park
  mov GLASSBOX_BOOT_INFO_VCPU_COUNT(%r12), %ebx
2:
  pause
  cmp online(%rip), %ebx
  jne 2b
  lea all_msg(%rip), %rdi
  call puts
  mov %rbx, %rdi
  call put_dec
  lea online_msg(%rip), %rdi
  call puts
  xor %edi, %edi
  call poweroff

  .data
  .balign 4
spin_lock:
  .long 0
online:
  .long 0

  .section .rodata
vcpu_msg:
  .asciz "vcpu "
all_msg:
  .asciz "vcpus: "
online_msg:
  .asciz " online\n"
