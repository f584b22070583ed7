// `glassbox-ctl dump GPA LEN --out FILE`: a guest-physical range to a file, pipelined.
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "ctl.h"
#include "format.h"
#include "memory_ops.h"
#include "progress.h"

namespace glassbox::ctl {

namespace {

struct DumpArgs {
  std::string gpa_text;
  std::string length_text;
  std::string out;
  std::size_t window = kDefaultReadWindow;
  bool no_progress = false;
  std::uint64_t gpa = 0;
  std::uint64_t length = 0;
};

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

int run_dump(const DumpArgs& args, client::Session& session, const Output& out) {
  // Written under a temporary name and renamed at the end: a failed dump never leaves a file
  // that looks complete.
  const std::string partial = args.out + ".partial";
  File file(std::fopen(partial.c_str(), "wb"));
  if (!file) {
    client::Error error{client::ErrorKind::Io, errno,
                        fmt::format("cannot create '{}': {}", partial, std::strerror(errno))};
    return out.vmm_error(error, "dump");
  }
  ProgressBar progress(args.length, !args.no_progress && isatty(STDERR_FILENO) == 1);
  std::uint64_t done = 0;
  const auto start = std::chrono::steady_clock::now();
  auto result =
      read_range(session, args.gpa, args.length, args.window,
                 [&](std::uint64_t, std::span<const std::byte> chunk) -> client::Result<void> {
                   if (std::fwrite(chunk.data(), 1, chunk.size(), file.get()) != chunk.size()) {
                     return client::make_error(
                         client::ErrorKind::Io,
                         fmt::format("writing '{}': {}", partial, std::strerror(errno)), errno);
                   }
                   done += chunk.size();
                   progress.update(done);
                   return {};
                 });
  if (result && std::fflush(file.get()) != 0) {
    result =
        client::make_error(client::ErrorKind::Io,
                           fmt::format("writing '{}': {}", partial, std::strerror(errno)), errno);
  }
  file.reset();
  std::error_code ec;
  if (!result) {
    std::filesystem::remove(partial, ec);
    return out.vmm_error(result.error(), fmt::format("dump (after {} bytes)", done));
  }
  std::filesystem::rename(partial, args.out, ec);
  if (ec) {
    client::Error error{client::ErrorKind::Io, ec.value(),
                        fmt::format("renaming '{}' to '{}': {}", partial, args.out, ec.message())};
    return out.vmm_error(error, "dump");
  }
  progress.finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (out.json()) {
    out.print_json({{"gpa", fmt::format("{:#x}", args.gpa)},
                    {"size", args.length},
                    {"out", args.out},
                    {"seconds", seconds},
                    {"bytes_per_second", seconds > 0 ? static_cast<double>(done) / seconds : 0.0}});
  } else {
    std::fprintf(stderr, "dumped %s from %#llx to %s in %.3f s (%s)\n", format_bytes(done).c_str(),
                 static_cast<unsigned long long>(args.gpa), args.out.c_str(), seconds,
                 format_rate(done, seconds).c_str());
  }
  return kExitOk;
}

}  // namespace

void add_dump_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<DumpArgs>();
  auto* sub = app.add_subcommand(
      "dump", "Copy a guest-physical range to a file (pipelined reads, progress on a terminal)");
  sub->add_option("GPA", args->gpa_text, "Guest-physical start address (e.g. 0)")->required();
  sub->add_option("LEN", args->length_text, "Bytes to copy, suffixes K/M/G allowed (e.g. 128M)")
      ->required();
  sub->add_option("--out,-o", args->out, "Output file")->required();
  sub->add_option("--window", args->window, "READ_PHYSICAL requests kept in flight")
      ->capture_default_str();
  sub->add_flag("--no-progress", args->no_progress, "Never draw the progress bar");
  sub->callback([&ctl, args] {
    args->gpa = size_argument("GPA", args->gpa_text);
    args->length = size_argument("LEN", args->length_text);
    if (args->length == 0) throw UsageError("LEN", "is zero", "dump at least one byte");
    if (args->window == 0 || args->window > 4096) {
      throw UsageError("--window", fmt::format("{} is out of range", args->window),
                       "use 1..4096 requests in flight");
    }
    if (args->out.empty()) throw UsageError("--out", "is empty", "name the output file");
    ctl.run = [args](client::Session& s, const Output& o) { return run_dump(*args, s, o); };
  });
}

}  // namespace glassbox::ctl
