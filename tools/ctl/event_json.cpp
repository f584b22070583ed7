#include "event_json.h"

#include <fmt/format.h>

#include "glassbox/kvmi/events.h"
#include "parse.h"

namespace glassbox::ctl {

namespace {

std::string hex(std::uint64_t value) {
  return fmt::format("{:#x}", value);
}

}  // namespace

nlohmann::json event_json(const client::ReceivedEvent& event) {
  const auto& arch = event.common().arch;
  nlohmann::json j;
  j["event"] = std::string(event_short_name(event.event_id()));
  j["vcpu"] = event.vcpu();
  j["seq"] = event.seq();
  j["rip"] = hex(arch.regs.rip);
  j["cr3"] = hex(arch.sregs.cr3);
  j["cpl"] = arch.sregs.cs.selector & 3;
  switch (static_cast<kvmi::EventId>(event.event_id())) {
    case kvmi::EventId::Breakpoint: {
      const auto bp = event.specific_as<kvmi::EventBreakpoint>();
      j["gpa"] = hex(bp.gpa);
      j["insn_len"] = bp.insn_len;
      break;
    }
    case kvmi::EventId::Msr: {
      const auto msr = event.specific_as<kvmi::EventMsr>();
      j["msr"] = hex(msr.msr);
      j["old"] = hex(msr.old_value);
      j["new"] = hex(msr.new_value);
      break;
    }
    case kvmi::EventId::Pf: {
      const auto pf = event.specific_as<kvmi::EventPf>();
      j["gva"] =
          pf.gva == kvmi::kInvalidGpa ? nlohmann::json(nullptr) : nlohmann::json(hex(pf.gva));
      j["gpa"] = hex(pf.gpa);
      const std::string letters = page_access_letters(pf.access);
      std::string access;
      for (char c : letters) {
        if (c != '-') access += c;
      }
      j["access"] = access;
      break;
    }
    case kvmi::EventId::Singlestep:
      j["failed"] = event.specific_as<kvmi::EventSinglestep>().failed != 0;
      break;
    case kvmi::EventId::Trap: {
      const auto trap = event.specific_as<kvmi::EventTrap>();
      j["vector"] = trap.vector;
      j["error_code"] = trap.error_code;
      j["cr2"] = hex(trap.cr2);
      break;
    }
    default:
      break;
  }
  return j;
}

}  // namespace glassbox::ctl
