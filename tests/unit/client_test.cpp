// Unit tests of the client library's framing, handshake and reply matching, against a scripted
// fake VMM on the other end of a socketpair (or of a unix socket for the two connection roles).
// The fake knows only the wire format; the real VMM is exercised by the integration tests.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "glassbox/client/listener.h"
#include "glassbox/client/session.h"
#include "glassbox/kvmi/abi.h"

namespace kvmi = glassbox::kvmi;
using glassbox::client::ErrorKind;
using glassbox::client::Listener;
using glassbox::client::Message;
using glassbox::client::Session;
using glassbox::client::SessionOptions;
using namespace std::chrono_literals;

namespace {

template <typename T>
std::vector<std::byte> to_bytes(const T& v) {
  std::vector<std::byte> out(sizeof(T));
  std::memcpy(out.data(), &v, sizeof(T));
  return out;
}

template <typename T>
T from_bytes(std::span<const std::byte> bytes, std::size_t offset = 0) {
  T v{};
  std::memcpy(&v, bytes.data() + offset, sizeof(T));
  return v;
}

bool read_all(int fd, void* buf, std::size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

void write_all(int fd, const void* buf, std::size_t n) {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    ASSERT_GT(r, 0);
    p += r;
    n -= static_cast<std::size_t>(r);
  }
}

// The VMM end of a connection: speaks just enough of the wire format to script a test.
class FakeVmm {
 public:
  FakeVmm() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    tool_fd_ = fds[0];
    fd_ = fds[1];
  }
  explicit FakeVmm(int connected_fd) : fd_(connected_fd) {}
  ~FakeVmm() {
    if (tool_fd_ >= 0) ::close(tool_fd_);
    close();
  }

  // The tool's end, handed over to Session::adopt (which then owns it).
  int take_tool_fd() { return std::exchange(tool_fd_, -1); }
  int fd() const { return fd_; }

  void send_hello(std::string_view name = "test-vm", std::uint32_t struct_size = 96) {
    kvmi::VmHello hello{};
    hello.struct_size = struct_size;
    for (int i = 0; i < 16; ++i) hello.uuid[i] = static_cast<std::uint8_t>(i + 1);
    hello.start_time = 1700000000123;
    std::memcpy(hello.name, name.data(), std::min(name.size(), sizeof(hello.name)));
    std::vector<char> bytes(struct_size, '\x5a');  // extension bytes the tool must skip
    std::memcpy(bytes.data(), &hello, std::min<std::size_t>(struct_size, sizeof(hello)));
    write_all(fd_, bytes.data(), bytes.size());
  }

  kvmi::ToolAnswer read_answer() {
    kvmi::ToolAnswer answer{};
    EXPECT_TRUE(read_all(fd_, &answer, sizeof(answer)));
    return answer;
  }

  std::optional<Message> read_message() {
    Message m;
    if (!read_all(fd_, &m.hdr, sizeof(m.hdr))) return std::nullopt;
    m.payload.resize(m.hdr.size);
    if (m.hdr.size && !read_all(fd_, m.payload.data(), m.hdr.size)) return std::nullopt;
    return m;
  }

  void send(kvmi::MsgHdr hdr, std::span<const std::byte> payload) {
    hdr.size = static_cast<std::uint16_t>(payload.size());
    std::vector<std::byte> bytes = to_bytes(hdr);
    bytes.insert(bytes.end(), payload.begin(), payload.end());
    write_all(fd_, bytes.data(), bytes.size());
  }

  void reply(const kvmi::MsgHdr& request, std::int32_t err, std::span<const std::byte> data = {}) {
    std::vector<std::byte> payload = to_bytes(kvmi::ErrorCode{err, 0});
    payload.insert(payload.end(), data.begin(), data.end());
    send(kvmi::MsgHdr{request.id, 0, request.seq}, payload);
  }

  void send_event(std::uint32_t seq, std::uint16_t vcpu, kvmi::EventId id,
                  std::span<const std::byte> specific = {}) {
    kvmi::Event common{};
    common.size = kvmi::kEventCommonSize;
    common.vcpu = vcpu;
    common.event = static_cast<std::uint8_t>(id);
    common.arch.mode = 8;
    common.arch.regs.rip = 0xffffffff81000000;
    std::vector<std::byte> payload = to_bytes(common);
    payload.insert(payload.end(), specific.begin(), specific.end());
    send(kvmi::MsgHdr{static_cast<std::uint16_t>(kvmi::MessageId::Event), 0, seq}, payload);
  }

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int tool_fd_ = -1;
  int fd_ = -1;
};

std::unique_ptr<Session> connect_session(FakeVmm& vmm, SessionOptions options = {}) {
  vmm.send_hello();
  auto session = Session::adopt(vmm.take_tool_fd(), std::move(options));
  EXPECT_TRUE(session.has_value()) << session.error().message;
  vmm.read_answer();
  return session ? std::move(*session) : nullptr;
}

// ---- handshake ---------------------------------------------------------------------------

TEST(ClientHandshake, AnswersZerosWithoutSecretAndReportsTheVmIdentity) {
  FakeVmm vmm;
  vmm.send_hello("guest-one");
  auto session = Session::adopt(vmm.take_tool_fd());
  ASSERT_TRUE(session.has_value()) << session.error().message;
  auto answer = vmm.read_answer();
  EXPECT_EQ(answer.struct_size, 24u);
  for (auto b : answer.cookie_hash) EXPECT_EQ(b, 0);
  const auto& vm = (*session)->vm();
  EXPECT_EQ(vm.name, "guest-one");
  EXPECT_EQ(vm.start_time_ms, 1700000000123);
  EXPECT_EQ(vm.uuid[0], 1);
  EXPECT_EQ(vm.uuid[15], 16);
  EXPECT_EQ(vm.hello_size, 96u);
}

TEST(ClientHandshake, AnswerCarriesSha1OfTheSecret) {
  FakeVmm vmm;
  vmm.send_hello();
  SessionOptions options;
  options.secret = std::vector<std::uint8_t>{'a', 'b', 'c'};
  auto session = Session::adopt(vmm.take_tool_fd(), options);
  ASSERT_TRUE(session.has_value()) << session.error().message;
  auto answer = vmm.read_answer();
  // SHA-1("abc") from FIPS 180-1.
  const std::uint8_t expected[20] = {0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e,
                                     0x25, 0x71, 0x78, 0x50, 0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d};
  EXPECT_EQ(std::memcmp(answer.cookie_hash, expected, 20), 0);
}

TEST(ClientHandshake, SkipsExtensionsOfALargerHelloAndStaysFramed) {
  FakeVmm vmm;
  vmm.send_hello("big", 104);  // the KVM-VMI variant with max_gpa appended
  auto session = Session::adopt(vmm.take_tool_fd());
  ASSERT_TRUE(session.has_value()) << session.error().message;
  vmm.read_answer();
  EXPECT_EQ((*session)->vm().hello_size, 104u);
  auto pending = (*session)->submit(kvmi::MessageId::VmGetMaxGfn);
  ASSERT_TRUE(pending.has_value());
  auto request = vmm.read_message();
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->hdr.id, static_cast<std::uint16_t>(kvmi::MessageId::VmGetMaxGfn));
  vmm.reply(request->hdr, 0, to_bytes(kvmi::VmGetMaxGfnReply{0x1000}));
  EXPECT_TRUE(pending->wait(2s).has_value());
}

TEST(ClientHandshake, RefusesAHelloTooShortToHoldTheName) {
  FakeVmm vmm;
  std::uint32_t size = 16;
  write_all(vmm.fd(), &size, sizeof(size));
  auto session = Session::adopt(vmm.take_tool_fd());
  ASSERT_FALSE(session.has_value());
  EXPECT_EQ(session.error().kind, ErrorKind::Handshake);
  EXPECT_NE(session.error().message.find("struct_size 16"), std::string::npos);
}

TEST(ClientHandshake, TimesOutWhenTheVmmStaysSilent) {
  FakeVmm vmm;
  SessionOptions options;
  options.handshake_timeout = 100ms;
  auto session = Session::adopt(vmm.take_tool_fd(), options);
  ASSERT_FALSE(session.has_value());
  EXPECT_EQ(session.error().kind, ErrorKind::Timeout);
}

TEST(ClientHandshake, FailsCleanlyWhenTheVmmHangsUpMidHello) {
  FakeVmm vmm;
  std::uint32_t size = 96;
  write_all(vmm.fd(), &size, sizeof(size));
  vmm.close();
  auto session = Session::adopt(vmm.take_tool_fd());
  ASSERT_FALSE(session.has_value());
  EXPECT_EQ(session.error().kind, ErrorKind::Handshake);
}

TEST(ClientHandshake, CutsAnUnterminatedNameAt63Bytes) {
  FakeVmm vmm;
  vmm.send_hello(std::string(64, 'n'));
  auto session = Session::adopt(vmm.take_tool_fd());
  ASSERT_TRUE(session.has_value());
  EXPECT_EQ((*session)->vm().name, std::string(63, 'n'));
}

// ---- requests and replies ----------------------------------------------------------------

TEST(ClientCalls, GetVersionSendsAnEmptyRequestAndDecodesTheReply) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  auto vmm_side = std::async(std::launch::async, [&] {
    auto request = vmm.read_message();
    ASSERT_TRUE(request.has_value());
    EXPECT_EQ(request->hdr.id, 2);
    EXPECT_EQ(request->hdr.size, 0);
    kvmi::GetVersionReply reply{};
    reply.version = kvmi::kVersion;
    reply.features.singlestep = 1;
    vmm.reply(request->hdr, 0, to_bytes(reply));
  });
  auto version = session->get_version();
  vmm_side.get();
  ASSERT_TRUE(version.has_value()) << version.error().message;
  EXPECT_EQ(version->version, 1u);
  EXPECT_TRUE(version->singlestep);
}

TEST(ClientCalls, EachTypedVmCommandSendsItsDocumentedRequest) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  std::vector<Message> seen;
  auto vmm_side = std::async(std::launch::async, [&] {
    while (auto request = vmm.read_message()) {
      seen.push_back(*request);
      std::vector<std::byte> data;
      switch (static_cast<kvmi::MessageId>(request->hdr.id)) {
        case kvmi::MessageId::VmGetInfo:
          data = to_bytes(kvmi::VmGetInfoReply{4, {}});
          break;
        case kvmi::MessageId::VmGetMaxGfn:
          data = to_bytes(kvmi::VmGetMaxGfnReply{0x40000});
          break;
        case kvmi::MessageId::VmReadPhysical: {
          auto req = from_bytes<kvmi::VmReadPhysical>(request->payload);
          data.assign(req.size, std::byte{0xab});
          break;
        }
        default:
          break;
      }
      vmm.reply(request->hdr, 0, data);
    }
  });
  EXPECT_TRUE(session->check_command(7).has_value());
  EXPECT_TRUE(session->check_event(9).has_value());
  EXPECT_EQ(session->get_vcpu_count().value_or(0), 4u);
  EXPECT_TRUE(session->control_vm_events(kvmi::EventId::Unhook, true).has_value());
  auto bytes = session->read_physical(0x1ff0, 16);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().message;
  EXPECT_EQ(bytes->size(), 16u);
  EXPECT_EQ((*bytes)[15], std::byte{0xab});
  const std::byte data[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
  EXPECT_TRUE(session->write_physical(0x2000, data).has_value());
  EXPECT_EQ(session->get_max_gfn().value_or(0), 0x40000u);
  session->close();  // the fake's read then sees EOF and its loop ends
  vmm_side.get();

  ASSERT_EQ(seen.size(), 7u);
  auto check_cmd = from_bytes<kvmi::VmCheckCommand>(seen[0].payload);
  EXPECT_EQ(seen[0].hdr.id, 3);
  EXPECT_EQ(seen[0].hdr.size, 8);
  EXPECT_EQ(check_cmd.id, 7);
  EXPECT_EQ(check_cmd.padding1 | check_cmd.padding2, 0u);
  EXPECT_EQ(seen[1].hdr.id, 4);
  EXPECT_EQ(from_bytes<kvmi::VmCheckEvent>(seen[1].payload).id, 9);
  EXPECT_EQ(seen[2].hdr.id, 5);
  EXPECT_EQ(seen[2].hdr.size, 0);
  auto control = from_bytes<kvmi::VmControlEvents>(seen[3].payload);
  EXPECT_EQ(seen[3].hdr.id, 6);
  EXPECT_EQ(control.event_id, 0);
  EXPECT_EQ(control.enable, 1);
  auto read = from_bytes<kvmi::VmReadPhysical>(seen[4].payload);
  EXPECT_EQ(seen[4].hdr.id, 7);
  EXPECT_EQ(read.gpa, 0x1ff0u);
  EXPECT_EQ(read.size, 16u);
  auto write = from_bytes<kvmi::VmWritePhysical>(seen[5].payload);
  EXPECT_EQ(seen[5].hdr.id, 8);
  EXPECT_EQ(seen[5].hdr.size, 16 + 3);
  EXPECT_EQ(write.gpa, 0x2000u);
  EXPECT_EQ(write.size, 3u);
  EXPECT_EQ(seen[5].payload[18], std::byte{3});
  EXPECT_EQ(seen[6].hdr.id, 17);
  // Every request got its own seq.
  std::set<std::uint32_t> seqs;
  for (const auto& m : seen) seqs.insert(m.hdr.seq);
  EXPECT_EQ(seqs.size(), seen.size());
}

TEST(ClientCalls, RepliesArrivingOutOfOrderReachTheirOwnRequests) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  std::vector<glassbox::client::PendingReply> pending;
  for (std::uint64_t i = 0; i < 3; ++i) {
    auto p = session->submit_read_physical(i * 4096, 8);
    ASSERT_TRUE(p.has_value());
    pending.push_back(std::move(*p));
  }
  std::vector<Message> requests;
  for (int i = 0; i < 3; ++i) requests.push_back(*vmm.read_message());
  // Answer last to first; each reply's bytes say which gpa it was for.
  for (int i = 2; i >= 0; --i) {
    auto req = from_bytes<kvmi::VmReadPhysical>(requests[i].payload);
    std::vector<std::byte> data(8, static_cast<std::byte>(req.gpa / 4096 + 1));
    vmm.reply(requests[i].hdr, 0, data);
  }
  for (int i = 0; i < 3; ++i) {
    auto reply = pending[i].wait(2s);
    ASSERT_TRUE(reply.has_value()) << reply.error().message;
    EXPECT_EQ(reply->data()[0], static_cast<std::byte>(i + 1));
  }
}

TEST(ClientCalls, ManyThreadsPipelineWithoutInterleavingOrMismatching) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  std::atomic<int> malformed{0};
  auto vmm_side = std::async(std::launch::async, [&] {
    while (auto request = vmm.read_message()) {
      if (request->hdr.id != 17 || request->hdr.size != 0) ++malformed;
      // The reply's gfn echoes the seq so the waiter can tell it got its own answer.
      vmm.reply(request->hdr, 0, to_bytes(kvmi::VmGetMaxGfnReply{request->hdr.seq}));
    }
  });
  constexpr int kThreads = 8, kPerThread = 200, kWindow = 8;
  std::atomic<int> wrong{0}, ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int done = 0; done < kPerThread; done += kWindow) {
        std::vector<glassbox::client::PendingReply> window;
        for (int i = 0; i < kWindow; ++i)
          window.push_back(*session->submit(kvmi::MessageId::VmGetMaxGfn));
        for (auto& p : window) {
          auto reply = p.wait(5s);
          if (!reply || from_bytes<std::uint64_t>(reply->data()) != p.seq()) {
            ++wrong;
          } else {
            ++ok;
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  session->close();  // the fake's read then sees EOF and its loop ends
  vmm_side.get();
  EXPECT_EQ(malformed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
}

TEST(ClientCalls, KvmiErrorNamesTheCommandAndTheCode) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  auto vmm_side = std::async(std::launch::async, [&] {
    auto request = vmm.read_message();
    vmm.reply(request->hdr, -kvmi::kKvmEnoent);
  });
  auto result = session->read_physical(0xfee00000, 4);
  vmm_side.get();
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().kind, ErrorKind::Kvmi);
  EXPECT_TRUE(result.error().is(kvmi::Errno::NoEnt));
  EXPECT_EQ(result.error().code, -2);
  EXPECT_NE(result.error().message.find("KVMI_VM_READ_PHYSICAL"), std::string::npos);
  EXPECT_NE(result.error().message.find("-KVM_ENOENT"), std::string::npos);
}

TEST(ClientCalls, EveryKvmErrorCodeIsReportedWithItsName) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  for (kvmi::Errno e : kvmi::kAllErrnos) {
    auto pending =
        session->submit(kvmi::MessageId::VmCheckCommand, to_bytes(kvmi::VmCheckCommand{12, 0, 0}));
    ASSERT_TRUE(pending.has_value());
    vmm.reply(vmm.read_message()->hdr, kvmi::to_wire(e));
    auto reply = pending->wait(2s);
    ASSERT_FALSE(reply.has_value());
    EXPECT_TRUE(reply.error().is(e));
    EXPECT_NE(reply.error().message.find(kvmi::error_name(e)), std::string::npos)
        << reply.error().message;
    EXPECT_NE(reply.error().message.find("KVMI_VM_CHECK_COMMAND"), std::string::npos);
  }
}

TEST(ClientCalls, ReplyShorterThanItsStructureIsAProtocolError) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  auto vmm_side = std::async(std::launch::async, [&] {
    auto request = vmm.read_message();
    vmm.reply(request->hdr, 0, std::vector<std::byte>(4));
  });
  auto gfn = session->get_max_gfn();
  vmm_side.get();
  ASSERT_FALSE(gfn.has_value());
  EXPECT_EQ(gfn.error().kind, ErrorKind::Protocol);
}

TEST(ClientCalls, OversizedRequestsAreRefusedBeforeSending) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  auto read = session->read_physical(0, 4097);
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().kind, ErrorKind::InvalidArgument);
  std::vector<std::byte> big(kvmi::kMsgSize);
  auto write = session->write_physical(0, big);
  ASSERT_FALSE(write.has_value());
  EXPECT_EQ(write.error().kind, ErrorKind::InvalidArgument);
}

TEST(ClientCalls, ATypedCallTimesOutAndItsLateReplyIsSetAside) {
  FakeVmm vmm;
  SessionOptions options;
  options.reply_timeout = 50ms;
  auto session = connect_session(vmm, options);
  auto gfn = session->get_max_gfn();
  ASSERT_FALSE(gfn.has_value());
  EXPECT_EQ(gfn.error().kind, ErrorKind::Timeout);
  auto request = vmm.read_message();
  vmm.reply(request->hdr, 0, to_bytes(kvmi::VmGetMaxGfnReply{1}));
  // The session still works, and the late reply is kept as unmatched.
  auto next = session->submit(kvmi::MessageId::VmGetMaxGfn);
  vmm.reply(vmm.read_message()->hdr, 0, to_bytes(kvmi::VmGetMaxGfnReply{2}));
  ASSERT_TRUE(next->wait(2s).has_value());
  auto unmatched = session->take_unmatched();
  ASSERT_EQ(unmatched.size(), 1u);
  EXPECT_EQ(unmatched[0].hdr.seq, request->hdr.seq);
}

// ---- raw messages ------------------------------------------------------------------------

TEST(ClientRaw, RawCallWaitsOnTheSeqItsHeaderNames) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  kvmi::MsgHdr hdr{99, 0, 777};  // an id v7 does not know
  auto pending = session->submit_raw(to_bytes(hdr));
  ASSERT_TRUE(pending.has_value());
  auto request = vmm.read_message();
  EXPECT_EQ(request->hdr.seq, 777u);
  vmm.reply(request->hdr, -kvmi::kKvmEnosys);
  auto reply = pending->wait_raw(2s);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->hdr.id, 99);
  EXPECT_EQ(from_bytes<kvmi::ErrorCode>(reply->payload).err, -1000);
}

TEST(ClientRaw, TheEnosysReplyToIdOneIsNotMistakenForAnEvent) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  kvmi::MsgHdr hdr{1, 0, 5};
  auto pending = session->submit_raw(to_bytes(hdr));
  ASSERT_TRUE(pending.has_value());
  vmm.reply(vmm.read_message()->hdr, -kvmi::kKvmEnosys);
  auto reply = pending->wait(2s);
  ASSERT_FALSE(reply.has_value());
  EXPECT_TRUE(reply.error().is(kvmi::Errno::NoSys));
  EXPECT_FALSE(session->poll_event().has_value());
}

TEST(ClientRaw, ASeqAlreadyInFlightIsRefused) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  kvmi::MsgHdr hdr{2, 0, 42};
  auto first = session->submit_raw(to_bytes(hdr));
  ASSERT_TRUE(first.has_value());
  auto second = session->submit_raw(to_bytes(hdr));
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().kind, ErrorKind::InvalidArgument);
}

TEST(ClientRaw, SendRawPutsTheBytesOnTheWireUnchanged) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  const std::byte fragment[3] = {std::byte{7}, std::byte{0}, std::byte{0xff}};
  ASSERT_TRUE(session->send_raw(fragment).has_value());
  std::byte got[3];
  ASSERT_TRUE(read_all(vmm.fd(), got, 3));
  EXPECT_EQ(std::memcmp(got, fragment, 3), 0);
}

// ---- events ------------------------------------------------------------------------------

TEST(ClientEvents, AnEventArrivingBeforeAReplyIsQueuedAndTheReplyStillMatches) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  auto vmm_side = std::async(std::launch::async, [&] {
    auto request = vmm.read_message();
    kvmi::EventPf pf{};
    pf.gva = 0x7fff0000;
    pf.gpa = 0x123000;
    pf.access = kvmi::kPageAccessW;
    vmm.send_event(1, 2, kvmi::EventId::Pf, to_bytes(pf));
    vmm.reply(request->hdr, 0, to_bytes(kvmi::VmGetMaxGfnReply{0x100}));
  });
  auto gfn = session->get_max_gfn();
  vmm_side.get();
  ASSERT_TRUE(gfn.has_value()) << gfn.error().message;
  EXPECT_EQ(*gfn, 0x100u);
  auto event = session->wait_event(2s);
  ASSERT_TRUE(event.has_value()) << event.error().message;
  EXPECT_EQ(event->seq(), 1u);
  EXPECT_EQ(event->vcpu(), 2);
  EXPECT_EQ(event->event_id(), static_cast<std::uint8_t>(kvmi::EventId::Pf));
  EXPECT_EQ(event->common().arch.regs.rip, 0xffffffff81000000u);
  auto pf = event->specific_as<kvmi::EventPf>();
  EXPECT_EQ(pf.gpa, 0x123000u);
  EXPECT_EQ(pf.access, kvmi::kPageAccessW);
}

TEST(ClientEvents, ReplyEventSendsIdZeroTheEventSeqAndTheVcpu) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  vmm.send_event(41, 3, kvmi::EventId::Msr, to_bytes(kvmi::EventMsr{0xc0000082, 0, 1, 2}));
  auto event = session->wait_event(2s);
  ASSERT_TRUE(event.has_value());
  ASSERT_TRUE(
      session->reply_event(*event, kvmi::EventAction::Continue, to_bytes(kvmi::EventMsrReply{1}))
          .has_value());
  auto reply = vmm.read_message();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->hdr.id, 0);
  EXPECT_EQ(reply->hdr.seq, 41u);
  EXPECT_EQ(reply->hdr.size, kvmi::event_reply_message_size(kvmi::EventId::Msr));
  auto vcpu = from_bytes<kvmi::VcpuHdr>(reply->payload);
  EXPECT_EQ(vcpu.vcpu, 3);
  EXPECT_EQ(vcpu.padding1 | vcpu.padding2, 0u);
  auto er = from_bytes<kvmi::EventReply>(reply->payload, 8);
  EXPECT_EQ(er.action, 0);
  EXPECT_EQ(er.event, static_cast<std::uint8_t>(kvmi::EventId::Msr));
  EXPECT_EQ(from_bytes<kvmi::EventMsrReply>(reply->payload, 16).new_val, 1u);
}

TEST(ClientEvents, AnErrorReplyToAnEventReplyIsSetAsideAsUnmatched) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  // §1.6: an event reply naming a bad vCPU is answered with id 0 and -KVM_EINVAL.
  vmm.reply(kvmi::MsgHdr{0, 0, 9}, -kvmi::kKvmEinval);
  vmm.send_event(10, 0, kvmi::EventId::PauseVcpu);
  ASSERT_TRUE(session->wait_event(2s).has_value());  // ordered after the stray reply
  auto unmatched = session->take_unmatched();
  ASSERT_EQ(unmatched.size(), 1u);
  EXPECT_EQ(unmatched[0].hdr.id, 0);
  EXPECT_EQ(from_bytes<kvmi::ErrorCode>(unmatched[0].payload).err, -22);
}

TEST(ClientEvents, WaitEventTimesOut) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  auto event = session->wait_event(20ms);
  ASSERT_FALSE(event.has_value());
  EXPECT_EQ(event.error().kind, ErrorKind::Timeout);
}

// ---- connection closed -------------------------------------------------------------------

TEST(ClientClose, APeerHangUpFailsEveryWaiterAndTheEventWaiter) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  auto a = session->submit(kvmi::MessageId::VmGetInfo);
  auto b = session->submit_read_physical(0, 16);
  ASSERT_TRUE(a && b);
  // Returns only the kind: GCC 12 warns falsely (-Wfree-nonheap-object) on a std::expected
  // carried through std::future at -O2.
  auto event_waiter = std::async(std::launch::async, [&] {
    auto event = session->wait_event();
    return event ? std::optional<ErrorKind>() : std::optional(event.error().kind);
  });
  vmm.close();
  auto ra = a->wait(5s);
  auto rb = b->wait(5s);
  ASSERT_FALSE(ra.has_value());
  ASSERT_FALSE(rb.has_value());
  EXPECT_EQ(ra.error().kind, ErrorKind::Closed);
  EXPECT_EQ(rb.error().kind, ErrorKind::Closed);
  EXPECT_NE(ra.error().message.find("KVMI_VM_GET_INFO"), std::string::npos);
  EXPECT_NE(rb.error().message.find("KVMI_VM_READ_PHYSICAL"), std::string::npos);
  EXPECT_NE(ra.error().message.find("peer closed"), std::string::npos) << ra.error().message;
  EXPECT_EQ(event_waiter.get(), ErrorKind::Closed);
  EXPECT_FALSE(session->is_open());
  auto later = session->get_version();
  ASSERT_FALSE(later.has_value());
  EXPECT_EQ(later.error().kind, ErrorKind::Closed);
}

TEST(ClientClose, EventsQueuedBeforeTheHangUpAreStillDelivered) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  vmm.send_event(1, 0, kvmi::EventId::Unhook);
  vmm.close();
  auto event = session->wait_event(2s);
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->event_id(), 0);
  auto next = session->wait_event(2s);
  ASSERT_FALSE(next.has_value());
  EXPECT_EQ(next.error().kind, ErrorKind::Closed);
}

TEST(ClientClose, ATruncatedMessageClosesTheSession) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  auto pending = session->submit(kvmi::MessageId::GetVersion);
  auto request = vmm.read_message();
  kvmi::MsgHdr hdr{2, 24, request->hdr.seq};  // promises 24 bytes, delivers 4
  write_all(vmm.fd(), &hdr, sizeof(hdr));
  write_all(vmm.fd(), "abcd", 4);
  vmm.close();
  auto reply = pending->wait(5s);
  ASSERT_FALSE(reply.has_value());
  EXPECT_EQ(reply.error().kind, ErrorKind::Closed);
  EXPECT_NE(session->close_reason().find("truncated"), std::string::npos)
      << session->close_reason();
}

TEST(ClientClose, ClosingTheSessionReleasesAThreadBlockedOnAReply) {
  FakeVmm vmm;
  auto session = connect_session(vmm);
  auto waiter = std::async(std::launch::async, [&] { return session->get_max_gfn(); });
  ASSERT_TRUE(vmm.read_message().has_value());
  session->close();
  auto result = waiter.get();
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().kind, ErrorKind::Closed);
  EXPECT_NE(result.error().message.find("closed by the tool"), std::string::npos);
}

// ---- both connection roles over a unix socket path ----------------------------------------

std::filesystem::path temp_socket_path(const char* tag) {
  return std::filesystem::temp_directory_path() /
         ("glassbox-client-test-" + std::to_string(::getpid()) + "-" + tag + ".sock");
}

int connect_unix(const std::filesystem::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST(ClientRoles, ListenerAcceptsAVmmThatConnectsToTheTool) {
  auto path = temp_socket_path("accept");
  {
    auto listener = Listener::listen(path);
    ASSERT_TRUE(listener.has_value()) << listener.error().message;
    EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    auto vmm_side = std::async(std::launch::async, [&] {
      FakeVmm vmm(connect_unix(path));
      vmm.send_hello("accepted");
      vmm.read_answer();
      auto request = vmm.read_message();
      vmm.reply(request->hdr, 0, to_bytes(kvmi::VmGetInfoReply{2, {}}));
    });
    auto session = listener->accept({}, 5s);
    ASSERT_TRUE(session.has_value()) << session.error().message;
    EXPECT_EQ((*session)->vm().name, "accepted");
    EXPECT_EQ((*session)->get_vcpu_count().value_or(0), 2u);
    vmm_side.get();
  }
  // The listener removed its socket file when it went away.
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(ClientRoles, AcceptTimesOutWhenNoVmmComes) {
  auto listener = Listener::listen(temp_socket_path("timeout"));
  ASSERT_TRUE(listener.has_value());
  auto session = listener->accept({}, 30ms);
  ASSERT_FALSE(session.has_value());
  EXPECT_EQ(session.error().kind, ErrorKind::Timeout);
}

TEST(ClientRoles, ConnectReachesAVmmListeningOnAUnixSocket) {
  auto path = temp_socket_path("connect");
  std::filesystem::remove(path);
  int listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listen_fd, 1), 0);
  auto vmm_side = std::async(std::launch::async, [&] {
    FakeVmm vmm(::accept(listen_fd, nullptr, nullptr));
    vmm.send_hello("listening-vmm");
    vmm.read_answer();
    auto request = vmm.read_message();
    kvmi::GetVersionReply reply{};
    reply.version = 1;
    vmm.reply(request->hdr, 0, to_bytes(reply));
  });
  auto session = Session::connect(path);
  ASSERT_TRUE(session.has_value()) << session.error().message;
  EXPECT_EQ((*session)->vm().name, "listening-vmm");
  EXPECT_EQ((*session)->get_version().value_or(glassbox::client::Version{}).version, 1u);
  vmm_side.get();
  ::close(listen_fd);
  std::filesystem::remove(path);
}

TEST(ClientRoles, ConnectToANonexistentPathIsAnIoError) {
  auto session = Session::connect("/nonexistent/glassbox.sock");
  ASSERT_FALSE(session.has_value());
  EXPECT_EQ(session.error().kind, ErrorKind::Io);
  EXPECT_NE(session.error().message.find("/nonexistent/glassbox.sock"), std::string::npos);
}

TEST(ClientSecret, ReadSecretFileReturnsTheFileBytesExactly) {
  auto path = std::filesystem::temp_directory_path() /
              ("glassbox-client-secret-" + std::to_string(::getpid()));
  {
    std::ofstream out(path, std::ios::binary);
    out.write("s3cr\0t\n", 7);
  }
  auto secret = glassbox::client::read_secret_file(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(secret.has_value());
  EXPECT_EQ(*secret, (std::vector<std::uint8_t>{'s', '3', 'c', 'r', 0, 't', '\n'}));
  auto missing = glassbox::client::read_secret_file(path);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind, ErrorKind::Io);
}

}  // namespace
