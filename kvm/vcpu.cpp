#include "kvm/vcpu.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cstring>
#include <memory>

#include "kvm/flex_ioctls.h"

namespace glassbox::kvm {

Vcpu::~Vcpu() {
  if (run_ != nullptr) munmap(run_, run_size_);
}

Vcpu::Vcpu(Vcpu&& o) noexcept
    : index_(o.index_), fd_(std::move(o.fd_)), run_(o.run_), run_size_(o.run_size_) {
  o.run_ = nullptr;
}

SysResult<Vcpu::RunOutcome> Vcpu::run_once() {
  if (ioctl(fd_.get(), KVM_RUN, 0) == 0) return RunOutcome::kExit;
  if (errno == EINTR || errno == EAGAIN) return RunOutcome::kInterrupted;
  return sys_error("KVM_RUN");
}

namespace {
template <typename T>
SysResult<T> get(int fd, unsigned long request, const char* name) {
  T value{};
  if (ioctl(fd, request, &value) != 0) return sys_error(name);
  return value;
}
template <typename T>
SysResult<void> set(int fd, unsigned long request, const T& value, const char* name) {
  if (ioctl(fd, request, &value) != 0) return sys_error(name);
  return {};
}
}  // namespace

SysResult<kvm_regs> Vcpu::get_regs() const {
  return get<kvm_regs>(fd_.get(), KVM_GET_REGS, "KVM_GET_REGS");
}
SysResult<void> Vcpu::set_regs(const kvm_regs& regs) {
  return set(fd_.get(), KVM_SET_REGS, regs, "KVM_SET_REGS");
}
SysResult<kvm_sregs> Vcpu::get_sregs() const {
  return get<kvm_sregs>(fd_.get(), KVM_GET_SREGS, "KVM_GET_SREGS");
}
SysResult<void> Vcpu::set_sregs(const kvm_sregs& sregs) {
  return set(fd_.get(), KVM_SET_SREGS, sregs, "KVM_SET_SREGS");
}
SysResult<void> Vcpu::set_fpu(const kvm_fpu& fpu) {
  return set(fd_.get(), KVM_SET_FPU, fpu, "KVM_SET_FPU");
}
SysResult<kvm_vcpu_events> Vcpu::get_events() const {
  return get<kvm_vcpu_events>(fd_.get(), KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS");
}
SysResult<void> Vcpu::set_events(const kvm_vcpu_events& events) {
  return set(fd_.get(), KVM_SET_VCPU_EVENTS, events, "KVM_SET_VCPU_EVENTS");
}
SysResult<kvm_mp_state> Vcpu::get_mp_state() const {
  return get<kvm_mp_state>(fd_.get(), KVM_GET_MP_STATE, "KVM_GET_MP_STATE");
}
SysResult<void> Vcpu::set_mp_state(std::uint32_t state) {
  kvm_mp_state mp{state};
  return set(fd_.get(), KVM_SET_MP_STATE, mp, "KVM_SET_MP_STATE");
}
SysResult<void> Vcpu::set_guest_debug(const kvm_guest_debug& debug) {
  return set(fd_.get(), KVM_SET_GUEST_DEBUG, debug, "KVM_SET_GUEST_DEBUG");
}

// kvm_cpuid2 and kvm_msrs end in flexible arrays; see kvm/flex_ioctls.h for why they are built
// by hand here.
namespace {
template <typename Entry>
std::vector<std::uint8_t> flex_buffer(std::size_t count, const Entry* entries) {
  std::vector<std::uint8_t> buf(sizeof(flex::ArrayHeader) + count * sizeof(Entry));
  const flex::ArrayHeader header{static_cast<std::uint32_t>(count), 0};
  std::memcpy(buf.data(), &header, sizeof header);
  if (entries != nullptr) std::memcpy(buf.data() + sizeof header, entries, count * sizeof(Entry));
  return buf;
}
}  // namespace

SysResult<void> Vcpu::set_cpuid(std::span<const kvm_cpuid_entry2> entries) {
  auto buf = flex_buffer(entries.size(), entries.data());
  if (ioctl(fd_.get(), flex::kSetCpuid2, buf.data()) != 0) return sys_error("KVM_SET_CPUID2");
  return {};
}

SysResult<std::vector<kvm_cpuid_entry2>> Vcpu::get_cpuid() const {
  constexpr std::size_t kMax = 256;
  auto buf = flex_buffer<kvm_cpuid_entry2>(kMax, nullptr);
  if (ioctl(fd_.get(), flex::kGetCpuid2, buf.data()) != 0) return sys_error("KVM_GET_CPUID2");
  flex::ArrayHeader header;
  std::memcpy(&header, buf.data(), sizeof header);
  std::vector<kvm_cpuid_entry2> entries(header.count);
  std::memcpy(entries.data(), buf.data() + sizeof header, header.count * sizeof(kvm_cpuid_entry2));
  return entries;
}

SysResult<std::size_t> Vcpu::get_msrs(std::span<kvm_msr_entry> entries) const {
  auto buf = flex_buffer(entries.size(), entries.data());
  int n = ioctl(fd_.get(), flex::kGetMsrs, buf.data());
  if (n < 0) return sys_error("KVM_GET_MSRS");
  std::memcpy(entries.data(), buf.data() + sizeof(flex::ArrayHeader), entries.size_bytes());
  return static_cast<std::size_t>(n);
}

SysResult<std::size_t> Vcpu::set_msrs(std::span<const kvm_msr_entry> entries) {
  auto buf = flex_buffer(entries.size(), entries.data());
  int n = ioctl(fd_.get(), flex::kSetMsrs, buf.data());
  if (n < 0) return sys_error("KVM_SET_MSRS");
  return static_cast<std::size_t>(n);
}

SysResult<void> Vcpu::set_signal_mask(const sigset_t& mask) {
  // The kernel's sigset is the first 8 bytes of glibc's sigset_t on x86-64.
  std::uint8_t buf[4 + 8] = {};
  const std::uint32_t len = 8;
  std::memcpy(buf, &len, 4);
  std::memcpy(buf + 4, &mask, 8);
  if (ioctl(fd_.get(), flex::kSetSignalMask, buf) != 0) return sys_error("KVM_SET_SIGNAL_MASK");
  return {};
}

SysResult<void> Vcpu::get_xsave(std::span<std::uint8_t, 4096> out) const {
  static_assert(flex::kXsaveSize == 4096);
  if (ioctl(fd_.get(), flex::kGetXsave, out.data()) != 0) return sys_error("KVM_GET_XSAVE");
  return {};
}

SysResult<std::uint32_t> Vcpu::get_tsc_khz() const {
  int khz = ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
  if (khz < 0) return sys_error("KVM_GET_TSC_KHZ");
  return static_cast<std::uint32_t>(khz);
}

}  // namespace glassbox::kvm
