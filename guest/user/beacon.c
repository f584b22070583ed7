/* The beacon (--cmdline beacon): a process that spins at CPL3 until its R12 becomes non-zero,
 * then reports the value and exits. Nothing in the guest writes R12 inside the loop, so only an
 * introspection tool (KVMI_VCPU_SET_REGISTERS while the vCPU waits in an event) can end it. In
 * beacon mode it runs alone on the last vCPU, and the VM stays up until it exits. */
#include "user.h"

static const char USER_RO s_beacon[] = "beacon: r12=0x";

USER void user_beacon(u64 index, u64 pid) {
  (void)index;
  (void)pid;
  u64 value;
  __asm__ volatile(
      "xor %%r12d, %%r12d\n"
      ".globl beacon_loop\n"
      "beacon_loop:\n"
      "pause\n"
      "test %%r12, %%r12\n"
      "jz beacon_loop\n"
      ".globl beacon_loop_end\n"
      "beacon_loop_end:\n"
      "mov %%r12, %0\n"
      : "=r"(value)
      :
      : "r12", "cc");
  struct uline l;
  l.len = 0;
  ul_str(&l, s_beacon);
  ul_num(&l, value, 16);
  ul_send(&l);
  u_exit(0);
}
