// libFuzzer target: the KVMI server's handshake and receiving thread, fed by an untrusted tool.
//
// Each input is what a tool writes on a fresh connection (fuzz_input.h). The real server code
// runs on one end of a socketpair against plain guest memory (GuestMemoryTarget, no KVM); a pump
// thread plays the tool: it writes the input, then reads and discards everything the VMM says, so
// replies can never fill the socket and block the receiver. The input ends with a half-close,
// which the receiver sees as the tool leaving.
#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <thread>

#include "fuzz_input.h"
#include "introspection/handshake.h"
#include "introspection/memory_target.h"
#include "introspection/permissions.h"
#include "introspection/receiver.h"
#include "vmm/guest_memory.h"

namespace {

using namespace glassbox;

struct Fixture {
  vmm::GuestMemory memory;
  introspection::GuestMemoryTarget target;
  introspection::CookieHash secret_hash;

  explicit Fixture(vmm::GuestMemory m)
      : memory(std::move(m)), target(memory, fuzz::kVcpuCount), secret_hash(hash_of_secret()) {}

  static introspection::CookieHash hash_of_secret() {
    auto secret = std::as_bytes(std::span(fuzz::kFuzzSecret));
    auto hash = introspection::cookie_hash_of(
        std::span(reinterpret_cast<const std::uint8_t*>(secret.data()), secret.size()));
    if (!hash) std::abort();
    return *hash;
  }
};

Fixture& fixture() {
  // Created once: a memfd per input would dominate the run time. Writes persist across inputs,
  // which only makes guest memory contents another thing the fuzzer varies.
  static Fixture* f = [] {
    auto memory = vmm::GuestMemory::create(fuzz::kGuestMemorySize);
    if (!memory) std::abort();
    return new Fixture(std::move(*memory));
  }();
  return *f;
}

// The tool's side: write `input`, half-close, then drain until the VMM closes.
void pump(int fd, std::span<const std::uint8_t> input) {
  std::size_t sent = 0;
  bool write_open = true;
  if (input.empty()) {
    ::shutdown(fd, SHUT_WR);
    write_open = false;
  }
  std::byte sink[16384];
  for (;;) {
    pollfd p{fd, static_cast<short>(POLLIN | (write_open ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = ::recv(fd, sink, sizeof sink, MSG_DONTWAIT);
      if (n == 0) return;  // the VMM ended the connection
      if (n < 0 && errno != EAGAIN && errno != EINTR) return;
    }
    if (write_open && (p.revents & POLLOUT)) {
      ssize_t n = ::send(fd, input.data() + sent, input.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<std::size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || sent == input.size()) {
        ::shutdown(fd, SHUT_WR);
        write_open = false;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Every closed connection is logged; at thousands of inputs a second that is all noise.
  spdlog::set_level(spdlog::level::off);
  fixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  std::span<const std::uint8_t> stream(data + 1, size - 1);
  Fixture& f = fixture();

  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  const int vmm_fd = fds[0];
  const int tool_fd = fds[1];
  std::thread tool(pump, tool_fd, stream);

  bool attached = true;
  if (mode & fuzz::kRunHandshake) {
    introspection::VmIdentity vm;
    vm.name = "fuzz";
    vm.start_time_ms = 1;
    introspection::HandshakeOptions options;
    if (mode & fuzz::kRequireSecret) options.expected_hash = f.secret_hash;
    // The pump half-closes after the input, so a short answer ends in EOF, not in this timeout;
    // it only bounds a server bug, which libFuzzer's -timeout then reports.
    options.timeout = std::chrono::milliseconds(5000);
    attached = introspection::run_vmm_handshake(vmm_fd, vm, options).has_value();
  }
  if (attached) {
    auto permissions = (mode & fuzz::kAllowNone) ? introspection::Permissions::allow_none()
                                                 : introspection::Permissions::allow_all();
    introspection::run_receiver_on_fd(vmm_fd, f.target, permissions);
  }
  // The receiver shuts the socket down itself; a refused handshake leaves that to us.
  ::shutdown(vmm_fd, SHUT_RDWR);
  tool.join();
  ::close(vmm_fd);
  ::close(tool_fd);
  return 0;
}
