// Progress snapshots of TransferCounters (metrics.hpp). Reads relaxed
// atomics that workers update: any thread, no lock.

#include "xfer/metrics/metrics.hpp"

#include <algorithm>

namespace xfer {

ProgressMeter::ProgressMeter(const TransferCounters& counters)
    : counters_(counters), start_(Clock::now()), last_(start_) {}

ProgressSnapshot ProgressMeter::sample() {
  auto now = Clock::now();
  ProgressSnapshot s;
  auto rd = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s.elapsed_s = std::chrono::duration<double>(now - start_).count();
  s.bytes_done = rd(counters_.bytes_done) + rd(counters_.bytes_resumed);
  s.bytes_total = rd(counters_.bytes_total);
  s.files_done = rd(counters_.files_done);
  s.files_total = rd(counters_.files_total);
  s.files_failed = rd(counters_.files_failed);
  s.retries = rd(counters_.retries);
  s.scan_complete = counters_.scan_complete.load(std::memory_order_relaxed);

  double dt = std::chrono::duration<double>(now - last_).count();
  if (dt > 0.05) {
    double inst = static_cast<double>(s.bytes_done - std::min(s.bytes_done, last_bytes_)) / dt;
    double inst_files =
        static_cast<double>(s.files_done - std::min(s.files_done, last_files_)) / dt;
    // Exponential smoothing with a ~2 s horizon; the first sample seeds it.
    double alpha = std::min(1.0, dt / 2.0);
    rate_ = primed_ ? rate_ + alpha * (inst - rate_) : inst;
    files_rate_ = primed_ ? files_rate_ + alpha * (inst_files - files_rate_) : inst_files;
    primed_ = true;
    last_ = now;
    last_bytes_ = s.bytes_done;
    last_files_ = s.files_done;
  }
  s.rate_bps = rate_;
  s.files_per_s = files_rate_;

  if (s.scan_complete && s.files_total > 0) {
    bool sizes_known = rd(counters_.files_opened) + rd(counters_.files_skipped) >= s.files_total;
    if (sizes_known && s.bytes_total > 0) {
      s.percent = 100.0 * static_cast<double>(s.bytes_done) / static_cast<double>(s.bytes_total);
      if (rate_ > 0)
        s.eta_s =
            static_cast<double>(s.bytes_total - std::min(s.bytes_total, s.bytes_done)) / rate_;
    } else {
      s.percent = 100.0 * static_cast<double>(s.files_done) / static_cast<double>(s.files_total);
      if (files_rate_ > 0) {
        s.eta_s = static_cast<double>(s.files_total - std::min(s.files_total, s.files_done)) /
                  files_rate_;
      }
    }
    s.percent = std::clamp(s.percent, 0.0, 100.0);
  }
  return s;
}

}  // namespace xfer
