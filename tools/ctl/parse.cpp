#include "parse.h"

#include <array>
#include <cctype>
#include <charconv>
#include <limits>
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
