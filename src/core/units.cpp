// Sizes and rates as text and back ("4M", "1.5 GiB/s") (units.hpp). Pure
// functions.

#include "xfer/core/units.hpp"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

namespace xfer {
namespace {

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  return s;
}

}  // namespace

Result<std::uint64_t> parse_size(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return make_error(ErrorCode::kInvalidArgument, "parse size", text, why);
  };
  std::string_view s = trimmed(text);
  if (s.empty()) return bad("empty size");
  double number = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), number);
  if (ec != std::errc{} || !std::isfinite(number)) return bad("not a number");
  if (number < 0) return bad("negative size");
  std::string_view suffix(p, static_cast<size_t>(s.data() + s.size() - p));
  while (!suffix.empty() && std::isspace(static_cast<unsigned char>(suffix.front()))) {
    suffix.remove_prefix(1);
  }
  double mult = 1;
  if (!suffix.empty()) {
    switch (std::toupper(static_cast<unsigned char>(suffix[0]))) {
      case 'B':
        mult = 1;
        break;
      case 'K':
        mult = 1024.0;
        break;
      case 'M':
        mult = 1024.0 * 1024;
        break;
      case 'G':
        mult = 1024.0 * 1024 * 1024;
        break;
      case 'T':
        mult = 1024.0 * 1024 * 1024 * 1024;
        break;
      default:
        return bad("unknown unit (use K, M, G or T)");
    }
    const char unit = static_cast<char>(std::toupper(static_cast<unsigned char>(suffix[0])));
    std::string_view tail = suffix.substr(1);
    bool tail_ok = tail.empty() ||
                   (unit != 'B' && (tail == "B" || tail == "b" || tail == "iB" || tail == "ib"));
    if (!tail_ok) return bad("unknown unit (use K, M, G or T)");
  }
  double v = number * mult;
  if (v >= static_cast<double>(std::numeric_limits<std::uint64_t>::max())) return bad("too large");
  return static_cast<std::uint64_t>(v);
}

Result<std::uint64_t> parse_rate(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return make_error(ErrorCode::kInvalidArgument, "parse rate", text, why);
  };
  std::string_view s = trimmed(text);
  if (s.ends_with("/s")) s.remove_suffix(2);
  if (s.empty()) return bad("empty rate");
  double number = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), number);
  if (ec != std::errc{} || !std::isfinite(number)) return bad("not a number");
  if (number < 0) return bad("negative rate");
  std::string unit(p, static_cast<size_t>(s.data() + s.size() - p));
  while (!unit.empty() && std::isspace(static_cast<unsigned char>(unit.front()))) unit.erase(0, 1);
  if (unit.empty()) {
    // rsync and rclone: a bare number is KiB/s.
    const double v = number * 1024.0;
    if (v >= static_cast<double>(std::numeric_limits<std::uint64_t>::max()))
      return bad("too large");
    return static_cast<std::uint64_t>(v);
  }
  std::string lower = unit;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (std::string_view bits : {"bit", "bps"}) {
    if (!lower.ends_with(bits)) continue;
    const std::string prefix = lower.substr(0, lower.size() - bits.size());
    double mult = 0;
    if (prefix.empty()) mult = 1;
    if (prefix == "k") mult = 1e3;
    if (prefix == "m") mult = 1e6;
    if (prefix == "g") mult = 1e9;
    if (prefix == "t") mult = 1e12;
    if (mult == 0) return bad("unknown unit (use kbit, Mbit, Gbit or Tbit)");
    const double v = number * mult / 8.0;
    if (v >= static_cast<double>(std::numeric_limits<std::uint64_t>::max()))
      return bad("too large");
    return static_cast<std::uint64_t>(v);
  }
  if (unit.size() == 2 && unit[1] == 'b') {
    const std::string number_text(s.data(), p);
    return bad(fmt::format("\"{}{}\" is ambiguous: write {}{} for bytes or {}{}bit for bits",
                           number_text, unit, number_text, unit[0], number_text, unit[0]));
  }
  auto bytes = parse_size(s);
  if (!bytes) return bad(bytes.error().detail);
  return *bytes;
}

std::string format_bytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int unit = 0;
  while (bytes >= 1024.0 && unit < 5) {
    bytes /= 1024.0;
    ++unit;
  }
  if (unit == 0) return fmt::format("{:.0f} B", bytes);
  return fmt::format("{:.1f} {}", bytes, kUnits[unit]);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  if (seconds < 60) return fmt::format("{:.1f}s", seconds);
  auto total = static_cast<long long>(seconds + 0.5);
  if (total < 3600) return fmt::format("{}m{:02}s", total / 60, total % 60);
  return fmt::format("{}h{:02}m", total / 3600, (total % 3600) / 60);
}

}  // namespace xfer
