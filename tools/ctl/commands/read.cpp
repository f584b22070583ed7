// `glassbox-ctl read GPA [LEN]`: guest-physical bytes as a hex dump or a JSON hex string.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "ctl.h"
#include "format.h"
#include "memory_ops.h"

namespace glassbox::ctl {

namespace {

// read holds everything in memory to print it; larger ranges belong to `dump`.
constexpr std::uint64_t kMaxReadLength = 16 << 20;

struct ReadArgs {
  std::string gpa_text;
  std::string length_text = "256";
  std::uint64_t gpa = 0;
  std::uint64_t length = 0;
};

int run_read(const ReadArgs& args, client::Session& session, const Output& out) {
  std::vector<std::byte> bytes;
  bytes.reserve(args.length);
  auto done =
      read_range(session, args.gpa, args.length, kDefaultReadWindow,
                 [&](std::uint64_t, std::span<const std::byte> chunk) -> client::Result<void> {
                   bytes.insert(bytes.end(), chunk.begin(), chunk.end());
                   return {};
                 });
  if (!done) return out.vmm_error(done.error(), "read");
  if (out.json()) {
    out.print_json(
        {{"gpa", fmt::format("{:#x}", args.gpa)}, {"size", args.length}, {"hex", to_hex(bytes)}});
  } else {
    std::fputs(hex_dump(args.gpa, bytes).c_str(), stdout);
  }
  return kExitOk;
}

}  // namespace

void add_read_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<ReadArgs>();
  auto* sub = app.add_subcommand("read", "Read guest-physical memory (hex dump, or hex in JSON)");
  sub->add_option("GPA", args->gpa_text, "Guest-physical address (e.g. 0x7000)")->required();
  sub->add_option("LEN", args->length_text, "Bytes to read, suffixes K/M allowed")
      ->capture_default_str();
  sub->callback([&ctl, args] {
    args->gpa = size_argument("GPA", args->gpa_text);
    args->length = size_argument("LEN", args->length_text);
    if (args->length == 0) throw UsageError("LEN", "is zero", "read at least one byte");
    if (args->length > kMaxReadLength) {
      throw UsageError("LEN", fmt::format("{} bytes is more than read prints", args->length),
                       "use `dump GPA LEN --out FILE` for ranges above 16M");
    }
    ctl.run = [args](client::Session& s, const Output& o) { return run_read(*args, s, o); };
  });
}

}  // namespace glassbox::ctl
