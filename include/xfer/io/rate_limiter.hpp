#pragma once
// Token-bucket rate limiter shared by all workers of a transfer (--bwlimit).
// acquire(n) blocks until n bytes may pass. The bucket starts empty (a
// copy's first second is at the limit, not a burst above it) and holds at
// most 50 ms of traffic (at least 64 KiB) after an idle spell.
// Thread-safe. A rate of 0 disables limiting.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace xfer {

class RateLimiter {
 public:
  explicit RateLimiter(std::uint64_t bytes_per_second);
  // Blocks until `bytes` may pass. When `cancel` is given the wait is cut
  // short (in slices of at most 20 ms) once it becomes true; returns false
  // then, true when the bytes were granted.
  bool acquire(std::uint64_t bytes, const std::atomic<bool>* cancel = nullptr);
  std::uint64_t rate() const { return rate_; }

 private:
  using Clock = std::chrono::steady_clock;
  const std::uint64_t rate_;
  const double burst_;
  std::mutex mu_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace xfer
