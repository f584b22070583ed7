// Where the tool is: --introspect unix:PATH (the VMM connects to a listening tool, as QEMU does)
// or --introspect listen:unix:PATH (the VMM listens; one tool at a time).
#pragma once

#include <expected>
#include <filesystem>
#include <string>
#include <string_view>

#include "kvm/fd.h"

namespace glassbox::introspection {

struct Endpoint {
  enum class Role { Connect, Listen };
  Role role = Role::Connect;
  std::filesystem::path path;

  std::string describe() const;
};

std::expected<Endpoint, std::string> parse_endpoint(std::string_view text);

// A listening unix socket, mode 0600 from the start (whoever connects can read and write guest
// memory). A stale socket file at the path is replaced; the path is removed on destruction.
class UnixListener {
 public:
  static std::expected<UnixListener, std::string> listen(const std::filesystem::path& path);
  UnixListener(UnixListener&&) noexcept = default;
  UnixListener& operator=(UnixListener&&) noexcept = default;
  ~UnixListener();

  int fd() const { return fd_.get(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  UnixListener(UniqueFd fd, std::filesystem::path path)
      : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;
  std::filesystem::path path_;
};

// One attempt to connect to a tool listening at `path`; errno on failure (ENOENT or
// ECONNREFUSED while no tool listens).
std::expected<UniqueFd, int> connect_unix(const std::filesystem::path& path);

}  // namespace glassbox::introspection
