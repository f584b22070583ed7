/* Page tables. The kernel is identity-mapped, supervisor-only, in every address space (the
 * first 2 MiB with 4 KiB pages and page 0 unmapped, then 2 MiB pages up to the RAM size, and
 * the IOAPIC/LAPIC uncached). Each process has its own PML4/PDPT/PD/PT for the user region at
 * 1 GiB: shared read-only code, the read-only user_shared page, and private data and stack. */
#include "kernel.h"

#define PTE_P 0x1ULL
#define PTE_W 0x2ULL
#define PTE_U 0x4ULL
#define PTE_PWT 0x8ULL
#define PTE_PCD 0x10ULL
#define PTE_PS 0x80ULL
#define PAGE 4096

typedef u64 table[512] __attribute__((aligned(PAGE)));

static table kernel_pt0, kernel_pd0, kernel_pd3;

struct address_space {
  table pml4, pdpt, pd, pt;
  u8 private_pages[USER_PRIVATE_PAGES][PAGE];
};
/* .bss: the VMM's memory starts zeroed, so nothing here needs clearing at CPL0. */
static struct address_space spaces[MAX_PROCS] __attribute__((aligned(PAGE)));

extern char __user_start[], __user_end[], __user_phys[];

void paging_init(u64 memory_size) {
  for (u64 i = 1; i < 512; i++) kernel_pt0[i] = (i * PAGE) | PTE_P | PTE_W;
  kernel_pd0[0] = (u64)kernel_pt0 | PTE_P | PTE_W;
  u64 big_pages = (memory_size + (2ULL << 20) - 1) >> 21;
  if (big_pages > 512) big_pages = 512;
  for (u64 i = 1; i < big_pages; i++) kernel_pd0[i] = (i << 21) | PTE_P | PTE_W | PTE_PS;
  u64 mmio = PTE_P | PTE_W | PTE_PS | PTE_PWT | PTE_PCD;
  kernel_pd3[(0xfec00000UL >> 21) & 511] = 0xfec00000UL | mmio; /* IOAPIC */
  kernel_pd3[(0xfee00000UL >> 21) & 511] = 0xfee00000UL | mmio; /* LAPIC */
}

/* Builds the address space of process slot `slot`; returns its CR3. */
u64 address_space_create(u32 slot) {
  struct address_space* as = &spaces[slot];
  as->pml4[0] = (u64)as->pdpt | PTE_P | PTE_W | PTE_U;
  as->pdpt[0] = (u64)kernel_pd0 | PTE_P | PTE_W | PTE_U; /* leaves are supervisor */
  as->pdpt[1] = (u64)as->pd | PTE_P | PTE_W | PTE_U;
  as->pdpt[3] = (u64)kernel_pd3 | PTE_P | PTE_W;
  as->pd[0] = (u64)as->pt | PTE_P | PTE_W | PTE_U;
  u64 code_pages = (u64)(__user_end - __user_start + PAGE - 1) / PAGE;
  for (u64 i = 0; i < code_pages; i++)
    as->pt[i] = ((u64)__user_phys + i * PAGE) | PTE_P | PTE_U; /* read-only */
  as->pt[(USER_SHARED_VA >> 12) & 511] = (u64)&user_shared | PTE_P | PTE_U;
  for (u64 i = 0; i < USER_PRIVATE_PAGES; i++)
    as->pt[((USER_DATA_VA >> 12) & 511) + i] = (u64)as->private_pages[i] | PTE_P | PTE_W | PTE_U;
  return (u64)as->pml4;
}

/* The kernel's (identity) address of a private user page of process slot `slot`. */
u64 user_page_phys(u32 slot, u64 va) {
  return (u64)spaces[slot].private_pages[(va - USER_DATA_VA) >> 12] + (va & (PAGE - 1));
}
