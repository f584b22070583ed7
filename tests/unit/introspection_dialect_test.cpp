// The libkvmi dialect's id translation (spec/libkvmi-dialect.md §1.2, §6 item 2), both ways, and
// the payload fields that carry ids. The VMM's edge and the client both rely on these.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <vector>

#include "glassbox/kvmi/dialect.h"

namespace {

namespace kvmi = glassbox::kvmi;
using kvmi::Dialect;

std::uint16_t v7(kvmi::MessageId id) {
  return static_cast<std::uint16_t>(id);
}
std::uint16_t v7(kvmi::EventId id) {
  return static_cast<std::uint16_t>(id);
}

TEST(KvmiDialect, NamesParseBothWays) {
  EXPECT_EQ(kvmi::parse_dialect("rfc-v7"), Dialect::RfcV7);
  EXPECT_EQ(kvmi::parse_dialect("libkvmi"), Dialect::Libkvmi);
  EXPECT_FALSE(kvmi::parse_dialect("kvmi-v7").has_value());
  EXPECT_FALSE(kvmi::parse_dialect("").has_value());
  EXPECT_EQ(kvmi::dialect_name(Dialect::Libkvmi), "libkvmi");
  EXPECT_EQ(kvmi::dialect_name(Dialect::RfcV7), "rfc-v7");
}

// §6 item 2, message by message: libkvmi id -> v7 id.
TEST(KvmiDialect, LibkvmiMessageIdsMapToTheirV7Equivalents) {
  using M = kvmi::MessageId;
  const std::vector<std::pair<std::uint16_t, M>> expected = {
      {0, M::EventReply},           {1, M::Event},
      {2, M::GetVersion},           {3, M::VmCheckCommand},
      {4, M::VmCheckEvent},         {5, M::VmGetInfo},
      {6, M::VcpuGetInfo},          {7, M::VcpuPause},
      {8, M::VmControlEvents},      {9, M::VcpuControlEvents},
      {10, M::VcpuControlCr},       {11, M::VcpuControlMsr},
      {13, M::VcpuGetRegisters},    {14, M::VcpuSetRegisters},
      {15, M::VcpuGetCpuid},        {16, M::VcpuGetXsave},
      {17, M::VmReadPhysical},      {18, M::VmWritePhysical},
      {19, M::VcpuInjectException}, {21, M::VmSetPageAccess},
      {23, M::VcpuGetMtrrType},     {29, M::VmGetMaxGfn},
      {35, M::VcpuTranslateGva},    {63, M::VcpuControlSinglestep},
  };
  for (const auto& [wire, id] : expected) {
    EXPECT_EQ(kvmi::v7_message_id(Dialect::Libkvmi, wire), v7(id)) << "libkvmi id " << wire;
    EXPECT_EQ(kvmi::wire_message_id(Dialect::Libkvmi, v7(id)), wire) << "v7 id " << v7(id);
  }
}

TEST(KvmiDialect, EveryV7MessageHasExactlyOneLibkvmiId) {
  std::set<std::uint16_t> wire_ids;
  for (std::uint16_t id = 0; id < kvmi::kNumMessages; ++id) {
    const auto wire = kvmi::wire_message_id(Dialect::Libkvmi, id);
    ASSERT_NE(wire, kvmi::kUntranslatableId) << "v7 id " << id;
    EXPECT_EQ(kvmi::v7_message_id(Dialect::Libkvmi, wire), id) << "round trip of v7 id " << id;
    wire_ids.insert(wire);
  }
  EXPECT_EQ(wire_ids.size(), kvmi::kNumMessages) << "two v7 ids share a libkvmi id";
}

TEST(KvmiDialect, LibkvmiOnlyAndUnknownMessageIdsHaveNoV7Id) {
  // CONTROL_VE, GET/SET page bitmaps, GET_MAP_TOKEN, CONTROL_CMD_RESPONSE, #VE, EPT views, gfn
  // allocation, remote mapping, XCR/XSAVE-set, CHANGE_GFN; and ids nobody defines.
  for (std::uint16_t id : {12, 20, 22, 24, 25, 26, 27, 28, 30, 31, 32, 33,  34,    36,
                           37, 38, 39, 40, 41, 42, 43, 44, 60, 62, 64, 100, 0xffff}) {
    EXPECT_FALSE(kvmi::v7_message_id(Dialect::Libkvmi, id).has_value()) << "libkvmi id " << id;
  }
}

TEST(KvmiDialect, EventIdsBothWays) {
  using E = kvmi::EventId;
  const std::vector<std::pair<std::uint16_t, E>> expected = {
      {0, E::Unhook},     {1, E::Cr},         {2, E::Msr},         {3, E::Xsetbv},
      {4, E::Breakpoint}, {5, E::Hypercall},  {6, E::Pf},          {7, E::Trap},
      {8, E::Descriptor}, {10, E::PauseVcpu}, {11, E::Singlestep},
  };
  for (const auto& [wire, id] : expected) {
    EXPECT_EQ(kvmi::v7_event_id(Dialect::Libkvmi, wire), v7(id)) << "libkvmi event " << wire;
    EXPECT_EQ(kvmi::wire_event_id(Dialect::Libkvmi, v7(id)), wire) << "v7 event " << v7(id);
  }
  std::set<std::uint16_t> wire_ids;
  for (std::uint16_t id = 0; id < kvmi::kNumEvents; ++id) {
    wire_ids.insert(kvmi::wire_event_id(Dialect::Libkvmi, id));
  }
  EXPECT_EQ(wire_ids.size(), kvmi::kNumEvents);
  // CREATE_VCPU, CMD_ERROR, CPUID: libkvmi events glassbox never raises.
  for (std::uint16_t id : {9, 12, 13, 14, 200}) {
    EXPECT_FALSE(kvmi::v7_event_id(Dialect::Libkvmi, id).has_value()) << "libkvmi event " << id;
  }
}

TEST(KvmiDialect, RfcV7IsTheIdentity) {
  for (std::uint16_t id = 0; id < 100; ++id) {
    EXPECT_EQ(kvmi::wire_message_id(Dialect::RfcV7, id), id);
    EXPECT_EQ(kvmi::v7_message_id(Dialect::RfcV7, id), id);
    EXPECT_EQ(kvmi::wire_event_id(Dialect::RfcV7, id), id);
    EXPECT_EQ(kvmi::v7_event_id(Dialect::RfcV7, id), id);
  }
}

TEST(KvmiDialect, IdsInsidePayloadsAreFoundAtTheirOffsets) {
  using Kind = kvmi::PayloadIdField::Kind;
  auto field = kvmi::payload_id_field(v7(kvmi::MessageId::VcpuControlEvents));
  EXPECT_EQ(field.kind, Kind::Event);
  EXPECT_EQ(field.offset, 8u);
  EXPECT_EQ(field.width, 2u);
  EXPECT_EQ(kvmi::payload_id_field(v7(kvmi::MessageId::VmControlEvents)).offset, 0u);
  EXPECT_EQ(kvmi::payload_id_field(v7(kvmi::MessageId::VmCheckEvent)).kind, Kind::Event);
  EXPECT_EQ(kvmi::payload_id_field(v7(kvmi::MessageId::VmCheckCommand)).kind, Kind::Message);
  field = kvmi::payload_id_field(v7(kvmi::MessageId::EventReply));
  EXPECT_EQ(field.kind, Kind::Event);
  EXPECT_EQ(field.offset, 9u);  // kvmi_vcpu_hdr, then kvmi_event_reply.action, then .event
  EXPECT_EQ(field.width, 1u);
  EXPECT_EQ(kvmi::payload_id_field(v7(kvmi::MessageId::VmReadPhysical)).kind, Kind::None);

  // An event reply for libkvmi's PF (6) rewritten to v7's PF (9), nothing else touched.
  std::vector<std::byte> reply(16, std::byte{0});
  reply[8] = std::byte{1};  // RETRY
  reply[9] = std::byte{6};
  auto value = kvmi::read_id_field(reply, field);
  ASSERT_TRUE(value);
  EXPECT_EQ(*value, 6u);
  kvmi::write_id_field(reply, field, *kvmi::v7_event_id(Dialect::Libkvmi, *value));
  EXPECT_EQ(reply[9], std::byte{9});
  EXPECT_EQ(reply[8], std::byte{1});
  EXPECT_EQ(reply[10], std::byte{0});
  // A one-byte field cannot hold kUntranslatableId: it becomes 0xff, unknown to both.
  kvmi::write_id_field(reply, field, kvmi::kUntranslatableId);
  EXPECT_EQ(reply[9], std::byte{0xff});
  EXPECT_EQ(reply[10], std::byte{0});
  // Too short to carry the field: left alone.
  std::vector<std::byte> shorter(9, std::byte{0});
  EXPECT_FALSE(kvmi::read_id_field(shorter, field).has_value());
}

}  // namespace
