// The connection life cycle against the real glassbox (spec/kvmi-v7.md §5.3, §5.4): both roles,
// retries and reconnection, --secret, SIGUSR1/SIGTERM unhook, and a tool leaving at any time
// while the VM keeps running. "The VM kept running" is proven by the exit status: a VMM whose
// guest stopped would not end with the SIGTERM status.
#include <fstream>
#include <string>
#include <vector>

#include "glassbox/boot/boot_info.h"
#include "kvmi_test_helpers.h"

using namespace glassbox::test::kvmi_support;
using glassbox::client::Listener;
using glassbox::test::GlassboxProcess;
using glassbox::test::run_glassbox;
using glassbox::test::RunResult;

namespace {

std::vector<std::uint8_t> bytes(const std::string& text) {
  return {text.begin(), text.end()};
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

void expect_reads_guest(Session& session) {
  auto magic = session.read_physical(GLASSBOX_BOOT_INFO_GPA, 8);
  ASSERT_TRUE(magic) << magic.error().message;
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(magic->data()), 8), "GLASSBOX");
}

RunResult terminate(GlassboxProcess& vmm) {
  vmm.send_signal(SIGTERM);
  return vmm.wait(60s);
}

// ---- unix:PATH — the VMM connects to a listening tool
// ---------------------------------------------

TEST(KvmiConnectMode, VmmConnectsToAListeningTool) {
  TempDir dir;
  auto listener = Listener::listen(dir / "tool.sock");
  ASSERT_TRUE(listener) << listener.error().message;
  GlassboxProcess vmm(io_loop_args("unix:" + (dir / "tool.sock").string(), {"--name", "vm-a"}));
  auto session = listener->accept({}, 60s);
  ASSERT_TRUE(session) << session.error().message;
  EXPECT_EQ((*session)->vm().name, "vm-a");
  expect_reads_guest(**session);
  session->reset();
  EXPECT_EQ(terminate(vmm).exit_status, kSigtermStatus);
}

TEST(KvmiConnectMode, VmmRetriesUntilTheToolListens) {
  TempDir dir;
  GlassboxProcess vmm(io_loop_args("unix:" + (dir / "tool.sock").string()));
  // The VMM fails at least one attempt first: it logs that nobody listens yet.
  ASSERT_TRUE(vmm.wait_for_log("no tool listening", 60s)) << vmm.output_so_far();
  auto listener = Listener::listen(dir / "tool.sock");
  ASSERT_TRUE(listener) << listener.error().message;
  auto session = listener->accept({}, 60s);
  ASSERT_TRUE(session) << session.error().message;
  expect_reads_guest(**session);
  session->reset();
  auto r = terminate(vmm);
  EXPECT_EQ(r.exit_status, kSigtermStatus);
  EXPECT_NE(r.err.find("no tool listening"), std::string::npos) << r.err;
}

TEST(KvmiConnectMode, VmmReconnectsAfterTheToolDisconnects) {
  TempDir dir;
  auto listener = Listener::listen(dir / "tool.sock");
  ASSERT_TRUE(listener);
  GlassboxProcess vmm(io_loop_args("unix:" + (dir / "tool.sock").string()));
  for (int round = 0; round < 3; ++round) {
    auto session = listener->accept({}, 60s);
    ASSERT_TRUE(session) << "round " << round << ": " << session.error().message;
    expect_reads_guest(**session);
    (*session)->close();
  }
  EXPECT_EQ(terminate(vmm).exit_status, kSigtermStatus);
}

TEST(KvmiConnectMode, AfterAnUnhookTheVmmConnectsAgain) {
  TempDir dir;
  auto listener = Listener::listen(dir / "tool.sock");
  ASSERT_TRUE(listener);
  GlassboxProcess vmm(io_loop_args("unix:" + (dir / "tool.sock").string()));
  auto session = listener->accept({}, 60s);
  ASSERT_TRUE(session) << session.error().message;
  ASSERT_TRUE((*session)->control_vm_events(kvmi::EventId::Unhook, true));
  vmm.send_signal(SIGUSR1);
  auto event = (*session)->wait_event(30s);
  ASSERT_TRUE(event) << event.error().message;
  EXPECT_EQ(event->event_id(), static_cast<std::uint8_t>(kvmi::EventId::Unhook));
  (*session)->close();
  auto again = listener->accept({}, 60s);
  ASSERT_TRUE(again) << again.error().message;
  expect_reads_guest(**again);
  again->reset();
  EXPECT_EQ(terminate(vmm).exit_status, kSigtermStatus);
}

// ---- --secret ----------------------------------------------------------------------------------

TEST(KvmiSecret, ToolWithTheRightSecretIsAccepted) {
  TempDir dir;
  write_file(dir / "secret", "correct horse battery staple\n");
  GlassboxProcess vmm(io_loop_args("listen:unix:" + (dir / "kvmi.sock").string(),
                                   {"--secret", (dir / "secret").string()}));
  SessionOptions options;
  options.secret = bytes("correct horse battery staple\n");
  auto session = connect_when_ready(dir / "kvmi.sock", options);
  ASSERT_NE(session, nullptr);
  expect_reads_guest(*session);
  session.reset();
  EXPECT_EQ(terminate(vmm).exit_status, kSigtermStatus);
}

TEST(KvmiSecret, WrongOrMissingCookieIsRefusedAndLoggedAndTheRightOneStillWorks) {
  TempDir dir;
  write_file(dir / "secret", "s3cret");
  GlassboxProcess vmm(io_loop_args("listen:unix:" + (dir / "kvmi.sock").string(),
                                   {"--secret", (dir / "secret").string()}));
  SessionOptions wrong;
  wrong.secret = bytes("s3cret\n");
  auto refused = connect_when_ready(dir / "kvmi.sock", wrong);
  ASSERT_NE(refused, nullptr);  // the tool only learns by the VMM hanging up
  EXPECT_TRUE(closed_by_vmm(*refused));
  auto unkeyed = connect_when_ready(dir / "kvmi.sock");
  ASSERT_NE(unkeyed, nullptr);
  EXPECT_TRUE(closed_by_vmm(*unkeyed));

  SessionOptions right;
  right.secret = bytes("s3cret");
  auto session = connect_when_ready(dir / "kvmi.sock", right);
  ASSERT_NE(session, nullptr);
  expect_reads_guest(*session);
  session.reset();
  auto r = terminate(vmm);
  EXPECT_EQ(r.exit_status, kSigtermStatus);
  EXPECT_NE(r.err.find("cookie hash does not match"), std::string::npos) << r.err;
}

TEST(KvmiSecret, UnreadableSecretFileIsAUsageError) {
  TempDir dir;
  auto r = run_glassbox(io_loop_args("listen:unix:" + (dir / "kvmi.sock").string(),
                                     {"--secret", (dir / "missing").string()}));
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find("--secret"), std::string::npos) << r.err;
}

// ---- options ------------------------------------------------------------------------------------

TEST(KvmiOptions, BadEndpointAndUnknownNamesAreUsageErrors) {
  TempDir dir;
  EXPECT_EQ(run_glassbox(io_loop_args("tcp:1234")).exit_status, 2);
  auto r = run_glassbox(io_loop_args("listen:unix:" + (dir / "s").string(),
                                     {"--allow-commands", "vm_read_physical,bogus"}));
  EXPECT_EQ(r.exit_status, 2);
  EXPECT_NE(r.err.find("bogus"), std::string::npos) << r.err;
  r = run_glassbox(io_loop_args("listen:unix:" + (dir / "s").string(), {"--allow-events", "99"}));
  EXPECT_EQ(r.exit_status, 2);
}

// ---- unhook (§5.4) and disconnects --------------------------------------------------------------

TEST(KvmiUnhook, Sigusr1SendsUnhookToASubscribedToolAndTheNextToolCanConnect) {
  TempDir dir;
  GlassboxProcess vmm(io_loop_args("listen:unix:" + (dir / "kvmi.sock").string()));
  auto session = connect_when_ready(dir / "kvmi.sock");
  ASSERT_NE(session, nullptr);
  ASSERT_TRUE(session->control_vm_events(kvmi::EventId::Unhook, true));
  vmm.send_signal(SIGUSR1);
  auto event = session->wait_event(30s);
  ASSERT_TRUE(event) << event.error().message;
  EXPECT_EQ(event->header().id, static_cast<std::uint16_t>(kvmi::MessageId::Event));
  EXPECT_EQ(event->header().size, kvmi::kEventCommonSize);
  EXPECT_EQ(event->seq(), 1u);  // the VM's first event
  EXPECT_EQ(event->event_id(), static_cast<std::uint8_t>(kvmi::EventId::Unhook));
  EXPECT_EQ(event->vcpu(), 0);
  EXPECT_EQ(event->common().size, kvmi::kEventCommonSize);
  // The tool would remove its hooks here; the guest memory is still reachable meanwhile.
  expect_reads_guest(*session);
  session->close();

  auto next = connect_when_ready(dir / "kvmi.sock");
  ASSERT_NE(next, nullptr);
  expect_reads_guest(*next);
  // A second unhook: the event counter is per VM, so this one is seq 2.
  ASSERT_TRUE(next->control_vm_events(kvmi::EventId::Unhook, true));
  vmm.send_signal(SIGUSR1);
  auto second = next->wait_event(30s);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->seq(), 2u);
  next->close();

  auto r = terminate(vmm);
  EXPECT_EQ(r.exit_status, kSigtermStatus) << r.err;
  EXPECT_NE(r.err.find("KVMI_EVENT_UNHOOK"), std::string::npos) << r.err;
}

TEST(KvmiUnhook, Sigusr1WithoutSubscriptionEndsTheSessionAndTheVmRuns) {
  TempDir dir;
  GlassboxProcess vmm(io_loop_args("listen:unix:" + (dir / "kvmi.sock").string()));
  auto session = connect_when_ready(dir / "kvmi.sock");
  ASSERT_NE(session, nullptr);
  expect_reads_guest(*session);
  vmm.send_signal(SIGUSR1);
  EXPECT_TRUE(closed_by_vmm(*session));
  auto next = connect_when_ready(dir / "kvmi.sock");
  ASSERT_NE(next, nullptr);
  expect_reads_guest(*next);
  next.reset();
  auto r = terminate(vmm);
  EXPECT_EQ(r.exit_status, kSigtermStatus) << r.err;
  EXPECT_NE(r.err.find("had not enabled KVMI_EVENT_UNHOOK"), std::string::npos) << r.err;
}

TEST(KvmiUnhook, ToolThatIgnoresUnhookIsDisconnectedAfterTheBoundedWait) {
  TempDir dir;
  GlassboxProcess vmm(io_loop_args("listen:unix:" + (dir / "kvmi.sock").string()));
  auto session = connect_when_ready(dir / "kvmi.sock");
  ASSERT_NE(session, nullptr);
  ASSERT_TRUE(session->control_vm_events(kvmi::EventId::Unhook, true));
  vmm.send_signal(SIGUSR1);
  auto event = session->wait_event(30s);
  ASSERT_TRUE(event) << event.error().message;
  // Keep the connection open: the VMM gives up after its unhook timeout and hangs up.
  EXPECT_TRUE(closed_by_vmm(*session, 60s));
  auto r = terminate(vmm);
  EXPECT_EQ(r.exit_status, kSigtermStatus) << r.err;
  EXPECT_NE(r.err.find("did not close within"), std::string::npos) << r.err;
}

TEST(KvmiUnhook, SigtermWithASubscribedToolSendsUnhookBeforeExiting) {
  TempDir dir;
  GlassboxProcess vmm(io_loop_args("listen:unix:" + (dir / "kvmi.sock").string()));
  auto session = connect_when_ready(dir / "kvmi.sock");
  ASSERT_NE(session, nullptr);
  ASSERT_TRUE(session->control_vm_events(kvmi::EventId::Unhook, true));
  vmm.send_signal(SIGTERM);
  auto event = session->wait_event(30s);
  ASSERT_TRUE(event) << event.error().message;
  EXPECT_EQ(event->event_id(), static_cast<std::uint8_t>(kvmi::EventId::Unhook));
  session->close();
  EXPECT_EQ(vmm.wait(60s).exit_status, kSigtermStatus);
}

TEST(KvmiUnhook, Sigusr1WithNoToolIsHarmless) {
  TempDir dir;
  GlassboxProcess vmm(io_loop_args("listen:unix:" + (dir / "kvmi.sock").string()));
  auto session = connect_when_ready(dir / "kvmi.sock");  // wait until the VMM is up
  ASSERT_NE(session, nullptr);
  session->close();
  ASSERT_TRUE(vmm.wait_for_log("introspection: connection closed"));
  vmm.send_signal(SIGUSR1);
  ASSERT_TRUE(vmm.wait_for_log("no tool is attached"));
  auto next = connect_when_ready(dir / "kvmi.sock");
  ASSERT_NE(next, nullptr);
  expect_reads_guest(*next);
  next.reset();
  EXPECT_EQ(terminate(vmm).exit_status, kSigtermStatus);
}

// An unhook asked for while a tool is leaving belongs to that tool: it must not end the tool that
// connects right after (the VMM may handle the signal only once the next tool is attached).
TEST(KvmiUnhook, Sigusr1RacingAToolThatLeavesSparesTheNextTool) {
  TempDir dir;
  GlassboxProcess vmm(io_loop_args("listen:unix:" + (dir / "kvmi.sock").string()));
  auto session = connect_when_ready(dir / "kvmi.sock");
  ASSERT_NE(session, nullptr);
  for (int round = 0; round < 20; ++round) {
    session->close();
    // The signal reaches the VMM asynchronously: wait until the VMM has taken it (a signal it
    // only reads once the next tool is attached is, from its side, for that tool). What races
    // here is the VMM's own teardown of the leaving tool against the request.
    const std::size_t mark = vmm.log_size();
    vmm.send_signal(SIGUSR1);
    ASSERT_TRUE(vmm.wait_for_log("introspection: unhook requested", 30s, mark));
    session = connect_when_ready(dir / "kvmi.sock");
    ASSERT_NE(session, nullptr) << "round " << round;
    // The signal belonged to the old tool (or found none attached); the new tool keeps its session.
    auto magic = session->read_physical(GLASSBOX_BOOT_INFO_GPA, 8);
    ASSERT_TRUE(magic) << "round " << round << ": " << magic.error().message;
  }
  session.reset();
  EXPECT_EQ(terminate(vmm).exit_status, kSigtermStatus);
}

TEST(KvmiDisconnect, ToolDisconnectsLeaveTheVmRunningAndToolsCanComeAndGo) {
  TempDir dir;
  GlassboxProcess vmm(io_loop_args("listen:unix:" + (dir / "kvmi.sock").string()));
  for (int round = 0; round < 4; ++round) {
    auto session = connect_when_ready(dir / "kvmi.sock");
    ASSERT_NE(session, nullptr) << "round " << round;
    // Leave in different states: idle, after a command, with requests in flight.
    if (round >= 1) expect_reads_guest(*session);
    if (round >= 2) {
      for (int i = 0; i < 16; ++i) (void)session->submit_read_physical(0x7000, 4096);
    }
    session.reset();
  }
  auto r = terminate(vmm);
  EXPECT_EQ(r.exit_status, kSigtermStatus) << r.err;
  EXPECT_NE(r.err.find("the tool closed the connection"), std::string::npos) << r.err;
}

TEST(KvmiDisconnect, GuestThatPowersOffWithAToolAttachedEndsNormally) {
  TempDir dir;
  GlassboxProcess vmm({"run", "--kernel", glassbox::test::scenario_guest("io_loop").string(),
                       "--cmdline", "2000", "--introspect",
                       "listen:unix:" + (dir / "kvmi.sock").string()});
  // The guest may finish before or after the tool arrives; either way the VMM exits with 0.
  auto session = Session::connect(dir / "kvmi.sock");
  auto r = vmm.wait(60s);
  EXPECT_EQ(r.exit_status, 0) << r.err;
  EXPECT_EQ(r.out, "io loop round trips: 2000\n");
}

}  // namespace
