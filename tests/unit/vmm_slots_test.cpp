// The slot layout behind KVMI page access (vmm/guest_memory.cpp), against a fake KVM that keeps
// the slots and enforces what KVM_SET_USER_MEMORY_REGION enforces (no overlap, no resize).
#include <gtest/gtest.h>

#include <map>

#include "vmm/guest_memory.h"

namespace {

using glassbox::vmm::GuestMemory;
using glassbox::vmm::SlotKind;
using glassbox::vmm::SlotSpan;

constexpr std::uint64_t kPages = 256;
constexpr std::uint8_t kR = 1, kW = 2, kX = 4, kRwx = 7;

class FakeKvm {
 public:
  explicit FakeKvm(std::uint32_t fail_after = ~0u) : fail_after_(fail_after) {}
  int write(const kvm_userspace_memory_region& r) {
    ++calls;
    if (calls > fail_after_) return -EFAULT;
    if (r.memory_size == 0) {
      if (slots.erase(r.slot) != 1) return -EINVAL;
      return 0;
    }
    if (slots.contains(r.slot)) return -EINVAL;  // resizing or moving is refused
    for (const auto& [id, s] : slots) {
      if (r.guest_phys_addr < s.guest_phys_addr + s.memory_size &&
          s.guest_phys_addr < r.guest_phys_addr + r.memory_size) {
        return -EEXIST;
      }
    }
    slots[r.slot] = r;
    return 0;
  }
  GuestMemory::SlotWriter writer() {
    return [this](const kvm_userspace_memory_region& r) { return write(r); };
  }
  // The kind KVM gives `gfn`.
  SlotKind kind(std::uint64_t gfn) const {
    for (const auto& [id, s] : slots) {
      if (gfn * 4096 >= s.guest_phys_addr && gfn * 4096 < s.guest_phys_addr + s.memory_size) {
        return (s.flags & KVM_MEM_READONLY) ? SlotKind::kReadOnly : SlotKind::kNormal;
      }
    }
    return SlotKind::kNone;
  }

  std::map<std::uint32_t, kvm_userspace_memory_region> slots;
  std::uint32_t calls = 0;

 private:
  std::uint32_t fail_after_;
};

class Slots : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create(kPages * 4096);
    ASSERT_TRUE(m);
    mem_ = std::make_unique<GuestMemory>(std::move(*m));
    ASSERT_EQ(mem_->register_slots(kvm_.writer(), 32), 0);
  }
  // The fake KVM, the layout map and the expected kind of every frame agree.
  void expect_consistent(const std::map<std::uint64_t, SlotKind>& expected) {
    for (std::uint64_t g = 0; g < kPages; ++g) {
      auto it = expected.find(g);
      const SlotKind want = it == expected.end() ? SlotKind::kNormal : it->second;
      ASSERT_EQ(kvm_.kind(g), want) << "frame " << g;
      ASSERT_EQ(mem_->current_kind(g), want) << "frame " << g;
    }
    auto layout = mem_->slot_layout();
    std::uint64_t at = 0;
    for (std::size_t i = 0; i < layout.size(); ++i) {
      EXPECT_EQ(layout[i].first_gfn, at);
      at = layout[i].end_gfn;
      if (i > 0) {
        EXPECT_NE(layout[i].kind, layout[i - 1].kind) << "adjacent spans not merged";
      }
      EXPECT_EQ(layout[i].slot == SlotSpan::kNoSlot, layout[i].kind == SlotKind::kNone);
    }
    EXPECT_EQ(at, kPages);
    std::size_t with_slot = 0;
    for (const auto& s : layout) with_slot += s.slot != SlotSpan::kNoSlot;
    EXPECT_EQ(with_slot, kvm_.slots.size());
  }

  FakeKvm kvm_;
  std::unique_ptr<GuestMemory> mem_;
};

TEST(SlotKindOf, ClassesFollowTheAllowedAccesses) {
  EXPECT_EQ(glassbox::vmm::slot_kind(kRwx), SlotKind::kNormal);
  EXPECT_EQ(glassbox::vmm::slot_kind(kR | kX), SlotKind::kReadOnly);
  EXPECT_EQ(glassbox::vmm::slot_kind(kR | kW), SlotKind::kNone);
  EXPECT_EQ(glassbox::vmm::slot_kind(kW | kX), SlotKind::kNone);
  EXPECT_EQ(glassbox::vmm::slot_kind(0), SlotKind::kNone);
  EXPECT_EQ(glassbox::vmm::slot_kind(kR), SlotKind::kNone);
}

TEST_F(Slots, OneWriteProtectedFrameSplitsTheSlotInThree) {
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), 100, kR | kX), 0);
  expect_consistent({{100, SlotKind::kReadOnly}});
  EXPECT_EQ(mem_->slot_layout().size(), 3u);
  EXPECT_EQ(mem_->page_access(100), kR | kX);
  EXPECT_EQ(mem_->page_access(101), kRwx);
}

TEST_F(Slots, AdjacentFramesOfOneKindShareASlotAndForgettingMerges) {
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), 10, kR | kX), 0);
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), 11, kR | kX), 0);
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), 12, kW), 0);
  expect_consistent({{10, SlotKind::kReadOnly}, {11, SlotKind::kReadOnly}, {12, SlotKind::kNone}});
  EXPECT_EQ(mem_->slot_layout().size(), 4u);  // [0,10) [10,12) ro, [12] none, [13,end)
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), 12, kRwx), 0);
  expect_consistent({{10, SlotKind::kReadOnly}, {11, SlotKind::kReadOnly}});
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), 10, kRwx), 0);
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), 11, kRwx), 0);
  expect_consistent({});
  EXPECT_EQ(mem_->slot_layout().size(), 1u);
  EXPECT_EQ(kvm_.slots.size(), 1u);
}

TEST_F(Slots, FirstAndLastFramesAndAChangeWithinOneKindCostNothing) {
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), 0, 0), 0);
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), kPages - 1, kR | kX), 0);
  expect_consistent({{0, SlotKind::kNone}, {kPages - 1, SlotKind::kReadOnly}});
  const auto calls = kvm_.calls;
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), 0, kW | kX), 0);  // still in no slot
  EXPECT_EQ(kvm_.calls, calls);
  EXPECT_EQ(mem_->page_access(0), kW | kX);
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), kPages + 5, 0), 0);  // outside RAM: ignored
  EXPECT_EQ(kvm_.calls, calls);
}

TEST_F(Slots, RunningOutOfSlotsAnswersEnomemAndKeepsTheLayout) {
  // 32 slots: every other frame write-protected needs 2k+1 slots.
  int ok = 0;
  int last = 0;
  for (std::uint64_t g = 1; g < kPages; g += 2) {
    last = mem_->set_page_access(kvm_.writer(), g, kR | kX);
    if (last != 0) break;
    ++ok;
  }
  EXPECT_EQ(last, -ENOMEM);
  EXPECT_EQ(ok, 15);
  EXPECT_LE(kvm_.slots.size(), 32u);
  std::map<std::uint64_t, SlotKind> expected;
  for (int i = 0; i < ok; ++i) expected[1 + 2 * i] = SlotKind::kReadOnly;
  expect_consistent(expected);
  EXPECT_EQ(mem_->page_access(1 + 2 * ok), kRwx) << "a refused entry is not recorded";
  // A frame in no slot needs no slot itself: splitting off it costs one more, which still fits.
  EXPECT_EQ(mem_->set_page_access(kvm_.writer(), 2 * ok + 1, 0), 0);
  expected[2 * ok + 1] = SlotKind::kNone;
  expect_consistent(expected);
  EXPECT_EQ(kvm_.slots.size(), 32u);
  // Clearing restores one plain slot, reusing freed ids.
  mem_->clear_page_access(kvm_.writer());
  expect_consistent({});
  EXPECT_EQ(kvm_.slots.size(), 1u);
  EXPECT_EQ(mem_->restricted_count(), 0u);
}

TEST_F(Slots, AKvmFailureHalfWayRestoresThePreviousLayout) {
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), 50, kR | kX), 0);
  FakeKvm& kvm = kvm_;
  int call = 0;  // the delete and the first create succeed, the second create fails
  auto failing = [&](const kvm_userspace_memory_region& r) {
    if (++call == 3) return -EFAULT;
    return kvm.write(r);
  };
  EXPECT_EQ(mem_->set_page_access(failing, 150, kR | kX), -EFAULT);
  expect_consistent({{50, SlotKind::kReadOnly}});
  EXPECT_EQ(mem_->page_access(150), kRwx);
}

TEST_F(Slots, ALiftGivesTheFrameASlotAndRelockRestoresIt) {
  ASSERT_EQ(mem_->set_page_access(kvm_.writer(), 20, kR | kW), 0);
  expect_consistent({{20, SlotKind::kNone}});
  ASSERT_EQ(mem_->lift_page(kvm_.writer(), 20), 0);
  ASSERT_EQ(mem_->lift_page(kvm_.writer(), 20), 0);  // nested: counted
  expect_consistent({});
  EXPECT_EQ(mem_->page_access(20), kR | kW) << "a lift does not change the restriction";
  mem_->relock_page(kvm_.writer(), 20);
  expect_consistent({});
  mem_->relock_page(kvm_.writer(), 20);
  expect_consistent({{20, SlotKind::kNone}});
  // A lift outlives clear_page_access (unhook during a step); its relock then restores nothing.
  ASSERT_EQ(mem_->lift_page(kvm_.writer(), 20), 0);
  mem_->clear_page_access(kvm_.writer());
  mem_->relock_page(kvm_.writer(), 20);
  expect_consistent({});
}

}  // namespace
