/* Page access scenario (KVMI_VM_SET_PAGE_ACCESS / KVMI_EVENT_PF). vCPU 0 prints the addresses of
   its four pages, then loops forever; each iteration N:
     writes N to watch_page and reads it back            (W)
     reads the qword at read_page + 8                    (R)
     calls the function alone in exec_page (eax = 119)   (X)
     with AVX (command line "1" and CPUID): stores ymm0 (low qword N) to avx_page and reads the low qword back
   and prints "it N w=<read back> r=<read qword> x=<eax> a=<avx read back>".
   Other vCPUs read the qword at read_page + 16 in a loop and count in reader_count.
   Command line: 0 = the loop at CPL0; 1 = AVX if the CPU has it, and then the loop at CPL3;
   2 = the loop at CPL3 without AVX. */
#include "glassbox/boot/boot_info.h"
  .code64
  .section .text.entry
  .globl _start
_start:
  test %rsi, %rsi
  jnz reader
  call cmdline_number
  mov %rax, mode(%rip)
  xor %r15d, %r15d        /* 1 once AVX is usable */
  lea pages_msg(%rip), %rdi
  call puts
  lea watch_page(%rip), %rdi
  call put_hex
  lea r_msg(%rip), %rdi
  call puts
  lea read_page(%rip), %rdi
  call put_hex
  lea x_msg(%rip), %rdi
  call puts
  lea exec_page(%rip), %rdi
  call put_hex
  lea a_msg(%rip), %rdi
  call puts
  lea avx_page(%rip), %rdi
  call put_hex
  lea newline(%rip), %rdi
  call puts
  cmpq $1, mode(%rip)
  jne 1f
  call avx_setup
1:
  lea avx_msg(%rip), %rdi
  call puts
  mov %r15, %rdi
  call put_dec
  lea newline(%rip), %rdi
  call puts
  xor %r12d, %r12d
  cmp $1, %r15
  je 2f
  cmpq $2, mode(%rip)
  jne iteration
2:
  movq $1, at_cpl3(%rip)
  jmp enter_user
iteration:
  inc %r12
  mov %r12, watch_page(%rip)
  mov watch_page(%rip), %r13
  mov read_page + 8(%rip), %r14
  call exec_page
  mov %eax, %ebx
  xor %ebp, %ebp
  test %r15, %r15
  jz 1f
  vmovq %r12, %xmm0
  vmovdqu %ymm0, avx_page(%rip)
  mov avx_page(%rip), %rbp
1:
  cmpq $0, at_cpl3(%rip)
  je 3f
  int3                    /* at CPL3: the CPL0 handler prints (OUT needs CPL0 here) */
  jmp 4f
3:
  call print_line
4:
  mov $2000, %ecx
2:
  dec %ecx
  jnz 2b
  jmp iteration

/* Prints "it N w=... r=... x=... a=..." from r12, r13, r14, rbx, rbp. */
print_line:
  lea it_msg(%rip), %rdi
  call puts
  mov %r12, %rdi
  call put_dec
  lea w_msg(%rip), %rdi
  call puts
  mov %r13, %rdi
  call put_dec
  lea r_msg(%rip), %rdi
  call puts
  mov %r14, %rdi
  call put_hex
  lea x_msg(%rip), %rdi
  call puts
  mov %rbx, %rdi
  call put_dec
  lea a_msg(%rip), %rdi
  call puts
  mov %rbp, %rdi
  call put_dec
  lea newline(%rip), %rdi
  call puts
  ret

/* INT3 from the CPL3 loop: print its line, return after the INT3. */
user_print:
  push %rax
  push %rcx
  push %rdx
  push %rsi
  push %rdi
  call print_line
  pop %rdi
  pop %rsi
  pop %rdx
  pop %rcx
  pop %rax
  iretq

/* With AVX (or command line 2) the loop runs at CPL3 and prints through an INT3 gate: KVM-PVM
   emulates every CPL0 instruction and its emulator has no AVX, while CPL3 code runs natively.
   Never returns. */
enter_user:
  movabs $0x000ffffffffff000, %rdx
  mov %cr3, %rax
  and %rdx, %rax
  orq $4, (%rax)          /* PML4[0]: user */
  mov (%rax), %rcx
  and %rdx, %rcx
  orq $4, (%rcx)          /* PDPT[0] */
  mov (%rcx), %rcx
  and %rdx, %rcx
  orq $4, (%rcx)          /* PD[0]: the 4 KiB table of the first 2 MiB */
  mov (%rcx), %rcx
  and %rdx, %rcx
  mov $512, %esi
1:
  orq $4, (%rcx)
  add $8, %rcx
  dec %esi
  jnz 1b
  mov %cr3, %rax
  mov %rax, %cr3
  /* TSS (RSP0 for the INT3 gate) in GDT slots 5-6 */
  lea tss(%rip), %rax
  lea kernel_stack_top(%rip), %rcx
  mov %rcx, 4(%rax)
  movw $104, 102(%rax)    /* no I/O bitmap */
  shl $16, %rax
  or $0x67, %rax
  movabs $(0x89 << 40), %rcx
  or %rcx, %rax
  lea user_gdt(%rip), %rcx
  mov %rax, 40(%rcx)
  movq $0, 48(%rcx)
  lea user_gdt_descriptor(%rip), %rax
  mov %rcx, 2(%rax)
  lgdt (%rax)
  mov $0x28, %ax
  ltr %ax
  /* IDT: vector 3 only, DPL 3 */
  lea user_print(%rip), %rcx
  lea user_idt(%rip), %rax
  movw %cx, 3 * 16(%rax)
  movw $0x08, 3 * 16 + 2(%rax)
  movw $0xee00, 3 * 16 + 4(%rax)
  shr $16, %rcx
  movw %cx, 3 * 16 + 6(%rax)
  shr $16, %rcx
  movl %ecx, 3 * 16 + 8(%rax)
  movl $0, 3 * 16 + 12(%rax)
  lea user_idt_descriptor(%rip), %rcx
  mov %rax, 2(%rcx)
  lidt (%rcx)
  lea user_stack_top(%rip), %rax
  pushq $0x23             /* user data, RPL 3 */
  push %rax
  pushq $0x2
  pushq $0x1b             /* user code, RPL 3 */
  lea iteration(%rip), %rax
  push %rax
  iretq

/* r15 = 1 when AVX is usable. KVM-PVM runs CPL0 code in KVM's emulator, which has no AVX at
   all: there the AVX part needs a hardware-virtualized host. */
/* r15 = 1 when AVX is usable (CPUID AVX + XSAVE, XCR0 can hold YMM); enables it then. */
avx_setup:
  xor %r15d, %r15d
  mov $1, %eax
  xor %ecx, %ecx
  cpuid
  bt $28, %ecx            /* AVX */
  jnc 9f
  bt $26, %ecx            /* XSAVE */
  jnc 9f
  mov $0xd, %eax
  xor %ecx, %ecx
  cpuid
  and $7, %eax
  cmp $7, %eax            /* x87, SSE and AVX state */
  jne 9f
  mov %cr0, %rax
  and $~(1 << 2), %rax    /* EM off */
  or $(1 << 1), %rax      /* MP on */
  mov %rax, %cr0
  mov %cr4, %rax
  or $((1 << 18) | (1 << 10) | (1 << 9)), %rax  /* OSXSAVE, OSXMMEXCPT, OSFXSR */
  mov %rax, %cr4
  mov $7, %eax            /* XCR0 = x87 | SSE | AVX (XGETBV is not emulated on KVM-PVM) */
  xor %edx, %edx
  xor %ecx, %ecx
  xsetbv
  mov $1, %r15d
9:
  ret

reader:
1:
  mov read_page + 16(%rip), %rax
  lock incq reader_count(%rip)
  mov $500, %ecx
2:
  dec %ecx
  jnz 2b
  jmp 1b

  /* Alone in its page, so a restriction on it touches nothing else. */
  .section .text.exec, "ax"
  .balign 4096
  .globl exec_page
exec_page:
  mov $119, %eax
  ret
  .balign 4096

  .data
  .balign 8
user_gdt:
  .quad 0
  .quad 0x00af9a000000ffff  /* 0x08 kernel code */
  .quad 0x00cf92000000ffff  /* 0x10 kernel data */
  .quad 0x00affa000000ffff  /* 0x18 user code */
  .quad 0x00cff2000000ffff  /* 0x20 user data */
  .quad 0, 0                /* 0x28 TSS, filled in */
mode:
  .quad 0
at_cpl3:                  /* the loop runs at CPL3 (readable there: the first 2 MiB are user) */
  .quad 0
user_gdt_descriptor:
  .word 7 * 8 - 1
  .quad 0
user_idt_descriptor:
  .word 4 * 16 - 1
  .quad 0
  .balign 4096
watch_page:
  .quad 0
  .balign 4096
read_page:
  .quad 0x1111111111111111, 0x2222222222222222, 0x3333333333333333
  .balign 4096
avx_page:
  .quad 0
  .balign 4096
reader_count:
  .quad 0
  .balign 4096

  .bss
  .balign 16
user_idt:
  .skip 4 * 16
tss:
  .skip 104
  .balign 16
kernel_stack:
  .skip 8192
kernel_stack_top:
user_stack:
  .skip 8192
user_stack_top:

  .section .rodata
pages_msg:
  .asciz "pages: w="
r_msg:
  .asciz " r="
x_msg:
  .asciz " x="
a_msg:
  .asciz " a="
w_msg:
  .asciz " w="
it_msg:
  .asciz "it "
avx_msg:
  .asciz "avx="
newline:
  .asciz "\n"
