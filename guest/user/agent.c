/* Guest agent: periodically raises the KVMI hypercall (RAX=34, RDI=24, RSI=0) through the
 * doorbell port of CPUID 0x40000001 (an OUT from CPL3, allowed by the TSS I/O bitmap), and by
 * VMCALL (through the kernel) only where that leaf says VMCALL is safe. */
#include "user.h"

#define ROUNDS 5
#define YIELDS_BETWEEN 8

static const char USER_RO s_none[] = "agent: no glassbox hypervisor leaf; exiting";
static const char USER_RO s_call[] = "agent: KVMI hypercall ";
static const char USER_RO s_of[] = "/";
static const char USER_RO s_door[] = " via doorbell port 0x";
static const char USER_RO s_vmcall[] = " and vmcall";

static const char USER_RO s_native[] =
    "agent: CPUID at CPL3 does not show the glassbox leaves here; using the kernel's (CPL0) view";

USER void user_agent(u64 index, u64 pid) {
  (void)index, (void)pid;
  u32 a, b, c, d;
  struct uline l;
  l.len = 0;
  u32 port, flags;
  cpuid(GLASSBOX_CPUID_SIGNATURE_LEAF, &a, &b, &c, &d);
  if (b == GLASSBOX_CPUID_SIG_EBX && c == GLASSBOX_CPUID_SIG_ECX && d == GLASSBOX_CPUID_SIG_EDX &&
      a >= GLASSBOX_CPUID_FEATURES_LEAF) {
    cpuid(GLASSBOX_CPUID_FEATURES_LEAF, &port, &flags, &c, &d);
  } else if (SHARED->hv_ok) {
    ul_str(&l, s_native);
    ul_send(&l);
    port = SHARED->hv_doorbell_port;
    flags = SHARED->hv_flags;
  } else {
    ul_str(&l, s_none);
    ul_send(&l);
    u_exit(0);
  }
  for (u32 round = 1; round <= ROUNDS; round++) {
    for (int i = 0; i < YIELDS_BETWEEN; i++) u_yield();
    if (flags & GLASSBOX_CPUID_FLAG_DOORBELL) {
      /* The VMM answers in RAX, as a hypercall would (0: a tool took the event). */
      u64 rax = 34;
      __asm__ volatile("outl %%eax, %%dx" : "+a"(rax) : "D"(24), "S"(0), "d"(port) : "memory");
    }
    if (flags & GLASSBOX_CPUID_FLAG_VMCALL) u_syscall(SYS_HYPERCALL, 0, 0, 0);
    ul_str(&l, s_call);
    ul_num(&l, round, 10);
    ul_str(&l, s_of);
    ul_num(&l, ROUNDS, 10);
    ul_str(&l, s_door);
    ul_num(&l, port, 16);
    if (flags & GLASSBOX_CPUID_FLAG_VMCALL) ul_str(&l, s_vmcall);
    ul_send(&l);
  }
  u_exit(0);
}
