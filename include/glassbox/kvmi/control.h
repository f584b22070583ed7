// The kernel-side control plane of KVMI v7 (spec/kvmi-v7.md §5.1, §5.2), for reference and for
// the static_asserts of §2.4. glassbox serves KVMI in user space and never issues these ioctls:
// the numbers only mean something on a kernel carrying the RFC series (mainline reused them).
#pragma once

#include <linux/ioctl.h>

#include <cstddef>
#include <cstdint>

namespace glassbox::kvmi {

inline constexpr int kKvmCapIntrospection = 179;

// struct kvm_introspection_hook: KVM_INTROSPECTION_HOOK argument.
struct KvmIntrospectionHook {
  std::int32_t fd;  // connected socket
  std::uint32_t padding;
  std::uint8_t uuid[16];
};

// struct kvm_introspection_feature: KVM_INTROSPECTION_COMMAND / _EVENT argument.
struct KvmIntrospectionFeature {
  std::uint32_t allow;  // bit 0: 1 allow, 0 disallow
  std::int32_t id;      // command or event id, -1 for all
};
inline constexpr std::int32_t kIntrospectionAllIds = -1;

inline constexpr unsigned long kKvmIntrospectionHook = 0x4018AEC3;
inline constexpr unsigned long kKvmIntrospectionUnhook = 0xAEC4;
inline constexpr unsigned long kKvmIntrospectionCommand = 0x4008AEC5;
inline constexpr unsigned long kKvmIntrospectionEvent = 0x4008AEC6;
inline constexpr unsigned long kKvmIntrospectionPreunhook = 0xAEC7;

static_assert(sizeof(KvmIntrospectionHook) == 24);
static_assert(offsetof(KvmIntrospectionHook, fd) == 0);
static_assert(offsetof(KvmIntrospectionHook, padding) == 4);
static_assert(offsetof(KvmIntrospectionHook, uuid) == 8);
static_assert(sizeof(KvmIntrospectionFeature) == 8);
static_assert(offsetof(KvmIntrospectionFeature, allow) == 0);
static_assert(offsetof(KvmIntrospectionFeature, id) == 4);

// The numbers above are the _IOW/_IO encodings of §5.2 (KVMIO = 0xAE).
static_assert(kKvmIntrospectionHook == _IOW(0xAE, 0xc3, KvmIntrospectionHook));
static_assert(kKvmIntrospectionUnhook == _IO(0xAE, 0xc4));
static_assert(kKvmIntrospectionCommand == _IOW(0xAE, 0xc5, KvmIntrospectionFeature));
static_assert(kKvmIntrospectionEvent == _IOW(0xAE, 0xc6, KvmIntrospectionFeature));
static_assert(kKvmIntrospectionPreunhook == _IO(0xAE, 0xc7));

}  // namespace glassbox::kvmi
