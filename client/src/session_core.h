// The shared state of a Session: socket, write lock, reply slots, event queue, reader thread.
// PendingReply keeps it alive so a reply can still be cancelled after the Session is gone.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>

#include "glassbox/client/error.h"
#include "glassbox/client/session.h"
#include "socket_io.h"

namespace glassbox::client::detail {

struct ReplySlot {
  std::uint16_t id = 0;  // the request's id: a reply must carry the same id and seq
  std::mutex mutex;
  std::condition_variable ready;
  std::optional<Result<Message>> result;
  bool taken = false;
};

class SessionCore {
 public:
  explicit SessionCore(OwnedFd fd) : fd_(std::move(fd)) {}
  ~SessionCore();
  SessionCore(const SessionCore&) = delete;
  SessionCore& operator=(const SessionCore&) = delete;

  void start_reader();
  // Closes the connection with `reason` and joins the reader (not callable from the reader).
  void stop(std::string reason);

  // Registers a reply slot; with no seq given, allocates one no request in flight uses.
  Result<std::pair<std::uint32_t, std::shared_ptr<ReplySlot>>> add_slot(
      std::uint16_t id, std::optional<std::uint32_t> seq);
  void remove_slot(std::uint32_t seq, const std::shared_ptr<ReplySlot>& slot);

  // Writes header + payload as one message under the write lock.
  Result<void> write_message(const kvmi::MsgHdr& hdr, std::span<const std::byte> payload);
  Result<void> write_bytes(std::span<const std::byte> bytes);

  Result<Message> wait_event(std::chrono::milliseconds timeout);
  std::optional<Message> poll_event();
  std::vector<Message> take_unmatched();

  bool is_open() const;
  std::string close_reason() const;

 private:
  void reader_loop();
  void deliver(Message message);
  // Marks the connection closed (first reason wins), shuts the socket down and fails every
  // waiter. Safe from any thread, including the reader.
  void close_with(std::string reason);
  Result<void> write_iov(std::span<iovec> parts);

  static constexpr std::size_t kMaxUnmatched = 256;

  OwnedFd fd_;
  std::mutex write_mutex_;
  mutable std::mutex state_mutex_;
  std::condition_variable event_ready_;
  std::unordered_map<std::uint32_t, std::shared_ptr<ReplySlot>> slots_;
  std::uint32_t next_seq_ = 1;
  std::deque<Message> events_;
  std::deque<Message> unmatched_;
  bool closed_ = false;
  std::string close_reason_;
  std::mutex reader_mutex_;
  std::thread reader_;
};

}  // namespace glassbox::client::detail
