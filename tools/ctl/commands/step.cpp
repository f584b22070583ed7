// `glassbox-ctl step --vcpu N [--count K] [--for DURATION]`: single-step a vCPU K instructions
// (KVMI_VCPU_CONTROL_SINGLESTEP + KVMI_EVENT_SINGLESTEP) and print where each step landed.
//
// Stepping is switched off once the K-th step is answered; a step the vCPU made meanwhile is
// answered but not printed. On KVM-PVM only CPL0 code can be stepped, and stepping starts at the
// vCPU's next exit to the VMM in CPL0 code: a vCPU that stays in user code (or handles its
// interrupts without exits) produces no steps until then.
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "ctl.h"
#include "event_json.h"
#include "event_loop.h"
#include "glassbox/kvmi/events.h"
#include "parse.h"

namespace glassbox::ctl {

namespace {

struct StepArgs {
  std::string vcpu_text;
  std::string count_text = "10";
  std::string for_text;
  std::uint16_t vcpu = 0;
  LoopLimits limits;
};

int run_step(const StepArgs& args, client::Session& session, const Output& out) {
  StopSignals signals;
  auto count = checked_vcpu_count(session, out, "--vcpu", args.vcpu);
  if (!count) return count.error();
  const std::vector<std::uint16_t> vcpus = {args.vcpu};
  const std::vector<std::uint16_t> events = {static_cast<std::uint16_t>(kvmi::EventId::Singlestep)};
  if (auto r = control_events(session, vcpus, events, true); !r) {
    return out.vmm_error(r.error(), "step");
  }
  bool stepping = false;
  auto stop_stepping = [&] {
    if (stepping) (void)session.control_singlestep(args.vcpu, false);
    stepping = false;
  };
  if (auto r = session.control_singlestep(args.vcpu, true); !r) {
    (void)control_events(session, vcpus, events, false);
    return out.vmm_error(
        r.error(), fmt::format("cannot single-step vCPU {}{}", args.vcpu, refusal_hint(r.error())));
  }
  stepping = true;

  std::uint64_t steps = 0;
  auto decide = [&](const client::ReceivedEvent& event) {
    Answer answer;
    if (event.event_id() != static_cast<std::uint8_t>(kvmi::EventId::Singlestep) ||
        event.vcpu() != args.vcpu || !stepping) {
      answer.counts = false;
      return answer;
    }
    ++steps;
    const auto& arch = event.common().arch;
    const bool failed = event.specific_as<kvmi::EventSinglestep>().failed != 0;
    if (out.json()) {
      auto line = event_json(event);
      line["step"] = steps;
      std::printf("%s\n", line.dump().c_str());
    } else {
      std::printf("%s\n", fmt::format("step {}: vcpu {} rip {:#018x} cpl {}{}", steps, event.vcpu(),
                                      arch.regs.rip, arch.sregs.cs.selector & 3,
                                      failed ? " (failed: another exit came first)" : "")
                              .c_str());
    }
    std::fflush(stdout);
    return answer;
  };
  const LoopEnd end = run_event_loop(session, signals, args.limits, decide);
  if (!end.closed) {
    stop_stepping();
    (void)control_events(session, vcpus, events, false);
    drain_events(session, [](const client::ReceivedEvent&) { return Answer{}; });
  }
  std::fprintf(stderr, "step: %llu steps; %s\n", static_cast<unsigned long long>(end.events),
               end.reason.c_str());
  if (args.limits.count && end.events < *args.limits.count && end.closed) return kExitVmm;
  return kExitOk;
}

}  // namespace

void add_step_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<StepArgs>();
  auto* sub = app.add_subcommand(
      "step", "Single-step a vCPU and print the RIP after each instruction (CPL0 only on KVM-PVM)");
  sub->add_option("--vcpu", args->vcpu_text, "vCPU index")->required();
  sub->add_option("--count", args->count_text, "Instructions to step")->capture_default_str();
  sub->add_option("--for", args->for_text, "Give up after this long (e.g. 10s)");
  sub->callback([&ctl, args] {
    args->vcpu = static_cast<std::uint16_t>(vcpu_argument("--vcpu", args->vcpu_text, false));
    parse_loop_limits(args->count_text, args->for_text, args->limits);
    ctl.run = [args](client::Session& s, const Output& o) { return run_step(*args, s, o); };
  });
}

}  // namespace glassbox::ctl
