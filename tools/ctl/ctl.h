// What every glassbox-ctl subcommand shares: the global options, the way it reports errors and
// results, and how it registers itself.
//
// A subcommand parses and validates its own arguments in its CLI11 callback, before any
// connection is made (so a typo exits 2 without touching a VM), and leaves a `Run` behind that
// main() calls with a connected session.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <expected>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "glassbox/client/error.h"
#include "glassbox/client/session.h"

namespace glassbox::ctl {

// Exit statuses: scripts tell "you called me wrong" from "the VM said no".
inline constexpr int kExitOk = 0;
inline constexpr int kExitVmm = 1;    // connection, handshake or a -KVM_E* answer
inline constexpr int kExitUsage = 2;  // bad command line; nothing was sent

// A command-line mistake. `argument` is what the user typed it into (e.g. "GPA", "--out"), `fix`
// says what would be accepted.
class UsageError : public std::runtime_error {
 public:
  UsageError(std::string argument, const std::string& problem, const std::string& fix)
      : std::runtime_error(argument + ": " + problem + "; " + fix),
        argument_(std::move(argument)) {}
  const std::string& argument() const { return argument_; }

 private:
  std::string argument_;
};

struct GlobalOptions {
  std::string connect;  // "unix:PATH": the VMM listens (glassbox --introspect listen:unix:PATH)
  std::string accept;   // "unix:PATH": the tool listens (glassbox --introspect unix:PATH)
  std::string secret_file;
  bool json = false;
  double timeout_seconds = 10.0;  // handshake, accept and every reply
};

// Where results and failures go. With --json, results are one JSON document on stdout and a
// failure is also a JSON object on stdout ({"error": {...}}) so scripts never parse prose.
class Output {
 public:
  explicit Output(bool json) : json_(json) {}
  bool json() const { return json_; }
  void print_json(const nlohmann::json& value) const;
  // Prints `context: message` on stderr (and the JSON error object) and returns kExitVmm.
  int vmm_error(const client::Error& error, const std::string& context = {}) const;

 private:
  bool json_;
};

using Run = std::function<int(client::Session&, const Output&)>;
// A command that must not connect (e.g. `resume`, which talks to the process holding the VM).
using LocalRun = std::function<int(const Output&)>;

struct Ctl {
  GlobalOptions options;
  // Set by the chosen subcommand's callback (one of the two); both empty when only --help ran.
  Run run;
  LocalRun run_local;
};

// One registration function per file in commands/.
void add_info_command(CLI::App& app, Ctl& ctl);
void add_read_command(CLI::App& app, Ctl& ctl);
void add_write_command(CLI::App& app, Ctl& ctl);
void add_dump_command(CLI::App& app, Ctl& ctl);
void add_regs_command(CLI::App& app, Ctl& ctl);
void add_pause_command(CLI::App& app, Ctl& ctl);
void add_resume_command(CLI::App& app, Ctl& ctl);
void add_translate_command(CLI::App& app, Ctl& ctl);
void add_inject_command(CLI::App& app, Ctl& ctl);
void add_watch_command(CLI::App& app, Ctl& ctl);
void add_protect_command(CLI::App& app, Ctl& ctl);
void add_msr_command(CLI::App& app, Ctl& ctl);
void add_break_command(CLI::App& app, Ctl& ctl);
void add_step_command(CLI::App& app, Ctl& ctl);

// Opens the session the global options describe (connect or accept, secret, timeouts).
client::Result<std::unique_ptr<client::Session>> open_session(const GlobalOptions& options);
// Validates the global options without connecting; throws UsageError.
void check_global_options(const GlobalOptions& options);

// parse_size for a named argument; throws UsageError naming it.
std::uint64_t size_argument(const std::string& argument, const std::string& text);

// parse_msr for a named argument; throws UsageError naming it.
std::uint32_t msr_argument(const std::string& argument, const std::string& text);

// The socket path of --connect or --accept (valid after check_global_options).
std::string socket_path(const GlobalOptions& options);
// Where a running `pause` records its pid for `resume`: "<socket path>.pause-pid".
std::string pause_pid_path(const GlobalOptions& options);

// A vCPU index for a named argument; "all" gives kAllVcpus when `allow_all`. Throws UsageError.
inline constexpr std::uint32_t kAllVcpus = ~0u;
std::uint32_t vcpu_argument(const std::string& argument, const std::string& text, bool allow_all);
// The VM's vCPU count, checking that `vcpu` (unless kAllVcpus) is below it. On failure the
// error is printed and the unexpected value is the exit status (kExitUsage for a bad index).
std::expected<std::uint32_t, int> checked_vcpu_count(client::Session& session, const Output& out,
                                                     const std::string& argument,
                                                     std::uint32_t vcpu);

}  // namespace glassbox::ctl
