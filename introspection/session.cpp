#include "introspection/session.h"

#include "glassbox/kvmi/events.h"

namespace glassbox::introspection {

Session::Session(UniqueFd fd, VmTarget& vm, Permissions permissions,
                 std::atomic<std::uint32_t>& event_seq, kvmi::Dialect dialect)
    : channel_(std::move(fd), dialect), vm_(vm), permissions_(permissions), event_seq_(event_seq) {
  for (std::uint32_t i = 0; i < vm.vcpu_count(); ++i) {
    vcpus_.push_back(std::make_unique<VcpuIntrospection>());
  }
}

bool Session::vm_event_enabled(kvmi::EventId event) const {
  return (vm_events_.load(std::memory_order_acquire) >> static_cast<unsigned>(event)) & 1u;
}

void Session::set_vm_event_enabled(kvmi::EventId event, bool enable) {
  const std::uint32_t bit = 1u << static_cast<unsigned>(event);
  if (enable) {
    vm_events_.fetch_or(bit, std::memory_order_acq_rel);
  } else {
    vm_events_.fetch_and(~bit, std::memory_order_acq_rel);
  }
}

std::expected<bool, int> Session::send_unhook_event() {
  if (!vm_event_enabled(kvmi::EventId::Unhook) ||
      !permissions_.allows_event(static_cast<std::uint16_t>(kvmi::EventId::Unhook))) {
    return false;
  }
  // A VM event: vcpu 0 and an all-zero arch part (spec §3.2).
  kvmi::Event event{};
  event.size = sizeof(kvmi::Event);
  event.vcpu = 0;
  event.event = static_cast<std::uint8_t>(kvmi::EventId::Unhook);
  auto sent = channel_.send(static_cast<std::uint16_t>(kvmi::MessageId::Event), next_event_seq(),
                            {bytes_of(event)});
  if (!sent) return std::unexpected(sent.error());
  return true;
}

void Session::close(const std::string& reason) {
  {
    std::lock_guard lock(close_mutex_);
    if (close_reason_.empty()) close_reason_ = reason;
    closed_.store(true, std::memory_order_release);
  }
  channel_.shutdown();
}

std::string Session::close_reason() const {
  std::lock_guard lock(close_mutex_);
  return close_reason_;
}

}  // namespace glassbox::introspection
