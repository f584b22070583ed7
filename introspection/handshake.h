// The VMM's half of the §5.3 handshake, over any connected stream socket: send the 96-byte hello
// (uuid, start time, name), read the tool's answer (struct_size first, at least 24 bytes), and,
// when a secret is configured, require its cookie hash to be SHA-1 of the secret's bytes.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <optional>
#include <string>

#include "glassbox/kvmi/handshake.h"
#include "introspection/vm_target.h"

namespace glassbox::introspection {

using CookieHash = std::array<std::uint8_t, kvmi::kCookieHashSize>;

// SHA-1 of a secret file's bytes (libcrypto EVP). The error names the file.
std::expected<CookieHash, std::string> cookie_hash_of_file(const std::filesystem::path& path);
std::expected<CookieHash, std::string> cookie_hash_of(std::span<const std::uint8_t> secret);

// A random version-4 UUID.
std::array<std::uint8_t, 16> random_uuid();
std::string format_uuid(const std::array<std::uint8_t, 16>& uuid);

// The largest answer accepted; longer ones would only be extensions glassbox does not know.
inline constexpr std::uint32_t kToolAnswerMaxSize = 4096;

struct HandshakeOptions {
  std::optional<CookieHash> expected_hash;  // nullopt: any hash is accepted (unauthenticated)
  std::chrono::milliseconds timeout{10000};
  int cancel_fd = -1;  // when readable, the handshake gives up (VMM shutting down); -1: none
};

// Runs the handshake on `fd` (not taken over). The error says why the tool was refused.
std::expected<void, std::string> run_vmm_handshake(int fd, const VmIdentity& vm,
                                                   const HandshakeOptions& options);

}  // namespace glassbox::introspection
