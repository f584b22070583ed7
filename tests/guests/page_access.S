/* Page access scenario (KVMI_VM_SET_PAGE_ACCESS / KVMI_EVENT_PF). vCPU 0 prints the addresses of
   its four pages, then loops forever; each iteration N:
     writes N to watch_page and reads it back            (W)
     reads the qword at read_page + 8                    (R)
     calls the function alone in exec_page (eax = 119)   (X)
     with AVX (command line "1" and CPUID): stores ymm0 (low qword N) to avx_page and reads the low qword back
   and prints "it N w=<read back> r=<read qword> x=<eax> a=<avx read back>".
   Other vCPUs read the qword at read_page + 16 in a loop and count in reader_count. */
#include "glassbox/boot/boot_info.h"
  .code64
  .section .text.entry
  .globl _start
_start:
  test %rsi, %rsi
  jnz reader
  call cmdline_number
  mov %rax, %r15          /* 1: try AVX */
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
  cmp $1, %r15
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
  mov $2000, %ecx
2:
  dec %ecx
  jnz 2b
  jmp iteration

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
