// Parsing of glassbox-ctl's command-line values: addresses, sizes, hex byte strings, endpoints.
//
// Every parser returns the reason for a refusal so the CLI can name the argument and the fix;
// nothing here throws.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace glassbox::ctl {

// "0x7000", "28672", "4K", "16M", "1G", "0x10k", "2MiB". Suffixes are binary (K = 1024) and
// case-insensitive; a value that does not fit in 64 bits is refused.
std::expected<std::uint64_t, std::string> parse_size(std::string_view text);

// "474c415353", "0x47 4c", "47:4c:41" -> bytes. Whitespace, ':' and '_' between byte pairs are
// ignored so pasted hex dumps work; an odd digit count is refused rather than guessed.
std::expected<std::vector<std::byte>, std::string> parse_hex_bytes(std::string_view text);

// "1s", "500ms", "1.5s", "2m", "1h", or a bare number of seconds ("10"). Negative values and
// values beyond a day are refused.
std::expected<std::chrono::milliseconds, std::string> parse_duration(std::string_view text);

// Where to meet the VMM. Only unix sockets exist today; the scheme is kept so "vsock:" can come.
struct Endpoint {
  std::string path;
};
// "unix:/run/vm.sock" -> {"/run/vm.sock"}.
std::expected<Endpoint, std::string> parse_endpoint(std::string_view text);

}  // namespace glassbox::ctl
