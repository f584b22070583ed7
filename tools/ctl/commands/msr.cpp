// `glassbox-ctl msr --vcpu N|all --msr MSR --enable|--disable`: KVMI_VCPU_CONTROL_MSR, the
// selection of MSRs whose guest writes raise KVMI_EVENT_MSR.
//
// The selection belongs to the session and the VMM drops it when the tool leaves, so on its own
// this command checks that the VMM accepts it (range, permissions, a working MSR filter) and
// leaves nothing behind; to see the writes, keep a session: `watch --events msr --msr MSR`.
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "ctl.h"
#include "event_loop.h"
#include "parse.h"

namespace glassbox::ctl {

namespace {

struct MsrArgs {
  std::string vcpu_text;
  std::string msr_text;
  bool enable = false;
  bool disable = false;
  std::uint32_t vcpu = 0;
  std::uint32_t msr = 0;
};

int run_msr(const MsrArgs& args, client::Session& session, const Output& out) {
  auto count = checked_vcpu_count(session, out, "--vcpu", args.vcpu);
  if (!count) return count.error();
  const auto vcpus = vcpu_list(args.vcpu, *count);
  for (auto v : vcpus) {
    if (auto r = session.control_msr(v, args.msr, args.enable); !r) {
      return out.vmm_error(
          r.error(),
          fmt::format("cannot {} {} on vCPU {}{}", args.enable ? "track" : "stop tracking",
                      format_msr(args.msr), v, refusal_hint(r.error())));
    }
  }
  if (out.json()) {
    out.print_json(
        {{"msr", fmt::format("{:#x}", args.msr)}, {"vcpus", vcpus}, {"tracked", args.enable}});
  } else {
    std::printf("%s\n",
                fmt::format("{}: writes {} on vCPU {}", format_msr(args.msr),
                            args.enable ? "tracked" : "no longer tracked",
                            args.vcpu == kAllVcpus ? std::string("0-") + std::to_string(*count - 1)
                                                   : std::to_string(args.vcpu))
                    .c_str());
    if (args.enable) {
      std::printf(
          "(for this session only; `watch --events msr --msr %s` keeps it and shows the "
          "writes)\n",
          fmt::format("{:#x}", args.msr).c_str());
    }
  }
  return kExitOk;
}

}  // namespace

void add_msr_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<MsrArgs>();
  auto* sub =
      app.add_subcommand("msr", "Turn write tracking of an MSR on or off (KVMI_VCPU_CONTROL_MSR)");
  sub->add_option("--vcpu", args->vcpu_text, "vCPU index or 'all'")->required();
  sub->add_option("--msr", args->msr_text, "MSR index (0xc0000082) or name (lstar)")->required();
  auto* enable = sub->add_flag("--enable", args->enable, "Track writes");
  auto* disable = sub->add_flag("--disable", args->disable, "Stop tracking writes");
  enable->excludes(disable);
  sub->callback([&ctl, args] {
    args->vcpu = vcpu_argument("--vcpu", args->vcpu_text, true);
    args->msr = msr_argument("--msr", args->msr_text);
    if (args->enable == args->disable) {
      throw UsageError("--enable/--disable", "neither was given", "pass one of them");
    }
    ctl.run = [args](client::Session& s, const Output& o) { return run_msr(*args, s, o); };
  });
}

}  // namespace glassbox::ctl
