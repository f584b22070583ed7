// The server's protocol code without KVM: the VMM-side handshake and the receiver run over a
// socketpair against plain guest memory (GuestMemoryTarget), the way the fuzz targets drive them,
// with the client library on the other end.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <future>
#include <string>
#include <thread>

#include "glassbox/client/session.h"
#include "glassbox/kvmi/abi.h"
#include "introspection/endpoint.h"
#include "introspection/handshake.h"
#include "introspection/memory_target.h"
#include "introspection/permissions.h"
#include "introspection/receiver.h"
#include "vmm/guest_memory.h"

namespace {

using namespace std::chrono_literals;
namespace kvmi = glassbox::kvmi;
namespace intro = glassbox::introspection;
using glassbox::client::ErrorKind;
using glassbox::client::Session;
using glassbox::client::SessionOptions;

constexpr std::uint64_t kRam = 1 << 20;

class KvmiReceiverOverSocketpair : public ::testing::Test {
 protected:
  void SetUp() override {
    auto memory = glassbox::vmm::GuestMemory::create(kRam);
    ASSERT_TRUE(memory);
    memory_.emplace(std::move(*memory));
    target_.emplace(*memory_, 2);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    vmm_fd_ = fds[0];
    tool_fd_ = fds[1];
    identity_.name = "socketpair-vm";
    identity_.uuid = intro::random_uuid();
  }
  void TearDown() override {
    if (vmm_fd_ >= 0) ::close(vmm_fd_);
  }

  // The VMM side on its own thread: handshake, then the receiver until the connection ends.
  std::future<std::string> start_vmm(intro::Permissions permissions,
                                     intro::HandshakeOptions options = {}) {
    return std::async(std::launch::async, [=, this] {
      auto shook = intro::run_vmm_handshake(vmm_fd_, identity_, options);
      if (!shook) {
        ::shutdown(vmm_fd_, SHUT_RDWR);
        return "handshake: " + shook.error();
      }
      return intro::run_receiver_on_fd(vmm_fd_, *target_, permissions);
    });
  }

  std::optional<glassbox::vmm::GuestMemory> memory_;
  std::optional<intro::GuestMemoryTarget> target_;
  intro::VmIdentity identity_;
  int vmm_fd_ = -1;
  int tool_fd_ = -1;
};

TEST_F(KvmiReceiverOverSocketpair, ServesVmCommandsAgainstPlainMemory) {
  ASSERT_TRUE(memory_->write(0x3000, "GLASSBOX", 8));
  auto vmm = start_vmm(intro::Permissions::allow_all());
  auto session = Session::adopt(tool_fd_);
  ASSERT_TRUE(session) << session.error().message;
  EXPECT_EQ((*session)->vm().name, "socketpair-vm");
  auto count = (*session)->get_vcpu_count();
  ASSERT_TRUE(count);
  EXPECT_EQ(*count, 2u);
  auto gfn = (*session)->get_max_gfn();
  ASSERT_TRUE(gfn);
  EXPECT_EQ(*gfn, kRam / 4096);
  auto magic = (*session)->read_physical(0x3000, 8);
  ASSERT_TRUE(magic);
  EXPECT_EQ(std::memcmp(magic->data(), "GLASSBOX", 8), 0);
  std::array<std::byte, 4> data{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
  ASSERT_TRUE((*session)->write_physical(kRam - 4, data));
  auto back = (*session)->read_physical(kRam - 4, 4);
  ASSERT_TRUE(back);
  EXPECT_TRUE(std::equal(back->begin(), back->end(), data.begin()));
  (*session)->close();
  EXPECT_EQ(vmm.get(), "the tool closed the connection");
  // Checked after the receiver ended: only then is reading the memory here ordered after its
  // write (a socket round trip is not a happens-before edge ThreadSanitizer can see).
  std::array<std::byte, 4> direct{};
  ASSERT_TRUE(memory_->read(kRam - 4, direct.data(), direct.size()));
  EXPECT_EQ(direct, data);
}

TEST_F(KvmiReceiverOverSocketpair, OversizedHeaderEndsTheReceiverWithItsReason) {
  auto vmm = start_vmm(intro::Permissions::allow_all());
  auto session = Session::adopt(tool_fd_);
  ASSERT_TRUE(session);
  kvmi::MsgHdr hdr{2, 9000, 1};
  ASSERT_TRUE((*session)->send_raw(std::as_bytes(std::span(&hdr, 1))));
  EXPECT_NE(vmm.get().find("9000 payload bytes"), std::string::npos);
}

TEST_F(KvmiReceiverOverSocketpair, HandshakeRefusesAWrongCookie) {
  intro::HandshakeOptions options;
  options.expected_hash = intro::cookie_hash_of(std::vector<std::uint8_t>{'k', 'e', 'y'}).value();
  auto vmm = start_vmm(intro::Permissions::allow_all(), options);
  SessionOptions tool;
  tool.secret = std::vector<std::uint8_t>{'n', 'o', 'p', 'e'};
  auto session = Session::adopt(tool_fd_, tool);
  EXPECT_EQ(vmm.get(), "handshake: the tool's cookie hash does not match --secret");
}

TEST_F(KvmiReceiverOverSocketpair, HandshakeAcceptsTheRightCookie) {
  intro::HandshakeOptions options;
  options.expected_hash = intro::cookie_hash_of(std::vector<std::uint8_t>{'k', 'e', 'y'}).value();
  auto vmm = start_vmm(intro::Permissions::allow_all(), options);
  SessionOptions tool;
  tool.secret = std::vector<std::uint8_t>{'k', 'e', 'y'};
  auto session = Session::adopt(tool_fd_, tool);
  ASSERT_TRUE(session);
  EXPECT_TRUE((*session)->get_version());
  (*session)->close();
  EXPECT_EQ(vmm.get(), "the tool closed the connection");
}

TEST_F(KvmiReceiverOverSocketpair, HandshakeRefusesAnAnswerShorterThan24Bytes) {
  intro::HandshakeOptions options;
  options.timeout = 200ms;
  auto vmm = start_vmm(intro::Permissions::allow_all(), options);
  // Read the hello, then send a struct_size below 24.
  std::array<std::byte, kvmi::kVmHelloSize> hello{};
  ASSERT_EQ(::recv(tool_fd_, hello.data(), hello.size(), MSG_WAITALL), 96);
  std::uint32_t size = 20;
  ASSERT_EQ(::send(tool_fd_, &size, sizeof(size), 0), 4);
  EXPECT_NE(vmm.get().find("struct_size 20"), std::string::npos);
  ::close(tool_fd_);
}

TEST_F(KvmiReceiverOverSocketpair, HandshakeTimesOutOnASilentTool) {
  intro::HandshakeOptions options;
  options.timeout = 200ms;
  auto vmm = start_vmm(intro::Permissions::allow_all(), options);
  EXPECT_NE(vmm.get().find("timed out"), std::string::npos);
  ::close(tool_fd_);
}

TEST(KvmiPermissions, ParseNamesIdsAndKeywords) {
  auto p = intro::Permissions::parse("vm_read_physical, KVMI_VM_GET_INFO,17", "unhook,9");
  ASSERT_TRUE(p) << p.error();
  EXPECT_TRUE(p->allows_command(7));
  EXPECT_TRUE(p->allows_command(5));
  EXPECT_TRUE(p->allows_command(17));
  EXPECT_FALSE(p->allows_command(8));
  EXPECT_TRUE(p->allows_command(2));  // always allowed
  EXPECT_FALSE(p->allows_command(0));
  EXPECT_TRUE(p->allows_event(0));
  EXPECT_TRUE(p->allows_event(9));
  EXPECT_FALSE(p->allows_event(3));
  EXPECT_FALSE(intro::Permissions::parse("event", "all"));       // id 1 is not a command
  EXPECT_FALSE(intro::Permissions::parse("all", "unhook,,pf"));  // empty entry
  auto none = intro::Permissions::parse("none", "none");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->allows_command(4));
  EXPECT_FALSE(none->allows_command(5));
  EXPECT_FALSE(none->allows_event(0));
}

TEST(KvmiEndpoint, ParsesBothRoles) {
  auto connect = intro::parse_endpoint("unix:/tmp/x.sock");
  ASSERT_TRUE(connect);
  EXPECT_EQ(connect->role, intro::Endpoint::Role::Connect);
  EXPECT_EQ(connect->path, "/tmp/x.sock");
  auto listen = intro::parse_endpoint("listen:unix:/tmp/y.sock");
  ASSERT_TRUE(listen);
  EXPECT_EQ(listen->role, intro::Endpoint::Role::Listen);
  EXPECT_FALSE(intro::parse_endpoint("unix:"));
  EXPECT_FALSE(intro::parse_endpoint("vsock:3:1234"));
  EXPECT_FALSE(intro::parse_endpoint("unix:" + std::string(200, 'a')));
}

}  // namespace
