#include "socket_io.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace glassbox::client::detail {

void OwnedFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string errno_text(int error) {
  return std::string(std::strerror(error));
}

ReadOutcome read_exact(int fd, std::span<std::byte> buf, Deadline deadline) {
  std::size_t done = 0;
  while (done < buf.size()) {
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return {ReadEnd::TimedOut, 0};
      pollfd p{fd, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0) {
        if (errno == EINTR) continue;
        return {ReadEnd::Error, errno};
      }
      if (r == 0) return {ReadEnd::TimedOut, 0};
    }
    ssize_t n = ::recv(fd, buf.data() + done, buf.size() - done, deadline ? 0 : MSG_WAITALL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return {ReadEnd::Error, errno};
    }
    if (n == 0) return {done == 0 ? ReadEnd::Eof : ReadEnd::Truncated, 0};
    done += static_cast<std::size_t>(n);
  }
  return {ReadEnd::Complete, 0};
}

int write_all(int fd, std::span<iovec> parts) {
  // Consume `parts` in place so a partial write resumes where the kernel stopped.
  std::size_t first = 0;
  while (first < parts.size()) {
    if (parts[first].iov_len == 0) {
      ++first;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = parts.data() + first;
    msg.msg_iovlen = parts.size() - first;
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    auto left = static_cast<std::size_t>(n);
    while (left > 0 && first < parts.size()) {
      std::size_t take = std::min(left, parts[first].iov_len);
      parts[first].iov_base = static_cast<char*>(parts[first].iov_base) + take;
      parts[first].iov_len -= take;
      left -= take;
      if (parts[first].iov_len == 0) ++first;
    }
  }
  return 0;
}

}  // namespace glassbox::client::detail
