// Pieces every KVMI benchmark needs: the real VMM in the background, the raw socket round-trip
// floor, and medians. Header-only; each bench/*_bench.cpp is its own executable.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace glassbox::bench {

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// `--runs N` from the command line (at least 1), or `fallback`.
inline int runs_argument(int argc, char** argv, int fallback = 5) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--runs") return std::max(1, std::atoi(argv[i + 1]));
  }
  return fallback;
}

// `glassbox ARGS...` in the background with its console and log discarded (they would only mix
// into the table), waiting until `socket` exists; killed and reaped on destruction.
class BackgroundVmm {
 public:
  BackgroundVmm(std::vector<std::string> args, const std::filesystem::path& socket) {
    args.insert(args.begin(), GLASSBOX_BINARY);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      int null = open("/dev/null", O_RDWR);
      dup2(null, STDIN_FILENO);
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!std::filesystem::exists(socket) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~BackgroundVmm() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  BackgroundVmm(const BackgroundVmm&) = delete;
  BackgroundVmm& operator=(const BackgroundVmm&) = delete;

 private:
  pid_t pid_ = -1;
};

inline bool io_exact(int fd, void* buf, std::size_t n, bool write) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = write ? ::write(fd, p, n) : ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// The floor of any KVMI round trip: median µs of a request/reply exchange of the given sizes over
// a unix stream socketpair, the reply written by a peer thread (as the VMM's threads do).
inline double raw_round_trip_us(int iterations, std::size_t request_bytes,
                                std::size_t reply_bytes) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return 0;
  std::thread echo([fd = fds[1], request_bytes, reply_bytes] {
    std::vector<char> request(request_bytes), reply(reply_bytes);
    while (io_exact(fd, request.data(), request.size(), false)) {
      if (!io_exact(fd, reply.data(), reply.size(), true)) break;
    }
  });
  std::vector<char> request(request_bytes, 2), reply(reply_bytes);
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    const auto start = std::chrono::steady_clock::now();
    io_exact(fds[0], request.data(), request.size(), true);
    io_exact(fds[0], reply.data(), reply.size(), false);
    samples.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
  }
  ::shutdown(fds[0], SHUT_RDWR);
  echo.join();
  close(fds[0]);
  close(fds[1]);
  return median(std::move(samples));
}

}  // namespace glassbox::bench
