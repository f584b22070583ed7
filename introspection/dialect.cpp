#include "introspection/dialect.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstring>

#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/names.h"
#include "introspection/channel.h"

namespace glassbox::introspection {

namespace {

using LibkvmiId = kvmi::libkvmi::MessageId;

template <typename T>
T read_zero_filled(std::span<const std::byte> payload, std::size_t offset = 0) {
  // Short messages read as zero-filled, as everywhere in the receiver (spec §1.6).
  T value{};
  if (offset < payload.size()) {
    std::memcpy(&value, payload.data() + offset, std::min(sizeof(T), payload.size() - offset));
  }
  return value;
}

constexpr bool is(std::uint16_t wire_id, LibkvmiId id) {
  return wire_id == static_cast<std::uint16_t>(id);
}

// The libkvmi PF reply tail (ctx_addr, ctx_size, singlestep, rep_complete, ctx_data[256]).
struct LibkvmiPfReplyHead {
  std::uint64_t ctx_addr;
  std::uint32_t ctx_size;
  std::uint8_t singlestep;
  std::uint8_t rep_complete;
  std::uint16_t padding;
};

}  // namespace

std::span<const std::byte> DialectEdge::wire_event(std::span<const std::byte> common,
                                                   kvmi::Event& scratch) const {
  if (!translates() || common.size() != sizeof(kvmi::Event)) return common;
  std::memcpy(&scratch, common.data(), sizeof scratch);
  // kvmi_event.size stays kEventCommonSize (544): libkvmi finds the specific part at `size`.
  scratch.event = static_cast<std::uint8_t>(kvmi::wire_event_id(dialect_, scratch.event));
  return std::as_bytes(std::span(&scratch, 1));
}

void DialectEdge::suppress_reply_to(std::uint16_t v7_id, std::uint32_t seq) {
  std::lock_guard lock(mutex_);
  suppressed_.emplace(v7_id, seq);
}

bool DialectEdge::take_suppressed(std::uint16_t v7_id, std::uint32_t seq) {
  std::lock_guard lock(mutex_);
  if (suppressed_.empty()) return false;
  auto it = suppressed_.find({v7_id, seq});
  if (it == suppressed_.end()) return false;
  suppressed_.erase(it);
  return true;
}

std::expected<bool, std::string> translate_incoming(Channel& channel, kvmi::MsgHdr& hdr,
                                                    std::span<std::byte>& payload) {
  DialectEdge& edge = channel.edge();
  if (!edge.translates()) return true;
  const kvmi::MsgHdr wire = hdr;
  // Whether this message's reply goes out is decided by the setting it was read under.
  bool silent = !edge.replies_enabled();

  // An answer from the edge itself: the wire id and seq, 8 bytes on error (dialect spec §1.3).
  auto answer = [&](std::int32_t err,
                    std::span<const std::byte> data = {}) -> std::expected<bool, std::string> {
    if (silent) return false;
    if (auto sent = channel.send_wire_reply(wire, err, data); !sent) {
      return std::unexpected(fmt::format("sending the reply to libkvmi message {}: {}", wire.id,
                                         std::strerror(sent.error())));
    }
    return false;
  };
  auto answer_error = [&](kvmi::Errno err) { return answer(kvmi::to_wire(err)); };

  if (is(wire.id, LibkvmiId::ControlCmdResponse)) {
    const auto req = read_zero_filled<kvmi::libkvmi::ControlCmdResponse>(payload);
    if (req.padding1 != 0 || req.padding2 != 0) return answer_error(kvmi::Errno::Inval);
    const bool enable = req.enable != 0;
    if (req.now != 0) {
      // now=1 takes effect with this very command: "disable" is not answered, "enable" is (the
      // reply libkvmi waits for at the end of a batch).
      edge.set_replies_enabled(enable);
      silent = !enable;
      return answer(0);
    }
    // now=0: this command is answered under the old setting; the next one sees the new.
    auto result = answer(0);
    edge.set_replies_enabled(enable);
    return result;
  }

  if (is(wire.id, LibkvmiId::GetVersion)) {
    // libkvmi reads features as {spp, vmfunc, eptp, ve}; glassbox has none of them, and v7's
    // `singlestep` byte would read as "SPP supported" (dialect spec §1.2). Zeros.
    kvmi::GetVersionReply reply{};
    reply.version = kvmi::kVersion;
    return answer(0, std::as_bytes(std::span(&reply, 1)));
  }

  if (is(wire.id, LibkvmiId::CheckCommand)) {
    const auto req = read_zero_filled<kvmi::VmCheckCommand>(payload);
    if (req.padding1 == 0 && req.padding2 == 0 && !kvmi::libkvmi::to_v7(req.id)) {
      // Served by the edge itself; the other libkvmi ids exist but glassbox cannot serve them
      // (EPT views, #VE, SPP, remote mapping, ...): "not allowed", as v7 says of unserved ones.
      if (is(req.id, LibkvmiId::ControlCmdResponse)) return answer(0);
      if (req.id < kvmi::libkvmi::kNumMessages) return answer_error(kvmi::Errno::Perm);
    }
  }

  if (is(wire.id, LibkvmiId::CheckEvent)) {
    const auto req = read_zero_filled<kvmi::VmCheckEvent>(payload);
    if (req.padding1 == 0 && req.padding2 == 0 && !kvmi::libkvmi::event_to_v7(req.id) &&
        req.id < kvmi::libkvmi::kNumEvents) {
      // CREATE_VCPU, CMD_ERROR and CPUID are libkvmi events glassbox never raises.
      return answer_error(kvmi::Errno::Perm);
    }
  }

  if (is(wire.id, LibkvmiId::SetPageAccess)) {
    // libkvmi's header is {u16 view, u16 count, u32}; v7's {u16 count, u16, u32}. glassbox has no
    // EPT views: only the default view 0 exists.
    const auto req = read_zero_filled<kvmi::libkvmi::SetPageAccess>(payload);
    if (req.view != 0) return answer_error(kvmi::Errno::OpNotSupp);
    if (payload.size() >= sizeof(std::uint32_t)) {
      kvmi::VmSetPageAccess v7{};
      v7.count = req.count;
      std::memcpy(payload.data(), &v7, sizeof(std::uint32_t));  // count and padding1
    }
  }

  auto v7_id = kvmi::v7_message_id(edge.dialect(), wire.id);
  // Ids libkvmi knows that glassbox cannot serve, and ids nobody knows: -KVM_ENOSYS, 8 bytes.
  if (!v7_id) return answer_error(kvmi::Errno::NoSys);
  hdr.id = *v7_id;

  const auto field = kvmi::payload_id_field(*v7_id);
  if (auto value = kvmi::read_id_field(payload, field)) {
    const auto translated = field.kind == kvmi::PayloadIdField::Kind::Message
                                ? kvmi::v7_message_id(edge.dialect(), *value)
                                : kvmi::v7_event_id(edge.dialect(), *value);
    kvmi::write_id_field(payload, field, translated.value_or(kvmi::kUntranslatableId));
  }

  if (*v7_id == static_cast<std::uint16_t>(kvmi::MessageId::EventReply)) {
    constexpr std::size_t kHead = sizeof(kvmi::VcpuHdr) + sizeof(kvmi::EventReply);
    const auto reply = read_zero_filled<kvmi::EventReply>(payload, sizeof(kvmi::VcpuHdr));
    if (reply.event == static_cast<std::uint8_t>(kvmi::EventId::Pf) && payload.size() > kHead &&
        payload.size() - kHead <= kvmi::kLibkvmiPfReplyTailSize) {
      // libkvmi always sends the PF reply tail; glassbox re-executes the access itself, so an
      // emulation context or single-step request cannot be honoured. Dropped here, so the v7
      // check (a PF reply has no tail) still applies to everything else.
      const auto tail = read_zero_filled<LibkvmiPfReplyHead>(payload, kHead);
      if (tail.ctx_size != 0 || tail.singlestep != 0 || tail.rep_complete != 0) {
        spdlog::debug(
            "introspection: PF reply seq {} asks for ctx_size {}, singlestep {}, rep_complete "
            "{}; not supported, ignored",
            wire.seq, tail.ctx_size, tail.singlestep, tail.rep_complete);
      }
      payload = payload.first(kHead);
      hdr.size = static_cast<std::uint16_t>(kHead);
    }
    return true;  // event replies have no reply to suppress
  }

  if (silent) edge.suppress_reply_to(*v7_id, hdr.seq);
  return true;
}

}  // namespace glassbox::introspection
