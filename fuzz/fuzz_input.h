// The layout of a receiver_fuzz input, shared by the harness and the seed writer.
//
//   byte 0      mode flags (below)
//   bytes 1...  the bytes the tool sends, exactly as they go on the socket: the 24-byte handshake
//               answer first when kRunHandshake is set, then KVMI messages
#pragma once

#include <cstdint>
#include <string_view>

namespace glassbox::fuzz {

// Run the VMM's §5.3 handshake before the receiver (as the real server does).
inline constexpr std::uint8_t kRunHandshake = 1u << 0;
// Configure a secret, so the tool's cookie hash must be SHA-1(kFuzzSecret).
inline constexpr std::uint8_t kRequireSecret = 1u << 1;
// Only the always-allowed commands (--allow-commands none), so the EPERM paths are reached.
inline constexpr std::uint8_t kAllowNone = 1u << 2;

inline constexpr std::string_view kFuzzSecret = "glassbox-fuzz-secret";

// Guest memory behind the target: small, so both backed and unbacked GPAs are easy to hit.
inline constexpr std::uint64_t kGuestMemorySize = 1 << 20;
inline constexpr std::uint32_t kVcpuCount = 2;

}  // namespace glassbox::fuzz
