#pragma once
// One memory budget for all transfer buffers. Past the soft limit the
// scheduler sees pressure() and stops admitting new files (backpressure);
// at the hard limit reserve() blocks until memory is released.
// Thread-safe.

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace xfer {

class MemoryGovernor {
 public:
  // soft_fraction of hard_limit is the soft limit (default 75%).
  explicit MemoryGovernor(std::uint64_t hard_limit, double soft_fraction = 0.75);

  // Blocks until `bytes` fit under the hard limit. A single request larger
  // than the whole budget is admitted when nothing else is reserved, so it
  // cannot deadlock.
  void reserve(std::uint64_t bytes);
  // Non-blocking; false when it would exceed the hard limit.
  bool try_reserve(std::uint64_t bytes);
  void release(std::uint64_t bytes);

  bool pressure() const;  // usage above the soft limit
  std::uint64_t used() const;
  std::uint64_t peak() const;
  std::uint64_t hard_limit() const { return hard_; }
  std::uint64_t soft_limit() const { return soft_; }

 private:
  const std::uint64_t hard_;
  const std::uint64_t soft_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t used_ = 0;
  std::uint64_t peak_ = 0;
};

}  // namespace xfer
