// The libkvmi dialect edge without KVM (spec/libkvmi-dialect.md §1.2, §1.3, §6): the VMM's
// handshake and receiver in libkvmi mode over a socketpair against plain guest memory, with the
// client on the other end speaking libkvmi numbering (typed calls translated by the client, raw
// messages written with libkvmi ids as libkvmi itself would send them).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "glassbox/client/session.h"
#include "glassbox/kvmi/abi.h"
#include "glassbox/kvmi/dialect.h"
#include "glassbox/kvmi/errors.h"
#include "introspection/handshake.h"
#include "introspection/memory_target.h"
#include "introspection/permissions.h"
#include "introspection/receiver.h"
#include "kvmi_test_helpers.h"
#include "vmm/guest_memory.h"

namespace {

using namespace std::chrono_literals;
using namespace glassbox::test::kvmi_support;
namespace intro = glassbox::introspection;
using kvmi::Dialect;
using Lib = kvmi::libkvmi::MessageId;

constexpr std::uint64_t kRam = 1 << 20;
constexpr std::int32_t kEnosys = kvmi::to_wire(kvmi::Errno::NoSys);
constexpr std::int32_t kEperm = kvmi::to_wire(kvmi::Errno::Perm);
constexpr std::int32_t kEinval = kvmi::to_wire(kvmi::Errno::Inval);
constexpr std::int32_t kEopnotsupp = kvmi::to_wire(kvmi::Errno::OpNotSupp);

std::uint16_t id_of(Lib id) {
  return static_cast<std::uint16_t>(id);
}

std::vector<std::byte> cmd_response(std::uint32_t seq, std::uint8_t enable, std::uint8_t now) {
  kvmi::libkvmi::ControlCmdResponse body{enable, now, 0, 0};
  return raw_message(id_of(Lib::ControlCmdResponse), seq, body);
}

void append(std::vector<std::byte>& out, const std::vector<std::byte>& message) {
  out.insert(out.end(), message.begin(), message.end());
}

class KvmiLibkvmiEdge : public ::testing::Test {
 protected:
  void SetUp() override {
    auto memory = glassbox::vmm::GuestMemory::create(kRam);
    ASSERT_TRUE(memory);
    memory_.emplace(std::move(*memory));
    // Written before the receiver thread starts: a socket round trip is no happens-before edge
    // ThreadSanitizer can see.
    ASSERT_TRUE(memory_->write(0x2000, "LIBKVMI!", 8));
    intro::HostFacts facts;
    facts.singlestep = true;  // v7 would report it in GET_VERSION; libkvmi must read zeros
    facts.can_singlestep = true;
    target_.emplace(*memory_, 2, facts);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    vmm_fd_ = fds[0];
    identity_.name = "libkvmi-vm";
    vmm_ = std::async(std::launch::async, [this] {
      auto shook = intro::run_vmm_handshake(vmm_fd_, identity_, {});
      if (!shook) {
        ::shutdown(vmm_fd_, SHUT_RDWR);
        return "handshake: " + shook.error();
      }
      return intro::run_receiver_on_fd(vmm_fd_, *target_, intro::Permissions::allow_all(),
                                       Dialect::Libkvmi);
    });
    SessionOptions options;
    options.dialect = Dialect::Libkvmi;
    options.reply_timeout = 10s;
    auto session = Session::adopt(fds[1], options);
    ASSERT_TRUE(session) << session.error().message;
    tool_ = std::move(*session);
  }
  void TearDown() override {
    if (tool_) tool_->close();
    if (vmm_.valid()) vmm_.wait();
    if (vmm_fd_ >= 0) ::close(vmm_fd_);
  }

  // One raw libkvmi request and its reply, which must carry the request's id and seq.
  Message call(std::uint16_t id, std::uint32_t seq, std::span<const std::byte> body = {}) {
    std::vector<std::byte> message = raw_header(id, seq, static_cast<std::uint16_t>(body.size()));
    std::copy(body.begin(), body.end(), message.begin() + sizeof(kvmi::MsgHdr));
    auto pending = tool_->submit_raw(message);
    EXPECT_TRUE(pending) << pending.error().message;
    if (!pending) return {};
    auto reply = pending->wait_raw(10s);
    EXPECT_TRUE(reply) << "id " << id << ": " << reply.error().message;
    if (!reply) return {};
    EXPECT_EQ(reply->hdr.id, id);
    EXPECT_EQ(reply->hdr.seq, seq);
    return std::move(*reply);
  }
  template <typename T>
  Message call(std::uint16_t id, std::uint32_t seq, const T& body) {
    return call(id, seq, std::as_bytes(std::span(&body, 1)));
  }

  // Expects an error reply of exactly 8 bytes (libkvmi reads nothing after a negative code).
  void expect_error(const Message& reply, std::int32_t err) {
    EXPECT_EQ(error_of(reply), err);
    EXPECT_EQ(reply.hdr.size, sizeof(kvmi::ErrorCode));
    EXPECT_EQ(reply.payload.size(), sizeof(kvmi::ErrorCode));
  }

  // The replies that matched no request so far, after one more round trip: the receiver handles
  // messages in order, so every reply to what was sent before has been written by then.
  std::vector<Message> replies_after_a_round_trip() {
    auto count = tool_->get_vcpu_count();
    EXPECT_TRUE(count) << count.error().message;
    return tool_->take_unmatched();
  }

  std::optional<glassbox::vmm::GuestMemory> memory_;
  std::optional<intro::GuestMemoryTarget> target_;
  intro::VmIdentity identity_;
  int vmm_fd_ = -1;
  std::future<std::string> vmm_;
  std::unique_ptr<Session> tool_;
};

TEST_F(KvmiLibkvmiEdge, GetVersionRepliesVersionOneAndAllFeaturesZero) {
  auto reply = call(id_of(Lib::GetVersion), 1);
  ASSERT_EQ(reply.payload.size(), sizeof(kvmi::ErrorCode) + 16);
  EXPECT_EQ(error_of(reply), 0);
  std::uint32_t version = 0;
  std::memcpy(&version, reply.payload.data() + 8, 4);
  EXPECT_EQ(version, 1u);
  for (std::size_t i = 12; i < reply.payload.size(); ++i) {
    EXPECT_EQ(reply.payload[i], std::byte{0}) << "byte " << i << " ({spp, vmfunc, eptp, ve})";
  }
}

TEST_F(KvmiLibkvmiEdge, TypedCallsGoOutWithLibkvmiIdsAndTheirRepliesMatch) {
  auto count = tool_->get_vcpu_count();  // GET_GUEST_INFO 5
  ASSERT_TRUE(count) << count.error().message;
  EXPECT_EQ(*count, 2u);
  auto gfn = tool_->get_max_gfn();  // 29
  ASSERT_TRUE(gfn) << gfn.error().message;
  EXPECT_EQ(*gfn, kRam / 4096);
  auto bytes = tool_->read_physical(0x2000, 8);  // 17
  ASSERT_TRUE(bytes) << bytes.error().message;
  EXPECT_EQ(std::memcmp(bytes->data(), "LIBKVMI!", 8), 0);
  const std::array<std::byte, 2> data{std::byte{0xab}, std::byte{0xcd}};
  ASSERT_TRUE(tool_->write_physical(0x2ffe, data));  // 18
  auto back = tool_->read_physical(0x2ffe, 2);
  ASSERT_TRUE(back);
  EXPECT_EQ((*back)[1], std::byte{0xcd});
  // The raw libkvmi READ_PHYSICAL id (17 is VCPU_GET_MAX_GFN's number in v7).
  kvmi::VmReadPhysical req{0x2000, 8};
  auto reply = call(id_of(Lib::ReadPhysical), 77, req);
  ASSERT_EQ(reply.payload.size(), 16u);
  EXPECT_EQ(std::memcmp(reply.payload.data() + 8, "LIBKVMI!", 8), 0);
  EXPECT_TRUE(tool_->take_unmatched().empty());
}

TEST_F(KvmiLibkvmiEdge, UnknownAndUnservableIdsAreAnsweredEnosysWithEightBytes) {
  std::uint32_t seq = 100;
  // libkvmi ids glassbox cannot serve (CONTROL_VE, page bitmaps, GET_MAP_TOKEN, #VE info, the
  // gfn and EPT-view commands, XCR, XSAVE-set, QUERY_PHYSICAL, CHANGE_GFN), ids nobody defines,
  // and the event id a tool must not send.
  for (std::uint16_t id : {12, 20, 22, 24, 25, 26, 28, 30, 31, 32, 33,   34,     36,
                           37, 38, 39, 41, 42, 43, 44, 60, 64, 99, 1000, 0xffff, 1}) {
    const std::array<std::byte, 16> zeros{};
    SCOPED_TRACE(id);
    expect_error(call(id, ++seq, zeros), kEnosys);
    expect_error(call(id, ++seq), kEnosys);
  }
  EXPECT_TRUE(tool_->take_unmatched().empty());
}

TEST_F(KvmiLibkvmiEdge, ABatchBetweenRepliesOffAndOnIsAnsweredOnlyAtTheEnd) {
  // libkvmi's kvmi_pause_all_vcpus / kvmi_batch_commit: 27 {enable 0, now 1}, the commands, 27
  // {enable 1, now 1}, all in one write; only the last 27 is answered.
  std::vector<std::byte> batch;
  append(batch, cmd_response(10, 0, 1));
  append(batch, raw_header(id_of(Lib::GetGuestInfo), 11, 0));
  append(batch, raw_header(99, 12, 0));                        // ENOSYS, unanswered
  append(batch, raw_header(id_of(Lib::ReadPhysical), 13, 0));  // EINVAL, unanswered
  append(batch, raw_message(id_of(Lib::GetRegisters), 14, kvmi::VcpuHdr{0, 0, 0}));  // EAGAIN
  append(batch, cmd_response(15, 1, 1));
  ASSERT_TRUE(tool_->send_raw(batch));
  auto replies = replies_after_a_round_trip();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].hdr.id, id_of(Lib::ControlCmdResponse));
  EXPECT_EQ(replies[0].hdr.seq, 15u);
  EXPECT_EQ(replies[0].hdr.size, 8u);
  EXPECT_EQ(error_of(replies[0]), 0);
}

TEST_F(KvmiLibkvmiEdge, NowZeroChangesTheSettingFromTheNextCommand) {
  std::vector<std::byte> batch;
  append(batch, cmd_response(20, 0, 0));                       // answered: takes effect afterwards
  append(batch, raw_header(id_of(Lib::GetGuestInfo), 21, 0));  // not answered
  append(batch, cmd_response(22, 1, 0));                       // not answered: still off for itself
  append(batch, raw_header(id_of(Lib::GetGuestInfo), 23, 0));  // answered
  ASSERT_TRUE(tool_->send_raw(batch));
  auto replies = replies_after_a_round_trip();
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].hdr.seq, 20u);
  EXPECT_EQ(replies[0].hdr.id, id_of(Lib::ControlCmdResponse));
  EXPECT_EQ(replies[1].hdr.seq, 23u);
  EXPECT_EQ(replies[1].hdr.id, id_of(Lib::GetGuestInfo));
  EXPECT_EQ(replies[1].payload.size(), 8u + 16u);
}

TEST_F(KvmiLibkvmiEdge, RepliesOffAndOnWithNowOneAndBadPaddings) {
  // enable=1,now=1 while already on is simply answered; bad paddings are -KVM_EINVAL.
  expect_error(
      call(id_of(Lib::ControlCmdResponse), 30, kvmi::libkvmi::ControlCmdResponse{1, 1, 0, 0}), 0);
  expect_error(
      call(id_of(Lib::ControlCmdResponse), 31, kvmi::libkvmi::ControlCmdResponse{1, 1, 7, 0}),
      kEinval);
  // enable=0,now=1 is itself not answered: the next answer is the re-enabling command's.
  std::vector<std::byte> batch;
  append(batch, cmd_response(32, 0, 1));
  append(batch, cmd_response(33, 1, 1));
  ASSERT_TRUE(tool_->send_raw(batch));
  auto replies = replies_after_a_round_trip();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].hdr.seq, 33u);
}

TEST_F(KvmiLibkvmiEdge, CheckCommandAndCheckEventTakeLibkvmiIds) {
  kvmi::VmCheckCommand command{};
  command.id = id_of(Lib::PauseVcpu);
  expect_error(call(id_of(Lib::CheckCommand), 40, command), 0);
  command.id = id_of(Lib::ControlCmdResponse);
  expect_error(call(id_of(Lib::CheckCommand), 41, command), 0);
  command.id = id_of(Lib::SwitchEptView);  // known to libkvmi, not served
  expect_error(call(id_of(Lib::CheckCommand), 42, command), kEperm);
  command.id = 500;
  expect_error(call(id_of(Lib::CheckCommand), 43, command), kEinval);

  kvmi::VmCheckEvent event{};
  event.id = static_cast<std::uint16_t>(kvmi::libkvmi::EventId::PauseVcpu);
  expect_error(call(id_of(Lib::CheckEvent), 44, event), 0);
  event.id = static_cast<std::uint16_t>(kvmi::libkvmi::EventId::Cpuid);
  expect_error(call(id_of(Lib::CheckEvent), 45, event), kEperm);
  event.id = 99;
  expect_error(call(id_of(Lib::CheckEvent), 46, event), kEinval);
  // The typed call speaks v7 ids to its caller and libkvmi ids on the wire.
  EXPECT_TRUE(tool_->check_event(static_cast<std::uint16_t>(kvmi::EventId::Breakpoint)));
  EXPECT_TRUE(tool_->check_command(static_cast<std::uint16_t>(kvmi::MessageId::VcpuPause)));
}

TEST_F(KvmiLibkvmiEdge, ControlVmEventsTakesLibkvmiEventIds) {
  kvmi::VmControlEvents req{};
  req.event_id = static_cast<std::uint16_t>(kvmi::libkvmi::EventId::Unhook);
  req.enable = 1;
  expect_error(call(id_of(Lib::ControlVmEvents), 50, req), 0);
  // libkvmi 10 is PAUSE_VCPU, a vCPU event (in v7, 10 would be SINGLESTEP: also refused).
  req.event_id = static_cast<std::uint16_t>(kvmi::libkvmi::EventId::PauseVcpu);
  expect_error(call(id_of(Lib::ControlVmEvents), 51, req), kEinval);
  req.event_id = static_cast<std::uint16_t>(kvmi::libkvmi::EventId::CreateVcpu);
  expect_error(call(id_of(Lib::ControlVmEvents), 52, req), kEinval);
  EXPECT_TRUE(tool_->control_vm_events(kvmi::EventId::Unhook, false));
}

TEST_F(KvmiLibkvmiEdge, SetPageAccessHeaderIsViewThenCount) {
  struct {
    kvmi::libkvmi::SetPageAccess head;
    kvmi::PageAccessEntry entry;
  } req{{1, 1, 0}, {0x1000, kvmi::kPageAccessR, 0, 0, 0}};
  expect_error(call(id_of(Lib::SetPageAccess), 60, req), kEopnotsupp);
  req.head.view = 0;
  auto reply = call(id_of(Lib::SetPageAccess), 61, req);
  // View 0 reaches the v7 handler (or -KVM_ENOSYS where page access is not built in).
  EXPECT_NE(error_of(reply), kEopnotsupp);
  if (error_of(reply) != 0) expect_error(reply, error_of(reply));
}

TEST_F(KvmiLibkvmiEdge, VcpuCommandErrorsCarryTheLibkvmiIdAndEightBytes) {
  // A memory-only target has no vCPU threads: -KVM_EAGAIN, from the v7 dispatcher.
  kvmi::VcpuHdr vcpu{0, 0, 0};
  expect_error(call(id_of(Lib::GetRegisters), 70, vcpu), kvmi::to_wire(kvmi::Errno::Again));
  expect_error(call(id_of(Lib::PauseVcpu), 71, vcpu), kvmi::to_wire(kvmi::Errno::Again));
  vcpu.vcpu = 9;
  expect_error(call(id_of(Lib::ControlCr), 72, vcpu), kEinval);
}

TEST(KvmiRfcV7Edge, ControlCmdResponseIsUnknownInRfcV7Mode) {
  auto memory = glassbox::vmm::GuestMemory::create(kRam);
  ASSERT_TRUE(memory);
  intro::GuestMemoryTarget target(*memory, 1);
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  auto vmm = std::async(std::launch::async, [&] {
    if (!intro::run_vmm_handshake(fds[0], {}, {})) return std::string("handshake");
    return intro::run_receiver_on_fd(fds[0], target, intro::Permissions::allow_all());
  });
  auto session = Session::adopt(fds[1]);
  ASSERT_TRUE(session);
  auto reply = (*session)->call_raw(cmd_response(5, 0, 1));
  ASSERT_TRUE(reply);
  EXPECT_EQ(error_of(*reply), kEnosys);
  // And 7 is still v7's VM_READ_PHYSICAL: an empty one is -KVM_EINVAL, not a pause.
  reply = (*session)->call_raw(raw_header(7, 6, 0));
  ASSERT_TRUE(reply);
  EXPECT_EQ(error_of(*reply), kEinval);
  (*session)->close();
  vmm.wait();
  ::close(fds[0]);
}

}  // namespace
