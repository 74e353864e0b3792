// xferd's gRPC service, job runner and lifecycle (include/xfer/server/server.hpp).

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "protocol/conn.hpp"
#include "protocol/grpc_errors.hpp"
#include "protocol/pb_convert.hpp"
#include "server/confined.hpp"
#include "server/data_server.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/url.hpp"
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

constexpr const char* kRootScheme = "xferd";  // xferd://root/<server path>, jobs only

using protocol::from_pb;
using protocol::to_pb;

// ---- jobs -------------------------------------------------------------------

struct Job {
  std::string id;
  TransferRequest request;
  TransferCounters counters;
  std::atomic<bool> cancel{false};
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;
  std::string state = "running";
  std::string message;
  int exit_code = 0;
  double seconds = 0;
  std::string stats_group;
};

class JobManager {
 public:
  explicit JobManager(unsigned max_jobs) : max_jobs_(max_jobs) {}
  ~JobManager() { stop(); }

  Result<std::shared_ptr<Job>> submit(TransferRequest request) {
    auto job = std::make_shared<Job>();
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        return make_error(ErrorCode::kUnavailable, "submit job", "", "server is shutting down",
                          RetryClass::kRetryCall);
      }
      unsigned running = 0;
      for (auto& [id, j] : jobs_) {
        std::lock_guard jl(j->mu);
        if (!j->finished) ++running;
      }
      if (running >= max_jobs_) {
        return make_error(ErrorCode::kUnavailable, "submit job", "",
                          fmt::format("server runs {} jobs already", running),
                          RetryClass::kRetryCall);
      }
      job->id = fmt::format("srv-{}-{}", ++next_,
                            std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count());
      job->stats_group = "job:" + job->id;
      request.options.destination_endpoint.stats_group = job->stats_group;
      job->request = std::move(request);
      jobs_[job->id] = job;
    }
    job->thread = std::thread([job] { run(*job); });
    return job;
  }

  std::shared_ptr<Job> find(const std::string& id) {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(id);
    return it == jobs_.end() ? nullptr : it->second;
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
    log().info("job {}: {} source(s) -> {}", job.id, job.request.sources.size(),
               job.request.destination);
    auto result = run_transfer(job.request, job.counters, &observer, &job.cancel);
    std::lock_guard lock(job.mu);
    job.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - job.started).count();
    if (!result) {
      job.state = "failed";
      job.message = result.error().message();
      job.exit_code = 1;
    } else if (result->cancelled) {
      job.state = "cancelled";
      job.exit_code = 130;
    } else if (job.counters.errors.load() > 0) {
      job.state = "failed";
      job.exit_code = result->files_done > 0 ? 3 : 1;
    } else {
      job.state = "done";
      job.exit_code = 0;
      job.message = fmt::format("copied {} files ({} bytes) in {:.2f} s", result->files_done,
                                result->bytes_done, result->seconds);
    }
    log().info("job {}: {} ({})", job.id, job.state, job.message);
    job.finished = true;
    job.cv.notify_all();
  }

  unsigned max_jobs_;
  std::mutex mu_;
  bool stopping_ = false;
  std::uint64_t next_ = 0;
  std::map<std::string, std::shared_ptr<Job>> jobs_;
};

// ---- the service ------------------------------------------------------------

class Service final : public v1::Xfer::Service {
 public:
  Service(const ServerConfig& config, std::shared_ptr<Backend> backend,
          std::shared_ptr<const ServerRoot> root, SessionRegistry& sessions, JobManager& jobs,
          std::string data_address)
      : config_(config),
        backend_(std::move(backend)),
        root_(std::move(root)),
        sessions_(sessions),
        jobs_(jobs),
        data_address_(std::move(data_address)) {}

  grpc::Status Stat(grpc::ServerContext* ctx, const v1::PathRequest* req,
                    v1::FileAttrs* resp) override {
    auto path = authorize(ctx, req->path(), false, "stat");
    if (!path) return to_grpc(*ctx, path.error());
    auto a = backend_->stat(*path);
    if (!a) return fail(*ctx, a.error(), *path);
    to_pb(*a, resp);
    return grpc::Status::OK;
  }

  grpc::Status List(grpc::ServerContext* ctx, const v1::ListRequest* req,
                    grpc::ServerWriter<v1::ListReply>* writer) override {
    auto path = authorize(ctx, req->path(), false, "list");
    if (!path) return to_grpc(*ctx, path.error());
    v1::ListReply batch;
    ListOptions opts;
    opts.want_attrs = req->want_attrs();
    Status s = backend_->list(*path, opts, [&](Entry&& e) -> Status {
      auto* out = batch.add_entries();
      out->set_name(e.name);
      out->set_type(to_pb(e.type));
      if (e.attrs) {
        to_pb(*e.attrs, out->mutable_attrs());
      }
      if (batch.entries_size() >= 1000) {
        if (ctx->IsCancelled() || !writer->Write(batch)) {
          return make_error(ErrorCode::kCancelled, "list", *path, "client went away");
        }
        batch.Clear();
      }
      return ok_status();
    });
    if (!s.ok()) return fail(*ctx, s.error(), *path);
    if (batch.entries_size() > 0) writer->Write(batch);
    return grpc::Status::OK;
  }

  grpc::Status Mkdir(grpc::ServerContext* ctx, const v1::MkdirRequest* req, v1::Empty*) override {
    auto path = authorize(ctx, req->path(), true, "mkdir");
    if (!path) return to_grpc(*ctx, path.error());
    return done(*ctx, backend_->mkdir(*path, req->parents()), *path);
  }

  grpc::Status Remove(grpc::ServerContext* ctx, const v1::RemoveRequest* req, v1::Empty*) override {
    auto path = authorize(ctx, req->path(), true, "remove");
    if (!path) return to_grpc(*ctx, path.error());
    return done(*ctx, backend_->remove(*path, req->recursive()), *path);
  }

  grpc::Status Rename(grpc::ServerContext* ctx, const v1::RenameRequest* req, v1::Empty*) override {
    auto from = authorize(ctx, req->from(), true, "rename");
    if (!from) return to_grpc(*ctx, from.error());
    auto to = authorize(ctx, req->to(), true, "rename");
    if (!to) return to_grpc(*ctx, to.error());
    return done(*ctx, backend_->rename(*from, *to), *from);
  }

  grpc::Status Touch(grpc::ServerContext* ctx, const v1::TouchRequest* req, v1::Empty*) override {
    auto path = authorize(ctx, req->path(), true, "touch");
    if (!path) return to_grpc(*ctx, path.error());
    std::optional<std::int64_t> mtime;
    if (req->has_mtime()) mtime = req->mtime_ns();
    return done(*ctx, backend_->touch(*path, mtime), *path);
  }

  grpc::Status Symlink(grpc::ServerContext* ctx, const v1::SymlinkRequest* req,
                       v1::Empty*) override {
    auto path = authorize(ctx, req->path(), true, "symlink");
    if (!path) return to_grpc(*ctx, path.error());
    return done(*ctx, backend_->symlink(req->target(), *path, from_pb(req->attrs())), *path);
  }

  grpc::Status SetAttrs(grpc::ServerContext* ctx, const v1::SetAttrsRequest* req,
                        v1::Empty*) override {
    auto path = authorize(ctx, req->path(), true, "set attributes");
    if (!path) return to_grpc(*ctx, path.error());
    return done(*ctx, backend_->set_attrs(*path, from_pb(req->attrs())), *path);
  }

  grpc::Status OpenSession(grpc::ServerContext* ctx, const v1::OpenSessionRequest* req,
                           v1::Session* resp) override {
    auto scope = authenticate(ctx);
    if (!scope) return to_grpc(*ctx, scope.error());
    bool encrypt = req->encrypt();
    if (config_.encrypt == EncryptPolicy::kAlways) encrypt = true;
    if (config_.encrypt == EncryptPolicy::kNever) encrypt = false;
    const unsigned streams =
        std::clamp<unsigned>(req->streams(), 1, std::max(1u, config_.max_streams_per_session));
    auto session =
        sessions_.create(*scope, streams, encrypt,
                         std::chrono::seconds(std::max(60u, config_.session_idle_seconds)));
    if (!session) return to_grpc(*ctx, session.error());
    resp->set_session_id((*session)->id);
    resp->set_data_token((*session)->data_token);
    resp->add_data_addresses(data_address_);
    resp->set_streams(streams);
    resp->set_encrypt(encrypt);
    resp->set_max_payload(protocol::kMaxPayload);
    resp->set_expires_at(
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count() +
                                   config_.session_idle_seconds));
    log().info("session {} opened for '{}' ({} streams{})", (*session)->id, scope->subject, streams,
               encrypt ? ", sealed" : "");
    return grpc::Status::OK;
  }

  grpc::Status CloseSession(grpc::ServerContext* ctx, const v1::CloseSessionRequest* req,
                            v1::Empty*) override {
    auto scope = authenticate(ctx);
    if (!scope) return to_grpc(*ctx, scope.error());
    sessions_.close(req->session_id());
    return grpc::Status::OK;
  }

  grpc::Status IssueToken(grpc::ServerContext* ctx, const v1::IssueTokenRequest* req,
                          v1::IssuedToken* resp) override {
    auto scope = authenticate(ctx);
    if (!scope) return to_grpc(*ctx, scope.error());
    auto prefix = normalize_server_path(req->prefix());
    if (!prefix) return to_grpc(*ctx, prefix.error());
    if (!scope->covers(*prefix) || (req->write() && !scope->write)) {
      return to_grpc(*ctx, make_error(ErrorCode::kPermission, "issue token", *prefix,
                                      "cannot issue a token wider than your own"));
    }
    if (config_.secret.empty()) {
      resp->set_token("");  // this server does not check tokens
      return grpc::Status::OK;
    }
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    TokenScope issued;
    issued.subject = req->subject().empty() ? scope->subject + " (delegated)" : req->subject();
    issued.prefix = *prefix;
    issued.write = req->write();
    const std::int64_t ttl = std::clamp<std::int64_t>(req->ttl_seconds(), 60, 86400);
    issued.expires_at = now + ttl;
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
    if (!scope) return to_grpc(*ctx, scope.error());
    if (req->sources().empty()) {
      return to_grpc(*ctx, make_error(ErrorCode::kInvalidArgument, "submit job", "", "no source"));
    }
    TransferRequest t;
    for (const auto& s : req->sources()) {
      auto path = check_scope(*scope, s, false, "read");
      if (!path) return to_grpc(*ctx, path.error());
      t.sources.push_back(fmt::format("{}://root{}", kRootScheme, *path));
    }
    const std::string& dest = req->destination();
    if (dest.rfind("xfer://", 0) == 0) {
      auto url = parse_url(dest);
      if (!url) return to_grpc(*ctx, url.error());
      t.destination = dest;
      t.options.destination_endpoint.token = req->destination_token();
    } else {
      auto path = check_scope(*scope, dest, true, "write");
      if (!path) return to_grpc(*ctx, path.error());
      t.destination = fmt::format("{}://root{}", kRootScheme, *path);
    }
    const auto& o = req->options();
    t.options.recursive = o.recursive();
    t.options.verify = o.verify();
    t.options.fsync = o.fsync();
    t.options.bwlimit = o.bwlimit();
    t.options.checkpoint = o.checkpoint();
    t.options.job_id = o.job_id();
    t.options.destination_endpoint.streams = o.streams();
    t.options.destination_endpoint.encrypt = o.encrypt() ? 1 : o.no_encrypt() ? 0 : -1;
    if (!config_.state_dir.empty()) t.options.state_root = config_.state_dir + "/jobs";
    auto job = jobs_.submit(std::move(t));
    if (!job) return to_grpc(*ctx, job.error());
    resp->set_job_id((*job)->id);
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* ctx, const v1::JobId* req,
                        grpc::ServerWriter<v1::JobProgress>* writer) override {
    auto scope = authenticate(ctx);
    if (!scope) return to_grpc(*ctx, scope.error());
    auto job = jobs_.find(req->job_id());
    if (!job) {
      return to_grpc(*ctx,
                     make_error(ErrorCode::kNotFound, "watch job", req->job_id(), "no such job"));
    }
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
    if (!scope) return to_grpc(*ctx, scope.error());
    auto job = jobs_.find(req->job_id());
    if (!job) {
      return to_grpc(*ctx,
                     make_error(ErrorCode::kNotFound, "cancel job", req->job_id(), "no such job"));
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
  static void fill(Job& job, v1::JobProgress& p) {
    p.set_job_id(job.id);
    p.set_state(job.state);
    p.set_files_done(job.counters.files_done.load());
    p.set_files_total(job.counters.files_total.load());
    p.set_bytes_done(job.counters.bytes_done.load());
    p.set_bytes_total(job.counters.bytes_total.load());
    p.set_errors(job.counters.errors.load());
    p.set_message(job.message);
    p.set_exit_code(job.exit_code);
    p.set_elapsed_seconds(
        job.finished ? job.seconds
                     : std::chrono::duration<double>(std::chrono::steady_clock::now() - job.started)
                           .count());
    for (const auto& s : StreamStatsBoard::instance().snapshot(job.stats_group)) {
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

  Result<std::string> check_scope(const TokenScope& scope, const std::string& path, bool write,
                                  std::string_view op) {
    return check_token_scope(*root_, scope, path, write, op);
  }

  Result<std::string> authorize(grpc::ServerContext* ctx, const std::string& path, bool write,
                                std::string_view op) {
    XFER_ASSIGN_OR_RETURN(TokenScope scope, authenticate(ctx));
    return check_scope(scope, path, write, op);
  }

  // Errors name the server path, never the local one.
  grpc::Status fail(grpc::ServerContext& ctx, Error e, const std::string& server_path) {
    const std::string prefix = root_->path() + "/";
    if (!e.path.empty() && e.path.rfind(prefix, 0) == 0) {
      e.path = e.path.substr(prefix.size() - 1);
    } else if (e.path == root_->path()) {
      e.path = "/";
    } else if (e.path.empty()) {
      e.path = server_path;
    }
    return to_grpc(ctx, e);
  }
  grpc::Status done(grpc::ServerContext& ctx, const Status& s, const std::string& server_path) {
    if (s.ok()) return grpc::Status::OK;
    return fail(ctx, s.error(), server_path);
  }
  const ServerConfig& config_;
  std::shared_ptr<Backend> backend_;
  std::shared_ptr<const ServerRoot> root_;
  SessionRegistry& sessions_;
  JobManager& jobs_;
  std::string data_address_;
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
  Result<std::unique_ptr<Source>> open_source(std::string_view p) override {
    return b_->open_source(p);
  }
  Result<std::unique_ptr<Sink>> open_sink(std::string_view p, const SinkOptions& o) override {
    return b_->open_sink(p, o);
  }

 private:
  std::shared_ptr<Backend> b_;
};

std::string read_file(const std::string& path, Status& status) {
  std::ifstream in(path);
  if (!in) {
    status = errno_error(errno, "read", path);
    return {};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ServerImpl final : public Server {
 public:
  explicit ServerImpl(ServerConfig config) : config_(std::move(config)) {}
  ~ServerImpl() override { shutdown(5); }

  Status start() {
    XFER_ASSIGN_OR_RETURN(ServerRoot root, ServerRoot::open(config_.root));
    auto shared_root = std::make_shared<const ServerRoot>(std::move(root));
    backend_ = std::shared_ptr<Backend>(make_confined_backend(shared_root));
    std::weak_ptr<Backend> weak = backend_;
    BackendRegistry::instance().register_scheme(
        kRootScheme,
        [weak](const Url&, const EndpointOptions&) -> Result<std::unique_ptr<Backend>> {
          auto b = weak.lock();
          if (!b)
            return make_error(ErrorCode::kUnavailable, "open endpoint", "xferd root",
                              "server stopped");
          return std::unique_ptr<Backend>(new SharedBackend(std::move(b)));
        });
    sessions_ = std::make_unique<SessionRegistry>(config_.max_sessions);
    data_ = std::make_unique<DataServer>(backend_, shared_root, *sessions_,
                                         std::chrono::seconds(config_.session_idle_seconds));
    XFER_TRY(data_->start(config_.data_listen));
    jobs_ = std::make_unique<JobManager>(config_.max_jobs);
    service_ = std::make_unique<Service>(config_, backend_, shared_root, *sessions_, *jobs_,
                                         data_->address());

    std::shared_ptr<grpc::ServerCredentials> creds;
    if (!config_.tls_cert.empty()) {
      Status st = ok_status();
      grpc::SslServerCredentialsOptions ssl;
      grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
      pair.cert_chain = read_file(config_.tls_cert, st);
      XFER_TRY(st);
      pair.private_key = read_file(config_.tls_key, st);
      XFER_TRY(st);
      ssl.pem_key_cert_pairs.push_back(pair);
      creds = grpc::SslServerCredentials(ssl);
    } else {
      creds = grpc::InsecureServerCredentials();
    }
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(config_.listen, creds, &port);
    builder.RegisterService(service_.get());
    builder.SetMaxReceiveMessageSize(16 << 20);
    grpc_ = builder.BuildAndStart();
    if (!grpc_ || port == 0) {
      data_->stop();
      return make_error(ErrorCode::kUnavailable, "listen", config_.listen,
                        "cannot listen for the control channel (address in use?)");
    }
    XFER_ASSIGN_OR_RETURN(auto hp, protocol::split_host_port(config_.listen));
    control_ = hp.first.find(':') != std::string::npos ? fmt::format("[{}]:{}", hp.first, port)
                                                       : fmt::format("{}:{}", hp.first, port);
    return ok_status();
  }

  std::string control_address() const override { return control_; }
  std::string data_address() const override { return data_->address(); }

  void shutdown(int grace_seconds) override {
    std::lock_guard lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    log().info("shutting down");
    if (jobs_) jobs_->stop();
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
  ServerConfig config_;
  std::shared_ptr<Backend> backend_;
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
