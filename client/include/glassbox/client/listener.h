// The tool's side of the "VMM connects to the tool" role (glassbox --introspect unix:PATH, as
// QEMU does): a listening unix socket that hands each incoming VMM connection to a Session.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>

#include "glassbox/client/error.h"
#include "glassbox/client/session.h"

namespace glassbox::client {

class Listener {
 public:
  // Binds `path` (a stale socket file there is replaced) with mode 0600 and listens.
  static Result<Listener> listen(const std::filesystem::path& path);

  Listener(Listener&& other) noexcept;
  Listener& operator=(Listener&& other) noexcept;
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  ~Listener();  // closes the socket and removes the path

  const std::filesystem::path& path() const { return path_; }
  int fd() const { return fd_; }

  // Waits for the VMM to connect (timeout zero: forever) and runs the handshake.
  Result<std::unique_ptr<Session>> accept(
      SessionOptions options = {},
      std::chrono::milliseconds timeout = std::chrono::milliseconds{0});

 private:
  Listener(int fd, std::filesystem::path path) : fd_(fd), path_(std::move(path)) {}
  void reset();

  int fd_ = -1;
  std::filesystem::path path_;
};

}  // namespace glassbox::client
