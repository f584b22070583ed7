// `glassbox-ctl break --gva ADDR [--vcpu N] [--remove | --watch [--count N] [--for DURATION]]`:
// a software breakpoint (INT3, 0xCC) at a guest-virtual address, translated with the vCPU's
// current page tables.
//
// * plain: writes 0xCC and records the original byte in "<socket>.breakpoints.json", so a later
//   `--remove` puts it back. Nothing answers the #BP in between: the guest receives it itself.
// * --watch: plants it, enables KVMI_EVENT_BREAKPOINT on every vCPU, prints each hit as a JSON
//   line and steps over it: original byte back, single-step the vCPU one instruction with RIP
//   unchanged (answer RETRY), then 0xCC again at that step's event. Other vCPUs may run past
//   the address unseen during that one instruction. INT3s the guest planted itself are given
//   back to it (CONTINUE). On exit the original byte is restored.
//
// On KVM-PVM only CPL0 code raises breakpoint events (an INT3 at CPL3 goes straight to the guest).
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "ctl.h"
#include "event_json.h"
#include "event_loop.h"
#include "glassbox/kvmi/events.h"
#include "parse.h"

namespace glassbox::ctl {

namespace {

constexpr std::byte kInt3{0xcc};

struct BreakArgs {
  std::string gva_text;
  std::string vcpu_text = "0";
  bool remove = false;
  bool watch = false;
  std::string count_text;
  std::string for_text;
  std::uint64_t gva = 0;
  std::uint16_t vcpu = 0;
  LoopLimits limits;
};

// Planted breakpoints by GPA ("0x..." -> {"gva": "0x...", "byte": "0x.."}), next to the socket.
std::string state_path(const GlobalOptions& options) {
  return socket_path(options) + ".breakpoints.json";
}

nlohmann::json load_state(const std::string& path) {
  std::ifstream in(path);
  if (!in) return nlohmann::json::object();
  try {
    auto j = nlohmann::json::parse(in);
    return j.is_object() ? j : nlohmann::json::object();
  } catch (const nlohmann::json::exception&) {
    return nlohmann::json::object();
  }
}

bool save_state(const std::string& path, const nlohmann::json& state) {
  std::error_code ec;
  if (state.empty()) {
    std::filesystem::remove(path, ec);
    return true;
  }
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << state.dump(2) << "\n";
    if (!out) return false;
  }
  std::filesystem::rename(temp, path, ec);
  return !ec;
}

client::Result<std::byte> read_byte(client::Session& session, std::uint64_t gpa) {
  std::byte b{};
  auto r = session.read_physical(gpa, std::span(&b, 1));
  if (!r) return std::unexpected(r.error());
  return b;
}

client::Result<void> write_byte(client::Session& session, std::uint64_t gpa, std::byte b) {
  return session.write_physical(gpa, std::span(&b, 1));
}

std::string hex(std::uint64_t v) {
  return fmt::format("{:#x}", v);
}

int run_plant_or_remove(const BreakArgs& args, const GlobalOptions& options, std::uint64_t gpa,
                        client::Session& session, const Output& out) {
  const std::string path = state_path(options);
  auto state = load_state(path);
  const std::string key = hex(gpa);
  if (args.remove) {
    if (!state.contains(key)) {
      client::Error error{client::ErrorKind::InvalidArgument, 0,
                          fmt::format("no breakpoint planted by glassbox-ctl at gva {:#x} (gpa "
                                      "{:#x}); planted ones are listed in {}",
                                      args.gva, gpa, path)};
      return out.vmm_error(error, "break --remove");
    }
    const auto original =
        static_cast<std::byte>(std::stoul(state[key]["byte"].get<std::string>(), nullptr, 16));
    if (auto r = write_byte(session, gpa, original); !r) {
      return out.vmm_error(r.error(), fmt::format("cannot restore the byte at gpa {:#x}", gpa));
    }
    state.erase(key);
    save_state(path, state);
    if (out.json()) {
      out.print_json({{"gva", hex(args.gva)},
                      {"gpa", key},
                      {"removed", true},
                      {"byte", hex(std::to_integer<unsigned>(original))}});
    } else {
      std::printf("%s\n", fmt::format("breakpoint at {:#x} (gpa {:#x}) removed; byte {:#04x} back",
                                      args.gva, gpa, std::to_integer<unsigned>(original))
                              .c_str());
    }
    return kExitOk;
  }
  if (state.contains(key)) {
    client::Error error{client::ErrorKind::InvalidArgument, 0,
                        fmt::format("a breakpoint is already planted at gpa {:#x}", gpa)};
    return out.vmm_error(error, "break");
  }
  auto original = read_byte(session, gpa);
  if (!original) return out.vmm_error(original.error(), fmt::format("cannot read gpa {:#x}", gpa));
  state[key] = {{"gva", hex(args.gva)}, {"byte", hex(std::to_integer<unsigned>(*original))}};
  // Recorded before the write, so a crash in between still leaves the way back.
  if (!save_state(path, state)) {
    client::Error error{client::ErrorKind::InvalidArgument, 0,
                        "cannot write " + path + ", where the original byte is kept"};
    return out.vmm_error(error, "break");
  }
  if (auto r = write_byte(session, gpa, kInt3); !r) {
    state.erase(key);
    save_state(path, state);
    return out.vmm_error(r.error(), fmt::format("cannot write 0xcc at gpa {:#x}", gpa));
  }
  if (out.json()) {
    out.print_json({{"gva", hex(args.gva)},
                    {"gpa", key},
                    {"planted", true},
                    {"byte", hex(std::to_integer<unsigned>(*original))}});
  } else {
    std::printf("%s\n", fmt::format("breakpoint at {:#x} (gpa {:#x}); original byte {:#04x}; "
                                    "`break --gva {:#x} --remove` puts it back",
                                    args.gva, gpa, std::to_integer<unsigned>(*original), args.gva)
                            .c_str());
  }
  return kExitOk;
}

int run_watch(const BreakArgs& args, std::uint64_t gpa, client::Session& session,
              const Output& out) {
  StopSignals signals;
  auto count = checked_vcpu_count(session, out, "--vcpu", kAllVcpus);
  if (!count) return count.error();
  const auto vcpus = vcpu_list(kAllVcpus, *count);
  const std::vector<std::uint16_t> events = {static_cast<std::uint16_t>(kvmi::EventId::Breakpoint),
                                             static_cast<std::uint16_t>(kvmi::EventId::Singlestep)};
  auto original = read_byte(session, gpa);
  if (!original) return out.vmm_error(original.error(), fmt::format("cannot read gpa {:#x}", gpa));
  if (*original == kInt3) {
    client::Error error{client::ErrorKind::InvalidArgument, 0,
                        fmt::format("gpa {:#x} already holds 0xcc (a breakpoint of the guest or "
                                    "of `break` without --watch)",
                                    gpa)};
    return out.vmm_error(error, "break --watch");
  }
  if (auto r = control_events(session, vcpus, events, true); !r) {
    return out.vmm_error(r.error(), "break --watch");
  }
  if (auto r = write_byte(session, gpa, kInt3); !r) {
    (void)control_events(session, vcpus, events, false);
    return out.vmm_error(r.error(), fmt::format("cannot write 0xcc at gpa {:#x}", gpa));
  }
  std::fprintf(stderr, "break: watching %#llx (gpa %#llx); Ctrl-C removes it\n",
               static_cast<unsigned long long>(args.gva), static_cast<unsigned long long>(gpa));

  // The vCPU being stepped over the breakpoint (the byte is the original meanwhile).
  std::optional<std::uint16_t> stepping;
  std::uint64_t hits = 0;
  auto decide = [&](const client::ReceivedEvent& event) {
    Answer answer;
    answer.counts = false;
    const auto id = static_cast<kvmi::EventId>(event.event_id());
    if (id == kvmi::EventId::Singlestep) {
      if (stepping && *stepping == event.vcpu()) {
        (void)write_byte(session, gpa, kInt3);
        (void)session.control_singlestep(event.vcpu(), false);
        stepping.reset();
      }
      return answer;
    }
    if (id != kvmi::EventId::Breakpoint) return answer;
    if (event.specific_as<kvmi::EventBreakpoint>().gpa != gpa) {
      return answer;  // the guest's own INT3: CONTINUE hands the #BP back to it
    }
    // Ours. RETRY re-runs the instruction at RIP, which must then be the original one.
    answer.action = kvmi::EventAction::Retry;
    answer.counts = true;
    auto line = event_json(event);
    line["hit"] = ++hits;
    line["gva"] = hex(args.gva);
    std::printf("%s\n", line.dump().c_str());
    std::fflush(stdout);
    if (!stepping) {
      (void)write_byte(session, gpa, *original);
      if (session.control_singlestep(event.vcpu(), true)) {
        stepping = event.vcpu();
      } else {
        // No single-step here: the breakpoint stays lifted rather than loop on this vCPU.
        std::fprintf(stderr, "break: cannot single-step vCPU %u; the breakpoint is now lifted\n",
                     event.vcpu());
      }
    }
    return answer;
  };
  const LoopEnd end = run_event_loop(session, signals, args.limits, decide);
  if (!end.closed) {
    (void)write_byte(session, gpa, *original);
    if (stepping) (void)session.control_singlestep(*stepping, false);
    (void)control_events(session, vcpus, events, false);
    // Hits still queued are re-run on the original byte (RETRY) instead of being handed to the
    // guest as a #BP it never planted.
    drain_events(session, [&](const client::ReceivedEvent& event) {
      Answer answer;
      if (event.event_id() == static_cast<std::uint8_t>(kvmi::EventId::Breakpoint) &&
          event.specific_as<kvmi::EventBreakpoint>().gpa == gpa) {
        answer.action = kvmi::EventAction::Retry;
      }
      return answer;
    });
  }
  std::fprintf(stderr, "break: %llu hits; %s\n", static_cast<unsigned long long>(end.events),
               end.reason.c_str());
  if (end.closed && args.limits.count && end.events < *args.limits.count) return kExitVmm;
  return kExitOk;
}

int run_break(const BreakArgs& args, const GlobalOptions& options, client::Session& session,
              const Output& out) {
  auto count = checked_vcpu_count(session, out, "--vcpu", args.vcpu);
  if (!count) return count.error();
  auto gpa = session.translate_gva(args.vcpu, args.gva);
  if (!gpa) return out.vmm_error(gpa.error(), fmt::format("translate {:#x}", args.gva));
  if (*gpa == kvmi::kInvalidGpa) {
    client::Error error{
        client::ErrorKind::InvalidArgument, 0,
        fmt::format("{:#x} is not mapped on vCPU {} (its current CR3)", args.gva, args.vcpu)};
    return out.vmm_error(error, "break");
  }
  if (args.watch) return run_watch(args, *gpa, session, out);
  return run_plant_or_remove(args, options, *gpa, session, out);
}

}  // namespace

void add_break_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<BreakArgs>();
  auto* sub = app.add_subcommand(
      "break",
      "Plant (or --remove) an INT3 at a guest-virtual address; --watch prints hits and steps "
      "over them until --count, --for or Ctrl-C");
  sub->add_option("--gva", args->gva_text, "Guest-virtual address")->required();
  sub->add_option("--vcpu", args->vcpu_text, "vCPU whose page tables translate --gva")
      ->capture_default_str();
  auto* remove =
      sub->add_flag("--remove", args->remove, "Put back the byte a plain `break` replaced");
  auto* watch = sub->add_flag("--watch", args->watch,
                              "Hold the breakpoint, print each hit, step over it; removed on exit");
  remove->excludes(watch);
  sub->add_option("--count", args->count_text, "With --watch: stop after this many hits");
  sub->add_option("--for", args->for_text, "With --watch: stop after this long");
  sub->callback([&ctl, args] {
    args->gva = size_argument("--gva", args->gva_text);
    args->vcpu = static_cast<std::uint16_t>(vcpu_argument("--vcpu", args->vcpu_text, false));
    if (!args->watch && (!args->count_text.empty() || !args->for_text.empty())) {
      throw UsageError(args->count_text.empty() ? "--for" : "--count", "needs --watch",
                       "add --watch, or drop it to plant the breakpoint and return");
    }
    parse_loop_limits(args->count_text, args->for_text, args->limits);
    ctl.run = [args, &ctl](client::Session& s, const Output& o) {
      return run_break(*args, ctl.options, s, o);
    };
  });
}

}  // namespace glassbox::ctl
