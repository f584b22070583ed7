// `glassbox-ctl translate GVA [--vcpu N]`: the guest-physical address a virtual address maps to
// through the vCPU's current page tables (its CR3 at the moment the VMM walks them).
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "ctl.h"

namespace glassbox::ctl {

namespace {

struct TranslateArgs {
  std::string gva_text;
  std::string vcpu_text = "0";
  std::uint64_t gva = 0;
  std::uint16_t vcpu = 0;
};

int run_translate(const TranslateArgs& args, client::Session& session, const Output& out) {
  auto count = checked_vcpu_count(session, out, "--vcpu", args.vcpu);
  if (!count) return count.error();
  auto gpa = session.translate_gva(args.vcpu, args.gva);
  if (!gpa) return out.vmm_error(gpa.error(), fmt::format("translate {:#x}", args.gva));
  const bool mapped = *gpa != ~std::uint64_t{0};
  if (out.json()) {
    out.print_json(
        {{"gva", fmt::format("{:#x}", args.gva)},
         {"vcpu", args.vcpu},
         {"mapped", mapped},
         {"gpa", mapped ? nlohmann::json(fmt::format("{:#x}", *gpa)) : nlohmann::json(nullptr)}});
  } else if (mapped) {
    std::printf("%s\n", fmt::format("{:#x} -> {:#x}", args.gva, *gpa).c_str());
  } else {
    std::printf("%s\n", fmt::format("{:#x}: not mapped on vCPU {}", args.gva, args.vcpu).c_str());
  }
  return mapped ? kExitOk : kExitVmm;
}

}  // namespace

void add_translate_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<TranslateArgs>();
  auto* sub = app.add_subcommand(
      "translate", "Translate a guest-virtual address with a vCPU's current page tables");
  sub->add_option("GVA", args->gva_text, "Guest-virtual address (e.g. 0x40000000)")->required();
  sub->add_option("--vcpu", args->vcpu_text, "vCPU whose CR3 is used")->capture_default_str();
  sub->callback([&ctl, args] {
    args->gva = size_argument("GVA", args->gva_text);
    args->vcpu = static_cast<std::uint16_t>(vcpu_argument("--vcpu", args->vcpu_text, false));
    ctl.run = [args](client::Session& s, const Output& o) { return run_translate(*args, s, o); };
  });
}

}  // namespace glassbox::ctl
