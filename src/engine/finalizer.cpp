// The finalizer (engine.hpp): the fence of a chunked file, run once per
// attempt by the worker that returned its last chunk: check the source did
// not change, verify, commit and record it done; or keep the partial for a
// resume, or abort and hand the file to the retry site. Also the check
// that skips a file already whole at the destination (a resume, or a file
// unchanged since an earlier copy).

#include <cstring>

#include "engine/engine.hpp"

namespace xfer::detail {

// The fence: runs once per attempt, after every chunk of the file returned.
void Engine::finalize_chunked(std::shared_ptr<ChunkedFile> file) {
  std::optional<Error> failure = file->failure;
  if (!failure && cancelled())
    failure = make_error(ErrorCode::kCancelled, "copy", file->task.source);
  if (!failure) {
    Status s = file->source->check_unchanged();
    if (s.ok() && opt_.verify) s = verify_pieces(*file->sink, file->size, file->piece_hashes.get());
    if (s.ok() && (file->task.sync & kSyncBackup) != 0) {
      s = backup(file->task.root, file->task.destination);
      if (!s.ok() && s.error().code == ErrorCode::kNotFound) s = ok_status();
    }
    if (s.ok()) s = file->sink->commit();
    if (s.ok() && ckpt_) {
      // The last synchronous flush of this file: done in the journal and the
      // done-index before we call it done.
      const FileAttrs& a = file->source->attrs();
      s = ckpt_->finish_file({file->key, a.size, a.mtime_ns}, true);
    }
    if (s.ok()) {
      counters_.files_done.fetch_add(1, std::memory_order_relaxed);
      announce(file->task, file->size);
      return;
    }
    failure = s.error();
  }
  if (failure->code == ErrorCode::kCancelled || cancelled()) {
    // Keep the partial and its journal: the next run resumes from here.
    (void)file->sink->suspend();
    return;
  }
  // An unreachable endpoint (connection lost, server restarted) says nothing
  // about the bytes already at the destination: keep the resumable partial
  // and its journal, so the retry below (or a re-run) sends only the rest.
  const bool keep_partial = ckpt_ && failure->code == ErrorCode::kUnavailable &&
                            roots_[file->task.root].destination->capabilities().resume;
  if (keep_partial) {
    (void)file->sink->suspend();
  } else {
    (void)file->sink->abort();
    if (ckpt_) ckpt_->reset_file(file->key);
  }
  counters_.bytes_done.fetch_sub(file->bytes_counted.exchange(0), std::memory_order_relaxed);
  Error e = *failure;
  if (e.path.empty()) e.path = file->task.source;
  if (e.code == ErrorCode::kCancelled || cancelled()) return;
  if (scheduler_.retry(e, file->attempt, RetryScope::kFile)) {
    log().info("retrying {}: {}", file->task.source, e.message());
    ++file->attempt;
    const Root& root = roots_[file->task.root];
    auto reopened = root.source->open_source(file->task.source);
    if (reopened) {
      const std::uint64_t old_size = file->size;
      file->source = std::move(reopened).value();
      file->size = file->source->attrs().size;
      counters_.bytes_total.fetch_add(file->size, std::memory_order_relaxed);
      counters_.bytes_total.fetch_sub(old_size, std::memory_order_relaxed);
      FilePlan plan = plan_for(root, file->task, file->source->attrs());
      file->chunk_size = std::max<std::uint64_t>(plan.chunk_size, 1);
      file->chunks =
          std::max<std::uint64_t>((file->size + file->chunk_size - 1) / file->chunk_size, 1);
      Status started = start_chunked(file);
      if (started.ok()) {
        auto first = scheduler_.requeue_chunked(file);
        if (first) run_chunk(std::move(*first));
        return;
      }
      e = started.error();
    } else {
      e = reopened.error();
    }
  }
  counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
  report(std::move(e));
}

// Is the file at the destination already this one? Either the done-index
// says this job copied it with this size and mtime (a resume), or, unless
// --ignore-times, the destination is a regular file with the source's size
// and mtime (rsync's and rclone's quick check), or with --checksum the same
// size and the same bytes. Such a file is not sent again.
bool Engine::looks_at_destination() const {
  return !opt_.ignore_times || opt_.ignore_existing || opt_.update || ckpt_ != nullptr;
}

bool Engine::skip_if_current(const FileTask& task, Source& source,
                             const std::optional<Result<FileAttrs>>& there) {
  const FileAttrs& attrs = source.attrs();
  Backend& destination = *roots_[task.root].destination;
  const std::uint64_t key = checkpoint::file_key(task.destination);
  auto done = ckpt_ ? ckpt_->done(key) : std::nullopt;
  const bool recorded = done && done->size == attrs.size && done->mtime_ns == attrs.mtime_ns;
  const bool keeps = opt_.ignore_existing || opt_.update;  // may keep what is there, even with -I
  if (!recorded && opt_.ignore_times && !keeps) return false;
  auto dst = there ? *there : destination.stat_file(task.destination);
  if (!dst || dst->type != EntryType::kFile) return false;
  const bool mtimes = destination.capabilities().mtime;
  const Verdict verdict = recorded ? Verdict::kUnchanged : compare(attrs, *dst, mtimes);
  if (verdict == Verdict::kCopy) return false;
  if (dst->size != attrs.size && verdict != Verdict::kKeep) return false;
  // Without stored mtimes only the job's own record trusts the size alone.
  const bool mtime_matches = mtimes ? same_mtime(dst->mtime_ns, attrs.mtime_ns) : recorded;
  bool unchanged = false;
  if (verdict == Verdict::kKeep || (verdict == Verdict::kUnchanged && opt_.size_only)) {
    unchanged = true;  // -u, --ignore-existing, --size-only: kept as it is
  } else if (recorded || (resuming_ && !opt_.checksum)) {
    // A resume. A destination with the source's size and mtime was
    // published by the interrupted run even if its done record did not
    // reach the disk (xfer sets the mtime at commit).
    if (!mtime_matches) return false;
  } else if (opt_.checksum) {
    auto same = same_content(task, source, attrs.size);
    if (!same || !*same) return false;
    unchanged = true;
  } else {
    if (!mtime_matches) return false;
    unchanged = true;
  }
  // An earlier run of this job began the file again and was killed (a
  // finished job run again copies anew): its partial beside the whole
  // destination is garbage. Opened as this job's partial and aborted, it
  // is removed, locally or on a server alike.
  if (begun_keys_.count(key) != 0 && !opt_.dry_run) {
    SinkOptions so = sink_options(attrs, destination.capabilities());
    so.resume_name = job_.id.substr(0, 12);
    so.resume_existing = true;
    so.resume_note = ckpt_->file_note(key);
    if (auto partial = destination.open_sink(task.destination, so)) (void)(*partial)->abort();
    ckpt_->reset_file(key);
  }
  counters_.files_done.fetch_add(1, std::memory_order_relaxed);
  if (unchanged) {
    counters_.files_unchanged.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes_unchanged.fetch_add(attrs.size, std::memory_order_relaxed);
  } else {
    counters_.files_resumed.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes_resumed.fetch_add(attrs.size, std::memory_order_relaxed);
  }
  return true;
}

// --checksum: is the destination's file the source's bytes? Each end
// hashes its own file where it lives (Backend::checksum: xferd hashes on
// the server, so no content crosses the network). An endpoint without
// hashing (an older xferd: kUnsupported) is compared byte by byte, its
// bytes read across.
Result<bool> Engine::same_content(const FileTask& task, Source& source, std::uint64_t size) {
  const Root& root = roots_[task.root];
  Backend& destination = *root.destination;
  const std::string& path = task.destination;
  // A server busy hashing for this subject (UNAVAILABLE) is asked again
  // after the retry policy's backoff; a comparison that cannot be made
  // means a copy, which is never wrong.
  auto with_retries = [&](Backend& b, const std::string& p) {
    for (unsigned attempt = 1;; ++attempt) {
      auto d = b.checksum(p, size, cancel_);
      if (d || !scheduler_.retry(d.error(), attempt, RetryScope::kCall)) return d;
    }
  };
  auto their_digest = with_retries(destination, path);
  if (their_digest) {
    if (their_digest->size != size) return false;
    auto ours = with_retries(*root.source, task.source);
    if (ours) {
      counters_.files_hashed.fetch_add(2, std::memory_order_relaxed);
      return ours->same_bytes(*their_digest) && ours->size == source.attrs().size;
    }
    if (ours.error().code != ErrorCode::kUnsupported) return ours.error();
  } else if (their_digest.error().code != ErrorCode::kUnsupported) {
    return their_digest.error();
  }
  XFER_ASSIGN_OR_RETURN(std::unique_ptr<Source> theirs, destination.open_source(path));
  if (theirs->attrs().size != size) return false;
  Buffer ours_buf = pool_.acquire();
  Buffer theirs_buf = pool_.acquire();
  for (std::uint64_t pos = 0; pos < size; pos += opt_.io_size) {
    if (cancelled()) return make_error(ErrorCode::kCancelled, "compare", path);
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(opt_.io_size, size - pos));
    XFER_ASSIGN_OR_RETURN(std::size_t a,
                          source.read_at(Offset{pos}, ours_buf.writable().subspan(0, n)));
    XFER_ASSIGN_OR_RETURN(std::size_t b,
                          theirs->read_at(Offset{pos}, theirs_buf.writable().subspan(0, n)));
    if (a != n || b != n || std::memcmp(ours_buf.data(), theirs_buf.data(), n) != 0) return false;
  }
  return true;
}

}  // namespace xfer::detail
