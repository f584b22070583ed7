#include "session_core.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace glassbox::client::detail {

SessionCore::~SessionCore() {
  stop("session destroyed");
}

void SessionCore::start_reader() {
  std::lock_guard lock(reader_mutex_);
  reader_ = std::thread([this] { reader_loop(); });
}

void SessionCore::stop(std::string reason) {
  close_with(std::move(reason));
  std::lock_guard lock(reader_mutex_);
  if (reader_.joinable()) reader_.join();
}

bool SessionCore::is_open() const {
  std::lock_guard lock(state_mutex_);
  return !closed_;
}

std::string SessionCore::close_reason() const {
  std::lock_guard lock(state_mutex_);
  return close_reason_;
}

void SessionCore::close_with(std::string reason) {
  std::unordered_map<std::uint32_t, std::shared_ptr<ReplySlot>> orphans;
  {
    std::lock_guard lock(state_mutex_);
    if (closed_) return;
    closed_ = true;
    close_reason_ = std::move(reason);
    orphans.swap(slots_);
  }
  // Wakes the reader out of recv(); the fd itself stays open until the core dies so that no
  // other thread can race a recycled descriptor number.
  ::shutdown(fd_.get(), SHUT_RDWR);
  std::string text = "connection closed (" + close_reason() + ")";
  for (auto& [seq, slot] : orphans) {
    std::lock_guard lock(slot->mutex);
    if (!slot->result) slot->result = make_error(ErrorKind::Closed, text);
    slot->ready.notify_all();
  }
  event_ready_.notify_all();
}

Result<std::pair<std::uint32_t, std::shared_ptr<ReplySlot>>> SessionCore::add_slot(
    std::uint16_t id, std::optional<std::uint32_t> seq) {
  auto slot = std::make_shared<ReplySlot>();
  slot->id = id;
  std::lock_guard lock(state_mutex_);
  if (closed_) {
    return make_error(ErrorKind::Closed, "connection closed (" + close_reason_ + ")");
  }
  if (seq) {
    if (slots_.contains(*seq)) {
      return make_error(ErrorKind::InvalidArgument,
                        "seq " + std::to_string(*seq) + " is already waiting for a reply");
    }
  } else {
    // Skips seqs still in flight after a wrap-around or chosen by a raw request.
    while (slots_.contains(next_seq_)) ++next_seq_;
    seq = next_seq_++;
  }
  slots_.emplace(*seq, slot);
  return std::pair{*seq, slot};
}

void SessionCore::remove_slot(std::uint32_t seq, const std::shared_ptr<ReplySlot>& slot) {
  std::lock_guard lock(state_mutex_);
  auto it = slots_.find(seq);
  if (it != slots_.end() && it->second == slot) slots_.erase(it);
}

Result<void> SessionCore::write_iov(std::span<iovec> parts) {
  int err = 0;
  {
    std::lock_guard lock(write_mutex_);
    if (!is_open()) {
      return make_error(ErrorKind::Closed, "connection closed (" + close_reason() + ")");
    }
    err = write_all(fd_.get(), parts);
  }
  if (err != 0) {
    // A failed or partial write leaves the stream unframed; nothing more can be sent on it.
    close_with("write failed: " + errno_text(err));
    return make_error(ErrorKind::Closed,
                      "connection closed (write failed: " + errno_text(err) + ")", err);
  }
  return {};
}

Result<void> SessionCore::write_message(const kvmi::MsgHdr& hdr,
                                        std::span<const std::byte> payload) {
  kvmi::MsgHdr copy = hdr;
  iovec parts[2] = {{&copy, sizeof(copy)},
                    {const_cast<std::byte*>(payload.data()), payload.size()}};
  return write_iov(parts);
}

Result<void> SessionCore::write_bytes(std::span<const std::byte> bytes) {
  iovec part{const_cast<std::byte*>(bytes.data()), bytes.size()};
  return write_iov(std::span(&part, 1));
}

void SessionCore::reader_loop() {
  for (;;) {
    Message message;
    auto r = read_exact(fd_.get(), std::as_writable_bytes(std::span(&message.hdr, 1)));
    if (r.end != ReadEnd::Complete) {
      // A peer that closes with our requests still unread makes the kernel report a reset;
      // to the tool that is the same event as an orderly close.
      bool reset = r.end == ReadEnd::Error && r.error == ECONNRESET;
      close_with(r.end == ReadEnd::Eof     ? "peer closed the connection"
                 : reset                   ? "peer closed the connection (reset)"
                 : r.end == ReadEnd::Error ? "read failed: " + errno_text(r.error)
                                           : "truncated message header");
      return;
    }
    message.payload.resize(message.hdr.size);
    r = read_exact(fd_.get(), message.payload);
    if (r.end != ReadEnd::Complete) {
      close_with(r.end == ReadEnd::Error ? "read failed: " + errno_text(r.error)
                                         : "truncated message payload");
      return;
    }
    deliver(std::move(message));
  }
}

void SessionCore::deliver(Message message) {
  std::shared_ptr<ReplySlot> slot;
  {
    std::lock_guard lock(state_mutex_);
    auto it = slots_.find(message.hdr.seq);
    bool id_matches = it != slots_.end() && it->second->id == message.hdr.id;
    bool is_event = message.hdr.id == static_cast<std::uint16_t>(kvmi::MessageId::Event);
    // A tool that sent id 1 gets -KVM_ENOSYS back with id 1 (§1.6). An 8-byte message cannot be
    // an event (the common part alone is 544), so it is that reply when someone waits for it.
    if (is_event && !(id_matches && message.hdr.size == sizeof(kvmi::ErrorCode))) {
      events_.push_back(std::move(message));
      event_ready_.notify_one();
      return;
    }
    if (!id_matches) {
      if (unmatched_.size() == kMaxUnmatched) unmatched_.pop_front();
      unmatched_.push_back(std::move(message));
      return;
    }
    slot = std::move(it->second);
    slots_.erase(it);
  }
  std::lock_guard lock(slot->mutex);
  slot->result = std::move(message);
  slot->ready.notify_all();
}

Result<Message> SessionCore::wait_event(std::chrono::milliseconds timeout) {
  std::unique_lock lock(state_mutex_);
  auto ready = [&] { return !events_.empty() || closed_; };
  if (timeout.count() > 0) {
    if (!event_ready_.wait_for(lock, timeout, ready)) {
      return make_error(ErrorKind::Timeout,
                        "no event within " + std::to_string(timeout.count()) + " ms");
    }
  } else {
    event_ready_.wait(lock, ready);
  }
  // Events that arrived before the close are still handed out.
  if (events_.empty()) {
    return make_error(ErrorKind::Closed, "connection closed (" + close_reason_ + ")");
  }
  Message m = std::move(events_.front());
  events_.pop_front();
  return m;
}

std::optional<Message> SessionCore::poll_event() {
  std::lock_guard lock(state_mutex_);
  if (events_.empty()) return std::nullopt;
  Message m = std::move(events_.front());
  events_.pop_front();
  return m;
}

std::vector<Message> SessionCore::take_unmatched() {
  std::lock_guard lock(state_mutex_);
  std::vector<Message> out(std::make_move_iterator(unmatched_.begin()),
                           std::make_move_iterator(unmatched_.end()));
  unmatched_.clear();
  return out;
}

}  // namespace glassbox::client::detail
