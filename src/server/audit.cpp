// Rate-limited audit log of refused requests (audit.hpp). Any thread.

#include "server/audit.hpp"

#include <algorithm>

#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"

namespace xfer::server {

void Audit::refused(std::string_view who, std::string_view what, std::string_view why) {
  ++total_;
  std::uint64_t dropped_before = 0;
  {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    const double cap = per_minute_;
    if (tokens_ < 0) {
      tokens_ = cap;
    } else {
      const double minutes = std::chrono::duration<double>(now - last_).count() / 60.0;
      tokens_ = std::min(cap, tokens_ + minutes * cap);
    }
    last_ = now;
    if (tokens_ < 1) {
      ++pending_suppressed_;
      ++suppressed_total_;
      return;
    }
    tokens_ -= 1;
    dropped_before = pending_suppressed_;
    pending_suppressed_ = 0;
  }
  // Peer-supplied text is escaped: a name with a newline cannot forge a line.
  if (dropped_before > 0) {
    log().warn("refused: who={} what={} why={} ({} earlier refusals not logged)",
               printable_name(who, 120), printable_name(what, 200), printable_name(why, 300),
               dropped_before);
  } else {
    log().warn("refused: who={} what={} why={}", printable_name(who, 120),
               printable_name(what, 200), printable_name(why, 300));
  }
}

}  // namespace xfer::server
