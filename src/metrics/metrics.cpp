// Progress snapshots of TransferCounters (metrics.hpp). Reads relaxed
// atomics that workers update: any thread, no lock.

#include "xfer/metrics/metrics.hpp"

#include <algorithm>

namespace xfer {

ProgressMeter::ProgressMeter(const TransferCounters& counters)
    : counters_(counters), start_(Clock::now()) {
  window_.push_back({start_, 0, 0});
}

ProgressSnapshot ProgressMeter::sample() {
  auto now = Clock::now();
  ProgressSnapshot s;
  auto rd = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s.elapsed_s = std::chrono::duration<double>(now - start_).count();
  const std::uint64_t moved = rd(counters_.bytes_done);
  s.bytes_done = moved + rd(counters_.bytes_resumed) + rd(counters_.bytes_unchanged);
  s.bytes_total = rd(counters_.bytes_total);
  s.files_done = rd(counters_.files_done);
  s.files_total = rd(counters_.files_total);
  s.files_failed = rd(counters_.files_failed);
  s.retries = rd(counters_.retries);
  s.scan_complete = counters_.scan_complete.load(std::memory_order_relaxed);

  // The window: drop samples older than kWindow but keep the newest of
  // those as its start, so the span is kWindow once the copy is that old.
  window_.push_back({now, moved, s.files_done});
  while (window_.size() > 2 && now - window_[1].at >= kWindow) window_.pop_front();
  const Point& from = window_.front();
  const double span = std::chrono::duration<double>(now - from.at).count();
  double rate = 0;
  double files_rate = 0;
  if (span > 0.1) {
    // bytes_done drops back when a file is retried: never a negative rate.
    rate = static_cast<double>(moved - std::min(moved, from.moved)) / span;
    files_rate = static_cast<double>(s.files_done - std::min(s.files_done, from.files)) / span;
  }
  s.rate_bps = rate;
  s.files_per_s = files_rate;

  if (s.scan_complete && s.files_total > 0) {
    bool sizes_known = rd(counters_.files_opened) + rd(counters_.files_skipped) >= s.files_total;
    if (sizes_known && s.bytes_total > 0) {
      s.percent = 100.0 * static_cast<double>(s.bytes_done) / static_cast<double>(s.bytes_total);
      if (rate > 0)
        s.eta_s = static_cast<double>(s.bytes_total - std::min(s.bytes_total, s.bytes_done)) / rate;
    } else {
      s.percent = 100.0 * static_cast<double>(s.files_done) / static_cast<double>(s.files_total);
      if (files_rate > 0) {
        s.eta_s =
            static_cast<double>(s.files_total - std::min(s.files_total, s.files_done)) / files_rate;
      }
    }
    s.percent = std::clamp(s.percent, 0.0, 100.0);
  }
  return s;
}

}  // namespace xfer
