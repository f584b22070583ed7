#include "introspection/handshake.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <vector>

#include <fmt/format.h>

namespace glassbox::introspection {

std::expected<CookieHash, std::string> cookie_hash_of(std::span<const std::uint8_t> secret) {
  CookieHash hash{};
  unsigned int len = 0;
  if (EVP_Digest(secret.data(), secret.size(), hash.data(), &len, EVP_sha1(), nullptr) != 1 ||
      len != hash.size()) {
    return std::unexpected(std::string("SHA-1 of the secret failed (libcrypto)"));
  }
  return hash;
}

std::expected<CookieHash, std::string> cookie_hash_of_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(fmt::format("--secret {}: cannot open the file", path.string()));
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  if (in.bad()) return std::unexpected(fmt::format("--secret {}: read error", path.string()));
  return cookie_hash_of(bytes);
}

std::array<std::uint8_t, 16> random_uuid() {
  std::random_device random;
  std::array<std::uint8_t, 16> uuid{};
  for (std::size_t i = 0; i < uuid.size(); i += 4) {
    std::uint32_t word = random();
    std::memcpy(&uuid[i], &word, 4);
  }
  uuid[6] = static_cast<std::uint8_t>((uuid[6] & 0x0f) | 0x40);  // version 4
  uuid[8] = static_cast<std::uint8_t>((uuid[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return uuid;
}

std::string format_uuid(const std::array<std::uint8_t, 16>& u) {
  return fmt::format(
      "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-"
      "{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
      u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
      u[15]);
}

namespace {

using Clock = std::chrono::steady_clock;

// Reads exactly `out` before the deadline; the error is one line for the refusal log.
std::expected<void, std::string> read_before(int fd, std::span<std::byte> out,
                                             Clock::time_point deadline, int cancel_fd,
                                             const char* what) {
  std::size_t done = 0;
  while (done < out.size()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return std::unexpected(fmt::format("timed out waiting for {}", what));
    pollfd fds[2] = {{fd, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
    int r = ::poll(fds, cancel_fd >= 0 ? 2 : 1, static_cast<int>(left.count()));
    if (r < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(fmt::format("poll: {}", std::strerror(errno)));
    }
    if (r == 0) continue;
    if (cancel_fd >= 0 && (fds[1].revents & POLLIN)) {
      return std::unexpected(std::string("the VMM is shutting down"));
    }
    ssize_t n = ::recv(fd, out.data() + done, out.size() - done, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return std::unexpected(fmt::format("reading {}: {}", what, std::strerror(errno)));
    }
    if (n == 0)
      return std::unexpected(fmt::format("the tool closed the connection during {}", what));
    done += static_cast<std::size_t>(n);
  }
  return {};
}

}  // namespace

std::expected<void, std::string> run_vmm_handshake(int fd, const VmIdentity& vm,
                                                   const HandshakeOptions& options) {
  const auto deadline = Clock::now() + options.timeout;

  kvmi::VmHello hello{};
  hello.struct_size = kvmi::kVmHelloSize;
  std::copy(vm.uuid.begin(), vm.uuid.end(), hello.uuid);
  hello.start_time = vm.start_time_ms;
  // Always NUL-terminated: a tool reading the fixed 64 bytes must find the end.
  std::memcpy(hello.name, vm.name.data(), std::min(vm.name.size(), sizeof(hello.name) - 1));
  // The hello is 96 bytes: a stream socket's buffer takes it at once, so a blocking send cannot
  // stall on a tool that is not reading.
  if (::send(fd, &hello, sizeof(hello), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(hello))) {
    return std::unexpected(fmt::format("sending the hello: {}", std::strerror(errno)));
  }

  std::uint32_t struct_size = 0;
  if (auto r = read_before(fd, std::as_writable_bytes(std::span(&struct_size, 1)), deadline,
                           options.cancel_fd, "the tool's answer");
      !r) {
    return r;
  }
  if (struct_size < kvmi::kToolAnswerMinSize || struct_size > kToolAnswerMaxSize) {
    return std::unexpected(fmt::format("the tool's answer has struct_size {} (must be {}..{})",
                                       struct_size, kvmi::kToolAnswerMinSize, kToolAnswerMaxSize));
  }
  // Bytes beyond the base layout are extensions glassbox does not know; read and ignore them.
  std::vector<std::byte> rest(struct_size - sizeof(struct_size));
  if (auto r = read_before(fd, rest, deadline, options.cancel_fd, "the tool's answer"); !r) {
    return r;
  }
  kvmi::ToolAnswer answer{};
  answer.struct_size = struct_size;
  std::memcpy(answer.cookie_hash, rest.data(), sizeof(answer.cookie_hash));

  if (options.expected_hash && CRYPTO_memcmp(answer.cookie_hash, options.expected_hash->data(),
                                             kvmi::kCookieHashSize) != 0) {
    return std::unexpected(std::string("the tool's cookie hash does not match --secret"));
  }
  return {};
}

}  // namespace glassbox::introspection
