/* Event source for the introspection tests: every vCPU loops forever at CPL0 through
     - an instruction a tool can replace with INT3 (bp_site: `inc %r13`, 3 bytes),
     - with cmdline bit 0: the guest's own INT3, handled by its own #BP handler,
     - with cmdline bit 1: the KVMI hypercall through the doorbell (RAX=34, RDI=24, RSI=0),
     - with cmdline bit 2: WRMSR of LSTAR with the iteration count (nothing here uses SYSCALL),
     - with cmdline bit 3: a store of the iteration count into `store_page` (a quadword per vCPU),
   and keeps per-vCPU counters in `counters` (8 quadwords per vCPU, layout below) that a tool
   reads with VM_READ_PHYSICAL. vCPU 0 prints the addresses a tool needs, then "ready". The
   page tables are the VMM's identity map, so every address here is also its GPA. */
#include "glassbox/boot/boot_info.h"

#define C_ITERATIONS 0      /* loop iterations */
#define C_SITE_RUNS 8       /* times bp_site's `inc %r13` ran */
#define C_OWN_BP 16         /* guest #BP handler runs with the right return address */
#define C_BAD_BP 24         /* guest #BP handler runs with any other return address */
#define C_HCALL_RESULT 32   /* RAX after the last hypercall */
#define C_HCALLS 40         /* hypercalls made */
#define C_STRIDE 64

  .code64
  .section .text.entry
  .globl _start
_start:
  mov %rsi, %r15            /* vCPU index */
  mov %rdi, %rbx            /* boot info */
  test %r15, %r15
  jnz wait_ready
  mov %rbx, %rdi
  call cmdline_number
  mov %rax, mode(%rip)
  mov $3, %edi
  lea bp_handler(%rip), %rsi
  call set_gate
  lea bp_site_msg(%rip), %rdi
  call puts
  lea bp_site(%rip), %rdi
  call put_hex
  lea int3_site_msg(%rip), %rdi
  call puts
  lea int3_site(%rip), %rdi
  call put_hex
  lea store_page_msg(%rip), %rdi
  call puts
  lea store_page(%rip), %rdi
  call put_hex
  lea counters_msg(%rip), %rdi
  call puts
  lea counters(%rip), %rdi
  call put_hex
  lea ready_msg(%rip), %rdi
  call puts
  movl $1, ready(%rip)
  jmp go
wait_ready:
  pause
  cmpl $0, ready(%rip)
  je wait_ready
go:
  call load_idt
  lea counters(%rip), %r14
  mov %r15, %rax
  shl $6, %rax              /* * C_STRIDE */
  add %rax, %r14            /* this vCPU's counters */
  xor %r13, %r13
loop:
  incq C_ITERATIONS(%r14)
  .globl bp_site
bp_site:
  inc %r13
  mov %r13, C_SITE_RUNS(%r14)
  testq $1, mode(%rip)
  jz 1f
  .globl int3_site
int3_site:
  int3
after_int3:
1:
  testq $4, mode(%rip)
  jz 2f
  mov $0xc0000082, %ecx
  mov C_ITERATIONS(%r14), %eax
  xor %edx, %edx
  wrmsr
2:
  testq $8, mode(%rip)
  jz 3f
  mov C_ITERATIONS(%r14), %rax
  lea store_page(%rip), %rcx
  mov %rax, (%rcx,%r15,8)
3:
  testq $2, mode(%rip)
  jz loop
  mov $34, %eax
  mov $24, %edi
  xor %esi, %esi
  mov $GLASSBOX_PORT_DOORBELL, %dx
  outl %eax, %dx
  mov %rax, C_HCALL_RESULT(%r14)
  incq C_HCALLS(%r14)
  jmp loop

bp_handler:
  push %rax
  mov 8(%rsp), %rax         /* the return address */
  push %rcx
  lea after_int3(%rip), %rcx
  cmp %rcx, %rax
  pop %rcx
  jne 1f
  incq C_OWN_BP(%r14)
  pop %rax
  iretq
1:
  incq C_BAD_BP(%r14)
  pop %rax
  iretq

  .section .rodata
bp_site_msg:
  .asciz "bp_site="
int3_site_msg:
  .asciz "\nint3_site="
store_page_msg:
  .asciz "\nstore_page="
counters_msg:
  .asciz "\ncounters="
ready_msg:
  .asciz "\nready\n"

  .data
  .balign 8
mode:
  .quad 0
ready:
  .long 0
  .balign 64
  .globl counters
counters:
  .skip C_STRIDE * 64
  .balign 4096
  .globl store_page
store_page:
  .skip 4096
