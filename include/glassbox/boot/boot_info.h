/* The contract between glassbox's ELF direct boot and a guest kernel.
 *
 * Plain C so that freestanding guests (guest/, tests/guests/) and the VMM share one definition.
 *
 * At entry every vCPU is in 64-bit long mode, CPL0, interrupts disabled, with:
 *   RIP = the ELF entry point (translated to its physical address when the entry lies in a
 *         segment whose p_vaddr differs from p_paddr),
 *   RDI = guest-physical address of struct glassbox_boot_info (GLASSBOX_BOOT_INFO_GPA),
 *   RSI = this vCPU's index (0 .. vcpu_count-1); the same index is the LAPIC id,
 *   RSP = top of a GLASSBOX_BOOT_STACK_SIZE boot stack private to this vCPU (16-byte aligned),
 *   CR3 = identity map of [0, 4 GiB) built from 2 MiB pages, except the first 2 MiB which use
 *         4 KiB pages and leave page 0 unmapped (a NULL dereference faults),
 *   GDT = { null, 0x08 64-bit code DPL0, 0x10 data DPL0 }, IDT limit 0 (the guest installs its own).
 * All vCPUs start at once; there is no INIT/SIPI sequence.
 *
 * The hypervisor CPUID leaves (see glassbox_cpuid_*) repeat the doorbell port and transport flags
 * so a guest that did not keep the boot info can still find them.
 */
#ifndef GLASSBOX_BOOT_INFO_H
#define GLASSBOX_BOOT_INFO_H

#ifdef __ASSEMBLER__
#elif defined(__cplusplus)
#include <cstddef>
#include <cstdint>
#define GLASSBOX_U8 std::uint8_t
#define GLASSBOX_U16 std::uint16_t
#define GLASSBOX_U32 std::uint32_t
#define GLASSBOX_U64 std::uint64_t
#else
#include <stdint.h>
#define GLASSBOX_U8 uint8_t
#define GLASSBOX_U16 uint16_t
#define GLASSBOX_U32 uint32_t
#define GLASSBOX_U64 uint64_t
#endif

/* Guest-physical layout of what the VMM writes below 1 MiB. */
#define GLASSBOX_GDT_GPA 0x6000ULL
#define GLASSBOX_BOOT_INFO_GPA 0x7000ULL /* 8 KiB: struct glassbox_boot_info */
#define GLASSBOX_PAGE_TABLES_GPA 0x9000ULL /* PML4, PDPT, 4 PDs, 1 PT: 7 pages */
#define GLASSBOX_BOOT_STACKS_GPA 0x10000ULL /* vCPU i's stack top = base + (i+1) * size */
#define GLASSBOX_BOOT_STACK_SIZE 0x2000ULL
#define GLASSBOX_MAX_VCPUS 64
#define GLASSBOX_LOW_RESERVED_END 0x90000ULL /* the guest's image must load at or above 1 MiB */
#define GLASSBOX_KERNEL_MIN_GPA 0x100000ULL

/* Well-known I/O ports. */
#define GLASSBOX_PORT_COM1 0x3f8
#define GLASSBOX_PORT_POWER 0x604 /* 8/16/32-bit OUT: power off, exit status = value & 0xff */
#define GLASSBOX_PORT_RESET 0xcf9 /* OUT of 0x06 or 0x0e: reset request (the VM stops) */
#define GLASSBOX_PORT_DOORBELL 0x4b56 /* OUT (any size): KVMI hypercall, RAX=34 RDI=24 RSI=0 */

/* CPUID hypervisor leaves. */
#define GLASSBOX_CPUID_SIGNATURE_LEAF 0x40000000u /* EAX=max leaf, EBX:ECX:EDX="GlassboxKVMI" */
#define GLASSBOX_CPUID_FEATURES_LEAF 0x40000001u  /* EAX=doorbell port, EBX=flags */
#define GLASSBOX_CPUID_SIG_EBX 0x73616c47u         /* "Glas" */
#define GLASSBOX_CPUID_SIG_ECX 0x786f6273u         /* "sbox" */
#define GLASSBOX_CPUID_SIG_EDX 0x494d564bu         /* "KVMI" */
#define GLASSBOX_CPUID_FLAG_DOORBELL 0x1u          /* the OUT doorbell raises KVMI hypercalls */
#define GLASSBOX_CPUID_FLAG_VMCALL 0x2u            /* VMCALL/VMMCALL is safe and reaches the VMM */

#define GLASSBOX_BOOT_MAGIC 0x584f425353414c47ULL /* "GLASSBOX" little-endian */
#define GLASSBOX_BOOT_VERSION 1u
#define GLASSBOX_E820_MAX 16
#define GLASSBOX_CMDLINE_MAX 2048

#define GLASSBOX_E820_RAM 1u
#define GLASSBOX_E820_RESERVED 2u

#ifndef __ASSEMBLER__
struct glassbox_e820_entry {
  GLASSBOX_U64 addr;
  GLASSBOX_U64 size;
  GLASSBOX_U32 type;
  GLASSBOX_U32 padding;
};

struct glassbox_boot_info {
  GLASSBOX_U64 magic;   /* GLASSBOX_BOOT_MAGIC */
  GLASSBOX_U32 version; /* GLASSBOX_BOOT_VERSION */
  GLASSBOX_U32 vcpu_count;
  GLASSBOX_U64 memory_size;   /* bytes of guest RAM starting at GPA 0 */
  GLASSBOX_U16 doorbell_port; /* GLASSBOX_PORT_DOORBELL */
  GLASSBOX_U16 power_port;    /* GLASSBOX_PORT_POWER */
  GLASSBOX_U16 serial_port;   /* GLASSBOX_PORT_COM1 */
  GLASSBOX_U16 padding0;
  GLASSBOX_U32 cpuid_flags; /* same bits as CPUID 0x40000001.EBX */
  GLASSBOX_U32 e820_count;
  struct glassbox_e820_entry e820[GLASSBOX_E820_MAX];
  GLASSBOX_U64 tsc_khz; /* 0 when unknown */
  GLASSBOX_U32 cmdline_length; /* bytes, without the terminating NUL */
  GLASSBOX_U32 padding1;
  char cmdline[GLASSBOX_CMDLINE_MAX]; /* NUL-terminated */
};

#endif /* __ASSEMBLER__ */

/* Offsets for assembly guests. */
#define GLASSBOX_BOOT_INFO_VCPU_COUNT 12
#define GLASSBOX_BOOT_INFO_CMDLINE 440

#ifdef __cplusplus
static_assert(sizeof(glassbox_e820_entry) == 24);
static_assert(offsetof(glassbox_boot_info, vcpu_count) == GLASSBOX_BOOT_INFO_VCPU_COUNT);
static_assert(offsetof(glassbox_boot_info, cmdline) == GLASSBOX_BOOT_INFO_CMDLINE);
static_assert(sizeof(glassbox_boot_info) <= 0x2000);
#endif

#endif
