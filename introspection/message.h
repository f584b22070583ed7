// A message the receiving thread has read: its header and its payload.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <expected>
#include <span>
#include <string>

#include "glassbox/kvmi/messages.h"

namespace glassbox::introspection {

struct IncomingMessage {
  kvmi::MsgHdr hdr{};
  std::span<const std::byte> payload;  // exactly hdr.size bytes

  // The structure at `offset`. A payload shorter than the structure is not an error: the missing
  // bytes read as zero, as on v7 (spec §1.6 "corner cases"); extra bytes are ignored.
  template <typename T>
  T read_as(std::size_t offset = 0) const {
    T value{};
    if (offset < payload.size()) {
      std::memcpy(&value, payload.data() + offset, std::min(sizeof(T), payload.size() - offset));
    }
    return value;
  }
};

// What a handler returns: nothing, or why the connection must close (spec §1.5 step 7).
using HandlerResult = std::expected<void, std::string>;

}  // namespace glassbox::introspection
