/* User-mode (CPL3) runtime. User code is linked into the .user.* sections, which the kernel
 * maps read-only at USER_CODE_VA in every process; it must not call or read kernel code or data,
 * so helpers here are always inlined and strings are USER_RO arrays (no string literals). */
#ifndef GUEST_USER_H
#define GUEST_USER_H

#include "../kernel.h"

#define USER __attribute__((section(".user.text")))
#define USER_RO __attribute__((section(".user.rodata")))
#define UINLINE static inline __attribute__((always_inline))

#define SHARED ((const volatile struct user_shared*)USER_SHARED_VA)

/* INT3 (or SYSCALL where it reaches CPL0); the kernel preserves every register but RAX. */
UINLINE long u_syscall(long n, long a, long b, long c) {
  if (SHARED->use_syscall)
    __asm__ volatile("syscall" : "+a"(n) : "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  else
    __asm__ volatile("int3" : "+a"(n) : "D"(a), "S"(b), "d"(c) : "memory");
  return n;
}

UINLINE void u_yield(void) {
  u_syscall(SYS_YIELD, 0, 0, 0);
}
UINLINE __attribute__((noreturn)) void u_exit(long status) {
  u_syscall(SYS_EXIT, status, 0, 0);
  __builtin_unreachable();
}
UINLINE long u_getpid(void) {
  return u_syscall(SYS_GETPID, 0, 0, 0);
}
UINLINE long u_write(const char* s, u64 len) {
  return u_syscall(SYS_WRITE, (long)s, len, 0);
}

/* A line being built on the user stack. */
struct uline {
  char buf[120];
  u32 len;
};

UINLINE void ul_str(struct uline* l, const char* s) {
  while (*s && l->len < sizeof(l->buf)) l->buf[l->len++] = *s++;
}

UINLINE void ul_num(struct uline* l, u64 v, u32 base) {
  char tmp[20];
  u32 n = 0;
  do {
    u32 d = (u32)(v % base);
    tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    v /= base;
  } while (v);
  while (n && l->len < sizeof(l->buf)) l->buf[l->len++] = tmp[--n];
}

UINLINE void ul_send(struct uline* l) {
  if (l->len < sizeof(l->buf)) l->buf[l->len++] = '\n';
  u_write(l->buf, l->len);
  l->len = 0;
}

UINLINE u64 u_rdtsc(void) {
  u32 lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((u64)hi << 32) | lo;
}

#endif
