#pragma once
// The scheduler hands work to the worker threads: whole files from the
// scanner's bounded queue, and chunks of the large files currently open.
// Workers prefer chunks of open files (finish what is started, keep the
// number of open files and the memory they pin bounded) over new files.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/retry.hpp"
#include "xfer/backend/backend.hpp"

namespace xfer {

// One entry found by the scanner.
enum SyncFlags : std::uint8_t {
  kSyncDecided = 1,         // copy it: the walk found it differs (no quick check again)
  kSyncCompareContent = 2,  // --checksum: same size; the worker compares the bytes
  kSyncBackup = 4,          // the destination has a file to move to --backup-dir first
  kSyncDelta = 8,           // the destination's old file may be the basis of a delta
};

struct FileTask {
  std::size_t root = 0;     // index of the (source backend, dest backend) pair
  std::string source;       // path on the source endpoint
  std::string destination;  // path on the destination endpoint
  EntryType type = EntryType::kFile;
  // Set by the sync walk (sync.cpp), which compared both ends already.
  std::uint8_t sync = 0;       // SyncFlags
  std::string item;            // rsync's itemize code of the change ("" outside sync)
  std::string name;            // the path as shown to the user, relative to the transfer's root
  std::uint64_t old_size = 0;  // kSyncDelta: the destination's size as listed
  // A tree copy into an object store lists each destination folder once:
  // what that listing says of this name (kNotFound: nothing there), in
  // place of a stat_file() (a HEAD) per file. Unset where it cannot say.
  std::optional<Result<FileAttrs>> listed;
  // sync --watch: when the change that made this task was first seen.
  std::chrono::steady_clock::time_point seen{};
  // Held while the file's work lasts (its copy, its retries); released when
  // the task and its ChunkedFile are gone. Change feeds use it to copy a
  // path once at a time (engine.hpp: enqueue).
  std::shared_ptr<void> guard;
};

// A large file being moved in chunks by several workers. Fields other than the
// scheduler-owned counters are touched by the worker that owns the phase.
struct ChunkedFile {
  FileTask task;
  std::uint64_t key = 0;          // checkpoint key (XXH3 of the destination path)
  std::vector<bool> resume_done;  // chunks already at the destination (resume)
  std::vector<std::uint64_t> resume_hashes;
  // Per chunk not done: its first bytes already at the destination (resume).
  std::vector<std::uint64_t> resume_partial;
  std::unique_ptr<Source> source;
  std::unique_ptr<Sink> sink;
  std::uint64_t size = 0;
  std::uint64_t chunk_size = 0;
  std::uint64_t chunks = 0;
  unsigned parallelism = 1;
  unsigned attempt = 1;
  bool sparse = false;
  // Owned by the Scheduler's mutex:
  std::uint64_t next_chunk = 0;
  std::uint64_t chunks_finished = 0;
  unsigned in_flight = 0;
  std::optional<Error> failure;  // first failure; stops new chunks being handed out
  // Written by chunk workers at distinct indices (one per io piece) for --verify.
  std::unique_ptr<std::uint64_t[]> piece_hashes;
  std::uint64_t pieces = 0;
  std::atomic<std::uint64_t> bytes_counted{0};
};

struct WorkItem {
  enum class Kind { kFile, kChunk, kDone } kind = Kind::kDone;
  FileTask file;
  std::shared_ptr<ChunkedFile> chunked;
  std::uint64_t chunk = 0;
};

// What failed: one call (a read, a write, an open), or a whole file (it is
// started over: a new source and sink).
enum class RetryScope { kCall, kFile };

// Thread-safe.
class Scheduler {
 public:
  explicit Scheduler(std::size_t queue_capacity) : capacity_(queue_capacity) {}

  // The one retry site of the engine: every part whose call or file failed
  // asks retry() whether to try again. It consults the RetryPolicy (the
  // error's retry class, the attempts made), counts the retry in `retries`
  // and waits the backoff, cut short by `cancel`. Set before the workers
  // start.
  void set_retry(RetryPolicy policy, std::atomic<std::uint64_t>* retries,
                 const std::atomic<bool>* cancel);
  // True, after the backoff, when attempt `attempt + 1` should be made;
  // false for a cancel, an error that retrying cannot help, or too many
  // attempts. Any worker thread.
  bool retry(const Error& error, unsigned attempt, RetryScope scope);

  // Memory backpressure (the governor's soft limit): while it says true and
  // work is already in flight, next() hands out chunks of open files but no
  // new file. Set before the workers start.
  void set_pressure(std::function<bool()> pressure) { pressure_ = std::move(pressure); }

  // Scanner side. push_file blocks while the queue is full; false once cancelled.
  bool push_file(FileTask task);
  void close_input();
  void cancel();

  // Worker side. Blocks until there is work or everything is finished (or
  // cancelled). A kFile item must be followed by file_classified() once the
  // worker knows whether it became chunked (add_chunked) or not.
  WorkItem next();
  void file_classified();
  // Registers a chunked file and hands its first chunk to the caller, so a
  // registered file always has a chunk in flight until it is finalized.
  // nullopt when cancelled (the caller drops the file; its Sink aborts).
  std::optional<WorkItem> add_chunked(std::shared_ptr<ChunkedFile> file);
  // Reports a chunk's end. Returns true when the caller must finalize the file
  // (it was the last chunk in flight and no more will be handed out).
  bool chunk_finished(const std::shared_ptr<ChunkedFile>& file, std::optional<Error> error);
  // Puts a file back for another attempt (new source and sink set by the
  // caller) and hands its first chunk to the caller, like add_chunked.
  std::optional<WorkItem> requeue_chunked(std::shared_ptr<ChunkedFile> file);
  std::size_t queued() const;

 private:
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable space_cv_;
  std::deque<FileTask> files_;
  std::list<std::shared_ptr<ChunkedFile>> chunked_;
  unsigned classifying_ = 0;  // kFile items handed out, not yet classified
  bool input_closed_ = false;
  bool cancelled_ = false;
  std::function<bool()> pressure_;
  std::optional<RetryPolicy> retry_policy_;
  std::atomic<std::uint64_t>* retries_ = nullptr;
  const std::atomic<bool>* cancel_ = nullptr;
};

}  // namespace xfer
