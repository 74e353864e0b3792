// The token bucket behind --bwlimit (rate_limiter.hpp), shared by all the
// workers of a transfer: one mutex, and callers sleep outside it.

#include "xfer/io/rate_limiter.hpp"

#include <algorithm>
#include <thread>

namespace xfer {

RateLimiter::RateLimiter(std::uint64_t bytes_per_second)
    : rate_(bytes_per_second),
      burst_(std::max(static_cast<double>(bytes_per_second) / 20.0, 64.0 * 1024)),
      tokens_(0),
      last_(Clock::now()) {}

bool RateLimiter::acquire(std::uint64_t bytes, const std::atomic<bool>* cancel) {
  if (rate_ == 0 || bytes == 0) return true;
  Clock::duration wait{};
  {
    std::lock_guard lock(mu_);
    auto now = Clock::now();
    double elapsed = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    tokens_ = std::min(burst_, tokens_ + elapsed * static_cast<double>(rate_));
    // Take the tokens now (possibly going negative); the caller sleeps off the
    // debt. Debt-based accounting keeps requests FIFO-fair and exact on average.
    tokens_ -= static_cast<double>(bytes);
    if (tokens_ < 0) {
      wait = std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(-tokens_ / static_cast<double>(rate_)));
    }
  }
  auto until = Clock::now() + wait;
  for (;;) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) return false;
    auto now = Clock::now();
    if (now >= until) return true;
    std::this_thread::sleep_for(
        std::min<Clock::duration>(until - now, std::chrono::milliseconds(20)));
  }
}

}  // namespace xfer
