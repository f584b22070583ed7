// A KVMI session as seen from the introspection tool (spec/kvmi-v7.md §1, §5.3).
//
// One Session owns one connected socket and one reader thread. Requests are pipelined: submit()
// returns at once with a PendingReply and any number can be in flight; the reader thread matches
// replies by (id, seq) and queues events (id KVMI_EVENT) for wait_event(). All writes go out as
// one sendmsg per whole message under one lock, so threads may share a Session freely.
#pragma once

#include <linux/kvm.h>

#include <functional>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "glassbox/client/error.h"
#include "glassbox/kvmi/dialect.h"
#include "glassbox/kvmi/events.h"
#include "glassbox/kvmi/ids.h"
#include "glassbox/kvmi/messages.h"

namespace glassbox::client {

struct SessionOptions {
  // The shared secret's bytes; the handshake answer carries their SHA-1. Without one, the answer
  // carries zeros and only a VMM without --secret accepts it.
  std::optional<std::vector<std::uint8_t>> secret;
  std::chrono::milliseconds handshake_timeout{10000};
  // How long the typed calls wait for their reply; zero waits until the reply or a close.
  std::chrono::milliseconds reply_timeout{0};
  // The numbering spoken on the wire: must match the VMM's --kvmi-dialect. The API stays in RFC
  // v7 ids either way (typed calls, submit(), event ids); the session translates at the socket.
  // submit_raw() and send_raw() send bytes as given, in the dialect's numbering.
  kvmi::Dialect dialect = kvmi::Dialect::RfcV7;
};

// Reads a secret file's bytes for SessionOptions::secret.
Result<std::vector<std::uint8_t>> read_secret_file(const std::filesystem::path& path);

// What the VMM said about itself in its hello (§5.3).
struct VmIdentity {
  std::array<std::uint8_t, 16> uuid{};
  std::int64_t start_time_ms = 0;
  std::string name;
  std::uint32_t hello_size = 0;  // struct_size as sent; > 96 means extensions were skipped
};

// One framed message as it came off the socket.
struct Message {
  kvmi::MsgHdr hdr{};
  std::vector<std::byte> payload;
};

// A command reply whose error code was 0.
struct Reply {
  kvmi::MsgHdr hdr{};
  std::vector<std::byte> payload;  // including the 8-byte kvmi_error_code
  std::span<const std::byte> data() const {
    return std::span(payload).subspan(sizeof(kvmi::ErrorCode));
  }
};

struct Version {
  std::uint32_t version = 0;
  bool singlestep = false;  // kvmi_features.singlestep
};

// An event, with the common part decoded and the event-specific part kept as bytes.
class ReceivedEvent {
 public:
  // `dialect`: the numbering of the event id in `message`; event_id() and common() give v7 ids.
  explicit ReceivedEvent(Message message, kvmi::Dialect dialect = kvmi::Dialect::RfcV7);

  const kvmi::MsgHdr& header() const { return message_.hdr; }
  std::uint32_t seq() const { return message_.hdr.seq; }
  const kvmi::Event& common() const { return common_; }
  std::uint16_t vcpu() const { return common_.vcpu; }
  std::uint8_t event_id() const { return common_.event; }
  // The event id exactly as the VMM sent it (payload() is untranslated too).
  std::uint8_t wire_event_id() const { return wire_event_; }
  // The bytes after the common part, which starts at offset common().size (§3.2).
  std::span<const std::byte> specific() const;
  const std::vector<std::byte>& payload() const { return message_.payload; }

  // The specific part as T, zero-filled if the VMM sent fewer bytes.
  template <typename T>
  T specific_as() const {
    T value{};
    auto bytes = specific();
    std::memcpy(&value, bytes.data(), std::min(bytes.size(), sizeof(T)));
    return value;
  }

 private:
  Message message_;
  kvmi::Event common_{};
  std::uint8_t wire_event_ = 0;
};

namespace detail {
class SessionCore;
struct ReplySlot;
}  // namespace detail

// A request in flight. wait() may be called once; dropping it abandons the reply.
class PendingReply {
 public:
  PendingReply(std::shared_ptr<detail::SessionCore> core, std::shared_ptr<detail::ReplySlot> slot,
               kvmi::MsgHdr request);
  PendingReply(PendingReply&&) noexcept;
  PendingReply& operator=(PendingReply&&) noexcept;
  ~PendingReply();

  std::uint32_t seq() const { return request_.seq; }
  std::uint16_t id() const { return request_.id; }

  // The reply as received, whatever its error code. timeout zero: wait until reply or close.
  Result<Message> wait_raw(std::chrono::milliseconds timeout = std::chrono::milliseconds{0});
  // The reply with its error code checked: a negative code becomes ErrorKind::Kvmi.
  Result<Reply> wait(std::chrono::milliseconds timeout = std::chrono::milliseconds{0});

 private:
  void abandon();

  std::shared_ptr<detail::SessionCore> core_;
  std::shared_ptr<detail::ReplySlot> slot_;
  kvmi::MsgHdr request_{};
};

// The page-access entries covering [gpa, gpa + size), one per 4 KiB page, all set to `access`.
// Empty when size is 0; a range reaching past 2^64 stops at the last page.
std::vector<kvmi::PageAccessEntry> page_access_entries(std::uint64_t gpa, std::uint64_t size,
                                                       std::uint8_t access);

class Session {
 public:
  // Connects to a VMM listening on a unix socket (glassbox --introspect listen:unix:PATH) and
  // runs the handshake.
  static Result<std::unique_ptr<Session>> connect(const std::filesystem::path& path,
                                                  SessionOptions options = {});
  // Takes ownership of a connected stream socket `fd` (closed on failure too) and runs the
  // handshake on it. Listener::accept ends here; tests use it with socketpair().
  static Result<std::unique_ptr<Session>> adopt(int fd, SessionOptions options = {});

  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const VmIdentity& vm() const { return vm_; }
  const SessionOptions& options() const { return options_; }

  // ---- pipelining and raw access ----
  // Sends `id` with a fresh seq and `payload`; the reply is matched by (id, seq).
  Result<PendingReply> submit(kvmi::MessageId id, std::span<const std::byte> payload = {});
  // Sends `message` (header included) exactly as given and waits on the (id, seq) its header
  // names, even when its size field lies: for conformance tests.
  Result<PendingReply> submit_raw(std::span<const std::byte> message);
  // Sends bytes as they are and expects nothing (truncated headers, event replies, junk).
  Result<void> send_raw(std::span<const std::byte> bytes);
  Result<Message> call_raw(std::span<const std::byte> message);

  // ---- typed VM commands (spec §2.3) ----
  Result<Version> get_version();
  // Succeeds when the VMM allows the command; -KVM_EPERM when it does not, -KVM_EINVAL if unknown.
  Result<void> check_command(std::uint16_t id);
  Result<void> check_event(std::uint16_t id);
  Result<std::uint32_t> get_vcpu_count();  // KVMI_VM_GET_INFO
  Result<void> control_vm_events(kvmi::EventId event, bool enable);
  Result<std::vector<std::byte>> read_physical(std::uint64_t gpa, std::uint64_t size);
  Result<void> read_physical(std::uint64_t gpa, std::span<std::byte> out);
  Result<PendingReply> submit_read_physical(std::uint64_t gpa, std::uint64_t size);
  Result<void> write_physical(std::uint64_t gpa, std::span<const std::byte> data);
  Result<std::uint64_t> get_max_gfn();
  // KVMI_VM_SET_PAGE_ACCESS (§2.3.20): each entry's page allows exactly its `access` afterwards
  // (kvmi::kPageAccessRwx lifts the restriction). More entries than one message holds (511) go
  // out in several messages; all are sent even after a failure, as the VMM tries every entry of
  // one message, and the first error is returned.
  Result<void> set_page_access(std::span<const kvmi::PageAccessEntry> entries);
  // Every page [gpa, gpa + size) touches gets `access`.
  Result<void> set_page_access(std::uint64_t gpa, std::uint64_t size, std::uint8_t access);

  // ---- typed vCPU commands (spec §2.3.8-2.3.22); `vcpu` is the vCPU index ----
  struct Registers {
    std::uint32_t mode = 0;  // 2, 4 or 8
    kvm_regs regs{};
    kvm_sregs sregs{};
    std::vector<kvm_msr_entry> msrs;  // in the order asked for
  };
  struct Cpuid {
    std::uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
  };
  Result<std::uint64_t> get_vcpu_tsc_speed(std::uint16_t vcpu);  // KVMI_VCPU_GET_INFO, Hz or 0
  // KVMI_VCPU_PAUSE: the vCPU will send one KVMI_EVENT_PAUSE_VCPU; with `wait` the reply comes
  // once it is out of guest mode.
  Result<void> pause_vcpu(std::uint16_t vcpu, bool wait = true);
  Result<void> control_vcpu_events(std::uint16_t vcpu, kvmi::EventId event, bool enable);
  Result<Registers> get_registers(std::uint16_t vcpu, std::span<const std::uint32_t> msrs = {});
  // Only while the vCPU waits on an event; applied when the event is answered.
  Result<void> set_registers(std::uint16_t vcpu, const kvm_regs& regs);
  Result<Cpuid> get_cpuid(std::uint16_t vcpu, std::uint32_t function, std::uint32_t index = 0);
  Result<void> control_cr(std::uint16_t vcpu, std::uint32_t cr, bool enable);
  Result<void> inject_exception(std::uint16_t vcpu, std::uint8_t vector,
                                std::uint32_t error_code = 0, std::uint64_t address = 0);
  Result<std::vector<std::byte>> get_xsave(std::uint16_t vcpu);
  Result<std::uint8_t> get_mtrr_type(std::uint16_t vcpu, std::uint64_t gpa);
  Result<void> control_msr(std::uint16_t vcpu, std::uint32_t msr, bool enable);
  Result<void> control_singlestep(std::uint16_t vcpu, bool enable);
  // kvmi::kInvalidGpa when the address does not translate.
  Result<std::uint64_t> translate_gva(std::uint16_t vcpu, std::uint64_t gva);
  // Sends a vCPU command with `body` after the vCPU header, without waiting (for pipelining).
  Result<PendingReply> submit_vcpu(kvmi::MessageId id, std::uint16_t vcpu,
                                   std::span<const std::byte> body = {});

  // "Stop the world": pauses every vCPU (waiting for each) and collects one PAUSE_VCPU event per
  // vCPU, which stay unanswered (the vCPUs stay stopped) until resume_all(). Other events that
  // arrive meanwhile are handed to `other` (answered CONTINUE if it is empty).
  Result<std::vector<ReceivedEvent>> pause_all(
      std::chrono::milliseconds timeout = std::chrono::seconds(10),
      const std::function<void(const ReceivedEvent&)>& other = {});
  // Answers each PAUSE_VCPU event of pause_all() with CONTINUE.
  Result<void> resume_all(const std::vector<ReceivedEvent>& paused);

  // An event loop: waits for events and calls `handler` with each; the handler may issue commands
  // (e.g. read registers of the vCPU that raised it) and returns the action to answer with. Ends
  // when `keep_going` returns false (checked between events and every `poll` interval) or the
  // connection closes.
  using EventHandler = std::function<kvmi::EventAction(const ReceivedEvent&)>;
  Result<void> run_event_loop(const EventHandler& handler, const std::function<bool()>& keep_going,
                              std::chrono::milliseconds poll = std::chrono::milliseconds(100));

  // ---- events ----
  // The next queued event; timeout zero waits until one arrives or the connection closes.
  Result<ReceivedEvent> wait_event(std::chrono::milliseconds timeout = std::chrono::milliseconds{
                                       0});
  std::optional<ReceivedEvent> poll_event();
  // Answers `event` (id KVMI_EVENT_REPLY, the event's seq); `extra` is the event-specific reply.
  Result<void> reply_event(const ReceivedEvent& event, kvmi::EventAction action,
                           std::span<const std::byte> extra = {});

  // Answers a KVMI_EVENT_MSR: on CONTINUE the MSR receives `new_value`, so echoing the event's
  // new_value lets the write through and its old_value blocks it without a #GP (§3.4.9).
  Result<void> reply_msr_event(const ReceivedEvent& event, kvmi::EventAction action,
                               std::uint64_t new_value);

  // Replies that matched no request (e.g. the VMM's error reply to a bad event reply), oldest
  // first; the oldest are dropped beyond a bound.
  std::vector<Message> take_unmatched();

  bool is_open() const;
  std::string close_reason() const;
  // Shuts the socket down, fails every waiter with ErrorKind::Closed and joins the reader.
  void close();

 private:
  Session(std::shared_ptr<detail::SessionCore> core, VmIdentity vm, SessionOptions options);
  Result<Reply> call(kvmi::MessageId id, std::span<const std::byte> payload, std::size_t min_data);
  // A copy of `payload` of v7 message `v7_id` with the ids inside it in options_.dialect.
  std::vector<std::byte> to_wire_payload(std::uint16_t v7_id,
                                         std::span<const std::byte> payload) const;

  std::shared_ptr<detail::SessionCore> core_;
  VmIdentity vm_;
  SessionOptions options_;
};

}  // namespace glassbox::client
