// KVMI_EVENT_MSR and KVMI_VCPU_CONTROL_MSR against the real VMM (spec/kvmi-v7.md §2.3.19,
// §3.4.9), with the MSR write filter of notes/kvm-backends.md §4 underneath.
//
// Most tests run the msr_loop scenario guest: every vCPU writes LSTAR in a loop at CPL0 with a
// value unique to (vCPU, iteration), reads it back and prints one line per iteration, so the
// guest's own output shows what each write turned into. The last test runs the bundled guest
// kernel in attack mode, whose attacker rewrites LSTAR through a system call.
//
// No test depends on timing: events are matched to guest lines by the written value, and every
// wait is generous.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "glassbox/client/session.h"
#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/events.h"
#include "glassbox/kvmi/messages.h"
#include "run_glassbox.h"

using namespace std::chrono_literals;
using glassbox::client::ErrorKind;
using glassbox::client::ReceivedEvent;
using glassbox::client::Session;
using glassbox::test::GlassboxProcess;
namespace kvmi = glassbox::kvmi;

namespace {

constexpr std::uint32_t kMsrLstar = 0xc0000082;
// Canonical values the tool writes instead of the guest's (KVM refuses non-canonical LSTARs).
constexpr std::uint64_t kToolValue1 = 0xffffffff8abcd000;
constexpr std::uint64_t kToolValue2 = 0xffffffff8fed0000;

// One line of the msr_loop guest.
struct LoopLine {
  unsigned vcpu = 0;
  std::uint64_t iteration = 0;
  std::uint64_t written = 0;
  std::uint64_t read = 0;
  bool gs_ok = false;
  std::uint64_t gp = 0;
};

std::optional<LoopLine> parse_line(const std::string& line) {
  LoopLine l;
  char gs[8] = {};
  unsigned long long it = 0, w = 0, r = 0, gp = 0;
  if (std::sscanf(line.c_str(), "v%u i=%llu w=0x%llx r=0x%llx gs=%7s gp=%llu", &l.vcpu, &it, &w, &r,
                  gs, &gp) != 6) {
    return std::nullopt;
  }
  l.iteration = it, l.written = w, l.read = r, l.gp = gp;
  l.gs_ok = std::string(gs) == "ok";
  return l;
}

// Every complete line of the guest's output from byte `from` on.
std::vector<LoopLine> parse_lines(const std::string& out, std::size_t from = 0) {
  std::vector<LoopLine> lines;
  std::size_t pos = from;
  while (true) {
    const std::size_t end = out.find('\n', pos);
    if (end == std::string::npos) break;
    if (auto l = parse_line(out.substr(pos, end - pos))) lines.push_back(*l);
    pos = end + 1;
  }
  return lines;
}

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%016" PRIx64, v);
  return buf;
}

std::span<const std::byte> bytes_of(const std::uint64_t& v) {
  return std::as_bytes(std::span(&v, 1));
}

class KvmiMsr : public ::testing::Test {
 protected:
  void TearDown() override {
    if (vm_) {
      vm_->send_signal(SIGTERM);
      (void)vm_->wait(30s);
    }
  }

  void start(const std::vector<std::string>& run_args) {
    socket_ = std::filesystem::temp_directory_path() /
              ("glassbox-msr-test-" + std::to_string(getpid()) + "-" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".sock");
    std::filesystem::remove(socket_);
    std::vector<std::string> args = run_args;
    args.push_back("--introspect");
    args.push_back("listen:unix:" + socket_.string());
    vm_ = std::make_unique<GlassboxProcess>(args);
    tool_ = connect();
  }

  // The msr_loop guest on `cpus` vCPUs; `iterations` 0 = forever.
  void start_loop(int cpus, int iterations = 0) {
    start({"run", "--kernel", glassbox::test::scenario_guest("msr_loop").string(), "--cpus",
           std::to_string(cpus), "--cmdline", std::to_string(iterations)});
  }

  std::unique_ptr<Session> connect() {
    for (int i = 0; i < 600; ++i) {
      auto s = Session::connect(socket_);
      if (s) return std::move(*s);
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "could not connect to " << socket_ << "\n" << vm_->output_so_far();
    return nullptr;
  }

  // The next event, which must be an MSR event.
  ReceivedEvent next_msr_event() {
    auto event = tool_->wait_event(60s);
    EXPECT_TRUE(event) << event.error().message << "\n" << vm_->output_so_far();
    if (!event) std::abort();
    EXPECT_EQ(event->event_id(), static_cast<std::uint8_t>(kvmi::EventId::Msr));
    EXPECT_EQ(event->specific().size(), sizeof(kvmi::EventMsr));
    return std::move(*event);
  }

  // The guest line of the write of `written`, once printed completely.
  LoopLine wait_line(std::uint64_t written) {
    const std::string needle = "w=" + hex(written) + " r=";
    EXPECT_TRUE(vm_->wait_for_output(needle, 60s)) << needle << "\n" << vm_->output_so_far();
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string out = vm_->output_so_far();
      const std::size_t at = out.find(needle);
      const std::size_t start = out.rfind('\n', at);
      const std::size_t end = out.find('\n', at);
      if (at != std::string::npos && end != std::string::npos) {
        const std::size_t from = start == std::string::npos ? 0 : start + 1;
        auto line = parse_line(out.substr(from, end - from));
        EXPECT_TRUE(line) << out.substr(from, end - from);
        if (line) return *line;
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
    ADD_FAILURE() << "no complete line for " << needle << "\n" << vm_->output_so_far();
    std::abort();
  }

  // Waits until vCPU `vcpu` has printed `count` more lines after byte `from` of the output.
  std::vector<LoopLine> wait_lines_after(std::size_t from, unsigned vcpu, std::size_t count) {
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    std::vector<LoopLine> mine;
    while (std::chrono::steady_clock::now() < deadline) {
      mine.clear();
      for (const auto& l : parse_lines(vm_->output_so_far(), from)) {
        if (l.vcpu == vcpu) mine.push_back(l);
      }
      if (mine.size() >= count) return mine;
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "vCPU " << vcpu << " printed only " << mine.size() << " lines\n"
                  << vm_->output_so_far();
    return mine;
  }

  std::filesystem::path socket_;
  std::unique_ptr<GlassboxProcess> vm_;
  std::unique_ptr<Session> tool_;
};

TEST_F(KvmiMsr, EventCarriesOldAndNewAndTheReplyDecidesWhatTheGuestReadsBack) {
  start_loop(1);
  ASSERT_TRUE(tool_);
  ASSERT_TRUE(vm_->wait_for_output(" gp=0\n", 60s)) << vm_->output_so_far();
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Msr, true));
  ASSERT_TRUE(tool_->control_msr(0, kMsrLstar, true));

  // 1. CONTINUE echoing the guest's value: the write lands.
  auto e1 = next_msr_event();
  EXPECT_EQ(e1.vcpu(), 0u);
  const auto m1 = e1.specific_as<kvmi::EventMsr>();
  EXPECT_EQ(m1.msr, kMsrLstar);
  EXPECT_EQ(m1.padding, 0u);
  EXPECT_NE(m1.old_value, m1.new_value);
  EXPECT_EQ(m1.new_value & 0xffffffff8000000fULL, 0xffffffff80000000ULL)
      << "a value of the loop: " << hex(m1.new_value);
  EXPECT_EQ(e1.common().arch.msrs.lstar, m1.old_value) << "the event's MSR snapshot is pre-write";
  ASSERT_TRUE(tool_->reply_event(e1, kvmi::EventAction::Continue, bytes_of(m1.new_value)));
  const LoopLine l1 = wait_line(m1.new_value);
  EXPECT_EQ(l1.read, m1.new_value);

  // 2. CONTINUE with the tool's own value: the guest reads the tool's value.
  auto e2 = next_msr_event();
  const auto m2 = e2.specific_as<kvmi::EventMsr>();
  EXPECT_EQ(m2.msr, kMsrLstar);
  EXPECT_EQ(m2.old_value, m1.new_value) << "old = what the previous write left";
  EXPECT_NE(m2.new_value, m1.new_value);
  ASSERT_TRUE(tool_->reply_event(e2, kvmi::EventAction::Continue, bytes_of(kToolValue1)));
  const LoopLine l2 = wait_line(m2.new_value);
  EXPECT_EQ(l2.read, kToolValue1);
  EXPECT_EQ(l2.gp, l1.gp);

  // 3. RETRY: the WRMSR fails with #GP (spec §3.4.9); LSTAR keeps the tool's value.
  auto e3 = next_msr_event();
  const auto m3 = e3.specific_as<kvmi::EventMsr>();
  EXPECT_EQ(m3.old_value, kToolValue1);
  ASSERT_TRUE(tool_->reply_event(e3, kvmi::EventAction::Retry));
  const LoopLine l3 = wait_line(m3.new_value);
  EXPECT_EQ(l3.read, kToolValue1);
  EXPECT_EQ(l3.gp, l2.gp + 1);

  // 4. CONTINUE without the 8-byte tail: new_val is 0 (spec §3.3).
  auto e4 = next_msr_event();
  const auto m4 = e4.specific_as<kvmi::EventMsr>();
  EXPECT_EQ(m4.old_value, kToolValue1);
  ASSERT_TRUE(tool_->reply_event(e4, kvmi::EventAction::Continue));
  const LoopLine l4 = wait_line(m4.new_value);
  EXPECT_EQ(l4.read, 0u);
  EXPECT_EQ(l4.gp, l3.gp);

  // 5. Once more with a second value, then stop tracking while the next event waits: the
  //    command runs on the waiting vCPU, the event is answered, and the writes land again.
  auto e5 = next_msr_event();
  const auto m5 = e5.specific_as<kvmi::EventMsr>();
  EXPECT_EQ(m5.old_value, 0u);
  ASSERT_TRUE(tool_->control_msr(0, kMsrLstar, false));
  ASSERT_TRUE(tool_->reply_event(e5, kvmi::EventAction::Continue, bytes_of(kToolValue2)));
  EXPECT_EQ(wait_line(m5.new_value).read, kToolValue2);
  const std::size_t mark = vm_->output_so_far().size();
  for (const auto& l : wait_lines_after(mark, 0, 5)) {
    EXPECT_EQ(l.read, l.written) << "untracked again: writes land";
  }
  EXPECT_FALSE(tool_->poll_event()) << "no event after CONTROL_MSR(disable)";

  // The never-watched IA32_KERNEL_GS_BASE read back right on every iteration; reads of LSTAR
  // were never filtered (a filtered read would have raised #GP): the one #GP is the RETRY's.
  for (const auto& l : parse_lines(vm_->output_so_far())) {
    EXPECT_TRUE(l.gs_ok) << "iteration " << l.iteration;
    EXPECT_EQ(l.gp, l.iteration < l3.iteration ? 0u : 1u) << "iteration " << l.iteration;
  }
}

TEST_F(KvmiMsr, TrackedWithoutTheEventOrUntrackedMsrsRaiseNothingAndLand) {
  start_loop(1);
  ASSERT_TRUE(tool_);
  ASSERT_TRUE(vm_->wait_for_output(" gp=0\n", 60s)) << vm_->output_so_far();
  // Tracked but KVMI_EVENT_MSR not enabled: the filter sends the writes to the VMM, which
  // applies them.
  ASSERT_TRUE(tool_->control_msr(0, kMsrLstar, true));
  std::size_t mark = vm_->output_so_far().size();
  for (const auto& l : wait_lines_after(mark, 0, 5)) {
    EXPECT_EQ(l.read, l.written);
    EXPECT_TRUE(l.gs_ok);
    EXPECT_EQ(l.gp, 0u);
  }
  // Event enabled, but only an MSR the guest never writes is tracked.
  ASSERT_TRUE(tool_->control_msr(0, kMsrLstar, false));
  ASSERT_TRUE(tool_->control_msr(0, 0xc0000103, true));  // IA32_TSC_AUX
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Msr, true));
  mark = vm_->output_so_far().size();
  for (const auto& l : wait_lines_after(mark, 0, 5)) {
    EXPECT_EQ(l.read, l.written);
    EXPECT_TRUE(l.gs_ok);
  }
  EXPECT_FALSE(tool_->poll_event());
}

TEST_F(KvmiMsr, TwoVcpusOnlyTheVcpuWithTheEventIsAsked) {
  start_loop(2);
  ASSERT_TRUE(tool_);
  ASSERT_TRUE(vm_->wait_for_output("v1 i=", 60s)) << vm_->output_so_far();
  // The filter is VM-wide: both vCPUs' LSTAR writes exit, but only vCPU 0 has the event.
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Msr, true));
  ASSERT_TRUE(tool_->control_msr(0, kMsrLstar, true));
  ASSERT_TRUE(tool_->control_msr(1, kMsrLstar, true));
  const std::size_t mark = vm_->output_so_far().size();
  std::vector<std::uint64_t> changed;
  for (int i = 0; i < 6; ++i) {
    auto e = next_msr_event();
    EXPECT_EQ(e.vcpu(), 0u);
    const auto m = e.specific_as<kvmi::EventMsr>();
    EXPECT_EQ(m.msr, kMsrLstar);
    EXPECT_EQ((m.new_value >> 24) & 0x7f, 0u) << "vCPU 0's value: " << hex(m.new_value);
    const std::uint64_t answer = kToolValue1 + 0x10 * static_cast<std::uint64_t>(i);
    ASSERT_TRUE(tool_->reply_event(e, kvmi::EventAction::Continue, bytes_of(answer)));
    EXPECT_EQ(wait_line(m.new_value).read, answer);
  }
  // Meanwhile vCPU 1's writes landed unchanged.
  for (const auto& l : wait_lines_after(mark, 1, 5)) {
    EXPECT_EQ(l.read, l.written) << "vCPU 1 iteration " << l.iteration;
    EXPECT_EQ(l.gp, 0u);
  }
  // Now vCPU 1 has the event too and vCPU 0 stops tracking: events come from vCPU 1 only.
  ASSERT_TRUE(tool_->control_vcpu_events(1, kvmi::EventId::Msr, true));
  // vCPU 0 may already wait in its next event: answer it, echoing, while the change lands.
  // vCPU 0 may already wait in its next event; the command runs there as a job meanwhile, so
  // its reply is collected at the end and vCPU 0's remaining events are answered by echoing.
  const kvmi::VcpuControlMsr untrack{0, 0, 0, kMsrLstar};
  auto untracked =
      tool_->submit_vcpu(kvmi::MessageId::VcpuControlMsr, 0, std::as_bytes(std::span(&untrack, 1)));
  ASSERT_TRUE(untracked);
  int from_vcpu1 = 0;
  for (int i = 0; i < 200 && from_vcpu1 < 3; ++i) {
    auto e = next_msr_event();
    const auto m = e.specific_as<kvmi::EventMsr>();
    if (e.vcpu() == 1) {
      ++from_vcpu1;
      EXPECT_EQ((m.new_value >> 24) & 0x7f, 1u) << hex(m.new_value);
      ASSERT_TRUE(tool_->reply_event(e, kvmi::EventAction::Continue, bytes_of(kToolValue2)));
      EXPECT_EQ(wait_line(m.new_value).read, kToolValue2);
    } else {
      ASSERT_TRUE(tool_->reply_event(e, kvmi::EventAction::Continue, bytes_of(m.new_value)));
    }
  }
  EXPECT_TRUE(untracked->wait(30s));
  EXPECT_EQ(from_vcpu1, 3);
  // vCPU 0 writes freely again.
  const std::size_t mark2 = vm_->output_so_far().size();
  for (const auto& l : wait_lines_after(mark2, 0, 4)) EXPECT_EQ(l.read, l.written);
}

TEST_F(KvmiMsr, ToolLeavingMidStreamRemovesTheFilterAndLaterWritesLand) {
  start_loop(2);
  ASSERT_TRUE(tool_);
  ASSERT_TRUE(vm_->wait_for_output("v1 i=", 60s)) << vm_->output_so_far();
  for (std::uint16_t v : {0, 1}) {
    ASSERT_TRUE(tool_->control_vcpu_events(v, kvmi::EventId::Msr, true));
    ASSERT_TRUE(tool_->control_msr(v, kMsrLstar, true));
  }
  for (int i = 0; i < 6; ++i) {
    auto e = next_msr_event();
    const auto m = e.specific_as<kvmi::EventMsr>();
    ASSERT_TRUE(tool_->reply_event(e, kvmi::EventAction::Continue, bytes_of(kToolValue1)));
    EXPECT_EQ(wait_line(m.new_value).read, kToolValue1);
  }
  // The next event stays unanswered: the tool goes away while its vCPU waits.
  auto pending = next_msr_event();
  const auto mp = pending.specific_as<kvmi::EventMsr>();
  tool_->close();
  tool_.reset();
  // No valid reply: the guest's own value is written (spec §3.4.9, "socket error").
  EXPECT_EQ(wait_line(mp.new_value).read, mp.new_value);
  // From then on every write of both vCPUs lands, with nobody to ask.
  const std::size_t mark = vm_->output_so_far().size();
  for (unsigned v : {0u, 1u}) {
    for (const auto& l : wait_lines_after(mark, v, 8)) {
      EXPECT_EQ(l.read, l.written) << "vCPU " << v << " iteration " << l.iteration;
      EXPECT_EQ(l.gp, 0u);
    }
  }
  // A new tool finds nothing tracked: enabling the event alone raises no MSR event.
  tool_ = connect();
  ASSERT_TRUE(tool_);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Msr, true));
  const std::size_t mark2 = vm_->output_so_far().size();
  for (const auto& l : wait_lines_after(mark2, 0, 4)) EXPECT_EQ(l.read, l.written);
  EXPECT_FALSE(tool_->poll_event());
}

TEST_F(KvmiMsr, ControlMsrChecksRangesAndPaddings) {
  start_loop(1);
  ASSERT_TRUE(tool_);
  // Inclusive ranges (spec §P1): both ends of both regions are accepted.
  for (std::uint32_t msr : {0x0u, 0x1fffu, 0xc0000000u, 0xc0001fffu}) {
    EXPECT_TRUE(tool_->control_msr(0, msr, true)) << std::hex << msr;
    EXPECT_TRUE(tool_->control_msr(0, msr, false)) << std::hex << msr;
  }
  for (std::uint32_t msr : {0x2000u, 0x4b564d99u, 0xbfffffffu, 0xc0002000u, 0xffffffffu}) {
    for (bool enable : {true, false}) {
      auto r = tool_->control_msr(0, msr, enable);
      ASSERT_FALSE(r) << std::hex << msr;
      EXPECT_TRUE(r.error().is(kvmi::Errno::Inval)) << std::hex << msr << ": " << r.error().message;
    }
  }
  for (auto req :
       {kvmi::VcpuControlMsr{1, 1, 0, kMsrLstar}, kvmi::VcpuControlMsr{1, 0, 1, kMsrLstar}}) {
    auto p =
        tool_->submit_vcpu(kvmi::MessageId::VcpuControlMsr, 0, std::as_bytes(std::span(&req, 1)));
    ASSERT_TRUE(p);
    auto r = p->wait(30s);
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is(kvmi::Errno::Inval)) << r.error().message;
  }
  // The bad requests tracked nothing: with the event on, the guest's writes raise no event.
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Msr, true));
  const std::size_t mark = vm_->output_so_far().size();
  for (const auto& l : wait_lines_after(mark, 0, 3)) EXPECT_EQ(l.read, l.written);
  EXPECT_FALSE(tool_->poll_event());
}

// The bundled guest kernel's attacker rewrites LSTAR with a "rootkit" entry through its poke
// system call; the tool sees the write and keeps the old value. --start-paused holds both vCPUs
// before their first instruction, so the tool is armed before anything in the guest runs.
TEST_F(KvmiMsr, GuestKernelAttackOnLstarIsSeenAndBlocked) {
  start({"run", "--kernel", glassbox::test::guest_kernel().string(), "--cpus", "2", "--cmdline",
         "attack", "--start-paused"});
  ASSERT_TRUE(tool_);
  for (std::uint16_t v : {0, 1}) {
    ASSERT_TRUE(tool_->control_vcpu_events(v, kvmi::EventId::Msr, true));
    ASSERT_TRUE(tool_->control_msr(v, kMsrLstar, true));
  }
  // Each held vCPU waits in one PAUSE_VCPU event; answering it starts the guest there.
  std::set<std::uint32_t> held;
  while (held.size() < 2) {
    auto e = tool_->wait_event(60s);
    ASSERT_TRUE(e) << e.error().message << "\n" << vm_->output_so_far();
    ASSERT_EQ(e->event_id(), static_cast<std::uint8_t>(kvmi::EventId::PauseVcpu));
    EXPECT_TRUE(held.insert(e->vcpu()).second) << "one pause event per vCPU";
    ASSERT_TRUE(tool_->reply_event(*e, kvmi::EventAction::Continue));
  }
  // Boot programs LSTAR on each vCPU (old 0): those writes are the kernel's own and pass. The
  // attack is the write that changes an already-programmed LSTAR.
  std::optional<kvmi::EventMsr> attack;
  while (!attack) {
    auto e = next_msr_event();
    const auto m = e.specific_as<kvmi::EventMsr>();
    EXPECT_EQ(m.msr, kMsrLstar);
    if (m.old_value == 0) {
      ASSERT_TRUE(tool_->reply_event(e, kvmi::EventAction::Continue, bytes_of(m.new_value)));
      continue;
    }
    attack = m;
    ASSERT_TRUE(tool_->reply_event(e, kvmi::EventAction::Continue, bytes_of(m.old_value)));
  }
  EXPECT_NE(attack->new_value, attack->old_value);
  if (!vm_->wait_for_output("attack lstar: blocked\n", 60s)) {
    auto r = vm_->wait(10s);
    FAIL() << r.out << "\n" << r.err;
  }
  EXPECT_TRUE(vm_->wait_for_output("attack summary: 2 of 3 succeeded\n", 60s))
      << vm_->output_so_far();
  // The kernel printed its LSTAR at boot ("... (LSTAR 0x...)"): the attack's old value is it.
  const std::string out = vm_->output_so_far();
  const std::size_t at = out.find("(LSTAR 0x");
  ASSERT_NE(at, std::string::npos) << out;
  EXPECT_EQ(std::stoull(out.substr(at + 9), nullptr, 16), attack->old_value);
}

}  // namespace
