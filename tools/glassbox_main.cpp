// glassbox: runs one VM with introspection built in.
//
//   glassbox run --kernel FILE [--cmdline S] [--cpus N] [--memory SIZE]
//   glassbox host-info [--json]
//
// The serial console goes to stdout, the VMM's log to stderr. The exit status is the guest's
// power-off code (see vmm/stop_reason.h for the others); 2 means bad arguments.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

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
  std::string cmdline;
  int cpus = 1;
  std::string memory = "128M";
};

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
    return usage_error(fmt::format("--kernel {}: no such file (give the path of an ELF64 kernel)",
                                   options.kernel));
  }
  if (!fs::is_regular_file(options.kernel, ec)) {
    return usage_error(fmt::format("--kernel {}: not a regular file", options.kernel));
  }
  auto memory = glassbox::vmm::parse_size(options.memory);
  if (!memory) {
    return usage_error(fmt::format("--memory {}: not a size (examples: 128M, 1G, 67108864)",
                                   options.memory));
  }

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

  glassbox::vmm::MachineConfig config{.kernel = options.kernel,
                                      .cmdline = options.cmdline,
                                      .cpus = options.cpus,
                                      .memory_bytes = *memory};
  auto machine = glassbox::vmm::Machine::create(config, *system, *quirks);
  if (!machine) return usage_error(machine.error());

  glassbox::UniqueFd sigfd(signalfd(-1, &signals, SFD_CLOEXEC));
  (*machine)->start();
  while (!(*machine)->stop_requested()) {
    pollfd fds[2] = {{(*machine)->stop_fd(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info{};
      if (read(sigfd.get(), &info, sizeof info) == sizeof info) {
        const int sig = static_cast<int>(info.ssi_signo);
        if (sig == SIGINT || sig == SIGTERM) {
          (*machine)->request_stop({glassbox::vmm::StopKind::kSignal, 128 + sig,
                                    fmt::format("stopped by {}", sig == SIGINT ? "SIGINT" : "SIGTERM")});
        } else {
          spdlog::info("SIGUSR1: no introspection tool is attached; nothing to unhook");
        }
      }
    }
  }
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
  run_cmd->add_option("--kernel", run.kernel, "64-bit ELF kernel to boot")->required();
  run_cmd->add_option("--cmdline", run.cmdline, "kernel command line");
  run_cmd->add_option("--cpus", run.cpus, "number of vCPUs");
  run_cmd->add_option("--memory", run.memory, "guest RAM, e.g. 128M or 1G (default 128M)");

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
