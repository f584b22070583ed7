// Checks of the KVMI wire ABI that static_asserts cannot express: name tables and their parse,
// error strings, and the libkvmi mapping tables being consistent both ways.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <string>

#include "glassbox/kvmi/abi.h"
#include "glassbox/kvmi/libkvmi_dialect.h"

namespace kvmi = glassbox::kvmi;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

TEST(KvmiNames, EveryMessageNameParsesBackToItsId) {
  for (std::uint16_t id = 0; id < kvmi::kNumMessages; ++id) {
    auto name = kvmi::message_name(id);
    ASSERT_TRUE(name.starts_with("KVMI_")) << id;
    auto parsed = kvmi::parse_message(name);
    ASSERT_TRUE(parsed.has_value()) << name;
    EXPECT_EQ(static_cast<std::uint16_t>(*parsed), id) << name;
    // Without the prefix and in lower case, as people type them on a command line.
    auto shortened = lower(name.substr(5));
    ASSERT_TRUE(kvmi::parse_message(shortened).has_value()) << shortened;
    EXPECT_EQ(static_cast<std::uint16_t>(*kvmi::parse_message(shortened)), id) << shortened;
  }
}

TEST(KvmiNames, MessageNamesMatchTheSpecTable) {
  EXPECT_EQ(kvmi::message_name(kvmi::MessageId::EventReply), "KVMI_EVENT_REPLY");
  EXPECT_EQ(kvmi::message_name(kvmi::MessageId::VmReadPhysical), "KVMI_VM_READ_PHYSICAL");
  EXPECT_EQ(kvmi::message_name(kvmi::MessageId::VcpuPause), "KVMI_VCPU_PAUSE");
  EXPECT_EQ(kvmi::message_name(kvmi::MessageId::VmGetMaxGfn), "KVMI_VM_GET_MAX_GFN");
  EXPECT_EQ(kvmi::message_name(kvmi::MessageId::VcpuTranslateGva), "KVMI_VCPU_TRANSLATE_GVA");
  EXPECT_EQ(kvmi::message_name(24), "unknown");
  std::set<std::string_view> unique(kvmi::kMessageNames.begin(), kvmi::kMessageNames.end());
  EXPECT_EQ(unique.size(), kvmi::kNumMessages);
}

TEST(KvmiNames, EveryEventNameParsesBackToItsIdInAllSpellings) {
  for (std::uint16_t id = 0; id < kvmi::kNumEvents; ++id) {
    auto name = kvmi::event_name(id);
    ASSERT_TRUE(name.starts_with("KVMI_EVENT_")) << id;
    for (std::string spelling :
         {std::string(name), lower(name), lower(name.substr(5)), lower(name.substr(11))}) {
      auto parsed = kvmi::parse_event(spelling);
      ASSERT_TRUE(parsed.has_value()) << spelling;
      EXPECT_EQ(static_cast<std::uint16_t>(*parsed), id) << spelling;
    }
  }
  EXPECT_EQ(kvmi::event_name(kvmi::EventId::Pf), "KVMI_EVENT_PF");
  EXPECT_EQ(kvmi::event_name(kvmi::EventId::Singlestep), "KVMI_EVENT_SINGLESTEP");
  EXPECT_EQ(kvmi::event_name(11), "unknown");
}

TEST(KvmiNames, NumericIdsParseInDecimalAndHexButOnlyInsideTheTables) {
  EXPECT_EQ(kvmi::parse_message("7"), kvmi::MessageId::VmReadPhysical);
  EXPECT_EQ(kvmi::parse_message("0x11"), kvmi::MessageId::VmGetMaxGfn);
  EXPECT_EQ(kvmi::parse_message("23"), kvmi::MessageId::VcpuTranslateGva);
  EXPECT_FALSE(kvmi::parse_message("24").has_value());
  EXPECT_FALSE(kvmi::parse_message("70000").has_value());
  EXPECT_EQ(kvmi::parse_event("9"), kvmi::EventId::Pf);
  EXPECT_EQ(kvmi::parse_event("0xa"), kvmi::EventId::Singlestep);
  EXPECT_FALSE(kvmi::parse_event("11").has_value());
}

TEST(KvmiNames, GarbageAndPartialNamesAreRefused) {
  for (const char* bad : {"", "KVMI_", "READ_PHYSICAL", "vm_read_physical_", "7x", "0x", "-1", " 7",
                          "KVMI_VM_READ_PHYSICALS"}) {
    EXPECT_FALSE(kvmi::parse_message(bad).has_value()) << '"' << bad << '"';
  }
  for (const char* bad : {"", "EVENT_", "P", "pff", "KVMI_EVENT_", "unhookx"}) {
    EXPECT_FALSE(kvmi::parse_event(bad).has_value()) << '"' << bad << '"';
  }
}

TEST(KvmiNames, ActionsRoundTrip) {
  for (std::uint8_t a = 0; a < 3; ++a) {
    auto parsed = kvmi::parse_action(kvmi::action_name(a));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(static_cast<std::uint8_t>(*parsed), a);
  }
  EXPECT_EQ(kvmi::parse_action("retry"), kvmi::EventAction::Retry);
  EXPECT_EQ(kvmi::action_name(kvmi::EventAction::Crash), "KVMI_EVENT_ACTION_CRASH");
  EXPECT_FALSE(kvmi::parse_action("3").has_value());
}

TEST(KvmiErrors, WireValuesAndNamesFollowSpecSection4) {
  EXPECT_EQ(kvmi::to_wire(kvmi::Errno::Perm), -1);
  EXPECT_EQ(kvmi::to_wire(kvmi::Errno::NoEnt), -2);
  EXPECT_EQ(kvmi::to_wire(kvmi::Errno::TooBig), -7);
  EXPECT_EQ(kvmi::to_wire(kvmi::Errno::Again), -11);
  EXPECT_EQ(kvmi::to_wire(kvmi::Errno::NoMem), -12);
  EXPECT_EQ(kvmi::to_wire(kvmi::Errno::Fault), -14);
  EXPECT_EQ(kvmi::to_wire(kvmi::Errno::Busy), -16);
  EXPECT_EQ(kvmi::to_wire(kvmi::Errno::Inval), -22);
  EXPECT_EQ(kvmi::to_wire(kvmi::Errno::OpNotSupp), -95);
  EXPECT_EQ(kvmi::to_wire(kvmi::Errno::NoSys), -1000);
  EXPECT_EQ(kvmi::error_name(-1000), "-KVM_ENOSYS");
  EXPECT_EQ(kvmi::error_name(kvmi::Errno::Inval), "-KVM_EINVAL");
  EXPECT_EQ(kvmi::error_name(0), "OK");
  EXPECT_EQ(kvmi::error_name(-3), "unknown error");
}

TEST(KvmiErrors, EveryErrnoHasADistinctNameAndDescriptionAndRoundTrips) {
  std::set<std::string_view> names, descriptions;
  for (kvmi::Errno e : kvmi::kAllErrnos) {
    auto name = kvmi::error_name(e);
    EXPECT_TRUE(name.starts_with("-KVM_E")) << name;
    names.insert(name);
    descriptions.insert(kvmi::error_description(e));
    EXPECT_EQ(kvmi::errno_from_wire(kvmi::to_wire(e)), e);
  }
  EXPECT_EQ(names.size(), std::size(kvmi::kAllErrnos));
  EXPECT_EQ(descriptions.size(), std::size(kvmi::kAllErrnos));
  EXPECT_FALSE(kvmi::errno_from_wire(0).has_value());
  EXPECT_FALSE(kvmi::errno_from_wire(22).has_value());  // positive values never travel
}

TEST(KvmiIds, ScopesFollowTheSpecTable) {
  using S = kvmi::MessageScope;
  EXPECT_EQ(kvmi::message_scope(0), S::EventReply);
  EXPECT_EQ(kvmi::message_scope(1), S::Event);
  EXPECT_EQ(kvmi::message_scope(10), S::VcpuPause);
  int vm = 0, vcpu = 0;
  for (std::uint16_t id = 2; id < kvmi::kNumMessages; ++id) {
    auto scope = kvmi::message_scope(id);
    bool named_vm = kvmi::message_name(id).starts_with("KVMI_VM_") || id == 2;
    if (scope == S::Vm) ++vm;
    if (scope == S::Vcpu || scope == S::VcpuPause) ++vcpu;
    EXPECT_EQ(scope == S::Vm, named_vm) << kvmi::message_name(id);
  }
  EXPECT_EQ(vm, 9);
  EXPECT_EQ(vcpu, 13);
  EXPECT_EQ(kvmi::message_scope(24), S::Unknown);
  EXPECT_EQ(kvmi::message_scope(0xffff), S::Unknown);
}

TEST(KvmiIds, OnlyTheDiscoveryCommandsAreAlwaysAllowed) {
  int count = 0;
  for (std::uint16_t id = 0; id < kvmi::kNumMessages; ++id) {
    if (kvmi::is_always_allowed(static_cast<kvmi::MessageId>(id))) ++count;
  }
  EXPECT_EQ(count, 3);
  EXPECT_TRUE(kvmi::is_always_allowed(kvmi::MessageId::VmCheckEvent));
}

TEST(KvmiIds, MsrRangesAreInclusiveAndCrsAreZeroThreeFour) {
  EXPECT_TRUE(kvmi::is_controllable_msr(0));
  EXPECT_TRUE(kvmi::is_controllable_msr(0x1fff));
  EXPECT_FALSE(kvmi::is_controllable_msr(0x2000));
  EXPECT_FALSE(kvmi::is_controllable_msr(0xbfffffff));
  EXPECT_TRUE(kvmi::is_controllable_msr(0xc0000000));
  EXPECT_TRUE(kvmi::is_controllable_msr(0xc0000082));  // LSTAR
  EXPECT_TRUE(kvmi::is_controllable_msr(0xc0001fff));
  EXPECT_FALSE(kvmi::is_controllable_msr(0xc0002000));
  for (std::uint32_t cr = 0; cr < 9; ++cr) {
    EXPECT_EQ(kvmi::is_controllable_cr(cr), cr == 0 || cr == 3 || cr == 4) << cr;
  }
}

TEST(KvmiEvents, ActionsAllowedPerEventFollowSpecSection3_1) {
  using A = kvmi::EventAction;
  for (std::uint16_t id = 1; id < kvmi::kNumEvents; ++id) {
    auto e = static_cast<kvmi::EventId>(id);
    EXPECT_TRUE(kvmi::event_accepts_action(e, A::Continue));
    EXPECT_TRUE(kvmi::event_accepts_action(e, A::Crash));
    EXPECT_TRUE(kvmi::event_expects_reply(e));
  }
  EXPECT_FALSE(kvmi::event_expects_reply(kvmi::EventId::Unhook));
  std::set<kvmi::EventId> retry;
  for (std::uint16_t id = 0; id < kvmi::kNumEvents; ++id) {
    auto e = static_cast<kvmi::EventId>(id);
    if (kvmi::event_accepts_action(e, A::Retry)) retry.insert(e);
  }
  EXPECT_EQ(retry,
            (std::set{kvmi::EventId::Breakpoint, kvmi::EventId::Descriptor, kvmi::EventId::Pf}));
}

TEST(KvmiStructs, ValueInitialisedStructsPutOnlyZerosOnTheWire) {
  // Paddings are explicit members, so `T{}` is the all-zero encoding the VMM requires (§1.7).
  auto all_zero = [](const auto& v) {
    const auto* p = reinterpret_cast<const unsigned char*>(&v);
    for (std::size_t i = 0; i < sizeof(v); ++i) {
      if (p[i] != 0) return false;
    }
    return true;
  };
  EXPECT_TRUE(all_zero(kvmi::VcpuHdr{}));
  EXPECT_TRUE(all_zero(kvmi::EventReply{}));
  EXPECT_TRUE(all_zero(kvmi::PageAccessEntry{}));
  EXPECT_TRUE(all_zero(kvmi::Event{}));
  EXPECT_TRUE(all_zero(kvmi::VmHello{}));
}

TEST(KvmiStructs, HeaderEncodesLittleEndianAsTheSpecShows) {
  kvmi::MsgHdr hdr{7, 16, 0x01020304};
  unsigned char bytes[8];
  std::memcpy(bytes, &hdr, sizeof(bytes));
  const unsigned char expected[8] = {7, 0, 16, 0, 4, 3, 2, 1};
  EXPECT_EQ(std::memcmp(bytes, expected, 8), 0);
}

TEST(LibkvmiDialect, MappingsAreOneToOneAndInvertible) {
  namespace lk = glassbox::kvmi::libkvmi;
  std::set<std::uint16_t> from, to;
  for (const auto& m : lk::kMessageMap) {
    auto libkvmi_id = static_cast<std::uint16_t>(m.libkvmi);
    from.insert(libkvmi_id);
    to.insert(static_cast<std::uint16_t>(m.v7));
    EXPECT_EQ(lk::to_v7(libkvmi_id), m.v7);
    EXPECT_EQ(lk::from_v7(m.v7), libkvmi_id);
  }
  EXPECT_EQ(from.size(), lk::kMessageMap.size());
  // Every v7 message has a libkvmi spelling.
  EXPECT_EQ(to.size(), kvmi::kNumMessages);

  std::set<std::uint16_t> events;
  for (const auto& m : lk::kEventMap) {
    events.insert(static_cast<std::uint16_t>(m.v7));
    EXPECT_EQ(lk::event_to_v7(static_cast<std::uint16_t>(m.libkvmi)), m.v7);
    EXPECT_EQ(lk::event_from_v7(m.v7), static_cast<std::uint16_t>(m.libkvmi));
  }
  EXPECT_EQ(events.size(), kvmi::kNumEvents);
  EXPECT_FALSE(lk::event_to_v7(9).has_value());   // CREATE_VCPU
  EXPECT_FALSE(lk::event_to_v7(13).has_value());  // CPUID
}

}  // namespace
