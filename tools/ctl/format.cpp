#include "format.h"

#include <fmt/format.h>

#include <ctime>

namespace glassbox::ctl {

std::string hex_dump(std::uint64_t gpa, std::span<const std::byte> bytes) {
  std::string out;
  if (bytes.empty()) return out;
  const std::uint64_t first_line = gpa & ~std::uint64_t{15};
  const std::uint64_t end = gpa + bytes.size();
  for (std::uint64_t line = first_line; line < end; line += 16) {
    std::string hex;
    std::string ascii;
    for (std::uint64_t a = line; a < line + 16; ++a) {
      if (a - line == 8) hex += ' ';
      if (a >= end) {
        hex += "   ";
        continue;  // the ASCII column ends with the data, as in hexdump -C
      }
      if (a < gpa) {
        // Leading gaps keep every byte in the column of its address.
        hex += "   ";
        ascii += ' ';
        continue;
      }
      auto b = std::to_integer<unsigned>(bytes[a - gpa]);
      hex += fmt::format("{:02x} ", b);
      ascii += (b >= 0x20 && b < 0x7f) ? static_cast<char>(b) : '.';
    }
    hex.pop_back();  // the trailing space before the ASCII column
    out += fmt::format("{:016x}  {}  |{}|\n", line, hex, ascii);
  }
  return out;
}

std::string to_hex(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::byte b : bytes) {
    auto v = std::to_integer<unsigned>(b);
    out += kDigits[v >> 4];
    out += kDigits[v & 15];
  }
  return out;
}

std::string format_bytes(std::uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string format_rate(std::uint64_t bytes, double seconds) {
  if (seconds <= 0.0) return "- MB/s";
  return fmt::format("{:.1f} MB/s", static_cast<double>(bytes) / seconds / 1e6);
}

std::string format_uuid(std::span<const std::uint8_t, 16> u) {
  return fmt::format(
      "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-"
      "{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
      u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
      u[15]);
}

std::string format_epoch_ms(std::int64_t ms) {
  std::int64_t seconds = ms / 1000;
  std::int64_t millis = ms % 1000;
  if (millis < 0) {  // keep the fraction positive for times before the epoch
    millis += 1000;
    seconds -= 1;
  }
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return fmt::format("{} ms", ms);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

}  // namespace glassbox::ctl
