// KVMI_EVENT_BREAKPOINT, KVMI_EVENT_SINGLESTEP and KVMI_EVENT_HYPERCALL against the real VMM,
// on the event_loop scenario guest (tests/guests/event_loop.S: every vCPU loops at CPL0 through a
// site a tool can patch, optionally the guest's own INT3 and the doorbell hypercall, counting
// each in memory the test reads) and on the guest kernel (its agent rings the doorbell from CPL3).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <regex>
#include <set>
#include <thread>

#include "glassbox/client/session.h"
#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/events.h"
#include "kvmi_test_helpers.h"
#include "run_glassbox.h"

using namespace glassbox::test::kvmi_support;
using glassbox::client::ReceivedEvent;
using glassbox::test::GlassboxProcess;

namespace {

// event_loop.S: cmdline bits and the per-vCPU counter layout.
constexpr int kModeOwnInt3 = 1;
constexpr int kModeHypercall = 2;
enum Counter : std::uint64_t {
  kIterations = 0,
  kSiteRuns = 8,
  kOwnBp = 16,
  kBadBp = 24,
  kHypercallResult = 32,
  kHypercalls = 40,
};
constexpr std::uint64_t kCounterStride = 64;
constexpr std::uint64_t kNotDelivered = static_cast<std::uint64_t>(-1000);  // -KVM_ENOSYS
constexpr std::uint8_t kInt3 = 0xcc;

std::uint8_t id_of(kvmi::EventId id) {
  return static_cast<std::uint8_t>(id);
}

class KvmiEvents : public ::testing::Test {
 protected:
  void start(int mode, int cpus = 1) {
    vm_ = std::make_unique<GlassboxProcess>(std::vector<std::string>{
        "run", "--kernel", glassbox::test::scenario_guest("event_loop").string(), "--cpus",
        std::to_string(cpus), "--cmdline", std::to_string(mode), "--introspect",
        "listen:unix:" + (dir_ / "kvmi.sock").string()});
    ASSERT_TRUE(vm_->wait_for_output("ready\n", 30s)) << vm_->output_so_far();
    const std::string out = vm_->output_so_far();
    bp_site_ = address_after(out, "bp_site=");
    int3_site_ = address_after(out, "int3_site=");
    counters_ = address_after(out, "counters=");
    ASSERT_NE(bp_site_, 0u) << out;
    tool_ = connect_when_ready(dir_ / "kvmi.sock");
    ASSERT_NE(tool_, nullptr);
  }

  static std::uint64_t address_after(const std::string& text, const std::string& key) {
    std::smatch m;
    if (!std::regex_search(text, m, std::regex(key + "0x([0-9a-f]+)"))) return 0;
    return std::stoull(m[1].str(), nullptr, 16);
  }

  std::uint64_t counter(int vcpu, Counter which) {
    std::uint64_t value = 0;
    auto bytes = tool_->read_physical(counters_ + vcpu * kCounterStride + which, 8);
    EXPECT_TRUE(bytes) << bytes.error().message;
    if (bytes) std::memcpy(&value, bytes->data(), 8);
    return value;
  }

  // Waits (generously) until `done` holds; tests never fail on a timing, only on an outcome.
  bool eventually(const std::function<bool()>& done) {
    for (int i = 0; i < 3000; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return done();
  }

  ReceivedEvent next_event(kvmi::EventId expected) {
    auto event = tool_->wait_event(30s);
    if (!event) {
      ADD_FAILURE() << event.error().message << "\n" << vm_->output_so_far();
      std::abort();
    }
    EXPECT_EQ(event->event_id(), id_of(expected));
    return std::move(*event);
  }

  void write_byte(std::uint64_t gpa, std::uint8_t value) {
    const std::byte b{value};
    ASSERT_TRUE(tool_->write_physical(gpa, std::span(&b, 1)));
  }

  std::uint8_t read_byte(std::uint64_t gpa) {
    auto bytes = tool_->read_physical(gpa, 1);
    EXPECT_TRUE(bytes);
    return bytes ? static_cast<std::uint8_t>((*bytes)[0]) : 0;
  }

  TempDir dir_;
  std::unique_ptr<GlassboxProcess> vm_;
  std::unique_ptr<Session> tool_;
  std::uint64_t bp_site_ = 0, int3_site_ = 0, counters_ = 0;
};

// ---- KVMI_EVENT_BREAKPOINT ----------------------------------------------------------------

TEST_F(KvmiEvents, TheGuestsOwnInt3RaisesABreakpointEventAndContinueGivesItToTheGuest) {
  start(kModeOwnInt3);
  if (!breakpoints_reach_the_vmm(*tool_)) GTEST_SKIP() << kNoBreakpointsHere;
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Breakpoint, true));
  for (int i = 0; i < 5; ++i) {
    auto event = next_event(kvmi::EventId::Breakpoint);
    const auto bp = event.specific_as<kvmi::EventBreakpoint>();
    EXPECT_EQ(event.header().size, sizeof(kvmi::Event) + sizeof(kvmi::EventBreakpoint));
    EXPECT_EQ(event.vcpu(), 0);
    EXPECT_EQ(event.common().arch.regs.rip, int3_site_);
    EXPECT_EQ(bp.gpa, int3_site_) << "identity-mapped guest: gpa of CS.base + RIP";
    EXPECT_EQ(bp.insn_len, 1);
    ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Continue));
  }
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Breakpoint, false));
  // Every CONTINUE handed the #BP to the guest's handler with the right return address.
  EXPECT_TRUE(eventually([&] { return counter(0, kOwnBp) >= 5; }));
  EXPECT_EQ(counter(0, kBadBp), 0u);
}

TEST_F(KvmiEvents, ABreakpointTheToolDidNotEnableGoesToTheGuest) {
  start(kModeOwnInt3);
  EXPECT_TRUE(eventually([&] { return counter(0, kOwnBp) >= 20; }));
  EXPECT_EQ(counter(0, kBadBp), 0u);
  EXPECT_FALSE(tool_->poll_event()) << "no event without KVMI_EVENT_BREAKPOINT enabled";
}

TEST_F(KvmiEvents, RetryReentersWithoutInjectingAndAfterRestoringTheByteTheOriginalRuns) {
  start(0);
  if (!breakpoints_reach_the_vmm(*tool_)) GTEST_SKIP() << kNoBreakpointsHere;
  const std::uint8_t original = read_byte(bp_site_);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Breakpoint, true));
  write_byte(bp_site_, kInt3);
  auto first = next_event(kvmi::EventId::Breakpoint);
  EXPECT_EQ(first.common().arch.regs.rip, bp_site_);
  EXPECT_EQ(first.specific_as<kvmi::EventBreakpoint>().gpa, bp_site_);
  const std::uint64_t runs_at_hit = counter(0, kSiteRuns);
  // RETRY with nothing changed: the vCPU re-enters at the INT3 and hits it again.
  ASSERT_TRUE(tool_->reply_event(first, kvmi::EventAction::Retry));
  auto second = next_event(kvmi::EventId::Breakpoint);
  EXPECT_EQ(second.common().arch.regs.rip, bp_site_);
  EXPECT_EQ(counter(0, kSiteRuns), runs_at_hit) << "the patched instruction did not run";
  // Restore the byte and RETRY: the original `inc %r13` runs, nothing reaches the guest's #BP.
  write_byte(bp_site_, original);
  ASSERT_TRUE(tool_->reply_event(second, kvmi::EventAction::Retry));
  EXPECT_TRUE(eventually([&] { return counter(0, kSiteRuns) > runs_at_hit + 10; }));
  EXPECT_EQ(counter(0, kOwnBp), 0u);
  EXPECT_EQ(counter(0, kBadBp), 0u);
}

TEST_F(KvmiEvents, RetryAfterTheToolMovedRipSkipsThePatchedInstruction) {
  start(0);
  if (!breakpoints_reach_the_vmm(*tool_)) GTEST_SKIP() << kNoBreakpointsHere;
  const std::uint8_t original = read_byte(bp_site_);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Breakpoint, true));
  write_byte(bp_site_, kInt3);
  constexpr std::uint64_t kIncR13Length = 3;  // 49 ff c5
  std::uint64_t runs = 0;
  for (int i = 0; i < 4; ++i) {
    auto event = next_event(kvmi::EventId::Breakpoint);
    EXPECT_EQ(event.common().arch.regs.rip, bp_site_);
    if (i == 0) runs = counter(0, kSiteRuns);
    // Every hit comes one loop later, and the skipped `inc` left the count where it was.
    EXPECT_EQ(counter(0, kSiteRuns), runs) << "hit " << i;
    kvm_regs regs = event.common().arch.regs;
    regs.rip = bp_site_ + kIncR13Length;
    ASSERT_TRUE(tool_->set_registers(0, regs));
    // Unplant before the last answer, as a tool leaving does: nothing reaches the guest's #BP.
    if (i == 3) write_byte(bp_site_, original);
    ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Retry));
  }
  EXPECT_TRUE(eventually([&] { return counter(0, kSiteRuns) > runs + 10; }));
  EXPECT_EQ(counter(0, kOwnBp), 0u);
  EXPECT_EQ(counter(0, kBadBp), 0u);
}

TEST_F(KvmiEvents, BothVcpusRaiseBreakpointEventsAndEachIsAnsweredOnItsOwn) {
  start(kModeOwnInt3, 2);
  if (!breakpoints_reach_the_vmm(*tool_)) GTEST_SKIP() << kNoBreakpointsHere;
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Breakpoint, true));
  ASSERT_TRUE(tool_->control_vcpu_events(1, kvmi::EventId::Breakpoint, true));
  std::set<std::uint16_t> seen;
  // Until both vCPUs were heard from (a busy host may run one of them much later).
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (seen.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    auto event = next_event(kvmi::EventId::Breakpoint);
    EXPECT_EQ(event.common().arch.regs.rip, int3_site_);
    seen.insert(event.vcpu());
    ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Continue));
  }
  EXPECT_EQ(seen, (std::set<std::uint16_t>{0, 1}));
  for (std::uint16_t v : {0, 1}) {
    ASSERT_TRUE(tool_->control_vcpu_events(v, kvmi::EventId::Breakpoint, false));
  }
  // Drain what was raised before the disable reached each vCPU.
  while (auto late = tool_->poll_event()) {
    ASSERT_TRUE(tool_->reply_event(*late, kvmi::EventAction::Continue));
  }
  EXPECT_TRUE(eventually([&] { return counter(1, kOwnBp) > 5 && counter(0, kOwnBp) > 5; }));
  EXPECT_EQ(counter(0, kBadBp) + counter(1, kBadBp), 0u);
}

TEST_F(KvmiEvents, AToolThatLeavesWithABreakpointPendingLeavesTheGuestRunning) {
  start(kModeOwnInt3, 2);
  if (!breakpoints_reach_the_vmm(*tool_)) GTEST_SKIP() << kNoBreakpointsHere;
  for (std::uint16_t v : {0, 1}) {
    ASSERT_TRUE(tool_->control_vcpu_events(v, kvmi::EventId::Breakpoint, true));
  }
  auto event = next_event(kvmi::EventId::Breakpoint);  // left unanswered
  const std::uint64_t before = counter(0, kOwnBp) + counter(1, kOwnBp);
  tool_.reset();
  // The waiting vCPU continued as if answered CONTINUE; no interception is left behind.
  auto next = connect_when_ready(dir_ / "kvmi.sock");
  ASSERT_NE(next, nullptr);
  tool_ = std::move(next);
  EXPECT_TRUE(eventually([&] { return counter(0, kOwnBp) + counter(1, kOwnBp) > before + 20; }));
  EXPECT_FALSE(tool_->poll_event());
  EXPECT_EQ(counter(0, kBadBp) + counter(1, kBadBp), 0u);
}

// ---- KVMI_EVENT_SINGLESTEP ----------------------------------------------------------------

TEST_F(KvmiEvents, SingleStepRaisesOneEventPerInstructionUntilDisabled) {
  start(0);
  auto version = tool_->get_version();
  ASSERT_TRUE(version);
  auto stepping = tool_->control_singlestep(0, true);
  if (!stepping) {
    // A host without any single-step support answers -KVM_EOPNOTSUPP and says so in features.
    EXPECT_TRUE(stepping.error().is(kvmi::Errno::OpNotSupp));
    EXPECT_FALSE(version->singlestep);
    GTEST_SKIP() << "no single-step on this host";
  }
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Singlestep, true));
  std::vector<std::uint64_t> rips;
  for (int i = 0; i < 30; ++i) {
    auto event = next_event(kvmi::EventId::Singlestep);
    EXPECT_EQ(event.header().size, sizeof(kvmi::Event) + sizeof(kvmi::EventSinglestep));
    EXPECT_EQ(event.specific_as<kvmi::EventSinglestep>().failed, 0);
    rips.push_back(event.common().arch.regs.rip);
    ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Continue));
  }
  // One instruction per step: consecutive events never show the same RIP, and the loop (seven
  // instructions with mode 0) comes round again.
  for (std::size_t i = 1; i < rips.size(); ++i) EXPECT_NE(rips[i], rips[i - 1]) << i;
  EXPECT_GT(std::count(rips.begin(), rips.end(), bp_site_), 1);
  ASSERT_TRUE(tool_->control_singlestep(0, false));
  while (auto late = tool_->poll_event()) {
    ASSERT_TRUE(tool_->reply_event(*late, kvmi::EventAction::Continue));
  }
  const std::uint64_t runs = counter(0, kSiteRuns);
  EXPECT_TRUE(eventually([&] { return counter(0, kSiteRuns) > runs + 1000; }));
  EXPECT_FALSE(tool_->poll_event()) << "stepping stopped";
}

TEST_F(KvmiEvents, AStepThatEndsInAnotherExitIsReportedAsFailed) {
  start(kModeHypercall);
  if (!tool_->control_singlestep(0, true)) GTEST_SKIP() << "no single-step on this host";
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Singlestep, true));
  int failed = 0;
  for (int i = 0; i < 60 && failed == 0; ++i) {
    auto event = next_event(kvmi::EventId::Singlestep);
    failed += event.specific_as<kvmi::EventSinglestep>().failed;
    ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Continue));
  }
  EXPECT_GT(failed, 0) << "the doorbell OUT in the loop exits to the VMM during its step";
  ASSERT_TRUE(tool_->control_singlestep(0, false));
}

// ---- KVMI_EVENT_HYPERCALL -----------------------------------------------------------------

TEST_F(KvmiEvents, TheDoorbellHypercallRaisesAnEventAndRaxGetsTheResult) {
  start(kModeHypercall);
  // Not enabled: the guest gets -KVM_ENOSYS in RAX (spec §3.4.3).
  EXPECT_TRUE(eventually([&] { return counter(0, kHypercalls) > 3; }));
  EXPECT_EQ(counter(0, kHypercallResult), kNotDelivered);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Hypercall, true));
  for (int i = 0; i < 3; ++i) {
    auto event = next_event(kvmi::EventId::Hypercall);
    EXPECT_EQ(event.header().size, sizeof(kvmi::Event));
    EXPECT_EQ(event.common().arch.regs.rax, 34u);
    EXPECT_EQ(event.common().arch.regs.rdi, 24u);
    EXPECT_EQ(event.common().arch.regs.rsi, 0u);
    ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Continue));
  }
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Hypercall, false));
  while (auto late = tool_->poll_event()) {
    ASSERT_TRUE(tool_->reply_event(*late, kvmi::EventAction::Continue));
  }
  // The last delivered call returned 0; later ones -KVM_ENOSYS again.
  EXPECT_TRUE(eventually([&] { return counter(0, kHypercallResult) == kNotDelivered; }));
}

TEST_F(KvmiEvents, CrashAnswerToAHypercallStopsTheVm) {
  start(kModeHypercall);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Hypercall, true));
  auto event = next_event(kvmi::EventId::Hypercall);
  ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Crash));
  auto r = vm_->wait(60s);
  EXPECT_EQ(r.exit_status, 123) << r.err;
}

TEST(KvmiGuestKernelEvents, TheAgentsDoorbellHypercallsReachTheTool) {
  TempDir dir;
  GlassboxProcess vm({"run", "--kernel", glassbox::test::guest_kernel().string(), "--cpus", "2",
                      "--introspect", "listen:unix:" + (dir / "kvmi.sock").string()});
  auto tool = connect_when_ready(dir / "kvmi.sock");
  ASSERT_NE(tool, nullptr);
  for (std::uint16_t v : {0, 1}) {
    ASSERT_TRUE(tool->control_vcpu_events(v, kvmi::EventId::Hypercall, true));
  }
  int calls = 0;
  while (calls < 5) {
    auto event = tool->wait_event(60s);
    if (!event) break;  // the guest may power off before the tool enabled the first vCPU
    if (event->event_id() != id_of(kvmi::EventId::Hypercall)) {
      ASSERT_TRUE(tool->reply_event(*event, kvmi::EventAction::Continue));
      continue;
    }
    EXPECT_EQ(event->common().arch.regs.rax, 34u);
    EXPECT_EQ(event->common().arch.regs.rdi, 24u);
    EXPECT_EQ(event->common().arch.sregs.cs.selector & 3, 3) << "the agent runs at CPL3";
    ++calls;
    ASSERT_TRUE(tool->reply_event(*event, kvmi::EventAction::Continue));
  }
  auto r = vm.wait(120s);
  EXPECT_EQ(r.exit_status, 0) << r.err;
  EXPECT_GE(calls, 4) << r.out;  // the agent's first round may come before the enable
}

}  // namespace

namespace {

// On KVM-PVM only CPL0 code can be stepped; a step must never leak into the guest's CPL3 code
// as a #DB (its kernel would die of an unexpected exception). Stepping the guest kernel through
// syscalls and process switches must leave it running to a normal power-off.
TEST(KvmiGuestKernelEvents, SteppingTheGuestKernelLeavesItsUserCodeAlone) {
  TempDir dir;
  GlassboxProcess vm({"run", "--kernel", glassbox::test::guest_kernel().string(), "--cpus", "2",
                      "--introspect", "listen:unix:" + (dir / "kvmi.sock").string()});
  auto tool = connect_when_ready(dir / "kvmi.sock");
  ASSERT_NE(tool, nullptr);
  if (!tool->control_singlestep(0, true)) GTEST_SKIP() << "no single-step on this host";
  ASSERT_TRUE(tool->control_vcpu_events(0, kvmi::EventId::Singlestep, true));
  int steps = 0;
  std::set<std::uint16_t> cpls;
  while (steps < 1000) {
    auto event = tool->wait_event(60s);
    if (!event) break;  // the guest finished while being stepped
    if (event->event_id() == id_of(kvmi::EventId::Singlestep)) {
      ++steps;
      cpls.insert(event->common().arch.sregs.cs.selector & 3);
    }
    ASSERT_TRUE(tool->reply_event(*event, kvmi::EventAction::Continue));
  }
  // On a host that steps every CPL the guest may finish within the steps taken (the loop ends
  // on the closed connection); otherwise stepping stops here and the guest runs on.
  if (tool->is_open()) {
    ASSERT_TRUE(tool->control_singlestep(0, false)) << vm.output_so_far();
    while (auto late = tool->poll_event())
      (void)tool->reply_event(*late, kvmi::EventAction::Continue);
  }
  const bool full_singlestep = tool->get_version() && tool->get_version()->singlestep;
  auto r = vm.wait(120s);
  EXPECT_EQ(r.exit_status, 0) << r.out << r.err;
  EXPECT_GT(steps, 0);
  // On a host that steps kernel code only (features.singlestep = 0), a step may still end at
  // CPL3 (the step of an IRETQ/SYSRET), but none runs there: the guest survived to power-off.
  (void)full_singlestep;
}

}  // namespace

namespace {

TEST_F(KvmiEvents, AToolThatLeavesWhileSteppingLeavesNoSteppingBehind) {
  start(0);
  if (!tool_->control_singlestep(0, true)) GTEST_SKIP() << "no single-step on this host";
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Singlestep, true));
  for (int i = 0; i < 5; ++i) {
    auto event = next_event(kvmi::EventId::Singlestep);
    ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Continue));
  }
  (void)next_event(kvmi::EventId::Singlestep);  // left unanswered
  tool_.reset();
  tool_ = connect_when_ready(dir_ / "kvmi.sock");
  ASSERT_NE(tool_, nullptr);
  // Stepped, the loop manages a few hundred iterations a second; free, it runs far faster.
  const std::uint64_t runs = counter(0, kSiteRuns);
  EXPECT_TRUE(eventually([&] { return counter(0, kSiteRuns) > runs + 20000; }));
  EXPECT_FALSE(tool_->poll_event());
}

TEST_F(KvmiEvents, Sigusr1UnhookInTheMiddleOfABreakpointStream) {
  start(kModeOwnInt3, 2);
  if (!breakpoints_reach_the_vmm(*tool_)) GTEST_SKIP() << kNoBreakpointsHere;
  ASSERT_TRUE(tool_->control_vm_events(kvmi::EventId::Unhook, true));
  for (std::uint16_t v : {0, 1}) {
    ASSERT_TRUE(tool_->control_vcpu_events(v, kvmi::EventId::Breakpoint, true));
  }
  for (int i = 0; i < 10; ++i) {
    auto event = next_event(kvmi::EventId::Breakpoint);
    ASSERT_TRUE(tool_->reply_event(event, kvmi::EventAction::Continue));
  }
  vm_->send_signal(SIGUSR1);
  // Breakpoint events keep coming until the UNHOOK event; the tool answers them, then leaves.
  for (;;) {
    auto event = tool_->wait_event(30s);
    ASSERT_TRUE(event) << event.error().message;
    if (event->event_id() == id_of(kvmi::EventId::Unhook)) break;
    ASSERT_TRUE(tool_->reply_event(*event, kvmi::EventAction::Continue));
  }
  tool_->close();
  ASSERT_TRUE(vm_->wait_for_log("introspection: connection closed", 30s));
  tool_ = connect_when_ready(dir_ / "kvmi.sock");
  ASSERT_NE(tool_, nullptr);
  const std::uint64_t before = counter(0, kOwnBp) + counter(1, kOwnBp);
  EXPECT_TRUE(eventually([&] { return counter(0, kOwnBp) + counter(1, kOwnBp) > before + 20; }));
  EXPECT_FALSE(tool_->poll_event());
  EXPECT_EQ(counter(0, kBadBp) + counter(1, kBadBp), 0u);
}

}  // namespace
