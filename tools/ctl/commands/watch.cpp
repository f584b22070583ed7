// `glassbox-ctl watch --events LIST [--vcpu N|all] [--reply ACTION] [--msr MSR]...
//  [--msr-value new|keep-old] [--count N] [--for DURATION]`: enable events, print each as one
// JSON line, answer it, and undo everything on the way out (--count, --for, SIGINT/SIGTERM, or
// the VM going away).
//
// Every event is answered, so the guest keeps running; the session's setup (enabled events,
// tracked MSRs, single-stepping) is dropped by the VMM anyway when a tool leaves, but is undone
// here first so a watch that ends on --count leaves nothing behind for the next command either.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "ctl.h"
#include "event_json.h"
#include "event_loop.h"
#include "glassbox/kvmi/events.h"
#include "parse.h"

namespace glassbox::ctl {

namespace {

struct WatchArgs {
  std::string events_text;
  std::string vcpu_text = "all";
  std::string reply_text = "continue";
  std::string msr_value_text = "new";
  std::vector<std::string> msr_texts;
  std::string count_text;
  std::string for_text;
  std::vector<std::uint16_t> events;
  std::uint32_t vcpu = kAllVcpus;
  kvmi::EventAction reply = kvmi::EventAction::Continue;
  bool keep_old = false;
  std::vector<std::uint32_t> msrs;
  LoopLimits limits;
};

bool has(const std::vector<std::uint16_t>& events, kvmi::EventId id) {
  return std::ranges::find(events, static_cast<std::uint16_t>(id)) != events.end();
}

// The action actually sent: RETRY only where the spec defines it (§3.1), CONTINUE elsewhere.
kvmi::EventAction action_for(kvmi::EventAction wanted, std::uint8_t event) {
  if (wanted == kvmi::EventAction::Retry &&
      !kvmi::event_accepts_action(static_cast<kvmi::EventId>(event), wanted)) {
    return kvmi::EventAction::Continue;
  }
  return wanted;
}

std::string action_word(kvmi::EventAction action) {
  return action == kvmi::EventAction::Retry   ? "retry"
         : action == kvmi::EventAction::Crash ? "crash"
                                              : "continue";
}

int run_watch(const WatchArgs& args, client::Session& session, const Output& out) {
  StopSignals signals;
  auto count = checked_vcpu_count(session, out, "--vcpu", args.vcpu);
  if (!count) return count.error();
  const auto vcpus = vcpu_list(args.vcpu, *count);
  const bool msr = has(args.events, kvmi::EventId::Msr);
  const bool step = has(args.events, kvmi::EventId::Singlestep);

  // Undoes whatever got set up; safe to run at any point.
  std::vector<std::pair<std::uint16_t, std::uint32_t>> tracked_msrs;
  std::vector<std::uint16_t> stepping;
  auto undo = [&] {
    for (auto v : stepping) (void)session.control_singlestep(v, false);
    for (auto [v, index] : tracked_msrs) (void)session.control_msr(v, index, false);
    (void)control_events(session, vcpus, args.events, false);
  };

  if (auto r = control_events(session, vcpus, args.events, true); !r) {
    return out.vmm_error(r.error(), "watch");
  }
  if (msr) {
    for (auto v : vcpus) {
      for (auto index : args.msrs) {
        if (auto r = session.control_msr(v, index, true); !r) {
          undo();
          return out.vmm_error(
              r.error(), fmt::format("cannot track writes to {} on vCPU {}{}", format_msr(index), v,
                                     refusal_hint(r.error())));
        }
        tracked_msrs.emplace_back(v, index);
      }
    }
  }
  if (step) {
    for (auto v : vcpus) {
      if (auto r = session.control_singlestep(v, true); !r) {
        undo();
        return out.vmm_error(
            r.error(), fmt::format("cannot single-step vCPU {}{}", v, refusal_hint(r.error())));
      }
      stepping.push_back(v);
    }
  }
  std::string names;
  for (auto id : args.events)
    names += (names.empty() ? "" : ",") + std::string(event_short_name(id));
  std::fprintf(stderr, "watch: %s on %s; Ctrl-C ends\n", names.c_str(),
               args.vcpu == kAllVcpus ? fmt::format("all {} vCPUs", *count).c_str()
                                      : fmt::format("vCPU {}", args.vcpu).c_str());

  auto decide = [&](const client::ReceivedEvent& event) {
    Answer answer;
    answer.action = action_for(args.reply, event.event_id());
    auto line = event_json(event);
    if (event.event_id() == static_cast<std::uint8_t>(kvmi::EventId::Msr)) {
      const auto msr = event.specific_as<kvmi::EventMsr>();
      answer.msr_value = args.keep_old ? msr.old_value : msr.new_value;
    }
    line["action"] = action_word(answer.action);
    if (answer.msr_value) line["written"] = fmt::format("{:#x}", *answer.msr_value);
    std::printf("%s\n", line.dump().c_str());
    std::fflush(stdout);
    return answer;
  };
  LoopLimits limits = args.limits;
  limits.pauses_are_events = has(args.events, kvmi::EventId::PauseVcpu);
  const LoopEnd end = run_event_loop(session, signals, limits, decide);
  if (!end.closed) {
    undo();
    drain_events(session, decide);
  }
  std::fprintf(stderr, "watch: %llu events; %s\n", static_cast<unsigned long long>(end.events),
               end.reason.c_str());
  // A count the VM did not live to reach is a failure a script should see.
  if (end.closed && args.limits.count && end.events < *args.limits.count) return kExitVmm;
  return kExitOk;
}

}  // namespace

// Shared by watch, protect, break and step: --count and --for.
void parse_loop_limits(const std::string& count_text, const std::string& for_text,
                       LoopLimits& limits) {
  limits = {};
  if (!count_text.empty()) {
    auto n = parse_size(count_text);
    if (!n || *n == 0) {
      throw UsageError("--count", n ? "must be at least 1" : n.error(),
                       "give the number of events to wait for, e.g. --count 5");
    }
    limits.count = *n;
  }
  if (!for_text.empty()) {
    auto d = parse_duration(for_text);
    if (!d) throw UsageError("--for", d.error(), "give a duration such as 10s or 500ms");
    limits.duration = *d;
  }
}

void add_watch_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<WatchArgs>();
  auto* sub = app.add_subcommand(
      "watch",
      "Enable events, print each as a JSON line and answer it; undo everything on exit "
      "(--count, --for, Ctrl-C)");
  sub->add_option("--events", args->events_text,
                  "Comma list: breakpoint, msr, pf, hypercall, singlestep, pause, trap. msr also "
                  "tracks the --msr registers; singlestep also turns single-stepping on")
      ->required();
  sub->add_option("--vcpu", args->vcpu_text, "vCPU index or 'all'")->capture_default_str();
  sub->add_option("--reply", args->reply_text,
                  "continue, retry or crash; retry applies to breakpoint and pf, the others get "
                  "continue")
      ->capture_default_str();
  sub->add_option("--msr", args->msr_texts,
                  "MSR whose writes raise msr events (repeatable; default lstar)");
  sub->add_option("--msr-value", args->msr_value_text,
                  "On continue, write the guest's new value ('new') or keep the old one "
                  "('keep-old': blocks the write without a #GP)")
      ->capture_default_str();
  sub->add_option("--count", args->count_text, "Stop after this many events");
  sub->add_option("--for", args->for_text, "Stop after this long (e.g. 10s)");
  sub->callback([&ctl, args] {
    auto events = parse_event_list(args->events_text);
    if (!events) {
      throw UsageError("--events", events.error(),
                       "give a comma list such as breakpoint,msr,pf,hypercall,singlestep,pause");
    }
    args->events = *events;
    args->vcpu = vcpu_argument("--vcpu", args->vcpu_text, true);
    auto reply = parse_event_action(args->reply_text);
    if (!reply) throw UsageError("--reply", reply.error(), "use continue, retry or crash");
    args->reply = static_cast<kvmi::EventAction>(*reply);
    if (args->msr_value_text == "new") {
      args->keep_old = false;
    } else if (args->msr_value_text == "keep-old") {
      args->keep_old = true;
    } else {
      throw UsageError("--msr-value", "'" + args->msr_value_text + "' is not a choice",
                       "use new or keep-old");
    }
    args->msrs.clear();
    for (const auto& text : args->msr_texts) args->msrs.push_back(msr_argument("--msr", text));
    if (args->msrs.empty()) args->msrs.push_back(0xc0000082);  // LSTAR: what rootkits rewrite
    parse_loop_limits(args->count_text, args->for_text, args->limits);
    ctl.run = [args](client::Session& s, const Output& o) { return run_watch(*args, s, o); };
  });
}

}  // namespace glassbox::ctl
