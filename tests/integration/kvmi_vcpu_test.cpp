// vCPU commands, pauses and events against the real VMM running glassbox's guest kernel on two
// vCPUs, through the project's client library. The guest runs in beacon mode: vCPU 1 runs only
// the beacon, a CPL3 loop that ends (printing its R12) only when a tool sets R12.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <thread>

#include "glassbox/client/session.h"
#include "glassbox/kvmi/errors.h"
#include "kvmi_test_helpers.h"
#include "run_glassbox.h"

using namespace std::chrono_literals;
using glassbox::client::ReceivedEvent;
using glassbox::client::Session;
using glassbox::test::GlassboxProcess;
namespace kvmi = glassbox::kvmi;

namespace {

constexpr std::uint32_t kMsrLstar = 0xc0000082;

class KvmiVcpu : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = std::filesystem::temp_directory_path() /
              ("glassbox-vcpu-test-" + std::to_string(getpid()) + "-" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".sock");
    std::filesystem::remove(socket_);
    vm_ = std::make_unique<GlassboxProcess>(std::vector<std::string>{
        "run", "--kernel", glassbox::test::guest_kernel().string(), "--cpus", "2", "--cmdline",
        "beacon", "--introspect", "listen:unix:" + socket_.string()});
    tool_ = connect();
    ASSERT_TRUE(tool_);
    // Past boot: the kernel has its IDT, page tables and LSTAR (printed after the SYSCALL probe).
    ASSERT_TRUE(vm_->wait_for_output("syscall:", 30s)) << vm_->output_so_far();
  }

  std::unique_ptr<Session> connect() {
    for (int i = 0; i < 1200; ++i) {
      auto s = Session::connect(socket_);
      if (s) return std::move(*s);
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "could not connect to " << socket_ << "\n" << vm_->output_so_far();
    return nullptr;
  }

  // Pauses vCPU `v` until its pause event shows it at CPL3 (in the beacon, on vCPU 1); returns
  // that event unanswered. Other pause events are answered CONTINUE and retried.
  ReceivedEvent pause_in_user_mode(Session& tool, std::uint16_t v) {
    for (int attempt = 0; attempt < 200; ++attempt) {
      EXPECT_TRUE(tool.pause_vcpu(v, true));
      auto event = tool.wait_event(10s);
      EXPECT_TRUE(event) << event.error().message;
      if (!event) break;
      EXPECT_EQ(event->event_id(), static_cast<std::uint8_t>(kvmi::EventId::PauseVcpu));
      EXPECT_EQ(event->vcpu(), v);
      if ((event->common().arch.sregs.cs.selector & 3) == 3 &&
          (v != 1 || at_beacon_loop(v, event->common().arch.regs.rip))) {
        return std::move(*event);
      }
      EXPECT_TRUE(tool.reply_event(*event, kvmi::EventAction::Continue));
      std::this_thread::sleep_for(5ms);
    }
    ADD_FAILURE() << "vCPU " << v << " was never caught at CPL3";
    std::abort();
  }

  // True when vCPU `v` sits in the beacon's spin loop (pause; test %r12,%r12; jz), the only
  // place where a new R12 is not overwritten by the process itself.
  bool at_beacon_loop(std::uint16_t v, std::uint64_t rip) {
    static const std::uint8_t loop[] = {0xf3, 0x90, 0x4d, 0x85, 0xe4, 0x74};
    auto gpa = tool_->translate_gva(v, rip - 8);
    if (!gpa || *gpa == ~0ULL || (*gpa & 0xfff) > 0xfff - 24) return false;
    auto bytes = tool_->read_physical(*gpa, 24);
    if (!bytes) return false;
    for (std::size_t start = 0; start + sizeof loop <= bytes->size(); ++start) {
      if (std::memcmp(bytes->data() + start, loop, sizeof loop) != 0) continue;
      const std::uint64_t at = rip - 8 + start;
      return rip == at || rip == at + 2 || rip == at + 5;
    }
    return false;
  }

  std::filesystem::path socket_;
  std::unique_ptr<GlassboxProcess> vm_;
  std::unique_ptr<Session> tool_;
};

TEST_F(KvmiVcpu, StopTheWorldReadsBothVcpusRegistersAndAnMsrThenResumes) {
  // vCPU 1 programs its LSTAR a little after vCPU 0 prints; stop the world until both have.
  std::uint64_t lstar[2] = {};
  for (int attempt = 0; attempt < 50 && (lstar[0] == 0 || lstar[1] == 0); ++attempt) {
    auto paused = tool_->pause_all();
    ASSERT_TRUE(paused) << paused.error().message;
    ASSERT_EQ(paused->size(), 2u);
    std::set<std::uint16_t> vcpus;
    for (const auto& event : *paused) {
      vcpus.insert(event.vcpu());
      const std::uint32_t msrs[] = {kMsrLstar};
      auto regs = tool_->get_registers(event.vcpu(), msrs);
      ASSERT_TRUE(regs) << regs.error().message;
      EXPECT_EQ(regs->mode, 8u);
      EXPECT_EQ(regs->regs.rip, event.common().arch.regs.rip) << "a paused vCPU must not move";
      ASSERT_EQ(regs->msrs.size(), 1u);
      EXPECT_EQ(regs->msrs[0].index, kMsrLstar);
      lstar[event.vcpu()] = regs->msrs[0].data;
      EXPECT_EQ(event.common().arch.msrs.lstar, regs->msrs[0].data);
    }
    EXPECT_EQ(vcpus, (std::set<std::uint16_t>{0, 1}));
    ASSERT_TRUE(tool_->resume_all(*paused));
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(lstar[0], 0u) << "the guest kernel programs LSTAR at boot";
  EXPECT_EQ(lstar[0], lstar[1]);
  // The guest keeps running: vCPU 0's workers finish their work.
  EXPECT_TRUE(vm_->wait_for_output("proc 3 (pid 4): 100%", 60s)) << vm_->output_so_far();
}

TEST_F(KvmiVcpu, RegisterChangedDuringAPauseEventIsSeenByTheGuest) {
  auto event = pause_in_user_mode(*tool_, 1);
  auto regs = tool_->get_registers(1);
  ASSERT_TRUE(regs);
  kvm_regs changed = regs->regs;
  changed.r12 = 0xfeedface;
  ASSERT_TRUE(tool_->set_registers(1, changed));
  ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Continue));
  EXPECT_TRUE(vm_->wait_for_output("beacon: r12=0xfeedface", 30s)) << vm_->output_so_far();
  // With the beacon gone every process ends and the guest powers off normally.
  auto result = vm_->wait(60s);
  EXPECT_EQ(result.exit_status, 0) << result.err;
}

TEST_F(KvmiVcpu, AReplySentJustBeforeTheToolClosesStillAppliesItsRegisters) {
  auto event = pause_in_user_mode(*tool_, 1);
  auto regs = tool_->get_registers(1);
  ASSERT_TRUE(regs);
  kvm_regs changed = regs->regs;
  changed.r12 = 0xc105ed;
  ASSERT_TRUE(tool_->set_registers(1, changed));
  ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Continue));
  tool_->close();  // at once: the reply and the hang-up reach the VMM together
  EXPECT_TRUE(vm_->wait_for_output("beacon: r12=0xc105ed", 30s)) << vm_->output_so_far();
}

TEST_F(KvmiVcpu, TheDemoToolStopsTheWorldAndEndsTheBeacon) {
  tool_.reset();  // the example connects on its own
  const auto example =
      glassbox::test::glassbox_binary().parent_path() / "glassbox-example-stop-the-world";
  const std::string command = example.string() + " " + socket_.string() + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, pipe)) out += buf;
  EXPECT_EQ(pclose(pipe), 0) << out;
  EXPECT_NE(out.find("set r12=0x600dcafe"), std::string::npos) << out;
  EXPECT_TRUE(vm_->wait_for_output("beacon: r12=0x600dcafe", 30s)) << vm_->output_so_far();
  auto result = vm_->wait(60s);
  EXPECT_EQ(result.exit_status, 0) << result.err;
}

TEST_F(KvmiVcpu, SetRegistersOutsideAnEventIsNotSupported) {
  kvm_regs regs{};
  auto r = tool_->set_registers(0, regs);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(kvmi::Errno::OpNotSupp)) << r.error().message;
}

TEST_F(KvmiVcpu, GetRegistersWithAnUnknownMsrFailsWithEinval) {
  const std::uint32_t msrs[] = {kMsrLstar, 0x4b564d99};
  auto r = tool_->get_registers(0, msrs);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(kvmi::Errno::Inval)) << r.error().message;
}

TEST_F(KvmiVcpu, CommandsToARunningVcpuAreAnsweredPromptly) {
  // vCPU 1 spins natively at CPL3 and never exits on its own except for timer ticks: the
  // command must kick it out of KVM_RUN.
  for (int i = 0; i < 50; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto regs = tool_->get_registers(1);
    ASSERT_TRUE(regs) << regs.error().message;
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  }
  auto info = tool_->get_vcpu_tsc_speed(0);
  ASSERT_TRUE(info) << info.error().message;
  auto cpuid = tool_->get_cpuid(0, 0x40000000);
  ASSERT_TRUE(cpuid) << cpuid.error().message;
  EXPECT_EQ(cpuid->ebx, 0x73616c47u);  // "Glas"
  auto missing = tool_->get_cpuid(0, 0x4fffff00);
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is(kvmi::Errno::NoEnt));
  auto xsave = tool_->get_xsave(1);
  ASSERT_TRUE(xsave);
  EXPECT_EQ(xsave->size(), 4096u);
  auto mtrr = tool_->get_mtrr_type(0, 0x100000);
  ASSERT_TRUE(mtrr);
  EXPECT_EQ(*mtrr, 6) << "glassbox boots with MTRRs enabled, default write-back";
}

TEST_F(KvmiVcpu, RepliesForDifferentVcpusAreMatchedBySeq) {
  // Pipelined commands to both vCPUs and the VM: replies come back in any order.
  std::vector<glassbox::client::PendingReply> pending;
  std::map<std::uint32_t, std::uint16_t> vcpu_of_seq;
  for (int i = 0; i < 200; ++i) {
    const std::uint16_t v = i % 2;
    kvmi::VcpuTranslateGva req{0x40000000};
    auto p =
        tool_->submit_vcpu(kvmi::MessageId::VcpuTranslateGva, v, std::as_bytes(std::span(&req, 1)));
    ASSERT_TRUE(p);
    vcpu_of_seq[p->seq()] = v;
    pending.push_back(std::move(*p));
    auto vm = tool_->submit(kvmi::MessageId::VmGetMaxGfn);
    ASSERT_TRUE(vm);
    pending.push_back(std::move(*vm));
  }
  for (auto& p : pending) {
    auto reply = p.wait(30s);
    ASSERT_TRUE(reply) << reply.error().message;
    EXPECT_EQ(reply->hdr.seq, p.seq());
  }
}

// The guest's page tables, walked by the test itself through READ_PHYSICAL.
std::uint64_t walk(Session& tool, std::uint64_t cr3, std::uint64_t gva) {
  std::uint64_t table = cr3 & 0x000ffffffffff000ULL;
  for (int level = 4; level >= 1; --level) {
    const int shift = 12 + 9 * (level - 1);
    std::uint64_t entry = 0;
    auto bytes = tool.read_physical(table + ((gva >> shift) & 511) * 8, 8);
    if (!bytes) return ~0ULL;
    std::memcpy(&entry, bytes->data(), 8);
    if (!(entry & 1)) return ~0ULL;
    if (level == 1 || (level <= 3 && (entry & 0x80))) {
      const std::uint64_t size = 1ULL << shift;
      return (entry & 0x000ffffffffff000ULL & ~(size - 1)) | (gva & (size - 1));
    }
    table = entry & 0x000ffffffffff000ULL;
  }
  return ~0ULL;
}

TEST_F(KvmiVcpu, TranslateGvaAgreesWithTheGuestsPageTablesInEveryAddressSpaceSeen) {
  const std::uint64_t addresses[] = {0x40000000, 0x40100000, 0x40101000,     0x40103ff8,
                                     0x100000,   0x7000,     0x7f0000000000, 0x1234567000};
  std::set<std::uint64_t> cr3s;
  for (int round = 0; round < 40 && cr3s.size() < 4; ++round) {
    auto paused = tool_->pause_all();
    ASSERT_TRUE(paused) << paused.error().message;
    for (const auto& event : *paused) {
      const std::uint64_t cr3 = event.common().arch.sregs.cr3;
      cr3s.insert(cr3);
      for (auto gva : addresses) {
        auto gpa = tool_->translate_gva(event.vcpu(), gva);
        ASSERT_TRUE(gpa);
        EXPECT_EQ(*gpa, walk(*tool_, cr3, gva)) << "gva " << std::hex << gva << " cr3 " << cr3;
      }
      auto unmapped = tool_->translate_gva(event.vcpu(), 0x7f0000000000);
      ASSERT_TRUE(unmapped);
      EXPECT_EQ(*unmapped, ~0ULL);
    }
    ASSERT_TRUE(tool_->resume_all(*paused));
    std::this_thread::sleep_for(3ms);
  }
  // Each process has its own CR3: seeing more than one proves the walk follows the vCPU's CR3.
  EXPECT_GE(cr3s.size(), 2u);
}

TEST_F(KvmiVcpu, InjectedPageFaultReachesTheGuestAndIsReportedByATrapEvent) {
  ASSERT_TRUE(tool_->control_vcpu_events(1, kvmi::EventId::Trap, true));
  auto event = pause_in_user_mode(*tool_, 1);
  constexpr std::uint64_t kAddress = 0xdead000;
  ASSERT_TRUE(tool_->inject_exception(1, 14, 6, kAddress));
  auto busy = tool_->inject_exception(1, 14, 6, kAddress);
  ASSERT_FALSE(busy);
  EXPECT_TRUE(busy.error().is(kvmi::Errno::Busy));
  ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Continue));
  auto trap = tool_->wait_event(10s);
  ASSERT_TRUE(trap) << trap.error().message;
  ASSERT_EQ(trap->event_id(), static_cast<std::uint8_t>(kvmi::EventId::Trap));
  const auto t = trap->specific_as<kvmi::EventTrap>();
  EXPECT_EQ(t.vector, 14u);
  EXPECT_EQ(t.error_code, 6u);
  EXPECT_EQ(t.cr2, kAddress);
  ASSERT_TRUE(tool_->reply_event(*trap, kvmi::EventAction::Continue));
  EXPECT_TRUE(vm_->wait_for_output("#PF at rip", 30s)) << vm_->output_so_far();
  EXPECT_NE(vm_->output_so_far().find("cr2 0xdead000"), std::string::npos) << vm_->output_so_far();
  // The beacon was killed, so the guest ends normally.
  auto result = vm_->wait(60s);
  EXPECT_EQ(result.exit_status, 0) << result.err;
}

TEST_F(KvmiVcpu, AToolKilledWhileBothVcpusWaitLeavesTheVmRunningAndANewToolCanPause) {
  auto paused = tool_->pause_all();
  ASSERT_TRUE(paused);
  tool_->close();  // gone without answering either pause event
  tool_.reset();
  // The vCPUs continue as if CONTINUE: vCPU 0's workers finish.
  EXPECT_TRUE(vm_->wait_for_output("proc 3 (pid 4): 100%", 60s)) << vm_->output_so_far();
  auto second = connect();
  ASSERT_TRUE(second);
  auto again = second->pause_all();
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->size(), 2u);
  ASSERT_TRUE(second->resume_all(*again));
  auto regs = second->get_registers(1);
  EXPECT_TRUE(regs);
}

TEST_F(KvmiVcpu, CrashAnswerStopsTheVmWithItsStatus) {
  ASSERT_TRUE(tool_->pause_vcpu(0, true));
  auto event = tool_->wait_event(10s);
  ASSERT_TRUE(event);
  ASSERT_TRUE(tool_->reply_event(*event, kvmi::EventAction::Crash));
  auto result = vm_->wait(30s);
  EXPECT_EQ(result.exit_status, 123) << result.err;
  EXPECT_NE(result.err.find("CRASH"), std::string::npos) << result.err;
}

TEST_F(KvmiVcpu, ArgumentChecksOfTheControlCommands) {
  auto cr = tool_->control_cr(0, 2, true);
  ASSERT_FALSE(cr);
  EXPECT_TRUE(cr.error().is(kvmi::Errno::Inval));
  EXPECT_TRUE(tool_->control_cr(0, 4, true));
  EXPECT_TRUE(tool_->control_msr(0, kMsrLstar, true));
  EXPECT_TRUE(tool_->control_msr(0, 0x1fff, true)) << "ranges are inclusive (spec §P1)";
  auto msr = tool_->control_msr(0, 0x2000, true);
  ASSERT_FALSE(msr);
  EXPECT_TRUE(msr.error().is(kvmi::Errno::Inval));
  auto cr_event = tool_->control_vcpu_events(0, kvmi::EventId::Cr, true);
  ASSERT_FALSE(cr_event);
  EXPECT_TRUE(cr_event.error().is(kvmi::Errno::OpNotSupp)) << "spec §P2";
  auto unhook = tool_->control_vcpu_events(0, kvmi::EventId::Unhook, true);
  ASSERT_FALSE(unhook);
  EXPECT_TRUE(unhook.error().is(kvmi::Errno::Inval));
  auto vector = tool_->inject_exception(0, 32);
  ASSERT_FALSE(vector);
  EXPECT_TRUE(vector.error().is(kvmi::Errno::Inval));
  auto bad_vcpu = tool_->get_registers(7);
  ASSERT_FALSE(bad_vcpu);
  EXPECT_TRUE(bad_vcpu.error().is(kvmi::Errno::Inval));
}

TEST_F(KvmiVcpu, StressInterleavedCommandsPausesAndRepliesAreEachAnsweredOnce) {
  // Thousands of vCPU commands, pauses and event replies across both vCPUs, from several
  // threads of one tool: every request gets exactly one reply, nothing deadlocks.
  std::atomic<int> replies{0};
  std::atomic<bool> failed{false};
  constexpr int kPerThread = 600;
  auto commands = [&](std::uint16_t v) {
    for (int i = 0; i < kPerThread && !failed; ++i) {
      const bool ok = (i % 3 == 0) ? tool_->translate_gva(v, 0x40000000).has_value()
                                   : tool_->get_registers(v).has_value();
      if (!ok)
        failed = true;
      else
        replies++;
    }
  };
  std::atomic<int> pauses_sent{0}, pause_events{0};
  auto pauser = [&] {
    for (int i = 0; i < 300 && !failed; ++i) {
      if (!tool_->pause_vcpu(static_cast<std::uint16_t>(i % 2), i % 4 == 0))
        failed = true;
      else
        pauses_sent++;
    }
  };
  std::thread t0(commands, 0), t1(commands, 1), tp(pauser);
  // This thread answers every PAUSE event as it comes.
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (std::chrono::steady_clock::now() < deadline && !failed) {
    if (pause_events == 300 && pauses_sent == 300) break;
    auto event = tool_->wait_event(200ms);
    if (!event) continue;
    pause_events++;
    if (!tool_->reply_event(*event, kvmi::EventAction::Continue)) failed = true;
  }
  t0.join();
  t1.join();
  tp.join();
  EXPECT_FALSE(failed);
  EXPECT_EQ(replies, 2 * kPerThread);
  EXPECT_EQ(pause_events, 300) << "one PAUSE_VCPU event per pause";
  EXPECT_TRUE(tool_->take_unmatched().empty());
}

// ---- spec §1.6: what closes the connection for vCPU messages ----

template <typename T>
std::vector<std::byte> message_bytes(kvmi::MessageId id, std::uint32_t seq, const T& body) {
  return glassbox::test::kvmi_support::raw_message(static_cast<std::uint16_t>(id), seq, body);
}

struct PauseMessage {
  kvmi::VcpuHdr vcpu;
  kvmi::VcpuPause pause;
};
struct ReplyMessage {
  kvmi::VcpuHdr vcpu;
  kvmi::EventReply reply;
};

TEST_F(KvmiVcpu, PauseWithNonZeroPausePaddingsClosesTheConnection) {
  PauseMessage msg{};
  msg.pause.padding3 = 1;
  ASSERT_TRUE(tool_->send_raw(message_bytes(kvmi::MessageId::VcpuPause, 77, msg)));
  auto event = tool_->wait_event(10s);
  ASSERT_FALSE(event);
  EXPECT_FALSE(tool_->is_open());
  // The VM keeps running and takes the next tool.
  auto next = connect();
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->get_registers(0));
}

TEST_F(KvmiVcpu, AStrayEventReplyIsDroppedAndTheConnectionStays) {
  ReplyMessage msg{};
  ASSERT_TRUE(tool_->send_raw(message_bytes(kvmi::MessageId::EventReply, 12345, msg)));
  EXPECT_TRUE(tool_->get_registers(0)) << "the connection must stay open";
}

TEST_F(KvmiVcpu, AnEventReplyWithTheWrongSeqClosesAndTheVcpuContinues) {
  ASSERT_TRUE(tool_->pause_vcpu(0, true));
  auto event = tool_->wait_event(10s);
  ASSERT_TRUE(event);
  ReplyMessage msg{};
  msg.vcpu.vcpu = 0;
  ASSERT_TRUE(tool_->send_raw(message_bytes(kvmi::MessageId::EventReply, event->seq() + 1, msg)));
  // The vCPU thread validates the reply and closes the connection.
  EXPECT_FALSE(tool_->wait_event(10s));
  EXPECT_FALSE(tool_->is_open()) << "the VMM closes on an invalid reply";
  EXPECT_TRUE(vm_->wait_for_output("proc 3 (pid 4): 100%", 60s)) << vm_->output_so_far();
  auto next = connect();
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->get_registers(0));
}

TEST_F(KvmiVcpu, AnEventReplyLongerThanTheEventExpectsCloses) {
  ASSERT_TRUE(tool_->pause_vcpu(1, true));
  auto event = tool_->wait_event(10s);
  ASSERT_TRUE(event);
  struct {
    kvmi::VcpuHdr vcpu;
    kvmi::EventReply reply;
    std::uint64_t extra;  // PAUSE_VCPU takes no event-specific reply
  } msg{};
  msg.vcpu.vcpu = 1;
  ASSERT_TRUE(tool_->send_raw(message_bytes(kvmi::MessageId::EventReply, event->seq(), msg)));
  EXPECT_FALSE(tool_->wait_event(10s));
  EXPECT_FALSE(tool_->is_open());
  auto next = connect();
  ASSERT_TRUE(next);
  EXPECT_TRUE(next->get_registers(1));
}

}  // namespace
