/* Descriptor tables (GDT, IDT, per-vCPU TSS with an I/O bitmap), the SYSCALL MSRs and the
 * LAPIC timer. */
#include "kernel.h"

/* Every port is denied from CPL3 unless cpu_allow_port() clears its bit. The bitmap is static
 * data so that nobody runs a 2.5 KiB memset at CPL0. */
#define TSS_INIT                                           \
  {                                                        \
    .tss = {.iomap_base = offsetof(struct tss, iomap),     \
            .iomap = {[0 ... IOMAP_PORTS / 8 - 1] = 0xff}, \
            .iomap_end = 0xff},                            \
  }
struct cpu cpus[MAX_CPUS] = {[0 ... MAX_CPUS - 1] = TSS_INIT};

_Static_assert(offsetof(struct cpu, scratch) == CPU_SCRATCH, "layout.h");
_Static_assert(offsetof(struct cpu, tss) + offsetof(struct tss, rsp0) == CPU_TSS_RSP0, "layout.h");
_Static_assert(offsetof(struct tss, iomap) == 104, "TSS layout");

/* null, kernel code, kernel data, user code32 (SYSRET layout), user data, user code64, TSSs. */
static u64 gdt[6 + 2 * MAX_CPUS] = {
    0,
    0x00af9a000000ffffULL,
    0x00cf92000000ffffULL,
    0x00cffa000000ffffULL,
    0x00cff2000000ffffULL,
    0x00affa000000ffffULL,
};

struct gate {
  u16 offset0, selector;
  u8 ist, type;
  u16 offset1;
  u32 offset2, zero;
};
static struct gate idt[256];

struct __attribute__((packed)) table_register {
  u16 limit;
  u64 base;
};

static void set_gate(u32 vector, void* handler, u8 dpl) {
  u64 a = (u64)handler;
  idt[vector] = (struct gate){(u16)a,         SEL_KCODE,      0, (u8)(0x8e | (dpl << 5)),
                              (u16)(a >> 16), (u32)(a >> 32), 0};
}

extern char int3_entry[];

void idt_init(void) {
  for (u32 v = 0; v < 32; v++) set_gate(v, trap_vectors + v * TRAP_STUB_SIZE, 0);
  set_gate(VEC_BP, int3_entry, 3); /* user mode may INT3: that is the system call */
  set_gate(VEC_TIMER, timer_stub, 0);
  set_gate(VEC_SPURIOUS, spurious_stub, 0);
}

static void cpu_allow_port(struct tss* t, u32 port) {
  if (port < IOMAP_PORTS) t->iomap[port / 8] &= (u8) ~(1u << (port % 8));
}

/* Run by the boot vCPU for every vCPU before the others leave their wait loop. */
static void tss_setup(u32 i) {
  struct tss* t = &cpus[i].tss;
  for (u32 port = GLASSBOX_PORT_COM1; port < GLASSBOX_PORT_COM1 + 8; port++)
    cpu_allow_port(t, port);
  for (u32 k = 0; k < 4; k++) { /* a 32-bit OUT needs all four bits clear */
    cpu_allow_port(t, boot_info->doorbell_port + k);
    cpu_allow_port(t, GLASSBOX_PORT_DOORBELL + k);
  }
  cpus[i].index = i;
  u64 base = (u64)t;
  u64 limit = sizeof(struct tss) - 1;
  gdt[6 + 2 * i] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
                   ((limit >> 16) << 48) | (((base >> 24) & 0xff) << 56);
  gdt[7 + 2 * i] = base >> 32;
}

void tables_init(u32 n) {
  for (u32 i = 0; i < n; i++) tss_setup(i);
  idt_init();
}

void cpu_init(u32 index) {
  struct table_register gdtr = {sizeof(gdt) - 1, (u64)gdt};
  struct table_register idtr = {sizeof(idt) - 1, (u64)idt};
  gdt_load(&gdtr, SEL_TSS0 + 16 * index);
  __asm__ volatile("lidt %0" ::"m"(idtr));
  wrmsr(MSR_STAR, ((u64)0x18 << 48) | ((u64)SEL_KCODE << 32));
  wrmsr(MSR_LSTAR, (u64)syscall_entry);
  wrmsr(MSR_SFMASK, 0x47700);           /* TF, DF, IF, IOPL, NT, AC */
  wrmsr(MSR_EFER, rdmsr(MSR_EFER) | 1); /* SCE */
  wrmsr(MSR_GS_BASE, 0);
  wrmsr(MSR_KERNEL_GS_BASE, (u64)&cpus[index]);
}

/* xAPIC at 0xFEE00000 (mapped uncached). The APIC bus runs at 1 GHz under KVM. */
#define LAPIC(reg) (*(volatile u32*)(0xfee00000UL + (reg)))
#define HZ 100

void lapic_timer_start(void) {
  LAPIC(0xf0) = 0x100 | VEC_SPURIOUS; /* software enable */
  LAPIC(0x3e0) = 0xb;                 /* divide by 1 */
  LAPIC(0x320) = 0x20000 | VEC_TIMER; /* periodic */
  LAPIC(0x380) = 1000000000 / HZ;
}

void lapic_timer_stop(void) {
  LAPIC(0x320) = 0x10000; /* masked */
  LAPIC(0x380) = 0;
}

void lapic_eoi(void) {
  LAPIC(0xb0) = 0;
}
