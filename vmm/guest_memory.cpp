#include "vmm/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

namespace glassbox::vmm {

SysResult<GuestMemory> GuestMemory::create(std::uint64_t size) {
  int fd = memfd_create("glassbox-guest-ram", MFD_CLOEXEC);
  if (fd < 0) return sys_error("memfd_create");
  UniqueFd memfd(fd);
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) return sys_error("ftruncate guest RAM");
  void* host = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (host == MAP_FAILED) return sys_error("mmap guest RAM");
  // Guest RAM is not worth dumping with the VMM's core; it can be gigabytes.
  madvise(host, size, MADV_DONTDUMP);
  return GuestMemory(std::move(memfd), static_cast<std::uint8_t*>(host), size);
}

GuestMemory::~GuestMemory() {
  if (host_ != nullptr) munmap(host_, size_);
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : memfd_(std::move(o.memfd_)), host_(o.host_), size_(o.size_) {
  o.host_ = nullptr;
  o.size_ = 0;
}

SysResult<void> GuestMemory::register_slots(kvm::Vm& vm) {
  // Only RAM below kLowRamLimit is supported for now (the boot identity map covers 4 GiB).
  return vm.set_user_memory_region(0, 0, size_, host_);
}

// Page access restrictions: not implemented yet (every frame is rwx).
int GuestMemory::set_page_access(kvm::Vm&, std::uint64_t, std::uint8_t) {
  return -ENOSYS;
}

std::uint8_t GuestMemory::page_access(std::uint64_t) const {
  return 7;
}

void GuestMemory::clear_page_access(kvm::Vm&) {}

}  // namespace glassbox::vmm
