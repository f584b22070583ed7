// `glassbox-ctl info`: who the VM is (from the handshake) and what the VMM offers.
#include <fmt/format.h>

#include <cstdio>

#include "ctl.h"
#include "format.h"
#include "glassbox/kvmi/errors.h"

namespace glassbox::ctl {

namespace {

int run_info(client::Session& session, const Output& out) {
  // GET_VERSION cannot be disallowed, so its failure means the session itself is broken.
  auto version = session.get_version();
  if (!version) return out.vmm_error(version.error());
  // The VMM may disallow the others; info still shows what it can and says why the rest is absent.
  auto vcpus = session.get_vcpu_count();
  auto max_gfn = session.get_max_gfn();
  const auto& vm = session.vm();

  if (out.json()) {
    nlohmann::json j;
    j["version"] = version->version;
    j["features"] = {{"singlestep", version->singlestep}};
    j["vcpu_count"] = vcpus ? nlohmann::json(*vcpus) : nlohmann::json(nullptr);
    j["max_gfn"] = max_gfn ? nlohmann::json(*max_gfn) : nlohmann::json(nullptr);
    if (!vcpus) j["vcpu_count_error"] = vcpus.error().message;
    if (!max_gfn) j["max_gfn_error"] = max_gfn.error().message;
    j["vm"] = {{"name", vm.name},
               {"uuid", format_uuid(vm.uuid)},
               {"start_time_ms", vm.start_time_ms},
               {"start_time", format_epoch_ms(vm.start_time_ms)}};
    out.print_json(j);
    return kExitOk;
  }
  auto or_reason = [](const auto& result, auto show) -> std::string {
    return result ? show(*result) : "unavailable (" + result.error().message + ")";
  };
  std::string text;
  text += fmt::format("VM name:      {}\n", vm.name);
  text += fmt::format("VM uuid:      {}\n", format_uuid(vm.uuid));
  text += fmt::format("VM started:   {}\n", format_epoch_ms(vm.start_time_ms));
  text += fmt::format("KVMI version: {}\n", version->version);
  text += fmt::format("features:     singlestep={}\n", version->singlestep ? "yes" : "no");
  text += fmt::format("vCPUs:        {}\n",
                      or_reason(vcpus, [](std::uint32_t n) { return std::to_string(n); }));
  text += fmt::format("max gfn:      {}\n", or_reason(max_gfn, [](std::uint64_t g) {
                        return fmt::format("{:#x} ({} of guest-physical space)", g,
                                           format_bytes(g * 4096));
                      }));
  std::fputs(text.c_str(), stdout);
  return kExitOk;
}

}  // namespace

void add_info_command(CLI::App& app, Ctl& ctl) {
  auto* sub = app.add_subcommand(
      "info", "Show the VM's identity, the KVMI version and features, vCPU count and max gfn");
  sub->callback([&ctl] { ctl.run = run_info; });
}

}  // namespace glassbox::ctl
