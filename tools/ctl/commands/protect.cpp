// `glassbox-ctl protect RANGE --access ACCESS [--reply auto|continue|retry|crash] [--count N]
//  [--for DURATION]`: restrict the pages of a guest-physical range with KVMI_VM_SET_PAGE_ACCESS,
// print each violation (KVMI_EVENT_PF) as a JSON line, and lift the restriction on exit.
//
// The VMM drops a tool's page restrictions when the tool leaves (spec §2.3.20), so protecting
// means holding the session: this command runs until --count, --for, Ctrl-C or the VM's end.
// The default reply, auto, drops writes (RETRY: on KVM the write is not replayed) and lets reads
// and fetches complete (CONTINUE), because retrying a read or a fetch would fault forever.
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "ctl.h"
#include "event_json.h"
#include "event_loop.h"
#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/events.h"
#include "parse.h"

namespace glassbox::ctl {

namespace {

struct ProtectArgs {
  std::string range_text;
  std::string access_text;
  std::string reply_text = "auto";
  std::string count_text;
  std::string for_text;
  GpaRange range;
  std::uint8_t access = 0;
  std::optional<kvmi::EventAction> reply;  // empty: auto
  LoopLimits limits;
};

const char* action_word(kvmi::EventAction action) {
  return action == kvmi::EventAction::Retry   ? "retry"
         : action == kvmi::EventAction::Crash ? "crash"
                                              : "continue";
}

int run_protect(const ProtectArgs& args, client::Session& session, const Output& out) {
  StopSignals signals;
  auto count = checked_vcpu_count(session, out, "--vcpu", kAllVcpus);
  if (!count) return count.error();
  const auto vcpus = vcpu_list(kAllVcpus, *count);
  const std::vector<std::uint16_t> pf = {static_cast<std::uint16_t>(kvmi::EventId::Pf)};
  const auto entries = client::page_access_entries(args.range.start, args.range.size, args.access);
  const std::uint64_t first = entries.front().gpa;
  const std::uint64_t end = entries.back().gpa + kvmi::kPageSize;

  // The event first: a violation between the two calls then still reaches this tool.
  if (auto r = control_events(session, vcpus, pf, true); !r) {
    return out.vmm_error(r.error(), "protect");
  }
  if (auto r = session.set_page_access(entries); !r) {
    (void)control_events(session, vcpus, pf, false);
    std::string context = fmt::format("cannot restrict {:#x}-{:#x}", first, end);
    if (r.error().is(kvmi::Errno::NoSys)) {
      context +=
          " (this glassbox does not implement KVMI_VM_SET_PAGE_ACCESS yet; it needs a "
          "build with page-access support)";
    } else {
      context += refusal_hint(r.error());
    }
    return out.vmm_error(r.error(), context);
  }
  std::fprintf(stderr, "protect: %#llx-%#llx (%zu page%s) now %s; Ctrl-C lifts it\n",
               static_cast<unsigned long long>(first), static_cast<unsigned long long>(end),
               entries.size(), entries.size() == 1 ? "" : "s",
               page_access_letters(args.access).c_str());

  auto decide = [&](const client::ReceivedEvent& event) {
    Answer answer;
    if (event.event_id() == static_cast<std::uint8_t>(kvmi::EventId::Pf)) {
      const auto access = event.specific_as<kvmi::EventPf>().access;
      answer.action = args.reply                     ? *args.reply
                      : access == kvmi::kPageAccessW ? kvmi::EventAction::Retry
                                                     : kvmi::EventAction::Continue;
      auto line = event_json(event);
      line["action"] = action_word(answer.action);
      std::printf("%s\n", line.dump().c_str());
      std::fflush(stdout);
    } else {
      answer.counts = false;  // someone else's event: let it go
    }
    return answer;
  };
  const LoopEnd end_of_loop = run_event_loop(session, signals, args.limits, decide);
  if (!end_of_loop.closed) {
    settle_vcpus(session, vcpus);
    auto lifted = session.set_page_access(args.range.start, args.range.size, kvmi::kPageAccessRwx);
    (void)control_events(session, vcpus, pf, false);
    drain_events(session, decide);
    if (!lifted) return out.vmm_error(lifted.error(), "cannot lift the restriction");
  }
  std::fprintf(stderr, "protect: %llu violations; %s\n",
               static_cast<unsigned long long>(end_of_loop.events), end_of_loop.reason.c_str());
  if (end_of_loop.closed && args.limits.count && end_of_loop.events < *args.limits.count) {
    return kExitVmm;
  }
  return kExitOk;
}

}  // namespace

void add_protect_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<ProtectArgs>();
  auto* sub = app.add_subcommand(
      "protect",
      "Restrict access to the pages of a guest-physical range, print violations as JSON lines; "
      "lifted on exit (--count, --for, Ctrl-C)");
  sub->add_option("RANGE", args->range_text, "GPA (its page), GPA..END (END exclusive) or GPA+SIZE")
      ->required();
  sub->add_option("--access", args->access_text,
                  "What stays allowed: r, rw, rx, rwx, x, w, wx or none")
      ->required();
  sub->add_option("--reply", args->reply_text,
                  "auto (drop writes with retry, let reads and fetches continue), continue, "
                  "retry or crash")
      ->capture_default_str();
  sub->add_option("--count", args->count_text, "Stop after this many violations");
  sub->add_option("--for", args->for_text, "Stop after this long (e.g. 10s)");
  sub->callback([&ctl, args] {
    auto range = parse_gpa_range(args->range_text);
    if (!range) {
      throw UsageError("RANGE", range.error(),
                       "give GPA, GPA..END or GPA+SIZE, e.g. 0x100000..0x104000 or 0x100000+16K");
    }
    args->range = *range;
    const auto pages = client::page_access_entries(range->start, range->size, 0).size();
    if (pages > 1u << 20) {
      throw UsageError("RANGE", fmt::format("{} pages is more than this tool sends", pages),
                       "protect at most 4 GiB at a time");
    }
    auto access = parse_page_access(args->access_text);
    if (!access) throw UsageError("--access", access.error(), "use letters r, w, x: e.g. rx");
    args->access = *access;
    args->reply.reset();
    if (args->reply_text != "auto") {
      auto reply = parse_event_action(args->reply_text);
      if (!reply) throw UsageError("--reply", reply.error(), "use auto, continue, retry or crash");
      args->reply = static_cast<kvmi::EventAction>(*reply);
    }
    parse_loop_limits(args->count_text, args->for_text, args->limits);
    ctl.run = [args](client::Session& s, const Output& o) { return run_protect(*args, s, o); };
  });
}

}  // namespace glassbox::ctl
