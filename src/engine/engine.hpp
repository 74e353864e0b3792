#pragma once
// The engine's parts share one object: the Engine of one transfer. Each
// part lives in its own file and works on the state declared here:
//
//   scanner.cpp    resolve the roots (cp semantics), walk the sources
//   workers.cpp    the worker loop: whole files, chunks, copy_range
//   verifier.cpp   --verify: read back and compare; resumed chunks checked
//   finalizer.cpp  the fence per file: commit, suspend or abort; resume skips
//   job_state.cpp  the job record and checkpoint: lock, open, close
//   sync.cpp       xfer sync: both trees compared, deletions, backups
//   delta.cpp      sync's delta: a changed file rebuilt from its old blocks
//   transfer.cpp   run(): threads, the order of the parts, the result
//
// Planning is planner.cpp (a pure function), queues and the one retry site
// are scheduler.cpp. Threading: docs/threading.md; the comments on the
// members say who touches what.

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/planner.hpp"
#include "engine/retry.hpp"
#include "engine/scheduler.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/checkpoint/checkpoint.hpp"
#include "xfer/core/checksum.hpp"
#include "xfer/core/limits.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"
#include "xfer/engine/changes.hpp"
#include "xfer/engine/filter.hpp"
#include "xfer/engine/jobs.hpp"
#include "xfer/engine/transfer.hpp"
#include "xfer/io/buffer_pool.hpp"
#include "xfer/io/rate_limiter.hpp"

namespace xfer::detail {

using Clock = std::chrono::steady_clock;

// One (source endpoint, destination endpoint) pair: a top-level SRC argument.
struct Root {
  Backend* source = nullptr;
  Backend* destination = nullptr;
  std::string source_path;
  std::string destination_path;
  FileAttrs source_attrs;
  // The root's path for the include/exclude rules (docs/filters.md): its
  // name ("src"), or "" when its contents are copied ("src/").
  std::string filter_path;
};

struct DirFixup {
  std::size_t root;
  std::string destination;
  FileAttrs attrs;
};

inline bool all_zero(std::span<const std::byte> data) {
  for (std::byte b : data) {
    if (b != std::byte{0}) return false;
  }
  return true;
}

class Engine {
 public:
  Engine(const TransferRequest& request, TransferCounters& counters, TransferObserver* observer,
         const std::atomic<bool>* cancel)
      : req_(request),
        opt_(req_.options),
        backends_registry_(request.backends ? request.backends : BackendRegistry::with_builtins()),
        counters_(counters),
        observer_(observer),
        cancel_(cancel),
        governor_(opt_.memory),
        pool_(governor_, opt_.io_size),
        limiter_(opt_.bwlimit),
        scheduler_(4096),
        zero_copy_(opt_.zero_copy && !opt_.verify && !opt_.direct) {
    scheduler_.set_retry(RetryPolicy(opt_.max_attempts, opt_.retry_base, opt_.retry_cap),
                         &counters_.retries, cancel_);
  }

  Result<TransferResult> run();
  // A change feed's guard lets go of a destination (any worker thread).
  void release(const std::string& key, FileTask task);

 private:
  // Setup.
  Result<Backend*> backend_for(const Url& url, const EndpointOptions& options);
  // Backend::cancel() on every backend made so far (any thread).
  void cancel_backends();
  Status resolve_roots();
  Status lock_job();
  Status open_job();
  void close_job(TransferResult& result);
  void fill_job_progress(std::uint64_t files_done, std::uint64_t bytes_done);
  // `there`: the destination's stat_file(), when the caller made it.
  bool skip_if_current(const FileTask& task, Source& source,
                       const std::optional<Result<FileAttrs>>& there = std::nullopt);
  // Whether skip_if_current() may look at the destination (not with -I
  // alone, outside a job).
  bool looks_at_destination() const;
  Result<bool> same_content(const FileTask& task, Source& source, std::uint64_t size);

  // Scanner thread.
  void scan();
  void scan_tree(std::size_t root_index, std::string source, std::string destination);
  // One destination folder's listing, held while its source folder is
  // walked (at most kMaxListedDestination names).
  struct DestinationListing {
    std::unordered_map<std::string, FileAttrs> files;
    std::unordered_set<std::string> others;  // folders and what is not a file
    // What the listing says of `name` for FileTask::listed: kNotFound
    // when it is not there; its attributes where the listing has the
    // file's own mtime (listed_mtimes); else nullopt (stat_file decides).
    std::optional<Result<FileAttrs>> of(const std::string& name, bool listed_mtimes) const;
  };
  static constexpr std::size_t kMaxListedDestination = 100'000;
  // The file of a source folder from which its destination is listed.
  static constexpr std::size_t kListAfter = 8;
  // The listing of `destination` where it is an object store's folder
  // (no directories, across a network); nullopt elsewhere, or when it
  // fails or holds more than kMaxListedDestination names.
  std::optional<DestinationListing> list_destination(std::size_t root_index,
                                                     const std::string& destination);
  // The same walk from one flat listing (Capabilities::flat_listing).
  void scan_flat(std::size_t root_index, std::string source, std::string destination);
  // A folder the walk enters: made at the destination (where it keeps
  // folders), or planned with --dry-run; false when nothing below can be
  // written (reported).
  bool enter_folder(std::size_t root_index, const std::string& source,
                    const std::string& destination, const FileAttrs& attrs);
  // A source folder the walk took nothing from: a marker where the
  // destination keeps them, else a notice (a destination with folders made
  // it already).
  void keep_empty_folder(std::size_t root_index, const std::string& source,
                         const std::string& destination);
  // Hands a file to the scheduler; with a change feed, only if its
  // destination is not being copied already (else it is copied again once
  // that copy ends). False once cancelled.
  bool enqueue(FileTask task);
  // The feed's loop and one event (scanner thread).
  void follow_changes();
  void apply_change(const ChangeEvent& event);

  // Sync (sync.cpp). The walk runs on the scanner thread; deletions run on
  // the thread of run(), once the workers joined.
  enum class SyncPass { kCopy, kDeletions };
  // Both listings of one folder, sorted by name.
  struct SyncListing {
    Status source = ok_status();
    Status destination = ok_status();  // kNotFound counts as empty
    std::vector<Entry> ours;
    std::vector<Entry> theirs;
  };
  struct SyncDir {
    std::string source;
    std::string destination;
    std::string name;  // relative to the transfer's root, for the rules and the user
    FileAttrs source_attrs;
    std::optional<FileAttrs> destination_attrs;  // nullopt: not there (yet)
    // Its listings, being read ahead on another thread (kListAhead folders
    // at most), or null.
    std::shared_ptr<std::future<SyncListing>> ahead;
  };
  static constexpr std::size_t kListAhead = 16;
  // The most names one folder may hold in a sync (both listings are held
  // whole to be merged): a million.
  static constexpr std::size_t kMaxSyncFolderEntries = 1'000'000;
  // The smallest file sent as a delta (both versions at least this long):
  // below it, two signatures cost more than the bytes they save.
  static constexpr std::uint64_t kDeltaMinSize = 1u << 20;
  std::size_t reading_ahead_ = 0;  // read-aheads started and not yet taken (scanner thread)
  SyncListing list_both(const Root& root, const SyncDir& dir) const;
  struct Deletion {
    std::size_t root;
    std::string path;  // at the destination
    std::string name;
    EntryType type;
  };
  // What the quick check (or its replacements: --size-only, -u,
  // --ignore-existing, -c) says of a destination file.
  enum class Verdict { kCopy, kUnchanged, kKeep, kCompareContent };
  Verdict compare(const FileAttrs& source, const FileAttrs& destination, bool mtimes) const;
  bool same_mtime(std::int64_t a, std::int64_t b) const;
  void sync_scan();
  void sync_root(std::size_t root_index);
  // sync --watch (a change feed): one event, one path compared (sync.cpp).
  void sync_change(const ChangeEvent& event);
  void sync_path(std::size_t root_index, const std::string& rel);
  // The rules exclude `rel` (relative to the root) or a folder on its way.
  bool excluded_path(std::size_t root_index, const std::string& rel, EntryType type) const;
  // Propagation latency: from a change's first event to its commit (any thread).
  void record_latency(Clock::time_point seen);
  Clock::time_point current_seen_{};  // the event being applied (scanner thread)
  static constexpr std::size_t kMaxLatencySamples = 1'000'000;
  std::mutex latency_mu_;
  std::vector<double> latencies_ms_;  // under latency_mu_
  std::uint64_t latency_count_ = 0;   // under latency_mu_
  double latency_max_ms_ = 0;         // under latency_mu_
  // Failed files before the last rescan: the deletion rule counts only
  // those after (sync --watch; 0 otherwise).
  std::atomic<std::uint64_t> failed_base_{0};
  // Errors reported before the last rescan that met none (sync --watch):
  // that rescan compared everything again, so they are repaired.
  std::atomic<std::uint64_t> errors_repaired_{0};
  void sync_tree(std::size_t root_index, SyncDir top, SyncPass pass);
  // One name present on either end (or both); subfolders to walk go to
  // `subdirs`. True when the destination folder's entries change (its
  // mtime moves, so its attributes are set again at the end).
  bool sync_entry(std::size_t root_index, const std::string& source_path,
                  const std::string& destination_path, const std::string& name, const Entry* source,
                  const Entry* destination, SyncPass pass, std::vector<SyncDir>& subdirs);
  // The destination entry is in the way of another type: removed (into
  // --backup-dir if set; a non-empty folder only with --delete).
  bool make_way(std::size_t root_index, const std::string& path, const std::string& name,
                EntryType type);
  // `path` and everything under it, children first, as deletions.
  void collect_deletions(std::size_t root_index, const std::string& path, const std::string& name,
                         EntryType type, std::vector<Deletion>& out);
  void run_deletions(std::vector<Deletion>& deletions);
  bool remove_entry(const Deletion& d, bool shown_as_deleted = true);
  // Moves a destination entry to --backup-dir (its parents made).
  Status backup(std::size_t root_index, const std::string& path);
  bool protected_name(const std::string& destination_path, std::string_view entry_name) const;
  void emit_change(std::string_view item, const std::string& name, const std::string& target,
                   std::uint64_t size);
  // --checksum in sync: the bytes decide; equal files get their attributes.
  // A differing file gets 'c' in its item.
  bool unchanged_content(FileTask& task, Source& source);
  // After a commit (or, --dry-run, the plan): -v's line and the itemized change.
  void announce(const FileTask& task, std::uint64_t size, const std::string& target = {});

  // Delta (delta.cpp, a worker). True when the file was sent as a delta
  // and committed; false when the two versions have too little in common
  // (the caller sends it whole); an error when it failed (so does the
  // caller, whole, unless cancelled).
  bool delta_allowed(const Root& root) const;
  Result<bool> copy_delta(const FileTask& task, Source& source);
  Status verify_whole(Sink& sink, std::uint64_t size, const FileDigest& expected);

  // Workers.
  void worker_loop();
  void process_file(FileTask task);
  void process_symlink(const FileTask& task);
  Status copy_whole(const FileTask& task, Source& source, unsigned attempt);
  void run_chunk(WorkItem item);
  void finalize_chunked(std::shared_ptr<ChunkedFile> file);
  // Sparse only where the destination takes writes out of order: holes are
  // skipped by writing around them.
  SinkOptions sink_options(const FileAttrs& attrs, const Capabilities& destination) const;
  Status start_chunked(const std::shared_ptr<ChunkedFile>& file);
  // plan_file with what the root's two backends measured of the link and,
  // for a file the checkpoint has progress for, the layout it recorded.
  FilePlan plan_for(const Root& root, const FileTask& task, const FileAttrs& attrs);
  Status copy_stream(Source& source, Sink& sink, std::vector<std::uint64_t>* hashes,
                     std::atomic<std::uint64_t>* counted, std::uint64_t& size);
  // The chunk a copy_range belongs to, when its progress is journaled.
  struct ChunkRef {
    std::uint64_t key;    // the file's checkpoint key
    std::uint64_t index;  // the chunk
    std::uint64_t begin;  // its first byte in the file
  };
  Status copy_range(Source& source, Sink& sink, std::uint64_t begin, std::uint64_t end, bool sparse,
                    std::uint64_t* hashes, std::atomic<std::uint64_t>* counted,
                    Xxh3Stream* chunk_hash = nullptr, const ChunkRef* chunk = nullptr);
  Result<bool> resumed_chunk_intact(ChunkedFile& file, std::uint64_t chunk);
  Status verify_pieces(Sink& sink, std::uint64_t size, const std::uint64_t* hashes);

  void report(Error e);
  bool cancelled() const { return cancel_ != nullptr && cancel_->load(std::memory_order_relaxed); }

  TransferRequest req_;  // a copy: run() resolves its local paths
  const TransferOptions& opt_;
  std::shared_ptr<const BackendRegistry> backends_registry_;  // URL scheme -> backend
  TransferCounters& counters_;
  TransferObserver* observer_;
  const std::atomic<bool>* cancel_;

  MemoryGovernor governor_;
  BufferPool pool_;
  RateLimiter limiter_;
  Scheduler scheduler_;
  std::atomic<bool> zero_copy_;

  // Added to by resolve_roots (under backends_mu_, while the early cancel
  // watcher may read it); fixed once the transfer runs.
  std::mutex backends_mu_;
  std::vector<std::pair<std::string, std::unique_ptr<Backend>>> backends_;
  std::vector<Root> roots_;
  FilterSet filter_;     // opt_.filter, parsed at the start of run(); read-only after
  PathList files_from_;  // opt_.files_from, loaded likewise
  // --files-from's verdict on `name` (relative to the transfer's root, the
  // root's own name first when it has one) of a folder root.
  PathList::Match selected(const Root& root, std::string_view name) const;
  std::vector<DirFixup> dir_fixups_;  // scanner thread only, until it joins
  // Sets the folders' attributes dir_fixups_ holds and empties it.
  void apply_dir_fixups();

  // Sync: the deletions to run after the copies (scanner thread, until it
  // joins); a listing that failed cancels every deletion (rsync's rule).
  std::vector<Deletion> deletions_;
  std::atomic<bool> sync_io_error_{false};
  std::string destination_root_;  // DST's path: --backup-dir is relative to it
  std::string backup_root_;       // empty without --backup-dir
  std::int64_t window_ns_ = 0;    // mtimes this close are equal

  // Change feeds: destinations being copied ("root|path" -> changed again
  // meanwhile) and the tasks to push again; the scanner and the workers.
  std::mutex active_mu_;
  std::unordered_map<std::string, bool> active_;
  std::vector<FileTask> redo_;

  std::mutex errors_mu_;
  std::vector<Error> errors_;

  // Checkpointing (null when off or --dry-run).
  std::unique_ptr<checkpoint::Checkpoint> ckpt_;
  std::string state_root_;
  JobInfo job_;
  int lock_fd_ = -1;
  bool resuming_ = false;                // an interrupted run of this job left state
  std::optional<JobInfo> previous_job_;  // job.json of an earlier run, read under the lock
  // Files an earlier run began and did not finish (read once at open_job;
  // only read afterwards, by the workers).
  std::unordered_set<std::uint64_t> begun_keys_;
  std::optional<bool> forced_into_dir_;  // from the interrupted run's job.json
  bool into_dir_ = false;
  // The auto chunk size last reported to the stats board (plan_for; any
  // worker), and when the engine started (the events' time base).
  std::atomic<std::uint64_t> reported_chunk_{0};
  Clock::time_point started_ = Clock::now();
};

}  // namespace xfer::detail
