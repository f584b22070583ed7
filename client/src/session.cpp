#include "glassbox/client/session.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/names.h"
#include "handshake.h"
#include "session_core.h"
#include "socket_io.h"

namespace glassbox::client {

namespace {

template <typename T>
std::span<const std::byte> bytes_of(const T& value) {
  return std::as_bytes(std::span(&value, 1));
}

std::string command_label(std::uint16_t id) {
  return std::string(kvmi::message_name(id));
}

// Prefixes an error with the command it belongs to, so every message names what failed.
Error with_command(Error error, std::uint16_t id) {
  error.message = command_label(id) + ": " + error.message;
  return error;
}

}  // namespace

Result<std::vector<std::uint8_t>> read_secret_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_error(ErrorKind::Io, "cannot open secret file " + path.string(), ENOENT);
  }
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in),
                                   std::istreambuf_iterator<char>());
}

// ---- ReceivedEvent -------------------------------------------------------------------------

ReceivedEvent::ReceivedEvent(Message message, kvmi::Dialect dialect)
    : message_(std::move(message)) {
  std::memcpy(&common_, message_.payload.data(),
              std::min(message_.payload.size(), sizeof(common_)));
  wire_event_ = common_.event;
  // An event id without a v7 equivalent (CREATE_VCPU, CPUID) is kept out of the v7 range.
  common_.event = static_cast<std::uint8_t>(
      kvmi::v7_event_id(dialect, wire_event_).value_or(kvmi::kUntranslatableId & 0xff));
}

std::span<const std::byte> ReceivedEvent::specific() const {
  std::size_t start = std::min<std::size_t>(common_.size, message_.payload.size());
  return std::span(message_.payload).subspan(start);
}

// ---- PendingReply --------------------------------------------------------------------------

PendingReply::PendingReply(std::shared_ptr<detail::SessionCore> core,
                           std::shared_ptr<detail::ReplySlot> slot, kvmi::MsgHdr request)
    : core_(std::move(core)), slot_(std::move(slot)), request_(request) {}

PendingReply::PendingReply(PendingReply&&) noexcept = default;

PendingReply& PendingReply::operator=(PendingReply&& other) noexcept {
  if (this != &other) {
    abandon();
    core_ = std::move(other.core_);
    slot_ = std::move(other.slot_);
    request_ = other.request_;
  }
  return *this;
}

PendingReply::~PendingReply() {
  abandon();
}

void PendingReply::abandon() {
  // Without this, a dropped request would keep its seq reserved until the reply or the close.
  if (core_ && slot_) core_->remove_slot(request_.seq, slot_);
  slot_.reset();
  core_.reset();
}

Result<Message> PendingReply::wait_raw(std::chrono::milliseconds timeout) {
  if (!slot_) {
    return make_error(ErrorKind::InvalidArgument,
                      command_label(request_.id) + ": reply already taken");
  }
  std::unique_lock lock(slot_->mutex);
  auto ready = [&] { return slot_->result.has_value(); };
  if (timeout.count() > 0) {
    if (!slot_->ready.wait_for(lock, timeout, ready)) {
      lock.unlock();
      abandon();
      return make_error(ErrorKind::Timeout, command_label(request_.id) + ": no reply within " +
                                                std::to_string(timeout.count()) + " ms");
    }
  } else {
    slot_->ready.wait(lock, ready);
  }
  Result<Message> result = std::move(*slot_->result);
  lock.unlock();
  slot_.reset();
  core_.reset();
  if (!result) return std::unexpected(with_command(std::move(result.error()), request_.id));
  return result;
}

Result<Reply> PendingReply::wait(std::chrono::milliseconds timeout) {
  std::uint16_t id = request_.id;
  auto message = wait_raw(timeout);
  if (!message) return std::unexpected(std::move(message.error()));
  if (message->payload.size() < sizeof(kvmi::ErrorCode)) {
    return make_error(ErrorKind::Protocol, command_label(id) + ": reply of " +
                                               std::to_string(message->payload.size()) +
                                               " bytes has no error code");
  }
  kvmi::ErrorCode ec{};
  std::memcpy(&ec, message->payload.data(), sizeof(ec));
  if (ec.err != 0) {
    return make_error(ErrorKind::Kvmi,
                      command_label(id) + ": " + std::string(kvmi::error_name(ec.err)) + " (" +
                          std::string(kvmi::error_description(ec.err)) + ")",
                      ec.err);
  }
  return Reply{message->hdr, std::move(message->payload)};
}

// ---- Session: construction ----------------------------------------------------------------

Session::Session(std::shared_ptr<detail::SessionCore> core, VmIdentity vm, SessionOptions options)
    : core_(std::move(core)), vm_(std::move(vm)), options_(std::move(options)) {}

Session::~Session() {
  close();
}

void Session::close() {
  core_->stop("closed by the tool");
}

bool Session::is_open() const {
  return core_->is_open();
}

std::string Session::close_reason() const {
  return core_->close_reason();
}

Result<std::unique_ptr<Session>> Session::adopt(int fd, SessionOptions options) {
  detail::OwnedFd owned(fd);
  if (fd < 0) return make_error(ErrorKind::InvalidArgument, "adopt: invalid file descriptor");
  auto vm = detail::run_tool_handshake(owned.get(), options);
  if (!vm) return std::unexpected(std::move(vm.error()));
  auto core = std::make_shared<detail::SessionCore>(std::move(owned));
  core->start_reader();
  return std::unique_ptr<Session>(new Session(std::move(core), std::move(*vm), std::move(options)));
}

Result<std::unique_ptr<Session>> Session::connect(const std::filesystem::path& path,
                                                  SessionOptions options) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.empty() || p.size() >= sizeof(addr.sun_path)) {
    return make_error(ErrorKind::InvalidArgument, "connect: socket path too long: " + p);
  }
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  detail::OwnedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    return make_error(ErrorKind::Io, "connect: socket: " + detail::errno_text(errno), errno);
  }
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int err = errno;
    return make_error(ErrorKind::Io, "connect " + p + ": " + detail::errno_text(err), err);
  }
  return adopt(fd.release(), std::move(options));
}

std::vector<std::byte> Session::to_wire_payload(std::uint16_t v7_id,
                                                std::span<const std::byte> payload) const {
  std::vector<std::byte> out(payload.begin(), payload.end());
  const auto field = kvmi::payload_id_field(v7_id);
  if (auto value = kvmi::read_id_field(out, field)) {
    kvmi::write_id_field(out, field,
                         field.kind == kvmi::PayloadIdField::Kind::Message
                             ? kvmi::wire_message_id(options_.dialect, *value)
                             : kvmi::wire_event_id(options_.dialect, *value));
  }
  if (options_.dialect == kvmi::Dialect::Libkvmi &&
      v7_id == static_cast<std::uint16_t>(kvmi::MessageId::VmSetPageAccess) &&
      out.size() >= sizeof(kvmi::VmSetPageAccess)) {
    // libkvmi's header is {u16 view, u16 count}: view 0, the count second.
    kvmi::VmSetPageAccess v7{};
    std::memcpy(&v7, out.data(), sizeof v7);
    const kvmi::libkvmi::SetPageAccess wire{0, v7.count, v7.padding2};
    std::memcpy(out.data(), &wire, sizeof wire);
  }
  return out;
}

// ---- Session: raw and pipelined requests -------------------------------------------------

Result<PendingReply> Session::submit(kvmi::MessageId id, std::span<const std::byte> payload) {
  const auto v7_id = static_cast<std::uint16_t>(id);
  if (payload.size() > kvmi::kMsgSize) {
    return make_error(ErrorKind::InvalidArgument, command_label(v7_id) + ": payload of " +
                                                      std::to_string(payload.size()) +
                                                      " bytes exceeds KVMI_MSG_SIZE");
  }
  std::vector<std::byte> translated;
  if (options_.dialect != kvmi::Dialect::RfcV7) {
    // The dialect edge of the tool's side: the wire id, and ids carried inside the payload.
    translated = to_wire_payload(v7_id, payload);
    payload = translated;
  }
  const std::uint16_t wire_id = kvmi::wire_message_id(options_.dialect, v7_id);
  // The reply is matched on the wire id; the caller and the error texts keep the v7 one.
  auto slot = core_->add_slot(wire_id, std::nullopt);
  if (!slot) return std::unexpected(with_command(std::move(slot.error()), v7_id));
  const kvmi::MsgHdr hdr{wire_id, static_cast<std::uint16_t>(payload.size()), slot->first};
  // The slot exists before the bytes leave, so even an instant reply finds its waiter.
  if (auto w = core_->write_message(hdr, payload); !w) {
    core_->remove_slot(slot->first, slot->second);
    return std::unexpected(with_command(std::move(w.error()), v7_id));
  }
  return PendingReply(core_, std::move(slot->second), kvmi::MsgHdr{v7_id, hdr.size, hdr.seq});
}

Result<PendingReply> Session::submit_raw(std::span<const std::byte> message) {
  if (message.size() < sizeof(kvmi::MsgHdr)) {
    return make_error(ErrorKind::InvalidArgument,
                      "submit_raw: a message needs an 8-byte header; use send_raw for fragments");
  }
  kvmi::MsgHdr hdr{};
  std::memcpy(&hdr, message.data(), sizeof(hdr));
  auto slot = core_->add_slot(hdr.id, hdr.seq);
  if (!slot) return std::unexpected(with_command(std::move(slot.error()), hdr.id));
  if (auto w = core_->write_bytes(message); !w) {
    core_->remove_slot(slot->first, slot->second);
    return std::unexpected(with_command(std::move(w.error()), hdr.id));
  }
  return PendingReply(core_, std::move(slot->second), hdr);
}

Result<void> Session::send_raw(std::span<const std::byte> bytes) {
  return core_->write_bytes(bytes);
}

Result<Message> Session::call_raw(std::span<const std::byte> message) {
  auto pending = submit_raw(message);
  if (!pending) return std::unexpected(std::move(pending.error()));
  return pending->wait_raw(options_.reply_timeout);
}

Result<Reply> Session::call(kvmi::MessageId id, std::span<const std::byte> payload,
                            std::size_t min_data) {
  auto pending = submit(id, payload);
  if (!pending) return std::unexpected(std::move(pending.error()));
  auto reply = pending->wait(options_.reply_timeout);
  if (!reply) return reply;
  if (reply->data().size() < min_data) {
    return make_error(ErrorKind::Protocol, command_label(static_cast<std::uint16_t>(id)) +
                                               ": reply carries " +
                                               std::to_string(reply->data().size()) +
                                               " data bytes, expected " + std::to_string(min_data));
  }
  return reply;
}

// ---- Session: typed VM commands ----------------------------------------------------------

Result<Version> Session::get_version() {
  auto reply = call(kvmi::MessageId::GetVersion, {}, sizeof(kvmi::GetVersionReply));
  if (!reply) return std::unexpected(std::move(reply.error()));
  kvmi::GetVersionReply r{};
  std::memcpy(&r, reply->data().data(), sizeof(r));
  return Version{r.version, r.features.singlestep != 0};
}

Result<void> Session::check_command(std::uint16_t id) {
  kvmi::VmCheckCommand req{};
  req.id = id;
  auto reply = call(kvmi::MessageId::VmCheckCommand, bytes_of(req), 0);
  if (!reply) return std::unexpected(std::move(reply.error()));
  return {};
}

Result<void> Session::check_event(std::uint16_t id) {
  kvmi::VmCheckEvent req{};
  req.id = id;
  auto reply = call(kvmi::MessageId::VmCheckEvent, bytes_of(req), 0);
  if (!reply) return std::unexpected(std::move(reply.error()));
  return {};
}

Result<std::uint32_t> Session::get_vcpu_count() {
  auto reply = call(kvmi::MessageId::VmGetInfo, {}, sizeof(kvmi::VmGetInfoReply));
  if (!reply) return std::unexpected(std::move(reply.error()));
  kvmi::VmGetInfoReply r{};
  std::memcpy(&r, reply->data().data(), sizeof(r));
  return r.vcpu_count;
}

Result<void> Session::control_vm_events(kvmi::EventId event, bool enable) {
  kvmi::VmControlEvents req{};
  req.event_id = static_cast<std::uint16_t>(event);
  req.enable = enable ? 1 : 0;
  auto reply = call(kvmi::MessageId::VmControlEvents, bytes_of(req), 0);
  if (!reply) return std::unexpected(std::move(reply.error()));
  return {};
}

Result<PendingReply> Session::submit_read_physical(std::uint64_t gpa, std::uint64_t size) {
  kvmi::VmReadPhysical req{gpa, size};
  return submit(kvmi::MessageId::VmReadPhysical, bytes_of(req));
}

Result<void> Session::read_physical(std::uint64_t gpa, std::span<std::byte> out) {
  auto pending = submit_read_physical(gpa, out.size());
  if (!pending) return std::unexpected(std::move(pending.error()));
  auto reply = pending->wait(options_.reply_timeout);
  if (!reply) return std::unexpected(std::move(reply.error()));
  // The page rule makes a short success impossible; a different size means a broken peer.
  if (reply->data().size() != out.size()) {
    return make_error(ErrorKind::Protocol, "KVMI_VM_READ_PHYSICAL: asked " +
                                               std::to_string(out.size()) + " bytes, got " +
                                               std::to_string(reply->data().size()));
  }
  std::memcpy(out.data(), reply->data().data(), out.size());
  return {};
}

Result<std::vector<std::byte>> Session::read_physical(std::uint64_t gpa, std::uint64_t size) {
  if (size > kvmi::kPageSize) {
    // Refused locally: the VMM would answer -KVM_EINVAL, and a huge size must not allocate.
    return make_error(ErrorKind::InvalidArgument,
                      "KVMI_VM_READ_PHYSICAL: size " + std::to_string(size) + " exceeds a page",
                      kvmi::to_wire(kvmi::Errno::Inval));
  }
  std::vector<std::byte> data(size);
  auto r = read_physical(gpa, data);
  if (!r) return std::unexpected(std::move(r.error()));
  return data;
}

Result<void> Session::write_physical(std::uint64_t gpa, std::span<const std::byte> data) {
  if (data.size() > kvmi::kMsgSize - sizeof(kvmi::VmWritePhysical)) {
    return make_error(
        ErrorKind::InvalidArgument,
        "KVMI_VM_WRITE_PHYSICAL: " + std::to_string(data.size()) + " bytes do not fit one message");
  }
  kvmi::VmWritePhysical req{gpa, data.size()};
  std::vector<std::byte> payload(sizeof(req) + data.size());
  std::memcpy(payload.data(), &req, sizeof(req));
  if (!data.empty()) {
    std::memcpy(payload.data() + kvmi::kVmWritePhysicalDataOffset, data.data(), data.size());
  }
  auto reply = call(kvmi::MessageId::VmWritePhysical, payload, 0);
  if (!reply) return std::unexpected(std::move(reply.error()));
  return {};
}

Result<std::uint64_t> Session::get_max_gfn() {
  auto reply = call(kvmi::MessageId::VmGetMaxGfn, {}, sizeof(kvmi::VmGetMaxGfnReply));
  if (!reply) return std::unexpected(std::move(reply.error()));
  kvmi::VmGetMaxGfnReply r{};
  std::memcpy(&r, reply->data().data(), sizeof(r));
  return r.gfn;
}

std::vector<kvmi::PageAccessEntry> page_access_entries(std::uint64_t gpa, std::uint64_t size,
                                                       std::uint8_t access) {
  std::vector<kvmi::PageAccessEntry> entries;
  if (size == 0) return entries;
  const std::uint64_t first = gpa & ~(kvmi::kPageSize - 1);
  const std::uint64_t last_byte =
      size - 1 > ~std::uint64_t{0} - gpa ? ~std::uint64_t{0} : gpa + (size - 1);
  const std::uint64_t last = last_byte & ~(kvmi::kPageSize - 1);
  for (std::uint64_t page = first;; page += kvmi::kPageSize) {
    kvmi::PageAccessEntry entry{};
    entry.gpa = page;
    entry.access = access;
    entries.push_back(entry);
    if (page == last) break;
  }
  return entries;
}

Result<void> Session::set_page_access(std::span<const kvmi::PageAccessEntry> entries) {
  std::optional<Error> first_error;
  while (!entries.empty()) {
    const auto chunk =
        entries.first(std::min<std::size_t>(entries.size(), kvmi::kMaxPageAccessEntries));
    entries = entries.subspan(chunk.size());
    kvmi::VmSetPageAccess req{};
    req.count = static_cast<std::uint16_t>(chunk.size());
    std::vector<std::byte> payload(kvmi::kVmSetPageAccessEntriesOffset + chunk.size_bytes());
    std::memcpy(payload.data(), &req, sizeof(req));
    std::memcpy(payload.data() + kvmi::kVmSetPageAccessEntriesOffset, chunk.data(),
                chunk.size_bytes());
    auto reply = call(kvmi::MessageId::VmSetPageAccess, payload, 0);
    if (!reply && !first_error) first_error = std::move(reply.error());
    // A closed connection fails every later message the same way.
    if (first_error && first_error->kind == ErrorKind::Closed) break;
  }
  if (first_error) return std::unexpected(std::move(*first_error));
  return {};
}

Result<void> Session::set_page_access(std::uint64_t gpa, std::uint64_t size, std::uint8_t access) {
  const auto entries = page_access_entries(gpa, size, access);
  return set_page_access(entries);
}

// ---- Session: events -----------------------------------------------------------------------

Result<ReceivedEvent> Session::wait_event(std::chrono::milliseconds timeout) {
  auto message = core_->wait_event(timeout);
  if (!message) return std::unexpected(std::move(message.error()));
  return ReceivedEvent(std::move(*message), options_.dialect);
}

std::optional<ReceivedEvent> Session::poll_event() {
  auto message = core_->poll_event();
  if (!message) return std::nullopt;
  return ReceivedEvent(std::move(*message), options_.dialect);
}

Result<void> Session::reply_event(const ReceivedEvent& event, kvmi::EventAction action,
                                  std::span<const std::byte> extra) {
  kvmi::VcpuHdr vcpu{};
  vcpu.vcpu = event.vcpu();
  kvmi::EventReply reply{};
  reply.action = static_cast<std::uint8_t>(action);
  reply.event = static_cast<std::uint8_t>(kvmi::wire_event_id(options_.dialect, event.event_id()));
  std::vector<std::byte> payload(sizeof(vcpu) + sizeof(reply) + extra.size());
  std::memcpy(payload.data(), &vcpu, sizeof(vcpu));
  std::memcpy(payload.data() + sizeof(vcpu), &reply, sizeof(reply));
  if (!extra.empty()) {
    std::memcpy(payload.data() + sizeof(vcpu) + sizeof(reply), extra.data(), extra.size());
  }
  constexpr auto id = static_cast<std::uint16_t>(kvmi::MessageId::EventReply);
  kvmi::MsgHdr hdr{id, static_cast<std::uint16_t>(payload.size()), event.seq()};
  auto w = core_->write_message(hdr, payload);
  if (!w) return std::unexpected(with_command(std::move(w.error()), id));
  return {};
}

Result<void> Session::reply_msr_event(const ReceivedEvent& event, kvmi::EventAction action,
                                      std::uint64_t new_value) {
  const kvmi::EventMsrReply extra{new_value};
  return reply_event(event, action, std::as_bytes(std::span(&extra, 1)));
}

std::vector<Message> Session::take_unmatched() {
  return core_->take_unmatched();
}

}  // namespace glassbox::client
