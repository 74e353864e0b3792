#pragma once
// Token-bucket rate limiter shared by all workers of a transfer (--bwlimit).
// acquire(n) blocks until n bytes may pass. Burst is bounded to a quarter
// second of traffic (at least one request) so the long-run rate holds.
// Thread-safe. A rate of 0 disables limiting.

#include <chrono>
#include <cstdint>
#include <mutex>

namespace xfer {

class RateLimiter {
 public:
  explicit RateLimiter(std::uint64_t bytes_per_second);
  void acquire(std::uint64_t bytes);
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
