// Guest-physical ranges of any length over KVMI's one-page-per-message reads and writes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "glassbox/client/error.h"
#include "glassbox/client/session.h"

namespace glassbox::ctl {

// How many READ_PHYSICAL requests `read_range` keeps in flight by default: enough to hide the
// round trip behind the VMM's copy, small enough to stay far from any socket buffer limit.
inline constexpr std::size_t kDefaultReadWindow = 64;

// Called once per chunk, in address order; a failure stops the read and is returned.
using ChunkSink =
    std::function<client::Result<void>(std::uint64_t gpa, std::span<const std::byte>)>;

// Reads [gpa, gpa + size) as page-bounded chunks (at most 4 KiB, never crossing a page), keeping
// up to `window` requests in flight. An error names the GPA of the chunk that failed.
client::Result<void> read_range(client::Session& session, std::uint64_t gpa, std::uint64_t size,
                                std::size_t window, const ChunkSink& sink);

// Writes `data` at `gpa` as page-bounded WRITE_PHYSICAL commands, one at a time so that a
// failure leaves everything before the failing GPA written and nothing after it.
client::Result<void> write_range(client::Session& session, std::uint64_t gpa,
                                 std::span<const std::byte> data);

}  // namespace glassbox::ctl
