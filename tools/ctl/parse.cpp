#include "parse.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <limits>
#include <optional>
#include <utility>

namespace glassbox::ctl {

namespace {

char lower(char c) {
  return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::expected<std::uint64_t, std::string> parse_size(std::string_view text) {
  if (text.empty()) return std::unexpected("empty value");
  std::string_view digits = text;
  int base = 10;
  if (digits.size() >= 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    digits.remove_prefix(2);
    base = 16;
  }
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
  if (end == digits.data()) {
    return std::unexpected("'" + std::string(text) + "' is not a number");
  }
  if (ec == std::errc::result_out_of_range) {
    return std::unexpected("'" + std::string(text) + "' does not fit in 64 bits");
  }
  std::string_view suffix(end, digits.data() + digits.size() - end);
  // In hex, 'b' is a digit, so "0x1b" never reaches here with a "B" suffix; that is intended.
  static constexpr std::array<std::pair<std::string_view, unsigned>, 10> kSuffixes = {{
      {"", 0},
      {"b", 0},
      {"k", 10},
      {"kib", 10},
      {"m", 20},
      {"mib", 20},
      {"g", 30},
      {"gib", 30},
      {"t", 40},
      {"tib", 40},
  }};
  for (const auto& [name, shift] : kSuffixes) {
    if (!iequals(suffix, name)) continue;
    if (shift != 0 && value > (std::numeric_limits<std::uint64_t>::max() >> shift)) {
      return std::unexpected("'" + std::string(text) + "' does not fit in 64 bits");
    }
    return value << shift;
  }
  return std::unexpected("'" + std::string(text) + "' has an unknown suffix '" +
                         std::string(suffix) + "' (use K, M, G or T)");
}

std::expected<std::vector<std::byte>, std::string> parse_hex_bytes(std::string_view text) {
  std::vector<std::byte> out;
  int high = -1;  // the first digit of a pair waiting for its second
  std::size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    // A "0x" prefix is allowed before any pair ("0x47 0x4c") but never splits one.
    if (high < 0 && c == '0' && i + 1 < text.size() && (text[i + 1] == 'x' || text[i + 1] == 'X')) {
      i += 2;
      continue;
    }
    if (std::isspace(static_cast<unsigned char>(c)) || c == ':' || c == '_') {
      if (high >= 0) {
        return std::unexpected("a separator splits the byte at offset " + std::to_string(i - 1));
      }
      ++i;
      continue;
    }
    int digit = hex_digit(c);
    if (digit < 0) {
      return std::unexpected("'" + std::string(1, c) + "' at offset " + std::to_string(i) +
                             " is not a hex digit");
    }
    if (high < 0) {
      high = digit;
    } else {
      out.push_back(static_cast<std::byte>(high << 4 | digit));
      high = -1;
    }
    ++i;
  }
  if (high >= 0) return std::unexpected("odd number of hex digits (each byte needs two)");
  if (out.empty()) return std::unexpected("no bytes given");
  return out;
}

std::expected<std::chrono::milliseconds, std::string> parse_duration(std::string_view text) {
  if (text.empty()) return std::unexpected("empty duration");
  double value = 0;
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value, std::chars_format::fixed);
  if (end == text.data() || ec != std::errc()) {
    return std::unexpected("'" + std::string(text) + "' is not a duration");
  }
  std::string_view unit(end, text.data() + text.size() - end);
  static constexpr std::array<std::pair<std::string_view, double>, 5> kUnits = {{
      {"", 1000.0},
      {"ms", 1.0},
      {"s", 1000.0},
      {"m", 60'000.0},
      {"h", 3'600'000.0},
  }};
  for (const auto& [name, ms_per_unit] : kUnits) {
    if (!iequals(unit, name)) continue;
    const double ms = value * ms_per_unit;
    if (!(ms >= 0.0)) return std::unexpected("'" + std::string(text) + "' is negative");
    if (ms > 86'400'000.0) return std::unexpected("'" + std::string(text) + "' is over a day");
    return std::chrono::milliseconds(static_cast<std::int64_t>(ms + 0.5));
  }
  return std::unexpected("'" + std::string(text) + "' has an unknown unit '" + std::string(unit) +
                         "' (use ms, s, m or h)");
}

std::expected<GpaRange, std::string> parse_gpa_range(std::string_view text) {
  if (text.empty()) return std::unexpected("empty range");
  std::string_view first = text;
  std::string_view second;
  char kind = 0;
  if (auto dots = text.find(".."); dots != std::string_view::npos) {
    first = text.substr(0, dots);
    second = text.substr(dots + 2);
    kind = '.';
  } else if (auto plus = text.find('+'); plus != std::string_view::npos) {
    first = text.substr(0, plus);
    second = text.substr(plus + 1);
    kind = '+';
  }
  auto start = parse_size(first);
  if (!start) return std::unexpected(start.error());
  if (kind == 0) return GpaRange{*start, 1};
  auto value = parse_size(second);
  if (!value) return std::unexpected(value.error());
  if (kind == '+') {
    if (*value == 0) return std::unexpected("'" + std::string(text) + "' is an empty range");
    if (*value - 1 > ~std::uint64_t{0} - *start) {
      return std::unexpected("'" + std::string(text) + "' runs past the end of the address space");
    }
    return GpaRange{*start, *value};
  }
  if (*value <= *start) {
    return std::unexpected("'" + std::string(text) + "' ends before it starts (END is exclusive)");
  }
  return GpaRange{*start, *value - *start};
}

std::expected<std::uint8_t, std::string> parse_page_access(std::string_view text) {
  if (text.empty()) return std::unexpected("empty access");
  if (iequals(text, "none") || text == "-" || text == "---") return std::uint8_t{0};
  if (text.size() == 1 && text[0] >= '0' && text[0] <= '7') {
    return static_cast<std::uint8_t>(text[0] - '0');
  }
  std::uint8_t mask = 0;
  for (char c : text) {
    std::uint8_t bit = 0;
    switch (lower(c)) {
      case 'r':
        bit = 1;
        break;
      case 'w':
        bit = 2;
        break;
      case 'x':
        bit = 4;
        break;
      case '-':
        continue;  // "r-x" as page_access_letters prints it
      default:
        return std::unexpected("'" + std::string(text) + "' has '" + std::string(1, c) +
                               "', which is not r, w or x");
    }
    if (mask & bit) {
      return std::unexpected("'" + std::string(text) + "' names '" + std::string(1, c) + "' twice");
    }
    mask |= bit;
  }
  return mask;
}

std::string page_access_letters(std::uint8_t access) {
  std::string out = "---";
  if (access & 1) out[0] = 'r';
  if (access & 2) out[1] = 'w';
  if (access & 4) out[2] = 'x';
  return out;
}

namespace {

// Short names in event-id order (spec §3.1); "" where `watch` has no use for the id.
constexpr std::array<std::string_view, 11> kEventShortNames = {
    "unhook", "pause",      "hypercall", "breakpoint", "cr",         "trap",
    "xsetbv", "descriptor", "msr",       "pf",         "singlestep",
};

}  // namespace

std::string_view event_short_name(std::uint16_t id) {
  return id < kEventShortNames.size() ? kEventShortNames[id] : std::string_view("unknown");
}

std::expected<std::vector<std::uint16_t>, std::string> parse_event_list(std::string_view text) {
  std::vector<std::uint16_t> ids;
  if (text.empty()) return std::unexpected("no events given");
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view name = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    if (name.empty()) return std::unexpected("an empty name between commas");
    std::optional<std::uint16_t> id;
    std::string_view bare = name;
    if (bare.size() > 11 && iequals(bare.substr(0, 11), "KVMI_EVENT_")) bare.remove_prefix(11);
    for (std::uint16_t i = 0; i < kEventShortNames.size(); ++i) {
      if (iequals(bare, kEventShortNames[i])) id = i;
    }
    if (iequals(bare, "pause_vcpu") || iequals(bare, "paused")) id = 1;
    if (iequals(bare, "page") || iequals(bare, "page_fault")) id = 9;
    if (!id) {
      std::uint16_t number = 0;
      auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), number);
      if (ec == std::errc() && end == name.data() + name.size() && number < 11) id = number;
    }
    if (!id) {
      return std::unexpected("'" + std::string(name) +
                             "' is not an event (breakpoint, msr, pf, hypercall, singlestep, "
                             "pause, trap, cr, xsetbv, descriptor)");
    }
    if (*id == 0)
      return std::unexpected("'" + std::string(name) + "' is VM-wide, not a vCPU event");
    if (std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
  }
  return ids;
}

std::expected<std::uint8_t, std::string> parse_event_action(std::string_view text) {
  static constexpr std::array<std::string_view, 3> kActions = {"continue", "retry", "crash"};
  for (std::uint8_t i = 0; i < kActions.size(); ++i) {
    if (iequals(text, kActions[i])) return i;
  }
  return std::unexpected("'" + std::string(text) + "' is not an action");
}

namespace {

// MSRs worth naming on the command line; anything else is given by number.
constexpr std::array<std::pair<std::string_view, std::uint32_t>, 14> kMsrNames = {{
    {"efer", 0xc0000080},
    {"star", 0xc0000081},
    {"lstar", 0xc0000082},
    {"cstar", 0xc0000083},
    {"sfmask", 0xc0000084},
    {"fs_base", 0xc0000100},
    {"gs_base", 0xc0000101},
    {"kernel_gs_base", 0xc0000102},
    {"tsc_aux", 0xc0000103},
    {"sysenter_cs", 0x174},
    {"sysenter_esp", 0x175},
    {"sysenter_eip", 0x176},
    {"pat", 0x277},
    {"apic_base", 0x1b},
}};

}  // namespace

std::expected<std::uint32_t, std::string> parse_msr(std::string_view text) {
  for (const auto& [name, value] : kMsrNames) {
    if (iequals(text, name)) return value;
  }
  auto value = parse_size(text);
  if (!value) return std::unexpected(value.error());
  if (*value > 0xffffffffu) {
    return std::unexpected("'" + std::string(text) + "' does not fit in 32 bits");
  }
  return static_cast<std::uint32_t>(*value);
}

std::string format_msr(std::uint32_t index) {
  char hex[16];
  auto [end, ec] = std::to_chars(hex, hex + sizeof hex, index, 16);
  const std::string number = "0x" + std::string(hex, end);
  for (const auto& [name, value] : kMsrNames) {
    if (value == index) return std::string(name) + " (" + number + ")";
  }
  return "msr " + number;
}

std::expected<Endpoint, std::string> parse_endpoint(std::string_view text) {
  constexpr std::string_view kUnix = "unix:";
  if (!text.starts_with(kUnix)) {
    return std::unexpected("'" + std::string(text) + "' is not an endpoint (use unix:PATH)");
  }
  text.remove_prefix(kUnix.size());
  if (text.empty()) return std::unexpected("the socket path after 'unix:' is empty");
  // sockaddr_un::sun_path is 108 bytes including the NUL.
  if (text.size() >= 108) return std::unexpected("the socket path is longer than 107 bytes");
  return Endpoint{std::string(text)};
}

}  // namespace glassbox::ctl
