// `glassbox-ctl write GPA HEX|--file F`: put bytes into guest-physical memory.
#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

#include "ctl.h"
#include "memory_ops.h"
#include "parse.h"

namespace glassbox::ctl {

namespace {

// Whole files are loaded before the first write so a read error cannot leave half a write.
constexpr std::uintmax_t kMaxWriteFile = 256 << 20;

struct WriteArgs {
  std::string gpa_text;
  std::string hex;
  std::string file;
  std::uint64_t gpa = 0;
  std::vector<std::byte> data;
};

std::vector<std::byte> load_file(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  if (ec)
    throw UsageError("--file", "cannot read '" + path + "': " + ec.message(), "check the path");
  if (size == 0) throw UsageError("--file", "'" + path + "' is empty", "give a non-empty file");
  if (size > kMaxWriteFile) {
    throw UsageError("--file", fmt::format("'{}' is {} bytes", path, size),
                     "write at most 256M at once");
  }
  std::ifstream in(path, std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.eof() && in.fail())
    throw UsageError("--file", "reading '" + path + "' failed", "check it");
  std::vector<std::byte> data(raw.size());
  std::memcpy(data.data(), raw.data(), raw.size());
  return data;
}

int run_write(const WriteArgs& args, client::Session& session, const Output& out) {
  auto done = write_range(session, args.gpa, args.data);
  if (!done) return out.vmm_error(done.error(), "write");
  if (out.json()) {
    out.print_json({{"gpa", fmt::format("{:#x}", args.gpa)}, {"written", args.data.size()}});
  } else {
    std::printf("wrote %zu bytes at %#llx\n", args.data.size(),
                static_cast<unsigned long long>(args.gpa));
  }
  return kExitOk;
}

}  // namespace

void add_write_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<WriteArgs>();
  auto* sub = app.add_subcommand("write", "Write bytes (hex on the command line, or a file)");
  sub->add_option("GPA", args->gpa_text, "Guest-physical address (e.g. 0x7ff000)")->required();
  auto* hex = sub->add_option("HEX", args->hex, "Bytes as hex, e.g. deadbeef or \"de ad be ef\"");
  auto* file = sub->add_option("--file,-f", args->file, "Write this file's bytes instead");
  hex->excludes(file);
  sub->callback([&ctl, args] {
    args->gpa = size_argument("GPA", args->gpa_text);
    if (!args->file.empty()) {
      args->data = load_file(args->file);
    } else if (!args->hex.empty()) {
      auto bytes = parse_hex_bytes(args->hex);
      if (!bytes) {
        throw UsageError("HEX", bytes.error(), "give pairs of hex digits such as 474c4153");
      }
      args->data = std::move(*bytes);
    } else {
      throw UsageError("HEX", "no data given", "pass HEX bytes or --file FILE");
    }
    ctl.run = [args](client::Session& s, const Output& o) { return run_write(*args, s, o); };
  });
}

}  // namespace glassbox::ctl
