#include "glassbox/client/error.h"

namespace glassbox::client {

std::string_view error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Kvmi:
      return "kvmi";
    case ErrorKind::Closed:
      return "closed";
    case ErrorKind::Io:
      return "io";
    case ErrorKind::Protocol:
      return "protocol";
    case ErrorKind::Handshake:
      return "handshake";
    case ErrorKind::Timeout:
      return "timeout";
    case ErrorKind::InvalidArgument:
      return "invalid argument";
  }
  return "unknown";
}

}  // namespace glassbox::client
