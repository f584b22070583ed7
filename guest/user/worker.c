/* Worker processes: a fixed amount of CPL3 work with progress lines and yields. The
 * process's counter (offset 0 of its private data page) is what the final line reports. */
#include "user.h"

#define WORK_ITERS 1000
#define SPIN 20000 /* ~20-40 us of native work per iteration */
#define YIELD_EVERY 50

static const char USER_RO s_proc[] = "proc ";
static const char USER_RO s_pid[] = " (pid ";
static const char USER_RO s_pct[] = "%";
static const char USER_RO s_close[] = "): ";
static const char USER_RO s_bench[] = "syscall round trip (getpid, best of 20): ";
static const char USER_RO s_ns[] = " ns via ";
static const char USER_RO s_cycles[] = " cycles via ";
static const char USER_RO s_int3[] = "int3";
static const char USER_RO s_sys[] = "syscall";

/* Worker 1 times getpid calls so the cost of a kernel entry shows in the log. The fastest of
 * N is reported: a timer tick or a vCPU preemption on the host can land inside any one call. */
static USER void bench_syscall(void) {
  enum { N = 20 };
  u64 best = ~0ULL;
  for (int i = 0; i < N; i++) {
    u64 t0 = u_rdtsc();
    u_getpid();
    u64 t = u_rdtsc() - t0;
    if (t < best) best = t;
  }
  struct uline l;
  l.len = 0;
  ul_str(&l, s_bench);
  u64 khz = SHARED->tsc_khz;
  ul_num(&l, khz ? best * 1000000 / khz : best, 10);
  ul_str(&l, khz ? s_ns : s_cycles);
  ul_str(&l, SHARED->use_syscall ? s_sys : s_int3);
  ul_send(&l);
}

USER void user_worker(u64 index, u64 pid) {
  volatile u64* counter = (volatile u64*)USER_DATA_VA;
  u64 x = pid;
  if (index == 1) bench_syscall();
  for (u32 i = 1; i <= WORK_ITERS; i++) {
    for (u32 j = 0; j < SPIN; j++) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      __asm__ volatile("" : "+r"(x));
    }
    *counter = i;
    if (i % (WORK_ITERS / 4) == 0) {
      struct uline l;
      l.len = 0;
      ul_str(&l, s_proc);
      ul_num(&l, index, 10);
      ul_str(&l, s_pid);
      ul_num(&l, pid, 10);
      ul_str(&l, s_close);
      ul_num(&l, i * 100 / WORK_ITERS, 10);
      ul_str(&l, s_pct);
      ul_send(&l);
    }
    if (i % YIELD_EVERY == 0) u_yield();
  }
  u_exit(0);
}

/* Fault mode: reads kernel text, which is supervisor-only: #PF, the kernel kills it. */
static const char USER_RO s_fault[] = "faulter (pid ";
static const char USER_RO s_fault2[] = "): reading kernel memory from user mode";

USER void user_faulter(u64 index, u64 pid) {
  (void)index;
  struct uline l;
  l.len = 0;
  ul_str(&l, s_fault);
  ul_num(&l, pid, 10);
  ul_str(&l, s_fault2);
  ul_send(&l);
  (void)*(volatile u64*)SHARED->attack_text_addr;
  u_exit(1); /* not reached */
}

/* Boot-time probe: does SYSCALL enter CPL0? (syscall.c) */
USER void user_probe(u64 index, u64 pid) {
  (void)index, (void)pid;
  __asm__ volatile("syscall; ud2" ::"a"(NR_SYSCALLS) : "rcx", "r11", "memory");
}
