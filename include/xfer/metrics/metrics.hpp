#pragma once
// Transfer counters (lock-free, updated by workers) and the progress snapshot
// the front ends render. The library never prints; it only counts.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>

namespace xfer {

// All fields are monotonic except while a file is retried (bytes_done drops
// back by what the failed attempt had counted). Relaxed atomics: readers only
// need eventually-consistent figures.
struct TransferCounters {
  std::atomic<std::uint64_t> bytes_total{0};  // sizes of files opened so far
  std::atomic<std::uint64_t> bytes_done{0};
  std::atomic<std::uint64_t> files_total{0};  // entries the scanner found
  std::atomic<std::uint64_t> files_opened{0};
  std::atomic<std::uint64_t> files_done{0};
  std::atomic<std::uint64_t> files_failed{0};
  std::atomic<std::uint64_t> files_skipped{0};
  std::atomic<std::uint64_t> dirs_created{0};
  std::atomic<std::uint64_t> chunks_done{0};
  std::atomic<std::uint64_t> retries{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> bytes_zero_copy{0};  // moved by copy_file_range/sendfile
  std::atomic<std::uint64_t> bytes_verified{0};
  std::atomic<std::uint64_t> files_resumed{0};  // found complete by the checkpoint: skipped
  std::atomic<std::uint64_t> bytes_resumed{0};  // not sent again thanks to the checkpoint
  // Already at the destination with the source's size and mtime (or bytes,
  // --checksum): counted in files_done, never sent.
  std::atomic<std::uint64_t> files_unchanged{0};
  std::atomic<std::uint64_t> bytes_unchanged{0};
  // sync: destination entries removed (or moved to --backup-dir) because
  // the source has none, and files whose attributes alone were set.
  std::atomic<std::uint64_t> files_deleted{0};
  std::atomic<std::uint64_t> files_attrs_set{0};
  // --checksum: files hashed where they live (Backend::checksum), both ends.
  std::atomic<std::uint64_t> files_hashed{0};
  // sync's delta: files rebuilt from their old copy, and the bytes of them
  // taken from it (counted in bytes_done too, never sent).
  std::atomic<std::uint64_t> files_delta{0};
  std::atomic<std::uint64_t> bytes_matched{0};
  // sync --watch: renames made at the destination (not copies).
  std::atomic<std::uint64_t> files_renamed{0};
  // sync --watch: changes committed so far, the latest one's time from its
  // first event to its commit, and the longest (microseconds).
  std::atomic<std::uint64_t> changes_propagated{0};
  std::atomic<std::uint64_t> propagation_last_us{0};
  std::atomic<std::uint64_t> propagation_max_us{0};
  std::atomic<std::uint64_t> active_workers{0};
  std::atomic<bool> scan_complete{false};
};

struct ProgressSnapshot {
  double elapsed_s = 0;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  std::uint64_t files_done = 0;
  std::uint64_t files_total = 0;
  std::uint64_t files_failed = 0;
  std::uint64_t retries = 0;
  bool scan_complete = false;
  double rate_bps = 0;     // bytes moved per second over the last few seconds
  double files_per_s = 0;  // files finished per second, same window
  double percent = -1;     // -1 while unknown (still scanning)
  double eta_s = -1;       // -1 while unknown
};

// Turns successive counter readings into rates and an ETA. The rate is
// what was moved over a moving window of kWindow (bytes a resume found
// already there count towards the progress, never towards the rate, so a
// resumed copy does not start at a rate it never had); the ETA is what is
// left at that rate. Not thread-safe: one renderer thread owns it.
class ProgressMeter {
 public:
  static constexpr std::chrono::seconds kWindow{5};

  explicit ProgressMeter(const TransferCounters& counters);
  ProgressSnapshot sample();

 private:
  using Clock = std::chrono::steady_clock;
  struct Point {
    Clock::time_point at;
    std::uint64_t moved;
    std::uint64_t files;
  };
  const TransferCounters& counters_;
  Clock::time_point start_;
  std::deque<Point> window_;  // oldest first; at most kWindow of samples
};

}  // namespace xfer
