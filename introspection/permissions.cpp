#include "introspection/permissions.h"

#include <fmt/format.h>

#include <vector>

#include "glassbox/kvmi/names.h"

namespace glassbox::introspection {

namespace {

std::vector<std::string_view> split_list(std::string_view text) {
  std::vector<std::string_view> items;
  while (!text.empty()) {
    auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    items.push_back(item);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return items;
}

bool is_keyword(std::string_view text, std::string_view keyword) {
  return kvmi::detail::iequals(text, keyword);
}

}  // namespace

Permissions Permissions::allow_all() {
  Permissions p;
  for (std::uint16_t id = 0; id < kvmi::kNumMessages; ++id) {
    // Ids 0 and 1 are not commands: the event reply needs no permission and id 1 is VMM -> tool.
    if (id >= static_cast<std::uint16_t>(kvmi::MessageId::GetVersion)) p.commands_.set(id);
  }
  p.events_.set();
  return p;
}

Permissions Permissions::allow_none() {
  return Permissions{};
}

std::expected<Permissions, std::string> Permissions::parse(std::string_view commands,
                                                           std::string_view events) {
  Permissions p;
  if (is_keyword(commands, "all")) {
    p.commands_ = allow_all().commands_;
  } else if (!is_keyword(commands, "none")) {
    for (std::string_view item : split_list(commands)) {
      auto id = kvmi::parse_message(item);
      if (!id || static_cast<std::uint16_t>(*id) < 2) {
        return std::unexpected(fmt::format(
            "--allow-commands: '{}' is not a KVMI command (a name such as vm_read_physical or "
            "KVMI_VM_GET_INFO, an id 2..{}, 'all' or 'none')",
            item, kvmi::kNumMessages - 1));
      }
      p.set_command(*id, true);
    }
  }
  if (is_keyword(events, "all")) {
    p.events_.set();
  } else if (!is_keyword(events, "none")) {
    for (std::string_view item : split_list(events)) {
      auto id = kvmi::parse_event(item);
      if (!id) {
        return std::unexpected(
            fmt::format("--allow-events: '{}' is not a KVMI event (a name such as unhook or "
                        "KVMI_EVENT_BREAKPOINT, an id 0..{}, 'all' or 'none')",
                        item, kvmi::kNumEvents - 1));
      }
      p.set_event(*id, true);
    }
  }
  return p;
}

bool Permissions::allows_command(std::uint16_t id) const {
  if (kvmi::is_always_allowed(static_cast<kvmi::MessageId>(id))) return true;
  return id < kvmi::kNumMessages && commands_.test(id);
}

bool Permissions::allows_event(std::uint16_t id) const {
  return id < kvmi::kNumEvents && events_.test(id);
}

void Permissions::set_command(kvmi::MessageId id, bool allow) {
  auto index = static_cast<std::uint16_t>(id);
  if (index < 2 || index >= kvmi::kNumMessages) return;
  commands_.set(index, allow);
}

void Permissions::set_event(kvmi::EventId id, bool allow) {
  auto index = static_cast<std::uint16_t>(id);
  if (index >= kvmi::kNumEvents) return;
  events_.set(index, allow);
}

std::string Permissions::describe() const {
  std::string out = "commands:";
  for (std::uint16_t id = 2; id < kvmi::kNumMessages; ++id) {
    if (allows_command(id)) out += fmt::format(" {}", kvmi::message_name(id));
  }
  out += "; events:";
  for (std::uint16_t id = 0; id < kvmi::kNumEvents; ++id) {
    if (allows_event(id)) out += fmt::format(" {}", kvmi::event_name(id));
  }
  return out;
}

}  // namespace glassbox::introspection
