// The handshake that precedes KVMI on a fresh connection (spec/kvmi-v7.md §5.3, QEMU RFC v1).
//
// The VMM always speaks first, whichever side connected: it sends VmHello (96 bytes); the tool
// answers ToolAnswer (24 bytes) carrying SHA-1 of the shared secret, or zeros without a secret.
// Both structs start with struct_size so either side can grow them; readers take the first
// 4 bytes, then read up to struct_size.
#pragma once

#include <cstddef>
#include <cstdint>

namespace glassbox::kvmi {

// qemu_vmi_to_introspector / kvmi_qemu2introspector: VMM -> tool.
struct VmHello {
  std::uint32_t struct_size;  // kVmHelloSize for this layout; larger ones carry extensions
  std::uint8_t uuid[16];
  std::uint32_t padding;
  std::int64_t start_time;  // VM start, milliseconds since the epoch
  char name[64];            // NUL-terminated VM name
};

// qemu_vmi_from_introspector / kvmi_introspector2qemu: tool -> VMM.
struct ToolAnswer {
  std::uint32_t struct_size;  // kToolAnswerSize; QEMU's reader only stops cleanly at exactly 24
  std::uint8_t cookie_hash[20];
};

inline constexpr std::uint32_t kVmHelloSize = 96;
inline constexpr std::uint32_t kToolAnswerSize = 24;
inline constexpr std::size_t kCookieHashSize = 20;  // SHA-1 digest
// libkvmi's bounds for a hello: it must reach `name`, and it refuses absurd sizes.
inline constexpr std::uint32_t kVmHelloMinSize = 32;
inline constexpr std::uint32_t kVmHelloMaxSize = 65536;
// The VMM refuses an answer shorter than the base layout.
inline constexpr std::uint32_t kToolAnswerMinSize = 24;

static_assert(sizeof(VmHello) == kVmHelloSize);
static_assert(offsetof(VmHello, struct_size) == 0);
static_assert(offsetof(VmHello, uuid) == 4);
static_assert(offsetof(VmHello, padding) == 20);
static_assert(offsetof(VmHello, start_time) == 24);
static_assert(offsetof(VmHello, name) == 32);
static_assert(offsetof(VmHello, name) == kVmHelloMinSize);

static_assert(sizeof(ToolAnswer) == kToolAnswerSize);
static_assert(offsetof(ToolAnswer, struct_size) == 0);
static_assert(offsetof(ToolAnswer, cookie_hash) == 4);

}  // namespace glassbox::kvmi
