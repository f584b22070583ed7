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

// A guest-physical range for `protect`: "GPA" (the page holding it), "GPA..END" (END is the
// first byte not included) or "GPA+SIZE". Sizes take the parse_size suffixes.
struct GpaRange {
  std::uint64_t start = 0;
  std::uint64_t size = 0;  // never 0
};
std::expected<GpaRange, std::string> parse_gpa_range(std::string_view text);

// Page access for KVMI_VM_SET_PAGE_ACCESS: the letters of what stays allowed, in any order
// ("r", "rx", "xr", "rwx"), "none" or "-" for nothing, or the mask as a number 0-7.
std::expected<std::uint8_t, std::string> parse_page_access(std::string_view text);
// The mask back as letters: 5 -> "r-x".
std::string page_access_letters(std::uint8_t access);

// A comma list of events for `watch`: "breakpoint,msr,pf,hypercall,singlestep,pause,trap",
// case-insensitive, also as KVMI_EVENT_* names or numbers. Returned as event ids, each once, in
// the order given. UNHOOK is VM-wide and not accepted here.
std::expected<std::vector<std::uint16_t>, std::string> parse_event_list(std::string_view text);
// The short name `watch` prints: "breakpoint", "pf", "msr", ...
std::string_view event_short_name(std::uint16_t id);

// An event reply action: "continue", "retry" or "crash" (as KVMI_EVENT_ACTION_* values 0-2).
std::expected<std::uint8_t, std::string> parse_event_action(std::string_view text);

// An MSR by index ("0xc0000082") or by name ("lstar", "efer", "kernel_gs_base", ...).
std::expected<std::uint32_t, std::string> parse_msr(std::string_view text);
// "lstar (0xc0000082)" for a named MSR, "msr 0x10" otherwise.
std::string format_msr(std::uint32_t index);

// Where to meet the VMM. Only unix sockets exist today; the scheme is kept so "vsock:" can come.
struct Endpoint {
  std::string path;
};
// "unix:/run/vm.sock" -> {"/run/vm.sock"}.
std::expected<Endpoint, std::string> parse_endpoint(std::string_view text);

}  // namespace glassbox::ctl
