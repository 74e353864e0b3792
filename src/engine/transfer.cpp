// The transfer engine. Threading (docs/threading.md): one scanner thread walks
// the sources and feeds a bounded queue; N worker threads take whole files or
// chunks of open large files from the Scheduler; the worker that ends the last
// chunk of a file is its finalizer (the fence: verify, check the source did not
// change, commit). Directory attributes are applied after all workers joined.
//
// This file: run() (the threads and the order of the parts) and the
// backends of a transfer; the parts are in scanner.cpp, workers.cpp,
// verifier.cpp, finalizer.cpp and job_state.cpp (engine.hpp).

#include "engine/engine.hpp"
#include "engine/third_party.hpp"

namespace xfer {
namespace detail {

void Engine::report(Error e) {
  if (e.path.empty()) e.path = "?";
  counters_.errors.fetch_add(1, std::memory_order_relaxed);
  if (observer_ != nullptr) observer_->on_error(e);
  std::lock_guard lock(errors_mu_);
  if (errors_.size() < 100) errors_.push_back(std::move(e));
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
  with_options.cc = opt_.cc;
  with_options.bind = opt_.bind;
  with_options.streams_max = opt_.streams_max;
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

Result<TransferResult> Engine::run() {
  auto start = Clock::now();
  // Local paths as absolute ones: the job record and the checkpoint's file
  // keys then name the same files whichever folder `xfer resume ID` (or
  // `xfer jobs rm`) runs from. Remote URLs and NAME:path stay as typed.
  auto absolute = [&](const std::string& text) {
    auto url = backends_registry_->parse(text);
    if (!url || !url->is_local()) return text;
    std::error_code ec;
    std::string abs = std::filesystem::absolute(url->path, ec).lexically_normal().string();
    if (ec || abs.empty()) return text;
    if (url->trailing_slash && abs.back() != '/') abs += '/';
    return abs;
  };
  for (auto& s : req_.sources) s = absolute(s);
  req_.destination = absolute(req_.destination);
  if (!opt_.filter.empty()) XFER_TRY(filter_.add_filter_text(opt_.filter, "filter"));
  if (!opt_.files_from.empty()) files_from_.load(opt_.files_from);
  const bool checkpointing = opt_.checkpoint && !opt_.dry_run;
  Status locked = checkpointing ? lock_job() : ok_status();
  if (opt_.checkpoint && opt_.dry_run) {
    // A dry run shows what the real run would do: copy to where the job's
    // earlier run did (job_state.cpp), without taking the job.
    const std::string root = opt_.state_root.empty() ? default_state_root() : opt_.state_root;
    const std::string id = opt_.job_id.empty() ? derive_job_id(req_) : opt_.job_id;
    if (auto previous = read_job(root, id); previous && previous->into_dir >= 0) {
      forced_into_dir_ = previous->into_dir == 1;
    }
  }
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
  // how far a job got, even one that is later killed, and once as soon as
  // the scan is complete, so the totals are there from then on.
  std::thread watcher([&] {
    auto last_job_write = Clock::now();
    bool totals_written = false;
    while (!finished.load()) {
      if (cancelled()) {
        scheduler_.cancel();
        // Workers blocked on the network (a server that stopped answering)
        // wake now, not at their call's timeout.
        cancel_backends();
        return;
      }
      const bool totals_known =
          !totals_written && counters_.scan_complete.load(std::memory_order_relaxed);
      if (ckpt_ && (totals_known || Clock::now() - last_job_write >= std::chrono::seconds(2))) {
        totals_written = totals_written || totals_known;
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

  // Sync's deletions once every copy is committed (sync.cpp decides
  // whether they may run), then the folders' attributes: a deletion
  // changes its folder's mtime.
  if (opt_.sync && !opt_.delete_before) run_deletions(deletions_);

  // Directory attributes last, children before parents, so a read-only
  // directory is filled before it becomes read-only and its mtime is final.
  if (!cancelled()) apply_dir_fixups();

  TransferResult result;
  result.files_done = counters_.files_done.load();
  result.files_failed = counters_.files_failed.load();
  result.files_skipped = counters_.files_skipped.load();
  result.bytes_done = counters_.bytes_done.load();
  result.retries = counters_.retries.load();
  result.errors_repaired = errors_repaired_.load();
  result.cancelled = cancelled();
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  result.peak_buffer_bytes = governor_.peak();
  {
    std::lock_guard lock(errors_mu_);
    result.errors = errors_;
  }
  result.files_resumed = counters_.files_resumed.load();
  result.bytes_resumed = counters_.bytes_resumed.load();
  result.files_unchanged = counters_.files_unchanged.load();
  result.bytes_unchanged = counters_.bytes_unchanged.load();
  result.files_deleted = counters_.files_deleted.load();
  result.files_attrs_set = counters_.files_attrs_set.load();
  {
    std::lock_guard lock(latency_mu_);
    result.propagated = latency_count_;
    result.propagation_max_ms = latency_max_ms_;
    if (!latencies_ms_.empty()) {
      auto at = [this](double q) {
        const std::size_t k =
            std::min(latencies_ms_.size() - 1,
                     static_cast<std::size_t>(q * static_cast<double>(latencies_ms_.size())));
        std::nth_element(latencies_ms_.begin(),
                         latencies_ms_.begin() + static_cast<std::ptrdiff_t>(k),
                         latencies_ms_.end());
        return latencies_ms_[k];
      };
      result.propagation_p50_ms = at(0.50);
      result.propagation_p99_ms = at(0.99);
    }
  }
  if (ckpt_) close_job(result);
  return result;
}

}  // namespace detail

Result<TransferResult> run_transfer(const TransferRequest& request, TransferCounters& counters,
                                    TransferObserver* observer, const std::atomic<bool>* cancel) {
  // Both ends on xfer servers: the source server sends straight to the
  // destination; this process only follows the job.
  if (is_third_party(request) && !request.options.dry_run) {
    return run_third_party(request, counters, observer, cancel);
  }
  detail::Engine engine(request, counters, observer, cancel);
  return engine.run();
}

}  // namespace xfer
