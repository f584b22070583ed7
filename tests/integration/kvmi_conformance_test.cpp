// KVMI conformance against the real glassbox running a real guest (spec/kvmi-v7.md §1.5, §1.6,
// §2.3): one test per validation rule and per error of each VM command. The VMM listens
// (--introspect listen:unix:PATH); the tool side is the client library.
#include <fcntl.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "glassbox/boot/boot_info.h"
#include "kvmi_test_helpers.h"

using namespace glassbox::test::kvmi_support;
using glassbox::test::GlassboxProcess;
using glassbox::test::RunResult;

namespace {

constexpr std::uint64_t kGuestRam = 128ULL << 20;  // glassbox's default --memory
constexpr std::uint16_t id_of(kvmi::MessageId id) {
  return static_cast<std::uint16_t>(id);
}

class KvmiConformance : public ::testing::Test {
 protected:
  void start(std::vector<std::string> extra = {}) {
    socket_ = dir_ / "kvmi.sock";
    vmm_ =
        std::make_unique<GlassboxProcess>(io_loop_args("listen:unix:" + socket_.string(), extra));
    session_ = connect_when_ready(socket_);
    ASSERT_NE(session_, nullptr);
  }
  void SetUp() override {}

  // Ends the VMM with SIGTERM and returns what it logged; the exit status proves the guest was
  // still running until then.
  RunResult stop() {
    session_.reset();
    vmm_->send_signal(SIGTERM);
    return vmm_->wait(60s);
  }

  Message call(const std::vector<std::byte>& message) {
    auto reply = session_->call_raw(message);
    EXPECT_TRUE(reply) << reply.error().message;
    return reply ? *reply : Message{};
  }

  // Sends a well-formed command with `body` and returns its error code.
  template <typename T>
  std::int32_t error_for(kvmi::MessageId id, const T& body) {
    return error_of(call(raw_message(id_of(id), next_seq_++, body)));
  }

  // The VMM takes the next tool only once the previous connection has ended (and its reason is
  // logged), so a served new tool proves that without depending on timing.
  void reconnect() {
    session_ = connect_when_ready(socket_);
    ASSERT_NE(session_, nullptr);
    expect_still_serving();
  }

  void expect_still_serving() {
    auto version = session_->get_version();
    ASSERT_TRUE(version) << version.error().message;
    EXPECT_EQ(version->version, kvmi::kVersion);
  }

  TempDir dir_;
  std::filesystem::path socket_;
  std::unique_ptr<GlassboxProcess> vmm_;
  std::unique_ptr<Session> session_;
  std::uint32_t next_seq_ = 1000;
};

// ---- handshake and basics ----------------------------------------------------------------------

TEST_F(KvmiConformance, HelloCarriesTheVmNameAStartTimeAndAVersion4Uuid) {
  start({"--name", "conformance-vm"});
  EXPECT_EQ(session_->vm().name, "conformance-vm");
  EXPECT_EQ(session_->vm().hello_size, kvmi::kVmHelloSize);
  EXPECT_GT(session_->vm().start_time_ms, 1'600'000'000'000);
  EXPECT_EQ(session_->vm().uuid[6] >> 4, 4);
  EXPECT_EQ(stop().exit_status, kSigtermStatus);
}

TEST_F(KvmiConformance, ListenSocketIsOwnerOnly) {
  start();
  struct stat st {};
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(KvmiConformance, GetVersionAnswersVersion1) {
  start();
  auto reply = call(raw_header(id_of(kvmi::MessageId::GetVersion), 7, 0));
  EXPECT_EQ(reply.hdr.id, id_of(kvmi::MessageId::GetVersion));
  EXPECT_EQ(reply.hdr.seq, 7u);
  ASSERT_EQ(reply.hdr.size, 8 + sizeof(kvmi::GetVersionReply));
  EXPECT_EQ(error_of(reply), 0);
  kvmi::GetVersionReply version{};
  std::memcpy(&version, reply.payload.data() + 8, sizeof(version));
  EXPECT_EQ(version.version, kvmi::kVersion);
  EXPECT_EQ(version.padding, 0u);
  for (auto b : version.features.padding) EXPECT_EQ(b, 0);
}

// ---- §1.5 / §1.6: framing rules
// ------------------------------------------------------------------

TEST_F(KvmiConformance, OversizedHeaderClosesWithoutReply) {
  start();
  auto pending = session_->submit_raw(raw_header(id_of(kvmi::MessageId::GetVersion), 1, 0));
  ASSERT_TRUE(pending);
  ASSERT_TRUE(pending->wait(30s));
  // size 8185 > KVMI_MSG_SIZE: the header alone, the VMM must not wait for the payload.
  kvmi::MsgHdr hdr{id_of(kvmi::MessageId::GetVersion), kvmi::kMsgSize + 1, 2};
  auto oversized = session_->submit_raw(std::as_bytes(std::span(&hdr, 1)));
  ASSERT_TRUE(oversized);
  auto reply = oversized->wait_raw(30s);
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().kind, ErrorKind::Closed) << reply.error().message;
  auto r = stop();
  EXPECT_EQ(r.exit_status, kSigtermStatus) << r.err;
  EXPECT_NE(r.err.find("8185 payload bytes"), std::string::npos) << r.err;
}

TEST_F(KvmiConformance, MaximumSizedPayloadIsAccepted) {
  start();
  // GET_VERSION with 8184 ignored payload bytes: extra bytes are tolerated (§1.6).
  auto reply = call(raw_header(id_of(kvmi::MessageId::GetVersion), 3, kvmi::kMsgSize));
  EXPECT_EQ(error_of(reply), 0);
  expect_still_serving();
}

TEST_F(KvmiConformance, UnknownIdsGetEnosysWithIdAndSeqCopied) {
  start();
  for (std::uint16_t id : {std::uint16_t{24}, std::uint16_t{63}, std::uint16_t{64},
                           std::uint16_t{1000}, std::uint16_t{0xffff}}) {
    auto reply = call(raw_header(id, 40 + id, 32));  // with a payload that must be discarded
    EXPECT_EQ(reply.hdr.id, id);
    EXPECT_EQ(reply.hdr.seq, 40u + id);
    EXPECT_EQ(reply.hdr.size, 8u);
    EXPECT_EQ(error_of(reply), -kvmi::kKvmEnosys) << "id " << id;
  }
  expect_still_serving();
}

TEST_F(KvmiConformance, IdOneFromTheToolGetsEnosysThatLooksLikeAnEvent) {
  start();
  ASSERT_TRUE(session_->send_raw(raw_header(id_of(kvmi::MessageId::Event), 77, 0)));
  // The reply carries id 1, so the client files it as an event (§1.6 corner case).
  auto event = session_->wait_event(30s);
  ASSERT_TRUE(event) << event.error().message;
  EXPECT_EQ(event->seq(), 77u);
  ASSERT_EQ(event->payload().size(), 8u);
  kvmi::ErrorCode code{};
  std::memcpy(&code, event->payload().data(), sizeof(code));
  EXPECT_EQ(code.err, -kvmi::kKvmEnosys);
  expect_still_serving();
}

TEST_F(KvmiConformance, SetPageAccessWithNoEntriesSucceeds) {
  start();
  kvmi::VmSetPageAccess req{};
  EXPECT_EQ(error_for(kvmi::MessageId::VmSetPageAccess, req), 0);
}

TEST_F(KvmiConformance, TruncatedPayloadClosesAndIsLogged) {
  start();
  expect_still_serving();
  auto message = raw_header(id_of(kvmi::MessageId::VmReadPhysical), 5, 16);
  message.resize(sizeof(kvmi::MsgHdr) + 4);  // 4 of the announced 16 bytes, then EOF
  ASSERT_TRUE(session_->send_raw(message));
  session_->close();
  reconnect();
  auto r = stop();
  EXPECT_EQ(r.exit_status, kSigtermStatus) << r.err;
  EXPECT_NE(r.err.find("truncated payload"), std::string::npos) << r.err;
}

TEST_F(KvmiConformance, TruncatedHeaderClosesAndIsLogged) {
  start();
  expect_still_serving();
  auto message = raw_header(id_of(kvmi::MessageId::GetVersion), 5, 0);
  message.resize(3);
  ASSERT_TRUE(session_->send_raw(message));
  session_->close();
  reconnect();
  auto r = stop();
  EXPECT_NE(r.err.find("truncated header"), std::string::npos) << r.err;
}

TEST_F(KvmiConformance, ShortCommandPayloadReadsAsZeros) {
  start();
  // Only the 2-byte id of kvmi_vm_check_command: the paddings read as zero, so it succeeds.
  std::uint16_t id = id_of(kvmi::MessageId::VmGetInfo);
  auto reply = call(raw_message(id_of(kvmi::MessageId::VmCheckCommand), 9, id));
  EXPECT_EQ(error_of(reply), 0);
}

TEST_F(KvmiConformance, PipelinedRequestsAreAllAnsweredAndMatchedBySeq) {
  start();
  std::vector<glassbox::client::PendingReply> pending;
  for (std::uint64_t i = 0; i < 64; ++i) {
    auto p = session_->submit_read_physical(GLASSBOX_BOOT_INFO_GPA, 8 + i);
    ASSERT_TRUE(p) << p.error().message;
    pending.push_back(std::move(*p));
  }
  for (std::uint64_t i = 0; i < pending.size(); ++i) {
    auto reply = pending[i].wait(30s);
    ASSERT_TRUE(reply) << reply.error().message;
    EXPECT_EQ(reply->data().size(), 8 + i);
  }
}

// ---- §1.5 step 5: permissions -----------------------------------------------------------------

TEST_F(KvmiConformance, DisallowedCommandGetsEperm) {
  start({"--allow-commands", "vm_get_info,KVMI_VM_GET_MAX_GFN"});
  auto count = session_->get_vcpu_count();
  EXPECT_TRUE(count) << count.error().message;
  EXPECT_TRUE(session_->get_max_gfn());
  auto read = session_->read_physical(GLASSBOX_BOOT_INFO_GPA, 8);
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(kvmi::Errno::Perm)) << read.error().message;
  kvmi::VmWritePhysical write{};
  EXPECT_EQ(error_for(kvmi::MessageId::VmWritePhysical, write), -kvmi::kKvmEperm);
  // A disallowed vCPU command is refused before any vCPU handling.
  kvmi::VcpuHdr vcpu{};
  EXPECT_EQ(error_for(kvmi::MessageId::VcpuGetInfo, vcpu), -kvmi::kKvmEperm);
}

TEST_F(KvmiConformance, AlwaysAllowedCommandsWorkWhenEverythingElseIsDisallowed) {
  start({"--allow-commands", "none", "--allow-events", "none"});
  expect_still_serving();
  EXPECT_TRUE(session_->check_command(id_of(kvmi::MessageId::GetVersion)));
  EXPECT_TRUE(session_->check_command(id_of(kvmi::MessageId::VmCheckCommand)));
  EXPECT_TRUE(session_->check_command(id_of(kvmi::MessageId::VmCheckEvent)));
  auto read = session_->check_command(id_of(kvmi::MessageId::VmReadPhysical));
  ASSERT_FALSE(read);
  EXPECT_TRUE(read.error().is(kvmi::Errno::Perm));
  auto unhook = session_->check_event(static_cast<std::uint16_t>(kvmi::EventId::Unhook));
  ASSERT_FALSE(unhook);
  EXPECT_TRUE(unhook.error().is(kvmi::Errno::Perm));
  auto info = session_->get_vcpu_count();
  ASSERT_FALSE(info);
  EXPECT_TRUE(info.error().is(kvmi::Errno::Perm));
}

TEST_F(KvmiConformance, AllowListsAcceptNumericIds) {
  start({"--allow-commands", "5,6", "--allow-events", "0"});
  EXPECT_TRUE(session_->get_vcpu_count());
  EXPECT_TRUE(session_->check_event(0));
  EXPECT_TRUE(session_->control_vm_events(kvmi::EventId::Unhook, true));
  auto gfn = session_->get_max_gfn();
  ASSERT_FALSE(gfn);
  EXPECT_TRUE(gfn.error().is(kvmi::Errno::Perm));
}

// ---- §2.3.2 VM_CHECK_COMMAND --------------------------------------------------------------------

TEST_F(KvmiConformance, CheckCommandErrors) {
  start();
  kvmi::VmCheckCommand req{};
  req.id = id_of(kvmi::MessageId::VmReadPhysical);
  EXPECT_EQ(error_for(kvmi::MessageId::VmCheckCommand, req), 0);
  req.padding1 = 1;
  EXPECT_EQ(error_for(kvmi::MessageId::VmCheckCommand, req), -kvmi::kKvmEinval);
  req.padding1 = 0;
  req.padding2 = 1;
  EXPECT_EQ(error_for(kvmi::MessageId::VmCheckCommand, req), -kvmi::kKvmEinval);
  req.padding2 = 0;
  req.id = kvmi::kNumMessages;
  EXPECT_EQ(error_for(kvmi::MessageId::VmCheckCommand, req), -kvmi::kKvmEinval);
  // Ids 0 and 1 are known but never allowed as commands.
  req.id = 0;
  EXPECT_EQ(error_for(kvmi::MessageId::VmCheckCommand, req), -kvmi::kKvmEperm);
  req.id = 1;
  EXPECT_EQ(error_for(kvmi::MessageId::VmCheckCommand, req), -kvmi::kKvmEperm);
}

// ---- §2.3.3 VM_CHECK_EVENT ----------------------------------------------------------------------

TEST_F(KvmiConformance, CheckEventErrors) {
  start();
  kvmi::VmCheckEvent req{};
  req.id = static_cast<std::uint16_t>(kvmi::EventId::Unhook);
  EXPECT_EQ(error_for(kvmi::MessageId::VmCheckEvent, req), 0);
  req.padding1 = 1;
  EXPECT_EQ(error_for(kvmi::MessageId::VmCheckEvent, req), -kvmi::kKvmEinval);
  req.padding1 = 0;
  req.padding2 = 1;
  EXPECT_EQ(error_for(kvmi::MessageId::VmCheckEvent, req), -kvmi::kKvmEinval);
  req.padding2 = 0;
  req.id = kvmi::kNumEvents;
  EXPECT_EQ(error_for(kvmi::MessageId::VmCheckEvent, req), -kvmi::kKvmEinval);
}

TEST_F(KvmiConformance, CheckEventRefusesWhatStockKvmCannotIntercept) {
  start();
  for (auto event : {kvmi::EventId::Cr, kvmi::EventId::Xsetbv, kvmi::EventId::Descriptor}) {
    auto r = session_->check_event(static_cast<std::uint16_t>(event));
    ASSERT_FALSE(r) << kvmi::event_name(event);
    EXPECT_TRUE(r.error().is(kvmi::Errno::Perm)) << r.error().message;
  }
}

TEST_F(KvmiConformance, CheckEventRefusesDisallowedEvents) {
  start({"--allow-events", "unhook,trap"});
  auto trap = session_->check_event(static_cast<std::uint16_t>(kvmi::EventId::Trap));
  EXPECT_TRUE(trap) << trap.error().message;
  auto pf = session_->check_event(static_cast<std::uint16_t>(kvmi::EventId::Pf));
  ASSERT_FALSE(pf);
  EXPECT_TRUE(pf.error().is(kvmi::Errno::Perm));
}

// ---- §2.3.4 VM_GET_INFO -------------------------------------------------------------------------

TEST_F(KvmiConformance, GetInfoCountsTheOnlineVcpus) {
  start({"--cpus", "2"});
  auto count = session_->get_vcpu_count();
  ASSERT_TRUE(count) << count.error().message;
  EXPECT_EQ(*count, 2u);
}

// ---- §2.3.5 VM_CONTROL_EVENTS -------------------------------------------------------------------

TEST_F(KvmiConformance, ControlEventsErrors) {
  start({"--allow-events", "breakpoint"});
  kvmi::VmControlEvents req{};
  req.event_id = static_cast<std::uint16_t>(kvmi::EventId::Unhook);
  req.enable = 1;
  // UNHOOK is a VM event but not allowed here.
  EXPECT_EQ(error_for(kvmi::MessageId::VmControlEvents, req), -kvmi::kKvmEperm);
  req.padding1 = 1;
  EXPECT_EQ(error_for(kvmi::MessageId::VmControlEvents, req), -kvmi::kKvmEinval);
  req.padding1 = 0;
  req.padding2 = 1;
  EXPECT_EQ(error_for(kvmi::MessageId::VmControlEvents, req), -kvmi::kKvmEinval);
  req.padding2 = 0;
  // A vCPU event (even an allowed one) is not controlled here.
  req.event_id = static_cast<std::uint16_t>(kvmi::EventId::Breakpoint);
  EXPECT_EQ(error_for(kvmi::MessageId::VmControlEvents, req), -kvmi::kKvmEinval);
  req.event_id = kvmi::kNumEvents;
  EXPECT_EQ(error_for(kvmi::MessageId::VmControlEvents, req), -kvmi::kKvmEinval);
}

TEST_F(KvmiConformance, ControlEventsEnablesAndDisablesUnhook) {
  start();
  EXPECT_TRUE(session_->control_vm_events(kvmi::EventId::Unhook, true));
  EXPECT_TRUE(session_->control_vm_events(kvmi::EventId::Unhook, false));
}

// ---- §2.3.6 VM_READ_PHYSICAL
// ---------------------------------------------------------------------

TEST_F(KvmiConformance, ReadPhysicalSeesTheBootInfoMagic) {
  start();
  auto bytes = session_->read_physical(GLASSBOX_BOOT_INFO_GPA, 8);
  ASSERT_TRUE(bytes) << bytes.error().message;
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes->data()), 8), "GLASSBOX");
  // A whole page, and a range ending exactly at the page end.
  auto page = session_->read_physical(GLASSBOX_BOOT_INFO_GPA, 4096);
  ASSERT_TRUE(page) << page.error().message;
  EXPECT_EQ(std::memcmp(page->data(), bytes->data(), 8), 0);
  EXPECT_TRUE(session_->read_physical(GLASSBOX_BOOT_INFO_GPA + 4088, 8));
}

TEST_F(KvmiConformance, ReadPhysicalRejectsBadSizesAndPageCrossing) {
  start();
  kvmi::VmReadPhysical req{GLASSBOX_BOOT_INFO_GPA, 0};
  EXPECT_EQ(error_for(kvmi::MessageId::VmReadPhysical, req), -kvmi::kKvmEinval);
  req.size = 4097;
  EXPECT_EQ(error_for(kvmi::MessageId::VmReadPhysical, req), -kvmi::kKvmEinval);
  req = {GLASSBOX_BOOT_INFO_GPA + 4095, 2};  // crosses into the next page
  EXPECT_EQ(error_for(kvmi::MessageId::VmReadPhysical, req), -kvmi::kKvmEinval);
  req = {GLASSBOX_BOOT_INFO_GPA + 1, 4096};
  EXPECT_EQ(error_for(kvmi::MessageId::VmReadPhysical, req), -kvmi::kKvmEinval);
  req = {GLASSBOX_BOOT_INFO_GPA, ~std::uint64_t{0}};  // must not wrap
  EXPECT_EQ(error_for(kvmi::MessageId::VmReadPhysical, req), -kvmi::kKvmEinval);
  expect_still_serving();
}

TEST_F(KvmiConformance, ReadPhysicalOfAHoleGetsEnoent) {
  start();
  kvmi::VmReadPhysical req{kGuestRam, 8};  // first byte past RAM
  EXPECT_EQ(error_for(kvmi::MessageId::VmReadPhysical, req), -kvmi::kKvmEnoent);
  req = {0xfee00000, 4};  // the LAPIC window: no RAM behind it
  EXPECT_EQ(error_for(kvmi::MessageId::VmReadPhysical, req), -kvmi::kKvmEnoent);
  req = {~std::uint64_t{0} & ~std::uint64_t{0xfff}, 16};
  EXPECT_EQ(error_for(kvmi::MessageId::VmReadPhysical, req), -kvmi::kKvmEnoent);
  EXPECT_TRUE(session_->read_physical(kGuestRam - 8, 8));
}

// ---- §2.3.7 VM_WRITE_PHYSICAL
// --------------------------------------------------------------------

TEST_F(KvmiConformance, WritePhysicalRoundTripsThroughGuestMemory) {
  start();
  // The top page of RAM: io_loop never touches it.
  const std::uint64_t gpa = kGuestRam - 4096 + 100;
  std::vector<std::byte> data(300);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i * 7 + 1);
  ASSERT_TRUE(session_->write_physical(gpa, data));
  auto back = session_->read_physical(gpa, data.size());
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, data);
}

TEST_F(KvmiConformance, WritePhysicalRejectsBadSizesPageCrossingAndHoles) {
  start();
  struct {
    kvmi::VmWritePhysical req;
    std::uint8_t data[16];
  } msg{};
  msg.req = {kGuestRam - 4096, 0};
  EXPECT_EQ(error_for(kvmi::MessageId::VmWritePhysical, msg), -kvmi::kKvmEinval);
  msg.req = {kGuestRam - 4096 - 8, 16};  // crosses a page boundary
  EXPECT_EQ(error_for(kvmi::MessageId::VmWritePhysical, msg), -kvmi::kKvmEinval);
  msg.req = {kGuestRam, 16};  // past RAM
  EXPECT_EQ(error_for(kvmi::MessageId::VmWritePhysical, msg), -kvmi::kKvmEnoent);
  // More payload than `size` needs is fine: only `size` bytes are written.
  msg.req = {kGuestRam - 4096, 4};
  EXPECT_EQ(error_for(kvmi::MessageId::VmWritePhysical, msg), 0);
  expect_still_serving();
}

TEST_F(KvmiConformance, WritePhysicalWithShortPayloadCloses) {
  start();
  struct {
    kvmi::VmWritePhysical req;
    std::uint8_t data[8];
  } msg{};
  msg.req = {kGuestRam - 4096, 16};  // announces 16 data bytes, carries 8
  auto pending = session_->submit_raw(raw_message(id_of(kvmi::MessageId::VmWritePhysical), 3, msg));
  ASSERT_TRUE(pending);
  auto reply = pending->wait_raw(30s);
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().kind, ErrorKind::Closed);
  auto r = stop();
  EXPECT_EQ(r.exit_status, kSigtermStatus) << r.err;
  EXPECT_NE(r.err.find("KVMI_VM_WRITE_PHYSICAL with 24 payload bytes"), std::string::npos) << r.err;
}

TEST_F(KvmiConformance, WritePhysicalWithHugeSizeClosesInsteadOfOverflowing) {
  start();
  kvmi::VmWritePhysical req{kGuestRam - 4096, ~std::uint64_t{0} - 8};
  auto pending = session_->submit_raw(raw_message(id_of(kvmi::MessageId::VmWritePhysical), 4, req));
  ASSERT_TRUE(pending);
  EXPECT_FALSE(pending->wait_raw(30s));
}

// ---- §2.3.16 VM_GET_MAX_GFN
// ----------------------------------------------------------------------

TEST_F(KvmiConformance, GetMaxGfnIsOnePastTheLastRamFrame) {
  start({"--memory", "64M"});
  auto gfn = session_->get_max_gfn();
  ASSERT_TRUE(gfn) << gfn.error().message;
  EXPECT_EQ(*gfn, (64ULL << 20) / 4096);
}

// ---- vCPU messages (served by the next issue)
// -----------------------------------------------------

TEST_F(KvmiConformance, VcpuCommandsCheckTheirHeaderBeforeTheyAreQueued) {
  start();
  kvmi::VcpuHdr vcpu{};
  EXPECT_EQ(error_for(kvmi::MessageId::VcpuGetInfo, vcpu), 0);
  vcpu.vcpu = 1;  // one vCPU only
  EXPECT_EQ(error_for(kvmi::MessageId::VcpuGetInfo, vcpu), -kvmi::kKvmEinval);
  vcpu = {0, 1, 0};
  EXPECT_EQ(error_for(kvmi::MessageId::VcpuGetRegisters, vcpu), -kvmi::kKvmEinval);
  vcpu = {0, 0, 1};
  EXPECT_EQ(error_for(kvmi::MessageId::VcpuPause, vcpu), -kvmi::kKvmEinval);
  // vCPU commands are served, so VM_CHECK_COMMAND advertises them.
  EXPECT_TRUE(session_->check_command(id_of(kvmi::MessageId::VcpuGetRegisters)));
  expect_still_serving();
}

TEST_F(KvmiConformance, EventReplyWithNonZeroVcpuPaddingCloses) {
  start();
  struct {
    kvmi::VcpuHdr vcpu;
    kvmi::EventReply reply;
  } msg{};
  msg.vcpu.padding2 = 5;
  auto pending = session_->submit_raw(raw_message(id_of(kvmi::MessageId::EventReply), 1, msg));
  ASSERT_TRUE(pending);
  EXPECT_FALSE(pending->wait_raw(30s));
  auto r = stop();
  EXPECT_NE(r.err.find("non-zero kvmi_vcpu_hdr paddings"), std::string::npos) << r.err;
}

}  // namespace
