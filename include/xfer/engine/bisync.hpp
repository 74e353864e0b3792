#pragma once
// xfer sync --bidirectional A B (docs/sync.md, "Bidirectional"): two folders
// kept alike in both directions. Both trees are listed, each path compared
// with what both sides held at the end of the last run (the state, kept in
// the state folder), and each change made on the other side: new and
// edited files copied across, deletions propagated (only of what the other
// side did not change), and a path changed on both sides since the last
// run kept twice: the newer version under its name, the other renamed to
// NAME.conflict-<side>-<UTC time> on both sides. Nothing is overwritten or
// deleted that changed since the last run.
//
// The copies are two one-way sync runs of the transfer engine (A to B, then
// B to A), each limited to the paths the plan names (the engine's
// files_from); the listings, the plan, the conflict renames, the deletions
// and the state are this module's. Threads: run_bisync's caller's, two
// listing threads per side while the trees are walked, and the engine's
// while a leg runs.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xfer/backend/registry.hpp"
#include "xfer/core/file_attrs.hpp"
#include "xfer/core/result.hpp"
#include "xfer/engine/options.hpp"
#include "xfer/engine/transfer.hpp"

namespace xfer {

// What a bidirectional run reports beyond a transfer's events. on_change
// (TransferObserver) names a path relative to the two roots; on_side says
// which side the changes reported after it are made on.
class BisyncObserver : public TransferObserver {
 public:
  // 'A' or 'B': the changes reported from now on are made on that side.
  virtual void on_side(char side) { (void)side; }
  // `path` changed on both sides since the last run: the version of side
  // `renamed_side` is kept as `kept_as` (on both sides, once the run is
  // done); the other keeps the name.
  virtual void on_conflict(const std::string& path, const std::string& kept_as, char renamed_side) {
    (void)path, (void)kept_as, (void)renamed_side;
  }
};

struct BisyncRequest {
  std::string a;  // a folder: a path or a URL
  std::string b;
  // The transfer options of both legs (filters, workers, --verify, ...);
  // source_endpoint reaches A, destination_endpoint B. dry_run plans only;
  // max_delete bounds the deletions on each side; resync forgets the state.
  TransferOptions options;
  std::shared_ptr<const BackendRegistry> backends;  // null: the built-in ones
};

// One side's entry, as listed or as remembered.
struct BisyncEntry {
  std::string path;  // relative to the side's root, '/'-separated
  EntryType type = EntryType::kFile;
  std::uint64_t size = 0;
  std::uint32_t mode = 0;
  std::int64_t mtime_ns = 0;
  std::string target;  // a symlink's
};

// The state: what both sides held after the last run, by path (sorted).
struct BisyncRecord {
  std::string path;
  EntryType type = EntryType::kFile;
  std::uint64_t size = 0;
  std::uint32_t mode = 0;
  std::int64_t mtime_a = 0;  // each side's own mtime, as it listed it
  std::int64_t mtime_b = 0;
  std::string target;
};

// Runs one bidirectional sync. Errors: nothing started (a side missing or
// not a folder, another run of this pair, a state file that cannot be
// read, a side that lost everything since the last run, more deletions
// than max_delete). Per-file failures are in the result (and reported);
// a path that failed keeps its old state, so the next run tries again.
Result<TransferResult> run_bisync(const BisyncRequest& request, TransferCounters& counters,
                                  BisyncObserver* observer, const std::atomic<bool>* cancel);

// The state file (and its lock beside it) of the pair: in the state folder
// (jobs.hpp: $XFER_STATE_DIR, else $XDG_STATE_HOME/xfer), named by a hash
// of the two roots as given after making local paths absolute.
std::string bisync_state_file(const std::string& state_root, const std::string& a,
                              const std::string& b);

// The state's text (one record per line, names escaped) and back. parse
// refuses anything it did not write: a bad line is an error naming it.
std::string format_bisync_state(const std::string& a, const std::string& b,
                                const std::vector<BisyncRecord>& records);
Result<std::vector<BisyncRecord>> parse_bisync_state(std::string_view text,
                                                     std::string_view origin);

}  // namespace xfer
