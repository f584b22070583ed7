#include "introspection/endpoint.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace glassbox::introspection {

namespace {

constexpr std::string_view kUnixPrefix = "unix:";
constexpr std::string_view kListenPrefix = "listen:";

std::expected<sockaddr_un, std::string> unix_address(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.empty() || p.size() >= sizeof(addr.sun_path)) {
    return std::unexpected(fmt::format("socket path '{}' is empty or longer than {} bytes", p,
                                       sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  return addr;
}

}  // namespace

std::string Endpoint::describe() const {
  return role == Role::Listen ? fmt::format("listen:unix:{}", path.string())
                              : fmt::format("unix:{}", path.string());
}

std::expected<Endpoint, std::string> parse_endpoint(std::string_view text) {
  Endpoint endpoint;
  std::string_view rest = text;
  if (rest.starts_with(kListenPrefix)) {
    endpoint.role = Endpoint::Role::Listen;
    rest.remove_prefix(kListenPrefix.size());
  }
  if (!rest.starts_with(kUnixPrefix) || rest.size() == kUnixPrefix.size()) {
    return std::unexpected(
        fmt::format("--introspect {}: expected unix:PATH (connect to a listening tool) or "
                    "listen:unix:PATH (wait for a tool)",
                    text));
  }
  endpoint.path = std::string(rest.substr(kUnixPrefix.size()));
  if (auto addr = unix_address(endpoint.path); !addr) {
    return std::unexpected(fmt::format("--introspect {}: {}", text, addr.error()));
  }
  return endpoint;
}

std::expected<UnixListener, std::string> UnixListener::listen(const std::filesystem::path& path) {
  auto addr = unix_address(path);
  if (!addr) return std::unexpected(addr.error());
  const std::string p = path.string();
  struct stat st {};
  if (::lstat(p.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return std::unexpected(fmt::format("{} exists and is not a socket", p));
    }
    ::unlink(p.c_str());  // left over from an earlier run
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return std::unexpected(fmt::format("socket: {}", std::strerror(errno)));
  // bind creates the file with the umask applied: make it 0600 from the first instant rather than
  // chmod afterwards. umask is per process, so this runs before any other thread exists.
  const mode_t old_mask = ::umask(0177);
  const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  const int bind_errno = errno;
  ::umask(old_mask);
  if (rc != 0) return std::unexpected(fmt::format("bind {}: {}", p, std::strerror(bind_errno)));
  if (::listen(fd.get(), 4) != 0) {
    const int err = errno;
    ::unlink(p.c_str());
    return std::unexpected(fmt::format("listen {}: {}", p, std::strerror(err)));
  }
  return UnixListener(std::move(fd), path);
}

UnixListener::~UnixListener() {
  if (fd_.valid() && !path_.empty()) ::unlink(path_.c_str());
}

std::expected<UniqueFd, int> connect_unix(const std::filesystem::path& path) {
  auto addr = unix_address(path);
  if (!addr) return std::unexpected(EINVAL);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return std::unexpected(errno);
  // A unix-socket connect completes or fails at once (a full backlog is EAGAIN only for
  // non-blocking sockets; a blocking one waits, which the retry loop must not do).
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return std::unexpected(errno);
  return fd;
}

}  // namespace glassbox::introspection
