// Delta transfer (engine.hpp, docs/sync.md "Delta"): a large file that sync
// found changed is rebuilt at the destination from the blocks of its old
// version there plus the bytes that are new. Each end cuts its own copy
// into content-defined blocks where the bytes live (Backend::signature:
// xferd does it for a server's copy), the worker matches them
// (plan_delta), and the sink copies the matching blocks from the old file
// on its side (Sink::copy_basis) while only the rest crosses the network.
// The new file is written under a temporary name and published atomically,
// like any other; the old one stays until then.
//
// Runs on the worker that took the file; the two signatures are computed
// at once, one of them on a helper thread of its own.

#include <future>

#include "engine/engine.hpp"

namespace xfer::detail {

bool Engine::delta_allowed(const Root& root) const {
  if (opt_.whole_file == 1 || opt_.direct) return false;
  // Where the old version cannot be copied from on its side (sftp://),
  // a delta would read it whole over the network and then send the file
  // whole anyway.
  if (!root.destination->capabilities().basis_copy) return false;
  if (opt_.whole_file == 0) return true;  // --no-whole-file: even between local folders
  return root.source->capabilities().network || root.destination->capabilities().network;
}

Result<bool> Engine::copy_delta(const FileTask& task, Source& source) {
  const Root& root = roots_[task.root];
  const FileAttrs& attrs = source.attrs();
  const CdcParams params = cdc_params_for(std::max(attrs.size, task.old_size));
  const auto t0 = Clock::now();
  Clock::time_point theirs_done;
  auto theirs_future = std::async(std::launch::async, [&] {
    auto sig = root.destination->signature(task.destination, params, task.old_size, cancel_);
    theirs_done = Clock::now();
    return sig;
  });
  auto ours = root.source->signature(task.source, params, attrs.size, cancel_);
  const auto ours_done = Clock::now();
  auto theirs = theirs_future.get();
  auto secs = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  if (!ours) return ours.error();
  if (!theirs) return theirs.error();
  counters_.files_hashed.fetch_add(2, std::memory_order_relaxed);
  if (ours->size != attrs.size || ours->mtime_ns != attrs.mtime_ns) {
    return make_error(ErrorCode::kChanged, "delta", task.source, "file changed while being read",
                      RetryClass::kRetryFile);
  }
  const DeltaPlan plan = plan_delta(*ours, *theirs);
  // Too little in common to pay for the sequential rebuild: sent whole (in
  // parallel chunks where the file is large).
  if (plan.matched_bytes < attrs.size / 8) return false;

  SinkOptions so = sink_options(attrs, root.destination->capabilities());
  so.sparse = false;  // every byte is written or copied
  so.basis = true;
  so.basis_size = theirs->size;
  so.basis_mtime_ns = theirs->mtime_ns;
  XFER_ASSIGN_OR_RETURN(std::unique_ptr<Sink> sink,
                        root.destination->open_sink(task.destination, so));
  std::atomic<std::uint64_t> counted{0};
  std::uint64_t matched = 0;
  Status built = [&]() -> Status {
    for (const DeltaOp& op : plan.ops) {
      if (cancelled()) return make_error(ErrorCode::kCancelled, "delta", task.source);
      if (!op.from_basis) {
        XFER_TRY(
            copy_range(source, *sink, op.offset, op.offset + op.length, false, nullptr, &counted));
        continue;
      }
      XFER_TRY(sink->copy_basis(Offset{op.offset}, Offset{op.basis_offset}, Length{op.length}));
      matched += op.length;
      counters_.bytes_done.fetch_add(op.length, std::memory_order_relaxed);
      counters_.bytes_matched.fetch_add(op.length, std::memory_order_relaxed);
      counted.fetch_add(op.length, std::memory_order_relaxed);
    }
    XFER_TRY(source.check_unchanged());
    if (opt_.verify) XFER_TRY(verify_whole(*sink, attrs.size, ours->digest));
    if ((task.sync & kSyncBackup) != 0) {
      Status b = backup(task.root, task.destination);
      if (!b.ok() && b.error().code != ErrorCode::kNotFound) return b;
    }
    return sink->commit();
  }();
  if (!built.ok()) {
    counters_.bytes_done.fetch_sub(counted.load(), std::memory_order_relaxed);
    counters_.bytes_matched.fetch_sub(matched, std::memory_order_relaxed);
    (void)sink->abort();
    Error e = std::move(built).error();
    if (e.path.empty()) e.path = task.source;
    return e;
  }
  log().debug(
      "delta of {}: signatures {:.2f} s here, {:.2f} s there; rebuilt in {:.2f} s ({} sent, {} "
      "copied)",
      task.source, secs(t0, ours_done), secs(t0, theirs_done),
      secs(std::max(ours_done, theirs_done), Clock::now()), plan.literal_bytes, matched);
  counters_.files_delta.fetch_add(1, std::memory_order_relaxed);
  counters_.chunks_done.fetch_add(1, std::memory_order_relaxed);
  if (ckpt_) {
    (void)ckpt_->finish_file({checkpoint::file_key(task.destination), attrs.size, attrs.mtime_ns},
                             false);
  }
  return true;
}

// --verify of a delta: the rebuilt file read back whole and compared with
// the source's XXH3-128 (its blocks were never all read here).
Status Engine::verify_whole(Sink& sink, std::uint64_t size, const FileDigest& expected) {
  Buffer buf = pool_.acquire();
  const std::uint64_t io = opt_.io_size;
  Xxh3Stream128 hash;
  for (std::uint64_t pos = 0; pos < size; pos += io) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(io, size - pos));
    XFER_ASSIGN_OR_RETURN(std::size_t got,
                          sink.read_back(Offset{pos}, buf.writable().subspan(0, n)));
    if (got != n) {
      return make_error(ErrorCode::kCorrupt, "verify", "",
                        fmt::format("destination is short at offset {}", pos),
                        RetryClass::kRetryFile);
    }
    hash.update({buf.data(), n});
    counters_.bytes_verified.fetch_add(n, std::memory_order_relaxed);
  }
  if (hash.digest() != std::pair{expected.high, expected.low}) {
    return make_error(ErrorCode::kCorrupt, "verify", "",
                      "the file rebuilt from the old one differs from the source",
                      RetryClass::kRetryFile);
  }
  return ok_status();
}

}  // namespace xfer::detail
