// Third-party transfers (third_party.hpp, docs/protocol.md): the order to
// the two servers and the progress of the job that results.

#include "third_party.hpp"

#include <grpcpp/grpcpp.h>

#include <thread>

#include <fmt/format.h>

#include "backend/xfer/control.hpp"
#include "protocol/grpc_errors.hpp"
#include "xfer/backend/xfer.hpp"
#include "xfer/core/log.hpp"
#include "xfer/engine/outcome.hpp"
#include "xfer/metrics/streams.hpp"
#include "xfer/v1/xfer.grpc.pb.h"

namespace xfer {
namespace {

namespace v1 = ::xfer::v1;

// The registry that reads the request's URLs (its remotes, its credentials).
std::shared_ptr<const BackendRegistry> registry_of(const TransferRequest& request) {
  return request.backends ? request.backends : BackendRegistry::with_builtins();
}

// The job's final figures, as the source server reported them.
struct JobOutcome {
  std::uint64_t files_done = 0;
  std::uint64_t bytes_done = 0;
  double seconds = 0;
  int exit_code = 0;
  std::string message;
  std::string job_id;
};

std::string parent_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

Result<JobOutcome> run_job(const TransferRequest& request, TransferCounters& counters,
                           const std::atomic<bool>* cancel) {
  const TransferOptions& opt = request.options;
  const auto registry = registry_of(request);
  XFER_ASSIGN_OR_RETURN(Url dst, registry->parse(request.destination));
  std::vector<std::string> source_paths;
  std::optional<Url> src;
  for (const auto& s : request.sources) {
    XFER_ASSIGN_OR_RETURN(Url u, registry->parse(s));
    if (u.scheme != "xfer") {
      return make_error(ErrorCode::kInvalidArgument, "transfer", s,
                        "a third-party transfer needs xfer:// sources");
    }
    if (src && (src->host != u.host || src->port != u.port)) {
      return make_error(ErrorCode::kInvalidArgument, "transfer", s,
                        "all sources of a third-party transfer must be on one server");
    }
    source_paths.push_back(u.path.empty() ? "/" : u.path);
    src = u;
  }
  XFER_ASSIGN_OR_RETURN(Profile src_profile, registry->profile(*src, opt.source_endpoint));
  XFER_ASSIGN_OR_RETURN(Profile dst_profile, registry->profile(dst, opt.destination_endpoint));
  const std::string src_token = src_profile.get("token");
  const std::string dst_token = dst_profile.get("token");

  // 1. B issues a token for the destination only; A will present it.
  XFER_ASSIGN_OR_RETURN(
      auto b, make_control_stub(dst, with_profile_tls(opt.destination_endpoint, dst_profile)));
  v1::IssueTokenRequest ireq;
  std::string dst_path = dst.path.empty() ? "/" : dst.path;
  ireq.set_prefix(dst.trailing_slash || request.sources.size() > 1 ? dst_path
                                                                   : parent_of(dst_path));
  ireq.set_write(true);
  ireq.set_ttl_seconds(86400);
  ireq.set_subject("third-party from " + endpoint_name(*src));
  v1::IssuedToken issued;
  {
    grpc::ClientContext ctx;
    prepare_call(ctx, dst_token, std::chrono::seconds(30));
    grpc::Status st = b->IssueToken(&ctx, ireq, &issued);
    if (!st.ok()) return protocol::from_grpc(st, ctx, "issue token", request.destination);
  }

  // 2. A runs the transfer.
  XFER_ASSIGN_OR_RETURN(
      auto a, make_control_stub(*src, with_profile_tls(opt.source_endpoint, src_profile)));
  v1::JobRequest jreq;
  for (auto& p : source_paths) jreq.add_sources(p);
  jreq.set_destination(fmt::format("xfer://{}{}{}", endpoint_name(dst), dst_path,
                                   dst.trailing_slash && dst_path != "/" ? "/" : ""));
  jreq.set_destination_token(issued.token());
  auto& values = *jreq.mutable_options()->mutable_values();
  for (auto& [name, text] : option_values(opt, kRemote)) values[name] = text;
  v1::JobAccepted accepted;
  {
    grpc::ClientContext ctx;
    prepare_call(ctx, src_token, std::chrono::seconds(30));
    grpc::Status st = a->SubmitJob(&ctx, jreq, &accepted);
    if (!st.ok()) return protocol::from_grpc(st, ctx, "submit job", request.sources.front());
  }

  // 3. Follow its progress; a cancel here cancels it there.
  JobOutcome result;
  result.job_id = accepted.job_id();
  v1::JobId id;
  id.set_job_id(accepted.job_id());
  grpc::ClientContext watch;
  prepare_call(watch, src_token, std::chrono::seconds(7 * 86400));
  std::atomic<bool> finished{false};
  std::thread canceller([&] {
    while (!finished.load()) {
      if (cancel != nullptr && cancel->load()) {
        grpc::ClientContext ctx;
        prepare_call(ctx, src_token, std::chrono::seconds(10));
        v1::Empty e;
        (void)a->CancelJob(&ctx, id, &e);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  auto reader = a->WatchJob(&watch, id);
  v1::JobProgress p;
  bool final_seen = false;
  std::uint64_t stats_id = 0;
  auto last = std::make_shared<std::vector<StreamStat>>();
  auto last_mu = std::make_shared<std::mutex>();
  const std::shared_ptr<StreamStatsBoard> board = opt.destination_endpoint.stats_board;
  if (board) {
    stats_id = board->add("", [last, last_mu] {
      std::lock_guard lock(*last_mu);
      return *last;
    });
  }
  while (reader->Read(&p)) {
    counters.files_done.store(p.files_done());
    counters.files_total.store(p.files_total());
    counters.bytes_done.store(p.bytes_done());
    counters.bytes_total.store(p.bytes_total());
    counters.errors.store(p.errors());
    counters.files_unchanged.store(p.files_unchanged());
    counters.bytes_unchanged.store(p.bytes_unchanged());
    {
      std::lock_guard lock(*last_mu);
      last->clear();
      for (const auto& s : p.streams()) {
        StreamStat st;
        st.endpoint = fmt::format("{} -> {}", endpoint_name(*src), endpoint_name(dst));
        st.index = s.index();
        st.bytes_sent = s.bytes();
        st.rtt_ms = s.rtt_ms();
        st.cwnd = s.cwnd();
        st.retransmits = s.retransmits();
        st.seconds =
            s.throughput_bps() > 0 ? static_cast<double>(s.bytes()) / s.throughput_bps() : 0;
        last->push_back(st);
      }
    }
    if (p.state() != "running") {
      final_seen = true;
      result.files_done = p.files_done();
      result.bytes_done = p.bytes_done();
      result.seconds = p.elapsed_seconds();
      result.exit_code = p.exit_code();
      result.message = p.message();
    }
  }
  grpc::Status st = reader->Finish();
  finished.store(true);
  canceller.join();
  if (board) board->remove(stats_id);
  if (!final_seen) {
    if (!st.ok()) return protocol::from_grpc(st, watch, "watch job", result.job_id);
    return make_error(ErrorCode::kUnavailable, "watch job", result.job_id,
                      "the source server stopped reporting", RetryClass::kRetryCall);
  }
  return result;
}

}  // namespace

bool is_third_party(const TransferRequest& request) {
  const auto registry = registry_of(request);
  auto is_xfer = [&](const std::string& text) {
    auto url = registry->parse(text);
    return url && url->scheme == "xfer";
  };
  if (request.sources.empty() || !is_xfer(request.destination)) return false;
  for (const auto& s : request.sources) {
    if (!is_xfer(s)) return false;
  }
  return true;
}

Result<TransferResult> run_third_party(const TransferRequest& request, TransferCounters& counters,
                                       TransferObserver* observer,
                                       const std::atomic<bool>* cancel) {
  XFER_ASSIGN_OR_RETURN(JobOutcome job, run_job(request, counters, cancel));
  TransferResult r;
  r.files_done = job.files_done;
  r.bytes_done = job.bytes_done;
  r.files_unchanged = counters.files_unchanged.load();
  r.bytes_unchanged = counters.bytes_unchanged.load();
  r.seconds = job.seconds;
  r.job_id = job.job_id;
  r.cancelled = job.exit_code == kExitInterrupted;
  if (job.exit_code != 0 && !r.cancelled) {
    if (counters.errors.load() == 0) counters.errors.store(1);
    if (observer != nullptr) {
      observer->on_error(
          make_error(ErrorCode::kIo, "third-party transfer", job.job_id,
                     job.message.empty() ? "failed on the source server" : job.message));
    }
  }
  return r;
}

}  // namespace xfer
