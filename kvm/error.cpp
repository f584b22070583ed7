#include "kvm/error.h"

#include <cstring>

namespace glassbox {

std::string SysError::message() const {
  return operation + " failed: " + std::strerror(error) + " (errno " + std::to_string(error) + ")";
}

}  // namespace glassbox
