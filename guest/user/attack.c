/* Attack mode (--cmdline attack): through the unsafe poke/peek system calls, try to (1) patch
 * a byte of kernel text, (2) overwrite a syscall-table entry, (3) rewrite LSTAR; check whether
 * each took effect, report, and put the original back so the kernel keeps working. */
#include "user.h"

static const char USER_RO s_attack[] = "attack ";
static const char USER_RO s_text[] = "kernel-text";
static const char USER_RO s_table[] = "syscall-table";
static const char USER_RO s_lstar[] = "lstar";
static const char USER_RO s_ok[] = ": succeeded";
static const char USER_RO s_blocked[] = ": blocked";
static const char USER_RO s_summary[] = "attack summary: ";
static const char USER_RO s_of3[] = " of 3 succeeded";

UINLINE long poke(long kind, u64 addr, u64 value) {
  return u_syscall(SYS_POKE, kind, (long)addr, (long)value);
}
UINLINE u64 peek(long kind, u64 addr) {
  return (u64)u_syscall(SYS_PEEK, kind, (long)addr, 0);
}

/* Writes `value`, reads it back, restores `orig` if it stuck; 1 if the write took effect. */
static USER int try_write(long kind, u64 addr, u64 value) {
  u64 orig = peek(kind, addr);
  if (kind == POKE_BYTE) value = (orig & 0xff) == value ? value ^ 0xff : value;
  long r = poke(kind, addr, value);
  int took = r == 0 && peek(kind, addr) == value;
  if (took) poke(kind, addr, orig);
  return took;
}

static USER int report(const char* name, int took) {
  struct uline l;
  l.len = 0;
  ul_str(&l, s_attack);
  ul_str(&l, name);
  ul_str(&l, took ? s_ok : s_blocked);
  ul_send(&l);
  return took;
}

USER void user_attacker(u64 index, u64 pid) {
  (void)index, (void)pid;
  u_yield(); /* let the workers start first */
  int n = 0;
  n += report(s_text, try_write(POKE_BYTE, SHARED->attack_text_addr, 0xcc));
  n += report(s_table, try_write(POKE_QWORD, SHARED->syscall_table_addr + 8 * SYS_GETPID,
                                 SHARED->evil_handler_addr));
  n += report(s_lstar, try_write(POKE_MSR, MSR_LSTAR, SHARED->evil_lstar));
  struct uline l;
  l.len = 0;
  ul_str(&l, s_summary);
  ul_num(&l, (u64)n, 10);
  ul_str(&l, s_of3);
  ul_send(&l);
  u_exit(0);
}
