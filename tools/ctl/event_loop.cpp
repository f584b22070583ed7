#include "event_loop.h"

#include <fmt/format.h>
#include <poll.h>

#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/events.h"
#include "parse.h"

namespace glassbox::ctl {

client::Result<void> answer_event(client::Session& session, const client::ReceivedEvent& event,
                                  const Answer& answer) {
  if (event.event_id() == static_cast<std::uint8_t>(kvmi::EventId::Unhook)) return {};
  if (event.event_id() == static_cast<std::uint8_t>(kvmi::EventId::Msr)) {
    const auto msr = event.specific_as<kvmi::EventMsr>();
    return session.reply_msr_event(event, answer.action, answer.msr_value.value_or(msr.new_value));
  }
  return session.reply_event(event, answer.action);
}

LoopEnd run_event_loop(client::Session& session, const StopSignals& signals,
                       const LoopLimits& limits, const Decide& decide) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  LoopEnd end;
  while (true) {
    if (limits.count && end.events >= *limits.count) {
      end.reason = "--count reached";
      return end;
    }
    if (int sig = signals.take(); sig != 0) {
      end.reason = stop_signal_name(sig);
      return end;
    }
    auto wait = std::chrono::milliseconds(100);  // how often signals and --for are looked at
    if (limits.duration) {
      const auto left = *limits.duration -
                        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
      if (left.count() <= 0) {
        end.reason = "--for elapsed";
        return end;
      }
      wait = std::min(wait, left);
    }
    auto event = session.wait_event(wait);
    if (!event) {
      if (event.error().kind == client::ErrorKind::Timeout) continue;
      end.closed = true;
      end.reason = "the VM went away (" + session.close_reason() + ")";
      return end;
    }
    if (event->event_id() == static_cast<std::uint8_t>(kvmi::EventId::Unhook)) {
      // The VMM is about to leave; the caller undoes its setup and closes (spec §3.4.1).
      end.reason = "the VMM unhooked this tool";
      return end;
    }
    if (event->event_id() == static_cast<std::uint8_t>(kvmi::EventId::PauseVcpu) &&
        !limits.pauses_are_events) {
      if (auto r = session.reply_event(*event, kvmi::EventAction::Continue); !r) {
        end.closed = true;
        end.reason = "the VM went away (" + r.error().message + ")";
        return end;
      }
      continue;
    }
    const Answer answer = decide(*event);
    if (auto r = answer_event(session, *event, answer); !r) {
      end.closed = true;
      end.reason = "the VM went away (" + r.error().message + ")";
      return end;
    }
    if (answer.counts) ++end.events;
  }
}

void drain_events(client::Session& session, const Decide& decide) {
  while (auto event = session.poll_event()) {
    if (!answer_event(session, *event, decide(*event))) return;
  }
}

void settle_vcpus(client::Session& session, const std::vector<std::uint16_t>& vcpus) {
  for (auto vcpu : vcpus) (void)session.get_vcpu_tsc_speed(vcpu);
}

std::vector<std::uint16_t> vcpu_list(std::uint32_t vcpu, std::uint32_t count) {
  std::vector<std::uint16_t> list;
  if (vcpu != kAllVcpus) {
    list.push_back(static_cast<std::uint16_t>(vcpu));
    return list;
  }
  for (std::uint32_t v = 0; v < count; ++v) list.push_back(static_cast<std::uint16_t>(v));
  return list;
}

client::Result<void> control_events(client::Session& session,
                                    const std::vector<std::uint16_t>& vcpus,
                                    const std::vector<std::uint16_t>& events, bool enable) {
  std::vector<std::pair<std::uint16_t, std::uint16_t>> done;
  for (auto vcpu : vcpus) {
    for (auto id : events) {
      auto r = session.control_vcpu_events(vcpu, static_cast<kvmi::EventId>(id), enable);
      if (!r && enable) {
        for (auto [v, e] : done) {
          (void)session.control_vcpu_events(v, static_cast<kvmi::EventId>(e), false);
        }
        auto error = r.error();
        error.message = fmt::format("cannot enable {} events on vCPU {}: {}{}",
                                    event_short_name(id), vcpu, error.message, refusal_hint(error));
        return std::unexpected(std::move(error));
      }
      if (r) done.emplace_back(vcpu, id);
    }
  }
  return {};
}

std::string refusal_hint(const client::Error& error) {
  if (error.is(kvmi::Errno::OpNotSupp)) {
    return " (this glassbox cannot deliver that event yet: it is not wired to KVM in this build)";
  }
  if (error.is(kvmi::Errno::Perm)) {
    return " (the VMM does not allow it: see its --allow-events / --allow-commands)";
  }
  if (error.is(kvmi::Errno::NoSys)) {
    return " (this glassbox does not implement the command yet)";
  }
  return {};
}

}  // namespace glassbox::ctl
