// The VMM side of introspection for one VM: gets a tool connected (connecting to it and retrying,
// or listening for it), runs the handshake, runs one receiving thread per connection, and unhooks
// on request (spec §5.3, §5.4). The VM keeps running whatever the tool does; when a tool leaves,
// the next one can come.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "introspection/endpoint.h"
#include "introspection/handshake.h"
#include "introspection/intercepts.h"
#include "introspection/permissions.h"
#include "introspection/session.h"
#include "introspection/vm_target.h"
#include "vmm/vcpu_thread.h"

namespace glassbox::introspection {

struct ServerConfig {
  Endpoint endpoint;
  Permissions permissions = Permissions::allow_all();
  std::optional<CookieHash> secret;  // --secret: the tool's cookie hash must match
  VmIdentity identity;
  std::chrono::milliseconds handshake_timeout{10000};
  // How long an unhook waits for the tool to close after KVMI_EVENT_UNHOOK.
  std::chrono::milliseconds unhook_timeout{5000};
  // unix: mode retries (and reconnects after a session) at this interval.
  std::chrono::milliseconds reconnect_interval{1000};
  // --kvmi-dialect: the numbering the tool speaks (libkvmi for LibVMI / HVMI tools).
  kvmi::Dialect dialect = kvmi::Dialect::RfcV7;
  // --start-paused: no vCPU runs a guest instruction before the first tool is attached; that
  // tool then gets one KVMI_EVENT_PAUSE_VCPU per vCPU, as if it had paused each, and the guest
  // starts as it answers them. It can arm everything first, so it sees the guest from its start.
  bool start_paused = false;
};

class IntrospectionServer final : public vmm::VcpuEntryGate {
 public:
  // Validates the configuration and, for listen:, binds the socket now so a bad path is an error
  // at start-up. `vm` must outlive the server.
  static std::expected<std::unique_ptr<IntrospectionServer>, std::string> create(
      ServerConfig config, VmTarget& vm);
  ~IntrospectionServer();  // stop()
  IntrospectionServer(const IntrospectionServer&) = delete;
  IntrospectionServer& operator=(const IntrospectionServer&) = delete;

  void start();
  // SIGUSR1: asks the attached tool to unhook (KVMI_EVENT_UNHOOK if it enabled it), waits up to
  // unhook_timeout for it to close, then ends the session. Returns at once; the server thread does
  // the work, and afterwards waits for (listen:) or reconnects to (unix:) the next tool.
  void request_unhook();
  // Unhooks an attached tool as above (blocking, bounded), then stops accepting tools. Idempotent.
  void stop();

  bool tool_attached() const;

  // vmm::VcpuEntryGate: a vCPU about to enter the guest delivers what the attached tool is owed
  // (an exception injection and its TRAP event, pause events). Install with
  // Machine::set_entry_gate() before the machine starts.
  void before_entry(vmm::VcpuThread& vcpu) override;
  // What the machine asks at exits a tool may own; install with Machine::set_intercepts().
  vmm::VcpuIntercepts* intercepts() { return &intercepts_; }

 private:
  IntrospectionServer(ServerConfig config, VmTarget& vm, std::optional<UnixListener> listener,
                      UniqueFd stop_fd, UniqueFd wake_fd);

  void run();
  // A connected, not yet handshaken socket; nullopt once stopping.
  std::optional<UniqueFd> next_connection();
  void serve(UniqueFd fd);
  void unhook(Session& session, int ended_fd);
  // True (once) when an unhook was asked for while this session was the attached one.
  bool take_unhook_request(const Session& session);
  // --start-paused: hands every held vCPU to `session` with one pending pause (call with
  // session_mutex_ held, once the session is the attached one).
  void release_held_vcpus(Session& session);
  // Sleeps up to `interval`, returning early (false) when stopping.
  bool pause_unless_stopping(std::chrono::milliseconds interval);

  ServerConfig config_;
  VmTarget& vm_;
  std::optional<UnixListener> listener_;
  UniqueFd stop_fd_;  // eventfd, readable once stop() was called (never reset)
  UniqueFd wake_fd_;  // eventfd, an unhook was requested
  std::atomic<bool> stopping_{false};
  // The session an unhook was asked for (by identity, not "whoever is attached when the server
  // thread gets to it"): a request that races with a tool leaving must not end the next tool.
  const Session* unhook_target_ = nullptr;   // guarded by session_mutex_
  std::atomic<std::uint32_t> event_seq_{0};  // per VM, across sessions (spec §1.3)
  mutable std::mutex session_mutex_;
  std::shared_ptr<Session> session_;
  // --start-paused and no tool has attached yet: vCPUs wait in before_entry(). Guarded by
  // session_mutex_ (read unlocked only as a hint by the waiters, who re-check under the lock).
  std::atomic<bool> holding_{false};
  SessionIntercepts intercepts_{[this] {
    std::lock_guard lock(session_mutex_);
    return session_;
  }};
  std::thread thread_;
  std::once_flag stop_once_;
};

}  // namespace glassbox::introspection
