/* Entry point. Every vCPU starts here at once in long mode, CPL0, IF=0, with
 * RDI = boot info GPA and RSI = vCPU index, on a private boot stack. */
#include "layout.h"

  .section .text.boot, "ax"
  .globl _start
_start:
  cld
  and $-16, %rsp
  call kmain /* kmain(boot_info, index) never returns */
1:
  cli
  hlt
  jmp 1b

/* gdt_load(gdtr, tss_selector): load our GDT, reload every segment register and TR. */
  .text
  .globl gdt_load
gdt_load:
  lgdt (%rdi)
  mov $SEL_KDATA, %eax
  mov %eax, %ds
  mov %eax, %es
  mov %eax, %ss
  ltr %si
  pushq $SEL_KCODE
  lea 1f(%rip), %rax
  push %rax
  lretq
1:
  ret

  .section .note.GNU-stack, "", @progbits
