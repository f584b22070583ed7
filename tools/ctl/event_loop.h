// The event loop of the commands that hold a session and answer events (watch, protect,
// break --watch, step): wait for events, let the command decide, answer, and stop on --count,
// --for, a signal or a closed connection. Setting up and undoing is the command's job; this only
// runs the middle.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ctl.h"
#include "glassbox/kvmi/ids.h"
#include "signals.h"

namespace glassbox::ctl {

// What a command decides for one event.
struct Answer {
  kvmi::EventAction action = kvmi::EventAction::Continue;
  // MSR events: the value written on CONTINUE. Unset means the guest's new value, so an MSR
  // event is never answered with the zero a missing reply field would mean (spec §3.3).
  std::optional<std::uint64_t> msr_value;
  // Whether the event counts toward --count (e.g. the single step that re-plants a breakpoint
  // does not).
  bool counts = true;
};

using Decide = std::function<Answer(const client::ReceivedEvent&)>;

struct LoopLimits {
  std::optional<std::uint64_t> count;                 // --count
  std::optional<std::chrono::milliseconds> duration;  // --for
  // Whether PAUSE_VCPU events go to the command (watch --events pause). Otherwise they are
  // pauses the command did not ask for, e.g. the vCPUs of a VMM started with --start-paused
  // waiting for their first instruction: answered CONTINUE once the command is set up, uncounted.
  bool pauses_are_events = false;
};

struct LoopEnd {
  std::string reason;  // "--count reached", "--for elapsed", "SIGINT", "the VM went away: ..."
  std::uint64_t events = 0;  // counted events answered
  bool closed = false;       // the connection closed (the VM exited or unhooked)
};

// Runs until a limit, a signal or a close; a failed reply ends it as a close.
LoopEnd run_event_loop(client::Session& session, const StopSignals& signals,
                       const LoopLimits& limits, const Decide& decide);

// Answers one event as `answer` says.
client::Result<void> answer_event(client::Session& session, const client::ReceivedEvent& event,
                                  const Answer& answer);

// After a command undid its setup: answers every event still queued with `decide`, so no vCPU
// keeps waiting on a tool that is about to leave.
void drain_events(client::Session& session, const Decide& decide);

// Returns once each vCPU of `vcpus` has taken in every answer sent to it so far: a vCPU command
// queues behind the answers on the vCPU's FIFO, so its reply proves they were consumed. Called
// before undoing a setup the last answers depend on (e.g. lifting a page restriction right after
// answering RETRY to a write there, which the VMM would otherwise let land).
void settle_vcpus(client::Session& session, const std::vector<std::uint16_t>& vcpus);

// Enables (or disables) `events` on each vCPU of `vcpus`, in order. On a failure, what this call
// enabled is disabled again and the error names the event and the vCPU.
client::Result<void> control_events(client::Session& session,
                                    const std::vector<std::uint16_t>& vcpus,
                                    const std::vector<std::uint16_t>& events, bool enable);

// The vCPU indexes a --vcpu value names: all of them for kAllVcpus.
std::vector<std::uint16_t> vcpu_list(std::uint32_t vcpu, std::uint32_t count);

// --count and --for of the holding commands; throws UsageError naming the option.
void parse_loop_limits(const std::string& count_text, const std::string& for_text,
                       LoopLimits& limits);

// A message for an event or command the VMM refused, with what it means on glassbox (e.g.
// -KVM_EOPNOTSUPP: "this glassbox cannot deliver it yet").
std::string refusal_hint(const client::Error& error);

}  // namespace glassbox::ctl
