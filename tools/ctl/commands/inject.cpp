// `glassbox-ctl inject --vcpu N VECTOR [--error-code E] [--address A] [--user]`: inject an
// exception into a vCPU and report what the guest was delivered.
//
// KVMI injects only into a vCPU that waits in an event, so the vCPU is paused first; the TRAP
// event is enabled before that, and arrives once the exception has been delivered on the next
// guest entry.
#include <fmt/format.h>

#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>

#include "ctl.h"
#include "glassbox/kvmi/events.h"
#include "parse.h"

namespace glassbox::ctl {

namespace {

constexpr std::array<std::pair<std::string_view, std::uint8_t>, 20> kVectors = {{
    {"DE", 0},  {"DB", 1},  {"NMI", 2}, {"BP", 3},  {"OF", 4},  {"BR", 5},  {"UD", 6},
    {"NM", 7},  {"DF", 8},  {"TS", 10}, {"NP", 11}, {"SS", 12}, {"GP", 13}, {"PF", 14},
    {"MF", 16}, {"AC", 17}, {"MC", 18}, {"XM", 19}, {"VE", 20}, {"CP", 21},
}};

std::string vector_name(std::uint32_t vector) {
  for (const auto& [name, value] : kVectors) {
    if (value == vector) return fmt::format("#{}", name);
  }
  return fmt::format("vector {}", vector);
}

std::uint8_t vector_argument(const std::string& text) {
  std::string upper;
  for (char c : text) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper.starts_with("#")) upper.erase(0, 1);
  for (const auto& [name, value] : kVectors) {
    if (upper == name) return value;
  }
  auto value = parse_size(text);
  if (!value || *value > 31) {
    throw UsageError("VECTOR",
                     value ? "'" + text + "' is not an exception vector (0-31)" : value.error(),
                     "give 0-31 or a name such as PF, GP, UD, BP");
  }
  return static_cast<std::uint8_t>(*value);
}

struct InjectArgs {
  std::string vcpu_text;
  std::string vector_text;
  std::string error_code_text = "0";
  std::string address_text = "0";
  bool user = false;
  std::uint16_t vcpu = 0;
  std::uint8_t vector = 0;
  std::uint32_t error_code = 0;
  std::uint64_t address = 0;
};

using Clock = std::chrono::steady_clock;

// The next event of `id` from `vcpu`; anything else is answered CONTINUE.
client::Result<client::ReceivedEvent> next_event(client::Session& session, kvmi::EventId id,
                                                 std::uint16_t vcpu, Clock::time_point deadline) {
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return client::make_error(
          client::ErrorKind::Timeout,
          fmt::format("no event {} from vCPU {} in time", static_cast<int>(id), vcpu));
    }
    auto event = session.wait_event(left);
    if (!event) return event;
    if (event->event_id() == static_cast<std::uint8_t>(id) && event->vcpu() == vcpu) return event;
    auto replied = session.reply_event(*event, kvmi::EventAction::Continue);
    if (!replied) return std::unexpected(replied.error());
  }
}

int run_inject(const InjectArgs& args, client::Session& session, const Output& out) {
  auto count = checked_vcpu_count(session, out, "--vcpu", args.vcpu);
  if (!count) return count.error();
  auto enabled = session.control_vcpu_events(args.vcpu, kvmi::EventId::Trap, true);
  if (!enabled) return out.vmm_error(enabled.error(), "enable the TRAP event");
  const auto timeout = session.options().reply_timeout;
  const auto deadline = Clock::now() + timeout;

  // Pause the vCPU (with --user, again and again until it is caught at CPL3).
  std::optional<client::ReceivedEvent> paused;
  while (!paused) {
    auto sent = session.pause_vcpu(args.vcpu, true);
    if (!sent) return out.vmm_error(sent.error(), fmt::format("pause vCPU {}", args.vcpu));
    auto event = next_event(session, kvmi::EventId::PauseVcpu, args.vcpu, deadline);
    if (!event) return out.vmm_error(event.error(), fmt::format("pause vCPU {}", args.vcpu));
    if (!args.user || (event->common().arch.sregs.cs.selector & 3) == 3) {
      paused = std::move(*event);
      break;
    }
    auto replied = session.reply_event(*event, kvmi::EventAction::Continue);
    if (!replied) return out.vmm_error(replied.error(), "resume");
    if (Clock::now() >= deadline) {
      client::Error error{
          client::ErrorKind::Timeout, 0,
          fmt::format("vCPU {} was not caught at CPL3 within the timeout", args.vcpu)};
      return out.vmm_error(error, "inject --user");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const auto& arch = paused->common().arch;
  const std::uint64_t rip = arch.regs.rip;
  const unsigned cpl = arch.sregs.cs.selector & 3;

  auto injected = session.inject_exception(args.vcpu, args.vector, args.error_code, args.address);
  // The vCPU is released whether or not the injection was accepted.
  auto resumed = session.reply_event(*paused, kvmi::EventAction::Continue);
  if (!injected) return out.vmm_error(injected.error(), "inject");
  if (!resumed) return out.vmm_error(resumed.error(), "resume");

  auto trap = next_event(session, kvmi::EventId::Trap, args.vcpu, Clock::now() + timeout);
  if (!trap) return out.vmm_error(trap.error(), "wait for the TRAP event");
  const auto delivered = trap->specific_as<kvmi::EventTrap>();
  auto replied = session.reply_event(*trap, kvmi::EventAction::Continue);
  if (!replied) return out.vmm_error(replied.error(), "answer the TRAP event");
  (void)session.control_vcpu_events(args.vcpu, kvmi::EventId::Trap, false);

  if (out.json()) {
    out.print_json({{"vcpu", args.vcpu},
                    {"injected",
                     {{"vector", args.vector},
                      {"error_code", args.error_code},
                      {"address", fmt::format("{:#x}", args.address)}}},
                    {"at", {{"rip", fmt::format("{:#x}", rip)}, {"cpl", cpl}}},
                    {"delivered",
                     {{"vector", delivered.vector},
                      {"name", vector_name(delivered.vector)},
                      {"error_code", delivered.error_code},
                      {"cr2", fmt::format("{:#x}", delivered.cr2)}}}});
  } else {
    std::printf("%s\n", fmt::format("vcpu {}: injected {} at rip {:#x} (cpl {})", args.vcpu,
                                    vector_name(args.vector), rip, cpl)
                            .c_str());
    std::printf("%s\n",
                fmt::format("vcpu {}: TRAP delivered {} (vector {}) error code {:#x} cr2 {:#x}",
                            trap->vcpu(), vector_name(delivered.vector), delivered.vector,
                            delivered.error_code, delivered.cr2)
                    .c_str());
  }
  return kExitOk;
}

}  // namespace

void add_inject_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<InjectArgs>();
  auto* sub = app.add_subcommand(
      "inject", "Inject an exception into a vCPU and report the TRAP event of its delivery");
  sub->add_option("--vcpu", args->vcpu_text, "vCPU index")->required();
  sub->add_option("VECTOR", args->vector_text, "Exception vector 0-31 or a name (PF, GP, UD...)")
      ->required();
  sub->add_option("--error-code", args->error_code_text, "Error code pushed with the exception")
      ->capture_default_str();
  sub->add_option("--address", args->address_text, "Faulting address (CR2) for #PF")
      ->capture_default_str();
  sub->add_flag("--user", args->user,
                "Inject only while the vCPU runs at CPL3 (re-pause until it is caught there)");
  sub->callback([&ctl, args] {
    args->vcpu = static_cast<std::uint16_t>(vcpu_argument("--vcpu", args->vcpu_text, false));
    args->vector = vector_argument(args->vector_text);
    const auto error_code = size_argument("--error-code", args->error_code_text);
    if (error_code > 0xffffffffu) {
      throw UsageError("--error-code", "does not fit in 32 bits", "give a 32-bit error code");
    }
    args->error_code = static_cast<std::uint32_t>(error_code);
    args->address = size_argument("--address", args->address_text);
    ctl.run = [args](client::Session& s, const Output& o) { return run_inject(*args, s, o); };
  });
}

}  // namespace glassbox::ctl
