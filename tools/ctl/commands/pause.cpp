// `glassbox-ctl pause [--for DURATION]`: stop the world and hold it stopped.
//
// KVMI keeps a vCPU paused only while the tool that paused it stays connected without answering
// its PAUSE_VCPU event, so this process is the pause: it holds the connection until Enter (on a
// terminal), SIGINT/SIGTERM/SIGHUP, --for elapsing, or `glassbox-ctl resume` (which finds it by
// the pid it writes to "<socket path>.pause-pid" and sends SIGTERM), then answers the events.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "ctl.h"
#include "parse.h"
#include "signals.h"

namespace glassbox::ctl {

namespace {

struct PauseArgs {
  std::string for_text;
  std::optional<std::chrono::milliseconds> hold;  // --for
};

// "<socket>.pause-pid" holding this process's pid, written atomically; removed only if it still
// names this process (a later pause may have replaced it).
class PidFile {
 public:
  explicit PidFile(std::string path) : path_(std::move(path)) {
    const std::string temp = path_ + ".tmp" + std::to_string(getpid());
    {
      std::ofstream file(temp, std::ios::trunc);
      file << getpid() << "\n";
      if (!file) {
        std::fprintf(stderr,
                     "glassbox-ctl: warning: cannot write %s; `resume` will not find "
                     "this pause\n",
                     temp.c_str());
        return;
      }
    }
    std::error_code ec;
    std::filesystem::rename(temp, path_, ec);
    if (ec) {
      std::filesystem::remove(temp, ec);
      return;
    }
    written_ = true;
  }
  ~PidFile() { remove(); }
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

  void remove() {
    if (!written_) return;
    written_ = false;
    std::ifstream file(path_);
    long pid = 0;
    if (file >> pid && pid == getpid()) {
      std::error_code ec;
      std::filesystem::remove(path_, ec);
    }
  }

 private:
  std::string path_;
  bool written_ = false;
};

std::string format_ms(std::chrono::milliseconds ms) {
  return fmt::format("{:.1f}s", static_cast<double>(ms.count()) / 1000.0);
}

int run_pause(const PauseArgs& args, const GlobalOptions& options, client::Session& session,
              const Output& out) {
  // Installed before pausing, so a signal at any point still ends in a clean resume.
  StopSignals signals;
  auto events = session.pause_all(session.options().reply_timeout);
  if (!events) return out.vmm_error(events.error(), "cannot stop the world");
  auto paused = std::move(*events);
  std::ranges::sort(paused, {}, [](const client::ReceivedEvent& e) { return e.vcpu(); });
  const auto start = std::chrono::steady_clock::now();
  const std::string pid_path = pause_pid_path(options);
  auto pid_file = std::make_unique<PidFile>(pid_path);

  nlohmann::json vcpus = nlohmann::json::array();
  for (const auto& event : paused) {
    const auto& arch = event.common().arch;
    const unsigned cpl = arch.sregs.cs.selector & 3;
    if (out.json()) {
      vcpus.push_back({{"vcpu", event.vcpu()},
                       {"rip", fmt::format("{:#x}", arch.regs.rip)},
                       {"cpl", cpl},
                       {"cr3", fmt::format("{:#x}", arch.sregs.cr3)},
                       {"mode", arch.mode}});
    } else {
      std::printf("%s\n", fmt::format("vcpu {}: rip {:#018x} cpl {} cr3 {:#x}", event.vcpu(),
                                      arch.regs.rip, cpl, arch.sregs.cr3)
                              .c_str());
    }
  }
  const bool terminal = isatty(STDIN_FILENO) == 1;
  if (!out.json()) {
    std::string how = args.hold ? "for " + format_ms(*args.hold) + ", or until " : "until ";
    how += terminal ? "Enter, Ctrl-C or " : "SIGINT/SIGTERM or ";
    std::printf("paused %zu vCPUs %s`glassbox-ctl --%s unix:%s resume`\n", paused.size(),
                how.c_str(), options.connect.empty() ? "accept" : "connect",
                socket_path(options).c_str());
  }
  std::fflush(stdout);

  // Hold.
  std::string reason;
  while (reason.empty()) {
    int wait_ms = 200;  // also how often a closed connection is noticed
    if (args.hold) {
      const auto left = *args.hold - std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - start);
      if (left.count() <= 0) {
        reason = "--for elapsed";
        break;
      }
      wait_ms = static_cast<int>(std::min<std::int64_t>(wait_ms, left.count()));
    }
    pollfd fds[2] = {{signals.read_fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    const int n = poll(fds, terminal ? 2 : 1, wait_ms);
    if (n > 0 && (fds[0].revents & POLLIN)) {
      const int sig = signals.take();
      reason = sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "SIGTERM";
    } else if (n > 0 && terminal && (fds[1].revents & (POLLIN | POLLHUP))) {
      char buf[256];
      const ssize_t got = read(STDIN_FILENO, buf, sizeof buf);
      if (got <= 0 || std::find(buf, buf + got, '\n') != buf + got) reason = "Enter";
    }
    if (reason.empty() && !session.is_open()) {
      // The VMM went away; every vCPU was released with the connection.
      pid_file->remove();
      client::Error error{client::ErrorKind::Closed, 0,
                          "the connection closed while paused: " + session.close_reason()};
      return out.vmm_error(error, "pause");
    }
  }
  const auto held = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  auto resumed = session.resume_all(paused);
  // Disconnect before dropping the pid file: `resume` returns once the file is gone, and the
  // next tool can only connect after this one has.
  session.close();
  pid_file->remove();
  if (!resumed) return out.vmm_error(resumed.error(), "resume");
  if (out.json()) {
    out.print_json({{"vcpus", vcpus},
                    {"resumed_by", reason},
                    {"held_seconds", static_cast<double>(held.count()) / 1000.0}});
  } else {
    std::printf("resumed after %s (%s)\n", format_ms(held).c_str(), reason.c_str());
  }
  return kExitOk;
}

}  // namespace

void add_pause_command(CLI::App& app, Ctl& ctl) {
  auto args = std::make_shared<PauseArgs>();
  auto* sub = app.add_subcommand(
      "pause", "Stop every vCPU and hold the VM paused until Enter, a signal, --for, or `resume`");
  sub->add_option("--for", args->for_text, "Resume by itself after this long (e.g. 1s, 500ms, 2m)");
  sub->callback([&ctl, args] {
    args->hold.reset();
    if (!args->for_text.empty()) {
      auto hold = parse_duration(args->for_text);
      if (!hold) throw UsageError("--for", hold.error(), "give a duration such as 1s or 500ms");
      args->hold = *hold;
    }
    ctl.run = [args, &ctl](client::Session& s, const Output& o) {
      return run_pause(*args, ctl.options, s, o);
    };
  });
}

}  // namespace glassbox::ctl
