// The live progress line of cp/mv (common.hpp): laid out for the terminal's
// width at every redraw, so it never wraps and follows a resize. Pure
// formatting plus one ioctl; called by the renderer thread only.

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common.hpp"
#include "xfer/core/units.hpp"

namespace xfer::cli {
namespace {

// "1.2G", "340M", "12K", "512B": the compact sizes of a narrow line.
std::string short_bytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "K", "M", "G", "T", "P"};
  int unit = 0;
  while (bytes >= 1024.0 && unit < 5) {
    bytes /= 1024.0;
    ++unit;
  }
  if (unit == 0 || bytes >= 100) return fmt::format("{:.0f}{}", bytes, kUnits[unit]);
  return fmt::format("{:.1f}{}", bytes, kUnits[unit]);
}

// "12s", "3m04s", "2h10m": an ETA without tenths.
std::string short_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  if (seconds < 60) return fmt::format("{:.0f}s", std::ceil(seconds));
  return format_duration(seconds);
}

}  // namespace

int terminal_width(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

// The parts in order of importance; the widest layout that fits is used,
// and the bar takes what is left. One column is kept free: writing into the
// last one makes some terminals wrap.
std::string progress_line(const ProgressSnapshot& s, int width) {
  const int room = std::max(width - 1, 1);
  const bool known = s.percent >= 0;
  const std::string pct = known ? fmt::format("{:.1f}%", s.percent) : "...";
  const std::string files = s.scan_complete ? fmt::format("{}/{}", s.files_done, s.files_total)
                                            : fmt::format("{}/{}+", s.files_done, s.files_total);
  const std::string eta = s.eta_s >= 0 ? short_duration(s.eta_s) : "--";
  struct Layout {
    std::string text;
    bool bar;
  };
  const std::vector<Layout> layouts = {
      {fmt::format("{:>6} {} / {}  {}/s  files {}  ETA {}", pct,
                   format_bytes(static_cast<double>(s.bytes_done)),
                   format_bytes(static_cast<double>(s.bytes_total)), format_bytes(s.rate_bps),
                   files, eta),
       true},
      {fmt::format(
           "{:>6} {}/{} {}/s {} files ETA {}", pct, short_bytes(static_cast<double>(s.bytes_done)),
           short_bytes(static_cast<double>(s.bytes_total)), short_bytes(s.rate_bps), files, eta),
       true},
      {fmt::format("{} {}/{} {}/s ETA {}", pct, short_bytes(static_cast<double>(s.bytes_done)),
                   short_bytes(static_cast<double>(s.bytes_total)), short_bytes(s.rate_bps), eta),
       false},
      {fmt::format("{} {}/s ETA {}", pct, short_bytes(s.rate_bps), eta), false},
      {pct, false},
  };
  constexpr int kMinBar = 10;
  constexpr int kMaxBar = 40;
  for (const Layout& l : layouts) {
    const int text = static_cast<int>(l.text.size());
    if (l.bar && text + 3 + kMinBar <= room) {
      const int bar = std::min(kMaxBar, room - text - 3);
      const int filled = known ? static_cast<int>(s.percent / 100.0 * bar) : 0;
      return fmt::format("[{}{}] {}", std::string(static_cast<size_t>(filled), '#'),
                         std::string(static_cast<size_t>(bar - filled), '-'), l.text);
    }
    if (text <= room) return l.text;
  }
  return layouts.back().text.substr(0, static_cast<size_t>(room));
}

}  // namespace xfer::cli
