// `glassbox-ctl resume`: end a `glassbox-ctl pause` running elsewhere.
//
// The VMM serves one tool at a time and the pausing tool holds that connection, so resume never
// connects: it signals the holder named by "<socket path>.pause-pid" (SIGTERM), which answers its
// pause events and disconnects, and waits until the holder has exited and removed the file.
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "ctl.h"

namespace glassbox::ctl {

namespace {

// Running (not a zombie) and a glassbox-ctl: a stale file must not make resume signal a pid the
// system has since given to something else.
bool is_pause_holder(pid_t pid) {
  std::ifstream cmdline("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string args((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
  if (args.find("glassbox-ctl") == std::string::npos) return false;
  return args.find(std::string("\0pause", 6)) != std::string::npos;
}

bool has_exited(pid_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  // A zombie has exited; only its parent can reap it.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto close_paren = line.rfind(')');
  return close_paren == std::string::npos ||
         (close_paren + 2 < line.size() && line[close_paren + 2] == 'Z');
}

int fail(const Output& out, const std::string& message) {
  std::fprintf(stderr, "glassbox-ctl: %s\n", message.c_str());
  if (out.json()) out.print_json({{"error", {{"kind", "no_pause"}, {"message", message}}}});
  return kExitVmm;
}

int run_resume(const GlobalOptions& options, const Output& out) {
  const std::string path = pause_pid_path(options);
  std::ifstream file(path);
  long pid = 0;
  if (!file) return fail(out, fmt::format("no pause is holding the VM ({} does not exist)", path));
  if (!(file >> pid) || pid <= 0) return fail(out, fmt::format("{} holds no pid", path));
  file.close();
  const auto holder = static_cast<pid_t>(pid);
  if (has_exited(holder) || !is_pause_holder(holder)) {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    return fail(out, fmt::format("no pause is holding the VM (pid {} in {} is gone; removed it)",
                                 pid, path));
  }
  if (kill(holder, SIGTERM) != 0) {
    return fail(out, fmt::format("cannot signal pause pid {}: {}", pid, std::strerror(errno)));
  }
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::milliseconds(static_cast<std::int64_t>(options.timeout_seconds * 1000.0));
  while (std::filesystem::exists(path) || !has_exited(holder)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(out,
                  fmt::format("pause pid {} did not end within {}s", pid, options.timeout_seconds));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (out.json()) {
    out.print_json({{"resumed", true}, {"pause_pid", pid}});
  } else {
    std::printf("resumed (pause pid %ld ended)\n", pid);
  }
  return kExitOk;
}

}  // namespace

void add_resume_command(CLI::App& app, Ctl& ctl) {
  auto* sub = app.add_subcommand(
      "resume", "End a `pause` running in another shell for the same VM (signals it; no connect)");
  sub->callback(
      [&ctl] { ctl.run_local = [&ctl](const Output& o) { return run_resume(ctl.options, o); }; });
}

}  // namespace glassbox::ctl
