// Blocking socket helpers shared by the handshake, the session and the listener.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "glassbox/client/error.h"

namespace glassbox::client::detail {

// An owned descriptor. (kvm/fd.h has the VMM's twin; the client stays free of VMM code.)
class OwnedFd {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) : fd_(fd) {}
  ~OwnedFd() { reset(); }
  OwnedFd(OwnedFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  OwnedFd& operator=(OwnedFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;

  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

using Deadline = std::optional<std::chrono::steady_clock::time_point>;

inline Deadline deadline_after(std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) return std::nullopt;
  return std::chrono::steady_clock::now() + timeout;
}

// How a read_exact ended when it did not fill the buffer.
enum class ReadEnd { Complete, Eof, Truncated, Error, TimedOut };

struct ReadOutcome {
  ReadEnd end = ReadEnd::Complete;
  int error = 0;  // errno for ReadEnd::Error
};

// Reads exactly buf.size() bytes, retrying on EINTR; waits with poll() when a deadline is set.
ReadOutcome read_exact(int fd, std::span<std::byte> buf, Deadline deadline = std::nullopt);

// Writes every byte of `parts` with sendmsg (one call unless the kernel takes a partial write),
// MSG_NOSIGNAL so a dead peer is an error, not a SIGPIPE. Returns 0 or errno.
int write_all(int fd, std::span<iovec> parts);

std::string errno_text(int error);

}  // namespace glassbox::client::detail
