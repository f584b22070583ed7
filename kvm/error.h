// Errors of system calls and KVM ioctls: they name the operation and keep errno.
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <utility>

namespace glassbox {

struct SysError {
  std::string operation;  // e.g. "KVM_SET_USER_MEMORY_REGION" or "open /dev/kvm"
  int error = 0;          // errno value

  std::string message() const;
};

template <typename T>
using SysResult = std::expected<T, SysError>;

inline std::unexpected<SysError> sys_error(std::string operation, int error = errno) {
  return std::unexpected(SysError{std::move(operation), error});
}

}  // namespace glassbox
