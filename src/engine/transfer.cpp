// The transfer engine. Threading (docs/threading.md): one scanner thread walks
// the sources and feeds a bounded queue; N worker threads take whole files or
// chunks of open large files from the Scheduler; the worker that ends the last
// chunk of a file is its finalizer (the fence: verify, check the source did not
// change, commit). Directory attributes are applied after all workers joined.

#include "xfer/engine/transfer.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "planner.hpp"
#include "retry.hpp"
#include "scheduler.hpp"
#include "third_party.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/checkpoint/checkpoint.hpp"
#include "xfer/core/checksum.hpp"
#include "xfer/core/limits.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"
#include "xfer/engine/jobs.hpp"
#include "xfer/io/buffer_pool.hpp"
#include "xfer/io/rate_limiter.hpp"

namespace xfer {
namespace {

using Clock = std::chrono::steady_clock;

// One (source endpoint, destination endpoint) pair: a top-level SRC argument.
struct Root {
  Backend* source = nullptr;
  Backend* destination = nullptr;
  std::string source_path;
  std::string destination_path;
  FileAttrs source_attrs;
};

struct DirFixup {
  std::size_t root;
  std::string destination;
  FileAttrs attrs;
};

bool all_zero(std::span<const std::byte> data) {
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
        opt_(request.options),
        backends_registry_(request.backends ? request.backends : BackendRegistry::with_builtins()),
        counters_(counters),
        observer_(observer),
        cancel_(cancel),
        governor_(opt_.memory),
        pool_(governor_, opt_.io_size),
        limiter_(opt_.bwlimit),
        retry_(opt_.max_attempts, opt_.retry_base, opt_.retry_cap),
        scheduler_(4096),
        zero_copy_(opt_.zero_copy && !opt_.verify && !opt_.direct) {}

  Result<TransferResult> run();

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
  bool skip_if_done(const FileTask& task, const FileAttrs& attrs);

  // Scanner thread.
  void scan();
  void scan_tree(std::size_t root_index);

  // Workers.
  void worker_loop();
  void process_file(FileTask task);
  void process_symlink(const FileTask& task);
  Status copy_whole(const FileTask& task, Source& source, unsigned attempt);
  void run_chunk(WorkItem item);
  void finalize_chunked(std::shared_ptr<ChunkedFile> file);
  SinkOptions sink_options(const FileAttrs& attrs) const;
  Status start_chunked(const std::shared_ptr<ChunkedFile>& file);
  Status copy_range(Source& source, Sink& sink, std::uint64_t begin, std::uint64_t end, bool sparse,
                    std::uint64_t* hashes, std::atomic<std::uint64_t>* counted,
                    Xxh3Stream* chunk_hash = nullptr);
  Result<bool> resumed_chunk_intact(ChunkedFile& file, std::uint64_t chunk);
  Status verify_pieces(Sink& sink, std::uint64_t size, const std::uint64_t* hashes);

  void report(Error e);
  bool cancelled() const { return cancel_ != nullptr && cancel_->load(std::memory_order_relaxed); }
  void backoff(unsigned attempt);

  const TransferRequest& req_;
  const TransferOptions& opt_;
  std::shared_ptr<const BackendRegistry> backends_registry_;  // URL scheme -> backend
  TransferCounters& counters_;
  TransferObserver* observer_;
  const std::atomic<bool>* cancel_;

  MemoryGovernor governor_;
  BufferPool pool_;
  RateLimiter limiter_;
  RetryPolicy retry_;
  Scheduler scheduler_;
  std::atomic<bool> zero_copy_;

  // Added to by resolve_roots (under backends_mu_, while the early cancel
  // watcher may read it); fixed once the transfer runs.
  std::mutex backends_mu_;
  std::vector<std::pair<std::string, std::unique_ptr<Backend>>> backends_;
  std::vector<Root> roots_;
  std::vector<DirFixup> dir_fixups_;  // scanner thread only, until it joins

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
};

void Engine::report(Error e) {
  if (e.path.empty()) e.path = "?";
  counters_.errors.fetch_add(1, std::memory_order_relaxed);
  if (observer_ != nullptr) observer_->on_error(e);
  std::lock_guard lock(errors_mu_);
  if (errors_.size() < 100) errors_.push_back(std::move(e));
}

void Engine::backoff(unsigned attempt) {
  counters_.retries.fetch_add(1, std::memory_order_relaxed);
  auto delay = retry_.backoff(attempt);
  auto until = Clock::now() + delay;
  while (Clock::now() < until && !cancelled()) {
    std::this_thread::sleep_for(
        std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(20)));
  }
}

Result<Backend*> Engine::backend_for(const Url& url, const EndpointOptions& options) {
  std::string key = url.scheme + "://" + url.user + "@" + url.host + ":" + std::to_string(url.port);
  for (auto& [k, b] : backends_) {
    if (k == key) return b.get();
  }
  // The data-channel options are transfer options (options.inc); the
  // backend takes them with the endpoint's credentials.
  EndpointOptions with_options = options;
  with_options.streams = opt_.streams;
  with_options.encrypt = opt_.encrypt;
  XFER_ASSIGN_OR_RETURN(auto backend, backends_registry_->create(url, with_options));
  std::lock_guard lock(backends_mu_);
  if (cancelled()) backend->cancel();  // made after the cancel reached the others
  backends_.emplace_back(key, std::move(backend));
  return backends_.back().second.get();
}

void Engine::cancel_backends() {
  std::lock_guard lock(backends_mu_);
  for (auto& [key, backend] : backends_) backend->cancel();
}

// cp semantics (docs/cli.md): DST is a directory target when it exists as a
// directory, ends in '/', or there are several sources.
Status Engine::resolve_roots() {
  if (req_.sources.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "transfer", "", "no source given");
  }
  XFER_ASSIGN_OR_RETURN(Url dst_url, backends_registry_->parse(req_.destination));
  XFER_ASSIGN_OR_RETURN(Backend * dst, backend_for(dst_url, opt_.destination_endpoint));
  auto dst_attrs = dst->stat(dst_url.path);
  bool dst_exists = dst_attrs.ok();
  if (!dst_exists && dst_attrs.error().code != ErrorCode::kNotFound) return dst_attrs.error();
  if (dst_exists && dst_attrs->type == EntryType::kSymlink) {
    // A symlink to a directory counts as that directory, as with cp.
    std::error_code ec;
    if (dst_url.is_local() && std::filesystem::is_directory(dst_url.path, ec)) {
      dst_attrs->type = EntryType::kDirectory;
    }
  }
  bool dst_is_dir = dst_exists && dst_attrs->type == EntryType::kDirectory;
  bool into_dir = copies_into_destination(dst_is_dir, dst_url.trailing_slash, req_.sources.size());
  if (forced_into_dir_) into_dir = *forced_into_dir_;
  into_dir_ = into_dir;
  if (into_dir && dst_exists && !dst_is_dir) {
    return make_error(ErrorCode::kNotDirectory, "transfer", dst_url.path,
                      "destination is not a directory");
  }

  std::optional<Error> first_error;
  for (const auto& src_text : req_.sources) {
    auto fail = [&](Error e) {
      if (!first_error) first_error = e;
      report(std::move(e));
    };
    auto src_url = backends_registry_->parse(src_text);
    if (!src_url) {
      fail(src_url.error());
      continue;
    }
    auto src = backend_for(*src_url, opt_.source_endpoint);
    if (!src) {
      fail(src.error());
      continue;
    }
    auto attrs = (*src)->stat(src_url->path);
    if (!attrs) {
      fail(attrs.error());
      continue;
    }
    if (attrs->type == EntryType::kDirectory && !opt_.recursive) {
      fail(make_error(ErrorCode::kIsDirectory, "transfer", src_url->path,
                      "is a directory (use -r)"));
      continue;
    }
    if (attrs->type == EntryType::kOther) {
      fail(make_error(ErrorCode::kUnsupported, "transfer", src_url->path,
                      "not a regular file, directory or symlink"));
      continue;
    }
    Root root;
    root.source = *src;
    root.destination = dst;
    root.source_path = src_url->path;
    root.source_attrs = *attrs;
    root.destination_path =
        into_dir ? join_path(dst_url.path, base_name(src_url->path)) : dst_url.path;
    if (into_dir && base_name(src_url->path).empty()) {
      fail(make_error(ErrorCode::kInvalidArgument, "transfer", src_url->path,
                      "cannot copy the root directory into a directory by name"));
      continue;
    }
    if (src_url->is_local() && dst_url.is_local()) {
      std::error_code ec1, ec2;
      auto s = std::filesystem::weakly_canonical(root.source_path, ec1);
      auto d = std::filesystem::weakly_canonical(root.destination_path, ec2);
      if (!ec1 && !ec2) {
        auto ss = s.string(), ds = d.string();
        if (ds == ss) {
          fail(make_error(ErrorCode::kInvalidArgument, "transfer", root.source_path,
                          "source and destination are the same file"));
          continue;
        }
        if (attrs->type == EntryType::kDirectory && path_within(ds, ss)) {
          fail(make_error(ErrorCode::kInvalidArgument, "transfer", root.destination_path,
                          "destination is inside the source " + root.source_path));
          continue;
        }
      }
    }
    auto existing = dst->stat(root.destination_path);
    if (existing && attrs->type == EntryType::kDirectory &&
        existing->type != EntryType::kDirectory) {
      fail(make_error(ErrorCode::kNotDirectory, "transfer", root.destination_path,
                      "cannot overwrite a non-directory with a directory"));
      continue;
    }
    if (existing && attrs->type != EntryType::kDirectory &&
        existing->type == EntryType::kDirectory) {
      fail(make_error(ErrorCode::kIsDirectory, "transfer", root.destination_path,
                      "cannot overwrite a directory with a non-directory"));
      continue;
    }
    roots_.push_back(std::move(root));
  }
  if (roots_.empty()) {
    return first_error ? *first_error
                       : make_error(ErrorCode::kInvalidArgument, "transfer", "", "nothing to do");
  }
  if (into_dir && !dst_exists && !opt_.dry_run) XFER_TRY(dst->mkdir(dst_url.path, true));
  return ok_status();
}

void Engine::scan() {
  for (std::size_t i = 0; i < roots_.size() && !cancelled(); ++i) {
    const Root& root = roots_[i];
    if (root.source_attrs.type == EntryType::kDirectory) {
      scan_tree(i);
      continue;
    }
    counters_.files_total.fetch_add(1, std::memory_order_relaxed);
    if (!scheduler_.push_file(
            {i, root.source_path, root.destination_path, root.source_attrs.type})) {
      break;
    }
  }
  counters_.scan_complete.store(true, std::memory_order_relaxed);
  scheduler_.close_input();
}

// Depth-first walk with an explicit stack of directories. Only directory
// paths are held (never file entries), so memory is bounded by the tree's
// breadth of pending directories, not by its number of files.
void Engine::scan_tree(std::size_t root_index) {
  const Root& root = roots_[root_index];
  struct Pending {
    std::string source;
    std::string destination;
  };
  std::vector<Pending> stack{{root.source_path, root.destination_path}};
  while (!stack.empty() && !cancelled()) {
    Pending dir = std::move(stack.back());
    stack.pop_back();
    auto attrs = root.source->stat(dir.source);
    if (!attrs) {
      report(attrs.error());
      continue;
    }
    if (opt_.dry_run) {
      if (observer_ != nullptr) observer_->on_planned(dir.source + "/", dir.destination + "/", 0);
    } else {
      Status made = root.destination->mkdir(dir.destination, false);
      if (!made.ok() && made.error().code != ErrorCode::kExists) {
        report(made.error());
        continue;  // nothing below can be written
      }
      if (!made.ok()) {
        auto existing = root.destination->stat(dir.destination);
        if (!existing || existing->type != EntryType::kDirectory) {
          report(make_error(ErrorCode::kNotDirectory, "mkdir", dir.destination,
                            "exists and is not a directory"));
          continue;
        }
      } else {
        counters_.dirs_created.fetch_add(1, std::memory_order_relaxed);
      }
      dir_fixups_.push_back({root_index, dir.destination, *attrs});
    }
    std::vector<Pending> subdirs;
    Status listed = root.source->list(dir.source, {}, [&](Entry&& e) -> Status {
      std::string src = join_path(dir.source, e.name);
      std::string dst = join_path(dir.destination, e.name);
      switch (e.type) {
        case EntryType::kDirectory:
          subdirs.push_back({std::move(src), std::move(dst)});
          break;
        case EntryType::kFile:
        case EntryType::kSymlink:
          counters_.files_total.fetch_add(1, std::memory_order_relaxed);
          if (!scheduler_.push_file({root_index, std::move(src), std::move(dst), e.type})) {
            return make_error(ErrorCode::kCancelled, "scan", dir.source);
          }
          break;
        case EntryType::kOther:
          counters_.files_skipped.fetch_add(1, std::memory_order_relaxed);
          if (observer_ != nullptr) {
            observer_->on_warning(fmt::format("skipping {}: not a regular file", src));
          }
          break;
      }
      return ok_status();
    });
    if (!listed.ok()) {
      if (listed.error().code == ErrorCode::kCancelled) return;
      report(listed.error());
    }
    // Push in reverse so the walk visits subdirectories in listing order.
    for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) stack.push_back(std::move(*it));
  }
}

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
    if (observer_ != nullptr) observer_->on_planned(task.source, task.destination, 0);
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
  Status s = root.destination->symlink(attrs->symlink_target, task.destination, *attrs);
  if (!s.ok()) {
    counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
    report(s.error());
    return;
  }
  counters_.files_done.fetch_add(1, std::memory_order_relaxed);
}

void Engine::process_file(FileTask task) {
  if (task.type == EntryType::kSymlink) {
    process_symlink(task);
    scheduler_.file_classified();
    return;
  }
  const Root& root = roots_[task.root];
  unsigned attempt = 1;
  for (;;) {
    auto opened = root.source->open_source(task.source);
    if (!opened) {
      Error e = opened.error();
      if (retry_.retry_call(e, attempt) && !cancelled()) {
        backoff(attempt++);
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
    if (opt_.dry_run) {
      scheduler_.file_classified();
      if (observer_ != nullptr) observer_->on_planned(task.source, task.destination, size);
      counters_.files_done.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (attempt == 1 && skip_if_done(task, source->attrs())) {
      scheduler_.file_classified();
      return;
    }
    FilePlan plan =
        plan_file(size, root.source->capabilities(), root.destination->capabilities(), opt_);
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
        return;
      }
      Error e = s.error();
      if (e.code != ErrorCode::kCancelled && retry_.retry_file(e, attempt) && !cancelled()) {
        log().info("retrying {}: {}", task.source, e.message());
        backoff(attempt++);
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
  SinkOptions so = sink_options(attrs);
  XFER_ASSIGN_OR_RETURN(std::unique_ptr<Sink> sink,
                        root.destination->open_sink(task.destination, so));
  std::vector<std::uint64_t> hashes;
  if (opt_.verify) hashes.resize((attrs.size + opt_.io_size - 1) / opt_.io_size + 1);
  std::atomic<std::uint64_t> counted{0};
  Status copied = copy_range(source, *sink, 0, attrs.size, so.sparse,
                             opt_.verify ? hashes.data() : nullptr, &counted);
  if (copied.ok()) copied = source.check_unchanged();
  if (copied.ok() && opt_.verify) copied = verify_pieces(*sink, attrs.size, hashes.data());
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
    (void)ckpt_->finish_file({checkpoint::file_key(task.destination), attrs.size, attrs.mtime_ns},
                             false);
  }
  return ok_status();
}

// The sink for a source with `attrs`: its size and attributes, sparse when
// the source has fewer bytes allocated than its size (holes stay holes).
SinkOptions Engine::sink_options(const FileAttrs& attrs) const {
  SinkOptions so;
  so.size = attrs.size;
  so.attrs = attrs;
  so.sparse = attrs.size > 0 && attrs.allocated < attrs.size;
  so.direct = opt_.direct;
  so.fsync = opt_.fsync;
  return so;
}

Status Engine::start_chunked(const std::shared_ptr<ChunkedFile>& file) {
  const Root& root = roots_[file->task.root];
  const FileAttrs& attrs = file->source->attrs();
  SinkOptions so = sink_options(attrs);
  file->sparse = so.sparse;
  file->resume_done.clear();
  file->resume_hashes.clear();
  if (ckpt_ && root.destination->capabilities().resume) {
    checkpoint::FileBegin begin{file->key,        attrs.size,        attrs.mtime_ns,
                                file->chunk_size, file->task.source, file->task.destination};
    checkpoint::Progress progress = ckpt_->begin_file(begin);
    so.resume_name = job_.id.substr(0, 12);
    so.resume_existing = progress.done_count() > 0;
    XFER_ASSIGN_OR_RETURN(file->sink, root.destination->open_sink(file->task.destination, so));
    if (so.resume_existing && !file->sink->resumed()) {
      // The partial is gone (deleted by hand?): start the file over.
      ckpt_->reset_file(file->key);
      (void)ckpt_->begin_file(begin);
    } else if (so.resume_existing) {
      file->resume_done = std::move(progress.done);
      file->resume_hashes = std::move(progress.hashes);
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
  for (unsigned attempt = 1; !failure; ++attempt) {
    Xxh3Stream hasher;
    Status s =
        copy_range(*file->source, *file->sink, begin, end, file->sparse, file->piece_hashes.get(),
                   &file->bytes_counted, opt_.verify ? &hasher : nullptr);
    if (s.ok()) {
      if (opt_.verify) chunk_hash = hasher.digest();
      break;
    }
    if (s.error().code != ErrorCode::kCancelled && retry_.retry_call(s.error(), attempt) &&
        !cancelled()) {
      backoff(attempt);
      continue;
    }
    failure = s.error();
    break;
  }
  if (!failure) {
    counters_.chunks_done.fetch_add(1, std::memory_order_relaxed);
    if (ckpt_) ckpt_->chunk_done(file->key, item.chunk, chunk_hash);
  }
  if (scheduler_.chunk_finished(file, std::move(failure))) finalize_chunked(std::move(file));
}

// --verify on resume: is chunk `chunk` of the partial intact? Compared with
// the XXH3 the journal recorded, or, when none was (zero-copy), with the
// source's bytes. Fills the piece hashes the final verification reads.
Result<bool> Engine::resumed_chunk_intact(ChunkedFile& file, std::uint64_t chunk) {
  const std::uint64_t begin = chunk * file.chunk_size;
  const std::uint64_t end = std::min(file.size, begin + file.chunk_size);
  const std::uint64_t recorded = chunk < file.resume_hashes.size() ? file.resume_hashes[chunk] : 0;
  Buffer dst = pool_.acquire();
  Xxh3Stream dst_hash, src_hash;
  for (std::uint64_t pos = begin; pos < end; pos += opt_.io_size) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(opt_.io_size, end - pos));
    XFER_ASSIGN_OR_RETURN(std::size_t got,
                          file.sink->read_back(Offset{pos}, dst.writable().subspan(0, n)));
    if (got != n) return false;
    std::span<const std::byte> bytes(dst.data(), n);
    dst_hash.update(bytes);
    if (file.piece_hashes) file.piece_hashes[pos / opt_.io_size] = xxh3_64(bytes);
    if (recorded == 0) {
      Buffer src = pool_.acquire();
      XFER_ASSIGN_OR_RETURN(std::size_t sgot,
                            file.source->read_at(Offset{pos}, src.writable().subspan(0, n)));
      if (sgot != n) return false;
      src_hash.update({src.data(), n});
    }
  }
  return dst_hash.digest() == (recorded != 0 ? recorded : src_hash.digest());
}

// The fence: runs once per attempt, after every chunk of the file returned.
void Engine::finalize_chunked(std::shared_ptr<ChunkedFile> file) {
  std::optional<Error> failure = file->failure;
  if (!failure && cancelled())
    failure = make_error(ErrorCode::kCancelled, "copy", file->task.source);
  if (!failure) {
    Status s = file->source->check_unchanged();
    if (s.ok() && opt_.verify) s = verify_pieces(*file->sink, file->size, file->piece_hashes.get());
    if (s.ok()) s = file->sink->commit();
    if (s.ok() && ckpt_) {
      // The last synchronous flush of this file: done in the journal and the
      // done-index before we call it done.
      const FileAttrs& a = file->source->attrs();
      s = ckpt_->finish_file({file->key, a.size, a.mtime_ns}, true);
    }
    if (s.ok()) {
      counters_.files_done.fetch_add(1, std::memory_order_relaxed);
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
  if (retry_.retry_file(e, file->attempt)) {
    log().info("retrying {}: {}", file->task.source, e.message());
    backoff(file->attempt);
    ++file->attempt;
    const Root& root = roots_[file->task.root];
    auto reopened = root.source->open_source(file->task.source);
    if (reopened) {
      const std::uint64_t old_size = file->size;
      file->source = std::move(reopened).value();
      file->size = file->source->attrs().size;
      counters_.bytes_total.fetch_add(file->size, std::memory_order_relaxed);
      counters_.bytes_total.fetch_sub(old_size, std::memory_order_relaxed);
      FilePlan plan = plan_file(file->size, root.source->capabilities(),
                                root.destination->capabilities(), opt_);
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

// Copies [begin, end) of source into sink at the same offsets. Pieces of
// io_size go through a pooled buffer (or copy_file_range when allowed);
// `hashes[i]` receives the XXH3 of piece i (offset / io_size) for --verify.
Status Engine::copy_range(Source& source, Sink& sink, std::uint64_t begin, std::uint64_t end,
                          bool sparse, std::uint64_t* hashes, std::atomic<std::uint64_t>* counted,
                          Xxh3Stream* chunk_hash) {
  const std::uint64_t io = opt_.io_size;
  std::uint64_t pos = begin;
  if (zero_copy_.load(std::memory_order_relaxed) && !sparse && hashes == nullptr &&
      chunk_hash == nullptr) {
    // Zero-copy pieces stay large (4 io units) to amortise the syscall, and
    // small enough for smooth progress and rate limiting.
    const std::uint64_t piece = io * 4;
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
    }
    if (pos >= end) return ok_status();
  }
  Buffer buf = pool_.acquire();
  while (pos < end) {
    if (cancelled()) return make_error(ErrorCode::kCancelled, "copy", "");
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(io, end - pos));
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
    if (!(sparse && all_zero(data))) XFER_TRY(sink.write_at(Offset{pos}, data));
    pos += n;
    counters_.bytes_done.fetch_add(n, std::memory_order_relaxed);
    counted->fetch_add(n, std::memory_order_relaxed);
  }
  return ok_status();
}

// --verify: read every piece back from the sink and compare its XXH3 with
// the one taken from the source bytes. A mismatch is kCorrupt/RetryFile.
Status Engine::verify_pieces(Sink& sink, std::uint64_t size, const std::uint64_t* hashes) {
  Buffer buf = pool_.acquire();
  const std::uint64_t io = opt_.io_size;
  for (std::uint64_t pos = 0; pos < size; pos += io) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(io, size - pos));
    XFER_ASSIGN_OR_RETURN(std::size_t got,
                          sink.read_back(Offset{pos}, buf.writable().subspan(0, n)));
    if (got != n || xxh3_64({buf.data(), n}) != hashes[pos / io]) {
      return make_error(ErrorCode::kCorrupt, "verify", "",
                        fmt::format("destination differs from source at offset {}", pos),
                        RetryClass::kRetryFile);
    }
    counters_.bytes_verified.fetch_add(n, std::memory_order_relaxed);
  }
  return ok_status();
}

Result<TransferResult> Engine::run() {
  auto start = Clock::now();
  const bool checkpointing = opt_.checkpoint && !opt_.dry_run;
  Status locked = checkpointing ? lock_job() : ok_status();
  // Two processes must not run one job (they would share its partials).
  if (!locked.ok() && locked.error().code == ErrorCode::kUnavailable) return locked.error();
  // Resolving the roots already talks to servers (a Stat each): a cancel
  // during it reaches those calls too.
  Status resolved = ok_status();
  {
    std::atomic<bool> done{false};
    std::thread early([&] {
      while (!done.load()) {
        if (cancelled()) {
          cancel_backends();
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    resolved = resolve_roots();
    done.store(true);
    early.join();
  }
  if (!resolved.ok()) {
    // Nothing started: leave no empty job folder behind for a new job.
    if (checkpointing && locked.ok() && !previous_job_) {
      ::close(lock_fd_);
      lock_fd_ = -1;
      (void)remove_job(state_root_, job_.id);
    }
    return std::move(resolved).error();
  }
  if (checkpointing) {
    Status opened = locked.ok() ? open_job() : locked;
    if (!opened.ok()) {
      // Anything else (a read-only or full state folder) costs resumability,
      // not the transfer: say so and go on without checkpoints.
      ckpt_.reset();
      if (lock_fd_ >= 0) ::close(lock_fd_);
      lock_fd_ = -1;
      if (observer_ != nullptr) {
        observer_->on_warning("checkpoints disabled (this transfer cannot be resumed): " +
                              opened.error().message());
      }
    }
  }

  // Default 64 (options.inc): measured, small files keep improving up to 64
  // here. At most what both endpoints allow.
  unsigned workers = opt_.workers;
  for (const auto& root : roots_) {
    workers = std::min({workers, root.source->capabilities().max_concurrency,
                        root.destination->capabilities().max_concurrency});
  }
  workers = std::max(workers, 1u);

  std::thread scanner([this] { scan(); });
  std::vector<std::thread> pool;
  scheduler_.set_pressure([this] { return governor_.pressure(); });
  pool.reserve(workers);
  for (unsigned i = 0; i < workers; ++i) pool.emplace_back([this] { worker_loop(); });

  // Cancellation arrives as a flag (maybe from a signal handler): poll it and
  // tell the scheduler, which wakes every waiting thread.
  std::atomic<bool> finished{false};
  // It also refreshes job.json's progress every 2 s so `xfer jobs` can show
  // how far a job got, even one that is later killed.
  std::thread watcher([&] {
    auto last_job_write = Clock::now();
    while (!finished.load()) {
      if (cancelled()) {
        scheduler_.cancel();
        // Workers blocked on the network (a server that stopped answering)
        // wake now, not at their call's timeout.
        cancel_backends();
        return;
      }
      if (ckpt_ && Clock::now() - last_job_write >= std::chrono::seconds(2)) {
        fill_job_progress(counters_.files_done.load(),
                          counters_.bytes_done.load() + counters_.bytes_resumed.load());
        (void)write_job(state_root_, job_);
        last_job_write = Clock::now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  scanner.join();
  for (auto& t : pool) t.join();
  finished.store(true);
  watcher.join();

  // Directory attributes last, children before parents, so a read-only
  // directory is filled before it becomes read-only and its mtime is final.
  if (!cancelled()) {
    for (auto it = dir_fixups_.rbegin(); it != dir_fixups_.rend(); ++it) {
      Status s = roots_[it->root].destination->set_attrs(it->destination, it->attrs);
      if (!s.ok()) report(s.error());
    }
  }

  TransferResult result;
  result.files_done = counters_.files_done.load();
  result.files_failed = counters_.files_failed.load();
  result.files_skipped = counters_.files_skipped.load();
  result.bytes_done = counters_.bytes_done.load();
  result.retries = counters_.retries.load();
  result.cancelled = cancelled();
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.peak_buffer_bytes = governor_.peak();
  {
    std::lock_guard lock(errors_mu_);
    result.errors = errors_;
  }
  result.files_resumed = counters_.files_resumed.load();
  result.bytes_resumed = counters_.bytes_resumed.load();
  if (ckpt_) close_job(result);
  return result;
}

// Drops a job's checkpoint files (journal, done-index, snapshots); job.json
// and the lock stay.
void clear_checkpoint_files(const std::string& dir) {
  std::error_code ec;
  for (const char* f : {"journal", "done.idx"}) std::filesystem::remove(dir + "/" + f, ec);
  std::filesystem::remove_all(dir + "/snapshots", ec);
}

// Finds (or creates) the job's folder, takes its lock and reads what an
// earlier run left in job.json. Runs before the roots are resolved: a
// resumed job resolves its destination the way the interrupted run did.
Status Engine::lock_job() {
  state_root_ = opt_.state_root.empty() ? default_state_root() : opt_.state_root;
  job_.id = opt_.job_id.empty() ? derive_job_id(req_) : opt_.job_id;
  // The id becomes a folder name (and, on xferd, arrives from a client).
  XFER_TRY(validate_id(job_.id, "job id"));
  const std::string dir = job_dir(state_root_, job_.id);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return errno_error(ec.value(), "mkdir", dir);
  lock_fd_ = ::open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return errno_error(errno, "open", dir + "/lock");
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return make_error(ErrorCode::kUnavailable, "start job", job_.id,
                      "another xfer process is running this job");
  }
  if (auto previous = read_job(state_root_, job_.id)) {
    previous_job_ = std::move(previous).value();
    resuming_ = previous_job_->status != "done";
    if (resuming_ && previous_job_->into_dir >= 0) forced_into_dir_ = previous_job_->into_dir == 1;
  }
  return ok_status();
}

// Records the job as running and opens its checkpoint, recovering whatever
// an earlier run left.
Status Engine::open_job() {
  const std::string dir = job_dir(state_root_, job_.id);
  job_.created_s = static_cast<std::int64_t>(std::time(nullptr));
  if (previous_job_) {
    job_.created_s = previous_job_->created_s;
    // A finished job run again is a new copy: start from empty state.
    if (!resuming_) clear_checkpoint_files(dir);
  }
  job_.request = req_;
  job_.request.options.job_id.clear();
  job_.status = "running";
  job_.into_dir = into_dir_ ? 1 : 0;
  job_.pid = static_cast<int>(::getpid());
  job_.updated_s = static_cast<std::int64_t>(std::time(nullptr));
  XFER_TRY(write_job(state_root_, job_));
  checkpoint::Options co;
  co.dir = dir;
  XFER_ASSIGN_OR_RETURN(ckpt_, checkpoint::Checkpoint::open(co));
  for (const auto& begun : ckpt_->active_files()) begun_keys_.insert(begun.file_key);
  return ok_status();
}

void Engine::fill_job_progress(std::uint64_t files_done, std::uint64_t bytes_done) {
  job_.updated_s = static_cast<std::int64_t>(std::time(nullptr));
  job_.files_total = counters_.files_total.load();
  job_.files_done = files_done;
  job_.bytes_total = counters_.bytes_total.load();
  job_.bytes_done = bytes_done;
}

void Engine::close_job(TransferResult& result) {
  Status flushed = ckpt_->flush();
  if (!flushed.ok()) report(flushed.error());
  const auto& st = ckpt_->stats();
  result.job_id = job_.id;
  result.journal_records = st.records.load();
  result.journal_fsyncs = st.fsyncs.load();
  result.journal_bytes = st.journal_bytes_total.load();
  result.done_index_bytes = st.done_bytes_total.load();
  result.compactions = st.compactions.load();
  result.snapshots = st.snapshots.load();
  result.checkpoint_max_queue = st.max_queue_depth.load();
  result.checkpoint_max_lag_us = st.max_flush_lag_us.load();
  result.checkpoint_backpressure = st.backpressure_waits.load();
  ckpt_.reset();  // stops the flusher
  const std::uint64_t errors = counters_.errors.load();
  if (result.cancelled) {
    job_.status = "interrupted";
  } else if (errors == 0) {
    job_.status = "done";
  } else {
    job_.status = result.files_done > 0 ? "partial" : "failed";
  }
  fill_job_progress(result.files_done, result.bytes_done + result.bytes_resumed);
  // Nothing left to resume: keep only job.json (for `xfer jobs --all`).
  if (job_.status == "done") clear_checkpoint_files(job_dir(state_root_, job_.id));
  Status w = write_job(state_root_, job_);
  if (!w.ok()) report(w.error());
  ::close(lock_fd_);
  lock_fd_ = -1;
}

// Resume of a whole file: the done-index says it was copied with this size
// and mtime, and the destination still has them.
bool Engine::skip_if_done(const FileTask& task, const FileAttrs& attrs) {
  if (!ckpt_) return false;
  auto done = ckpt_->done(checkpoint::file_key(task.destination));
  const bool recorded = done && done->size == attrs.size && done->mtime_ns == attrs.mtime_ns;
  // When resuming, a destination with the source's size and mtime was
  // published by the interrupted run even if its done record did not reach
  // the disk (xfer sets the mtime at commit): the rsync quick check.
  if (!recorded && !resuming_) return false;
  auto dst = roots_[task.root].destination->stat(task.destination);
  if (!dst || dst->type != EntryType::kFile || dst->size != attrs.size) return false;
  if (roots_[task.root].destination->capabilities().mtime && dst->mtime_ns != attrs.mtime_ns) {
    return false;
  }
  // An earlier run of this job began the file again and was killed (a
  // finished job run again copies anew): its partial beside the whole
  // destination is garbage. Opened as this job's partial and aborted, it
  // is removed, locally or on a server alike.
  const std::uint64_t key = checkpoint::file_key(task.destination);
  if (begun_keys_.count(key) != 0) {
    SinkOptions so = sink_options(attrs);
    so.resume_name = job_.id.substr(0, 12);
    so.resume_existing = true;
    if (auto partial = roots_[task.root].destination->open_sink(task.destination, so)) {
      (void)(*partial)->abort();
    }
    ckpt_->reset_file(key);
  }
  counters_.files_done.fetch_add(1, std::memory_order_relaxed);
  counters_.files_resumed.fetch_add(1, std::memory_order_relaxed);
  counters_.bytes_resumed.fetch_add(attrs.size, std::memory_order_relaxed);
  return true;
}

}  // namespace

Result<TransferResult> run_transfer(const TransferRequest& request, TransferCounters& counters,
                                    TransferObserver* observer, const std::atomic<bool>* cancel) {
  // Both ends on xfer servers: the source server sends straight to the
  // destination; this process only follows the job.
  if (is_third_party(request) && !request.options.dry_run) {
    return run_third_party(request, counters, observer, cancel);
  }
  Engine engine(request, counters, observer, cancel);
  return engine.run();
}

}  // namespace xfer
