#pragma once
// The audit trail of xferd: every refused request (bad or expired token,
// out of scope, over a limit, a malformed frame, a name that failed
// validation) is logged once at warning level — who (token subject or peer
// address), what, why — through a token bucket, so a flood of refusals can
// neither fill the disk nor hide: what the bucket drops is counted and the
// count is logged with the next line that gets through.
//
// Threading: refused() is safe from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string_view>

namespace xfer::server {

class Audit {
 public:
  // At most `per_minute` lines a minute (0: none, only counted).
  explicit Audit(unsigned per_minute) : per_minute_(per_minute) {}

  void refused(std::string_view who, std::string_view what, std::string_view why);

  std::uint64_t total() const { return total_.load(); }
  std::uint64_t suppressed() const { return suppressed_total_.load(); }

 private:
  unsigned per_minute_;
  std::mutex mu_;
  double tokens_ = -1;  // filled on first use
  std::chrono::steady_clock::time_point last_{};
  std::uint64_t pending_suppressed_ = 0;
  std::atomic<std::uint64_t> total_{0};
  std::atomic<std::uint64_t> suppressed_total_{0};
};

}  // namespace xfer::server
