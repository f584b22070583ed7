// One KVMI event as the JSON object `watch`, `protect`, `break --watch` and `step` print, one
// per line. Pure, so unit tests pin the field names scripts depend on.
#pragma once

#include <nlohmann/json.hpp>

#include "glassbox/client/session.h"

namespace glassbox::ctl {

// {"event": "pf", "vcpu": 0, "seq": 12, "rip": "0x...", "cr3": "0x...", "cpl": 0, ...} with the
// decoded event-specific fields:
//   breakpoint: gpa, insn_len          msr: msr, old, new
//   pf: gva (null when unknown), gpa, access ("r", "w" or "x")
//   singlestep: failed (bool)          trap: vector, error_code, cr2
// Addresses and values are "0x..." strings (JSON numbers lose 64-bit precision in most readers).
nlohmann::json event_json(const client::ReceivedEvent& event);

}  // namespace glassbox::ctl
