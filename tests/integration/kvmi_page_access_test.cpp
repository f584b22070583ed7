// KVMI_VM_SET_PAGE_ACCESS and KVMI_EVENT_PF end to end: the real VMM runs the page_access
// scenario guest (tests/guests/page_access.S), a tool restricts its pages through the project's
// client and answers the PF events; the guest's serial lines show what each answer did.
//
// Every check waits for an exact line (or an event) with a generous timeout: a wrong result
// shows up as a different line, never as a late one, so nothing depends on timing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "glassbox/client/session.h"
#include "glassbox/kvmi/abi.h"
#include "glassbox/kvmi/errors.h"
#include "kvmi_test_helpers.h"
#include "run_glassbox.h"

using namespace std::chrono_literals;
using glassbox::client::ReceivedEvent;
using glassbox::client::Session;
using glassbox::test::GlassboxProcess;
namespace kvmi = glassbox::kvmi;
namespace support = glassbox::test::kvmi_support;

namespace {

constexpr std::uint8_t kR = kvmi::kPageAccessR;
constexpr std::uint8_t kW = kvmi::kPageAccessW;
constexpr std::uint8_t kX = kvmi::kPageAccessX;
constexpr std::uint64_t kUnknownGva = ~0ull;
constexpr auto kEventTimeout = 30s;

struct Pages {
  std::uint64_t w = 0, r = 0, x = 0, a = 0;
  bool avx = false;
};

class KvmiPageAccess : public ::testing::Test {
 protected:
  void TearDown() override {
    if (tool_) tool_->close();
    tool_.reset();
    if (HasFailure() && vm_) {
      vm_->send_signal(SIGTERM);
      auto r = vm_->wait(10s);
      std::printf("glassbox log:\n%s\n", r.err.c_str());
    }
    vm_.reset();  // SIGKILL + reap
  }

  // `mode`: the guest's command line (page_access.S): 0 CPL0 loop, 1 AVX and a CPL3 loop where
  // the CPU has AVX, 2 CPL3 loop without AVX.
  void start(int cpus, int mode = 0) {
    socket_ = std::filesystem::temp_directory_path() /
              ("glassbox-pages-test-" + std::to_string(getpid()) + "-" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".sock");
    std::filesystem::remove(socket_);
    vm_ = std::make_unique<GlassboxProcess>(std::vector<std::string>{
        "run", "--kernel", glassbox::test::scenario_guest("page_access").string(), "--cpus",
        std::to_string(cpus), "--cmdline", std::to_string(mode), "--introspect",
        "listen:unix:" + socket_.string()});
    tool_ = support::connect_when_ready(socket_);
    ASSERT_TRUE(tool_);
    ASSERT_TRUE(vm_->wait_for_output("\navx=", 60s)) << vm_->output_so_far();
    const std::string out = vm_->output_so_far();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        out, m,
        std::regex("pages: w=0x([0-9a-f]+) r=0x([0-9a-f]+) x=0x([0-9a-f]+) a=0x([0-9a-f]+)\n"
                   "avx=([01])")))
        << out;
    pages_.w = std::stoull(m[1], nullptr, 16);
    pages_.r = std::stoull(m[2], nullptr, 16);
    pages_.x = std::stoull(m[3], nullptr, 16);
    pages_.a = std::stoull(m[4], nullptr, 16);
    pages_.avx = m[5] == "1";
  }

  // One VM_SET_PAGE_ACCESS with exactly these header and entry bytes; returns the error code.
  std::int32_t set_access_raw(const kvmi::VmSetPageAccess& hdr,
                              const std::vector<kvmi::PageAccessEntry>& entries,
                              std::size_t size_override = 0) {
    std::vector<std::byte> payload(sizeof hdr + entries.size() * sizeof(kvmi::PageAccessEntry));
    std::memcpy(payload.data(), &hdr, sizeof hdr);
    if (!entries.empty()) {
      std::memcpy(payload.data() + sizeof hdr, entries.data(),
                  entries.size() * sizeof(kvmi::PageAccessEntry));
    }
    if (size_override != 0) payload.resize(size_override);
    auto pending = tool_->submit(kvmi::MessageId::VmSetPageAccess, payload);
    EXPECT_TRUE(pending);
    if (!pending) return 1;
    auto reply = pending->wait_raw(kEventTimeout);
    EXPECT_TRUE(reply) << reply.error().message;
    if (!reply) return 1;
    EXPECT_EQ(reply->payload.size(), sizeof(kvmi::ErrorCode));
    return support::error_of(*reply);
  }

  std::int32_t set_access(std::uint64_t gpa, std::uint8_t access) {
    kvmi::VmSetPageAccess hdr{};
    hdr.count = 1;
    return set_access_raw(hdr, {kvmi::PageAccessEntry{gpa, access, 0, 0, 0}});
  }

  ReceivedEvent next_pf(std::uint16_t vcpu = 0) {
    auto event = tool_->wait_event(kEventTimeout);
    if (!event) {
      ADD_FAILURE() << "no PF event: " << event.error().message << "\n" << vm_->output_so_far();
      std::abort();
    }
    EXPECT_EQ(event->event_id(), static_cast<std::uint8_t>(kvmi::EventId::Pf));
    EXPECT_EQ(event->vcpu(), vcpu);
    return std::move(*event);
  }

  void reply(const ReceivedEvent& event, kvmi::EventAction action) {
    ASSERT_TRUE(tool_->reply_event(event, action));
  }

  // The iteration the guest was in when the event was raised (its R12).
  static std::uint64_t iteration(const ReceivedEvent& event) {
    return event.common().arch.regs.r12;
  }

  bool saw(const std::string& needle) {
    const bool found = vm_->wait_for_output(needle, kEventTimeout);
    EXPECT_TRUE(found) << "missing \"" << needle << "\" in\n" << vm_->output_so_far();
    return found;
  }

  // The number of the last iteration the guest printed completely.
  std::uint64_t last_printed_iteration() {
    const std::string out = vm_->output_so_far();
    std::uint64_t last = 0;
    static const std::regex line("it ([0-9]+) w=[^\n]*\n");
    for (auto it = std::sregex_iterator(out.begin(), out.end(), line); it != std::sregex_iterator();
         ++it) {
      last = std::stoull((*it)[1]);
    }
    return last;
  }

  std::filesystem::path socket_;
  std::unique_ptr<GlassboxProcess> vm_;
  std::unique_ptr<Session> tool_;
  Pages pages_;
};

TEST_F(KvmiPageAccess, WriteProtectionRaisesPfWContinueLandsRetryDropsAndItSurvives) {
  start(1);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Pf, true));
  ASSERT_EQ(set_access(pages_.w, kR | kX), 0);
  EXPECT_EQ(set_access(pages_.w, kR | kX), 0) << "setting the same access again is harmless";

  auto first = next_pf();
  auto pf = first.specific_as<kvmi::EventPf>();
  EXPECT_EQ(pf.gpa, pages_.w);
  EXPECT_EQ(pf.gva, kUnknownGva) << "a write caught through a read-only slot has no GVA (§P4)";
  EXPECT_EQ(pf.access, kW);
  EXPECT_EQ(pf.padding1 | pf.padding2 | pf.padding3, 0u);
  const std::uint64_t n = iteration(first);
  const auto t0 = std::chrono::steady_clock::now();
  reply(first, kvmi::EventAction::Continue);

  // RETRY without lifting the restriction: the write (already retired) is dropped.
  auto second = next_pf();
  const auto round = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(iteration(second), n + 1);
  EXPECT_EQ(second.specific_as<kvmi::EventPf>().access, kW);
  reply(second, kvmi::EventAction::Retry);

  // RETRY after lifting it: re-execution would succeed, so the write lands.
  auto third = next_pf();
  EXPECT_EQ(iteration(third), n + 2);
  ASSERT_EQ(set_access(pages_.w, kvmi::kPageAccessRwx), 0);
  reply(third, kvmi::EventAction::Retry);
  saw("it " + std::to_string(n) + " w=" + std::to_string(n) + " r=");
  saw("it " + std::to_string(n + 1) + " w=" + std::to_string(n) + " r=");
  saw("it " + std::to_string(n + 2) + " w=" + std::to_string(n + 2) + " r=");
  // Lifted: later iterations write freely without an event (none is waiting: the line appears).
  saw("it " + std::to_string(n + 5) + " w=" + std::to_string(n + 5) + " r=");
  EXPECT_FALSE(tool_->poll_event());

  // Protected again, it holds over many events.
  ASSERT_EQ(set_access(pages_.w, kR | kX), 0);
  std::uint64_t previous = 0;
  for (int i = 0; i < 5; ++i) {
    auto event = next_pf();
    EXPECT_EQ(event.specific_as<kvmi::EventPf>().gpa, pages_.w);
    if (previous != 0) {
      EXPECT_EQ(iteration(event), previous + 1);
    }
    previous = iteration(event);
    reply(event, kvmi::EventAction::Continue);
  }
  saw("it " + std::to_string(previous) + " w=" + std::to_string(previous) + " r=");
  // Informational: a split (1 delete + 3 creates) and a merge, each with the vCPU parked.
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(set_access(pages_.w, kvmi::kPageAccessRwx), 0);
    auto event = tool_->wait_event(10ms);  // one write may have been caught before the lift
    if (event) reply(*event, kvmi::EventAction::Continue);
    const auto s0 = std::chrono::steady_clock::now();
    ASSERT_EQ(set_access(pages_.w, kR | kX), 0);
    const auto s1 = std::chrono::steady_clock::now();
    reply(next_pf(), kvmi::EventAction::Continue);
    std::printf("[ measured ] SET_PAGE_ACCESS round trip, split: %.0f us\n",
                std::chrono::duration<double, std::micro>(s1 - s0).count());
  }
  std::printf("[ measured ] PF(W) CONTINUE -> next PF(W), one guest iteration: %.0f us\n",
              std::chrono::duration<double, std::micro>(round).count());
}

TEST_F(KvmiPageAccess, ReadProtectionRaisesPfRAndTheGuestReadsTheCurrentBytes) {
  start(1);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Pf, true));
  const std::uint64_t target = pages_.r + 8;
  for (std::uint8_t access : {static_cast<std::uint8_t>(kW | kX), std::uint8_t{0}}) {
    ASSERT_EQ(set_access(pages_.r, access), 0);
    for (int i = 0; i < 3; ++i) {
      auto event = next_pf();
      auto pf = event.specific_as<kvmi::EventPf>();
      EXPECT_EQ(pf.gpa, target);
      EXPECT_EQ(pf.access, kR);
      // The tool changes the bytes while the read waits: the guest must get the new ones.
      const std::uint64_t value = 0x1122334455667700ull + access * 16 + i;
      ASSERT_TRUE(tool_->write_physical(target, std::as_bytes(std::span(&value, 1))));
      reply(event, i == 2 ? kvmi::EventAction::Retry : kvmi::EventAction::Continue);
      char hex[32];
      std::snprintf(hex, sizeof hex, "0x%016llx", static_cast<unsigned long long>(value));
      saw("it " + std::to_string(iteration(event)) + " w=" + std::to_string(iteration(event)) +
          " r=" + hex + " x=119");
    }
  }
  ASSERT_EQ(set_access(pages_.r, kvmi::kPageAccessRwx), 0);
  auto restored = tool_->read_physical(pages_.r, 8);
  ASSERT_TRUE(restored);
}

TEST_F(KvmiPageAccess, ExecProtectionRaisesPfXWithTheGvaAndSurvivesSeveralEvents) {
  start(1);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Pf, true));
  ASSERT_EQ(set_access(pages_.x, kR | kW), 0);
  // The function is `mov $119, %eax` (5 bytes) then `ret`. CONTINUE lets one instruction run
  // and keeps the restriction (§3.4.10), so every call raises two events: one per instruction.
  auto event = next_pf();
  if (event.common().arch.regs.rip == pages_.x + 5) {  // restricted in the middle of a call
    reply(event, kvmi::EventAction::Continue);
    event = next_pf();
  }
  const std::uint64_t first = iteration(event);
  std::chrono::steady_clock::time_point replied;
  double step_us = 0;  // CONTINUE of the mov -> the ret's event: lift, step, relock, next fetch
  for (int i = 0; i < 6; ++i) {
    if (i > 0) event = next_pf();
    if (i % 2 == 1) {
      step_us +=
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - replied)
              .count();
    }
    auto pf = event.specific_as<kvmi::EventPf>();
    const std::uint64_t rip = event.common().arch.regs.rip;
    EXPECT_EQ(rip, pages_.x + (i % 2 == 0 ? 0 : 5)) << "event " << i;
    EXPECT_EQ(pf.access, kX);
    EXPECT_EQ(pf.gva, rip) << "the fetch address is known";
    EXPECT_EQ(pf.gpa, rip) << "identity-mapped guest: the GPA equals the GVA";
    EXPECT_EQ(iteration(event), first + i / 2);
    replied = std::chrono::steady_clock::now();
    reply(event, kvmi::EventAction::Continue);
  }
  std::printf("[ measured ] PF(X) CONTINUE -> next instruction's PF(X), CPL0: %.0f us\n",
              step_us / 3);
  saw("it " + std::to_string(first + 2) + " w=" + std::to_string(first + 2) +
      " r=0x2222222222222222 x=119");
  // RETRY with the restriction lifted meanwhile: the call runs, and no more events come.
  event = next_pf();
  EXPECT_EQ(event.common().arch.regs.rip, pages_.x);
  ASSERT_EQ(set_access(pages_.x, kvmi::kPageAccessRwx), 0);
  reply(event, kvmi::EventAction::Retry);
  const std::uint64_t n = iteration(event);
  saw("it " + std::to_string(n + 3) + " w=" + std::to_string(n + 3) +
      " r=0x2222222222222222 x=119");
  EXPECT_FALSE(tool_->poll_event());
}

TEST_F(KvmiPageAccess, AvxStoreToAWriteProtectedPageIsAPfWithItsGvaNotACrash) {
  // With AVX the guest runs its loop at CPL3: KVM-PVM emulates all CPL0 code and its emulator
  // has no AVX at all. A native AVX store to a read-only slot then fails in KVM's emulator.
  start(1, 1);
  if (!pages_.avx) GTEST_SKIP() << "the guest has no usable AVX";
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Pf, true));
  ASSERT_EQ(set_access(pages_.a, kR | kX), 0);
  // Iteration `after` starts after the restriction is in place. Either its AVX store raises the
  // event (and the line waits for the answer) or the line appears with the store landed.
  const std::uint64_t after = last_printed_iteration() + 2;
  const std::string bypass = "it " + std::to_string(after) + " w=" + std::to_string(after) +
                             " r=0x2222222222222222 x=119 a=" + std::to_string(after) + "\n";
  std::optional<ReceivedEvent> caught;
  while (!caught) {
    if (auto e = tool_->poll_event()) {
      caught = std::move(*e);
      break;
    }
    if (vm_->wait_for_output(bypass, 20ms)) {
      // Measured on KVM-PVM: a native AVX store to a read-only memslot lands without any exit
      // (KVM's emulator gives up and the store is re-executed with write access), so there is
      // nothing to intercept. Hardware KVM reports an emulation failure instead.
      GTEST_SKIP() << "this host lets a native AVX store through a read-only memslot unseen";
    }
  }
  ReceivedEvent first = std::move(*caught);
  auto pf = first.specific_as<kvmi::EventPf>();
  EXPECT_EQ(pf.access, kW);
  EXPECT_EQ(pf.gpa, pages_.a);
  EXPECT_EQ(pf.gva, pages_.a) << "decoded from the instruction";
  const std::uint64_t n = iteration(first);
  reply(first, kvmi::EventAction::Continue);
  saw("it " + std::to_string(n) + " w=" + std::to_string(n) +
      " r=0x2222222222222222 x=119 a=" + std::to_string(n) + "\n");
  // RETRY re-executes the store: without a change, the same store faults again.
  auto second = next_pf();
  EXPECT_EQ(iteration(second), n + 1);
  reply(second, kvmi::EventAction::Retry);
  auto again = next_pf();
  EXPECT_EQ(iteration(again), n + 1) << "the same store, re-executed";
  EXPECT_EQ(again.specific_as<kvmi::EventPf>().gpa, pages_.a);
  ASSERT_EQ(set_access(pages_.a, kvmi::kPageAccessRwx), 0);
  reply(again, kvmi::EventAction::Retry);
  saw("it " + std::to_string(n + 1) + " w=" + std::to_string(n + 1) +
      " r=0x2222222222222222 x=119 a=" + std::to_string(n + 1) + "\n");
}

TEST_F(KvmiPageAccess, AtCpl3WritesReadsAndFetchesAreCaughtToo) {
  // The loop runs at CPL3 (natively on KVM-PVM, see page_access.S): other exits, same events.
  start(1, 2);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Pf, true));
  struct Case {
    std::uint64_t page;
    std::uint8_t access;
    std::uint64_t gpa;
    std::uint8_t caught;
  };
  for (const Case& c : {Case{pages_.w, kR | kX, pages_.w, kW}, Case{pages_.r, kW, pages_.r + 8, kR},
                        Case{pages_.x, kR | kW, pages_.x, kX}}) {
    ASSERT_EQ(set_access(c.page, c.access), 0);
    std::uint64_t n = 0;
    for (int i = 0; i < 3; ++i) {
      auto event = next_pf();
      auto pf = event.specific_as<kvmi::EventPf>();
      EXPECT_EQ(event.common().arch.sregs.cs.selector & 3, 3);
      EXPECT_EQ(pf.access, c.caught);
      if (c.caught == kX) {
        // CONTINUE runs one instruction with the page mapped where the vCPU can be stepped
        // (hardware KVM), so the function's `ret` (5 bytes in) faults too; on KVM-PVM the page
        // stays mapped until the next exit and only its first instruction does.
        EXPECT_TRUE(pf.gpa == c.gpa || pf.gpa == c.gpa + 5) << std::hex << pf.gpa;
        EXPECT_EQ(pf.gva, pf.gpa);
        if (n != 0) {
          EXPECT_LE(iteration(event), n + 1) << "the fetches of one or two iterations";
        }
      } else {
        EXPECT_EQ(pf.gpa, c.gpa);
        EXPECT_EQ(pf.gva, kUnknownGva);
        if (n != 0) {
          EXPECT_EQ(iteration(event), n + 1) << "one event per iteration at CPL3";
        }
      }
      n = iteration(event);
      reply(event, kvmi::EventAction::Continue);
    }
    auto last = next_pf();  // the next iteration's, answered after the lift
    if (c.caught == kX && last.specific_as<kvmi::EventPf>().gpa == c.gpa + 5 &&
        iteration(last) == n) {
      reply(last, kvmi::EventAction::Continue);  // the `ret` of the same iteration
      last = next_pf();
    }
    saw("it " + std::to_string(n) + " w=" + std::to_string(n) + " r=0x2222222222222222 x=119");
    ASSERT_EQ(set_access(c.page, kvmi::kPageAccessRwx), 0);
    reply(last, kvmi::EventAction::Continue);
    saw("it " + std::to_string(n + 3) + " w=" + std::to_string(n + 3) +
        " r=0x2222222222222222 x=119");
    EXPECT_FALSE(tool_->poll_event());
  }
}

TEST_F(KvmiPageAccess, OneVcpuReadsAProtectedPageWhileTheOtherIsPaused) {
  start(2);
  ASSERT_TRUE(tool_->control_vcpu_events(1, kvmi::EventId::Pf, true));
  ASSERT_TRUE(tool_->pause_vcpu(0, true));
  auto paused = tool_->wait_event(kEventTimeout);
  ASSERT_TRUE(paused) << paused.error().message;
  ASSERT_EQ(paused->event_id(), static_cast<std::uint8_t>(kvmi::EventId::PauseVcpu));
  ASSERT_EQ(paused->vcpu(), 0);
  const std::uint64_t printed = last_printed_iteration();
  ASSERT_EQ(set_access(pages_.r, kW | kX), 0);
  for (int i = 0; i < 3; ++i) {
    auto event = next_pf(1);
    auto pf = event.specific_as<kvmi::EventPf>();
    EXPECT_EQ(pf.gpa, pages_.r + 16);
    EXPECT_EQ(pf.access, kR);
    reply(event, kvmi::EventAction::Continue);
  }
  // Lines still in the console pipe may arrive late, but none beyond the paused iteration.
  EXPECT_LE(last_printed_iteration(), iteration(*paused)) << "vCPU 0 stayed paused";
  ASSERT_EQ(set_access(pages_.r, kvmi::kPageAccessRwx), 0);
  ASSERT_TRUE(tool_->reply_event(*paused, kvmi::EventAction::Continue));
  saw("it " + std::to_string(printed + 2) + " w=");
  // vCPU 1 went on reading without events once the page was lifted.
  std::uint64_t count0 = 0, count1 = 0;
  const std::uint64_t counter = pages_.a + 4096;  // reader_count: the page after avx_page
  ASSERT_TRUE(tool_->read_physical(counter, std::as_writable_bytes(std::span(&count0, 1))));
  // vCPU 1 may be scheduled late on a busy host: wait (generously) for its count to move. On a
  // fast host its next read may have faulted before the lift: that event still wants an answer.
  for (int i = 0; i < 3000 && count1 <= count0; ++i) {
    while (auto late = tool_->poll_event()) reply(*late, kvmi::EventAction::Continue);
    ASSERT_TRUE(tool_->read_physical(counter, std::as_writable_bytes(std::span(&count1, 1))));
    if (count1 <= count0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GT(count1, count0);
}

TEST_F(KvmiPageAccess, ADisconnectInTheMiddleOfAStreamOfEventsLeavesNoProtectionBehind) {
  start(1);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Pf, true));
  ASSERT_EQ(set_access(pages_.w, kR | kX), 0);
  ASSERT_EQ(set_access(pages_.r, 0), 0);
  ASSERT_EQ(set_access(pages_.x, kR | kW), 0);
  for (int i = 0; i < 7; ++i) reply(next_pf(), kvmi::EventAction::Continue);
  auto pending = next_pf();  // left unanswered
  tool_->close();
  tool_.reset();
  // A new tool watches with PF enabled and answers nothing: any restriction left behind would
  // block the guest in an event, so seeing later iterations complete proves there is none.
  tool_ = support::connect_when_ready(socket_);
  ASSERT_TRUE(tool_);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Pf, true));
  const std::uint64_t from = last_printed_iteration();
  saw("it " + std::to_string(from + 3) + " w=" + std::to_string(from + 3) +
      " r=0x2222222222222222 x=119");
  EXPECT_FALSE(tool_->poll_event());
}

TEST_F(KvmiPageAccess, AnUnhookInTheMiddleOfAStreamOfEventsLeavesNoProtectionBehind) {
  start(2);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Pf, true));
  ASSERT_TRUE(tool_->control_vcpu_events(1, kvmi::EventId::Pf, true));
  ASSERT_EQ(set_access(pages_.w, kR | kX), 0);
  ASSERT_EQ(set_access(pages_.r, kW), 0);
  ASSERT_EQ(set_access(pages_.x, kR | kW), 0);
  for (int i = 0; i < 6; ++i) {
    auto event = tool_->wait_event(kEventTimeout);
    ASSERT_TRUE(event) << event.error().message;
    ASSERT_EQ(event->event_id(), static_cast<std::uint8_t>(kvmi::EventId::Pf));
    reply(*event, kvmi::EventAction::Continue);
  }
  // No UNHOOK subscription: the VMM ends the session at once, with events still coming.
  vm_->send_signal(SIGUSR1);
  for (;;) {
    auto event = tool_->wait_event(kEventTimeout);
    if (!event) {
      EXPECT_EQ(event.error().kind, glassbox::client::ErrorKind::Closed) << event.error().message;
      break;
    }
    (void)tool_->reply_event(*event, kvmi::EventAction::Continue);
  }
  tool_.reset();
  tool_ = support::connect_when_ready(socket_);
  ASSERT_TRUE(tool_);
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Pf, true));
  ASSERT_TRUE(tool_->control_vcpu_events(1, kvmi::EventId::Pf, true));
  const std::uint64_t from = last_printed_iteration();
  saw("it " + std::to_string(from + 3) + " w=" + std::to_string(from + 3) +
      " r=0x2222222222222222 x=119");
  EXPECT_FALSE(tool_->poll_event());
  // The other vCPU reads the page freely too.
  // (Its counter must move on; how soon depends on when the host schedules its thread, so the
  // check waits for progress rather than for a number of vCPU 0's iterations.)
  std::uint64_t count0 = 0, count1 = 0;
  const std::uint64_t counter = pages_.a + 4096;
  ASSERT_TRUE(tool_->read_physical(counter, std::as_writable_bytes(std::span(&count0, 1))));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(tool_->read_physical(counter, std::as_writable_bytes(std::span(&count1, 1))));
  } while (count1 == count0 && std::chrono::steady_clock::now() < deadline);
  EXPECT_GT(count1, count0);
  EXPECT_FALSE(tool_->poll_event());
}

TEST_F(KvmiPageAccess, ArgumentChecksOverTheWire) {
  start(1);
  const auto einval = static_cast<std::int32_t>(kvmi::Errno::Inval);
  kvmi::VmSetPageAccess hdr{};
  hdr.count = 1;
  const kvmi::PageAccessEntry ok{pages_.w, kR | kX, 0, 0, 0};
  // Header paddings fail the whole command, even with a valid entry.
  hdr.padding1 = 1;
  EXPECT_EQ(set_access_raw(hdr, {ok}), einval);
  hdr.padding1 = 0;
  hdr.padding2 = 1;
  EXPECT_EQ(set_access_raw(hdr, {ok}), einval);
  hdr.padding2 = 0;
  // size < 8 + 16 * count.
  hdr.count = 2;
  EXPECT_EQ(set_access_raw(hdr, {ok}), einval);
  EXPECT_EQ(set_access_raw(hdr, {ok, ok}, 8 + 16 + 15), einval);
  // Bad entries fail with -EINVAL, good ones around them still apply.
  hdr.count = 5;
  kvmi::PageAccessEntry bits{pages_.r, 0x8 | kR, 0, 0, 0};
  kvmi::PageAccessEntry pad1{pages_.x, kR, 1, 0, 0};
  kvmi::PageAccessEntry pad3{pages_.x, kR, 0, 0, 1};
  auto max_gfn = tool_->get_max_gfn();
  ASSERT_TRUE(max_gfn);
  kvmi::PageAccessEntry outside{(*max_gfn + 16) * 4096, 0, 0, 0, 0};
  EXPECT_EQ(set_access_raw(hdr, {bits, ok, pad1, pad3, outside}), einval);
  // Only `ok` (write-protect the watched page) took effect.
  ASSERT_TRUE(tool_->control_vcpu_events(0, kvmi::EventId::Pf, true));
  auto event = next_pf();
  EXPECT_EQ(event.specific_as<kvmi::EventPf>().gpa, pages_.w);
  EXPECT_EQ(event.specific_as<kvmi::EventPf>().access, kW);
  // GPAs outside RAM are ignored; access 7 forgets.
  hdr.count = 2;
  EXPECT_EQ(set_access_raw(hdr, {outside, {pages_.w, kvmi::kPageAccessRwx, 0, 0, 0}}), 0);
  reply(event, kvmi::EventAction::Continue);
  const std::uint64_t n = iteration(event);
  saw("it " + std::to_string(n + 3) + " w=" + std::to_string(n + 3) + " r=");
  EXPECT_FALSE(tool_->poll_event());
  // Count 0 is a valid no-op; the command is advertised.
  hdr.count = 0;
  EXPECT_EQ(set_access_raw(hdr, {}), 0);
  EXPECT_TRUE(tool_->check_command(static_cast<std::uint16_t>(kvmi::MessageId::VmSetPageAccess)));
}

}  // namespace
