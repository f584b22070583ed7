// glassbox --kvmi-dialect libkvmi against the real VMM and guest kernel, connected the libkvmi way
// (the tool listens, the VMM connects: --introspect unix:PATH), with the project's client speaking
// libkvmi numbering. The sequences are the ones spec/libkvmi-dialect.md §1.3 and §2 describe
// libkvmi sending: the handshake then GET_VERSION at once, the pause-all batch bracketed by
// CONTROL_CMD_RESPONSE, event enabling, CR/MSR/PF control, READ_PHYSICAL of the whole RAM, ids it
// cannot be served answered -KVM_ENOSYS, event replies with libkvmi ids, and the PF reply with its
// 272-byte tail.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <deque>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "glassbox/boot/boot_info.h"
#include "glassbox/client/listener.h"
#include "glassbox/kvmi/dialect.h"
#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/handshake.h"
#include "kvmi_test_helpers.h"

namespace {

using namespace std::chrono_literals;
using namespace glassbox::test::kvmi_support;
using glassbox::client::Listener;
using glassbox::client::ReceivedEvent;
using glassbox::test::GlassboxProcess;
using Lib = kvmi::libkvmi::MessageId;
using LibEvent = kvmi::libkvmi::EventId;

constexpr std::int32_t kEnosys = kvmi::to_wire(kvmi::Errno::NoSys);
constexpr std::uint32_t kMsrEfer = 0xc0000080;
constexpr std::uint32_t kMsrLstar = 0xc0000082;

std::uint16_t id_of(Lib id) {
  return static_cast<std::uint16_t>(id);
}
std::uint16_t id_of(LibEvent id) {
  return static_cast<std::uint16_t>(id);
}

std::vector<std::string> vmm_args(const std::filesystem::path& socket, bool beacon = true) {
  std::vector<std::string> args = {"run",
                                   "--kernel",
                                   glassbox::test::guest_kernel().string(),
                                   "--cpus",
                                   "2",
                                   "--kvmi-dialect",
                                   "libkvmi",
                                   "--introspect",
                                   "unix:" + socket.string()};
  if (beacon) {
    // vCPU 1 loops in the beacon until a tool sets R12: the VM outlives every test.
    args.push_back("--cmdline");
    args.push_back("beacon");
  }
  return args;
}

SessionOptions libkvmi_options() {
  SessionOptions options;
  options.dialect = kvmi::Dialect::Libkvmi;
  options.reply_timeout = 15s;  // libkvmi's KVMI_MAX_TIMEOUT
  return options;
}

// A raw message: header, then the bytes of each part.
std::vector<std::byte> message(std::uint16_t id, std::uint32_t seq,
                               std::initializer_list<std::span<const std::byte>> parts) {
  std::size_t size = 0;
  for (auto p : parts) size += p.size();
  std::vector<std::byte> out = raw_header(id, seq, static_cast<std::uint16_t>(size));
  std::size_t at = sizeof(kvmi::MsgHdr);
  for (auto p : parts) {
    if (p.empty()) continue;  // an empty span may carry a null pointer, which memcpy must not get
    std::memcpy(out.data() + at, p.data(), p.size());
    at += p.size();
  }
  return out;
}
template <typename T>
std::span<const std::byte> bytes(const T& value) {
  return std::as_bytes(std::span(&value, 1));
}

class KvmiLibkvmi : public ::testing::Test {
 protected:
  void start(bool beacon = true) {
    auto listener = Listener::listen(dir_ / "introspector.sock");
    ASSERT_TRUE(listener) << listener.error().message;
    listener_.emplace(std::move(*listener));
    vm_ = std::make_unique<GlassboxProcess>(vmm_args(dir_ / "introspector.sock", beacon));
    auto session = listener_->accept(libkvmi_options(), 60s);
    ASSERT_TRUE(session) << session.error().message;
    tool_ = std::move(*session);
  }
  void TearDown() override {
    tool_.reset();
    if (vm_) {
      vm_->send_signal(SIGTERM);
      vm_->wait(60s);
    }
  }

  void wait_for_boot() {
    // Past boot: the kernel has its IDT, page tables and LSTAR (printed after the SYSCALL probe).
    ASSERT_TRUE(vm_->wait_for_output("syscall:", 30s)) << vm_->output_so_far();
  }

  Message call(std::vector<std::byte> request) {
    auto reply = tool_->call_raw(request);
    EXPECT_TRUE(reply) << reply.error().message;
    if (!reply) return {};
    kvmi::MsgHdr hdr{};
    std::memcpy(&hdr, request.data(), sizeof hdr);
    EXPECT_EQ(reply->hdr.id, hdr.id) << "a reply carries its request's id";
    return std::move(*reply);
  }
  // The reply's error code; an error reply must be exactly 8 bytes (dialect spec §1.3).
  std::int32_t status_of(const Message& reply) {
    const std::int32_t err = error_of(reply);
    if (err != 0) {
      EXPECT_EQ(reply.payload.size(), sizeof(kvmi::ErrorCode)) << "error " << err;
    }
    return err;
  }

  std::uint32_t next_seq() { return seq_++; }

  // libkvmi's kvmi_control_events: CONTROL_EVENTS (9) with a libkvmi event id.
  std::int32_t control_event(std::uint16_t vcpu, LibEvent event, bool enable) {
    kvmi::VcpuControlEvents req{id_of(event), static_cast<std::uint8_t>(enable ? 1 : 0), 0, 0};
    return status_of(call(message(id_of(Lib::ControlEvents), next_seq(),
                                  {bytes(kvmi::VcpuHdr{vcpu, 0, 0}), bytes(req)})));
  }

  // SET_PAGE_ACCESS (21) with libkvmi's {view, count} header and one entry.
  std::int32_t set_page_access(std::uint64_t gpa, std::uint8_t access, std::uint16_t view = 0) {
    kvmi::libkvmi::SetPageAccess head{view, 1, 0};
    kvmi::PageAccessEntry entry{gpa, access, 0, 0, 0};
    return status_of(
        call(message(id_of(Lib::SetPageAccess), next_seq(), {bytes(head), bytes(entry)})));
  }

  // An event reply as libkvmi builds it: kvmi_vcpu_hdr, kvmi_event_reply with libkvmi's id of
  // the event, then the event-specific tail.
  void reply_raw(const ReceivedEvent& event, kvmi::EventAction action,
                 std::span<const std::byte> tail = {}) {
    kvmi::EventReply reply{static_cast<std::uint8_t>(action), event.wire_event_id(), 0, 0};
    ASSERT_TRUE(
        tool_->send_raw(message(id_of(Lib::EventReply), event.seq(),
                                {bytes(kvmi::VcpuHdr{event.vcpu(), 0, 0}), bytes(reply), tail})));
  }

  TempDir dir_;
  std::optional<Listener> listener_;
  std::unique_ptr<GlassboxProcess> vm_;
  std::unique_ptr<Session> tool_;
  std::uint32_t seq_ = 1000;
};

// ---- the handshake --------------------------------------------------------------------------

// libkvmi writes its 24-byte answer and GET_VERSION back to back; here they go in one write, so a
// VMM that read past the answer would lose the request.
TEST(KvmiLibkvmiHandshake, GetVersionRightBehindTheAnswerIsServedWithZeroFeatures) {
  TempDir dir;
  const auto path = dir / "introspector.sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 0), 0);  // as libkvmi does
  GlassboxProcess vm(vmm_args(path, true));
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 60000), 1) << "the VMM never connected";
  int conn = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(conn, 0);
  auto read_all = [&](void* out, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
      ssize_t n = ::recv(conn, static_cast<char*>(out) + done, size - done, 0);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  };
  kvmi::VmHello hello{};
  ASSERT_TRUE(read_all(&hello, sizeof hello));
  EXPECT_EQ(hello.struct_size, 96u);
  EXPECT_EQ(hello.name[sizeof(hello.name) - 1], '\0');

  std::array<std::byte, 24 + 8> out{};
  const std::uint32_t answer_size = 24;
  std::memcpy(out.data(), &answer_size, 4);  // cookie hash: zeros, as LibVMI leaves it
  const kvmi::MsgHdr get_version{id_of(Lib::GetVersion), 0, 1};
  std::memcpy(out.data() + 24, &get_version, sizeof get_version);
  ASSERT_EQ(::send(conn, out.data(), out.size(), MSG_NOSIGNAL), static_cast<ssize_t>(out.size()));

  kvmi::MsgHdr hdr{};
  ASSERT_TRUE(read_all(&hdr, sizeof hdr));
  EXPECT_EQ(hdr.id, id_of(Lib::GetVersion));
  EXPECT_EQ(hdr.seq, 1u);
  ASSERT_EQ(hdr.size, 8u + 16u);
  std::array<std::uint8_t, 24> reply{};
  ASSERT_TRUE(read_all(reply.data(), reply.size()));
  std::int32_t err = 0;
  std::uint32_t version = 0;
  std::memcpy(&err, reply.data(), 4);
  std::memcpy(&version, reply.data() + 8, 4);
  EXPECT_EQ(err, 0);
  EXPECT_EQ(version, 1u);
  for (std::size_t i = 16; i < reply.size(); ++i) EXPECT_EQ(reply[i], 0) << "features byte " << i;
  ::close(conn);
  ::close(fd);
  vm.send_signal(SIGTERM);
  EXPECT_EQ(vm.wait(60s).exit_status, kSigtermStatus);
}

// ---- commands and events -----------------------------------------------------------------

TEST_F(KvmiLibkvmi, PauseAllBatchGivesOnePauseEventPerVcpuAndOnlyTheLastReply) {
  start();
  wait_for_boot();
  auto count = tool_->get_vcpu_count();
  ASSERT_TRUE(count) << count.error().message;
  ASSERT_EQ(*count, 2u);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    // kvmi_pause_all_vcpus: 27 {enable 0, now 1}, one PAUSE_VCPU (7) with wait=1 per vCPU, 27
    // {enable 1, now 1}, in one write.
    std::vector<std::byte> batch;
    auto add = [&](const std::vector<std::byte>& m) {
      batch.insert(batch.end(), m.begin(), m.end());
    };
    add(message(id_of(Lib::ControlCmdResponse), next_seq(),
                {bytes(kvmi::libkvmi::ControlCmdResponse{0, 1, 0, 0})}));
    for (std::uint16_t v = 0; v < *count; ++v) {
      add(message(id_of(Lib::PauseVcpu), next_seq(),
                  {bytes(kvmi::VcpuHdr{v, 0, 0}), bytes(kvmi::VcpuPause{1, 0, 0, 0})}));
    }
    const std::uint32_t last = next_seq();
    add(message(id_of(Lib::ControlCmdResponse), last,
                {bytes(kvmi::libkvmi::ControlCmdResponse{1, 1, 0, 0})}));
    ASSERT_TRUE(tool_->send_raw(batch));

    std::vector<ReceivedEvent> paused;
    std::set<std::uint16_t> vcpus;
    while (paused.size() < *count) {
      auto event = tool_->wait_event(10s);
      ASSERT_TRUE(event) << event.error().message;
      EXPECT_EQ(event->wire_event_id(), id_of(LibEvent::PauseVcpu));
      EXPECT_EQ(event->event_id(), static_cast<std::uint8_t>(kvmi::EventId::PauseVcpu));
      EXPECT_EQ(event->common().size, 544u) << "libkvmi finds the specific part at `size`";
      EXPECT_EQ(event->payload().size(), 544u);
      vcpus.insert(event->vcpu());
      paused.push_back(std::move(*event));
    }
    EXPECT_EQ(vcpus, (std::set<std::uint16_t>{0, 1}));

    // While both vCPUs wait: GET_REGISTERS (13) is exactly 472 + 16n bytes after the error code.
    for (const auto& event : paused) {
      const std::uint32_t msrs[] = {kMsrLstar, kMsrEfer};
      const kvmi::VcpuGetRegisters req{2, 0, 0};
      auto reply = call(message(
          id_of(Lib::GetRegisters), next_seq(),
          {bytes(kvmi::VcpuHdr{event.vcpu(), 0, 0}), bytes(req), std::as_bytes(std::span(msrs))}));
      ASSERT_EQ(status_of(reply), 0);
      ASSERT_EQ(reply.payload.size(), 8u + 472u + 16u * 2);
      kvm_regs regs{};
      std::memcpy(&regs, reply.payload.data() + 8 + 8, sizeof regs);
      EXPECT_EQ(regs.rip, event.common().arch.regs.rip) << "a paused vCPU must not move";
      auto plain = call(message(
          id_of(Lib::GetRegisters), next_seq(),
          {bytes(kvmi::VcpuHdr{event.vcpu(), 0, 0}), bytes(kvmi::VcpuGetRegisters{0, 0, 0})}));
      EXPECT_EQ(plain.payload.size(), 8u + 472u);
    }

    // Only the closing 27 was answered: the pauses' replies were suppressed.
    std::this_thread::sleep_for(300ms);
    auto unmatched = tool_->take_unmatched();
    ASSERT_EQ(unmatched.size(), 1u);
    EXPECT_EQ(unmatched[0].hdr.id, id_of(Lib::ControlCmdResponse));
    EXPECT_EQ(unmatched[0].hdr.seq, last);
    EXPECT_EQ(unmatched[0].payload.size(), 8u);
    EXPECT_EQ(error_of(unmatched[0]), 0);

    // One vCPU answered with a raw libkvmi reply (event 10), the other through the client.
    reply_raw(paused[0], kvmi::EventAction::Continue);
    ASSERT_TRUE(tool_->reply_event(paused[1], kvmi::EventAction::Continue));
  }
  EXPECT_TRUE(tool_->is_open()) << tool_->close_reason();
  EXPECT_TRUE(vm_->wait_for_output("proc 3 (pid 4): 100%", 60s)) << vm_->output_so_far();
}

TEST_F(KvmiLibkvmi, EventEnablingAndCrMsrPfControlUseLibkvmiIds) {
  start();
  wait_for_boot();
  for (std::uint16_t v : {0, 1}) {
    SCOPED_TRACE(v);
    EXPECT_EQ(control_event(v, LibEvent::Pf, true), 0);
    EXPECT_EQ(control_event(v, LibEvent::Pf, false), 0);
    // CR, MSR, single-step and breakpoint events need host support (spec §P2; INT3s never exit
    // under QEMU TCG's nested SVM): on or -KVM_EOPNOTSUPP, never confused.
    for (LibEvent e : {LibEvent::Breakpoint, LibEvent::Cr, LibEvent::Msr, LibEvent::Singlestep}) {
      const auto err = control_event(v, e, true);
      EXPECT_TRUE(err == 0 || err == kvmi::to_wire(kvmi::Errno::OpNotSupp)) << err;
      EXPECT_EQ(control_event(v, e, false), 0);
    }
    // CREATE_VCPU (9) and CPUID (13) exist only in libkvmi; UNHOOK is a VM event.
    EXPECT_EQ(control_event(v, LibEvent::CreateVcpu, true), kvmi::to_wire(kvmi::Errno::Inval));
    EXPECT_EQ(control_event(v, LibEvent::Cpuid, true), kvmi::to_wire(kvmi::Errno::Inval));
    EXPECT_EQ(control_event(v, LibEvent::Unhook, true), kvmi::to_wire(kvmi::Errno::Inval));

    // CONTROL_CR (10): CR0/3/4 only.
    for (std::uint32_t cr : {0u, 3u, 4u}) {
      kvmi::VcpuControlCr req{1, 0, 0, cr};
      EXPECT_EQ(status_of(call(message(id_of(Lib::ControlCr), next_seq(),
                                       {bytes(kvmi::VcpuHdr{v, 0, 0}), bytes(req)}))),
                0)
          << "cr" << cr;
      req.enable = 0;
      EXPECT_EQ(status_of(call(message(id_of(Lib::ControlCr), next_seq(),
                                       {bytes(kvmi::VcpuHdr{v, 0, 0}), bytes(req)}))),
                0);
    }
    kvmi::VcpuControlCr cr8{1, 0, 0, 8};
    EXPECT_EQ(status_of(call(message(id_of(Lib::ControlCr), next_seq(),
                                     {bytes(kvmi::VcpuHdr{v, 0, 0}), bytes(cr8)}))),
              kvmi::to_wire(kvmi::Errno::Inval));
    // CONTROL_MSR (11).
    kvmi::VcpuControlMsr lstar{1, 0, 0, kMsrLstar};
    EXPECT_EQ(status_of(call(message(id_of(Lib::ControlMsr), next_seq(),
                                     {bytes(kvmi::VcpuHdr{v, 0, 0}), bytes(lstar)}))),
              0);
    lstar.enable = 0;
    EXPECT_EQ(status_of(call(message(id_of(Lib::ControlMsr), next_seq(),
                                     {bytes(kvmi::VcpuHdr{v, 0, 0}), bytes(lstar)}))),
              0);
    kvmi::VcpuControlMsr outside{1, 0, 0, 0x40000000};
    EXPECT_EQ(status_of(call(message(id_of(Lib::ControlMsr), next_seq(),
                                     {bytes(kvmi::VcpuHdr{v, 0, 0}), bytes(outside)}))),
              kvmi::to_wire(kvmi::Errno::Inval));
  }
  // CONTROL_VM_EVENTS (8) with UNHOOK (0); CHECK_EVENT (4) with libkvmi ids.
  kvmi::VmControlEvents unhook{id_of(LibEvent::Unhook), 1, 0, 0};
  EXPECT_EQ(status_of(call(message(id_of(Lib::ControlVmEvents), next_seq(), {bytes(unhook)}))), 0);
  kvmi::VmCheckEvent check{id_of(LibEvent::PauseVcpu), 0, 0};
  EXPECT_EQ(status_of(call(message(id_of(Lib::CheckEvent), next_seq(), {bytes(check)}))), 0);
  // SET_PAGE_ACCESS (21) of another EPT view: glassbox has only view 0.
  EXPECT_EQ(set_page_access(0x100000, kvmi::kPageAccessRwx, 1),
            kvmi::to_wire(kvmi::Errno::OpNotSupp));
  EXPECT_TRUE(tool_->is_open()) << tool_->close_reason();
}

TEST_F(KvmiLibkvmi, ReadPhysicalOfTheWholeRam) {
  start();
  wait_for_boot();
  auto max_gfn = tool_->get_max_gfn();  // GET_MAX_GFN (29)
  ASSERT_TRUE(max_gfn) << max_gfn.error().message;
  ASSERT_GE(*max_gfn, (128u << 20) / 4096) << "glassbox's default RAM is 128 MiB";
  // As LibVMI's memory cache would: page by page, many requests in flight.
  constexpr std::size_t kInFlight = 64;
  std::deque<std::pair<std::uint64_t, glassbox::client::PendingReply>> pending;
  std::uint64_t ok = 0, absent = 0;
  std::vector<std::byte> boot_page;
  auto finish_one = [&] {
    auto [gfn, reply] = std::move(pending.front());
    pending.pop_front();
    auto raw = reply.wait_raw(15s);
    ASSERT_TRUE(raw) << "gfn " << gfn << ": " << raw.error().message;
    EXPECT_EQ(raw->hdr.id, id_of(Lib::ReadPhysical));
    if (error_of(*raw) == 0) {
      ASSERT_EQ(raw->payload.size(), 8u + 4096u) << "gfn " << gfn;
      ++ok;
      if (gfn == GLASSBOX_BOOT_INFO_GPA / 4096)
        boot_page.assign(raw->payload.begin() + 8, raw->payload.end());
    } else {
      // A hole below max_gfn: -KVM_ENOENT, 8 bytes.
      EXPECT_EQ(error_of(*raw), kvmi::to_wire(kvmi::Errno::NoEnt)) << "gfn " << gfn;
      EXPECT_EQ(raw->payload.size(), 8u);
      ++absent;
    }
  };
  for (std::uint64_t gfn = 0; gfn < *max_gfn; ++gfn) {
    auto submitted = tool_->submit_read_physical(gfn * 4096, 4096);
    ASSERT_TRUE(submitted) << submitted.error().message;
    pending.emplace_back(gfn, std::move(*submitted));
    if (pending.size() >= kInFlight) finish_one();
  }
  while (!pending.empty()) finish_one();
  EXPECT_GE(ok * 4096, 128u << 20);
  EXPECT_EQ(ok + absent, *max_gfn);
  ASSERT_EQ(boot_page.size(), 4096u);
  EXPECT_EQ(std::memcmp(boot_page.data() + (GLASSBOX_BOOT_INFO_GPA % 4096), "GLASSBOX", 8), 0);
}

TEST_F(KvmiLibkvmi, IdsGlassboxCannotServeAreAnsweredEnosysWithEightBytes) {
  start();
  // EPT views, #VE, SPP, remote mapping, GET_NEXT_AVAILABLE_GFN, gfn allocation, XCR, XSAVE-set,
  // QUERY_PHYSICAL, CHANGE_GFN; then ids nobody defines.
  for (std::uint16_t id :
       {12, 22, 26, 28, 31, 32, 33, 34, 36, 37, 38, 39, 41, 42, 43, 44, 60, 45, 64, 4242}) {
    SCOPED_TRACE(id);
    const std::array<std::byte, 32> zeros{};
    auto reply = call(message(id, next_seq(), {zeros}));
    EXPECT_EQ(status_of(reply), kEnosys);
    EXPECT_EQ(reply.hdr.size, 8u);
  }
  auto version = tool_->get_version();  // the connection is still in step
  ASSERT_TRUE(version) << version.error().message;
  EXPECT_EQ(version->version, 1u);
  EXPECT_FALSE(version->singlestep) << "libkvmi reads this byte as `spp`";
}

// The same guest behaviour as in rfc-v7 mode: the guest kernel runs to its normal power-off while
// the tool handles the agent's doorbell hypercalls, enabled and answered with libkvmi ids.
TEST_F(KvmiLibkvmi, TheGuestKernelRunsToCompletionWhileItsHypercallsReachTheTool) {
  start(/*beacon=*/false);
  for (std::uint16_t v : {0, 1}) EXPECT_EQ(control_event(v, LibEvent::Hypercall, true), 0);
  int calls = 0;
  for (;;) {
    auto event = tool_->wait_event(60s);
    if (!event) break;  // the guest powered off and the VMM closed the connection
    if (event->event_id() == static_cast<std::uint8_t>(kvmi::EventId::Hypercall)) {
      EXPECT_EQ(event->wire_event_id(), id_of(LibEvent::Hypercall));
      EXPECT_EQ(event->common().arch.regs.rax, 34u);
      ++calls;
    }
    ASSERT_TRUE(tool_->reply_event(*event, kvmi::EventAction::Continue));
  }
  auto r = vm_->wait(120s);
  vm_.reset();
  EXPECT_EQ(r.exit_status, 0) << r.err;
  EXPECT_NE(r.out.find("all processes done: counters 1000 1000 1000 1000 1000 1000"),
            std::string::npos)
      << r.out;
  EXPECT_GE(calls, 4) << "the agent's first round may come before the enable";
}

// A PF event answered RETRY with libkvmi's 272-byte reply tail. Needs VM_SET_PAGE_ACCESS (page
// access interception); skipped where this build answers it -KVM_ENOSYS.
TEST_F(KvmiLibkvmi, APfEventAnsweredRetryWithTheLibkvmiReplyTail) {
  start();
  wait_for_boot();
  // A page vCPU 1 is about to execute: where its pause event found it.
  ASSERT_TRUE(tool_->pause_vcpu(1, true));
  auto pause = tool_->wait_event(10s);
  ASSERT_TRUE(pause) << pause.error().message;
  ASSERT_EQ(pause->wire_event_id(), id_of(LibEvent::PauseVcpu));
  auto gpa = tool_->translate_gva(1, pause->common().arch.regs.rip);
  ASSERT_TRUE(gpa) << gpa.error().message;
  ASSERT_NE(*gpa, kvmi::kInvalidGpa);
  const std::uint64_t page = *gpa & ~std::uint64_t{0xfff};

  for (std::uint16_t v : {0, 1}) ASSERT_EQ(control_event(v, LibEvent::Pf, true), 0);
  const auto restricted = set_page_access(page, kvmi::kPageAccessR | kvmi::kPageAccessW);
  if (restricted == kEnosys) {
    ASSERT_TRUE(tool_->reply_event(*pause, kvmi::EventAction::Continue));
    GTEST_SKIP()
        << "this VMM answers VM_SET_PAGE_ACCESS with -KVM_ENOSYS (a target without page access)";
  }
  ASSERT_EQ(restricted, 0);
  ASSERT_TRUE(tool_->reply_event(*pause, kvmi::EventAction::Continue));

  const std::array<std::byte, kvmi::kLibkvmiPfReplyTailSize> tail{};  // no context, no step
  bool restored = false;
  int faults = 0;
  while (faults == 0) {
    auto event = tool_->wait_event(30s);
    ASSERT_TRUE(event) << event.error().message << "\n" << vm_->output_so_far();
    if (event->event_id() != static_cast<std::uint8_t>(kvmi::EventId::Pf)) {
      ASSERT_TRUE(tool_->reply_event(*event, kvmi::EventAction::Continue));
      continue;
    }
    EXPECT_EQ(event->wire_event_id(), id_of(LibEvent::Pf));
    EXPECT_EQ(event->common().size, 544u);
    const auto pf = event->specific_as<kvmi::EventPf>();
    EXPECT_EQ(pf.gpa & ~std::uint64_t{0xfff}, page);
    EXPECT_EQ(pf.access, kvmi::kPageAccessX);
    if (!restored) {
      ASSERT_EQ(set_page_access(page, kvmi::kPageAccessRwx), 0);
      restored = true;
    }
    reply_raw(*event, kvmi::EventAction::Retry, tail);
    ++faults;
  }
  // The tail was accepted: the connection stays, and the vCPU got past the page.
  auto version = tool_->get_version();
  ASSERT_TRUE(version) << version.error().message << " / " << tool_->close_reason();
  while (auto late = tool_->poll_event()) {
    if (late->event_id() == static_cast<std::uint8_t>(kvmi::EventId::Pf)) {
      reply_raw(*late, kvmi::EventAction::Retry, tail);
    } else {
      ASSERT_TRUE(tool_->reply_event(*late, kvmi::EventAction::Continue));
    }
  }
  auto paused = tool_->pause_all();
  ASSERT_TRUE(paused) << paused.error().message;
  EXPECT_TRUE(tool_->resume_all(*paused));
}

}  // namespace
