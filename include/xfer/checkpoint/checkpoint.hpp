#pragma once
// Crash-safe transfer progress (docs/journal-format.md).
//
// Workers only update memory: a sharded map file -> chunk progress, and a
// bounded queue of journal records. One flusher thread appends the queued
// records to an append-only journal and fsyncs it in batches (never a
// worker), writes a per-file snapshot (temp file, fsync, rename) after
// `snapshot_every` updates or `snapshot_interval`, and compacts the journal
// once every active file has a snapshot. Finished files go to an append-only
// done-index that answers "is this file done?" without loading snapshots.
// open() recovers: done-index, snapshots, then the journal tail (a torn last
// record is truncated).
//
// Thread-safety: every public method may be called from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "xfer/checkpoint/records.hpp"
#include "xfer/core/result.hpp"

namespace xfer::checkpoint {

struct Options {
  std::string dir;                                    // the job's state folder (created)
  unsigned snapshot_every = 10;                       // updates of one file per snapshot
  std::chrono::milliseconds snapshot_interval{2000};  // or this long since its last one
  std::chrono::milliseconds flush_interval{20};       // journal fsync batching window
  std::size_t queue_capacity = 8192;                  // pending records before workers wait
  std::uint64_t compact_bytes = 4ull << 20;           // journal size that triggers compaction
};

// Figures for metrics and the benchmark. Relaxed atomics.
struct Stats {
  std::atomic<std::uint64_t> records{0};
  std::atomic<std::uint64_t> fsyncs{0};
  std::atomic<std::uint64_t> snapshots{0};
  std::atomic<std::uint64_t> compactions{0};
  std::atomic<std::uint64_t> journal_bytes{0};        // current journal size
  std::atomic<std::uint64_t> journal_bytes_total{0};  // appended over the run
  std::atomic<std::uint64_t> done_bytes_total{0};     // appended to the done-index
  std::atomic<std::uint64_t> queue_depth{0};
  std::atomic<std::uint64_t> max_queue_depth{0};
  std::atomic<std::uint64_t> backpressure_waits{0};  // a worker found the queue full
  std::atomic<std::uint64_t> flush_lag_us{0};        // last batch: oldest enqueue -> durable
  std::atomic<std::uint64_t> max_flush_lag_us{0};
  std::atomic<std::uint64_t> recovered_files{0};
  std::atomic<std::uint64_t> recovered_chunks{0};
  std::atomic<std::uint64_t> truncated_bytes{0};  // torn tail cut at recovery
};

// What is known about a chunked file when it (re)starts.
struct Progress {
  std::vector<bool> done;              // per chunk
  std::vector<std::uint64_t> hashes;   // per chunk, 0 = unknown
  std::vector<std::uint64_t> partial;  // per chunk not done: bytes at its start already written
  // What the destination said (SinkNote): of the file, and per chunk ("":
  // nothing). A chunk's note is kept only while the chunk is done.
  std::string note;
  std::vector<std::string> notes;
  std::uint64_t done_count() const;
  bool begun() const;  // a chunk done or begun: the partial holds something
};

class Checkpoint {
 public:
  // Creates or recovers the state in options.dir and starts the flusher.
  static Result<std::unique_ptr<Checkpoint>> open(const Options& options);
  virtual ~Checkpoint() = default;

  // "Is this file done?" from the done-index: the size and mtime it was
  // copied with, or nullopt.
  virtual std::optional<FileDone> done(std::uint64_t file_key) const = 0;
  virtual std::size_t done_count() const = 0;

  // Starts a chunked file. When recovered state has the same geometry (size,
  // mtime, chunk size) its progress is returned and kept; otherwise the old
  // state is reset and an empty Progress returned.
  virtual Progress begin_file(const FileBegin& begin) = 0;
  // The chunk size a file was begun with, when its recorded state matches
  // `like` in everything but the chunk size (key, size, mtime, source) and
  // has chunks done; 0 otherwise. A resumed file keeps its layout through
  // it even when the planner would now choose another.
  virtual std::uint64_t recorded_chunk_size(const FileBegin& like) const = 0;
  // Marks a chunk done: memory at once, the journal in the background. Blocks
  // only when the record queue is full (backpressure).
  virtual void chunk_done(std::uint64_t file_key, std::uint64_t chunk, std::uint64_t xxh3) = 0;
  // The first `bytes` of `chunk` are written (acknowledged by the
  // destination): a resume starts the chunk there. Asynchronous like
  // chunk_done; ignored for a chunk already done or past the chunk's size.
  virtual void chunk_progress(std::uint64_t file_key, std::uint64_t chunk, std::uint64_t bytes) = 0;
  // Records what the destination said of the file (chunk kFileNote) or of
  // one chunk; ignored for a file not begun or a chunk out of range, and
  // truncated to nothing past kMaxNote bytes. Asynchronous like chunk_done;
  // a chunk's note goes just before its chunk_done.
  virtual void sink_note(std::uint64_t file_key, std::uint64_t chunk, std::string text) = 0;
  // The file's own note (chunk kFileNote) as recorded, "" for none.
  virtual std::string file_note(std::uint64_t file_key) const = 0;
  // Forgets a file's progress (its source changed; it restarts from zero).
  virtual void reset_file(std::uint64_t file_key) = 0;
  // The file is committed at its destination: record it in the journal and
  // the done-index and drop it from memory. With `sync`, returns only once
  // that is durable (the last synchronous flush of a chunked file).
  virtual Status finish_file(const FileDone& done, bool sync) = 0;
  // Waits until everything queued so far is durable.
  virtual Status flush() = 0;

  virtual const Stats& stats() const = 0;
  // Files recovered with progress and not yet finished (for `xfer jobs`).
  virtual std::vector<FileBegin> active_files() const = 0;
  // Bytes at the destination this state vouches for, which a resume does not
  // send again: the size of every file done, and of every begun file its
  // chunks done plus the recorded prefix of each chunk begun.
  virtual std::uint64_t recorded_bytes() const = 0;
};

// XXH3-64 of a destination path: the key of its file in the checkpoint.
std::uint64_t file_key(const std::string& destination);

}  // namespace xfer::checkpoint
