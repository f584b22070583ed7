// Names of KVMI message and event ids, as the spec and the kernel headers spell them, and the
// reverse parse the CLI needs for --allow-commands / --allow-events (names or numeric ids).
#pragma once

#include <array>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string_view>

#include "glassbox/kvmi/ids.h"

namespace glassbox::kvmi {

inline constexpr std::array<std::string_view, kNumMessages> kMessageNames = {
    "KVMI_EVENT_REPLY",
    "KVMI_EVENT",
    "KVMI_GET_VERSION",
    "KVMI_VM_CHECK_COMMAND",
    "KVMI_VM_CHECK_EVENT",
    "KVMI_VM_GET_INFO",
    "KVMI_VM_CONTROL_EVENTS",
    "KVMI_VM_READ_PHYSICAL",
    "KVMI_VM_WRITE_PHYSICAL",
    "KVMI_VCPU_GET_INFO",
    "KVMI_VCPU_PAUSE",
    "KVMI_VCPU_CONTROL_EVENTS",
    "KVMI_VCPU_GET_REGISTERS",
    "KVMI_VCPU_SET_REGISTERS",
    "KVMI_VCPU_GET_CPUID",
    "KVMI_VCPU_CONTROL_CR",
    "KVMI_VCPU_INJECT_EXCEPTION",
    "KVMI_VM_GET_MAX_GFN",
    "KVMI_VCPU_GET_XSAVE",
    "KVMI_VCPU_GET_MTRR_TYPE",
    "KVMI_VCPU_CONTROL_MSR",
    "KVMI_VM_SET_PAGE_ACCESS",
    "KVMI_VCPU_CONTROL_SINGLESTEP",
    "KVMI_VCPU_TRANSLATE_GVA",
};

inline constexpr std::array<std::string_view, kNumEvents> kEventNames = {
    "KVMI_EVENT_UNHOOK", "KVMI_EVENT_PAUSE_VCPU", "KVMI_EVENT_HYPERCALL",  "KVMI_EVENT_BREAKPOINT",
    "KVMI_EVENT_CR",     "KVMI_EVENT_TRAP",       "KVMI_EVENT_XSETBV",     "KVMI_EVENT_DESCRIPTOR",
    "KVMI_EVENT_MSR",    "KVMI_EVENT_PF",         "KVMI_EVENT_SINGLESTEP",
};

inline constexpr std::array<std::string_view, 3> kEventActionNames = {
    "KVMI_EVENT_ACTION_CONTINUE", "KVMI_EVENT_ACTION_RETRY", "KVMI_EVENT_ACTION_CRASH"};

// "KVMI_VM_READ_PHYSICAL" for id 7; "unknown" for ids v7 does not define.
constexpr std::string_view message_name(std::uint16_t id) {
  return id < kMessageNames.size() ? kMessageNames[id] : std::string_view("unknown");
}
constexpr std::string_view message_name(MessageId id) {
  return message_name(static_cast<std::uint16_t>(id));
}
constexpr std::string_view event_name(std::uint16_t id) {
  return id < kEventNames.size() ? kEventNames[id] : std::string_view("unknown");
}
constexpr std::string_view event_name(EventId id) {
  return event_name(static_cast<std::uint16_t>(id));
}
constexpr std::string_view action_name(std::uint8_t action) {
  return action < kEventActionNames.size() ? kEventActionNames[action]
                                           : std::string_view("unknown");
}
constexpr std::string_view action_name(EventAction action) {
  return action_name(static_cast<std::uint8_t>(action));
}

namespace detail {

constexpr char ascii_upper(char c) {
  return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c;
}

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_upper(a[i]) != ascii_upper(b[i])) return false;
  }
  return true;
}

// Decimal or 0x-prefixed hex, the whole string, fitting in 16 bits.
inline std::optional<std::uint16_t> parse_number(std::string_view text) {
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    text.remove_prefix(2);
    base = 16;
  }
  if (text.empty()) return std::nullopt;
  std::uint16_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Matches `text` against `full` with any of `prefixes` optionally left out, ignoring case.
constexpr bool matches_name(std::string_view text, std::string_view full,
                            std::initializer_list<std::string_view> prefixes) {
  if (iequals(text, full)) return true;
  for (std::string_view prefix : prefixes) {
    if (full.starts_with(prefix) && iequals(text, full.substr(prefix.size()))) return true;
  }
  return false;
}

}  // namespace detail

// Accepts "KVMI_VM_READ_PHYSICAL", "vm_read_physical", "7" or "0x7". Only v7 ids parse:
// a number beyond the table is refused so a typo cannot silently allow nothing.
inline std::optional<MessageId> parse_message(std::string_view text) {
  if (auto number = detail::parse_number(text)) {
    if (is_known_message(*number)) return static_cast<MessageId>(*number);
    return std::nullopt;
  }
  for (std::size_t id = 0; id < kMessageNames.size(); ++id) {
    if (detail::matches_name(text, kMessageNames[id], {"KVMI_"})) {
      return static_cast<MessageId>(id);
    }
  }
  return std::nullopt;
}

// Accepts "KVMI_EVENT_PF", "event_pf", "pf", "9" or "0x9".
inline std::optional<EventId> parse_event(std::string_view text) {
  if (auto number = detail::parse_number(text)) {
    if (is_known_event(*number)) return static_cast<EventId>(*number);
    return std::nullopt;
  }
  for (std::size_t id = 0; id < kEventNames.size(); ++id) {
    if (detail::matches_name(text, kEventNames[id], {"KVMI_EVENT_", "KVMI_"})) {
      return static_cast<EventId>(id);
    }
  }
  return std::nullopt;
}

// Accepts "continue", "KVMI_EVENT_ACTION_RETRY", "2".
inline std::optional<EventAction> parse_action(std::string_view text) {
  if (auto number = detail::parse_number(text)) {
    if (*number < kEventActionNames.size()) return static_cast<EventAction>(*number);
    return std::nullopt;
  }
  for (std::size_t id = 0; id < kEventActionNames.size(); ++id) {
    if (detail::matches_name(text, kEventActionNames[id], {"KVMI_EVENT_ACTION_"})) {
      return static_cast<EventAction>(id);
    }
  }
  return std::nullopt;
}

}  // namespace glassbox::kvmi
