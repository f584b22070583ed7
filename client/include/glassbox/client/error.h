// Errors of the KVMI client: every fallible call returns Result<T>, never throws.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

#include "glassbox/kvmi/errors.h"

namespace glassbox::client {

enum class ErrorKind : std::uint8_t {
  Kvmi,             // the VMM answered a negative -KVM_E* code; `code` holds it
  Closed,           // the connection is gone (peer closed, protocol violation, or close())
  Io,               // a socket call failed; `code` holds errno
  Protocol,         // the peer sent something the protocol does not allow
  Handshake,        // the §5.3 exchange failed
  Timeout,          // no answer within the configured time
  InvalidArgument,  // refused locally, nothing was sent
};

struct Error {
  ErrorKind kind = ErrorKind::Protocol;
  std::int32_t code = 0;  // Kvmi: the negative wire value; Io: errno; otherwise 0
  std::string message;    // names the command, e.g. "KVMI_VM_READ_PHYSICAL: -KVM_ENOENT (...)"

  bool is(kvmi::Errno e) const { return kind == ErrorKind::Kvmi && code == kvmi::to_wire(e); }
};

template <typename T>
using Result = std::expected<T, Error>;

std::string_view error_kind_name(ErrorKind kind);

inline std::unexpected<Error> make_error(ErrorKind kind, std::string message,
                                         std::int32_t code = 0) {
  return std::unexpected(Error{kind, code, std::move(message)});
}

}  // namespace glassbox::client
