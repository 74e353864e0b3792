// xferd's gRPC service, job runner and lifecycle (include/xfer/server/server.hpp).
// gRPC's own thread pool runs the calls; one thread per server-run job.

#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "protocol/conn.hpp"
#include "protocol/grpc_errors.hpp"
#include "protocol/pb_convert.hpp"
#include "server/audit.hpp"
#include "server/confined.hpp"
#include "server/data_server.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/core/files.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"
#include "xfer/core/url.hpp"
#include "xfer/engine/changes.hpp"
#include "xfer/engine/outcome.hpp"
#include "xfer/engine/transfer.hpp"
#include "xfer/metrics/streams.hpp"
#include "xfer/protocol/frame.hpp"
#include "xfer/server/auth.hpp"
#include "xfer/server/root.hpp"
#include "xfer/server/server.hpp"
#include "xfer/v1/xfer.grpc.pb.h"

namespace xfer::server {
namespace {

namespace v1 = ::xfer::v1;
using protocol::to_grpc;

// xferd://<job key>/<server path>: a server-run job's own paths. Only
// job_request() writes such URLs (a peer's paths are server paths, never
// URLs), and each key names the backend of one job, confined to the scope
// of the token that submitted it.
constexpr const char* kRootScheme = "xferd";
// The most text a job request's `filter` option may hold. Matching an entry
// costs at most (rules' bytes) x (path length) steps: 16 KiB of hostile
// patterns on a 4 KiB path is about 0.1 s of one core per entry (256 KiB
// measured 1.6 s), and a job only walks its own token's prefix.
constexpr std::size_t kMaxJobFilterBytes = 16 << 10;
// The most text a job request's `files_from` may hold. PathList keeps the
// text once and a hashed view per path and per folder component (about 50
// bytes each), so 256 KiB of it costs a job at most ~7 MiB (131,072
// one-byte components), max_jobs of them at once.
constexpr std::size_t kMaxJobFilesFromBytes = 256 << 10;

// WatchChanges: what a client may ask for, and how the stream sends. The
// feed between the watcher and the stream holds 1,024 events of at most
// two 4 KiB paths (8 MiB at worst; the watcher waits when it is full, and
// the kernel's queue overflows into a rescan); the changed paths waiting
// for their quiet time are bounded in count and bytes, past which the
// client is told to rescan.
constexpr std::uint32_t kMaxWatchDebounceMs = 60'000;
constexpr std::uint32_t kMinWatchReconcileMs = 1'000;
constexpr std::size_t kWatchFeedCapacity = 1024;
constexpr std::size_t kMaxWatchPending = 100'000;
// Path bytes one stream's watcher holds (its watch table and the paths
// waiting for their quiet time; each path is at most 4 KiB).
constexpr std::size_t kWatchMaxBytes = 16 << 20;
// A write the client has not taken for this long ends the stream.
constexpr auto kWatchWriteStall = std::chrono::seconds(60);
constexpr std::size_t kWatchBatchBytes = 256 << 10;
constexpr int kWatchBatchChanges = 1024;
constexpr auto kWatchHeartbeat = std::chrono::seconds(15);

// Certificates and keys are read whole: a few KiB, never more than this.
constexpr std::size_t kMaxPemBytes = 1 << 20;

using protocol::from_pb;
using protocol::to_pb;

// ---- jobs -------------------------------------------------------------------

// The backends of this server's running jobs by key, for its xferd://
// factory (each server has its own table and registry; keys are unique
// within the server).
class JobRoots {
 public:
  std::string add(std::shared_ptr<Backend> backend) {
    std::lock_guard lock(mu_);
    std::string key = fmt::format("job{}", ++next_);
    roots_[key] = std::move(backend);
    return key;
  }
  void remove(const std::string& key) {
    std::lock_guard lock(mu_);
    roots_.erase(key);
  }
  std::shared_ptr<Backend> find(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = roots_.find(key);
    return it == roots_.end() ? nullptr : it->second;
  }

 private:
  std::mutex mu_;
  std::uint64_t next_ = 0;
  std::map<std::string, std::shared_ptr<Backend>> roots_;
};

// One job's entry in JobRoots, for as long as the job runs.
class JobRoot {
 public:
  JobRoot(std::shared_ptr<JobRoots> roots, std::shared_ptr<Backend> backend)
      : roots_(std::move(roots)), key_(roots_->add(std::move(backend))) {}
  ~JobRoot() { roots_->remove(key_); }
  JobRoot(const JobRoot&) = delete;
  JobRoot& operator=(const JobRoot&) = delete;
  const std::string& key() const { return key_; }

 private:
  std::shared_ptr<JobRoots> roots_;
  std::string key_;
};

struct Job {
  std::string id;
  std::string owner;  // the token subject that submitted it: only it may see the job
  TransferRequest request;
  std::unique_ptr<JobRoot> root;  // its paths, in its submitter's scope; reset when it ends
  TransferCounters counters;
  std::atomic<bool> cancel{false};
  // The submitter's token expiry (seconds since the epoch, 0 = none): the
  // job is stopped then, and `expired` says why.
  std::int64_t expires_at = 0;
  std::atomic<bool> expired{false};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  std::chrono::steady_clock::time_point finished_at;
  JobState state = JobState::kRunning;  // the one job model (engine/outcome.hpp)
  std::string message;
  int exit_code = 0;
  double seconds = 0;
  // Its data streams' statistics (WatchJob reports them).
  std::shared_ptr<StreamStatsBoard> stats = std::make_shared<StreamStatsBoard>();
};

// Server-run jobs: bounded while running (in total and per token subject),
// forgotten after a retention time (their threads joined), visible only to
// the subject that submitted them.
class JobManager {
 public:
  explicit JobManager(const ServerConfig& config) : config_(config) {}
  ~JobManager() { stop(); }

  Result<std::shared_ptr<Job>> submit(const std::string& owner, std::int64_t expires_at,
                                      std::unique_ptr<JobRoot> root, TransferRequest request) {
    auto job = std::make_shared<Job>();
    job->root = std::move(root);
    job->expires_at = expires_at;
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        return make_error(ErrorCode::kUnavailable, "submit job", "", "server is shutting down",
                          RetryClass::kRetryCall);
      }
      prune_locked();
      unsigned running = 0;
      unsigned mine = 0;
      for (auto& [id, j] : jobs_) {
        std::lock_guard jl(j->mu);
        if (j->finished) continue;
        ++running;
        mine += j->owner == owner;
      }
      if (running >= config_.max_jobs) {
        return make_error(ErrorCode::kUnavailable, "submit job", "",
                          fmt::format("server runs {} jobs already", running),
                          RetryClass::kRetryCall);
      }
      if (mine >= config_.max_jobs_per_subject) {
        return make_error(
            ErrorCode::kUnavailable, "submit job", "",
            fmt::format("'{}' runs {} jobs already, the most one token subject may", owner, mine),
            RetryClass::kRetryCall);
      }
      job->id = fmt::format("srv-{}-{}", ++next_,
                            std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
      job->owner = owner;
      request.options.destination_endpoint.stats_board = job->stats;
      job->request = std::move(request);
      jobs_[job->id] = job;
    }
    job->thread = std::thread([job] { run(*job); });
    return job;
  }

  // The job `id` if `owner` submitted it; null otherwise (others' jobs are
  // indistinguishable from jobs that do not exist).
  std::shared_ptr<Job> find(const std::string& id, const std::string& owner) {
    std::lock_guard lock(mu_);
    prune_locked();
    auto it = jobs_.find(id);
    if (it == jobs_.end() || it->second->owner != owner) return nullptr;
    return it->second;
  }

  std::size_t size() {
    std::lock_guard lock(mu_);
    return jobs_.size();
  }

  void stop() {
    std::map<std::string, std::shared_ptr<Job>> jobs;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      jobs = jobs_;
    }
    for (auto& [id, j] : jobs) j->cancel.store(true);
    for (auto& [id, j] : jobs) {
      if (j->thread.joinable()) j->thread.join();
    }
  }

 private:
  // Forgets finished jobs past their retention, and the oldest finished ones
  // beyond max_finished_jobs; their threads have ended and are joined here.
  void prune_locked() {
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>> finished;
    for (auto& [id, j] : jobs_) {
      std::lock_guard jl(j->mu);
      if (j->finished) finished.emplace_back(j->finished_at, id);
    }
    std::sort(finished.begin(), finished.end());
    const std::size_t keep = config_.max_finished_jobs;
    for (std::size_t i = 0; i < finished.size(); ++i) {
      const bool expired =
          now - finished[i].first >= std::chrono::seconds(config_.job_retention_seconds);
      if (!expired && finished.size() - i <= keep) continue;
      auto it = jobs_.find(finished[i].second);
      if (it->second->thread.joinable()) it->second->thread.join();
      jobs_.erase(it);
    }
  }

  static void run(Job& job) {
    class Observer : public TransferObserver {
     public:
      explicit Observer(Job& j) : job_(j) {}
      void on_error(const Error& e) override {
        std::lock_guard lock(job_.mu);
        if (job_.message.empty()) job_.message = e.message();
      }

     private:
      Job& job_;
    } observer(job);
    // Peer-chosen text (paths, subjects, error messages naming paths) is
    // escaped in the log: a name must not forge log lines.
    log().info("job {} for '{}': {} source(s) -> {}", job.id, printable_name(job.owner, 100),
               job.request.sources.size(), printable_name(job.request.destination, 300));
    // The job ends with its submitter's token: every file it opens is
    // checked (the confined backend), and files already open are stopped
    // here at the expiry.
    std::mutex timer_mu;
    std::condition_variable timer_cv;
    bool over = false;
    std::thread timer;
    if (job.expires_at > 0) {
      timer = std::thread([&] {
        std::unique_lock l(timer_mu);
        const auto at = std::chrono::system_clock::from_time_t(job.expires_at);
        if (!timer_cv.wait_until(l, at, [&] { return over; })) {
          job.expired.store(true);
          job.cancel.store(true);
        }
      });
    }
    // Whatever a job meets (an allocation that fails, say), it ends that
    // job, never the server.
    Result<TransferResult> result = [&]() -> Result<TransferResult> {
      try {
        return run_transfer(job.request, job.counters, &observer, &job.cancel);
      } catch (const std::exception& e) {
        return make_error(ErrorCode::kInternal, "run job", "", e.what());
      }
    }();
    if (timer.joinable()) {
      {
        std::lock_guard l(timer_mu);
        over = true;
      }
      timer_cv.notify_all();
      timer.join();
    }
    job.root.reset();
    std::lock_guard lock(job.mu);
    job.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - job.started).count();
    if (!result) {
      job.state = JobState::kFailed;
      job.message = result.error().message();
      job.exit_code = kExitFailure;
    } else if (result->cancelled && job.expired.load()) {
      job.state = JobState::kFailed;
      job.message = "stopped: the token that submitted the job has expired";
      job.exit_code = kExitFailure;
    } else {
      job.exit_code =
          outcome_exit_code(result->cancelled, job.counters.errors.load(), result->files_done);
      job.state = job_state_of(static_cast<ExitCode>(job.exit_code));
    }
    if (result && job.exit_code == kExitOk) {
      job.message = fmt::format("copied {} files ({} bytes) in {:.2f} s", result->files_done,
                                result->bytes_done, result->seconds);
    }
    log().info("job {}: {} ({})", job.id, to_string(job.state), printable_name(job.message, 500));
    job.finished = true;
    job.finished_at = std::chrono::steady_clock::now();
    job.cv.notify_all();
  }

  const ServerConfig& config_;
  std::mutex mu_;
  bool stopping_ = false;
  std::uint64_t next_ = 0;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
};

// ---- the service ------------------------------------------------------------

// Gives back a SubjectQuota slot when the call that took it ends.
struct QuotaRelease {
  SubjectQuota& quota;
  const std::string& subject;
  ~QuotaRelease() { quota.release(subject); }
};

// A refused slot: UNAVAILABLE (try again later), naming the limit met,
// the server's (`server_full`) or the subject's ("'SUBJECT' `subject_has`,
// the most one token subject may").
Error quota_refusal(SubjectQuota::Verdict v, std::string_view operation, std::string server_full,
                    std::string_view subject_has, const std::string& subject) {
  std::string why = v == SubjectQuota::Verdict::kServerFull
                        ? std::move(server_full)
                        : fmt::format("'{}' {}, the most one token subject may",
                                      printable_name(subject, 100), subject_has);
  return make_error(ErrorCode::kUnavailable, operation, "", why, RetryClass::kRetryCall);
}

class Service final : public v1::Xfer::Service {
 public:
  Service(const ServerConfig& config, std::shared_ptr<ConfinedRoot> root,
          std::shared_ptr<const ServerRoot> server_root, SessionRegistry& sessions,
          JobManager& jobs, Audit& audit, std::vector<std::string> data_addresses,
          std::shared_ptr<const BackendRegistry> backends, std::shared_ptr<JobRoots> job_roots)
      : config_(config),
        backends_(std::move(backends)),
        job_roots_(std::move(job_roots)),
        root_(std::move(root)),
        server_root_(std::move(server_root)),
        sessions_(sessions),
        jobs_(jobs),
        audit_(audit),
        data_addresses_(std::move(data_addresses)),
        watches_(config.max_watches_per_subject, config.max_watches),
        change_watches_(config.max_change_watches_per_subject, config.max_change_watches),
        watched_folders_(std::make_shared<FolderBudget>(config.max_watched_folders_total)),
        checksums_(config.max_checksums_per_subject, config.max_checksums) {}

  grpc::Status Stat(grpc::ServerContext* ctx, const v1::PathRequest* req,
                    v1::FileAttrs* resp) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "stat");
    auto a = scoped(*scope)->stat(req->path());
    if (!a) return fail(*ctx, a.error(), *scope, "stat", req->path());
    to_pb(*a, resp);
    return grpc::Status::OK;
  }

  // One of the max_checksums* slots of a call that reads a whole file
  // (Checksum, Signature), or the refusal to send; the caller releases a
  // slot it got (QuotaRelease).
  std::optional<grpc::Status> take_hash_slot(grpc::ServerContext& ctx, const std::string& subject,
                                             std::string_view op) {
    const auto v = checksums_.try_acquire(subject);
    if (v == SubjectQuota::Verdict::kGranted) return std::nullopt;
    return refuse(
        ctx,
        quota_refusal(
            v, op, fmt::format("the server hashes {} files already", config_.max_checksums),
            fmt::format("has {} checksums running", config_.max_checksums_per_subject), subject),
        subject, op);
  }

  // Reads the whole file and hashes it here, so a client comparing by
  // content receives 32 bytes, not the file. The read holds a gRPC thread
  // and a descriptor for as long as it lasts: bounded per subject and in
  // total (max_checksums*), and it stops as soon as the caller goes away.
  grpc::Status Checksum(grpc::ServerContext* ctx, const v1::PathRequest* req,
                        v1::ChecksumReply* resp) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "checksum");
    if (auto refused = take_hash_slot(*ctx, scope->subject, "checksum")) return *refused;
    QuotaRelease release{checksums_, scope->subject};
    auto source = scoped(*scope)->open_source(req->path());
    if (!source) return fail(*ctx, source.error(), *scope, "checksum", req->path());
    auto digest = digest_source(**source, [ctx] { return ctx->IsCancelled(); });
    if (!digest) {
      Error e = std::move(digest).error();
      if (e.path.empty()) e.path = req->path();
      return fail(*ctx, e, *scope, "checksum", req->path());
    }
    resp->set_size(digest->size);
    resp->set_mtime_ns(digest->mtime_ns);
    resp->set_xxh3_high(digest->high);
    resp->set_xxh3_low(digest->low);
    return grpc::Status::OK;
  }

  // Cuts and hashes the file here (core/cdc.hpp) and streams its blocks in
  // batches; the same slots as Checksum (a whole-file read on a gRPC
  // thread). The parameters come from the client and are checked first.
  grpc::Status Signature(grpc::ServerContext* ctx, const v1::SignatureRequest* req,
                         grpc::ServerWriter<v1::SignatureReply>* writer) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "signature");
    const CdcParams params{req->min_block(), req->avg_block(), req->max_block()};
    if (Status valid = validate_cdc_params(params); !valid.ok()) {
      return fail(*ctx, valid.error(), *scope, "signature", req->path());
    }
    if (auto refused = take_hash_slot(*ctx, scope->subject, "signature")) return *refused;
    QuotaRelease release{checksums_, scope->subject};
    auto source = scoped(*scope)->open_source(req->path());
    if (!source) return fail(*ctx, source.error(), *scope, "signature", req->path());
    constexpr int kBatch = 8192;  // ~160 KiB per message
    v1::SignatureReply batch;
    auto flush = [&]() -> Status {
      if (!writer->Write(batch)) {
        return make_error(ErrorCode::kCancelled, "signature", req->path(), "the client went away");
      }
      batch.Clear();
      return ok_status();
    };
    auto sig = signature_source(
        **source, params, [ctx] { return ctx->IsCancelled(); },
        [&](const BlockSig& b) -> Status {
          batch.add_length(b.length);
          batch.add_xxh3_high(b.high);
          batch.add_xxh3_low(b.low);
          return batch.length_size() >= kBatch ? flush() : ok_status();
        });
    if (!sig) {
      Error e = std::move(sig).error();
      if (e.path.empty()) e.path = req->path();
      return fail(*ctx, e, *scope, "signature", req->path());
    }
    batch.set_last(true);
    batch.set_size(sig->size);
    batch.set_mtime_ns(sig->mtime_ns);
    batch.set_file_xxh3_high(sig->digest.high);
    batch.set_file_xxh3_low(sig->digest.low);
    writer->WriteLast(batch, grpc::WriteOptions());
    return grpc::Status::OK;
  }

  // Watches the folder here (the confined backend's watch: inotify on the
  // checked folder, nothing below it reached through a symlink) and streams
  // its changes. The stream holds a gRPC thread, a watcher thread, a guard
  // thread and an inotify instance for as long as it lasts: bounded per
  // subject and in total (max_change_watches*); its folders by
  // max_watched_folders, and all streams' together by
  // max_watched_folders_total (past either the client is told to rescan);
  // the paths it holds by kWatchMaxBytes, and what waits to be sent by a
  // small feed (a slow reader makes the watcher wait, then the kernel's
  // queue overflow, which becomes a rescan). It ends when the client goes,
  // the server stops, the token expires, a write waits on the client for
  // kWatchWriteStall, or the watched folder is moved or removed.
  grpc::Status WatchChanges(grpc::ServerContext* ctx, const v1::WatchChangesRequest* req,
                            grpc::ServerWriter<v1::WatchChangesReply>* writer) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "watch changes");
    if (req->debounce_ms() > kMaxWatchDebounceMs ||
        (req->reconcile_ms() != 0 && req->reconcile_ms() < kMinWatchReconcileMs)) {
      return fail(*ctx,
                  make_error(ErrorCode::kInvalidArgument, "watch changes", "",
                             fmt::format("debounce must be at most {} ms and reconcile 0 or at "
                                         "least {} ms",
                                         kMaxWatchDebounceMs, kMinWatchReconcileMs)),
                  *scope, "watch changes", req->path());
    }
    if (auto v = change_watches_.try_acquire(scope->subject);
        v != SubjectQuota::Verdict::kGranted) {
      return refuse(
          *ctx,
          quota_refusal(
              v, "watch changes",
              fmt::format("the server follows {} folders already", config_.max_change_watches),
              fmt::format("has {} change watches open", config_.max_change_watches_per_subject),
              scope->subject),
          scope->subject, "watch changes");
    }
    QuotaRelease release{change_watches_, scope->subject};
    // The guard cancels the call at the token's expiry, when a write has
    // waited on the client too long, or when the server stops: a write
    // blocked by a client that does not read returns then.
    struct Guard {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      bool expired = false;
      std::optional<std::chrono::steady_clock::time_point> writing_since;
      std::thread thread;
      void finish() {
        {
          std::lock_guard lock(mu);
          done = true;
        }
        cv.notify_all();
        if (thread.joinable()) thread.join();
      }
      ~Guard() { finish(); }
    } guard;
    guard.thread = std::thread([&guard, ctx, expires_at = scope->expires_at, this] {
      std::unique_lock lock(guard.mu);
      while (!guard.cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return guard.done; })) {
        // The handler's loop sees these itself between writes (and answers
        // with the reason); only a write the client does not take needs
        // the call cancelled under it.
        if (!guard.writing_since) continue;
        const bool expired = expires_at > 0 && std::time(nullptr) >= expires_at;
        const bool stalled =
            std::chrono::steady_clock::now() - *guard.writing_since > kWatchWriteStall;
        if (expired || stalled || stopping_streams_.load()) {
          guard.expired = expired;
          ctx->TryCancel();
          return;
        }
      }
    });
    auto write = [&](const v1::WatchChangesReply& reply) {
      {
        std::lock_guard lock(guard.mu);
        guard.writing_since = std::chrono::steady_clock::now();
      }
      const bool ok = writer->Write(reply);
      std::lock_guard lock(guard.mu);
      guard.writing_since.reset();
      return ok;
    };
    auto ended = [&]() -> grpc::Status {
      guard.finish();
      if (guard.expired) {
        return refuse(*ctx,
                      make_error(ErrorCode::kPermission, "watch changes",
                                 printable_name(req->path(), 200), "the token has expired"),
                      scope->subject, "watch changes");
      }
      if (stopping_streams_.load()) {
        return to_grpc(*ctx, make_error(ErrorCode::kUnavailable, "watch changes",
                                        printable_name(req->path(), 200), "the server is stopping",
                                        RetryClass::kRetryCall));
      }
      return grpc::Status::CANCELLED;
    };
    auto feed = std::make_shared<ChangeFeed>(kWatchFeedCapacity);
    WatchOptions options;
    options.debounce = std::chrono::milliseconds(req->debounce_ms());
    options.reconcile = std::chrono::milliseconds(req->reconcile_ms());
    options.max_folders = config_.max_watched_folders;
    options.max_pending = kMaxWatchPending;
    options.max_bytes = kWatchMaxBytes;
    options.folder_budget = watched_folders_;
    auto watch = scoped(*scope)->watch(req->path(), 0, feed, options);
    if (!watch) return fail(*ctx, watch.error(), *scope, "watch changes", req->path());
    struct Stop {
      ChangeWatch& w;
      ~Stop() { w.stop(); }
    } stop{**watch};
    v1::WatchChangesReply reply;
    reply.set_ready(true);
    if (!write(reply)) return ended();
    auto last_write = std::chrono::steady_clock::now();
    std::size_t batch_bytes = 0;
    reply.Clear();
    while (!ctx->IsCancelled() && !stopping_streams_.load()) {
      if (scope->expires_at > 0 && std::time(nullptr) >= scope->expires_at) {
        {
          std::lock_guard lock(guard.mu);
          guard.expired = true;
        }
        return ended();
      }
      // Once a change is in hand, only what is already queued joins it.
      auto e = feed->next(reply.changes_size() > 0 ? std::chrono::milliseconds(0)
                                                   : std::chrono::milliseconds(250));
      if (e) {
        auto* c = reply.add_changes();
        switch (e->kind) {
          case ChangeEvent::Kind::kChanged:
            c->set_kind(v1::WatchChange::CHANGED);
            break;
          case ChangeEvent::Kind::kRemoved:
            c->set_kind(v1::WatchChange::REMOVED);
            break;
          case ChangeEvent::Kind::kRenamed:
            c->set_kind(v1::WatchChange::RENAMED);
            break;
          case ChangeEvent::Kind::kRescan:
            c->set_kind(v1::WatchChange::RESCAN);
            break;
        }
        c->set_path(std::move(e->path));
        c->set_from(std::move(e->from));
        batch_bytes += c->path().size() + c->from().size() + 8;
        // More may be waiting: gather up to a batch before writing.
        if (batch_bytes < kWatchBatchBytes && reply.changes_size() < kWatchBatchChanges) continue;
      } else if (reply.changes_size() == 0 && feed->drained()) {
        // The watcher ended by itself: the folder was moved or removed.
        // The client may watch it again where its name leads now (checked
        // against its scope again).
        auto why = (*watch)->failure();
        return fail(
            *ctx,
            why ? *why : make_error(ErrorCode::kNotFound, "watch changes", "", "the watch ended"),
            *scope, "watch changes", req->path());
      }
      const auto now = std::chrono::steady_clock::now();
      if (reply.changes_size() > 0 || now - last_write >= kWatchHeartbeat) {
        if (!write(reply)) return ended();
        last_write = now;
        reply.Clear();
        batch_bytes = 0;
      }
    }
    return ended();
  }

  // xferd is stopping: open WatchChanges streams end now (UNAVAILABLE, so
  // their clients come back to the restarted server) instead of holding
  // the shutdown for its whole grace.
  void stop_streams() { stopping_streams_.store(true); }

  grpc::Status List(grpc::ServerContext* ctx, const v1::ListRequest* req,
                    grpc::ServerWriter<v1::ListReply>* writer) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "list");
    v1::ListReply batch;
    ListOptions opts;
    opts.want_attrs = req->want_attrs();
    Status s = scoped(*scope)->list(req->path(), opts, [&](Entry&& e) -> Status {
      auto* out = batch.add_entries();
      out->set_name(e.name);
      out->set_type(to_pb(e.type));
      if (e.attrs) {
        to_pb(*e.attrs, out->mutable_attrs());
      }
      if (batch.entries_size() >= 1000) {
        if (ctx->IsCancelled() || !writer->Write(batch)) {
          return make_error(ErrorCode::kCancelled, "list", req->path(), "client went away");
        }
        batch.Clear();
      }
      return ok_status();
    });
    if (!s.ok()) return fail(*ctx, s.error(), *scope, "list", req->path());
    if (batch.entries_size() > 0) writer->Write(batch);
    return grpc::Status::OK;
  }

  grpc::Status Mkdir(grpc::ServerContext* ctx, const v1::MkdirRequest* req, v1::Empty*) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "mkdir");
    return done(*ctx, scoped(*scope)->mkdir(req->path(), req->parents()), *scope, "mkdir",
                req->path());
  }

  grpc::Status Remove(grpc::ServerContext* ctx, const v1::RemoveRequest* req, v1::Empty*) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "remove");
    return done(*ctx, scoped(*scope)->remove(req->path(), req->recursive()), *scope, "remove",
                req->path());
  }

  grpc::Status Rename(grpc::ServerContext* ctx, const v1::RenameRequest* req, v1::Empty*) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "rename");
    return done(*ctx, scoped(*scope)->rename(req->from(), req->to()), *scope, "rename",
                req->from());
  }

  grpc::Status Touch(grpc::ServerContext* ctx, const v1::TouchRequest* req, v1::Empty*) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "touch");
    std::optional<std::int64_t> mtime;
    if (req->has_mtime()) mtime = req->mtime_ns();
    return done(*ctx, scoped(*scope)->touch(req->path(), mtime), *scope, "touch", req->path());
  }

  grpc::Status Symlink(grpc::ServerContext* ctx, const v1::SymlinkRequest* req,
                       v1::Empty*) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "symlink");
    return done(*ctx, scoped(*scope)->symlink(req->target(), req->path(), from_pb(req->attrs())),
                *scope, "symlink", req->path());
  }

  grpc::Status SetAttrs(grpc::ServerContext* ctx, const v1::SetAttrsRequest* req,
                        v1::Empty*) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "set attributes");
    return done(*ctx, scoped(*scope)->set_attrs(req->path(), from_pb(req->attrs())), *scope,
                "set attributes", req->path());
  }

  grpc::Status OpenSession(grpc::ServerContext* ctx, const v1::OpenSessionRequest* req,
                           v1::Session* resp) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "open session");
    // The policy overrides what an auto client proposed; a client whose
    // user chose the other way is refused, never silently overridden (a
    // --encrypt that quietly became plaintext would be a lie).
    bool encrypt = req->encrypt();
    if (config_.encrypt == EncryptPolicy::kAlways) {
      if (!encrypt && req->encrypt_chosen()) {
        return refuse(*ctx,
                      make_error(ErrorCode::kInvalidArgument, "open session", "",
                                 "this server seals every session (data.encrypt = always); "
                                 "drop --no-encrypt"),
                      scope->subject, "open session");
      }
      encrypt = true;
    }
    if (config_.encrypt == EncryptPolicy::kNever) {
      if (encrypt && req->encrypt_chosen()) {
        return refuse(*ctx,
                      make_error(ErrorCode::kInvalidArgument, "open session", "",
                                 "this server does not seal sessions (data.encrypt = never); "
                                 "use --no-encrypt, or ask its operator"),
                      scope->subject, "open session");
      }
      encrypt = false;
    }
    const unsigned streams =
        std::clamp<unsigned>(req->streams(), 1, std::max(1u, config_.max_streams_per_session));
    auto session =
        sessions_.create(*scope, streams, encrypt,
                         std::chrono::seconds(config_.session_idle_seconds), scoped(*scope));
    if (!session) return refuse(*ctx, session.error(), scope->subject, "open session");
    resp->set_session_id((*session)->id);
    resp->set_data_token((*session)->data_token);
    for (const std::string& a : data_addresses_) resp->add_data_addresses(a);
    resp->set_streams(streams);
    resp->set_encrypt(encrypt);
    // Sealed frames are buffered whole on the server: they are bounded by
    // its per-connection buffer. Plaintext frames are written as they arrive.
    resp->set_max_payload(encrypt ? config_.connection_buffer_kib * 1024u
                                  : protocol::kMaxPayload - protocol::kTagSize);
    std::int64_t expires = now_s() + config_.session_idle_seconds;
    if (scope->expires_at > 0) expires = std::min(expires, scope->expires_at);
    resp->set_expires_at(static_cast<std::uint64_t>(expires));
    log().info("session {} opened for '{}' ({} streams{})", (*session)->id,
               printable_name(scope->subject, 100), streams, encrypt ? ", sealed" : "");
    return grpc::Status::OK;
  }

  grpc::Status CloseSession(grpc::ServerContext* ctx, const v1::CloseSessionRequest* req,
                            v1::Empty*) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "close session");
    // Only the subject that opened a session may close it.
    auto session = sessions_.find_by_id(req->session_id());
    if (session && session->scope.subject == scope->subject) sessions_.close(req->session_id());
    return grpc::Status::OK;
  }

  grpc::Status IssueToken(grpc::ServerContext* ctx, const v1::IssueTokenRequest* req,
                          v1::IssuedToken* resp) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "issue token");
    auto prefix = normalize_server_path(req->prefix());
    if (!prefix) return refuse(*ctx, prefix.error(), scope->subject, "issue token");
    if (!scope->covers(*prefix) || (req->write() && !scope->write)) {
      return refuse(*ctx,
                    make_error(ErrorCode::kPermission, "issue token", *prefix,
                               "cannot issue a token wider than your own"),
                    scope->subject, "issue token");
    }
    if (config_.secret.empty()) {
      resp->set_token("");  // this server does not check tokens
      return grpc::Status::OK;
    }
    TokenScope issued;
    // A delegated token keeps its issuer's subject: limits are per subject,
    // and a holder must not escape them by minting tokens under new names.
    issued.subject = scope->subject;
    issued.prefix = *prefix;
    issued.write = req->write();
    const std::int64_t ttl = std::clamp<std::int64_t>(req->ttl_seconds(), 60, 86400);
    issued.expires_at = now_s() + ttl;
    if (scope->expires_at > 0) issued.expires_at = std::min(issued.expires_at, scope->expires_at);
    auto token = issue_token(config_.secret, issued);
    if (!token) return to_grpc(*ctx, token.error());
    resp->set_token(*token);
    resp->set_expires_at(static_cast<std::uint64_t>(issued.expires_at));
    return grpc::Status::OK;
  }

  grpc::Status SubmitJob(grpc::ServerContext* ctx, const v1::JobRequest* req,
                         v1::JobAccepted* resp) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "submit job");
    // The job reaches the root only as its submitter's token does, for as
    // long as that token lasts (the confined backend checks every path).
    auto root = std::make_unique<JobRoot>(job_roots_, scoped(*scope));
    auto request = job_request(*req, *scope, root->key());
    if (!request) return refuse(*ctx, request.error(), scope->subject, "submit job");
    auto job = jobs_.submit(scope->subject, scope->expires_at, std::move(root),
                            std::move(request).value());
    if (!job) return refuse(*ctx, job.error(), scope->subject, "submit job");
    resp->set_job_id((*job)->id);
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* ctx, const v1::JobId* req,
                        grpc::ServerWriter<v1::JobProgress>* writer) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "watch job");
    auto job = jobs_.find(req->job_id(), scope->subject);
    if (!job) {
      return refuse(*ctx, no_job("watch job", req->job_id()), scope->subject, "watch job");
    }
    // Each stream holds one of gRPC's threads for as long as its job runs:
    // bounded in total and per subject (max_watches, max_watches_per_subject).
    if (auto v = watches_.try_acquire(scope->subject); v != SubjectQuota::Verdict::kGranted) {
      return refuse(
          *ctx,
          quota_refusal(v, "watch job",
                        fmt::format("the server has {} job watches open", config_.max_watches),
                        fmt::format("has {} job watches open", config_.max_watches_per_subject),
                        scope->subject),
          scope->subject, "watch job");
    }
    QuotaRelease release{watches_, scope->subject};
    while (true) {
      v1::JobProgress p;
      bool finished;
      {
        std::unique_lock lock(job->mu);
        job->cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return job->finished; });
        finished = job->finished;
        fill(*job, p);
      }
      if (!writer->Write(p) || ctx->IsCancelled()) return grpc::Status::CANCELLED;
      if (finished) return grpc::Status::OK;
    }
  }

  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::JobId* req, v1::Empty*) override {
    auto scope = authenticate(ctx);
    if (!scope) return refuse(*ctx, scope.error(), "?", "cancel job");
    auto job = jobs_.find(req->job_id(), scope->subject);
    if (!job) {
      return refuse(*ctx, no_job("cancel job", req->job_id()), scope->subject, "cancel job");
    }
    job->cancel.store(true);
    return grpc::Status::OK;
  }

  grpc::Status ServerInfo(grpc::ServerContext*, const v1::Empty*,
                          v1::ServerInfoReply* resp) override {
    resp->set_version("xferd 0.1.0");
    resp->set_protocol_version(protocol::kProtocolVersion);
    resp->set_tls(!config_.tls_cert.empty());
    resp->set_auth_required(config_.auth_required);
    return grpc::Status::OK;
  }

 private:
  static std::int64_t now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // A checked server path as the path of an xferd:// URL: parse_url
  // percent-decodes, so a '%' must stay a '%' ("/a%2Fb" is a file name, not
  // "/a/b", which the checks above never saw).
  static std::string url_path(const std::string& path) {
    std::string out;
    out.reserve(path.size());
    for (char c : path) {
      if (c == '%') {
        out += "%25";
      } else if (c == '?') {
        out += "%3F";  // a '?' would start the URL's query
      } else {
        out += c;
      }
    }
    return out;
  }

  // A file-name-safe folder name per token subject: hex SHA-256 (the
  // subject itself may hold any byte).
  static std::string subject_folder(const std::string& subject) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(subject.data(), subject.size(), md, &n, EVP_sha256(), nullptr);
    std::string hex;
    for (unsigned int i = 0; i < n; ++i) hex += fmt::format("{:02x}", md[i]);
    return "s-" + hex;
  }

  static Error no_job(std::string_view op, const std::string& id) {
    return make_error(ErrorCode::kNotFound, op, printable_name(id, 80), "no such job");
  }

  // The transfer a job request asks for, after every check: sources and a
  // local destination inside the caller's scope; a remote destination only
  // among the configured peers, with only the credentials the request
  // carries.
  Result<TransferRequest> job_request(const v1::JobRequest& req, const TokenScope& scope,
                                      const std::string& root_key) {
    if (req.sources().empty()) {
      return make_error(ErrorCode::kInvalidArgument, "submit job", "", "no source");
    }
    if (req.sources_size() > 1024) {
      return make_error(ErrorCode::kInvalidArgument, "submit job", "", "more than 1024 sources");
    }
    TransferRequest t;
    std::vector<std::string> canonical_sources;
    for (const auto& s : req.sources()) {
      XFER_ASSIGN_OR_RETURN(auto path, check_token_scope(*server_root_, scope, s, false, "read"));
      XFER_ASSIGN_OR_RETURN(auto resolved, server_root_->resolve(path));
      canonical_sources.push_back(std::move(resolved.canonical_path));
      t.sources.push_back(fmt::format("{}://{}{}", kRootScheme, root_key, url_path(path)));
    }
    const std::string& dest = req.destination();
    if (dest.rfind("xfer://", 0) == 0) {
      XFER_ASSIGN_OR_RETURN(auto url, parse_url(dest));
      const int port = url.port != 0 ? url.port : kDefaultXferPort;
      const std::string peer = fmt::format("{}:{}", url.host, port);
      const std::string peer6 = fmt::format("[{}]:{}", url.host, port);
      const auto& peers = config_.job_peers;
      if (std::find(peers.begin(), peers.end(), peer) == peers.end() &&
          std::find(peers.begin(), peers.end(), peer6) == peers.end()) {
        return make_error(ErrorCode::kPermission, "submit job", printable_name(peer, 120),
                          "this server does not send to that peer (jobs.peers)");
      }
      t.destination = dest;
      auto& ep = t.options.destination_endpoint;
      ep.token = req.destination_token();
      ep.ambient_credentials = false;  // never the server's own credentials
      if (!config_.job_tls_ca.empty()) {
        ep.tls = true;
        ep.tls_ca = config_.job_tls_ca;
      }
    } else {
      XFER_ASSIGN_OR_RETURN(auto path,
                            check_token_scope(*server_root_, scope, dest, true, "write"));
      // Like cp -r a a/b, a copy into its own source is refused: it would
      // list its own output and copy it again until paths grow too long.
      XFER_ASSIGN_OR_RETURN(auto resolved, server_root_->resolve(path));
      const std::string& into = resolved.canonical_path;
      for (const auto& src : canonical_sources) {
        if (path_within(into, src)) {
          return make_error(
              ErrorCode::kInvalidArgument, "submit job", path,
              fmt::format("the destination lies inside the source {}", printable_name(src, 200)));
        }
      }
      t.destination = fmt::format("{}://{}{}", kRootScheme, root_key, url_path(path));
    }
    // The client's options, each checked against the table; only those a
    // job request may carry (kRemote), within the server's own caps.
    const auto& values = req.options().values();
    if (values.size() > option_table().size()) {
      return make_error(ErrorCode::kInvalidArgument, "submit job", "", "too many options");
    }
    for (const auto& [name, text] : values) {
      // Include/exclude rules are a list (docs/filters.md): 16 KiB of them;
      // a --files-from list 256 KiB; every other option is one short value.
      const std::size_t max_text = name == "filter"       ? kMaxJobFilterBytes
                                   : name == "files_from" ? kMaxJobFilesFromBytes
                                                          : 256;
      if (name.size() > 64 || text.size() > max_text) {
        return make_error(ErrorCode::kInvalidArgument, "submit job", "", "option too long");
      }
      Status set = set_option(t.options, name, text, kRemote);
      if (!set.ok())
        return make_error(ErrorCode::kInvalidArgument, "submit job", "", set.error().detail);
    }
    XFER_TRY(check_options(t.options));
    t.options.streams = std::min<unsigned>(t.options.streams, config_.max_streams_per_session);
    // Checkpoints per subject: one subject's job id never names (resumes,
    // overwrites or clears) another's job.
    if (!config_.state_dir.empty()) {
      t.options.state_root = config_.state_dir + "/jobs/" + subject_folder(scope.subject);
    }
    t.backends = backends_;
    return t;
  }

  static void fill(Job& job, v1::JobProgress& p) {
    p.set_job_id(job.id);
    p.set_state(std::string(to_string(job.state)));
    p.set_files_done(job.counters.files_done.load());
    p.set_files_total(job.counters.files_total.load());
    p.set_bytes_done(job.counters.bytes_done.load());
    p.set_bytes_total(job.counters.bytes_total.load());
    p.set_errors(job.counters.errors.load());
    p.set_files_unchanged(job.counters.files_unchanged.load());
    p.set_bytes_unchanged(job.counters.bytes_unchanged.load());
    p.set_message(job.message);
    p.set_exit_code(job.exit_code);
    p.set_elapsed_seconds(
        job.finished ? job.seconds
                     : std::chrono::duration<double>(std::chrono::steady_clock::now() - job.started)
                           .count());
    for (const auto& s : job.stats->snapshot("")) {
      auto* o = p.add_streams();
      o->set_index(s.index);
      o->set_bytes(s.bytes_sent + s.bytes_received);
      o->set_rtt_ms(s.rtt_ms);
      o->set_cwnd(s.cwnd);
      o->set_retransmits(s.retransmits);
      o->set_throughput_bps(s.throughput_bps());
    }
  }

  Result<TokenScope> authenticate(grpc::ServerContext* ctx) {
    if (!config_.auth_required) {
      TokenScope open;
      open.subject = "anonymous";
      open.prefix = "/";
      open.write = true;
      return open;
    }
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    if (it == md.end()) {
      return make_error(ErrorCode::kPermission, "authenticate", "",
                        "this server needs a token (--token, $XFER_TOKEN or credentials.toml)");
    }
    std::string_view value(it->second.data(), it->second.size());
    constexpr std::string_view kBearer = "Bearer ";
    if (value.substr(0, kBearer.size()) != kBearer) {
      return make_error(ErrorCode::kPermission, "authenticate", "", "expected a Bearer token");
    }
    return verify_token(config_.secret, value.substr(kBearer.size()));
  }

  // The root as the token sees it: its prefix, read-only unless it may write.
  std::unique_ptr<Backend> scoped(const TokenScope& scope) {
    return make_confined_backend(root_, scope);
  }

  // A refused request: audited (who, what, why), then answered.
  grpc::Status refuse(grpc::ServerContext& ctx, const Error& e, const std::string& who,
                      std::string_view what) {
    audit_.refused(who == "?" ? ctx.peer() : who + " (" + ctx.peer() + ")", what, e.message());
    return to_grpc(ctx, e);
  }

  // A failed operation. Errors name the server path, never the local one;
  // the refusals among them (scope, escapes, invalid names) are audited.
  grpc::Status fail(grpc::ServerContext& ctx, Error e, const TokenScope& scope,
                    std::string_view what, const std::string& client_path) {
    const std::string prefix = server_root_->path() + "/";
    if (!e.path.empty() && e.path.rfind(prefix, 0) == 0) {
      e.path = e.path.substr(prefix.size() - 1);
    } else if (e.path == server_root_->path()) {
      e.path = "/";
    } else if (e.path.empty()) {
      e.path = printable_name(client_path);
    }
    if (e.code == ErrorCode::kPermission || e.code == ErrorCode::kInvalidArgument) {
      return refuse(ctx, e, scope.subject, fmt::format("{} {}", what, printable_name(client_path)));
    }
    return to_grpc(ctx, e);
  }
  grpc::Status done(grpc::ServerContext& ctx, const Status& s, const TokenScope& scope,
                    std::string_view what, const std::string& client_path) {
    if (s.ok()) return grpc::Status::OK;
    return fail(ctx, s.error(), scope, what, client_path);
  }

  const ServerConfig& config_;
  std::shared_ptr<const BackendRegistry> backends_;  // for jobs: built-ins + xferd://
  std::shared_ptr<JobRoots> job_roots_;
  std::shared_ptr<ConfinedRoot> root_;
  std::shared_ptr<const ServerRoot> server_root_;
  SessionRegistry& sessions_;
  JobManager& jobs_;
  Audit& audit_;
  std::vector<std::string> data_addresses_;
  SubjectQuota watches_;
  SubjectQuota change_watches_;  // WatchChanges streams open
  // Folders all WatchChanges streams watch together (inotify watches come
  // from one user's fs.inotify.max_user_watches).
  std::shared_ptr<FolderBudget> watched_folders_;
  std::atomic<bool> stopping_streams_{false};
  SubjectQuota checksums_;  // Checksum calls hashing now
};

// A Backend handle that shares the server's confined backend (the engine
// wants to own its backends).
class SharedBackend final : public Backend {
 public:
  explicit SharedBackend(std::shared_ptr<Backend> b) : b_(std::move(b)) {}
  const Capabilities& capabilities() const override { return b_->capabilities(); }
  std::string describe() const override { return b_->describe(); }
  Result<FileAttrs> stat(std::string_view p) override { return b_->stat(p); }
  Status list(std::string_view p, const ListOptions& o, const EntrySink& s) override {
    return b_->list(p, o, s);
  }
  Status list_tree(std::string_view p, const EntrySink& s) override { return b_->list_tree(p, s); }
  Status mkdir(std::string_view p, bool parents) override { return b_->mkdir(p, parents); }
  Status remove(std::string_view p, bool r) override { return b_->remove(p, r); }
  Status rename(std::string_view a, std::string_view b) override { return b_->rename(a, b); }
  Status touch(std::string_view p, std::optional<std::int64_t> m) override {
    return b_->touch(p, m);
  }
  Status symlink(std::string_view t, std::string_view p, const FileAttrs& a) override {
    return b_->symlink(t, p, a);
  }
  Status set_attrs(std::string_view p, const FileAttrs& a) override { return b_->set_attrs(p, a); }
  Result<std::unique_ptr<ChangeWatch>> watch(std::string_view p, std::size_t root,
                                             std::shared_ptr<ChangeFeed> feed,
                                             const WatchOptions& o) override {
    return b_->watch(p, root, std::move(feed), o);
  }
  Result<std::unique_ptr<Source>> open_source(std::string_view p) override {
    return b_->open_source(p);
  }
  Result<std::unique_ptr<Sink>> open_sink(std::string_view p, const SinkOptions& o) override {
    return b_->open_sink(p, o);
  }

 private:
  std::shared_ptr<Backend> b_;
};

// Raises the soft descriptor limit to the hard one (systemd gives services
// 1024 soft, 512Ki hard); returns the limit now in force.
std::size_t raise_nofile_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
  }
  return rl.rlim_cur == RLIM_INFINITY ? (1u << 20) : static_cast<std::size_t>(rl.rlim_cur);
}

// Drops to `user` (uid, gid, supplementary groups) once the listeners are
// bound. Only root can switch; anyone else must already be that user.
Status drop_privileges(const std::string& user) {
  if (user.empty()) return ok_status();
  errno = 0;
  passwd* pw = ::getpwnam(user.c_str());
  if (pw == nullptr) {
    return make_error(ErrorCode::kInvalidArgument, "drop privileges", user,
                      "no such user (server.user)");
  }
  if (::geteuid() == pw->pw_uid && ::getegid() == pw->pw_gid) return ok_status();
  if (::geteuid() != 0) {
    return make_error(ErrorCode::kPermission, "drop privileges", user,
                      "only root can switch to server.user");
  }
  if (::setgroups(0, nullptr) != 0) return errno_error(errno, "setgroups", user);
  if (::setgid(pw->pw_gid) != 0) return errno_error(errno, "setgid", user);
  if (::setuid(pw->pw_uid) != 0) return errno_error(errno, "setuid", user);
  if (::setuid(0) == 0) {
    return make_error(ErrorCode::kInternal, "drop privileges", user, "could regain root");
  }
  // A changed uid makes the process non-dumpable, and /proc/self/fd then
  // belongs to root: the publish (linkat of /proc/self/fd/N) and chmod of
  // an open file need it back. Use a dedicated user (docs/server.md).
  ::prctl(PR_SET_DUMPABLE, 1);
  log().info("running as {} (uid {}, gid {})", user, pw->pw_uid, pw->pw_gid);
  return ok_status();
}

class ServerImpl final : public Server {
 public:
  explicit ServerImpl(ServerConfig config)
      : config_(std::move(config)), audit_(config_.log_refusals_per_minute) {}
  ~ServerImpl() override { shutdown(5); }

  Status start() {
    const std::size_t nofile = raise_nofile_limit();
    // Per-connection buffers (512 KiB and up) come from mmap and go back to
    // the system when freed; glibc would otherwise raise this threshold
    // after the first free and keep such buffers in its arenas.
    ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    // Half of the descriptors for the data channel (connections and open
    // files), the rest for gRPC's connections, logs and jobs: a data flood
    // never starves the control listener.
    fd_budget_ = std::make_unique<FdBudget>(std::max<std::size_t>(nofile / 2, 16));
    XFER_ASSIGN_OR_RETURN(ServerRoot root, ServerRoot::open(config_.root));
    auto shared_root = std::make_shared<const ServerRoot>(std::move(root));
    confined_ = make_confined_root(shared_root, ConfinedOptions{config_.allow_special_bits});
    // This server's backends for its jobs: the built-ins, and xferd:// for
    // its own root as each job's submitter may see it.
    job_roots_ = std::make_shared<JobRoots>();
    backends_ = BackendRegistry::with_builtins();
    std::weak_ptr<JobRoots> weak_roots = job_roots_;
    backends_->register_scheme(
        kRootScheme,
        [weak_roots](const Url& url, const Profile&,
                     const EndpointOptions&) -> Result<std::unique_ptr<Backend>> {
          auto roots = weak_roots.lock();
          auto b = roots ? roots->find(url.host) : nullptr;
          if (!b) {
            return make_error(ErrorCode::kUnavailable, "open endpoint", "xferd root",
                              "the job has ended");
          }
          return std::unique_ptr<Backend>(new SharedBackend(std::move(b)));
        });
    sessions_ =
        std::make_unique<SessionRegistry>(config_.max_sessions, config_.max_sessions_per_subject);
    DataLimits limits;
    limits.max_connections = config_.max_connections;
    limits.max_connections_per_address = config_.max_connections_per_address;
    limits.max_unauthenticated = config_.max_unauthenticated;
    limits.max_unauthenticated_per_address = config_.max_unauthenticated_per_address;
    limits.handshake = std::chrono::seconds(config_.handshake_seconds);
    limits.idle = std::chrono::seconds(config_.session_idle_seconds);
    limits.buffer_bytes = std::size_t{config_.connection_buffer_kib} * 1024;
    limits.socket_buffer_bytes = std::size_t{config_.socket_buffer_kib} * 1024;
    limits.max_handles_per_session = config_.max_handles_per_session;
    limits.max_open_files_per_subject = config_.max_open_files_per_subject;
    data_ = std::make_unique<DataServer>(*sessions_, limits, *fd_budget_, audit_);
    XFER_TRY(data_->start(config_.data_listen));
    jobs_ = std::make_unique<JobManager>(config_);
    service_ = std::make_unique<Service>(config_, confined_, shared_root, *sessions_, *jobs_,
                                         audit_, data_->addresses(), backends_, job_roots_);

    std::shared_ptr<grpc::ServerCredentials> creds;
    if (!config_.tls_cert.empty()) {
      grpc::SslServerCredentialsOptions ssl;
      grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
      XFER_ASSIGN_OR_RETURN(pair.cert_chain, read_small_file(config_.tls_cert, kMaxPemBytes));
      XFER_ASSIGN_OR_RETURN(pair.private_key, read_small_file(config_.tls_key, kMaxPemBytes));
      ssl.pem_key_cert_pairs.push_back(pair);
      creds = grpc::SslServerCredentials(ssl);
    } else {
      creds = grpc::InsecureServerCredentials();
    }
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(config_.listen, creds, &port);
    builder.RegisterService(service_.get());
    // Requests are paths and small messages.
    builder.SetMaxReceiveMessageSize(1 << 20);
    // No SO_REUSEPORT: another local process must not be able to bind the
    // control port beside us and take a share of the connections.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    // A connection that never finishes its TLS/HTTP2 handshake, or that
    // sits idle, is closed: gRPC connections are bounded in time.
    builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                               static_cast<int>(config_.handshake_seconds) * 1000);
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_IDLE_MS,
        static_cast<int>(std::min<unsigned>(config_.max_grpc_connections_idle_seconds, 24 * 3600)) *
            1000);
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 64);
    // A client gone without a word (a cut network) is found by pings while
    // it has calls open: its long streams (WatchChanges, WatchJob) end
    // within a minute and a half, and their slots are free again.
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60'000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
    // Calls in progress hold a thread each (WatchJob for a job's life).
    grpc::ResourceQuota quota("xferd");
    quota.SetMaxThreads(kMaxGrpcThreads);
    builder.SetResourceQuota(quota);
    grpc_ = builder.BuildAndStart();
    if (!grpc_ || port == 0) {
      data_->stop();
      return make_error(ErrorCode::kUnavailable, "listen", config_.listen,
                        "cannot listen for the control channel (address in use?)");
    }
    XFER_ASSIGN_OR_RETURN(auto hp, protocol::split_host_port(config_.listen));
    control_ = hp.first.find(':') != std::string::npos ? fmt::format("[{}]:{}", hp.first, port)
                                                       : fmt::format("{}:{}", hp.first, port);
    Status dropped = drop_privileges(config_.user);
    if (!dropped.ok()) {
      shutdown(0);
      return dropped;
    }
    return ok_status();
  }

  std::string control_address() const override { return control_; }
  std::vector<std::string> data_addresses() const override { return data_->addresses(); }

  void shutdown(int grace_seconds) override {
    std::lock_guard lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    log().info("shutting down");
    if (jobs_) jobs_->stop();
    if (service_) service_->stop_streams();
    if (grpc_) {
      grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(grace_seconds));
    }
    if (data_) data_->stop();
    stopped_cv_.notify_all();
  }

  void wait() override {
    std::unique_lock lock(stop_mu_);
    stopped_cv_.wait(lock, [&] { return stopped_; });
    if (grpc_) grpc_->Wait();
  }

 private:
  static constexpr int kMaxGrpcThreads = 256;

  ServerConfig config_;
  Audit audit_;
  std::unique_ptr<FdBudget> fd_budget_;
  std::shared_ptr<ConfinedRoot> confined_;
  std::shared_ptr<JobRoots> job_roots_;
  std::shared_ptr<BackendRegistry> backends_;
  std::unique_ptr<SessionRegistry> sessions_;
  std::unique_ptr<DataServer> data_;
  std::unique_ptr<JobManager> jobs_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::string control_;
  std::mutex stop_mu_;
  std::condition_variable stopped_cv_;
  bool stopped_ = false;
};

}  // namespace

Result<std::unique_ptr<Server>> Server::start(const ServerConfig& config) {
  auto server = std::make_unique<ServerImpl>(config);
  XFER_TRY(server->start());
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace xfer::server
