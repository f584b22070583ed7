#include "glassbox/client/listener.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "socket_io.h"

namespace glassbox::client {

Result<Listener> Listener::listen(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.empty() || p.size() >= sizeof(addr.sun_path)) {
    return make_error(ErrorKind::InvalidArgument, "listen: socket path too long: " + p);
  }
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);

  // A socket file left by a previous run would make bind fail; anything else is not ours.
  struct stat st {};
  if (::lstat(p.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return make_error(ErrorKind::InvalidArgument, "listen: " + p + " exists and is no socket");
    }
    ::unlink(p.c_str());
  }

  detail::OwnedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    return make_error(ErrorKind::Io, "listen: socket: " + detail::errno_text(errno), errno);
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0) {
    int err = errno;
    return make_error(ErrorKind::Io, "listen: bind " + p + ": " + detail::errno_text(err), err);
  }
  // Whoever can connect can read and write guest memory: owner only. Between bind and chmod the
  // umask's mode applies; a caller that cannot accept that window uses a private directory.
  ::chmod(p.c_str(), 0600);
  if (::listen(fd.get(), 1) < 0) {
    int err = errno;
    ::unlink(p.c_str());
    return make_error(ErrorKind::Io, "listen " + p + ": " + detail::errno_text(err), err);
  }
  return Listener(fd.release(), path);
}

Listener::Listener(Listener&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {
  other.path_.clear();
}

Listener& Listener::operator=(Listener&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

Listener::~Listener() {
  reset();
}

void Listener::reset() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    if (!path_.empty()) ::unlink(path_.c_str());
  }
}

Result<std::unique_ptr<Session>> Listener::accept(SessionOptions options,
                                                  std::chrono::milliseconds timeout) {
  if (fd_ < 0) return make_error(ErrorKind::InvalidArgument, "accept: listener is closed");
  auto deadline = detail::deadline_after(timeout);
  for (;;) {
    if (deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return make_error(ErrorKind::Timeout, "accept: no VMM connected on " + path_.string());
      }
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno != EINTR) {
        return make_error(ErrorKind::Io, "accept: poll: " + detail::errno_text(errno), errno);
      }
      if (r <= 0) continue;
    }
    int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return make_error(ErrorKind::Io, "accept: " + detail::errno_text(errno), errno);
    }
    return Session::adopt(fd, std::move(options));
  }
}

}  // namespace glassbox::client
