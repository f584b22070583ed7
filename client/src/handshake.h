// The tool's half of the §5.3 handshake: read the VMM's hello, answer with the cookie hash.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "glassbox/client/error.h"
#include "glassbox/client/session.h"
#include "glassbox/kvmi/handshake.h"

namespace glassbox::client::detail {

// SHA-1 of the secret, or zeros without one (what QEMU and glassbox accept when unkeyed).
Result<std::array<std::uint8_t, kvmi::kCookieHashSize>> cookie_hash(
    const std::optional<std::vector<std::uint8_t>>& secret);

Result<VmIdentity> run_tool_handshake(int fd, const SessionOptions& options);

}  // namespace glassbox::client::detail
