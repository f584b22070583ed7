// Shared by the kvmi_*_test.cpp integration tests: a real glassbox running a long io_loop guest
// with introspection on, and helpers to build raw KVMI messages.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "glassbox/client/listener.h"
#include "glassbox/client/session.h"
#include "glassbox/kvmi/abi.h"
#include "run_glassbox.h"

namespace glassbox::test::kvmi_support {

using namespace std::chrono_literals;
namespace kvmi = glassbox::kvmi;
using client::ErrorKind;
using client::Message;
using client::Session;
using client::SessionOptions;

// Whether this host's KVM hands guest INT3s to the VMM: glassbox refuses KVMI_EVENT_BREAKPOINT
// (VM_CHECK_EVENT answers -KVM_EPERM) where its start-up probe saw an INT3 go straight to the
// guest, as under QEMU TCG's nested SVM (the KVM lab). Tests of breakpoints skip there, saying so.
inline bool breakpoints_reach_the_vmm(Session& tool) {
  return tool.check_event(static_cast<std::uint16_t>(kvmi::EventId::Breakpoint)).has_value();
}
inline constexpr const char* kNoBreakpointsHere =
    "this host's KVM gives guest INT3s to the guest without an exit, so glassbox refuses "
    "KVMI_EVENT_BREAKPOINT here (glassbox host-info: 'no exit')";

// Runs for minutes: every test ends it with a signal long before the guest finishes.
inline const char* kLongRunningCount = "1000000000";
inline constexpr int kSigtermStatus = 128 + SIGTERM;

// A private directory for sockets and secrets, removed at the end.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/glassbox-kvmi-XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline std::vector<std::string> io_loop_args(const std::string& introspect,
                                             std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {
      "run",       "--kernel",        scenario_guest("io_loop").string(),
      "--cmdline", kLongRunningCount, "--introspect",
      introspect};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// Connects to a VMM started with listen:unix:PATH, waiting (generously) for the socket to appear
// and for the VMM to take this tool.
inline std::unique_ptr<Session> connect_when_ready(const std::filesystem::path& path,
                                                   SessionOptions options = {}) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  client::Error last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto session = Session::connect(path, options);
    if (session) return std::move(*session);
    last = session.error();
    std::this_thread::sleep_for(50ms);
  }
  ADD_FAILURE() << "could not connect to " << path << ": " << last.message;
  return nullptr;
}

template <typename T>
std::vector<std::byte> raw_message(std::uint16_t id, std::uint32_t seq, const T& body,
                                   std::size_t body_size = sizeof(T)) {
  std::vector<std::byte> out(sizeof(kvmi::MsgHdr) + body_size);
  kvmi::MsgHdr hdr{id, static_cast<std::uint16_t>(body_size), seq};
  std::memcpy(out.data(), &hdr, sizeof(hdr));
  std::memcpy(out.data() + sizeof(hdr), &body, std::min(body_size, sizeof(T)));
  return out;
}

inline std::vector<std::byte> raw_header(std::uint16_t id, std::uint32_t seq, std::uint16_t size) {
  std::vector<std::byte> out(sizeof(kvmi::MsgHdr) + size);
  kvmi::MsgHdr hdr{id, size, seq};
  std::memcpy(out.data(), &hdr, sizeof(hdr));
  return out;
}

// The error code of a reply message (-KVM_E* or 0).
inline std::int32_t error_of(const Message& reply) {
  kvmi::ErrorCode code{};
  std::memcpy(&code, reply.payload.data(), std::min(reply.payload.size(), sizeof(code)));
  return code.err;
}

// True once the VMM has closed the session (every waiter fails with Closed).
inline bool closed_by_vmm(Session& session, std::chrono::milliseconds timeout = 30s) {
  auto event = session.wait_event(timeout);
  return !event && event.error().kind == ErrorKind::Closed;
}

}  // namespace glassbox::test::kvmi_support
