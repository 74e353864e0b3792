// The data-channel server of xferd (data_server.hpp): admission and limits,
// the handshake, and one handler per frame type. The acceptor and the
// watchdog are one thread each; every connection has its own thread.

#include "server/data_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "protocol/conn.hpp"
#include "xfer/core/limits.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"
#include "xfer/protocol/crypto.hpp"
#include "xfer/protocol/frame.hpp"

namespace xfer::server {

using protocol::FrameConn;
using protocol::FrameHeader;
using protocol::FrameType;

namespace {

constexpr std::uint32_t kMaxControlPayload = 64u << 10;  // OpenWrite, OpenRead (path <= 4 KiB)
constexpr std::uint32_t kMaxSmallPayload = 4096;         // Commit, Close, Ping, ...
constexpr std::uint32_t kInlineMax = 1u << 20;           // largest file inlined in kOpenOk
constexpr std::size_t kScratch = 512 * 1024;             // per-connection receive piece
// Hellos one session accepts over its life (its connections, reconnects
// included): bounds the replay-protection set.
constexpr std::size_t kMaxHellos = 4096;
// Descriptors a handle holds: a sink keeps its file and its folder, a
// source its file.
constexpr std::size_t kSinkFds = 2;
constexpr std::size_t kSourceFds = 1;

std::string random_hex(std::size_t bytes) {
  std::vector<std::uint8_t> raw(bytes);
  (void)protocol::random_bytes(raw);
  std::string out;
  out.reserve(bytes * 2);
  for (auto b : raw) out += fmt::format("{:02x}", b);
  return out;
}

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The peer's address as the per-address limits count it: IPv4 as text
// ("127.0.0.1"), IPv6 by its /64 prefix ("2001:db8:1:2::/64"), since one
// host usually holds a whole /64; "?" when unknown. IPv4-mapped IPv6
// addresses count as their IPv4 address.
std::string peer_ip(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      ::inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], buf, sizeof(buf));
      return buf;
    }
    in6_addr prefix = a->sin6_addr;
    std::memset(prefix.s6_addr + 8, 0, 8);
    ::inet_ntop(AF_INET6, &prefix, buf, sizeof(buf));
    return std::string(buf) + "/64";
  } else {
    return "?";
  }
  return buf;
}

Status send_error(FrameConn& fc, std::uint64_t id, std::uint64_t offset, const Error& e) {
  protocol::ErrorBody body;
  body.code = static_cast<std::uint32_t>(e.code);
  body.retry = static_cast<std::uint32_t>(e.retry);
  body.message = e.message();
  std::vector<std::byte> payload;
  protocol::encode(body, payload);
  FrameHeader h;
  h.type = FrameType::kError;
  h.id = id;
  h.offset = offset;
  return fc.send(h, payload);
}

Status send_ack(FrameConn& fc, std::uint64_t id, std::uint64_t offset, std::uint32_t aux = 0) {
  FrameHeader h;
  h.type = FrameType::kAck;
  h.id = id;
  h.offset = offset;
  h.aux = aux;
  return fc.send(h, {});
}

// Tells a refused peer why, without waiting for it (the socket buffer takes
// one small frame), then the caller closes.
void refuse_connection(int fd, const std::string& why) {
  protocol::ErrorBody body;
  body.code = static_cast<std::uint32_t>(ErrorCode::kUnavailable);
  body.retry = static_cast<std::uint32_t>(RetryClass::kRetryCall);
  body.message = "xferd: " + why;
  std::vector<std::byte> payload;
  protocol::encode(body, payload);
  FrameHeader h;
  h.type = FrameType::kError;
  h.length = static_cast<std::uint32_t>(payload.size());
  h.payload_hash = protocol::payload_hash(payload);
  auto hdr = protocol::encode_header(h);
  std::vector<std::byte> out(hdr.begin(), hdr.end());
  out.insert(out.end(), payload.begin(), payload.end());
  (void)::send(fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

}  // namespace

// ---- descriptors ----------------------------------------------------------

bool FdBudget::try_acquire(std::size_t n) {
  std::size_t cur = used_.load();
  while (true) {
    if (cur + n > capacity_) return false;
    if (used_.compare_exchange_weak(cur, cur + n)) return true;
  }
}

void FdBudget::release(std::size_t n) {
  used_.fetch_sub(n);
}

SubjectQuota::Verdict SubjectQuota::try_acquire(const std::string& subject) {
  std::lock_guard lock(mu_);
  if (used_ >= total_) return Verdict::kServerFull;
  unsigned& mine = by_subject_[subject];
  if (mine >= per_subject_) return Verdict::kSubjectFull;
  ++mine;
  ++used_;
  return Verdict::kGranted;
}

void SubjectQuota::release(const std::string& subject) {
  std::lock_guard lock(mu_);
  auto it = by_subject_.find(subject);
  if (it == by_subject_.end()) return;
  --used_;
  if (--it->second == 0) by_subject_.erase(it);
}

// ---- sessions -------------------------------------------------------------

Result<std::shared_ptr<DataSession>> SessionRegistry::create(TokenScope scope, unsigned streams,
                                                             bool encrypt,
                                                             std::chrono::seconds idle_lifetime,
                                                             std::shared_ptr<Backend> fs) {
  auto s = std::make_shared<DataSession>();
  s->id = random_hex(8);
  s->data_token = random_hex(32);
  s->token_expires_at = scope.expires_at;
  s->scope = std::move(scope);
  s->encrypt = encrypt;
  s->streams = streams;
  s->idle_expires = std::chrono::steady_clock::now() + idle_lifetime;
  s->fs = std::move(fs);
  std::vector<std::shared_ptr<DataSession>> dropped;  // destroyed outside the lock
  std::lock_guard lock(mu_);
  expire_locked(dropped);
  if (by_id_.size() >= max_sessions_) {
    return make_error(ErrorCode::kUnavailable, "open session", "", "server is at its session limit",
                      RetryClass::kRetryCall);
  }
  unsigned mine = 0;
  for (const auto& [id, other] : by_id_) mine += other->scope.subject == s->scope.subject;
  if (mine >= max_per_subject_) {
    return make_error(ErrorCode::kUnavailable, "open session", "",
                      fmt::format("'{}' has {} sessions open, the most one token subject may have",
                                  s->scope.subject, mine),
                      RetryClass::kRetryCall);
  }
  by_id_[s->id] = s;
  return s;
}

void SessionRegistry::expire_locked(std::vector<std::shared_ptr<DataSession>>& dropped) {
  const auto now = std::chrono::steady_clock::now();
  const std::int64_t now_s = now_seconds();
  for (auto it = by_id_.begin(); it != by_id_.end();) {
    bool idle;
    {
      std::lock_guard slock(it->second->mu);
      idle = it->second->connections == 0;
    }
    if (it->second->token_expired(now_s) || (idle && it->second->idle_expires < now)) {
      dropped.push_back(it->second);
      it = by_id_.erase(it);
    } else {
      ++it;
    }
  }
}

void SessionRegistry::expire() {
  std::vector<std::shared_ptr<DataSession>> dropped;
  {
    std::lock_guard lock(mu_);
    expire_locked(dropped);
  }
  for (auto& s : dropped) {
    std::unordered_map<std::uint64_t, std::shared_ptr<Handle>> handles;
    std::lock_guard slock(s->mu);
    s->closed.store(true);
    handles.swap(s->handles);
  }
}

std::shared_ptr<DataSession> SessionRegistry::find_by_id(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return nullptr;
  if (it->second->token_expired(now_seconds())) return nullptr;
  if (it->second->idle_expires < std::chrono::steady_clock::now()) {
    std::lock_guard slock(it->second->mu);
    if (it->second->connections == 0) return nullptr;
  }
  return it->second;
}

void SessionRegistry::close(const std::string& id) {
  std::shared_ptr<DataSession> dropped;
  {
    std::lock_guard lock(mu_);
    auto it = by_id_.find(id);
    if (it != by_id_.end()) {
      dropped = it->second;
      by_id_.erase(it);
    }
  }
  if (dropped) {
    std::unordered_map<std::uint64_t, std::shared_ptr<Handle>> handles;
    {
      std::lock_guard slock(dropped->mu);
      dropped->closed.store(true);
      handles.swap(dropped->handles);
    }
    // Destroying the sinks aborts them (resumable ones keep their partial).
  }
}

std::size_t SessionRegistry::size() {
  std::lock_guard lock(mu_);
  return by_id_.size();
}

// ---- connections ----------------------------------------------------------

struct DataServer::Conn {
  Conn(UniqueFd fd, std::string addr) : fc(std::move(fd)), address(std::move(addr)) {}
  FrameConn fc;
  std::string address;
  std::thread thread;
  std::atomic<bool> done{false};
  // Guarded by DataServer::conns_mu_.
  bool authenticated = false;
  bool counted_unauth = true;
  bool shut = false;                               // the watchdog shut it down
  std::chrono::steady_clock::time_point deadline;  // of the handshake
  std::shared_ptr<DataSession> session;
};

DataServer::DataServer(SessionRegistry& sessions, DataLimits limits, FdBudget& fds, Audit& audit)
    : sessions_(sessions),
      limits_(limits),
      fds_(fds),
      audit_(audit),
      subject_files_(limits_.max_open_files_per_subject) {}

DataServer::~DataServer() {
  stop();
}

Status DataServer::start(const std::vector<std::string>& listen_addresses) {
  std::vector<UniqueFd> fds;
  for (const std::string& a : listen_addresses) {
    XFER_ASSIGN_OR_RETURN(auto hp, protocol::split_host_port(a));
    XFER_ASSIGN_OR_RETURN(
        UniqueFd fd, protocol::tcp_listen(hp.first, hp.second, 256, limits_.socket_buffer_bytes));
    // Accepted connections inherit the listener's congestion control: BBR
    // where the kernel has it (downloads are sent from here), else the
    // system's default.
    (void)protocol::set_congestion_control(fd.get(), protocol::kPreferredCongestionControl);
    addresses_.push_back(protocol::local_address(fd.get()));
    fds.push_back(std::move(fd));
  }
  // One reserve descriptor per acceptor: an acceptor that gives its up
  // to clear its queue gets it back without racing the others.
  reserves_.resize(fds.size());
  for (auto& r : reserves_) r = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  for (std::size_t i = 0; i < fds.size(); ++i) {
    const int lfd = fds[i].release();
    listen_fds_.push_back(lfd);
    acceptors_.emplace_back([this, lfd, i] { accept_loop(lfd, reserves_[i]); });
  }
  watchdog_ = std::thread([this] { watchdog_loop(); });
  return ok_status();
}

void DataServer::stop() {
  if (stopping_.exchange(true)) return;
  for (int fd : listen_fds_) ::shutdown(fd, SHUT_RDWR);
  for (auto& t : acceptors_) {
    if (t.joinable()) t.join();
  }
  watchdog_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  for (int fd : listen_fds_) ::close(fd);
  listen_fds_.clear();
  std::list<std::shared_ptr<Conn>> conns;
  {
    std::lock_guard lock(conns_mu_);
    conns.swap(conns_);
  }
  for (auto& c : conns) c->fc.shutdown();
  for (auto& c : conns) {
    if (c->thread.joinable()) c->thread.join();
  }
}

void DataServer::reap_locked() {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if ((*it)->done.load()) {
      if ((*it)->thread.joinable()) (*it)->thread.join();
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

std::shared_ptr<DataServer::Conn> DataServer::admit_locked(UniqueFd fd,
                                                           const std::string& address) {
  auto refuse = [&](const std::string& why) -> std::shared_ptr<Conn> {
    audit_.refused(address, "data connection", why);
    refuse_connection(fd.get(), why);
    return nullptr;
  };
  reap_locked();
  if (conns_.size() >= limits_.max_connections) {
    return refuse(
        fmt::format("server is at its limit of {} data connections", limits_.max_connections));
  }
  if (per_address_[address] >= limits_.max_connections_per_address) {
    return refuse(
        fmt::format("{} data connections from {} already", per_address_[address], address));
  }
  if (unauth_per_address_[address] >= limits_.max_unauthenticated_per_address) {
    return refuse(fmt::format("{} handshakes from {} in progress already",
                              unauth_per_address_[address], address));
  }
  if (unauthenticated_ >= limits_.max_unauthenticated) {
    // Make room by dropping the oldest handshake still waiting: an honest
    // handshake takes a round trip, so the oldest is the likeliest to be a
    // connection that never meant to finish.
    for (auto& c : conns_) {
      if (!c->authenticated && c->counted_unauth && !c->done.load()) {
        audit_.refused(c->address, "data connection", "evicted: too many handshakes in progress");
        c->fc.shutdown();
        c->counted_unauth = false;
        --unauthenticated_;
        if (--unauth_per_address_[c->address] == 0) unauth_per_address_.erase(c->address);
        break;
      }
    }
  }
  if (!fds_.try_acquire(1)) return refuse("server is out of file descriptors");
  auto conn = std::make_shared<Conn>(std::move(fd), address);
  conn->deadline = std::chrono::steady_clock::now() + limits_.handshake;
  ++per_address_[address];
  ++unauth_per_address_[address];
  ++unauthenticated_;
  return conn;
}

void DataServer::accept_loop(int listen_fd, UniqueFd& reserve) {
  auto backoff = std::chrono::milliseconds(5);
  while (!stopping_.load()) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if (stopping_.load()) break;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // Out of descriptors: give up the reserve to take the pending
        // connection off the queue and close it (otherwise it would wake us
        // forever), then back off and let the watchdog reap.
        audit_.refused("?", "data connection", "out of file descriptors");
        if (reserve.valid()) {
          reserve.reset();
          int victim = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (victim >= 0) ::close(victim);
          reserve = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        }
        std::this_thread::sleep_for(backoff);
        // Another acceptor may have taken the slot the reserve freed: take
        // one back when there is one again.
        if (!reserve.valid()) reserve = UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
        {
          std::lock_guard lock(conns_mu_);
          reap_locked();
        }
        continue;
      }
      log().error("data server: accept failed: {}", std::strerror(err));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    backoff = std::chrono::milliseconds(5);
    UniqueFd owned(fd);
    // Loopback needs no window: the listener's long-path buffers shrink.
    if (protocol::peer_is_loopback(fd))
      protocol::set_socket_buffers(fd, protocol::kLoopbackSocketBuffer);
    const std::string address = peer_ip(fd);
    std::lock_guard lock(conns_mu_);
    auto conn = admit_locked(std::move(owned), address);
    if (!conn) continue;
    // (The TCP transport tuned the socket when the connection was made.)
    conns_.push_back(conn);
    ++live_;
    try {
      conn->thread = std::thread([this, conn] {
        serve(conn);
        {
          std::lock_guard l(conns_mu_);
          if (!conn->authenticated && conn->counted_unauth) {
            --unauthenticated_;
            if (--unauth_per_address_[conn->address] == 0) {
              unauth_per_address_.erase(conn->address);
            }
          }
          if (--per_address_[conn->address] == 0) per_address_.erase(conn->address);
        }
        fds_.release(1);
        --live_;
        conn->done.store(true);
        watchdog_cv_.notify_all();
      });
    } catch (const std::system_error& e) {
      // No thread for it: undo the admission.
      audit_.refused(address, "data connection", "cannot start a thread");
      conns_.pop_back();
      --live_;
      --unauthenticated_;
      if (--unauth_per_address_[address] == 0) unauth_per_address_.erase(address);
      if (--per_address_[address] == 0) per_address_.erase(address);
      fds_.release(1);
    }
  }
}

void DataServer::watchdog_loop() {
  std::unique_lock lock(conns_mu_);
  std::size_t trimmed_at = 0;  // live connections at the last trim
  while (!stopping_.load()) {
    watchdog_cv_.wait_for(lock, std::chrono::milliseconds(250));
    if (stopping_.load()) break;
    const auto now = std::chrono::steady_clock::now();
    const std::int64_t now_s = now_seconds();
    for (auto& c : conns_) {
      if (c->done.load()) continue;
      if (!c->authenticated) {
        // One deadline for the whole handshake, however slowly it trickles.
        if (now >= c->deadline && c->counted_unauth) {
          audit_.refused(c->address, "data connection", "handshake not finished in time");
          c->fc.shutdown();
          c->counted_unauth = false;
          --unauthenticated_;
          if (--unauth_per_address_[c->address] == 0) unauth_per_address_.erase(c->address);
        }
      } else if (c->session && !c->shut) {
        // The session ends with its token, open connections included; a
        // closed session's connections end with it.
        const bool expired = c->session->token_expired(now_s);
        if (expired || c->session->closed.load()) {
          if (expired) {
            audit_.refused(c->session->scope.subject, "data connection", "token expired");
          }
          c->fc.shutdown();
          c->shut = true;
        }
      }
    }
    reap_locked();
    // Connections' buffers went back to malloc's per-thread arenas, which
    // keep them: when the count has fallen a lot, give the memory back so
    // the server returns to its idle size after a burst or an attack.
    const std::size_t live = live_.load();
    if (live + 32 <= trimmed_at || (live == 0 && trimmed_at > 0)) {
      ::malloc_trim(0);
      trimmed_at = live;
    } else if (live > trimmed_at) {
      trimmed_at = live;
    }
    lock.unlock();
    sessions_.expire();
    lock.lock();
  }
}

void DataServer::serve(const std::shared_ptr<Conn>& conn) {
  FrameConn& fc = conn->fc;
  struct ShutdownOnExit {
    FrameConn& fc;
    ~ShutdownOnExit() { fc.shutdown(); }
  } shutdown_on_exit{fc};
  std::shared_ptr<DataSession> session;
  // Per read; the watchdog enforces the deadline of the whole handshake.
  fc.transport().set_timeouts(limits_.handshake, limits_.idle);
  Status hs = handshake(*conn, session);
  if (!hs.ok()) {
    if (hs.error().code != ErrorCode::kUnavailable || !stopping_.load()) {
      audit_.refused(conn->address, "data handshake", hs.error().message());
    }
    return;
  }
  fc.transport().set_timeouts(limits_.idle, limits_.idle);
  Status s = serve_frames(fc, *session);
  (void)fc.flush();  // a final error reply may still be queued
  if (!s.ok() && s.error().code != ErrorCode::kUnavailable && !stopping_.load()) {
    audit_.refused(session->scope.subject + "@" + conn->address, "data connection",
                   s.error().message());
  }
  bool last = false;
  {
    std::lock_guard lock(session->mu);
    last = --session->connections == 0;
  }
  // The client went away (or we are stopping): nothing will commit the files
  // it left open, so drop them now — temporaries are removed, resumable
  // partials kept for a resume.
  if (last) sessions_.close(session->id);
}

Status DataServer::handshake(Conn& conn, std::shared_ptr<DataSession>& session) {
  FrameConn& fc = conn.fc;
  std::array<std::byte, protocol::kMagic.size()> magic;
  XFER_TRY(fc.recv_raw(magic));
  if (std::memcmp(magic.data(), protocol::kMagic.data(), magic.size()) != 0) {
    return make_error(ErrorCode::kCorrupt, "handshake", "", "not an xfer data connection");
  }
  XFER_ASSIGN_OR_RETURN(FrameHeader h, fc.recv_header());
  if (h.type != FrameType::kHello || h.length > 4096) {
    Error e = make_error(ErrorCode::kCorrupt, "handshake", "", "expected a Hello frame");
    (void)send_error(fc, 0, 0, e);
    return e;
  }
  std::vector<std::byte> payload;
  XFER_TRY(fc.recv_payload(h, payload));
  auto hello = protocol::decode_hello(payload);
  if (!hello) {
    (void)send_error(fc, 0, 0, hello.error());
    return hello.error();
  }
  if (hello->version != protocol::kProtocolVersion) {
    Error e = make_error(ErrorCode::kUnsupported, "handshake", "",
                         fmt::format("protocol version {} not supported (server speaks {})",
                                     hello->version, protocol::kProtocolVersion));
    (void)send_error(fc, 0, 0, e);
    return e;
  }
  std::string session_id, proof;
  if (protocol::split_hello_credential(hello->data_token, session_id, proof)) {
    session = sessions_.find_by_id(session_id);
  }
  if (session &&
      !protocol::check_hello_proof(proof, session->data_token, hello->public_key, hello->nonce)) {
    session = nullptr;
  }
  if (!session) {
    Error e = make_error(ErrorCode::kPermission, "handshake", "", "invalid or expired data token");
    (void)send_error(fc, 0, 0, e);
    return e;
  }
  const bool want_seal = (hello->flags & protocol::kHelloSeal) != 0;
  if (want_seal != session->encrypt) {
    Error e = make_error(ErrorCode::kPermission, "handshake", "",
                         session->encrypt ? "this session requires sealed frames"
                                          : "this session was opened without encryption");
    (void)send_error(fc, 0, 0, e);
    return e;
  }
  protocol::HelloOk ok;
  static std::atomic<std::uint64_t> next_conn{1};
  ok.connection_id = next_conn.fetch_add(1);
  // Sealed sessions: the server's half of the key agreement, done before
  // the connection counts against the session.
  auto make_ciphers = [&]() -> Result<std::pair<protocol::FrameCipher, protocol::FrameCipher>> {
    XFER_ASSIGN_OR_RETURN(auto pair, protocol::KeyPair::generate());
    ok.public_key = pair.public_key();
    XFER_ASSIGN_OR_RETURN(auto shared,
                          pair.agree(std::span<const std::uint8_t, 32>(hello->public_key)));
    XFER_TRY(protocol::random_bytes(ok.nonce));
    XFER_ASSIGN_OR_RETURN(
        auto keys, protocol::derive_keys(shared, session->data_token, hello->nonce, ok.nonce));
    XFER_ASSIGN_OR_RETURN(auto send, protocol::FrameCipher::create(keys.server_to_client));
    XFER_ASSIGN_OR_RETURN(auto recv, protocol::FrameCipher::create(keys.client_to_server));
    ok.flags = protocol::kHelloSeal;
    return std::make_pair(std::move(send), std::move(recv));
  };
  std::optional<std::pair<protocol::FrameCipher, protocol::FrameCipher>> ciphers;
  if (want_seal) {
    auto made = make_ciphers();
    if (!made) {
      (void)send_error(fc, 0, 0, made.error());
      return made.error();
    }
    ciphers.emplace(std::move(*made));
  }
  {
    std::lock_guard lock(session->mu);
    // A Hello is good for one connection: the same client nonce again is a
    // replay (a plaintext Hello can be seen on the wire).
    const std::string nonce(reinterpret_cast<const char*>(hello->nonce.data()),
                            hello->nonce.size());
    std::optional<Error> e;
    if (session->closed.load()) {
      // Dropped between find_by_id and here: as if it had never existed.
      e = make_error(ErrorCode::kPermission, "handshake", "", "invalid or expired data token");
    } else if (session->hello_nonces.count(nonce) != 0) {
      e = make_error(ErrorCode::kPermission, "handshake", "", "this Hello was used already");
    } else if (session->hello_nonces.size() >= kMaxHellos) {
      e = make_error(ErrorCode::kPermission, "handshake", "",
                     "this session has made too many connections; open a new one");
    } else if (session->connections >= std::max(session->streams, 1u) * 2) {
      e = make_error(ErrorCode::kUnavailable, "handshake", "",
                     "too many data connections for this session", RetryClass::kRetryCall);
    }
    if (e) {
      (void)send_error(fc, 0, 0, *e);
      return *e;
    }
    session->hello_nonces.insert(nonce);
    ++session->connections;
  }
  std::vector<std::byte> out;
  protocol::encode(ok, out);
  FrameHeader reply;
  reply.type = FrameType::kHelloOk;
  Status sent = fc.send(reply, out);
  {
    std::lock_guard lock(conns_mu_);
    if (sent.ok() && conn.counted_unauth) {
      conn.authenticated = true;
      conn.session = session;
      conn.counted_unauth = false;
      --unauthenticated_;
      if (--unauth_per_address_[conn.address] == 0) unauth_per_address_.erase(conn.address);
    } else if (sent.ok()) {
      // The watchdog dropped it at the deadline while we were finishing.
      sent = make_error(ErrorCode::kUnavailable, "handshake", "", "handshake timed out");
    }
  }
  if (!sent.ok()) {
    std::lock_guard lock(session->mu);
    --session->connections;
    return sent;
  }
  if (ciphers) fc.enable_sealing(std::move(ciphers->first), std::move(ciphers->second));
  return sent;
}

// ---- frames ---------------------------------------------------------------

namespace {

// Serves the frames of one authenticated connection: one named handler per
// frame type. Lives on the connection's thread.
class FrameHandler {
 public:
  FrameHandler(FrameConn& fc, DataSession& session, const DataLimits& limits, FdBudget& fds,
               SubjectQuota& subject_files, const std::atomic<bool>& stopping)
      : fc_(fc),
        session_(session),
        limits_(limits),
        fds_(fds),
        subject_files_(subject_files),
        stopping_(stopping),
        // Uninitialised on purpose: only the pages a frame touches become resident.
        scratch_mem_(new std::byte[kScratch]),
        scratch_(scratch_mem_.get(), kScratch) {}

  Status run() {
    fc_.set_deferred(true);
    // As on the client: sendfile pays on a real network; over loopback the
    // buffered path measured faster (docs/protocol.md, "Sessions and flows").
    use_sendfile_ = protocol::sendfile_pays(fc_.transport().peer_is_loopback());
    while (!stopping_.load()) {
      // Replies queue up while more requests are already here; they go out
      // before this thread can block waiting for the client.
      if (fc_.buffered_input() < protocol::kHeaderSize) XFER_TRY(fc_.flush());
      auto hr = fc_.recv_header();
      if (!hr) {
        if (hr.error().code == ErrorCode::kCorrupt) (void)send_error(fc_, 0, 0, hr.error());
        (void)fc_.flush();
        return hr.error();
      }
      XFER_TRY(dispatch(*hr));
    }
    return ok_status();
  }

 private:
  Status dispatch(const FrameHeader& h) {
    switch (h.type) {
      case FrameType::kData:
        return on_data(h);
      case FrameType::kPutFile:
        return on_put_file(h);
      case FrameType::kOpenWrite:
        return on_open_write(h);
      case FrameType::kOpenRead:
        return on_open_read(h);
      case FrameType::kRead:
        return on_read(h);
      case FrameType::kCommit:
      case FrameType::kAbort:
      case FrameType::kSuspend:
      case FrameType::kClose:
        return on_finish(h);
      case FrameType::kPing:
        return on_ping(h);
      case FrameType::kCopyBasis:
        return on_copy_basis(h);
      default: {
        Error e = make_error(
            ErrorCode::kCorrupt, "data frame", "",
            fmt::format("unexpected {} frame from a client", protocol::to_string(h.type)));
        (void)send_error(fc_, h.id, h.offset, e);
        return e;
      }
    }
  }

  // A frame the protocol never sends that large: the peer is broken or
  // hostile, and the connection ends (a sealed stream cannot skip a frame).
  Status oversized(const FrameHeader& h, std::string_view what) {
    Error e = make_error(ErrorCode::kCorrupt, "data frame", "",
                         fmt::format("{} frame of {} bytes is larger than this server accepts",
                                     what, fc_.plain_length(h)));
    (void)send_error(fc_, h.id, h.offset, e);
    return e;
  }

  static Error no_handle(std::uint64_t id) {
    return make_error(ErrorCode::kInvalidArgument, "data frame", "",
                      fmt::format("unknown file handle {}", id));
  }

  std::shared_ptr<Handle> find(std::uint64_t id) {
    std::lock_guard lock(session_.mu);
    auto it = session_.handles.find(id);
    return it == session_.handles.end() ? nullptr : it->second;
  }

  std::shared_ptr<Handle> take(std::uint64_t id) {
    std::lock_guard lock(session_.mu);
    auto it = session_.handles.find(id);
    if (it == session_.handles.end()) return nullptr;
    auto h = it->second;
    session_.handles.erase(it);
    return h;
  }

  // Reserves a slot and `fds` descriptors for a new handle before opening
  // the file: kUnavailable (retry) when the session or the server is full.
  Status reserve_handle(std::uint64_t id, std::size_t fds) {
    {
      std::lock_guard lock(session_.mu);
      if (session_.handles.count(id) != 0) {
        return make_error(ErrorCode::kInvalidArgument, "open", "", "file handle already in use");
      }
      if (session_.handles.size() >= limits_.max_handles_per_session) {
        return make_error(
            ErrorCode::kUnavailable, "open", "",
            fmt::format("this session has {} files open, the most it may", session_.handles.size()),
            RetryClass::kRetryCall);
      }
    }
    if (subject_files_.try_acquire(session_.scope.subject) != SubjectQuota::Verdict::kGranted) {
      return make_error(ErrorCode::kUnavailable, "open", "",
                        fmt::format("'{}' has {} files open, the most one token subject may",
                                    printable_name(session_.scope.subject, 100),
                                    limits_.max_open_files_per_subject),
                        RetryClass::kRetryCall);
    }
    if (!fds_.try_acquire(fds)) {
      subject_files_.release(session_.scope.subject);
      return make_error(ErrorCode::kUnavailable, "open", "", "server is out of file descriptors",
                        RetryClass::kRetryCall);
    }
    return ok_status();
  }

  // A handle for the slot reserve_handle() took: released when it goes.
  std::shared_ptr<Handle> new_handle(std::size_t fds, std::string server_path) {
    auto handle = std::make_shared<Handle>();
    handle->budget = &fds_;
    handle->fds = fds;
    handle->subject_files = &subject_files_;
    handle->subject = session_.scope.subject;
    handle->server_path = std::move(server_path);
    return handle;
  }

  Status add_handle(std::uint64_t id, std::shared_ptr<Handle> handle) {
    std::lock_guard lock(session_.mu);
    const std::string path = handle->server_path;
    if (session_.closed.load()) {
      return make_error(ErrorCode::kUnavailable, "open", path, "the session was closed",
                        RetryClass::kRetryFile);
    }
    if (session_.handles.size() >= limits_.max_handles_per_session) {
      return make_error(ErrorCode::kUnavailable, "open", path, "too many files open",
                        RetryClass::kRetryCall);
    }
    if (!session_.handles.emplace(id, std::move(handle)).second) {
      return make_error(ErrorCode::kInvalidArgument, "open", path, "file handle already in use");
    }
    return ok_status();
  }

  // kOpenOk with `reply`, or kError when the open failed.
  Status reply_open(std::uint64_t id, const Status& opened, const protocol::OpenReply& reply) {
    if (!opened.ok()) return send_error(fc_, id, 0, opened.error());
    out_.clear();
    protocol::encode(reply, out_);
    FrameHeader r;
    r.type = FrameType::kOpenOk;
    r.id = id;
    return fc_.send(r, out_);
  }

  // The declared size bounds everything later sized or written from it.
  static Status check_size(const protocol::FileMeta& m) {
    if (m.size <= kMaxFileSize) return ok_status();
    return make_error(ErrorCode::kInvalidArgument, "open", m.path,
                      fmt::format("file of {} bytes is larger than xfer handles (16 TiB)", m.size));
  }

  static SinkOptions sink_options(const protocol::FileMeta& m) {
    SinkOptions o;
    o.size = m.size;
    o.attrs.size = m.size;
    o.attrs.mode = m.mode;
    o.attrs.mtime_ns = m.mtime_ns;
    o.sparse = (m.flags & protocol::kMetaSparse) != 0;
    o.fsync = (m.flags & protocol::kMetaFsync) != 0;
    o.resume_existing = (m.flags & protocol::kMetaResume) != 0;
    o.resume_name = m.resume_name;
    o.basis = (m.flags & protocol::kMetaBasis) != 0;
    o.basis_size = m.basis_size;
    o.basis_mtime_ns = m.basis_mtime_ns;
    return o;
  }

  // Written piece by piece as it arrives: a plaintext connection never holds
  // more than its scratch buffer, whatever the frame size; a sealed frame is
  // authenticated whole, so it is bounded by the connection's budget.
  Status on_data(const FrameHeader& h) {
    if (fc_.sealed() && fc_.plain_length(h) > limits_.buffer_bytes) return oversized(h, "DATA");
    auto handle = find(h.id);
    Status ws = ok_status();
    if (!handle || !handle->sink) {
      ws = no_handle(h.id);
    } else if (h.offset > handle->size || fc_.plain_length(h) > handle->size - h.offset) {
      // Only the file's declared extent: no sparse giant behind its back.
      ws = make_error(ErrorCode::kInvalidArgument, "write", handle->server_path,
                      fmt::format("data at {}+{} beyond the file's declared size {}", h.offset,
                                  fc_.plain_length(h), handle->size));
    }
    Status rs = fc_.recv_payload_pieces(
        h, scratch_, buf_, [&](std::span<const std::byte> piece, std::uint64_t pos) -> Status {
          XFER_TRY(ws);
          std::shared_lock use(handle->use);
          if (handle->finished) return no_handle(h.id);
          return handle->sink->write_at(Offset{h.offset + pos}, piece);
        });
    if (!rs.ok() && rs.error().retry == RetryClass::kFatal &&
        rs.error().code == ErrorCode::kCorrupt && fc_.sealed()) {
      (void)send_error(fc_, h.id, h.offset, rs.error());
      return rs;  // a frame that fails authentication ends the connection
    }
    if (!rs.ok() && rs.error().code == ErrorCode::kUnavailable) return rs;
    if (rs.ok()) return send_ack(fc_, h.id, h.offset, fc_.plain_length(h));
    return send_error(fc_, h.id, h.offset, rs.error());
  }

  Status on_put_file(const FrameHeader& h) {
    const std::uint32_t plain = fc_.plain_length(h);
    if (plain > limits_.buffer_bytes) {
      if (fc_.sealed()) return oversized(h, "PUT_FILE");
      XFER_TRY(fc_.skip_payload(h));
      return send_error(
          fc_, h.id, 0,
          make_error(ErrorCode::kInvalidArgument, "put file", "",
                     fmt::format("whole-file frame larger than {} bytes", limits_.buffer_bytes)));
    }
    buf_.resize(plain);
    Status rs = fc_.recv_payload(h, std::span<std::byte>(buf_));
    if (!rs.ok()) {
      if (rs.error().retry == RetryClass::kFatal) {
        (void)send_error(fc_, h.id, h.offset, rs.error());
        return rs;
      }
      return send_error(fc_, h.id, 0, rs.error());
    }
    Status ps = [&]() -> Status {
      XFER_ASSIGN_OR_RETURN(auto put, protocol::decode_put_file(buf_));
      XFER_TRY(check_size(put.meta));
      if (!fds_.try_acquire(kSinkFds)) {
        return make_error(ErrorCode::kUnavailable, "put file", put.meta.path,
                          "server is out of file descriptors", RetryClass::kRetryCall);
      }
      struct Release {
        FdBudget& b;
        ~Release() { b.release(kSinkFds); }
      } release{fds_};
      XFER_ASSIGN_OR_RETURN(auto sink,
                            session_.fs->open_sink(put.meta.path, sink_options(put.meta)));
      if (!put.data.empty()) XFER_TRY(sink->write_at(Offset{0}, put.data));
      return sink->commit();
    }();
    if (ps.ok()) return send_ack(fc_, h.id, 0);
    return send_error(fc_, h.id, 0, ps.error());
  }

  Status on_open_write(const FrameHeader& h) {
    if (fc_.plain_length(h) > kMaxControlPayload) return oversized(h, "OPEN_WRITE");
    XFER_TRY(fc_.recv_payload(h, buf_));
    protocol::OpenReply reply;
    Status os = [&]() -> Status {
      XFER_ASSIGN_OR_RETURN(auto ow, protocol::decode_open_write(buf_));
      XFER_TRY(check_size(ow.meta));
      // A delta's sink holds the old file open too.
      const std::size_t fds = kSinkFds + ((ow.meta.flags & protocol::kMetaBasis) != 0 ? 1 : 0);
      XFER_TRY(reserve_handle(h.id, fds));
      auto handle = new_handle(fds, ow.meta.path);
      handle->size = ow.meta.size;
      XFER_ASSIGN_OR_RETURN(handle->sink,
                            session_.fs->open_sink(ow.meta.path, sink_options(ow.meta)));
      if (handle->sink->resumed()) reply.flags |= protocol::kReplyResumed;
      return add_handle(h.id, std::move(handle));
    }();
    return reply_open(h.id, os, reply);
  }

  // Bytes of the old file copied into the new one, here: the client sends
  // where and how many, not the bytes (sync's delta). Bounded per frame
  // (kMaxCopyBasis) and by the file's declared size and its basis (the
  // sink checks both).
  Status on_copy_basis(const FrameHeader& h) {
    if (fc_.plain_length(h) > kMaxSmallPayload) return oversized(h, "COPY_BASIS");
    XFER_TRY(fc_.recv_payload(h, buf_));
    Status cs = [&]() -> Status {
      XFER_ASSIGN_OR_RETURN(auto copy, protocol::decode_copy_basis(buf_));
      if (copy.length > protocol::kMaxCopyBasis) {
        return make_error(ErrorCode::kInvalidArgument, "copy_basis", "",
                          fmt::format("{} bytes in one frame; the most is {}", copy.length,
                                      protocol::kMaxCopyBasis));
      }
      auto handle = find(h.id);
      if (!handle || !handle->sink) return no_handle(h.id);
      std::shared_lock use(handle->use);
      if (handle->finished) return no_handle(h.id);
      // Counted before the copy (two connections cannot both pass the
      // bound), given back when it fails.
      const std::uint64_t before = handle->basis_copied.fetch_add(copy.length);
      if (before + copy.length > handle->size) {
        handle->basis_copied.fetch_sub(copy.length);
        return make_error(ErrorCode::kInvalidArgument, "copy_basis", handle->server_path,
                          fmt::format("{} bytes copied from the old file, more than the new "
                                      "file's declared {}",
                                      before + copy.length, handle->size));
      }
      Status copied = handle->sink->copy_basis(Offset{h.offset}, Offset{copy.basis_offset},
                                               Length{copy.length});
      if (!copied.ok()) handle->basis_copied.fetch_sub(copy.length);
      return copied;
    }();
    if (cs.ok()) return send_ack(fc_, h.id, h.offset);
    return send_error(fc_, h.id, h.offset, cs.error());
  }

  Status on_open_read(const FrameHeader& h) {
    if (fc_.plain_length(h) > kMaxControlPayload) return oversized(h, "OPEN_READ");
    XFER_TRY(fc_.recv_payload(h, buf_));
    protocol::OpenReply reply;
    Status os = [&]() -> Status {
      XFER_ASSIGN_OR_RETURN(auto orq, protocol::decode_open_read(buf_));
      XFER_TRY(reserve_handle(h.id, kSourceFds));
      auto handle = new_handle(kSourceFds, orq.path);
      XFER_ASSIGN_OR_RETURN(handle->source, session_.fs->open_source(orq.path));
      Source& src = *handle->source;
      const FileAttrs& a = src.attrs();
      reply.size = a.size;
      reply.mode = a.mode;
      reply.mtime_ns = a.mtime_ns;
      const std::uint64_t inline_max =
          std::min<std::uint64_t>({orq.inline_limit, kInlineMax, limits_.buffer_bytes});
      if (a.size <= inline_max) {
        // Small file: the whole content rides in the reply (one round
        // trip per file), read and checked for changes here.
        reply.inline_data.resize(a.size);
        std::size_t got = 0;
        while (got < a.size) {
          XFER_ASSIGN_OR_RETURN(
              std::size_t n,
              src.read_at(Offset{got}, std::span<std::byte>(reply.inline_data).subspan(got)));
          if (n == 0) break;
          got += n;
        }
        if (got != a.size) {
          return make_error(ErrorCode::kChanged, "read", orq.path, "file shrank while being read",
                            RetryClass::kRetryFile);
        }
        XFER_TRY(src.check_unchanged());
        reply.flags |= protocol::kReplyInlined;
        return ok_status();  // the handle goes away here: nothing stays open
      }
      return add_handle(h.id, std::move(handle));
    }();
    return reply_open(h.id, os, reply);
  }

  // A read is clamped to what the file has and, when it is buffered, to the
  // connection's budget: a reply may be shorter than asked (the client asks
  // again for the rest).
  Status on_read(const FrameHeader& h) {
    if (fc_.plain_length(h) != 0) {
      return make_error(ErrorCode::kCorrupt, "frame", "", "read with a payload");
    }
    XFER_TRY(fc_.recv_payload(h, buf_));
    auto handle = find(h.id);
    FrameHeader r;
    r.type = FrameType::kData;
    r.id = h.id;
    r.offset = h.offset;
    if (!handle) return send_error(fc_, h.id, h.offset, no_handle(h.id));
    std::shared_lock use(handle->use);
    if (handle->finished) return send_error(fc_, h.id, h.offset, no_handle(h.id));
    std::uint64_t want = std::min<std::uint64_t>(h.aux, protocol::kMaxPayload - protocol::kTagSize);
    if (handle->source) {
      const std::uint64_t size = handle->source->attrs().size;
      want = h.offset >= size ? 0 : std::min<std::uint64_t>(want, size - h.offset);
    }
    if (handle->source && handle->source->native_handle() >= 0 && !fc_.sealed() && use_sendfile_) {
      const auto n = static_cast<std::uint32_t>(want);
      r.aux = n;
      // Any failure here (the file shrank under sendfile, a socket error)
      // may leave a frame half-sent: the connection ends and the client
      // retries the read on another one.
      return fc_.send_file(r, handle->source->native_handle(), h.offset, n);
    }
    want = std::min<std::uint64_t>(want, limits_.buffer_bytes);
    buf_.resize(want);
    Result<std::size_t> got = handle->source ? handle->source->read_at(Offset{h.offset}, buf_)
                              : handle->sink ? handle->sink->read_back(Offset{h.offset}, buf_)
                                             : Result<std::size_t>(no_handle(h.id));
    if (!got) return send_error(fc_, h.id, h.offset, got.error());
    r.aux = static_cast<std::uint32_t>(*got);
    return fc_.send(r, std::span<const std::byte>(buf_.data(), *got));
  }

  Status on_finish(const FrameHeader& h) {
    if (fc_.plain_length(h) > kMaxSmallPayload) return oversized(h, protocol::to_string(h.type));
    XFER_TRY(fc_.recv_payload(h, buf_));
    auto handle = take(h.id);
    Status s = ok_status();
    std::unique_lock<std::shared_mutex> use;
    if (handle) {
      use = std::unique_lock(handle->use);  // waits for reads and writes in flight
      handle->finished = true;
    }
    if (!handle) {
      s = no_handle(h.id);
    } else if (h.type == FrameType::kCommit) {
      s = handle->sink ? handle->sink->commit() : Status(no_handle(h.id));
    } else if (h.type == FrameType::kAbort) {
      if (handle->sink) s = handle->sink->abort();
    } else if (h.type == FrameType::kSuspend) {
      if (handle->sink) s = handle->sink->suspend();
    }
    if (use.owns_lock()) use.unlock();
    if (s.ok()) return send_ack(fc_, h.id, 0);
    return send_error(fc_, h.id, 0, s.error());
  }

  Status on_ping(const FrameHeader& h) {
    if (fc_.plain_length(h) > kMaxSmallPayload) return oversized(h, "PING");
    XFER_TRY(fc_.recv_payload(h, buf_));
    FrameHeader r;
    r.type = FrameType::kPong;
    r.id = h.id;
    return fc_.send(r, {});
  }

  FrameConn& fc_;
  DataSession& session_;
  const DataLimits& limits_;
  FdBudget& fds_;
  SubjectQuota& subject_files_;
  const std::atomic<bool>& stopping_;
  bool use_sendfile_ = true;
  std::vector<std::byte> buf_;
  std::vector<std::byte> out_;
  std::unique_ptr<std::byte[]> scratch_mem_;
  std::span<std::byte> scratch_;
};

}  // namespace

Status DataServer::serve_frames(FrameConn& fc, DataSession& session) {
  FrameHandler handler(fc, session, limits_, fds_, subject_files_, stopping_);
  return handler.run();
}

}  // namespace xfer::server
