// The retry policy's backoff delays (retry.hpp). Const after construction;
// the jitter comes from a per-thread generator, so any worker may call it.

#include "retry.hpp"

#include <algorithm>
#include <random>

namespace xfer {

std::chrono::milliseconds RetryPolicy::backoff(unsigned attempt) const {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  unsigned shift = std::min(attempt > 0 ? attempt - 1 : 0u, 20u);
  auto ceiling = std::min<long long>(cap_.count(), base_.count() * (1ll << shift));
  std::uniform_int_distribution<long long> dist(0, std::max<long long>(ceiling, 0));
  return std::chrono::milliseconds(dist(rng));
}

}  // namespace xfer
