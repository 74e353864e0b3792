// The workers (engine.hpp): each worker thread takes whole files and chunks
// from the scheduler, opens sources and sinks, and moves bytes through
// copy_range (a pooled buffer, or copy_file_range/sendfile when allowed).
// The worker that ends a file's last chunk calls the finalizer. Any worker
// thread; shared state is the scheduler's, the counters' (atomics) and each
// ChunkedFile's (see scheduler.hpp).

#include <algorithm>
#include <cstring>

#include "engine/engine.hpp"
#include "xfer/metrics/streams.hpp"

namespace xfer::detail {

void Engine::worker_loop() {
  for (;;) {
    WorkItem item = scheduler_.next();
    switch (item.kind) {
      case WorkItem::Kind::kDone:
        return;
      case WorkItem::Kind::kFile:
        process_file(std::move(item.file));
        break;
      case WorkItem::Kind::kChunk:
        run_chunk(std::move(item));
        break;
    }
  }
}

void Engine::process_symlink(const FileTask& task) {
  const Root& root = roots_[task.root];
  auto attrs = root.source->stat(task.source);
  if (!attrs) {
    counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
    report(attrs.error());
    return;
  }
  counters_.files_opened.fetch_add(1, std::memory_order_relaxed);
  if (opt_.dry_run) {
    announce(task, 0, attrs->symlink_target);
    counters_.files_done.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (!root.destination->capabilities().symlinks) {
    counters_.files_skipped.fetch_add(1, std::memory_order_relaxed);
    if (observer_ != nullptr) {
      observer_->on_warning(
          fmt::format("skipping symlink {}: destination cannot store symlinks", task.source));
    }
    return;
  }
  Status s = ok_status();
  if ((task.sync & kSyncBackup) != 0) {
    s = backup(task.root, task.destination);
    if (!s.ok() && s.error().code == ErrorCode::kNotFound) s = ok_status();
  }
  if (s.ok()) s = root.destination->symlink(attrs->symlink_target, task.destination, *attrs);
  if (!s.ok()) {
    counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
    report(s.error());
    return;
  }
  counters_.files_done.fetch_add(1, std::memory_order_relaxed);
  announce(task, 0, attrs->symlink_target);
}

void Engine::process_file(FileTask task) {
  if (task.type == EntryType::kSymlink) {
    process_symlink(task);
    scheduler_.file_classified();
    return;
  }
  const Root& root = roots_[task.root];
  // A copy to where no such file is reads its source from the start: a
  // remote source may fetch the first bytes with the open (an object
  // store's small object: one GET). The look at the destination is the one
  // skip_if_current() would make, made first.
  std::optional<Result<FileAttrs>> there;
  // (Not where the stores may copy it themselves: no byte is read then.)
  bool to_read = !opt_.dry_run && (task.sync & kSyncCompareContent) == 0 &&
                 !(root.source->capabilities().server_side_copy &&
                   root.destination->capabilities().server_side_copy);
  if (task.listed) there = std::move(task.listed);  // the scanner's listing saw it
  if (to_read && (task.sync & kSyncDecided) == 0 && looks_at_destination()) {
    if (!there) there = root.destination->stat_file(task.destination);
    to_read = !*there && there->error().code == ErrorCode::kNotFound;
  }
  unsigned attempt = 1;
  for (;;) {
    auto opened = to_read ? root.source->open_source_to_read(task.source)
                          : root.source->open_source(task.source);
    if (!opened) {
      Error e = opened.error();
      if (e.code == ErrorCode::kNotFound && req_.changes && (task.sync & kSyncDecided) != 0) {
        // sync --watch: the file vanished after it was compared; its
        // removal is an event of its own. Not a failure (which would hold
        // every deletion back until the next rescan).
        scheduler_.file_classified();
        counters_.files_skipped.fetch_add(1, std::memory_order_relaxed);
        log().debug("{} vanished before it was copied", task.source);
        return;
      }
      if (scheduler_.retry(e, attempt, RetryScope::kCall)) {
        ++attempt;
        continue;
      }
      scheduler_.file_classified();
      counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
      report(std::move(e));
      return;
    }
    std::unique_ptr<Source> source = std::move(opened).value();
    const std::uint64_t size = source->attrs().size;
    if (size > kMaxFileSize) {
      // A size from a peer: refused before anything is sized from it.
      scheduler_.file_classified();
      counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
      report(
          make_error(ErrorCode::kInvalidArgument, "copy", task.source,
                     fmt::format("file of {} bytes is larger than xfer handles (16 TiB)", size)));
      return;
    }
    if (attempt == 1) {
      counters_.files_opened.fetch_add(1, std::memory_order_relaxed);
      counters_.bytes_total.fetch_add(size, std::memory_order_relaxed);
    }
    // A stream (size unknown) is never "already there": it is read again.
    // A sync's walk compared the file already, unless the bytes decide.
    const bool current = attempt == 1 && source->attrs().size_known &&
                         ((task.sync & kSyncCompareContent) != 0 ? unchanged_content(task, *source)
                          : (task.sync & kSyncDecided) == 0 ? skip_if_current(task, *source, there)
                                                            : false);
    if (current) {
      scheduler_.file_classified();
      return;
    }
    if (opt_.dry_run) {
      scheduler_.file_classified();
      announce(task, size);
      counters_.files_done.fetch_add(1, std::memory_order_relaxed);
      // What the copy would move: the summary's "would have copied N files
      // (B bytes)" counts it.
      counters_.bytes_done.fetch_add(size, std::memory_order_relaxed);
      return;
    }
    if (!source->attrs().size_known && root.destination->capabilities().needs_size) {
      scheduler_.file_classified();
      counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
      report(make_error(ErrorCode::kUnsupported, "copy", task.source,
                        fmt::format("its size is not known until it ends, and {} needs it first",
                                    root.destination->describe())));
      return;
    }
    // Within one store (two buckets of one endpoint, say), the store copies
    // the file itself and no byte passes through here. The backend says
    // kUnsupported, without a request, when it cannot; the file is then
    // streamed.
    if (source->attrs().size_known && root.source->capabilities().server_side_copy &&
        root.destination->capabilities().server_side_copy) {
      Status copied =
          root.destination->copy_from(*root.source, task.source, task.destination, source->attrs());
      if (copied.ok()) {
        scheduler_.file_classified();
        counters_.files_done.fetch_add(1, std::memory_order_relaxed);
        counters_.bytes_done.fetch_add(size, std::memory_order_relaxed);
        announce(task, size);
        return;
      }
      if (copied.error().code != ErrorCode::kUnsupported) {
        Error e = copied.error();
        if (scheduler_.retry(e, attempt, RetryScope::kFile)) {
          ++attempt;
          continue;
        }
        scheduler_.file_classified();
        counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
        report(std::move(e));
        return;
      }
    }
    // sync's delta, unless the checkpoint holds progress of a copy of this
    // file sent whole (resumed as it was begun).
    if ((task.sync & kSyncDelta) != 0 && attempt == 1 && source->attrs().size_known &&
        !(ckpt_ &&
          ckpt_->recorded_chunk_size(checkpoint::FileBegin{checkpoint::file_key(task.destination),
                                                           size,
                                                           source->attrs().mtime_ns,
                                                           0,
                                                           task.source,
                                                           {}}) != 0)) {
      auto sent = copy_delta(task, *source);
      if (sent && *sent) {
        scheduler_.file_classified();
        counters_.files_done.fetch_add(1, std::memory_order_relaxed);
        announce(task, size);
        return;
      }
      if (!sent) {
        if (sent.error().code == ErrorCode::kCancelled) {
          scheduler_.file_classified();
          return;
        }
        log().info("sending {} whole: its delta failed: {}", task.source, sent.error().message());
      }
    }
    FilePlan plan = plan_for(root, task, source->attrs());
    if (plan.strategy == Strategy::kChunked) {
      auto file = std::make_shared<ChunkedFile>();
      file->key = checkpoint::file_key(task.destination);
      file->task = std::move(task);
      file->source = std::move(source);
      file->size = size;
      file->chunk_size = plan.chunk_size;
      file->chunks = plan.chunks;
      file->parallelism = plan.parallelism;
      file->attempt = attempt;
      Status started = start_chunked(file);
      if (!started.ok()) {
        scheduler_.file_classified();
        counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
        report(started.error());
        return;
      }
      auto first = scheduler_.add_chunked(std::move(file));
      scheduler_.file_classified();
      if (first) run_chunk(std::move(*first));
      return;
    }
    scheduler_.file_classified();
    for (;;) {
      Status s = copy_whole(task, *source, attempt);
      if (s.ok()) {
        counters_.files_done.fetch_add(1, std::memory_order_relaxed);
        announce(task, source->attrs().size);
        return;
      }
      Error e = s.error();
      if (scheduler_.retry(e, attempt, RetryScope::kFile)) {
        log().info("retrying {}: {}", task.source, e.message());
        ++attempt;
        if (e.retry == RetryClass::kRetryFile) {
          // Reopen: the source changed, so take a fresh look at it.
          auto again = root.source->open_source(task.source);
          if (!again) {
            e = again.error();
          } else {
            source = std::move(again).value();
            counters_.bytes_total.fetch_add(source->attrs().size, std::memory_order_relaxed);
            counters_.bytes_total.fetch_sub(size, std::memory_order_relaxed);
            continue;
          }
        } else {
          continue;
        }
      }
      if (e.code != ErrorCode::kCancelled) {
        counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
        report(std::move(e));
      }
      return;
    }
  }
}

// Moves a whole file with one worker: open the sink, copy, check the source
// did not change, verify, commit. Any failure leaves nothing under the final
// name (the Sink aborts when destroyed).
Status Engine::copy_whole(const FileTask& task, Source& source, unsigned attempt) {
  (void)attempt;
  const Root& root = roots_[task.root];
  const FileAttrs& attrs = source.attrs();
  SinkOptions so = sink_options(attrs, root.destination->capabilities());
  XFER_ASSIGN_OR_RETURN(std::unique_ptr<Sink> sink,
                        root.destination->open_sink(task.destination, so));
  std::vector<std::uint64_t> hashes;
  if (opt_.verify && attrs.size_known) {
    hashes.resize((attrs.size + opt_.io_size - 1) / opt_.io_size + 1);
  }
  std::atomic<std::uint64_t> counted{0};
  std::uint64_t size = attrs.size;
  Status copied = attrs.size_known
                      ? copy_range(source, *sink, 0, attrs.size, so.sparse,
                                   opt_.verify ? hashes.data() : nullptr, &counted)
                      : copy_stream(source, *sink, opt_.verify ? &hashes : nullptr, &counted, size);
  if (copied.ok()) copied = source.check_unchanged();
  if (copied.ok() && opt_.verify) copied = verify_pieces(*sink, size, hashes.data());
  if (copied.ok() && (task.sync & kSyncBackup) != 0) {
    copied = backup(task.root, task.destination);  // gone already after a failed commit: fine
    if (!copied.ok() && copied.error().code == ErrorCode::kNotFound) copied = ok_status();
  }
  if (copied.ok()) copied = sink->commit();
  if (!copied.ok()) {
    counters_.bytes_done.fetch_sub(counted.load(), std::memory_order_relaxed);
    (void)sink->abort();
    Error e = std::move(copied).error();
    if (e.path.empty()) e.path = task.source;
    return e;
  }
  counters_.chunks_done.fetch_add(1, std::memory_order_relaxed);
  if (ckpt_) {
    // Asynchronous: the file is already published; should this record be
    // lost in a crash, the re-run finds the destination complete anyway.
    (void)ckpt_->finish_file({checkpoint::file_key(task.destination), size, attrs.mtime_ns}, false);
  }
  return ok_status();
}

// A source of unknown size, read in order to its end: io_size pieces (full
// ones but the last, so --verify's piece hashes line up with
// verify_pieces), written as they come. `size` receives the length found.
Status Engine::copy_stream(Source& source, Sink& sink, std::vector<std::uint64_t>* hashes,
                           std::atomic<std::uint64_t>* counted, std::uint64_t& size) {
  Buffer buf = pool_.acquire();
  const std::uint64_t io = opt_.io_size;
  std::uint64_t pos = 0;
  for (bool end = false; !end;) {
    if (cancelled()) return make_error(ErrorCode::kCancelled, "copy", "");
    std::span<std::byte> span = buf.writable().subspan(0, static_cast<std::size_t>(io));
    std::size_t filled = 0;
    while (filled < span.size()) {
      XFER_ASSIGN_OR_RETURN(std::size_t got,
                            source.read_at(Offset{pos + filled}, span.subspan(filled)));
      if (got == 0) {
        end = true;
        break;
      }
      filled += got;
    }
    if (filled == 0) break;
    if (pos + filled > kMaxFileSize) {
      return make_error(ErrorCode::kInvalidArgument, "read", "",
                        "stream longer than xfer handles (16 TiB)");
    }
    std::span<const std::byte> data(span.data(), filled);
    if (hashes != nullptr) hashes->push_back(xxh3_64(data));
    if (!limiter_.acquire(filled, cancel_)) return make_error(ErrorCode::kCancelled, "copy", "");
    XFER_TRY(sink.write_at(Offset{pos}, data));
    pos += filled;
    counters_.bytes_total.fetch_add(filled, std::memory_order_relaxed);
    counters_.bytes_done.fetch_add(filled, std::memory_order_relaxed);
    counted->fetch_add(filled, std::memory_order_relaxed);
  }
  if (hashes != nullptr) hashes->push_back(0);  // verify_pieces' bound, as for sized files
  size = pos;
  return ok_status();
}

// The sink for a source with `attrs`: its size and attributes, sparse when
// the source has fewer bytes allocated than its size (holes stay holes).
SinkOptions Engine::sink_options(const FileAttrs& attrs, const Capabilities& destination) const {
  SinkOptions so;
  so.size = attrs.size;
  so.attrs = attrs;
  so.sparse = attrs.size > 0 && attrs.allocated < attrs.size && destination.random_writes;
  so.direct = opt_.direct;
  so.fsync = opt_.fsync;
  return so;
}

FilePlan Engine::plan_for(const Root& root, const FileTask& task, const FileAttrs& attrs) {
  const LinkEstimate from = root.source->link_estimate();
  const LinkEstimate to = root.destination->link_estimate();
  LinkEstimate link;
  link.rtt_ms = std::max(from.rtt_ms, to.rtt_ms);
  link.goodput_bps = from.goodput_bps > 0 && to.goodput_bps > 0
                         ? std::min(from.goodput_bps, to.goodput_bps)
                         : std::max(from.goodput_bps, to.goodput_bps);
  std::uint64_t recorded = 0;
  if (ckpt_ && root.destination->capabilities().resume) {
    recorded = ckpt_->recorded_chunk_size(checkpoint::FileBegin{
        checkpoint::file_key(task.destination), attrs.size, attrs.mtime_ns, 0, task.source, {}});
  }
  FilePlan plan = plan_file(attrs.size, root.source->capabilities(),
                            root.destination->capabilities(), opt_, link, recorded);
  // A new auto chunk size is one of the controller's decisions (--json
  // "controller"): filed when it changes, with the link it followed.
  const auto& board = opt_.destination_endpoint.stats_board ? opt_.destination_endpoint.stats_board
                                                            : opt_.source_endpoint.stats_board;
  if (board && opt_.chunk_size == 0 && recorded == 0 && plan.strategy == Strategy::kChunked &&
      reported_chunk_.exchange(plan.chunk_size) != plan.chunk_size) {
    ControllerEvent e;
    e.endpoint = (from.rtt_ms > to.rtt_ms ? root.source : root.destination)->describe();
    e.seconds = std::chrono::duration<double>(Clock::now() - started_).count();
    e.goodput_bps = link.goodput_bps;
    e.rtt_ms = link.rtt_ms;
    e.chunk_size = plan.chunk_size;
    e.action = "chunk size";
    board->record(std::move(e));
  }
  return plan;
}

Status Engine::start_chunked(const std::shared_ptr<ChunkedFile>& file) {
  const Root& root = roots_[file->task.root];
  const FileAttrs& attrs = file->source->attrs();
  SinkOptions so = sink_options(attrs, root.destination->capabilities());
  so.part_size = file->chunk_size;  // the planner's layout, before the first write
  so.parts = file->chunks;
  file->sparse = so.sparse;
  file->resume_done.clear();
  file->resume_hashes.clear();
  file->resume_partial.clear();
  if (ckpt_ && root.destination->capabilities().resume) {
    checkpoint::FileBegin begin{file->key,        attrs.size,        attrs.mtime_ns,
                                file->chunk_size, file->task.source, file->task.destination};
    checkpoint::Progress progress = ckpt_->begin_file(begin);
    so.resume_name = job_.id.substr(0, 12);
    so.resume_existing = progress.begun() || !progress.note.empty();
    so.resume_note = progress.note;
    so.chunk_notes = progress.notes;
    XFER_ASSIGN_OR_RETURN(file->sink, root.destination->open_sink(file->task.destination, so));
    const bool resumed = so.resume_existing && file->sink->resumed();
    if (so.resume_existing && !resumed) {
      // The partial is gone (deleted by hand, an upload expired): start
      // the file over.
      ckpt_->reset_file(file->key);
      (void)ckpt_->begin_file(begin);
    } else if (resumed) {
      file->resume_done = std::move(progress.done);
      file->resume_hashes = std::move(progress.hashes);
      // --verify checks a resumed chunk against its hash, which covers the
      // whole chunk: a begun one is sent again from its start. A sink of
      // whole parts keeps nothing of a chunk not done.
      if (!opt_.verify && !root.destination->capabilities().whole_parts) {
        file->resume_partial = std::move(progress.partial);
      }
    }
    // The sink's own record of the partial (an upload id) before any of
    // its chunks: a kill after the first part leaves a journal that can
    // find that part again.
    if (std::string note = file->sink->resume_note(); note != (resumed ? so.resume_note : "")) {
      ckpt_->sink_note(file->key, checkpoint::kFileNote, std::move(note));
    }
  } else {
    XFER_ASSIGN_OR_RETURN(file->sink, root.destination->open_sink(file->task.destination, so));
  }
  file->bytes_counted.store(0);
  if (opt_.verify) {
    file->pieces = (file->size + opt_.io_size - 1) / opt_.io_size + 1;
    file->piece_hashes = std::make_unique<std::uint64_t[]>(file->pieces);
  }
  return ok_status();
}

void Engine::run_chunk(WorkItem item) {
  auto& file = item.chunked;
  const std::uint64_t begin = item.chunk * file->chunk_size;
  const std::uint64_t end = std::min(file->size, begin + file->chunk_size);
  std::optional<Error> failure;
  if (item.chunk < file->resume_done.size() && file->resume_done[item.chunk]) {
    // Already at the destination from an earlier run. With --verify it is
    // checked first (journal hash, or a comparison with the source).
    auto intact = opt_.verify ? resumed_chunk_intact(*file, item.chunk) : Result<bool>(true);
    if (intact && *intact) {
      counters_.bytes_resumed.fetch_add(end - begin, std::memory_order_relaxed);
      counters_.chunks_done.fetch_add(1, std::memory_order_relaxed);
      if (scheduler_.chunk_finished(file, std::nullopt)) finalize_chunked(std::move(file));
      return;
    }
    if (!intact) failure = intact.error();
  }
  std::uint64_t chunk_hash = 0;
  // The chunk's first bytes, written by an interrupted run (the journal's
  // ChunkProgress): only the rest is sent.
  std::uint64_t from = begin;
  if (item.chunk < file->resume_partial.size()) {
    const std::uint64_t there = file->resume_partial[item.chunk];
    if (there > 0 && there < end - begin) {
      from = begin + there;
      counters_.bytes_resumed.fetch_add(there, std::memory_order_relaxed);
    }
  }
  const ChunkRef ref{file->key, item.chunk, begin};
  // Progress inside a chunk is kept only where a chunk can be resumed.
  const bool record_progress =
      ckpt_ && !roots_[file->task.root].destination->capabilities().whole_parts;
  for (unsigned attempt = 1; !failure; ++attempt) {
    Xxh3Stream hasher;
    Status s = copy_range(*file->source, *file->sink, from, end, file->sparse,
                          file->piece_hashes.get(), &file->bytes_counted,
                          opt_.verify ? &hasher : nullptr, record_progress ? &ref : nullptr);
    if (s.ok()) {
      if (opt_.verify) chunk_hash = hasher.digest();
      break;
    }
    if (scheduler_.retry(s.error(), attempt, RetryScope::kCall)) continue;
    failure = s.error();
    break;
  }
  if (!failure) {
    counters_.chunks_done.fetch_add(1, std::memory_order_relaxed);
    if (ckpt_) {
      if (std::string note = file->sink->chunk_note(item.chunk); !note.empty()) {
        ckpt_->sink_note(file->key, item.chunk, std::move(note));
      }
      ckpt_->chunk_done(file->key, item.chunk, chunk_hash);
    }
  }
  if (scheduler_.chunk_finished(file, std::move(failure))) finalize_chunked(std::move(file));
}

namespace {

// Holes are kept at this granularity: the block size of the file systems
// xfer writes to (ext4, xfs, btrfs, tmpfs: 4 KiB), so a sparse file arrives
// with no more allocated than its source (docs/local-backend.md, "Sparse").
constexpr std::uint64_t kSparseBlock = 4096;

bool block_is_zero(std::span<const std::byte> block) {
  static constexpr std::byte kZeros[kSparseBlock] = {};
  return std::memcmp(block.data(), kZeros, block.size()) == 0;
}

// Writes the blocks of `data` (at file offset `pos`) that hold a non-zero
// byte, as runs; blocks are aligned to the file's offsets, so an all-zero
// block is left a hole in the destination.
Status write_data_blocks(Sink& sink, std::uint64_t pos, std::span<const std::byte> data) {
  // End (index into data) of the block that holds index i.
  auto block_end = [&](std::size_t i) {
    const std::uint64_t next = ((pos + i) / kSparseBlock + 1) * kSparseBlock;
    return static_cast<std::size_t>(std::min<std::uint64_t>(data.size(), next - pos));
  };
  std::size_t i = 0;
  while (i < data.size()) {
    while (i < data.size() && block_is_zero(data.subspan(i, block_end(i) - i))) i = block_end(i);
    if (i == data.size()) break;
    std::size_t j = i;
    while (j < data.size() && !block_is_zero(data.subspan(j, block_end(j) - j))) j = block_end(j);
    XFER_TRY(sink.write_at(Offset{pos + i}, data.subspan(i, j - i)));
    i = j;
  }
  return ok_status();
}

}  // namespace

// Copies [begin, end) of source into sink at the same offsets. Pieces of
// io_size go through a pooled buffer (or copy_file_range when allowed);
// `hashes[i]` receives the XXH3 of piece i (offset / io_size) for --verify.
Status Engine::copy_range(Source& source, Sink& sink, std::uint64_t begin, std::uint64_t end,
                          bool sparse, std::uint64_t* hashes, std::atomic<std::uint64_t>* counted,
                          Xxh3Stream* chunk_hash, const ChunkRef* chunk) {
  const std::uint64_t io = opt_.io_size;
  std::uint64_t pos = begin;
  // [begin, end) is read next, in order, by this thread: a network source
  // asks for it as one request (an HTTP range) instead of one per piece.
  if (end > begin) source.will_read(Offset{begin}, Length{end - begin});
  // Each piece written is recorded, so a kill re-sends at most the piece
  // in flight (and what the journal had not flushed) of this chunk.
  auto progressed = [&] {
    if (chunk != nullptr && pos < end)
      ckpt_->chunk_progress(chunk->key, chunk->index, pos - chunk->begin);
  };
  if (zero_copy_.load(std::memory_order_relaxed) && !sparse && hashes == nullptr &&
      chunk_hash == nullptr) {
    // Zero-copy pieces stay large (4 io units) to amortise the syscall, and
    // small enough for smooth progress and rate limiting; one io unit when
    // each is a resume point of a chunk.
    const std::uint64_t piece = chunk != nullptr ? io : io * 4;
    while (pos < end) {
      if (cancelled()) return make_error(ErrorCode::kCancelled, "copy", "");
      std::uint64_t n = std::min(piece, end - pos);
      if (!limiter_.acquire(n, cancel_)) return make_error(ErrorCode::kCancelled, "copy", "");
      auto r = sink.copy_from(source, Offset{pos}, Length{n});
      if (!r) {
        if (r.error().code == ErrorCode::kUnsupported && pos == begin) {
          zero_copy_.store(false, std::memory_order_relaxed);
          break;  // fall back to buffered copying below
        }
        return r.error();
      }
      if (*r < n) {
        return make_error(ErrorCode::kChanged, "read", "", "file shrank while being copied",
                          RetryClass::kRetryFile);
      }
      pos += n;
      counters_.bytes_done.fetch_add(n, std::memory_order_relaxed);
      counters_.bytes_zero_copy.fetch_add(n, std::memory_order_relaxed);
      counted->fetch_add(n, std::memory_order_relaxed);
      progressed();
    }
    if (pos >= end) return ok_status();
  }
  // A sparse source is read by its data extents (holes are skipped, not
  // read), unless every byte must be hashed for --verify.
  const bool skip_holes = sparse && hashes == nullptr && chunk_hash == nullptr;
  std::uint64_t data_end = skip_holes ? pos : end;  // end of the data extent at pos
  Buffer buf = pool_.acquire();
  while (pos < end) {
    if (cancelled()) return make_error(ErrorCode::kCancelled, "copy", "");
    if (pos >= data_end) {
      XFER_ASSIGN_OR_RETURN(const Source::Extent ext, source.data_extent(Offset{pos}));
      const std::uint64_t next = std::min(std::max(ext.begin, pos), end);
      if (next > pos) {
        // A hole: nothing to read or write; it counts as copied.
        const std::uint64_t hole = next - pos;
        pos = next;
        counters_.bytes_done.fetch_add(hole, std::memory_order_relaxed);
        counted->fetch_add(hole, std::memory_order_relaxed);
        progressed();
        continue;
      }
      // (An extent that ends at pos means the file changed under us: read
      // on, and the end-of-copy check reports it.)
      data_end = ext.end > pos ? ext.end : end;
    }
    std::size_t n = static_cast<std::size_t>(std::min({io, end - pos, data_end - pos}));
    std::span<std::byte> span = buf.writable().subspan(0, n);
    XFER_ASSIGN_OR_RETURN(std::size_t got, source.read_at(Offset{pos}, span));
    if (got < n) {
      return make_error(ErrorCode::kChanged, "read", "", "file shrank while being copied",
                        RetryClass::kRetryFile);
    }
    std::span<const std::byte> data(span.data(), n);
    if (hashes != nullptr) hashes[pos / io] = xxh3_64(data);
    if (chunk_hash != nullptr) chunk_hash->update(data);
    if (!limiter_.acquire(n, cancel_)) return make_error(ErrorCode::kCancelled, "copy", "");
    if (sparse) {
      XFER_TRY(write_data_blocks(sink, pos, data));
    } else {
      XFER_TRY(sink.write_at(Offset{pos}, data));
    }
    pos += n;
    counters_.bytes_done.fetch_add(n, std::memory_order_relaxed);
    counted->fetch_add(n, std::memory_order_relaxed);
    progressed();
  }
  return ok_status();
}

}  // namespace xfer::detail
