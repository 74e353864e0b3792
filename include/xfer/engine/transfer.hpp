#pragma once
// The transfer engine: scanner -> planner -> scheduler -> workers -> finalizer.
// See docs/threading.md for the threading model.

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "xfer/core/result.hpp"
#include "xfer/engine/options.hpp"
#include "xfer/metrics/metrics.hpp"

namespace xfer {

// Callbacks from the engine. Called from worker threads, concurrently: an
// implementation must be thread-safe and quick (it runs on the hot path).
class TransferObserver {
 public:
  virtual ~TransferObserver() = default;
  // A file (or subtree) failed for good; the transfer goes on with the rest.
  virtual void on_error(const Error& error) { (void)error; }
  // A non-fatal note: a skipped special file, a retry.
  virtual void on_warning(const std::string& message) { (void)message; }
  // A file (or symlink) published at its destination by this run: not one
  // skipped as unchanged or already there (`xfer cp -v`).
  virtual void on_copied(const std::string& source, const std::string& destination,
                         std::uint64_t size) {
    (void)source, (void)destination, (void)size;
  }
  // sync: one change, as rsync's --itemize-changes shows it: `item` is its
  // 11-character code (">f.st......", "cd+++++++++", "*deleting  "),
  // `name` the path relative to the transfer's root ("sub/" for a
  // folder), `target` a symlink's target. Emitted once the change is made
  // (planned, with --dry-run).
  virtual void on_change(std::string_view item, const std::string& name, const std::string& target,
                         std::uint64_t size) {
    (void)item, (void)name, (void)target, (void)size;
  }
  // --dry-run: what would be copied.
  virtual void on_planned(const std::string& source, const std::string& destination,
                          std::uint64_t size) {
    (void)source, (void)destination, (void)size;
  }
};

// sync --bidirectional (bisync.hpp): what went which way.
struct BisyncCounts {
  bool first_run = false;  // no state yet (or resync): differences are conflicts
  std::uint64_t to_a = 0;  // files copied (or attributes set) on A
  std::uint64_t to_b = 0;
  std::uint64_t deleted_a = 0;  // entries deleted on A
  std::uint64_t deleted_b = 0;
  std::uint64_t conflicts = 0;
  std::uint64_t entries = 0;  // paths in the state now
};

struct TransferResult {
  std::uint64_t files_done = 0;  // at the destination now: copied, resumed or unchanged
  std::uint64_t files_failed = 0;
  std::uint64_t files_skipped = 0;
  std::uint64_t bytes_done = 0;
  std::uint64_t retries = 0;
  double seconds = 0;
  bool cancelled = false;
  std::vector<Error> errors;  // the first 100 per-file errors
  // sync --watch: errors that a later rescan without errors repaired (a
  // server restarting, a file busy for a moment); they do not fail the run.
  std::uint64_t errors_repaired = 0;
  std::uint64_t peak_buffer_bytes = 0;
  // Checkpointing (empty job_id when off).
  std::string job_id;
  std::uint64_t files_resumed = 0;
  std::uint64_t bytes_resumed = 0;
  // Skipped as already current (counted in files_done; not in bytes_done).
  std::uint64_t files_unchanged = 0;
  std::uint64_t bytes_unchanged = 0;
  // sync: entries deleted at the destination, files whose attributes were set.
  std::uint64_t files_deleted = 0;
  std::uint64_t files_attrs_set = 0;
  // sync --watch: changes committed at the destination, and the time from
  // each one's first event to its commit (the first million are ranked).
  std::uint64_t propagated = 0;
  double propagation_p50_ms = 0;
  double propagation_p99_ms = 0;
  double propagation_max_ms = 0;
  BisyncCounts bisync;  // sync --bidirectional only
  std::uint64_t journal_records = 0;
  std::uint64_t journal_fsyncs = 0;
  std::uint64_t journal_bytes = 0;
  std::uint64_t done_index_bytes = 0;
  std::uint64_t compactions = 0;
  std::uint64_t snapshots = 0;
  std::uint64_t checkpoint_max_queue = 0;
  std::uint64_t checkpoint_max_lag_us = 0;
  std::uint64_t checkpoint_backpressure = 0;
};

// cp's rule, for every command that copies or moves: the sources go *into*
// the destination (as destination/<source name>) when it is an existing
// folder, is written with a trailing '/', or there are several sources;
// otherwise the one source becomes the destination.
constexpr bool copies_into_destination(bool destination_is_folder, bool trailing_slash,
                                       std::size_t sources) {
  return destination_is_folder || trailing_slash || sources > 1;
}

// Runs one transfer to completion (or cancellation). When every source and
// the destination are xfer:// URLs (and not --dry-run) it is a third-party
// transfer: the source server runs it and this call follows the job
// (src/engine/third_party.hpp). Returns an Error when
// nothing could be started (bad destination, every source missing, a
// destination inside its source); per-file failures are in the result and
// reported to the observer. `cancel` may be set from any thread (a signal
// handler included): workers stop at the next piece and abort their sinks.
Result<TransferResult> run_transfer(const TransferRequest& request, TransferCounters& counters,
                                    TransferObserver* observer,
                                    const std::atomic<bool>* cancel = nullptr);

}  // namespace xfer
