// Which commands and events the VMM lets the tool use (--allow-commands / --allow-events; the
// allow masks of spec §5.2). Checked by the receiving thread for every message (spec §1.5 step 5)
// and by CHECK_COMMAND / CHECK_EVENT / CONTROL_EVENTS.
#pragma once

#include <bitset>
#include <expected>
#include <string>
#include <string_view>

#include "glassbox/kvmi/ids.h"

namespace glassbox::introspection {

class Permissions {
 public:
  static Permissions allow_all();
  // Only the always-allowed commands (GET_VERSION, VM_CHECK_COMMAND, VM_CHECK_EVENT); no events.
  static Permissions allow_none();

  // "all", "none", or a comma list of names or ids as names.h parses them
  // ("vm_read_physical,KVMI_VM_GET_INFO,5"). The error names the offending entry.
  static std::expected<Permissions, std::string> parse(std::string_view commands,
                                                       std::string_view events);

  // The always-allowed commands are allowed whatever the mask says (spec §2.3.1-2.3.3).
  // Ids 0 and 1 and ids beyond v7 are never in the command mask.
  bool allows_command(std::uint16_t id) const;
  bool allows_event(std::uint16_t id) const;

  void set_command(kvmi::MessageId id, bool allow);
  void set_event(kvmi::EventId id, bool allow);

  std::string describe() const;

 private:
  std::bitset<kvmi::kNumMessages> commands_;
  std::bitset<kvmi::kNumEvents> events_;
};

}  // namespace glassbox::introspection
