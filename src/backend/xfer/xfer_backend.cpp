// The xfer:// backend (include/xfer/backend/xfer.hpp, docs/protocol.md).
//
// Threading: one XferClient per Backend, shared by all workers. Namespace
// calls are independent gRPC calls. Data calls are multiplexed over the
// session's data connections: a worker sends its request frame under the
// connection's send lock and waits for the reply, which that connection's
// reader thread routes back by (handle id, offset). Chunks of one file go
// to whichever connection is next in turn, so they stripe across all.

#include "xfer/backend/xfer.hpp"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "backend/xfer/control.hpp"
#include "backend/xfer/paths.hpp"
#include "protocol/conn.hpp"
#include "protocol/grpc_errors.hpp"
#include "protocol/pb_convert.hpp"
#include "xfer/core/files.hpp"
#include "xfer/core/limits.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"
#include "xfer/engine/changes.hpp"
#include "xfer/metrics/streams.hpp"
#include "xfer/protocol/crypto.hpp"
#include "xfer/protocol/frame.hpp"
#include "xfer/v1/xfer.grpc.pb.h"

namespace xfer {
namespace {

namespace v1 = ::xfer::v1;
using protocol::FrameConn;
using protocol::FrameHeader;
using protocol::FrameType;

constexpr std::uint64_t kPutFileLimit = 1u << 20;
// The largest frame payload the protocol allows (sealed frames add a tag).
constexpr std::size_t kMaxPiece =
    protocol::kMaxPayload - protocol::kTagSize;   // files up to this travel in one frame
constexpr std::uint32_t kInlineLimit = 1u << 20;  // downloads up to this come inline
constexpr auto kCallTimeout = std::chrono::seconds(120);
// A call moves off its connection (ClientConn::Move) after waiting at
// least kMoveAfter and 4 round trips while another connection of its
// session sits idle; checked every kMoveTick, at most kMaxMoves times.
constexpr auto kMoveAfter = std::chrono::milliseconds(1000);
constexpr auto kMoveTick = std::chrono::milliseconds(250);
constexpr unsigned kMaxMoves = 2;
// The most a data connection's socket buffers may grow to on a long path.
constexpr std::size_t kMaxSocketBuffer = std::size_t{64} << 20;
constexpr auto kRpcTimeout = std::chrono::seconds(60);
// Data connections handshaking at once, per session: below xferd's default
// limits.max_unauthenticated_per_address (16), so that one client never
// trips it alone.
constexpr std::size_t kParallelHandshakes = 8;
// Rounds of opening the connections the server refused for a limit
// (backoff 100, 200, 400, 800 ms with up to 100% jitter between them).
constexpr unsigned kOpenAttempts = 5;
// The watchdog's tick, the least time a connection may sit on calls
// without TCP progress before it counts as a dead path (stall_limit()),
// and the backoff of re-opening a dead path's connections.
constexpr auto kWatchInterval = std::chrono::milliseconds(500);
constexpr auto kStallLimit = std::chrono::milliseconds(3000);
constexpr auto kReopenFirst = std::chrono::milliseconds(1000);
constexpr auto kReopenMax = std::chrono::milliseconds(30000);
// The stream controller (auto --streams over a network path): it starts
// with kAutoStartStreams connections and decides every control interval
// (kControlInterval, or 8 round trips when longer). It adds a connection
// while each one added raised the goodput by kGainToKeep — judged on the
// mean of the kJudgeIntervals after the add (the first includes the new
// connection's slow start) against the mean of the two before, since one
// interval's goodput swings by a quarter with TCP's sawtooth —, takes back
// one that did not (and waits kHoldIntervals before probing again), and
// backs off multiplicatively (kBackOff) when retransmissions pass
// kLossSpike while the goodput fell below kFallToBackOff of the best seen
// in the intervals after an add (self-inflicted); the same signs under an
// unchanged count are the path changing (W6: a rate drop cut 4 connections
// to 1), and only reset the best seen.
// Nothing is decided in the first kWarmupIntervals (TCP's start-up: a
// connection added then only adds to the queue overruns of slow start;
// measured on the lab's 150 ms link), nor in an interval where some
// connection had no call in flight (the end of a file, a slow disk: the
// goodput says nothing about the path then).
constexpr unsigned kAutoStartStreams = 4;
constexpr unsigned kWarmupIntervals = 3;
constexpr auto kControlInterval = std::chrono::milliseconds(1000);
constexpr double kGainToKeep = 1.05;
constexpr unsigned kJudgeIntervals = 2;
constexpr unsigned kHoldIntervals = 5;
constexpr double kLossSpike = 0.02;
constexpr double kFallToBackOff = 0.8;
constexpr double kBackOff = 0.7;
// Final figures kept of connections that were replaced.
constexpr std::size_t kMaxRetiredStats = 256;

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// ---- protobuf <-> xfer --------------------------------------------------

using protocol::from_pb;
using protocol::to_pb;

Error remote_error(const std::vector<std::byte>& body, std::string_view op, std::string_view path) {
  auto e = protocol::decode_error(body);
  if (!e) return make_error(ErrorCode::kCorrupt, op, path, "unreadable error frame from server");
  // Numbers this build does not know make an internal, final error.
  const WireErrorKind kind = error_kind_from_wire(e->code, e->retry)
                                 .value_or(WireErrorKind{ErrorCode::kInternal, RetryClass::kFatal});
  return make_error(kind.code, op, path, "server: " + e->message, kind.retry);
}

// ---- one data connection ------------------------------------------------

struct Pending {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  FrameHeader reply;
  std::vector<std::byte> body;   // payload of non-data replies
  std::span<std::byte> target;   // where a kData reply's payload goes
  std::size_t received = 0;      // bytes written into target
  std::optional<Error> failure;  // connection-level failure
};

class ClientConn {
 public:
  ClientConn(UniqueFd fd, unsigned index, std::uint64_t session, std::size_t path,
             std::string path_name)
      : fc_(std::move(fd)),
        index_(index),
        session_(session),
        path_(path),
        path_name_(std::move(path_name)),
        started_(std::chrono::steady_clock::now()) {}
  ~ClientConn() { close(); }
  // A dead slot for connection `index` that could not be opened: the
  // watchdog opens it later on its path.
  static std::shared_ptr<ClientConn> placeholder(unsigned index, std::uint64_t session,
                                                 std::size_t path, std::string path_name) {
    auto c = std::make_shared<ClientConn>(UniqueFd(), index, session, path, std::move(path_name));
    c->alive_.store(false);
    c->closed_at_ns_.store(c->started_.time_since_epoch().count());
    return c;
  }
  // Unique for the process's life (maps keyed by it never mistake a new
  // connection for a freed one).
  std::uint64_t id() const { return id_; }

  FrameConn& frames() { return fc_; }
  // Which data session (of this client) the connection belongs to.
  std::uint64_t session() const { return session_; }
  unsigned index() const { return index_; }
  // Which of the client's data paths it runs over.
  std::size_t path() const { return path_; }
  const std::string& path_name() const { return path_name_; }
  bool alive() const { return alive_.load(); }
  // Bytes of the calls in flight on it (requests sent or being sent, and
  // replies expected): the client gives the next call to the connection
  // with the fewest, so a path that moves data faster gets more of it and
  // a stalled one none.
  std::uint64_t outstanding() const { return outstanding_.load(std::memory_order_relaxed); }
  // True while the reply to a moved call with this request's key is still
  // due here: a new call with the same key would take it for its own
  // (replies are matched by handle and offset), so calls with that key go
  // elsewhere or wait (call()).
  bool owes(std::uint64_t id, std::uint64_t offset) {
    // Every pick asks this of every connection: no lock while none is due.
    if (!owes_any_.load(std::memory_order_relaxed)) return false;
    std::lock_guard lock(mu_);
    return abandoned_.count(Key{id, offset}) != 0;
  }
  // When the oldest reply still due to a moved call was abandoned (nullopt:
  // none): the watchdog gives such a reply kCallTimeout, as a call has.
  std::optional<std::chrono::steady_clock::time_point> oldest_abandoned() {
    std::lock_guard lock(mu_);
    std::optional<std::chrono::steady_clock::time_point> oldest;
    for (const auto& [k, a] : abandoned_) {
      if (!oldest || a.since < *oldest) oldest = a.since;
    }
    return oldest;
  }
  // Claims an idle connection as the target of one moved call: false when
  // another call claimed it within kMoveTick (stuck calls that check at the
  // same moment would otherwise all move onto the same connection).
  bool claim_for_move(std::chrono::steady_clock::time_point now) {
    const auto at = now.time_since_epoch().count();
    auto last = claimed_at_ns_.load();
    const auto tick = std::chrono::duration_cast<std::chrono::steady_clock::duration>(kMoveTick);
    if (last != 0 && at - last < tick.count()) return false;
    return claimed_at_ns_.compare_exchange_strong(last, at);
  }
  // The reader is in the middle of a reply's payload (the server has begun
  // to send it): no progress then means the path, not the server.
  bool receiving() const { return receiving_.load(std::memory_order_relaxed); }
  // A draining connection takes no new calls; the controller closes it
  // once its calls are done.
  void drain() { draining_.store(true); }
  bool draining() const { return draining_.load(); }

  void start_reader() {
    reader_ = std::thread([this] { read_loop(); });
  }

  void close() {
    shutdown();
    if (reader_.joinable() && reader_.get_id() != std::this_thread::get_id()) reader_.join();
  }
  // Ends the connection without waiting for its reader: the reader wakes,
  // fails every call in flight, and ends. Any thread.
  void shutdown() {
    alive_.store(false);
    fc_.shutdown();
  }

  // A call that may leave this connection while it waits (a straggler at
  // the end of a file): should_move is asked every kMoveTick with how long
  // the call has waited; when it says yes and the reply has not begun to
  // arrive, the call is taken back and returns with `moved` set, for the
  // caller to send it again elsewhere. The request stays on the wire: its
  // late reply is dropped (and counted out of outstanding() then), which
  // is harmless because only idempotent calls move (a write of the same
  // bytes at the same offset, a read).
  struct Move {
    std::function<bool(std::chrono::steady_clock::duration)> should_move;
    bool moved = false;
  };

  // Sends a request and waits for its reply. `target` receives a kData
  // reply's payload. The reply header is returned; kError replies become
  // errors. `sender` replaces the plain send (sendfile), `sender_bytes`
  // being what it sends.
  Result<FrameHeader> call(const FrameHeader& req, std::span<const std::byte> a,
                           std::span<const std::byte> b, std::vector<std::byte>* body,
                           std::span<std::byte> target, std::string_view op, std::string_view path,
                           const std::function<Status()>& sender = nullptr,
                           std::size_t sender_bytes = 0, Move* move = nullptr) {
    // Counted for as long as the call lasts, however it ends; a moved
    // call until its late reply arrives.
    const std::uint64_t cost = a.size() + b.size() + target.size() + sender_bytes + 64;
    outstanding_.fetch_add(cost, std::memory_order_relaxed);
    struct Uncount {
      ClientConn& c;
      std::uint64_t cost;
      ~Uncount() { c.outstanding_.fetch_sub(cost, std::memory_order_relaxed); }
    } uncount{*this, cost};
    auto p = std::make_shared<Pending>();
    p->target = target;
    const Key key{req.id, req.offset};
    {
      std::unique_lock lock(mu_);
      // A moved call's reply with this key still due here would be taken
      // for this call's: wait for it (the client sends such calls
      // elsewhere when it can; the watchdog bounds how long it is due).
      if (!abandoned_cv_.wait_for(lock, kCallTimeout,
                                  [&] { return !alive_.load() || abandoned_.count(key) == 0; })) {
        return make_error(ErrorCode::kUnavailable, op, path,
                          "an earlier reply for this request never came", RetryClass::kRetryCall);
      }
      if (!alive_.load()) return dead_error();
      if (!pending_.emplace(key, p).second) {
        return make_error(ErrorCode::kInternal, op, path, "duplicate request in flight");
      }
    }
    Status sent = sender ? sender() : fc_.send(req, a, b);
    if (!sent.ok()) {
      {
        std::lock_guard lock(mu_);
        pending_.erase(key);
      }
      // A failed send leaves the stream in an unknown state.
      alive_.store(false);
      fc_.shutdown();
      return sent.error();
    }
    std::unique_lock lock(p->mu);
    const auto began = std::chrono::steady_clock::now();
    const bool movable = move != nullptr && move->should_move;
    while (!p->cv.wait_for(lock, movable ? kMoveTick : kCallTimeout, [&] { return p->done; })) {
      const auto waited = std::chrono::steady_clock::now() - began;
      if (movable && waited < kCallTimeout) {
        lock.unlock();
        if (move->should_move(waited)) {
          std::lock_guard l2(mu_);
          auto it = pending_.find(key);
          if (it != pending_.end() && it->second == p) {
            // Not begun to arrive: the reader will drop the reply.
            pending_.erase(it);
            owes_any_.store(true, std::memory_order_relaxed);
            Abandoned& due = abandoned_[key];
            if (due.cost == 0) due.since = std::chrono::steady_clock::now();
            due.cost += cost;
            uncount.cost = 0;
            move->moved = true;
            return make_error(ErrorCode::kUnavailable, op, path, "moved to another connection",
                              RetryClass::kRetryCall);
          }
        }
        lock.lock();
        continue;
      }
      lock.unlock();
      bool mine = false;
      {
        std::lock_guard l2(mu_);
        auto it = pending_.find(key);
        mine = it != pending_.end() && it->second == p;
        if (mine) pending_.erase(it);
      }
      alive_.store(false);
      fc_.shutdown();
      if (!mine) {
        // The reader took the reply and may be writing it into `target`:
        // the shutdown ends its receive, and it completes the call; only
        // then may the caller's buffer go.
        std::unique_lock l3(p->mu);
        p->cv.wait(l3, [&] { return p->done; });
      }
      return make_error(ErrorCode::kUnavailable, op, path, "server did not answer in 120 s",
                        RetryClass::kRetryCall);
    }
    if (p->failure) {
      Error e = *p->failure;
      e.operation = std::string(op);
      e.path = std::string(path);
      return e;
    }
    if (p->reply.type == FrameType::kError) return remote_error(p->body, op, path);
    if (body) *body = std::move(p->body);
    return p->reply;
  }

  // Fire-and-forget (kClose of a read handle): the reply is dropped.
  void post(const FrameHeader& req) { (void)fc_.send(req, {}); }

  StreamStat stat(const std::string& endpoint) const {
    StreamStat s;
    s.endpoint = endpoint;
    s.path = path_name_;
    s.index = index_;
    // The transport's own figures (TCP_INFO over TCP).
    const auto t = fc_.transport_stats();
    s.bytes_sent = t.bytes_sent;
    s.bytes_received = t.bytes_received;
    s.seconds = std::chrono::duration<double>(
                    (closed_at_ns_.load() != 0
                         ? std::chrono::steady_clock::time_point(
                               std::chrono::steady_clock::duration(closed_at_ns_.load()))
                         : std::chrono::steady_clock::now()) -
                    started_)
                    .count();
    s.rtt_ms = t.rtt_ms;
    s.cwnd = t.cwnd;
    s.retransmits = t.retransmits;
    s.min_rtt_ms = t.min_rtt_ms;
    s.delivery_rate_bps = static_cast<double>(t.delivery_rate);
    s.busy_s = static_cast<double>(t.busy_us) / 1e6;
    s.rwnd_limited_s = static_cast<double>(t.rwnd_limited_us) / 1e6;
    s.sndbuf_limited_s = static_cast<double>(t.sndbuf_limited_us) / 1e6;
    return s;
  }

 private:
  struct Key {
    std::uint64_t id, offset;
    bool operator<(const Key& o) const { return id != o.id ? id < o.id : offset < o.offset; }
  };

  static Error dead_error() {
    return make_error(ErrorCode::kUnavailable, "send", "data connection", "connection lost",
                      RetryClass::kRetryCall);
  }

  void read_loop() {
    Error failure = dead_error();
    std::vector<std::byte> scratch;
    while (true) {
      auto h = fc_.recv_header();
      if (!h) {
        failure = h.error();
        break;
      }
      std::shared_ptr<Pending> p;
      {
        std::lock_guard lock(mu_);
        auto it = pending_.find(Key{h->id, h->offset});
        if (it != pending_.end()) {
          p = it->second;
          pending_.erase(it);
        }
      }
      Status rs = ok_status();
      if (!p) {
        // A reply nobody waits for (kClose acks, a timed-out or moved
        // call).
        {
          std::lock_guard lock(mu_);
          if (auto it = abandoned_.find(Key{h->id, h->offset}); it != abandoned_.end()) {
            outstanding_.fetch_sub(it->second.cost, std::memory_order_relaxed);
            abandoned_.erase(it);
            owes_any_.store(!abandoned_.empty(), std::memory_order_relaxed);
            abandoned_cv_.notify_all();
          }
        }
        receiving_.store(true);
        rs = fc_.recv_payload(*h, scratch);
        receiving_.store(false);
        if (!rs.ok() && rs.error().retry == RetryClass::kFatal) {
          failure = rs.error();
          break;
        }
        continue;
      }
      const std::uint32_t plain = fc_.plain_length(*h);
      if (h->type == FrameType::kData) {
        if (plain > p->target.size() || h->aux != plain) {
          failure = make_error(ErrorCode::kCorrupt, "recv", "data connection",
                               "data reply larger than requested");
          complete(p, *h, failure);
          break;
        }
        receiving_.store(true);
        rs = fc_.recv_payload(*h, p->target.subspan(0, plain));
        receiving_.store(false);
        p->received = plain;
      } else {
        rs = fc_.recv_payload(*h, p->body);
      }
      if (!rs.ok()) {
        complete(p, *h, rs.error());
        if (rs.error().retry == RetryClass::kFatal || rs.error().code == ErrorCode::kUnavailable) {
          failure = rs.error();
          break;
        }
        continue;
      }
      complete(p, *h, std::nullopt);
    }
    alive_.store(false);
    closed_at_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count());
    std::map<Key, std::shared_ptr<Pending>> left;
    {
      std::lock_guard lock(mu_);
      left.swap(pending_);
      for (const auto& [k, a] : abandoned_) {
        outstanding_.fetch_sub(a.cost, std::memory_order_relaxed);
      }
      abandoned_.clear();
      owes_any_.store(false, std::memory_order_relaxed);
    }
    abandoned_cv_.notify_all();
    if (failure.code == ErrorCode::kUnavailable || failure.code == ErrorCode::kIo) {
      failure.code = ErrorCode::kUnavailable;
      failure.retry = RetryClass::kRetryCall;
      if (failure.detail.empty() || failure.detail == "connection closed by peer") {
        failure.detail = "data connection to the server lost";
      }
    }
    for (auto& [k, p] : left) complete(p, FrameHeader{}, failure);
  }

  static void complete(const std::shared_ptr<Pending>& p, const FrameHeader& h,
                       std::optional<Error> failure) {
    std::lock_guard lock(p->mu);
    p->reply = h;
    p->failure = std::move(failure);
    p->done = true;
    p->cv.notify_all();
  }

  FrameConn fc_;
  unsigned index_;
  std::uint64_t session_;
  std::size_t path_;
  std::string path_name_;
  std::atomic<std::uint64_t> outstanding_{0};
  std::atomic<bool> receiving_{false};  // receiving()
  std::atomic<bool> draining_{false};
  std::chrono::steady_clock::time_point started_;
  std::atomic<std::chrono::steady_clock::rep> closed_at_ns_{0};  // 0: open
  std::uint64_t id_ = next_id_.fetch_add(1);
  static inline std::atomic<std::uint64_t> next_id_{1};
  std::atomic<bool> alive_{true};
  std::mutex mu_;
  std::map<Key, std::shared_ptr<Pending>> pending_;
  struct Abandoned {
    std::uint64_t cost = 0;  // counted in outstanding_ until the reply comes
    std::chrono::steady_clock::time_point since;
  };
  std::map<Key, Abandoned> abandoned_;    // moved calls whose replies are due
  std::condition_variable abandoned_cv_;  // an entry of abandoned_ went (with mu_)
  std::atomic<bool> owes_any_{false};     // !abandoned_.empty(), written under mu_
  std::atomic<std::chrono::steady_clock::rep> claimed_at_ns_{0};  // claim_for_move()
  std::thread reader_;
};

// ---- the client (gRPC + data session) ---------------------------------------

class XferClient : public std::enable_shared_from_this<XferClient> {
 public:
  // A refusal for want of a token, with where xfer looked for one: the
  // user's terms, not the server's.
  Error explain(Error e) const {
    if (e.code != ErrorCode::kPermission || !token_.empty()) return e;
    const std::string host_port = fmt::format(
        "{}:{}", url_.host.find(':') != std::string::npos ? "[" + url_.host + "]" : url_.host,
        url_.port != 0 ? url_.port : kDefaultXferPort);
    e.detail = fmt::format(
        "{}; none was given: no --token, no $XFER_TOKEN, and {} has no token for \"{}\" "
        "(xfer remote add NAME xfer host={} port={} token=…, or a [\"{}\"] table: "
        "docs/credentials.md)",
        e.detail, CredentialStore::default_path(), host_port, url_.host,
        url_.port != 0 ? url_.port : kDefaultXferPort, host_port);
    return e;
  }

  XferClient(Url url, EndpointOptions options, std::string token)
      : url_(std::move(url)),
        options_(std::move(options)),
        token_(std::move(token)),
        name_("xfer://" + endpoint_name(url_)) {}

  ~XferClient() {
    stop_watchdog();
    std::vector<std::shared_ptr<ClientConn>> conns;
    std::vector<StreamStat> retired;
    {
      std::lock_guard lock(mu_);
      conns.swap(conns_);
      retired.swap(retired_);
    }
    if (stats_id_ && options_.stats_board) {
      std::vector<StreamStat> last = std::move(retired);
      for (auto& c : conns) last.push_back(c->stat(name_));
      options_.stats_board->remove(stats_id_, std::move(last));
    }
    for (auto& c : conns) c->close();
    // A courtesy: the server also drops the session with its last
    // connection. Not after a cancel, when the server may not be answering.
    close_session(session_id_);
  }

  Status connect_control() {
    XFER_ASSIGN_OR_RETURN(stub_, make_control_stub(url_, options_));
    return ok_status();
  }

  v1::Xfer::Stub& stub() { return *stub_; }
  const Url& url() const { return url_; }
  const EndpointOptions& endpoint_options() const { return options_; }
  const std::string& name() const { return name_; }

  void prepare(grpc::ClientContext& ctx, std::chrono::seconds timeout = kRpcTimeout) const {
    prepare_call(ctx, token_, timeout);
  }

  // A gRPC call in flight, known to cancel(): it prepares the context and,
  // for as long as it lives, a cancel reaches the call (TryCancel) instead
  // of leaving it to its deadline.
  class Call {
   public:
    Call(XferClient& client, grpc::ClientContext& ctx, std::chrono::seconds timeout)
        : client_(client), ctx_(ctx), started_(std::chrono::steady_clock::now()) {
      client_.prepare(ctx_, timeout);
      std::lock_guard lock(client_.calls_mu_);
      client_.calls_.insert(&ctx_);
      if (client_.cancelled_.load()) ctx_.TryCancel();
    }
    ~Call() {
      // A unary call's duration bounds the round trip from above (the first
      // one also pays for connecting): the smallest one seen is the estimate
      // until a data connection's TCP_INFO says better.
      client_.observe_rtt(std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::steady_clock::now() - started_)
                              .count());
      std::lock_guard lock(client_.calls_mu_);
      client_.calls_.erase(&ctx_);
    }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

   private:
    XferClient& client_;
    grpc::ClientContext& ctx_;
    std::chrono::steady_clock::time_point started_;
  };

  // The smallest round trip seen (µs; 0 until one is seen). Any thread.
  void observe_rtt(std::int64_t us) {
    if (us <= 0) return;
    std::int64_t seen = min_rtt_us_.load(std::memory_order_relaxed);
    while ((seen == 0 || us < seen) &&
           !min_rtt_us_.compare_exchange_weak(seen, us, std::memory_order_relaxed)) {
    }
  }
  // What the data session carried per second while every connection had
  // work (0 until measured). Any thread.
  double goodput() const { return goodput_.load(std::memory_order_relaxed); }
  double rtt_ms() const {
    return static_cast<double>(min_rtt_us_.load(std::memory_order_relaxed)) / 1000.0;
  }
  [[nodiscard]] Call track(grpc::ClientContext& ctx, std::chrono::seconds timeout = kRpcTimeout) {
    return Call(*this, ctx, timeout);
  }

  // The next connection in turn, opening the session and (re)connecting
  // streams as needed.
  // Cancellation reaches the wire: every data connection is shut down, so
  // calls waiting for a reply fail at once instead of after kCallTimeout,
  // and pick() opens nothing new.
  void cancel() {
    std::vector<std::shared_ptr<ClientConn>> conns;
    // Set before taking mu_: a session being opened (which holds mu_)
    // sees it between its attempts.
    cancelled_.store(true);
    // Handshakes and control calls first, without mu_: a session being
    // opened holds mu_ across them.
    shutdown_handshakes();
    {
      std::lock_guard lock(calls_mu_);
      for (grpc::ClientContext* ctx : calls_) ctx->TryCancel();
    }
    {
      std::lock_guard lock(mu_);
      conns = conns_;
    }
    for (auto& c : conns) c->shutdown();
  }

  Result<std::shared_ptr<ClientConn>> pick() {
    std::lock_guard lock(mu_);
    if (cancelled_) {
      return make_error(ErrorCode::kCancelled, "data session", name_, "the transfer was cancelled");
    }
    if (conns_.empty()) XFER_TRY(open_session_locked());
    if (auto c = least_loaded_locked(0)) return c;
    // Every connection is down: the server restarted or the network broke.
    // Reconnect (a new session if the old one is gone).
    retire_all_locked();
    XFER_TRY(open_session_locked());
    if (auto c = least_loaded_locked(0)) return c;
    return make_error(ErrorCode::kUnavailable, "data session", name_,
                      "no data connection stayed open", RetryClass::kRetryCall);
  }

  // A live connection of data session `session`, never reconnecting: a file
  // handle exists only in the session that opened it, so when that session
  // is gone (server restarted, every connection lost) the call fails with
  // kUnavailable/kRetryFile and the engine reopens the file — resuming its
  // partial — through pick().
  // `req`, when given, is the call to be made: a connection that still
  // owes a moved call's reply with its key is taken only when no other is
  // alive (ClientConn::owes).
  Result<std::shared_ptr<ClientConn>> pick_in(std::uint64_t session,
                                              const FrameHeader* req = nullptr) {
    std::lock_guard lock(mu_);
    if (cancelled_) {
      return make_error(ErrorCode::kCancelled, "data session", name_, "the transfer was cancelled");
    }
    if (auto c = least_loaded_locked(session, req)) return c;
    return make_error(ErrorCode::kUnavailable, "data session", name_,
                      "the connection to the server that held this file was lost",
                      RetryClass::kRetryFile);
  }

  // A data-plane call that may move (a write of a piece, a read): on a
  // connection of `session`, moved to an idle one when it straggles
  // (move_target). `send_file`, when set, sends the request itself
  // (sendfile) on whichever connection carries it, `file_bytes` long.
  Result<FrameHeader> moving_call(std::uint64_t session, const FrameHeader& req,
                                  std::span<const std::byte> payload, std::span<std::byte> target,
                                  std::string_view op, std::string_view path,
                                  const std::function<Status(FrameConn&)>& send_file = nullptr,
                                  std::size_t file_bytes = 0) {
    XFER_ASSIGN_OR_RETURN(auto conn, pick_in(session, &req));
    for (unsigned moves = 0;; ++moves) {
      std::shared_ptr<ClientConn> to;
      ClientConn::Move move;
      if (moves < kMaxMoves) {
        move.should_move = [&](std::chrono::steady_clock::duration waited) {
          to = move_target(*conn, req, waited, !target.empty());
          return to != nullptr;
        };
      }
      std::function<Status()> sender;
      if (send_file) sender = [&, c = conn.get()] { return send_file(c->frames()); };
      auto reply =
          conn->call(req, payload, {}, nullptr, target, op, path, sender, file_bytes, &move);
      if (!move.moved) return reply;
      moved_.fetch_add(1, std::memory_order_relaxed);
      log().debug("{}: a call on data path {} waited; moved to {}", name_, conn->path_name(),
                  to->path_name());
      conn = std::move(to);
    }
  }

  std::uint64_t next_handle() { return next_handle_.fetch_add(1); }
  std::size_t max_payload() const { return max_payload_; }
  bool sendfile_pays() const { return protocol::sendfile_pays(is_loopback(url_.host)); }
  bool sealed() {
    std::lock_guard lock(mu_);
    return encrypt_;
  }

 private:
  // Where a call that has waited `waited` on `slow` should go, or null to
  // keep waiting: a live connection of the same session with nothing in
  // flight, once the call has waited kMoveAfter and 4 round trips. That
  // is the tail of a file (or of the transfer) stuck behind a slow
  // connection while the others have run out of work; in the middle of a
  // transfer no connection is idle. A write moves only while its
  // connection holds unacknowledged data (the network is what is slow; a
  // server busy writing is as slow on every connection).
  std::shared_ptr<ClientConn> move_target(ClientConn& slow, const FrameHeader& req,
                                          std::chrono::steady_clock::duration waited, bool read) {
    const auto rtt = std::chrono::microseconds(min_rtt_us_.load(std::memory_order_relaxed));
    if (waited < std::max<std::chrono::steady_clock::duration>(kMoveAfter, rtt * 4)) return nullptr;
    if (!read && slow.frames().transport_stats().unacked == 0) return nullptr;
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    if (cancelled_) return nullptr;
    for (const auto& c : conns_) {
      if (c.get() == &slow || !c->alive() || c->draining() || c->session() != slow.session() ||
          c->outstanding() != 0 || c->owes(req.id, req.offset)) {
        continue;
      }
      if (c->claim_for_move(now)) return c;
    }
    return nullptr;
  }

  // The live connection (of session generation `gen`; 0: any) with the
  // fewest bytes in flight, ties in turn; null when none is alive.
  // Joining the shortest queue spreads calls by what each connection
  // moves: a path twice as fast drains its queue twice as often and so
  // gets twice the calls, and a stalled one gets none.
  std::shared_ptr<ClientConn> least_loaded_locked(std::uint64_t gen,
                                                  const FrameHeader* req = nullptr) {
    if (req != nullptr) {
      auto best =
          least_loaded_where(gen, [&](ClientConn& c) { return !c.owes(req->id, req->offset); });
      if (best) return best;
    }
    return least_loaded_where(gen, [](ClientConn&) { return true; });
  }
  template <typename Usable>
  std::shared_ptr<ClientConn> least_loaded_where(std::uint64_t gen, const Usable& usable) {
    std::shared_ptr<ClientConn> best;
    const std::size_t n = conns_.size();
    const std::size_t start = rr_++;
    for (std::size_t k = 0; k < n; ++k) {
      const auto& c = conns_[(start + k) % n];
      if (!c->alive() || (gen != 0 && c->session() != gen) || !usable(*c)) continue;
      // A draining connection only when nothing else is alive.
      if (best && c->draining() && !best->draining()) continue;
      if (!best || (best->draining() && !c->draining()) || c->outstanding() < best->outstanding()) {
        best = c;
      }
    }
    return best;
  }

  // Keeps the last figures of connections that are replaced or dropped
  // (the summary counts their bytes), at most kMaxRetiredStats of them.
  void retire_locked(const ClientConn& c) {
    if (retired_.size() >= kMaxRetiredStats) retired_.erase(retired_.begin());
    retired_.push_back(c.stat(name_));
  }
  void retire_all_locked() {
    for (auto& c : conns_) {
      c->shutdown();
      retire_locked(*c);
    }
    for (auto& c : conns_) c->close();
    conns_.clear();
  }

  Status open_session_locked() {
    ++session_gen_;
    v1::OpenSessionRequest req;
    // Auto streams ask the server for the most the controller may use.
    const bool auto_streams = options_.streams == 0;
    const unsigned want = auto_streams ? std::max(1u, options_.streams_max) : options_.streams;
    req.set_streams(want);
    bool enc = options_.encrypt == 1 || (options_.encrypt == -1 && !is_loopback(url_.host));
    req.set_encrypt(enc);
    req.set_encrypt_chosen(options_.encrypt != -1);
    XFER_ASSIGN_OR_RETURN(auto local, parse_address_list(options_.bind));
    v1::Session session;
    grpc::ClientContext ctx;
    auto call = track(ctx);
    grpc::Status st = stub_->OpenSession(&ctx, req, &session);
    if (!st.ok()) return explain(protocol::from_grpc(st, ctx, "open session", name_));
    session_id_ = session.session_id();
    data_token_ = session.data_token();
    encrypt_ = session.encrypt();
    if (enc && !encrypt_) {
      // Auto asked for sealing (the server is not on loopback) and the
      // server's policy said no (data.encrypt = never): said once per session.
      log().warn(
          "{}: the server does not seal data (data.encrypt = never): the data channel "
          "is plaintext; --encrypt refuses such a server",
          name_);
    }
    // The largest frame the server takes (it buffers sealed frames whole);
    // writes and reads are split to fit.
    max_payload_ = session.max_payload() == 0
                       ? kMaxPiece
                       : std::clamp<std::size_t>(session.max_payload(), 64 * 1024, kMaxPiece);
    // The server's data addresses (one per NIC it offers), validated, and
    // paired with --bind's local addresses: connection i runs over path
    // i mod paths.
    std::vector<std::string> advertised;
    for (int i = 0; i < session.data_addresses_size() && advertised.size() <= kMaxDataPaths; ++i) {
      advertised.push_back(session.data_addresses(i));
    }
    auto planned = plan_data_paths(advertised, url_.host, is_loopback(url_.host), local);
    if (!planned) {
      close_session(session_id_);
      session_id_.clear();
      return std::move(planned).error();
    }
    paths_ = std::move(*planned);
    path_retry_.assign(paths_.size(), PathRetry{});
    const unsigned granted = std::max(1u, std::min(session.streams(), want));
    // The controller runs over network paths; on loopback the CPU is the
    // limit and 4 connections measured best.
    control_ = Control{};
    control_.on = auto_streams && !is_loopback(paths_.front().host) && granted > 1;
    control_.max = granted;
    const unsigned streams = auto_streams ? std::min(granted, kAutoStartStreams) : granted;
    next_index_ = streams;
    // Each connection's share of the window the path needs (from the round
    // trips the control calls took so far).
    buffers_ = is_loopback(paths_.front().host)
                   ? protocol::kLoopbackSocketBuffer
                   : protocol::path_socket_buffer(rtt_ms(), streams, kMaxSocketBuffer);
    // The connections are opened side by side (each costs a TCP handshake
    // and a HELLO round trip, which over 150 ms one after the other would
    // delay the first byte by more than a second), at most
    // kParallelHandshakes at a time: xferd takes only so many handshakes
    // from one address at once (limits.max_unauthenticated_per_address).
    // A connection the server refuses for a limit is tried again after a
    // backoff; the session starts with the connections that opened. When
    // none did, the session is closed on the server before the error is
    // returned: a refused client must not strand sessions there (they
    // count against the server's session limits until they idle out).
    std::vector<std::shared_ptr<ClientConn>> ready;
    std::optional<Error> failure;
    std::vector<unsigned> todo(streams);
    std::vector<unsigned> unreached;  // connections whose path did not connect
    for (unsigned i = 0; i < streams; ++i) todo[i] = i;
    const Opening opening = opening_locked();
    for (unsigned attempt = 0; attempt < kOpenAttempts && !todo.empty(); ++attempt) {
      // With some connections open, one more round is enough: what the
      // server still refuses then is its connection limit, not a burst.
      if (attempt >= 2 && !ready.empty()) break;
      if (attempt > 0 && !backoff(attempt)) break;
      std::vector<unsigned> refused;
      for (std::size_t first = 0; first < todo.size() && !cancelled_.load();
           first += kParallelHandshakes) {
        const std::size_t n = std::min<std::size_t>(kParallelHandshakes, todo.size() - first);
        std::vector<std::optional<Result<std::shared_ptr<ClientConn>>>> opened(n);
        std::vector<std::thread> openers;
        for (std::size_t k = 0; k < n; ++k) {
          openers.emplace_back([&, k] {
            opened[k] = open_connection(opening, todo[first + k], protocol::kConnectTimeout);
          });
        }
        for (auto& t : openers) t.join();
        for (std::size_t k = 0; k < n; ++k) {
          auto& r = *opened[k];
          if (r.ok()) {
            ready.push_back(std::move(*r));
            continue;
          }
          const bool retry = r.error().retry != RetryClass::kFatal;
          // Only the server's refusals (its limits) are tried again here;
          // a path that does not connect is left to the watchdog.
          const bool refusal = r.error().operation == "handshake";
          if (!failure || (failure->retry != RetryClass::kFatal && !retry)) {
            failure = std::move(r).error();
          }
          if (retry && refusal) {
            refused.push_back(todo[first + k]);
          } else if (retry) {
            unreached.push_back(todo[first + k]);
          }
        }
      }
      // A final refusal (a bad token, a server that will not seal) is not
      // worth another round.
      if (failure && failure->retry == RetryClass::kFatal) break;
      todo = std::move(refused);
    }
    if (ready.empty()) {
      close_session(session.session_id());
      session_id_.clear();
      if (!failure) {
        failure =
            make_error(ErrorCode::kCancelled, "data session", name_, "the transfer was cancelled");
      }
      return std::move(*failure);
    }
    if (ready.size() < streams) {
      log().info("{}: {} of {} data connections opened ({})", name_, ready.size(), streams,
                 failure ? failure->message() : std::string("cancelled"));
    }
    // The ones whose path did not connect (or the server still refused)
    // become dead slots the watchdog re-opens, after a backoff, on their
    // path.
    for (unsigned i : unreached) todo.push_back(i);
    const auto later = std::chrono::steady_clock::now() + kReopenFirst;
    for (unsigned i : todo) {
      const std::size_t path = i % paths_.size();
      conns_.push_back(ClientConn::placeholder(i, session_gen_, path, paths_[path].name));
      path_retry_[path] = PathRetry{later, kReopenFirst};
    }
    for (auto& conn : ready) {
      // The handshake gave TCP its first round trips: its minimum is the
      // path's (the planner sizes the window from it).
      observe_rtt(static_cast<std::int64_t>(conn->frames().transport_stats().min_rtt_ms * 1000));
      conn->start_reader();
      conns_.push_back(std::move(conn));
    }
    if (stats_id_ == 0 && options_.stats_board) {
      std::weak_ptr<XferClient> weak = weak_from_this();
      stats_id_ = options_.stats_board->add("", [weak] {
        std::vector<StreamStat> out;
        if (auto self = weak.lock()) {
          std::lock_guard lock(self->mu_);
          out = self->retired_;
          for (auto& c : self->conns_) out.push_back(c->stat(self->name_));
        }
        return out;
      });
    }
    control_.started = control_.last = std::chrono::steady_clock::now();
    if (control_.on) {
      record("start", static_cast<unsigned>(conns_.size()), 0, 0, 0);
    }
    if (!watchdog_.joinable()) watchdog_ = std::thread([this] { watch_loop(); });
    return ok_status();
  }

  // What a connection of the current session needs, copied under mu_ so
  // that openers and the watchdog connect without holding it.
  struct Opening {
    std::vector<DataPath> paths;
    std::size_t buffers = 0;
    std::string session_id;
    std::string data_token;
    bool encrypt = false;
    std::uint64_t gen = 0;
  };
  Opening opening_locked() const {
    return Opening{paths_, buffers_, session_id_, data_token_, encrypt_, session_gen_};
  }

  // Data connection `index` of the session in `o`, over path index mod
  // paths: connect, congestion control, HELLO. Any thread; reads no member
  // but options_.
  Result<std::shared_ptr<ClientConn>> open_connection(const Opening& o, unsigned index,
                                                      std::chrono::milliseconds timeout) {
    const std::size_t path = index % o.paths.size();
    const DataPath& p = o.paths[path];
    XFER_ASSIGN_OR_RETURN(UniqueFd fd,
                          protocol::tcp_connect(p.host, p.port, o.buffers, p.local, timeout));
    // Unset: BBR where the kernel lets this process use it (measured on the
    // lab: 4 CUBIC connections carried 32 Mbit/s over 1 Gbit/s, 50 ms,
    // 0.1% loss where BBR carried 660), else the system's default.
    if (!options_.cc.empty()) {
      XFER_TRY(protocol::set_congestion_control(fd.get(), options_.cc));
    } else {
      (void)protocol::set_congestion_control(fd.get(), protocol::kPreferredCongestionControl);
    }
    auto conn = std::make_shared<ClientConn>(std::move(fd), index, o.gen, path, p.name);
    // The handshake is bounded too (a path can die in the middle of it):
    // each read and write by `timeout`, and the whole of it by a deadline
    // the reaper enforces (a server that trickles its reply a byte at a
    // time never trips the per-read timeout). cancel() or the client's
    // end shuts it down at once (handshaking_).
    conn->frames().transport().set_timeouts(timeout, timeout);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    {
      std::lock_guard l(handshaking_mu_);
      if (cancelled_.load() || handshakes_stopped_) {
        return make_error(ErrorCode::kCancelled, "handshake", p.name, "the transfer was cancelled");
      }
      handshaking_[conn.get()] = deadline;
      if (!reaper_.joinable()) reaper_ = std::thread([this] { reap_loop(); });
    }
    reaper_cv_.notify_all();
    Status said = hello(*conn, o.session_id, o.data_token, o.encrypt);
    {
      std::lock_guard l(handshaking_mu_);
      handshaking_.erase(conn.get());
    }
    // The reaper may have shut it down just as the reply completed.
    if (said.ok() && !conn->alive()) {
      said = make_error(ErrorCode::kUnavailable, "connect", p.name, "handshake cut at its deadline",
                        RetryClass::kRetryCall);
    }
    if (!said.ok() && !cancelled_.load() && std::chrono::steady_clock::now() >= deadline) {
      // "connect", not "handshake": not a refusal to try again at once.
      return make_error(
          ErrorCode::kUnavailable, "connect", p.name,
          fmt::format("the server did not finish the handshake in {} ms", timeout.count()),
          RetryClass::kRetryCall);
    }
    XFER_TRY(said);
    conn->frames().transport().set_timeouts(std::chrono::milliseconds(0),
                                            std::chrono::milliseconds(0));
    return conn;
  }

  // How long a connection may hold calls without TCP moving a byte, while
  // another connection of its session moves, before it counts as a dead
  // path: a few seconds, longer over long round trips (RTO backoff).
  std::chrono::milliseconds stall_limit() const {
    const auto rtt = std::chrono::milliseconds(static_cast<std::int64_t>(rtt_ms()));
    return std::max<std::chrono::milliseconds>(kStallLimit, rtt * 10);
  }

  // The watchdog (one thread per client, from the first session on):
  //  - a connection with calls in flight (unacknowledged data, or reads
  //    outstanding) whose TCP moved nothing for stall_limit() while a
  //    sibling of its session moved is shut down: its calls fail with
  //    kRetryCall and the engine sends them again over the live ones;
  //  - a dead connection of the current session is opened again on its
  //    path, with backoff per path (1 s doubling to 30 s), so a path that
  //    comes back is used again.
  void watch_loop() {
    struct Seen {
      std::uint64_t progress = 0;
      std::chrono::steady_clock::time_point moved;
    };
    std::map<std::uint64_t, Seen> seen;  // by ClientConn::id()
    std::unique_lock lock(watch_mu_);
    while (!watch_stop_) {
      watch_cv_.wait_for(lock, kWatchInterval, [&] { return watch_stop_; });
      if (watch_stop_ || cancelled_.load()) break;
      lock.unlock();
      std::vector<std::shared_ptr<ClientConn>> conns;
      std::uint64_t gen = 0;
      {
        std::lock_guard l(mu_);
        conns = conns_;
        gen = session_gen_;
      }
      const auto now = std::chrono::steady_clock::now();
      std::map<std::uint64_t, Seen> next;
      bool sibling_moved = false;
      std::set<std::size_t> moving_paths;
      std::vector<std::pair<std::shared_ptr<ClientConn>, std::chrono::milliseconds>> stuck;
      for (auto& c : conns) {
        if (!c->alive() || c->session() != gen) continue;
        const auto t = c->frames().transport_stats();
        // Each connection's own patience: 10 of its own round trips when
        // that is longer (a slow path beside a fast one). Not its RTO: on
        // a dead path that doubles with every timeout and would never be
        // reached.
        const auto limit = std::max<std::chrono::milliseconds>(
            stall_limit(), std::chrono::milliseconds(static_cast<std::int64_t>(t.rtt_ms * 10)));
        const std::uint64_t progress = t.bytes_acked + t.bytes_received;
        Seen s{progress, now};
        if (auto it = seen.find(c->id()); it != seen.end() && it->second.progress == progress) {
          s.moved = it->second.moved;
        }
        next[c->id()] = s;
        // Stuck: our data sits unacknowledged, or a reply is half received
        // (a download over a path that died in the middle of a reply). A
        // connection waiting only for the server — a commit's fsync, a
        // read queued behind it — has neither and is left alone.
        const bool waiting = c->outstanding() > 0 && (t.unacked > 0 || c->receiving());
        // A moved call's reply gets kCallTimeout, as the call had: a
        // server that never sends it must not keep the connection busy
        // (never idle, never retired) for good.
        if (auto since = c->oldest_abandoned(); since && now - *since >= kCallTimeout) {
          log().warn("{}: data path {} left a reply unsent for {} s; closed", name_, c->path_name(),
                     kCallTimeout.count());
          c->shutdown();
          continue;
        }
        if (waiting && now - s.moved >= limit) {
          stuck.emplace_back(c, limit);
        } else if (now - s.moved < limit) {
          sibling_moved = true;
          if (s.moved == now && seen.count(c->id()) != 0) moving_paths.insert(c->path());
        }
      }
      seen = std::move(next);
      {
        std::lock_guard l(mu_);
        if (gen == session_gen_) {
          // A path that moves data is healthy again: its re-open backoff
          // starts over.
          for (std::size_t p : moving_paths) {
            if (p < path_retry_.size()) path_retry_[p] = PathRetry{};
          }
          for (auto& [c, limit] : sibling_moved ? stuck : decltype(stuck){}) {
            // Each time a path is given up on, it waits longer before the
            // next try (a path that handshakes but carries nothing would
            // otherwise cycle every few seconds).
            if (c->path() < path_retry_.size()) {
              PathRetry& pr = path_retry_[c->path()];
              pr.wait =
                  std::clamp<std::chrono::milliseconds>(pr.wait * 2, kReopenFirst, kReopenMax);
              pr.at = now + pr.wait;
            }
          }
        }
      }
      for (auto& [c, limit] : sibling_moved ? stuck : decltype(stuck){}) {
        log().warn(
            "{}: data path {} moved nothing for {} ms while the others did; its calls go "
            "to the other connections",
            name_, c->path_name(), limit.count());
        c->shutdown();
      }
      conns.clear();
      reopen_dead(gen);
      control(gen);
      lock.lock();
    }
  }

  // Opens again the dead connections of session generation `gen` whose
  // path is due (watchdog thread).
  void reopen_dead(std::uint64_t gen) {
    std::vector<std::size_t> slots;
    Opening o;
    {
      std::lock_guard l(mu_);
      if (gen != session_gen_ || cancelled_.load() || paths_.empty()) return;
      const auto now = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < conns_.size(); ++i) {
        const auto& c = conns_[i];
        if (c->alive() || c->session() != gen) continue;
        if (c->path() >= path_retry_.size() || path_retry_[c->path()].at > now) continue;
        slots.push_back(i);
      }
      if (slots.empty()) return;
      o = opening_locked();
    }
    // Short timeouts: the destructor waits for the watchdog.
    const auto timeout = std::chrono::milliseconds(2000) + stall_limit() / 2;
    for (std::size_t slot : slots) {
      std::shared_ptr<ClientConn> old;
      {
        std::lock_guard l(mu_);
        if (gen != session_gen_ || slot >= conns_.size()) return;
        old = conns_[slot];
        if (path_retry_[old->path()].at > std::chrono::steady_clock::now()) continue;
      }
      if (watch_stopping() || cancelled_.load()) return;
      auto fresh = open_connection(o, old->index(), timeout);
      std::lock_guard l(mu_);
      PathRetry& pr = path_retry_[old->path()];
      if (!fresh) {
        pr.wait = std::clamp<std::chrono::milliseconds>(pr.wait * 2, kReopenFirst, kReopenMax);
        pr.at = std::chrono::steady_clock::now() + pr.wait;
        continue;
      }
      pr.at = std::chrono::steady_clock::now();  // the backoff resets when it moves data
      if (gen != session_gen_ || slot >= conns_.size() || conns_[slot] != old) {
        (*fresh)->close();
        continue;
      }
      log().info("{}: data path {} reconnected", name_, old->path_name());
      retire_locked(*old);
      (*fresh)->start_reader();
      conns_[slot] = std::move(*fresh);
    }
  }

  void record(const char* action, unsigned streams, double seconds, double goodput, double loss,
              unsigned moved = 0) {
    if (!options_.stats_board) return;
    ControllerEvent e{name_, seconds, streams, goodput, loss * 100.0, action};
    e.moved = moved;
    options_.stats_board->record(std::move(e));
  }

  // One step of the stream controller (watchdog thread): every control
  // interval, from the goodput and retransmissions of the session's
  // connections over it, adds a connection, takes one back, backs off, or
  // keeps the count; and closes drained connections. control_ is guarded
  // by mu_ (a new session resets it).
  void control(std::uint64_t gen) {
    unsigned active = 0;
    {
      std::lock_guard l(mu_);
      if (gen != session_gen_) return;
      // Drained connections with no call left go.
      for (auto it = conns_.begin(); it != conns_.end();) {
        if ((*it)->draining() && (*it)->outstanding() == 0) {
          (*it)->shutdown();
          retire_locked(**it);
          it = conns_.erase(it);
        } else {
          ++it;
        }
      }
      const auto now = std::chrono::steady_clock::now();
      const auto rtt = std::chrono::milliseconds(static_cast<std::int64_t>(rtt_ms()));
      const auto interval = std::max<std::chrono::milliseconds>(kControlInterval, rtt * 8);
      if (now - control_.last < interval) return;
      // Totals of the live connections; a connection counts from its last
      // seen figures (or from zero when new), so ones that come and go do
      // not skew the deltas.
      std::uint64_t moved = 0, retrans = 0, segs = 0;
      unsigned waiting = 0;  // active connections with no call in flight
      std::map<std::uint64_t, Totals> next;
      for (const auto& c : conns_) {
        if (!c->alive() || c->session() != gen) continue;
        const auto t = c->frames().transport_stats();
        const Totals cur{t.bytes_acked + t.bytes_received, t.retransmits, t.data_segs_out};
        Totals prev;
        if (auto it = control_.totals.find(c->id()); it != control_.totals.end()) prev = it->second;
        moved += cur.moved - std::min(cur.moved, prev.moved);
        retrans += cur.retrans - std::min(cur.retrans, prev.retrans);
        segs += cur.segs - std::min(cur.segs, prev.segs);
        if (!c->draining()) {
          ++active;
          if (c->outstanding() == 0) ++waiting;
        }
        next[c->id()] = cur;
      }
      control_.totals = std::move(next);
      const double dt = std::chrono::duration<double>(now - control_.last).count();
      control_.last = now;
      const double goodput = static_cast<double>(moved) / dt;
      const double loss = segs > 0 ? static_cast<double>(retrans) / static_cast<double>(segs) : 0;
      const double at = std::chrono::duration<double>(now - control_.started).count();
      ++control_.intervals;
      // Calls moved off slow connections (moving_call) since the last
      // interval: one event for them all.
      if (const unsigned calls = moved_.exchange(0); calls > 0) {
        record("moved", active, at, goodput, loss, calls);
        log().info("{}: {} calls moved off slow data connections", name_, calls);
      }
      // What the path carries while every connection has work (the
      // planner sizes chunks from it): smoothed over intervals.
      if (active > 0 && waiting == 0 && control_.intervals > kWarmupIntervals) {
        const double before = goodput_.load(std::memory_order_relaxed);
        goodput_.store(before > 0 ? (before + goodput) / 2 : goodput, std::memory_order_relaxed);
      }
      if (!control_.on) return;
      // Not enough to send (the engine is between files or at the end of
      // one, or the disk is the limit), or TCP still starting: no evidence
      // either way; an add being judged is judged afresh.
      if (active == 0 || waiting > 0 || control_.intervals <= kWarmupIntervals) {
        control_.previous = 0;
        if (control_.judging > 0) {
          control_.judging = kJudgeIntervals;
          control_.after_sum = 0;
        }
        return;
      }
      control_.best = std::max(control_.best, goodput);
      const double recent = control_.previous > 0 ? (control_.previous + goodput) / 2 : goodput;
      control_.previous = goodput;
      unsigned target = active;
      const char* action = nullptr;
      if (loss > kLossSpike && goodput < control_.best * kFallToBackOff) {
        if (control_.judging > 0 && active > 1) {
          // Our own add overran the path: back off.
          target = std::max(1u, static_cast<unsigned>(static_cast<double>(active) * kBackOff));
          action = "back off";
          control_.hold = kHoldIntervals;
        } else {
          // The path changed under an unchanged count (its rate fell, or
          // other traffic came): fewer connections would not bring the
          // rate back. The best seen starts over from here.
          action = "path changed";
          control_.best = goodput;
          control_.hold = kJudgeIntervals;
        }
        control_.judging = 0;
      } else if (control_.judging > 0) {
        // An add awaiting its verdict.
        control_.after_sum += goodput;
        if (--control_.judging == 0) {
          const double after = control_.after_sum / kJudgeIntervals;
          if (after >= control_.before_add * kGainToKeep) {
            if (active < control_.max) {
              target = active + 1;
              action = "add";
              control_.before_add = after;
            }
          } else {
            target = active - 1;
            action = "remove";
            control_.hold = kHoldIntervals;
          }
        }
      } else if (control_.hold > 0) {
        --control_.hold;
      } else if (active < control_.max) {
        target = active + 1;
        action = "add";
        control_.before_add = recent;
      }
      if (target > active) {
        control_.judging = kJudgeIntervals;
        control_.after_sum = 0;
      } else {
        unsigned n = active - target;
        for (auto it = conns_.rbegin(); it != conns_.rend() && n > 0; ++it) {
          if ((*it)->session() != gen || !(*it)->alive() || (*it)->draining()) continue;
          (*it)->drain();
          --n;
        }
      }
      if (action != nullptr || at - control_.last_recorded >= 5.0) {
        record(action != nullptr ? action : "keep", target, at, goodput, loss);
        control_.last_recorded = at;
        if (action != nullptr) {
          log().info("{}: {} data connections ({}; {:.0f} Mbit/s, {:.2f}% retransmitted)", name_,
                     target, action, goodput * 8 / 1e6, loss * 100);
        }
      }
      if (target <= active) return;
    }
    if (!add_connection(gen)) {
      std::lock_guard l(mu_);
      if (gen != session_gen_) return;
      control_.max = active;  // the server or the path takes no more
      control_.judging = 0;
    }
  }

  // Opens one more connection for session generation `gen` (watchdog
  // thread); false when it cannot.
  bool add_connection(std::uint64_t gen) {
    Opening o;
    unsigned index = 0;
    {
      std::lock_guard l(mu_);
      if (gen != session_gen_ || cancelled_.load()) return false;
      o = opening_locked();
      index = next_index_++;
    }
    const auto timeout = std::chrono::milliseconds(2000) + stall_limit() / 2;
    auto fresh = open_connection(o, index, timeout);
    if (!fresh) {
      log().info("{}: no more data connections: {}", name_, fresh.error().message());
      return false;
    }
    std::lock_guard l(mu_);
    if (gen != session_gen_ || cancelled_.load()) {
      (*fresh)->close();
      return false;
    }
    (*fresh)->start_reader();
    conns_.push_back(std::move(*fresh));
    return true;
  }

  // Shuts down every connection in its handshake (cancel, the client's end).
  void shutdown_handshakes(bool for_good = false) {
    std::lock_guard l(handshaking_mu_);
    if (for_good) handshakes_stopped_ = true;
    for (auto& [c, deadline] : handshaking_) c->shutdown();
    if (for_good) reaper_cv_.notify_all();
  }

  // The reaper: shuts down each handshake that outlives its deadline, so
  // a stalling or trickling server costs one timeout, not a held session
  // lock. One thread per client, from its first handshake to its end.
  void reap_loop() {
    std::unique_lock l(handshaking_mu_);
    while (!handshakes_stopped_) {
      auto next = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      for (const auto& [c, deadline] : handshaking_) {
        if (c->alive()) next = std::min(next, deadline);
      }
      reaper_cv_.wait_until(l, next);
      const auto now = std::chrono::steady_clock::now();
      for (auto& [c, deadline] : handshaking_) {
        if (deadline <= now && c->alive()) {
          log().warn("{}: data connection handshake took too long; closed", name_);
          c->shutdown();
        }
      }
    }
  }

  bool watch_stopping() {
    std::lock_guard l(watch_mu_);
    return watch_stop_;
  }
  void stop_watchdog() {
    {
      std::lock_guard l(watch_mu_);
      watch_stop_ = true;
    }
    watch_cv_.notify_all();
    shutdown_handshakes(true);
    if (watchdog_.joinable()) watchdog_.join();
    if (reaper_.joinable()) reaper_.join();
  }

  // Sleeps before open attempt `attempt` (1, 2, ...): 100 ms doubling, with
  // jitter so that clients refused together do not return together. False
  // when the transfer is cancelled meanwhile.
  bool backoff(unsigned attempt) {
    const auto base = std::chrono::milliseconds(100) * (1u << (attempt - 1));
    const auto until = std::chrono::steady_clock::now() + base + base * (jitter_() % 100) / 100;
    while (std::chrono::steady_clock::now() < until) {
      if (cancelled_.load()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return !cancelled_.load();
  }

  // Asks the server to drop a session this client will not use.
  void close_session(const std::string& id) {
    if (id.empty() || cancelled_.load()) return;
    v1::CloseSessionRequest req;
    req.set_session_id(id);
    v1::Empty resp;
    grpc::ClientContext ctx;
    auto call = track(ctx, std::chrono::seconds(5));
    (void)stub_->CloseSession(&ctx, req, &resp);
  }

  Status hello(ClientConn& conn, const std::string& session_id, const std::string& data_token,
               bool seal) {
    FrameConn& fc = conn.frames();
    XFER_TRY(fc.send_raw(std::as_bytes(std::span(protocol::kMagic))));
    protocol::Hello h;
    std::optional<protocol::KeyPair> pair;
    XFER_TRY(protocol::random_bytes(h.nonce));
    if (seal) {
      XFER_ASSIGN_OR_RETURN(auto kp, protocol::KeyPair::generate());
      pair.emplace(std::move(kp));
      h.flags = protocol::kHelloSeal;
      h.public_key = pair->public_key();
    }
    // The data token never travels here: only a proof of it.
    h.data_token = protocol::hello_credential(session_id, data_token, h.public_key, h.nonce);
    std::vector<std::byte> payload;
    protocol::encode(h, payload);
    FrameHeader fh;
    fh.type = FrameType::kHello;
    XFER_TRY(fc.send(fh, payload));
    XFER_ASSIGN_OR_RETURN(FrameHeader reply, fc.recv_header());
    if (reply.length > 4096) {
      return make_error(ErrorCode::kCorrupt, "handshake", name_, "oversized handshake reply");
    }
    std::vector<std::byte> body;
    XFER_TRY(fc.recv_payload(reply, body));
    if (reply.type == FrameType::kError) return remote_error(body, "handshake", name_);
    if (reply.type != FrameType::kHelloOk) {
      return make_error(ErrorCode::kCorrupt, "handshake", name_, "unexpected handshake reply");
    }
    XFER_ASSIGN_OR_RETURN(auto ok, protocol::decode_hello_ok(body));
    if (ok.version != protocol::kProtocolVersion) {
      return make_error(ErrorCode::kUnsupported, "handshake", name_,
                        fmt::format("server speaks protocol version {}", ok.version));
    }
    if (seal) {
      if ((ok.flags & protocol::kHelloSeal) == 0) {
        return make_error(ErrorCode::kPermission, "handshake", name_,
                          "server refused to seal the data channel");
      }
      XFER_ASSIGN_OR_RETURN(auto shared,
                            pair->agree(std::span<const std::uint8_t, 32>(ok.public_key)));
      XFER_ASSIGN_OR_RETURN(auto keys,
                            protocol::derive_keys(shared, data_token, h.nonce, ok.nonce));
      XFER_ASSIGN_OR_RETURN(auto send, protocol::FrameCipher::create(keys.client_to_server));
      XFER_ASSIGN_OR_RETURN(auto recv, protocol::FrameCipher::create(keys.server_to_client));
      fc.enable_sealing(std::move(send), std::move(recv));
    }
    return ok_status();
  }

  Url url_;
  EndpointOptions options_;
  std::string token_;
  std::string name_;
  std::unique_ptr<v1::Xfer::Stub> stub_;
  std::mutex mu_;
  std::vector<std::shared_ptr<ClientConn>> conns_;
  std::size_t rr_ = 0;
  std::uint64_t session_gen_ = 0;  // bumped by every OpenSession
  std::string session_id_;
  std::string data_token_;
  bool encrypt_ = false;
  std::vector<DataPath> paths_;  // of the current session
  struct PathRetry {
    std::chrono::steady_clock::time_point at;  // next re-open attempt
    std::chrono::milliseconds wait{0};         // the backoff after the last failure
  };
  std::vector<PathRetry> path_retry_;  // one per path
  std::size_t buffers_ = 0;            // socket buffers of the current session
  unsigned next_index_ = 0;            // of the next connection opened
  struct Totals {
    std::uint64_t moved = 0, retrans = 0, segs = 0;
  };
  // The stream controller's state (control(); set when a session opens,
  // then the watchdog's).
  struct Control {
    bool on = false;   // auto streams over a network path
    unsigned max = 0;  // --streams-max, the server's grant, or what it took
    std::chrono::steady_clock::time_point started, last;
    std::map<std::uint64_t, Totals> totals;  // at `last`, by ClientConn::id()
    double before_add = 0;  // mean goodput of the two intervals before the last add
    double previous = 0;    // goodput of the last interval
    double best = 0;
    double last_recorded = 0;
    unsigned intervals = 0;  // control intervals since the session opened
    unsigned judging = 0;    // intervals until the last add is judged
    double after_sum = 0;    // goodput since the last add
    unsigned hold = 0;       // intervals to wait before probing again
  };
  Control control_;
  std::vector<StreamStat> retired_;  // retire_locked()
  // The watchdog (watch_loop); watch_mu_ is never held with mu_.
  std::thread watchdog_;
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool watch_stop_ = false;
  // Connections in their handshake (open_connection), for cancel() and the
  // client's end, with each one's deadline (reap_loop); handshaking_mu_
  // is taken with no other lock held.
  std::mutex handshaking_mu_;
  std::map<ClientConn*, std::chrono::steady_clock::time_point> handshaking_;
  bool handshakes_stopped_ = false;
  std::condition_variable reaper_cv_;
  std::thread reaper_;
  std::size_t max_payload_ = kMaxPiece;
  std::atomic<std::uint64_t> next_handle_{1};
  std::uint64_t stats_id_ = 0;
  std::atomic<bool> cancelled_{false};
  std::atomic<std::int64_t> min_rtt_us_{0};  // observe_rtt()
  std::atomic<unsigned> moved_{0};  // calls moved since the controller last reported (moving_call)
  std::atomic<double> goodput_{0};  // link_estimate()'s goodput (control())
  std::minstd_rand jitter_{std::random_device{}()};  // backoff(), under mu_
  std::mutex calls_mu_;                   // may be taken while mu_ is held, never the reverse
  std::set<grpc::ClientContext*> calls_;  // gRPC calls in flight (Call)
};

// ---- sources and sinks ------------------------------------------------------

class XferSource final : public Source {
 public:
  XferSource(std::shared_ptr<XferClient> client, std::string path, std::uint64_t handle,
             std::uint64_t session, FileAttrs attrs, std::vector<std::byte> inline_data,
             bool inlined)
      : client_(std::move(client)),
        path_(std::move(path)),
        handle_(handle),
        session_(session),
        attrs_(std::move(attrs)),
        inline_(std::move(inline_data)),
        inlined_(inlined) {}
  ~XferSource() override {
    if (inlined_) return;
    auto c = client_->pick_in(session_);
    if (c) {
      FrameHeader h;
      h.type = FrameType::kClose;
      h.id = handle_;
      (*c)->post(h);
    }
  }
  const FileAttrs& attrs() const override { return attrs_; }

  Result<std::size_t> read_at(Offset offset, std::span<std::byte> buf) override {
    if (inlined_) {
      if (offset.get() >= inline_.size()) return std::size_t{0};
      std::size_t n = std::min<std::size_t>(buf.size(), inline_.size() - offset.get());
      std::memcpy(buf.data(), inline_.data() + offset.get(), n);
      return n;
    }
    std::size_t done = 0;
    const std::size_t max_piece = client_->max_payload();
    // A reply may be shorter than asked (the server clamps to its buffer);
    // only an empty one, or the file's end, ends the read.
    const std::uint64_t size = attrs_.size;
    std::size_t limit = buf.size();
    if (offset.get() >= size) return std::size_t{0};
    limit = static_cast<std::size_t>(std::min<std::uint64_t>(limit, size - offset.get()));
    while (done < limit) {
      std::size_t want = std::min(limit - done, max_piece);
      FrameHeader req;
      req.type = FrameType::kRead;
      req.id = handle_;
      req.offset = offset.get() + done;
      req.aux = static_cast<std::uint32_t>(want);
      XFER_ASSIGN_OR_RETURN(
          FrameHeader reply,
          client_->moving_call(session_, req, {}, buf.subspan(done, want), "read", path_));
      if (reply.type != FrameType::kData) {
        return make_error(ErrorCode::kCorrupt, "read", path_, "unexpected reply to a read");
      }
      if (reply.aux > want) {
        return make_error(ErrorCode::kCorrupt, "read", path_, "server sent more than asked");
      }
      done += reply.aux;
      if (reply.aux == 0) break;  // end of file (the file shrank: the caller checks)
    }
    return done;
  }

  Status check_unchanged() override {
    if (inlined_) return ok_status();  // read whole and checked by the server
    v1::PathRequest req;
    req.set_path(path_);
    v1::FileAttrs resp;
    grpc::ClientContext ctx;
    auto call = client_->track(ctx);
    grpc::Status st = client_->stub().Stat(&ctx, req, &resp);
    if (!st.ok()) return client_->explain(protocol::from_grpc(st, ctx, "stat", path_));
    if (resp.size() != attrs_.size || resp.mtime_ns() != attrs_.mtime_ns) {
      return make_error(ErrorCode::kChanged, "read", path_, "file changed while being copied",
                        RetryClass::kRetryFile);
    }
    return ok_status();
  }

 private:
  std::shared_ptr<XferClient> client_;
  std::string path_;
  std::uint64_t handle_;
  std::uint64_t session_;  // the data session the handle lives in
  FileAttrs attrs_;
  std::vector<std::byte> inline_;
  bool inlined_;
};

protocol::FileMeta meta_for(std::string_view path, const SinkOptions& o) {
  protocol::FileMeta m;
  m.path = std::string(path);
  m.size = o.size;
  m.mode = o.attrs.mode;
  m.mtime_ns = o.attrs.mtime_ns;
  m.flags = (o.sparse ? protocol::kMetaSparse : 0u) | (o.fsync ? protocol::kMetaFsync : 0u) |
            (o.resume_existing ? protocol::kMetaResume : 0u);
  m.resume_name = o.resume_name;
  if (o.basis) {
    m.flags |= protocol::kMetaBasis;
    m.basis_size = o.basis_size;
    m.basis_mtime_ns = o.basis_mtime_ns;
  }
  return m;
}

// Small files: buffered here, sent whole in one kPutFile frame on commit.
class XferSmallSink final : public Sink {
 public:
  XferSmallSink(std::shared_ptr<XferClient> client, std::string path, const SinkOptions& o)
      : client_(std::move(client)),
        path_(std::move(path)),
        meta_(meta_for(path_, o)),
        data_(new std::byte[o.size]),
        size_(o.size) {}
  Status write_at(Offset offset, std::span<const std::byte> data) override {
    if (offset.get() + data.size() > size_) {
      return make_error(ErrorCode::kInvalidArgument, "write", path_,
                        "write past the announced size");
    }
    if (!data.empty()) std::memcpy(data_.get() + offset.get(), data.data(), data.size());
    return ok_status();
  }
  // The bytes have not left this process before commit; the server checks
  // the frame's XXH3 against them on arrival (docs/protocol.md).
  Result<std::size_t> read_back(Offset offset, std::span<std::byte> buf) override {
    if (offset.get() >= size_) return std::size_t{0};
    std::size_t n = std::min<std::size_t>(buf.size(), size_ - offset.get());
    std::memcpy(buf.data(), data_.get() + offset.get(), n);
    return n;
  }
  Status commit() override {
    if (aborted_) return make_error(ErrorCode::kInvalidArgument, "commit", path_, "aborted");
    std::vector<std::byte> meta;
    protocol::encode_put_file_meta(meta_, meta);
    XFER_ASSIGN_OR_RETURN(auto conn, client_->pick());
    FrameHeader req;
    req.type = FrameType::kPutFile;
    req.id = client_->next_handle();
    XFER_ASSIGN_OR_RETURN(FrameHeader reply,
                          conn->call(req, meta, {data_.get(), size_}, nullptr, {}, "write", path_));
    if (reply.type != FrameType::kAck) {
      return make_error(ErrorCode::kCorrupt, "write", path_, "unexpected reply to a file");
    }
    return ok_status();
  }
  Status abort() override {
    aborted_ = true;
    return ok_status();
  }

 private:
  std::shared_ptr<XferClient> client_;
  std::string path_;
  protocol::FileMeta meta_;
  // Uninitialised unless the file is sparse: the engine writes every piece
  // before commit, except all-zero pieces of sparse files, which must read
  // as zeros here.
  std::unique_ptr<std::byte[]> data_;
  std::size_t size_;
  bool aborted_ = false;
};

// Larger files: a server-side handle; chunks are written at offsets over
// every connection; commit publishes.
class XferSink final : public Sink {
 public:
  XferSink(std::shared_ptr<XferClient> client, std::string path, std::uint64_t handle,
           std::uint64_t session, bool resumed, bool resumable)
      : client_(std::move(client)),
        path_(std::move(path)),
        handle_(handle),
        session_(session),
        resumed_(resumed),
        resumable_(resumable) {}
  ~XferSink() override {
    if (!finished_) (void)finish(resumable_ ? FrameType::kSuspend : FrameType::kAbort);
  }

  Status write_at(Offset offset, std::span<const std::byte> data) override {
    // In frames the server accepts (a sealed session's are bounded by its
    // per-connection buffer).
    const std::size_t piece = client_->max_payload();
    std::size_t done = 0;
    do {
      const std::size_t n = std::min(piece, data.size() - done);
      FrameHeader req;
      req.type = FrameType::kData;
      req.id = handle_;
      req.offset = offset.get() + done;
      XFER_ASSIGN_OR_RETURN(
          FrameHeader reply,
          client_->moving_call(session_, req, data.subspan(done, n), {}, "write", path_));
      XFER_TRY(expect_ack(reply));
      done += n;
    } while (done < data.size());
    return ok_status();
  }

  Result<std::uint64_t> copy_from(Source& source, Offset offset, Length length) override {
    const int fd = source.native_handle();
    if (fd < 0 || client_->sealed() || !client_->sendfile_pays()) {
      return make_error(ErrorCode::kUnsupported, "copy_from", path_);
    }
    FrameHeader req;
    req.type = FrameType::kData;
    req.id = handle_;
    req.offset = offset.get();
    const auto n =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(length.get(), client_->max_payload()));
    XFER_ASSIGN_OR_RETURN(
        FrameHeader reply,
        client_->moving_call(
            session_, req, {}, {}, "write", path_,
            [&](FrameConn& fc) -> Status { return fc.send_file(req, fd, offset.get(), n); }, n));
    XFER_TRY(expect_ack(reply));
    return std::uint64_t{n};
  }

  // In frames of at most kMaxCopyBasis, one after another on the session's
  // connections; the server copies.
  Status copy_basis(Offset offset, Offset basis_offset, Length length) override {
    std::uint64_t done = 0;
    while (done < length.get()) {
      const std::uint64_t n = std::min(protocol::kMaxCopyBasis, length.get() - done);
      std::vector<std::byte> payload;
      protocol::encode(protocol::CopyBasis{basis_offset.get() + done, n}, payload);
      FrameHeader req;
      req.type = FrameType::kCopyBasis;
      req.id = handle_;
      req.offset = offset.get() + done;
      XFER_ASSIGN_OR_RETURN(auto conn, client_->pick_in(session_, &req));
      XFER_ASSIGN_OR_RETURN(FrameHeader reply, conn->call(req, payload, {}, nullptr, {},
                                                          "copy from the old file", path_));
      XFER_TRY(expect_ack(reply));
      done += n;
    }
    return ok_status();
  }

  Result<std::size_t> read_back(Offset offset, std::span<std::byte> buf) override {
    FrameHeader req;
    req.type = FrameType::kRead;
    req.id = handle_;
    req.offset = offset.get();
    req.aux = static_cast<std::uint32_t>(buf.size());
    XFER_ASSIGN_OR_RETURN(auto conn, client_->pick_in(session_, &req));
    XFER_ASSIGN_OR_RETURN(FrameHeader reply,
                          conn->call(req, {}, {}, nullptr, buf, "verify", path_));
    if (reply.type != FrameType::kData || reply.aux > buf.size()) {
      return make_error(ErrorCode::kCorrupt, "verify", path_, "unexpected reply to a read");
    }
    return std::size_t{reply.aux};
  }

  Status commit() override { return finish(FrameType::kCommit); }
  Status abort() override { return finish(FrameType::kAbort); }
  Status suspend() override { return finish(FrameType::kSuspend); }
  bool resumed() const override { return resumed_; }

 private:
  Status expect_ack(const FrameHeader& reply) {
    if (reply.type != FrameType::kAck) {
      return make_error(ErrorCode::kCorrupt, "write", path_, "unexpected reply to a write");
    }
    return ok_status();
  }
  Status finish(FrameType type) {
    if (finished_) return ok_status();
    finished_ = true;
    FrameHeader req;
    req.type = type;
    req.id = handle_;
    XFER_ASSIGN_OR_RETURN(auto conn, client_->pick_in(session_, &req));
    const char* op = type == FrameType::kCommit ? "commit" : "abort";
    XFER_ASSIGN_OR_RETURN(FrameHeader reply, conn->call(req, {}, {}, nullptr, {}, op, path_));
    return expect_ack(reply);
  }

  std::shared_ptr<XferClient> client_;
  std::string path_;
  std::uint64_t handle_;
  std::uint64_t session_;  // the data session the handle lives in
  bool resumed_;
  bool resumable_;
  bool finished_ = false;
};

// ---- the backend --------------------------------------------------------------

// A server's setuid, setgid and sticky bits are not taken: a file that a
// remote (possibly hostile) server calls setuid must not become a setuid
// file here. Permission bits only, as rsync does for a non-root receiver.
constexpr std::uint32_t kPeerModeBits = 0777;

FileAttrs peer_attrs(const v1::FileAttrs& p) {
  FileAttrs a = from_pb(p);
  a.mode &= kPeerModeBits;
  return a;
}

// ---- watching a server's folder ---------------------------------------------

// The WatchChanges stream (docs/protocol.md): the server watches its own
// folder and sends what changed; each change is checked (a path from the
// server becomes a path here) and pushed to the feed. A stream that ends
// or falls silent (no heartbeat for kWatchSilence) is opened again with a
// jittered backoff, and a rescan is pushed once it is back: changes in the
// gap are found by comparing. A refusal that will not change (the token,
// the folder gone) ends the watch instead: failure() says why and the
// feed is closed (a first attempt that fails fails start()). A change
// that fails the check is refused (the first ten with a warning) and
// replaced by a rescan, which compares through the checked listing
// instead. Rescans are pushed at most once a second.
//
// Threading: one thread reads the stream (and reconnects); a second one
// watches for silence, cancels the call, and pushes a rescan that was
// held back. stop() ends both.
class XferChangeWatch final : public ChangeWatch {
 public:
  static constexpr auto kWatchSilence = std::chrono::seconds(60);  // server heartbeats every 15 s
  static constexpr auto kMaxBackoff = std::chrono::seconds(30);
  static constexpr auto kRescanInterval = std::chrono::seconds(1);
  // The server sends at most 1,024 changes or about 256 KiB per reply.
  static constexpr int kMaxReplyBytes = 1 << 20;
  static constexpr int kMaxChangesPerReply = 4096;

  XferChangeWatch(std::shared_ptr<XferClient> client, std::string path, std::size_t root,
                  std::shared_ptr<ChangeFeed> feed, const WatchOptions& options)
      : client_(std::move(client)), path_(std::move(path)), root_(root), feed_(std::move(feed)) {
    req_.set_path(path_);
    req_.set_debounce_ms(
        static_cast<std::uint32_t>(std::clamp<std::int64_t>(options.debounce.count(), 0, 60'000)));
    const std::int64_t reconcile = options.reconcile.count();
    req_.set_reconcile_ms(reconcile <= 0
                              ? 0
                              : static_cast<std::uint32_t>(std::clamp<std::int64_t>(
                                    reconcile, 1'000, std::numeric_limits<std::uint32_t>::max())));
  }
  ~XferChangeWatch() override { stop(); }

  // Opens the stream and waits for the server's `ready` (the folder is
  // watched), or its refusal.
  Status start() {
    XFER_ASSIGN_OR_RETURN(
        stub_, make_control_stub(client_->url(), client_->endpoint_options(), kMaxReplyBytes));
    reader_ = std::thread([this] { run(); });
    watchdog_ = std::thread([this] { guard(); });
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return ready_ || start_error_.has_value(); });
    if (start_error_) {
      Error e = *start_error_;
      lock.unlock();
      stop();
      return e;
    }
    return ok_status();
  }

  void stop() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      if (call_ != nullptr) call_->TryCancel();
    }
    cv_.notify_all();
    feed_->close();  // a push blocked on a full feed returns; the sync ends its input
    if (reader_.joinable()) reader_.join();
    if (watchdog_.joinable()) watchdog_.join();
  }

  std::optional<Error> failure() const override {
    std::lock_guard lock(mu_);
    return failure_;
  }

 private:
  // Refusals that another attempt will not change.
  static bool permanent(grpc::StatusCode code) {
    return code == grpc::StatusCode::PERMISSION_DENIED ||
           code == grpc::StatusCode::UNAUTHENTICATED || code == grpc::StatusCode::NOT_FOUND ||
           code == grpc::StatusCode::INVALID_ARGUMENT || code == grpc::StatusCode::UNIMPLEMENTED;
  }

  void run() {
    auto backoff = std::chrono::seconds(1);
    std::minstd_rand jitter(std::random_device{}());
    bool first = true;
    while (true) {
      grpc::ClientContext ctx;
      // No deadline worth the name: the stream lasts as long as the watch.
      client_->prepare(ctx, std::chrono::hours(24 * 365));
      {
        std::lock_guard lock(mu_);
        if (stopping_) break;
        call_ = &ctx;
        last_read_ = std::chrono::steady_clock::now();
      }
      auto reader = stub_->WatchChanges(&ctx, req_);
      v1::WatchChangesReply reply;
      bool ready = false;
      std::string corrupt;
      while (reader->Read(&reply)) {
        {
          std::lock_guard lock(mu_);
          last_read_ = std::chrono::steady_clock::now();
        }
        if (!ready) {
          if (!reply.ready()) {
            corrupt = "its first answer did not say the folder is watched";
            break;
          }
          ready = true;
          backoff = std::chrono::seconds(1);
          if (first) {
            first = false;
            std::lock_guard lock(mu_);
            ready_ = true;
            cv_.notify_all();
          } else {
            log().warn("watch {}{}: following the server's changes again", client_->name(),
                       printable_name(path_));
            push_rescan();  // what changed while the stream was down
          }
        }
        if (reply.changes_size() > kMaxChangesPerReply) {
          corrupt = fmt::format("it sent {} changes at once", reply.changes_size());
          break;
        }
        bool open = true;
        for (const auto& c : reply.changes()) {
          if (!push(c)) {
            open = false;
            break;
          }
        }
        if (!open) break;
      }
      if (!corrupt.empty()) ctx.TryCancel();
      grpc::Status st = reader->Finish();
      {
        std::lock_guard lock(mu_);
        call_ = nullptr;
        if (stopping_) break;
        if (first) {  // the command stops with the server's reason
          start_error_ = !corrupt.empty()
                             ? make_error(ErrorCode::kCorrupt, "watch", path_,
                                          "the server's answer is not a watch: " + corrupt)
                             : client_->explain(protocol::from_grpc(st, ctx, "watch", path_));
          cv_.notify_all();
          return;
        }
        if (!first && corrupt.empty() && permanent(st.error_code())) {
          // The token expired, the folder went: following it again needs
          // the user. The sync ends and says why.
          failure_ = client_->explain(protocol::from_grpc(st, ctx, "watch", path_));
          log().error("watch {}{}: {}", client_->name(), printable_name(path_),
                      failure_->message());
          stopping_ = true;
          feed_->close();
          return;
        }
      }
      log().warn("watch {}{}: the server's change stream ended ({}); reconnecting in {} s",
                 client_->name(), printable_name(path_),
                 !corrupt.empty() ? "it sent a bad answer: " + corrupt
                                  : printable_name(st.error_message()),
                 backoff.count());
      // Up to half as long again, so that clients of a restarted server
      // do not all come back at once.
      const auto pause =
          backoff + std::chrono::milliseconds(jitter() % (1 + backoff.count() * 500));
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, pause, [this] { return stopping_; })) break;
      backoff =
          std::min(backoff * 2, std::chrono::duration_cast<std::chrono::seconds>(kMaxBackoff));
    }
  }

  // Cancels a call the server has not answered for kWatchSilence (a cut
  // path, a frozen server), so run() reconnects; pushes a held rescan.
  void guard() {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; })) {
      const auto now = std::chrono::steady_clock::now();
      if (call_ != nullptr && now - last_read_ > kWatchSilence) {
        log().warn("watch {}{}: no word from the server for {} s; reconnecting", client_->name(),
                   printable_name(path_), kWatchSilence.count());
        call_->TryCancel();
        last_read_ = now;
      }
      if (rescan_owed_ && now - last_rescan_ >= kRescanInterval) {
        rescan_owed_ = false;
        last_rescan_ = now;
        lock.unlock();
        push_event(ChangeEvent::Kind::kRescan);
        lock.lock();
      }
    }
  }

  bool push_event(ChangeEvent::Kind kind) {
    ChangeEvent e;
    e.root = root_;
    e.kind = kind;
    e.seen = std::chrono::steady_clock::now();
    return feed_->push(std::move(e));
  }

  // A rescan now, or held back (and pushed by guard()) when one went less
  // than kRescanInterval ago: a server that says RESCAN a million times
  // costs at most one comparison a second.
  bool push_rescan() {
    {
      std::lock_guard lock(mu_);
      const auto now = std::chrono::steady_clock::now();
      if (last_rescan_ != std::chrono::steady_clock::time_point{} &&
          now - last_rescan_ < kRescanInterval) {
        rescan_owed_ = true;
        return true;
      }
      last_rescan_ = now;
    }
    return push_event(ChangeEvent::Kind::kRescan);
  }

  static Status check_path(const std::string& path, std::string_view what) {
    if (path.size() > kMaxChangedPathBytes) {
      return make_error(ErrorCode::kCorrupt, "watch", printable_name(path, 100),
                        fmt::format("{} longer than {} bytes", what, kMaxChangedPathBytes));
    }
    return validate_relative_path(path, what);
  }

  // One change from the server, checked; false once the feed is closed.
  bool push(const v1::WatchChange& c) {
    ChangeEvent e;
    e.root = root_;
    e.seen = std::chrono::steady_clock::now();
    Status valid = ok_status();
    switch (c.kind()) {
      case v1::WatchChange::CHANGED:
        e.kind = ChangeEvent::Kind::kChanged;
        valid = check_path(c.path(), "changed path from the server");
        break;
      case v1::WatchChange::REMOVED:
        e.kind = ChangeEvent::Kind::kRemoved;
        valid = check_path(c.path(), "removed path from the server");
        break;
      case v1::WatchChange::RENAMED:
        e.kind = ChangeEvent::Kind::kRenamed;
        valid = check_path(c.path(), "renamed path from the server");
        if (valid.ok()) valid = check_path(c.from(), "renamed path from the server");
        e.from = c.from();
        break;
      case v1::WatchChange::RESCAN:
        return push_rescan();
      default:
        valid = make_error(ErrorCode::kCorrupt, "watch", path_,
                           fmt::format("unknown kind of change {}", static_cast<int>(c.kind())));
    }
    if (!valid.ok()) {
      if (refused_++ < 10) {
        log().warn("watch {}{}: refused a change from the server ({}); rescanning instead",
                   client_->name(), printable_name(path_), valid.error().message());
      }
      return push_rescan();
    }
    e.path = c.path();
    return feed_->push(std::move(e));
  }

  std::shared_ptr<XferClient> client_;
  std::unique_ptr<v1::Xfer::Stub> stub_;  // its own channel: small replies only
  const std::string path_;
  const std::size_t root_;
  std::shared_ptr<ChangeFeed> feed_;
  v1::WatchChangesRequest req_;
  std::thread reader_;
  std::thread watchdog_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool ready_ = false;
  std::optional<Error> start_error_;
  std::optional<Error> failure_;
  grpc::ClientContext* call_ = nullptr;  // the stream open now
  std::chrono::steady_clock::time_point last_read_;
  std::chrono::steady_clock::time_point last_rescan_{};
  bool rescan_owed_ = false;
  std::uint64_t refused_ = 0;  // changes refused (the reader thread's)
};

class XferBackend final : public Backend {
 public:
  explicit XferBackend(std::shared_ptr<XferClient> client) : client_(std::move(client)) {
    caps_.random_writes = true;
    caps_.parallel_writers = true;
    caps_.resume = true;
    caps_.needs_size = true;  // OPEN_WRITE declares the size; DATA must stay inside it
    caps_.network = true;
    caps_.basis_copy = true;
    caps_.symlinks = true;
    caps_.permissions = true;
    caps_.mtime = true;
    caps_.preferred_chunk_size = 64ull << 20;
    caps_.max_concurrency = 64;
  }

  const Capabilities& capabilities() const override { return caps_; }
  LinkEstimate link_estimate() const override { return {client_->rtt_ms(), client_->goodput()}; }
  void cancel() override { client_->cancel(); }
  std::string describe() const override { return client_->name(); }

  Result<FileAttrs> stat(std::string_view path) override {
    v1::PathRequest req;
    req.set_path(std::string(path));
    v1::FileAttrs resp;
    grpc::ClientContext ctx;
    auto call = client_->track(ctx);
    grpc::Status st = client_->stub().Stat(&ctx, req, &resp);
    if (!st.ok()) return client_->explain(protocol::from_grpc(st, ctx, "stat", path));
    return peer_attrs(resp);
  }

  // Hashed by the server. The call may last as long as reading the file
  // takes there: the usual minute, and a second more per 16 MiB expected,
  // an hour at most.
  Result<FileDigest> checksum(std::string_view path, std::uint64_t size_hint,
                              const std::atomic<bool>* cancel) override {
    (void)cancel;  // cancel() reaches the call (it is tracked)
    HashSlot slot(*this);
    v1::PathRequest req;
    req.set_path(std::string(path));
    v1::ChecksumReply resp;
    grpc::ClientContext ctx;
    const auto patience = hashing_patience(size_hint);
    auto call = client_->track(ctx, patience);
    grpc::Status st = client_->stub().Checksum(&ctx, req, &resp);
    if (!st.ok()) return client_->explain(protocol::from_grpc(st, ctx, "checksum", path));
    if (resp.size() > kMaxFileSize) {
      return make_error(ErrorCode::kCorrupt, "checksum", path,
                        "server reported an impossible size");
    }
    FileDigest d;
    d.size = resp.size();
    d.mtime_ns = resp.mtime_ns();
    d.high = resp.xxh3_high();
    d.low = resp.xxh3_low();
    return d;
  }

  // Cut and hashed by the server, streamed in batches. Everything in the
  // reply is checked before it is used (validate_signature), and the
  // count of blocks is bounded by what a file of about size_hint bytes
  // can have: a longer answer means the file grew (kChanged).
  Result<Signature> signature(std::string_view path, const CdcParams& params,
                              std::uint64_t size_hint, const std::atomic<bool>* cancel) override {
    (void)cancel;  // cancel() reaches the call (it is tracked)
    HashSlot slot(*this);
    v1::SignatureRequest req;
    req.set_path(std::string(path));
    req.set_min_block(params.min);
    req.set_avg_block(params.avg);
    req.set_max_block(params.max);
    grpc::ClientContext ctx;
    auto call = client_->track(ctx, hashing_patience(size_hint));
    auto reader = client_->stub().Signature(&ctx, req);
    const std::uint64_t most = std::min(size_hint, kMaxFileSize) / params.min + 2;
    Signature sig;
    sig.params = params;
    v1::SignatureReply reply;
    bool last = false;
    std::optional<Error> stop;
    while (!last && reader->Read(&reply)) {
      const int n = reply.length_size();
      if (reply.xxh3_high_size() != n || reply.xxh3_low_size() != n) {
        stop = make_error(ErrorCode::kCorrupt, "signature", path,
                          "server sent block lists of different lengths");
      } else if (sig.blocks.size() + static_cast<std::uint64_t>(n) > most) {
        stop = make_error(ErrorCode::kChanged, "signature", path,
                          "the file has more blocks than its size allows: it grew",
                          RetryClass::kRetryFile);
      }
      if (stop) break;
      for (int i = 0; i < n; ++i) {
        sig.blocks.push_back({reply.length(i), reply.xxh3_high(i), reply.xxh3_low(i)});
      }
      if (reply.last()) {
        last = true;
        sig.size = reply.size();
        sig.mtime_ns = reply.mtime_ns();
        sig.digest = {reply.size(), reply.mtime_ns(), reply.file_xxh3_high(),
                      reply.file_xxh3_low()};
      }
    }
    if (stop || last) ctx.TryCancel();
    grpc::Status st = reader->Finish();
    if (stop) return *stop;
    if (!last) {
      if (!st.ok()) return client_->explain(protocol::from_grpc(st, ctx, "signature", path));
      return make_error(ErrorCode::kCorrupt, "signature", path, "the server's answer ended early");
    }
    if (Status valid = validate_signature(sig, params); !valid.ok()) {
      Error e = valid.error();
      e.path = std::string(path);
      return e;
    }
    return sig;
  }

  Result<std::unique_ptr<ChangeWatch>> watch(std::string_view path, std::size_t root,
                                             std::shared_ptr<ChangeFeed> feed,
                                             const WatchOptions& options) override {
    auto w = std::make_unique<XferChangeWatch>(client_, std::string(path), root, std::move(feed),
                                               options);
    XFER_TRY(w->start());
    return std::unique_ptr<ChangeWatch>(std::move(w));
  }

  Status list(std::string_view path, const ListOptions& options, const EntrySink& sink) override {
    v1::ListRequest req;
    req.set_path(std::string(path));
    req.set_want_attrs(options.want_attrs);
    grpc::ClientContext ctx;
    auto call = client_->track(ctx, std::chrono::seconds(3600));
    auto reader = client_->stub().List(&ctx, req);
    v1::ListReply reply;
    Status stop = ok_status();
    while (reader->Read(&reply)) {
      for (const auto& e : reply.entries()) {
        // A name from the server becomes a path on this machine: one
        // component, never '..' or '/' (a hostile server must not make
        // `xfer cp -r xfer://h/d dst` write outside dst).
        if (Status valid = validate_name_component(e.name(), "name from the server"); !valid.ok()) {
          stop = make_error(
              ErrorCode::kCorrupt, "list", path,
              fmt::format("server sent an invalid entry name: {}", valid.error().detail));
          break;
        }
        Entry entry;
        entry.name = e.name();
        entry.type = from_pb(e.type());
        if (e.has_attrs()) entry.attrs = peer_attrs(e.attrs());
        stop = sink(std::move(entry));
        if (!stop.ok()) break;
      }
      if (!stop.ok()) {
        ctx.TryCancel();
        break;
      }
    }
    grpc::Status st = reader->Finish();
    if (!stop.ok()) return stop;
    if (!st.ok()) return client_->explain(protocol::from_grpc(st, ctx, "list", path));
    return ok_status();
  }

  Status mkdir(std::string_view path, bool parents) override {
    v1::MkdirRequest req;
    req.set_path(std::string(path));
    req.set_parents(parents);
    return unary(&v1::Xfer::Stub::Mkdir, req, "mkdir", path);
  }
  Status remove(std::string_view path, bool recursive) override {
    v1::RemoveRequest req;
    req.set_path(std::string(path));
    req.set_recursive(recursive);
    return unary(&v1::Xfer::Stub::Remove, req, "remove", path);
  }
  Status rename(std::string_view from, std::string_view to) override {
    v1::RenameRequest req;
    req.set_from(std::string(from));
    req.set_to(std::string(to));
    return unary(&v1::Xfer::Stub::Rename, req, "rename", from);
  }
  Status touch(std::string_view path, std::optional<std::int64_t> mtime_ns) override {
    v1::TouchRequest req;
    req.set_path(std::string(path));
    if (mtime_ns) {
      req.set_has_mtime(true);
      req.set_mtime_ns(*mtime_ns);
    }
    return unary(&v1::Xfer::Stub::Touch, req, "touch", path);
  }
  Status symlink(std::string_view target, std::string_view path, const FileAttrs& attrs) override {
    v1::SymlinkRequest req;
    req.set_target(std::string(target));
    req.set_path(std::string(path));
    to_pb(attrs, req.mutable_attrs());
    return unary(&v1::Xfer::Stub::Symlink, req, "symlink", path);
  }
  Status set_attrs(std::string_view path, const FileAttrs& attrs) override {
    v1::SetAttrsRequest req;
    req.set_path(std::string(path));
    to_pb(attrs, req.mutable_attrs());
    return unary(&v1::Xfer::Stub::SetAttrs, req, "set attributes", path);
  }

  Result<std::unique_ptr<Source>> open_source(std::string_view path) override {
    protocol::OpenRead orq;
    orq.path = std::string(path);
    orq.inline_limit = kInlineLimit;
    std::vector<std::byte> payload;
    protocol::encode(orq, payload);
    const std::uint64_t handle = client_->next_handle();
    XFER_ASSIGN_OR_RETURN(auto opened, open_remote(FrameType::kOpenRead, handle, payload, path));
    protocol::OpenReply& r = opened.reply;
    FileAttrs a;
    a.type = EntryType::kFile;
    a.size = r.size;
    a.mode = r.mode & kPeerModeBits;
    a.mtime_ns = r.mtime_ns;
    const bool inlined = (r.flags & protocol::kReplyInlined) != 0;
    if (inlined && r.inline_data.size() != r.size) {
      return make_error(ErrorCode::kCorrupt, "open", path, "inline data does not match the size");
    }
    return std::unique_ptr<Source>(new XferSource(
        client_, std::string(path), handle, opened.session, a, std::move(r.inline_data), inlined));
  }

  Result<std::unique_ptr<Sink>> open_sink(std::string_view path,
                                          const SinkOptions& options) override {
    if (options.size <= kPutFileLimit && options.resume_name.empty() && !options.basis) {
      return std::unique_ptr<Sink>(new XferSmallSink(client_, std::string(path), options));
    }
    protocol::OpenWrite ow;
    ow.meta = meta_for(path, options);
    std::vector<std::byte> payload;
    protocol::encode(ow, payload);
    const std::uint64_t handle = client_->next_handle();
    XFER_ASSIGN_OR_RETURN(auto opened, open_remote(FrameType::kOpenWrite, handle, payload, path));
    return std::unique_ptr<Sink>(new XferSink(client_, std::string(path), handle, opened.session,
                                              (opened.reply.flags & protocol::kReplyResumed) != 0,
                                              !options.resume_name.empty()));
  }

 private:
  static constexpr unsigned kChecksumsInFlight = 4;
  // One of the kChecksumsInFlight calls that make the server read a whole
  // file (Checksum, Signature): at most xferd's default per-subject count
  // at once (max_checksums_per_subject), so the engine's many workers
  // queue here, not at the server's refusal.
  class HashSlot {
   public:
    explicit HashSlot(XferBackend& b) : b_(b) {
      std::unique_lock lock(b_.checksum_mu_);
      b_.checksum_cv_.wait(lock, [this] { return b_.checksums_in_flight_ < kChecksumsInFlight; });
      ++b_.checksums_in_flight_;
    }
    ~HashSlot() {
      std::lock_guard lock(b_.checksum_mu_);
      --b_.checksums_in_flight_;
      b_.checksum_cv_.notify_one();
    }
    HashSlot(const HashSlot&) = delete;
    HashSlot& operator=(const HashSlot&) = delete;

   private:
    XferBackend& b_;
  };
  // How long a call that reads a whole file there may last: the usual
  // minute and a second more per 16 MiB expected. size_hint may come from
  // the peer (its listing): an hour at most.
  static std::chrono::seconds hashing_patience(std::uint64_t size_hint) {
    return std::min<std::chrono::seconds>(
        std::chrono::duration_cast<std::chrono::seconds>(kRpcTimeout) +
            std::chrono::seconds(std::min<std::uint64_t>(size_hint, kMaxFileSize) >> 24),
        std::chrono::hours(1));
  }
  std::mutex checksum_mu_;
  std::condition_variable checksum_cv_;
  unsigned checksums_in_flight_ = 0;  // under checksum_mu_
  // kOpenRead/kOpenWrite of `handle`; the server's OpenReply.
  struct Opened {
    protocol::OpenReply reply;
    std::uint64_t session;  // the data session the handle now lives in
  };
  Result<Opened> open_remote(FrameType type, std::uint64_t handle,
                             std::span<const std::byte> payload, std::string_view path) {
    XFER_ASSIGN_OR_RETURN(auto conn, client_->pick());
    FrameHeader req;
    req.type = type;
    req.id = handle;
    std::vector<std::byte> body;
    XFER_ASSIGN_OR_RETURN(FrameHeader reply, conn->call(req, payload, {}, &body, {}, "open", path));
    if (reply.type != FrameType::kOpenOk) {
      return make_error(ErrorCode::kCorrupt, "open", path, "unexpected reply to an open");
    }
    XFER_ASSIGN_OR_RETURN(auto r, protocol::decode_open_reply(body));
    return Opened{std::move(r), conn->session()};
  }

  template <typename Method, typename Req>
  Status unary(Method method, const Req& req, std::string_view op, std::string_view path) {
    v1::Empty resp;
    grpc::ClientContext ctx;
    auto call = client_->track(ctx);
    grpc::Status st = (client_->stub().*method)(&ctx, req, &resp);
    if (!st.ok()) return client_->explain(protocol::from_grpc(st, ctx, op, path));
    return ok_status();
  }

  std::shared_ptr<XferClient> client_;
  Capabilities caps_;
};

}  // namespace

EndpointOptions with_profile_tls(EndpointOptions options, const Profile& profile) {
  if (profile.get("tls") == "true") options.tls = true;
  if (options.tls_ca.empty()) options.tls_ca = profile.get("tls_ca");
  return options;
}

Result<std::unique_ptr<Backend>> make_xfer_backend(const Url& url, const Profile& profile,
                                                   const EndpointOptions& given) {
  const EndpointOptions options = with_profile_tls(given, profile);
  if (url.host.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "open endpoint", url.to_string(),
                      "xfer:// needs a host (xfer://host:port/path)");
  }
  auto client = std::make_shared<XferClient>(url, options, profile.get("token"));
  XFER_TRY(client->connect_control());
  return std::unique_ptr<Backend>(new XferBackend(std::move(client)));
}

}  // namespace xfer
