/* Helpers shared by the scenario guests (CPL0, SysV calling convention, clobbers caller-saved). */
#include "glassbox/boot/boot_info.h"

  .code64
  .text

/* puts(rdi = NUL-terminated string) */
  .globl puts
puts:
  mov $GLASSBOX_PORT_COM1, %dx
1:
  movb (%rdi), %al
  test %al, %al
  jz 2f
  outb %al, %dx
  inc %rdi
  jmp 1b
2:
  ret

/* put_hex(rdi = value): prints 0x followed by 16 hex digits */
  .globl put_hex
put_hex:
  mov $GLASSBOX_PORT_COM1, %dx
  mov $'0', %al
  outb %al, %dx
  mov $'x', %al
  outb %al, %dx
  mov $16, %ecx
1:
  rol $4, %rdi
  mov %edi, %eax
  and $0xf, %eax
  lea hex_digits(%rip), %rsi
  movb (%rsi,%rax), %al
  outb %al, %dx
  dec %ecx
  jnz 1b
  ret

/* put_dec(rdi = value): prints the value in decimal */
  .globl put_dec
put_dec:
  mov %rdi, %rax
  lea dec_buffer_end(%rip), %rsi
  movb $0, (%rsi)
  mov $10, %rcx
1:
  xor %edx, %edx
  div %rcx
  add $'0', %dl
  dec %rsi
  movb %dl, (%rsi)
  test %rax, %rax
  jnz 1b
  mov %rsi, %rdi
  jmp puts

/* poweroff(edi = status): never returns */
  .globl poweroff
poweroff:
  cli
  mov %edi, %eax
  mov $GLASSBOX_PORT_POWER, %dx
  outl %eax, %dx
1:
  hlt
  jmp 1b

/* park(): an application processor with nothing to do */
  .globl park
park:
  cli
1:
  hlt
  jmp 1b

/* set_gate(edi = vector, rsi = handler): 64-bit interrupt gate, DPL0, in the shared IDT */
  .globl set_gate
set_gate:
  lea idt(%rip), %rax
  shl $4, %rdi
  add %rdi, %rax
  mov %rsi, %rcx
  movw %cx, (%rax)            /* offset 15:0 */
  movw $0x08, 2(%rax)         /* kernel code selector */
  movw $0x8e00, 4(%rax)       /* present, DPL0, interrupt gate */
  shr $16, %rcx
  movw %cx, 6(%rax)           /* offset 31:16 */
  shr $16, %rcx
  movl %ecx, 8(%rax)          /* offset 63:32 */
  movl $0, 12(%rax)
  ret

/* load_idt(): loads the shared IDT (256 gates) */
  .globl load_idt
load_idt:
  lea idt_descriptor(%rip), %rax
  lea idt(%rip), %rcx
  mov %rcx, 2(%rax)
  lidt (%rax)
  ret

/* cmdline_number(rdi = boot info): parses a leading decimal number from the command line;
   returns it in rax, or 0 when the command line does not start with a digit. */
  .globl cmdline_number
cmdline_number:
  lea GLASSBOX_BOOT_INFO_CMDLINE(%rdi), %rsi
  xor %eax, %eax
1:
  movzbl (%rsi), %ecx
  sub $'0', %ecx
  cmp $9, %ecx
  ja 2f
  imul $10, %rax, %rax
  add %rcx, %rax
  inc %rsi
  jmp 1b
2:
  ret

  .section .rodata
hex_digits:
  .ascii "0123456789abcdef"

  .data
  .balign 8
idt_descriptor:
  .word 256 * 16 - 1
  .quad 0

  .bss
  .balign 16
idt:
  .skip 256 * 16
dec_buffer:
  .skip 24
dec_buffer_end:
  .skip 1
