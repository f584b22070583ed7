#include "handshake.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "socket_io.h"

namespace glassbox::client::detail {

Result<std::array<std::uint8_t, kvmi::kCookieHashSize>> cookie_hash(
    const std::optional<std::vector<std::uint8_t>>& secret) {
  std::array<std::uint8_t, kvmi::kCookieHashSize> hash{};
  if (!secret) return hash;
  unsigned int len = 0;
  if (EVP_Digest(secret->data(), secret->size(), hash.data(), &len, EVP_sha1(), nullptr) != 1 ||
      len != hash.size()) {
    return make_error(ErrorKind::Handshake, "handshake: SHA-1 of the secret failed (libcrypto)");
  }
  return hash;
}

namespace {

std::unexpected<Error> read_failure(const ReadOutcome& r, const char* what) {
  switch (r.end) {
    case ReadEnd::TimedOut:
      return make_error(ErrorKind::Timeout,
                        std::string("handshake: timed out waiting for ") + what);
    case ReadEnd::Error:
      return make_error(ErrorKind::Io,
                        std::string("handshake: reading ") + what + ": " + errno_text(r.error),
                        r.error);
    default:
      return make_error(ErrorKind::Handshake,
                        std::string("handshake: the VMM closed the connection during ") + what);
  }
}

}  // namespace

Result<VmIdentity> run_tool_handshake(int fd, const SessionOptions& options) {
  Deadline deadline = deadline_after(options.handshake_timeout);

  // struct_size comes first so the rest can be read whatever its length (§5.3: later VMMs append
  // max_gpa or e820 data; only the base 96 bytes are understood, the rest is skipped).
  std::uint32_t struct_size = 0;
  auto r = read_exact(fd, std::as_writable_bytes(std::span(&struct_size, 1)), deadline);
  if (r.end != ReadEnd::Complete) return read_failure(r, "the VMM hello");
  if (struct_size < kvmi::kVmHelloMinSize || struct_size > kvmi::kVmHelloMaxSize) {
    return make_error(ErrorKind::Handshake, "handshake: VMM hello has struct_size " +
                                                std::to_string(struct_size) + " (must be " +
                                                std::to_string(kvmi::kVmHelloMinSize) + ".." +
                                                std::to_string(kvmi::kVmHelloMaxSize) + ")");
  }
  std::vector<std::byte> rest(struct_size - sizeof(struct_size));
  r = read_exact(fd, rest, deadline);
  if (r.end != ReadEnd::Complete) return read_failure(r, "the VMM hello");

  kvmi::VmHello hello{};
  hello.struct_size = struct_size;
  std::memcpy(reinterpret_cast<std::byte*>(&hello) + sizeof(struct_size), rest.data(),
              std::min(rest.size(), sizeof(hello) - sizeof(struct_size)));

  VmIdentity vm;
  std::copy(std::begin(hello.uuid), std::end(hello.uuid), vm.uuid.begin());
  vm.start_time_ms = hello.start_time;
  // The name need not be terminated by a short or hostile hello; stop at 63 bytes as libkvmi does.
  vm.name.assign(hello.name, strnlen(hello.name, sizeof(hello.name) - 1));
  vm.hello_size = struct_size;

  auto hash = cookie_hash(options.secret);
  if (!hash) return std::unexpected(hash.error());
  kvmi::ToolAnswer answer{};
  answer.struct_size = kvmi::kToolAnswerSize;
  std::copy(hash->begin(), hash->end(), answer.cookie_hash);
  iovec part{&answer, sizeof(answer)};
  if (int err = write_all(fd, std::span(&part, 1)); err != 0) {
    return make_error(ErrorKind::Io, "handshake: sending the answer: " + errno_text(err), err);
  }
  return vm;
}

}  // namespace glassbox::client::detail
