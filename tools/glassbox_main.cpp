// glassbox: runs one VM with introspection built in.
//
//   glassbox run --kernel FILE [--initrd FILE] [--cmdline S] [--cpus N] [--memory SIZE]
//                [--name NAME] [--console-input stdin|none]
//                [--introspect unix:PATH|listen:unix:PATH] [--secret FILE]
//                [--allow-commands all|LIST] [--allow-events all|LIST]
//                [--kvmi-dialect rfc-v7|libkvmi]
//   glassbox host-info [--json]
//
// The serial console goes to stdout, the VMM's log to stderr. The exit status is the guest's
// power-off code (see vmm/stop_reason.h for the others); 2 means bad arguments.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <expected>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "glassbox/kvmi/dialect.h"
#include "introspection/endpoint.h"
#include "introspection/handshake.h"
#include "introspection/machine_target.h"
#include "introspection/permissions.h"
#include "introspection/server.h"
#include "kvm/host_probe.h"
#include "kvm/system.h"
#include "vmm/machine.h"

namespace {

constexpr int kUsageError = 2;

int usage_error(const std::string& message) {
  std::cerr << "glassbox: " << message << "\n";
  return kUsageError;
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("glassbox");
  logger->set_pattern("[glassbox %H:%M:%S.%e] [%^%l%$] %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

struct RunOptions {
  std::string kernel;
  std::string initrd;
  std::string console_input = "stdin";
  std::string cmdline;
  int cpus = 1;
  std::string memory = "128M";
  std::string name = "glassbox";
  std::string introspect;  // empty: no introspection
  std::string secret;
  std::string allow_commands = "all";
  std::string allow_events = "all";
  std::string kvmi_dialect = "rfc-v7";
  bool start_paused = false;
};

// The introspection settings checked before anything is built, so a typo is a usage error.
struct IntrospectionSetup {
  glassbox::introspection::Endpoint endpoint;
  glassbox::introspection::Permissions permissions;
  std::optional<glassbox::introspection::CookieHash> secret;
  glassbox::kvmi::Dialect dialect = glassbox::kvmi::Dialect::RfcV7;
  bool start_paused = false;
};

std::expected<std::optional<IntrospectionSetup>, std::string> check_introspection(
    const RunOptions& options) {
  if (options.introspect.empty()) {
    if (!options.secret.empty() || options.allow_commands != "all" ||
        options.allow_events != "all" || options.kvmi_dialect != "rfc-v7" || options.start_paused) {
      return std::unexpected(
          std::string("--secret, --allow-commands, --allow-events, --kvmi-dialect and "
                      "--start-paused need --introspect"));
    }
    return std::nullopt;
  }
  auto endpoint = glassbox::introspection::parse_endpoint(options.introspect);
  if (!endpoint) return std::unexpected(endpoint.error());
  auto permissions =
      glassbox::introspection::Permissions::parse(options.allow_commands, options.allow_events);
  if (!permissions) return std::unexpected(permissions.error());
  IntrospectionSetup setup{*endpoint, *permissions, std::nullopt};
  setup.start_paused = options.start_paused;
  if (setup.start_paused &&
      !permissions->allows_event(static_cast<std::uint16_t>(glassbox::kvmi::EventId::PauseVcpu))) {
    return std::unexpected(std::string(
        "--start-paused hands each held vCPU to the tool with a KVMI_EVENT_PAUSE_VCPU: add "
        "pause_vcpu to --allow-events"));
  }
  auto dialect = glassbox::kvmi::parse_dialect(options.kvmi_dialect);
  if (!dialect) {
    return std::unexpected(
        fmt::format("--kvmi-dialect {}: must be rfc-v7 or libkvmi", options.kvmi_dialect));
  }
  setup.dialect = *dialect;
  if (!options.secret.empty()) {
    auto hash = glassbox::introspection::cookie_hash_of_file(options.secret);
    if (!hash) return std::unexpected(hash.error());
    setup.secret = *hash;
  }
  return setup;
}

// Blocks the signals the main loop consumes through a signalfd; every thread inherits the mask.
sigset_t control_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  return set;
}

int run_vm(const RunOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(options.kernel, ec)) {
    return usage_error(fmt::format(
        "--kernel {}: no such file (give the path of an ELF64 kernel or a Linux bzImage)",
        options.kernel));
  }
  if (!fs::is_regular_file(options.kernel, ec)) {
    return usage_error(fmt::format("--kernel {}: not a regular file", options.kernel));
  }
  if (!options.initrd.empty() && !fs::is_regular_file(options.initrd, ec)) {
    return usage_error(
        fmt::format("--initrd {}: no such file (give an initramfs, e.g. a cpio "
                    "archive)",
                    options.initrd));
  }
  auto memory = glassbox::vmm::parse_size(options.memory);
  if (!memory) {
    return usage_error(
        fmt::format("--memory {}: not a size (examples: 128M, 1G, 67108864)", options.memory));
  }

  auto introspection = check_introspection(options);
  if (!introspection) return usage_error(introspection.error());

  auto system = glassbox::kvm::System::open();
  if (!system) {
    spdlog::error("{} (is KVM available and are you allowed to use /dev/kvm?)",
                  system.error().message());
    return 1;
  }
  auto quirks = glassbox::kvm::probe_host(*system);
  if (!quirks) {
    spdlog::error("probing the host failed: {}", quirks.error().message());
    return 1;
  }
  spdlog::debug("host:\n{}", quirks->describe());

  sigset_t signals = control_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a closed console must not kill the VMM

  std::optional<fs::path> initrd;
  if (!options.initrd.empty()) initrd = options.initrd;
  glassbox::vmm::MachineConfig config{.kernel = options.kernel,
                                      .initrd = initrd,
                                      .cmdline = options.cmdline,
                                      .cpus = options.cpus,
                                      .memory_bytes = *memory,
                                      .name = options.name};
  // The UART's receiver reads stdin (a terminal stays in its line mode: the guest gets a line
  // when Enter is pressed, and Ctrl-C still stops glassbox).
  if (options.console_input == "stdin") config.console_input_fd = STDIN_FILENO;
  auto machine = glassbox::vmm::Machine::create(config, *system, *quirks);
  if (!machine) return usage_error(machine.error());

  // Declared after the machine: the server (and its threads reading guest memory) goes first.
  std::unique_ptr<glassbox::introspection::VmTarget> target;
  std::unique_ptr<glassbox::introspection::IntrospectionServer> server;
  if (*introspection) {
    target = glassbox::introspection::make_machine_target(**machine);
    glassbox::introspection::ServerConfig server_config;
    server_config.endpoint = (*introspection)->endpoint;
    server_config.permissions = (*introspection)->permissions;
    server_config.secret = (*introspection)->secret;
    server_config.dialect = (*introspection)->dialect;
    server_config.start_paused = (*introspection)->start_paused;
    server_config.identity.uuid = glassbox::introspection::random_uuid();
    server_config.identity.start_time_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::system_clock::now().time_since_epoch())
                                               .count();
    server_config.identity.name = options.name;
    auto created = glassbox::introspection::IntrospectionServer::create(server_config, *target);
    if (!created) {
      spdlog::error("{}", created.error());
      return 1;
    }
    server = std::move(*created);
    (*machine)->set_entry_gate(server.get());
    (*machine)->set_intercepts(server->intercepts());
  }

  glassbox::UniqueFd sigfd(signalfd(-1, &signals, SFD_CLOEXEC));
  (*machine)->start();
  spdlog::info("{} vCPUs running, {} MiB, kernel {}", options.cpus, *memory >> 20, options.kernel);
  if (server) server->start();
  while (!(*machine)->stop_requested()) {
    pollfd fds[2] = {{(*machine)->stop_fd(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info{};
      if (read(sigfd.get(), &info, sizeof info) == sizeof info) {
        const int sig = static_cast<int>(info.ssi_signo);
        if (sig == SIGINT || sig == SIGTERM) {
          // The tool gets its UNHOOK and a bounded time to clean up while the guest still runs
          // (spec §5.4), then the VM stops.
          if (server) server->stop();
          (*machine)->request_stop(
              {glassbox::vmm::StopKind::kSignal, 128 + sig,
               fmt::format("stopped by {}", sig == SIGINT ? "SIGINT" : "SIGTERM")});
        } else if (server) {
          spdlog::info("SIGUSR1: unhooking the introspection tool");
          server->request_unhook();
        } else {
          spdlog::info("SIGUSR1: introspection is off; nothing to unhook");
        }
      }
    }
  }
  if (server) server->stop();
  auto stop = (*machine)->wait_for_stop();
  spdlog::info("{}; exit status {}", stop.detail, stop.status);
  return stop.status;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"glassbox: a KVM virtual machine monitor with VM introspection (KVMI) built in"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));

  RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "boot a guest kernel");
  run_cmd
      ->add_option("--kernel", run.kernel,
                   "kernel to boot: a 64-bit ELF (the bundled guest) or a Linux bzImage")
      ->required();
  run_cmd->add_option("--initrd", run.initrd, "initramfs for a Linux kernel");
  run_cmd
      ->add_option("--console-input", run.console_input,
                   "where the serial console's input comes from: stdin (default) or none")
      ->check(CLI::IsMember({"stdin", "none"}));
  run_cmd->add_option("--cmdline", run.cmdline, "kernel command line");
  run_cmd->add_option("--cpus", run.cpus, "number of vCPUs");
  run_cmd->add_option("--memory", run.memory, "guest RAM, e.g. 128M or 1G (default 128M)");
  run_cmd->add_option("--name", run.name, "VM name sent to the introspection tool (max 63 bytes)");
  run_cmd->add_option("--introspect", run.introspect,
                      "KVMI endpoint: unix:PATH (connect to a listening tool, retrying) or "
                      "listen:unix:PATH (wait for a tool; socket mode 0600)");
  run_cmd->add_option("--secret", run.secret,
                      "file whose SHA-1 the tool must present in the handshake");
  run_cmd->add_option("--allow-commands", run.allow_commands,
                      "'all' (default), 'none', or a comma list of KVMI command names or ids; "
                      "GET_VERSION, VM_CHECK_COMMAND and VM_CHECK_EVENT are always allowed");
  run_cmd->add_option("--allow-events", run.allow_events,
                      "'all' (default), 'none', or a comma list of KVMI event names or ids");
  run_cmd->add_option("--kvmi-dialect", run.kvmi_dialect,
                      "KVMI numbering the tool speaks: rfc-v7 (default) or libkvmi (Bitdefender "
                      "libkvmi and the tools built on it: LibVMI, HVMI)");
  run_cmd->add_flag("--start-paused", run.start_paused,
                    "hold every vCPU before its first instruction until a tool attaches; each "
                    "vCPU then sends the tool one KVMI_EVENT_PAUSE_VCPU and the guest starts "
                    "when the tool answers it (or leaves)");

  bool json = false;
  auto* info_cmd = app.add_subcommand("host-info", "show what this host's KVM can do");
  info_cmd->add_flag("--json", json, "print JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    return usage_error(what + " (see glassbox --help)");
  }
  setup_logging(log_level);

  if (*run_cmd) return run_vm(run);
  if (*info_cmd) {
    auto system = glassbox::kvm::System::open();
    if (!system) return spdlog::error("{}", system.error().message()), 1;
    auto quirks = glassbox::kvm::probe_host(*system);
    if (!quirks) return spdlog::error("{}", quirks.error().message()), 1;
    std::cout << (json ? quirks->to_json() + "\n" : quirks->describe());
    return 0;
  }
  return 0;
}
