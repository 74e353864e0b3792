#pragma once
// The one retry policy of the engine: exponential backoff with full jitter,
// driven by the error's retry class.
//
// Immutable after construction: any thread (the scheduler consults it).

#include <chrono>

#include "xfer/core/result.hpp"

namespace xfer {

class RetryPolicy {
 public:
  RetryPolicy(unsigned max_attempts, std::chrono::milliseconds base, std::chrono::milliseconds cap)
      : max_attempts_(max_attempts), base_(base), cap_(cap) {}

  // May the failed call be repeated? `attempt` counts tries made so far (>= 1).
  bool retry_call(const Error& e, unsigned attempt) const {
    return e.retry == RetryClass::kRetryCall && attempt < max_attempts_;
  }
  // May the whole file be restarted?
  bool retry_file(const Error& e, unsigned attempt) const {
    return (e.retry == RetryClass::kRetryFile || e.retry == RetryClass::kRetryCall) &&
           attempt < max_attempts_;
  }
  // Random delay in [0, min(cap, base * 2^(attempt-1))].
  std::chrono::milliseconds backoff(unsigned attempt) const;

 private:
  unsigned max_attempts_;
  std::chrono::milliseconds base_;
  std::chrono::milliseconds cap_;
};

}  // namespace xfer
