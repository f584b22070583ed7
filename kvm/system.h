// /dev/kvm: the API version, capabilities, the host's supported CPUID, and VM creation.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "kvm/error.h"
#include "kvm/fd.h"
#include "kvm/vm.h"

namespace glassbox::kvm {

class System {
 public:
  static SysResult<System> open(const char* path = "/dev/kvm");

  // KVM_CHECK_EXTENSION on the system fd; 0 when absent.
  int check_extension(long cap) const;
  // The CPUID entries KVM can virtualise on this host (KVM_GET_SUPPORTED_CPUID).
  SysResult<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  SysResult<int> vcpu_mmap_size() const;
  // Highest vCPU count one VM may have (KVM_CAP_MAX_VCPUS, falling back to NR_VCPUS).
  int max_vcpus() const;

  SysResult<Vm> create_vm() const;
  int fd() const { return fd_.get(); }

 private:
  explicit System(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace glassbox::kvm
