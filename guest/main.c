/* glassbox guest kernel: boot. vCPU 0 builds everything; the others wait, load their own
 * GDT/TSS/IDT/MSRs and start scheduling their share of the processes. */
#include "kernel.h"

struct glassbox_boot_info* boot_info;
u32 ncpu;
struct user_shared user_shared __attribute__((section(".data.user_shared"), aligned(4096)));
static volatile u32 boot_ready;

/* Freestanding compilers may emit calls to these. */
void* memset(void* d, int c, size_t n) {
  u8* p = d;
  while (n--) *p++ = (u8)c;
  return d;
}
void* memcpy(void* d, const void* s, size_t n) {
  u8* p = d;
  const u8* q = s;
  while (n--) *p++ = *q++;
  return d;
}

static void create_processes(void) {
  proc_create(0, KIND_AGENT, "agent", (u64)user_agent, 0);
  u32 worker = 1;
  /* In beacon mode the last vCPU (of two or more) runs only the beacon. */
  const int beacon = cmdline_has("beacon");
  const u32 worker_cpus = beacon && ncpu > 1 ? ncpu - 1 : ncpu;
  for (u32 c = 0; c < worker_cpus; c++)
    for (u32 w = 0; w < WORKERS_PER_CPU; w++)
      proc_create(c, KIND_WORKER, "worker", (u64)user_worker, worker++);
  if (beacon) proc_create(ncpu - 1, KIND_BEACON, "beacon", (u64)user_beacon, 0);
  if (user_shared.attack) proc_create(ncpu - 1, KIND_ATTACKER, "attacker", (u64)user_attacker, 0);
  if (cmdline_has("fault")) proc_create(0, KIND_FAULTER, "faulter", (u64)user_faulter, 0);
}

__attribute__((noreturn)) void kmain(struct glassbox_boot_info* bi, u64 index) {
  if (index == 0) {
    boot_info = bi;
    ncpu = bi->vcpu_count ? bi->vcpu_count : 1;
    if (ncpu > MAX_CPUS) ncpu = MAX_CPUS;
    kprintf("glassbox guest: %u vCPUs, %lu MiB, cmdline \"%s\"\n", ncpu, bi->memory_size >> 20,
            bi->cmdline);
    paging_init(bi->memory_size);
    tables_init(ncpu);
    user_shared.ncpu = ncpu;
    user_shared.attack = (u32)cmdline_has("attack");
    user_shared.cpuid_flags = bi->cpuid_flags;
    user_shared.tsc_khz = bi->tsc_khz;
    user_shared.attack_text_addr = (u64)attack_text_target;
    user_shared.syscall_table_addr = (u64)glassbox_syscall_table;
    user_shared.evil_handler_addr = (u64)sys_evil_getpid;
    user_shared.evil_lstar = (u64)syscall_hook;
    u32 a, b, c, d;
    cpuid(GLASSBOX_CPUID_SIGNATURE_LEAF, &a, &b, &c, &d);
    if (b == GLASSBOX_CPUID_SIG_EBX && c == GLASSBOX_CPUID_SIG_ECX && d == GLASSBOX_CPUID_SIG_EDX &&
        a >= GLASSBOX_CPUID_FEATURES_LEAF) {
      user_shared.hv_ok = 1;
      cpuid(GLASSBOX_CPUID_FEATURES_LEAF, &user_shared.hv_doorbell_port, &user_shared.hv_flags, &c,
            &d);
    }
    create_processes();
    cpu_init(0);
    if (cmdline_has("panic")) __asm__ volatile("ud2"); /* test hook: an unexpected kernel fault */
    syscall_probe();
    __atomic_store_n(&boot_ready, 1, __ATOMIC_RELEASE);
  } else {
    while (!__atomic_load_n(&boot_ready, __ATOMIC_ACQUIRE)) cpu_relax();
    if (index >= ncpu)
      for (;;) __asm__ volatile("cli; hlt");
    cpu_init((u32)index);
  }
  lapic_timer_start();
  proc_start_first((u32)index);
}
