// Text renderings glassbox-ctl prints: hex dumps, hex strings, byte counts, rates, ids, times.
// Pure functions, so unit tests pin the exact output scripts may depend on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace glassbox::ctl {

// The canonical 16-bytes-per-line dump, addressed by guest-physical address:
//   0000000000007000  47 4c 41 53 53 42 4f 58  01 00 00 00 00 00 00 00  |GLASSBOX........|
// A start that is not 16-aligned is padded on the first line so columns stay aligned to GPAs;
// the ASCII column of the last line ends with the data ("|GLASSBOX|").
std::string hex_dump(std::uint64_t gpa, std::span<const std::byte> bytes);

// Lower-case hex without separators ("474c"), as JSON carries it.
std::string to_hex(std::span<const std::byte> bytes);

// 1536 -> "1.5 KiB"; below 1 KiB the exact count ("512 B").
std::string format_bytes(std::uint64_t bytes);
// Bytes per second in decimal megabytes, the unit benchmarks compare ("123.4 MB/s").
std::string format_rate(std::uint64_t bytes, double seconds);

// RFC 4122 text form, lower case.
std::string format_uuid(std::span<const std::uint8_t, 16> uuid);
// Milliseconds since the epoch -> "2026-11-29T23:34:12.345Z".
std::string format_epoch_ms(std::int64_t ms);

}  // namespace glassbox::ctl
