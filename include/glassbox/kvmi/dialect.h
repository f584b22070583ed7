// Which numbering of KVMI a connection speaks (spec/libkvmi-dialect.md §1, §6 item 2), and the
// id translations both ends of a connection need: the VMM's edge (introspection/dialect.h) and
// the client library. The wire cannot tell the two apart (both send GET_VERSION = 2 first and
// expect version 1), so the dialect is a setting on each side.
//
// Layouts are shared: only ids differ, in the message header and in the few payload fields that
// carry a message or event id. Everything here works on RFC v7 ids on one side and wire ids on
// the other, so command and event handlers only ever see v7.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

#include "glassbox/kvmi/events.h"
#include "glassbox/kvmi/ids.h"
#include "glassbox/kvmi/libkvmi_dialect.h"
#include "glassbox/kvmi/messages.h"

namespace glassbox::kvmi {

enum class Dialect : std::uint8_t {
  RfcV7,    // the LKML RFC v7 posting (spec/kvmi-v7.md): glassbox's own numbering
  Libkvmi,  // Bitdefender libkvmi master / KVM-VMI "kvmi-v7" kernel (LibVMI, HVMI)
};

constexpr std::string_view dialect_name(Dialect d) {
  return d == Dialect::Libkvmi ? "libkvmi" : "rfc-v7";
}
constexpr std::optional<Dialect> parse_dialect(std::string_view text) {
  if (text == "rfc-v7") return Dialect::RfcV7;
  if (text == "libkvmi") return Dialect::Libkvmi;
  return std::nullopt;
}

// A v7 id in a payload field that has no equivalent in the other dialect (CREATE_VCPU, CPUID,
// CONTROL_CMD_RESPONSE, ...) becomes this: out of range for both numberings, so the receiving
// side answers it as an unknown id (-KVM_EINVAL) instead of acting on an unrelated one.
inline constexpr std::uint16_t kUntranslatableId = 0xffff;

// Message id on the wire for v7 `id`. kvmi::libkvmi::kMessageMap covers all 24 v7 ids, so the
// mapping is a bijection on them and a reply always goes out with the id its request had.
constexpr std::uint16_t wire_message_id(Dialect d, std::uint16_t v7_id) {
  if (d == Dialect::RfcV7) return v7_id;
  auto wire = libkvmi::from_v7(static_cast<MessageId>(v7_id));
  return wire ? *wire : kUntranslatableId;
}
// The v7 id of wire message `id`; nullopt when the dialect's id has no v7 equivalent.
constexpr std::optional<std::uint16_t> v7_message_id(Dialect d, std::uint16_t wire_id) {
  if (d == Dialect::RfcV7) return wire_id;
  auto v7 = libkvmi::to_v7(wire_id);
  if (!v7) return std::nullopt;
  return static_cast<std::uint16_t>(*v7);
}

constexpr std::uint16_t wire_event_id(Dialect d, std::uint16_t v7_event) {
  if (d == Dialect::RfcV7) return v7_event;
  auto wire = libkvmi::event_from_v7(static_cast<EventId>(v7_event));
  return wire ? *wire : kUntranslatableId;
}
constexpr std::optional<std::uint16_t> v7_event_id(Dialect d, std::uint16_t wire_event) {
  if (d == Dialect::RfcV7) return wire_event;
  auto v7 = libkvmi::event_to_v7(wire_event);
  if (!v7) return std::nullopt;
  return static_cast<std::uint16_t>(*v7);
}

// Where a message (named by its v7 id) carries an id inside its payload.
struct PayloadIdField {
  enum class Kind : std::uint8_t { None, Message, Event } kind = Kind::None;
  std::size_t offset = 0;  // in the payload, after the message header
  std::size_t width = 0;   // 1 (kvmi_event_reply.event) or 2 bytes
};

constexpr PayloadIdField payload_id_field(std::uint16_t v7_id) {
  using K = PayloadIdField::Kind;
  switch (static_cast<MessageId>(v7_id)) {
    case MessageId::VmCheckCommand:
      return {K::Message, offsetof(VmCheckCommand, id), 2};
    case MessageId::VmCheckEvent:
      return {K::Event, offsetof(VmCheckEvent, id), 2};
    case MessageId::VmControlEvents:
      return {K::Event, offsetof(VmControlEvents, event_id), 2};
    case MessageId::VcpuControlEvents:
      return {K::Event, sizeof(VcpuHdr) + offsetof(VcpuControlEvents, event_id), 2};
    case MessageId::EventReply:
      return {K::Event, sizeof(VcpuHdr) + offsetof(EventReply, event), 1};
    default:
      return {};
  }
}

// Reads / writes the id field of `field` in `payload`; a payload too short to hold it is left
// alone (the handlers treat missing bytes as zero, and so does the translation).
inline std::optional<std::uint16_t> read_id_field(std::span<const std::byte> payload,
                                                  const PayloadIdField& field) {
  if (field.kind == PayloadIdField::Kind::None || payload.size() < field.offset + field.width) {
    return std::nullopt;
  }
  std::uint16_t value = 0;
  std::memcpy(&value, payload.data() + field.offset, field.width);  // little-endian host
  return value;
}
inline void write_id_field(std::span<std::byte> payload, const PayloadIdField& field,
                           std::uint16_t value) {
  if (field.kind == PayloadIdField::Kind::None || payload.size() < field.offset + field.width) {
    return;
  }
  if (field.width == 1 && value > 0xff) value = 0xff;  // still unknown to both numberings
  std::memcpy(payload.data() + field.offset, &value, field.width);
}

// The PF event reply libkvmi sends: kvmi_event_reply then this 272-byte tail (dialect spec §1.2).
// v7 has no PF reply tail; glassbox cannot emulate with a tool-supplied context, so the VMM's edge
// accepts and drops it.
inline constexpr std::size_t kLibkvmiPfReplyTailSize = 272;

static_assert(wire_message_id(Dialect::Libkvmi, 10) == 7);  // VCPU_PAUSE
static_assert(v7_message_id(Dialect::Libkvmi, 17) == 7);    // READ_PHYSICAL
static_assert(!v7_message_id(Dialect::Libkvmi, 27).has_value());
static_assert(wire_event_id(Dialect::Libkvmi, 1) == 10);  // PAUSE_VCPU
static_assert(v7_event_id(Dialect::Libkvmi, 6) == 9);     // PF
static_assert(wire_event_id(Dialect::RfcV7, 9) == 9);
static_assert(payload_id_field(static_cast<std::uint16_t>(MessageId::EventReply)).offset == 9);

}  // namespace glassbox::kvmi
