#include "kvm/system.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cstring>
#include <string>

#include "kvm/flex_ioctls.h"

namespace glassbox::kvm {

SysResult<System> System::open(const char* path) {
  int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return sys_error(std::string("open ") + path);
  System sys{UniqueFd(fd)};
  int version = ioctl(fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    return sys_error("KVM_GET_API_VERSION (got " + std::to_string(version) + ")", EINVAL);
  }
  return sys;
}

int System::check_extension(long cap) const {
  int r = ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

SysResult<std::vector<kvm_cpuid_entry2>> System::supported_cpuid() const {
  for (std::size_t n = 128; n <= 4096; n *= 2) {
    std::vector<std::uint8_t> buf(sizeof(flex::ArrayHeader) + n * sizeof(kvm_cpuid_entry2));
    flex::ArrayHeader header{static_cast<std::uint32_t>(n), 0};
    std::memcpy(buf.data(), &header, sizeof header);
    if (ioctl(fd_.get(), flex::kGetSupportedCpuid, buf.data()) == 0) {
      std::memcpy(&header, buf.data(), sizeof header);
      std::vector<kvm_cpuid_entry2> entries(header.count);
      std::memcpy(entries.data(), buf.data() + sizeof header,
                  header.count * sizeof(kvm_cpuid_entry2));
      return entries;
    }
    if (errno != E2BIG) return sys_error("KVM_GET_SUPPORTED_CPUID");
  }
  return sys_error("KVM_GET_SUPPORTED_CPUID", E2BIG);
}

SysResult<int> System::vcpu_mmap_size() const {
  int size = ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size < 0) return sys_error("KVM_GET_VCPU_MMAP_SIZE");
  return size;
}

int System::max_vcpus() const {
  int max = check_extension(KVM_CAP_MAX_VCPUS);
  if (max <= 0) max = check_extension(KVM_CAP_NR_VCPUS);
  return max > 0 ? max : 4;
}

SysResult<Vm> System::create_vm() const {
  int fd = ioctl(fd_.get(), KVM_CREATE_VM, 0);
  if (fd < 0) return sys_error("KVM_CREATE_VM");
  auto mmap_size = vcpu_mmap_size();
  if (!mmap_size) return std::unexpected(mmap_size.error());
  return Vm(UniqueFd(fd), *mmap_size);
}

}  // namespace glassbox::kvm
