#include "server/data_server.hpp"

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
#include "server/confined.hpp"
#include "xfer/core/log.hpp"
#include "xfer/protocol/crypto.hpp"
#include "xfer/protocol/frame.hpp"

namespace xfer::server {

using protocol::FrameConn;
using protocol::FrameHeader;
using protocol::FrameType;

namespace {

constexpr std::uint32_t kMaxControlPayload = 1u << 20;  // Hello, OpenWrite, OpenRead, ...
constexpr std::uint32_t kInlineMax = 1u << 20;          // largest file inlined in kOpenOk
constexpr std::uint32_t kMaxPutFile = 16u << 20;        // largest whole-file frame
constexpr std::size_t kScratch = 512 * 1024;            // per-connection receive piece

std::string random_hex(std::size_t bytes) {
  std::vector<std::uint8_t> raw(bytes);
  (void)protocol::random_bytes(raw);
  std::string out;
  out.reserve(bytes * 2);
  for (auto b : raw) out += fmt::format("{:02x}", b);
  return out;
}

void set_recv_timeout(int fd, std::chrono::seconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count());
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
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

}  // namespace

// ---- sessions -------------------------------------------------------------

Result<std::shared_ptr<DataSession>> SessionRegistry::create(TokenScope scope, unsigned streams,
                                                             bool encrypt,
                                                             std::chrono::seconds lifetime) {
  auto s = std::make_shared<DataSession>();
  s->id = random_hex(8);
  s->data_token = random_hex(32);
  s->scope = std::move(scope);
  s->encrypt = encrypt;
  s->streams = streams;
  s->expires = std::chrono::steady_clock::now() + lifetime;
  std::lock_guard lock(mu_);
  expire_locked();
  if (by_id_.size() >= max_sessions_) {
    return make_error(ErrorCode::kUnavailable, "open session", "", "server is at its session limit",
                      RetryClass::kRetryCall);
  }
  by_id_[s->id] = s;
  return s;
}

void SessionRegistry::expire_locked() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = by_id_.begin(); it != by_id_.end();) {
    bool idle;
    {
      std::lock_guard slock(it->second->mu);
      idle = it->second->connections == 0;
    }
    if (idle && it->second->expires < now) {
      it = by_id_.erase(it);
    } else {
      ++it;
    }
  }
}

std::shared_ptr<DataSession> SessionRegistry::find_by_id(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return nullptr;
  if (it->second->expires < std::chrono::steady_clock::now()) {
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
  explicit Conn(UniqueFd fd) : fc(std::move(fd)) {}
  FrameConn fc;
  std::thread thread;
  std::atomic<bool> done{false};
};

DataServer::DataServer(std::shared_ptr<Backend> root_backend,
                       std::shared_ptr<const ServerRoot> root, SessionRegistry& sessions,
                       std::chrono::seconds idle_timeout)
    : backend_(std::move(root_backend)),
      root_(std::move(root)),
      sessions_(sessions),
      idle_timeout_(idle_timeout) {}

DataServer::~DataServer() {
  stop();
}

Status DataServer::start(const std::string& listen_address) {
  XFER_ASSIGN_OR_RETURN(auto hp, protocol::split_host_port(listen_address));
  XFER_ASSIGN_OR_RETURN(UniqueFd fd, protocol::tcp_listen(hp.first, hp.second));
  address_ = protocol::local_address(fd.get());
  listen_fd_ = fd.release();
  acceptor_ = std::thread([this] { accept_loop(); });
  return ok_status();
}

void DataServer::stop() {
  if (stopping_.exchange(true)) return;
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
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

void DataServer::accept_loop() {
  while (!stopping_.load()) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (stopping_.load()) break;
      if (errno == EMFILE || errno == ENFILE) {
        log().warn("data server: out of file descriptors, pausing accepts");
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      break;
    }
    protocol::tune_data_socket(fd);
    auto conn = std::make_shared<Conn>(UniqueFd(fd));
    std::lock_guard lock(conns_mu_);
    // Reap finished connections so the list stays bounded.
    for (auto it = conns_.begin(); it != conns_.end();) {
      if ((*it)->done.load()) {
        if ((*it)->thread.joinable()) (*it)->thread.join();
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
    conns_.push_back(conn);
    ++live_;
    conn->thread = std::thread([this, conn] {
      serve(conn);
      --live_;
      conn->done.store(true);
    });
  }
}

void DataServer::serve(const std::shared_ptr<Conn>& conn) {
  FrameConn& fc = conn->fc;
  struct ShutdownOnExit {
    FrameConn& fc;
    ~ShutdownOnExit() { fc.shutdown(); }
  } shutdown_on_exit{fc};
  std::shared_ptr<DataSession> session;
  // A client that connects and says nothing is dropped after 10 s.
  set_recv_timeout(fc.fd(), std::chrono::seconds(10));
  Status hs = handshake(fc, session);
  if (!hs.ok()) {
    log().info("data connection refused: {}", hs.error().message());
    return;
  }
  set_recv_timeout(fc.fd(), idle_timeout_);
  Status s = serve_frames(fc, *session);
  (void)fc.flush();  // a final error reply may still be queued
  if (!s.ok() && s.error().code != ErrorCode::kUnavailable && !stopping_.load()) {
    log().info("data connection closed: {}", s.error().message());
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

Status DataServer::handshake(FrameConn& fc, std::shared_ptr<DataSession>& session) {
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
  const bool want_seal = (hello->flags & 1u) != 0;
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
    ok.flags = 1;
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
    if (session->connections >= std::max(session->streams, 1u) * 2) {
      Error e = make_error(ErrorCode::kUnavailable, "handshake", "",
                           "too many data connections for this session", RetryClass::kRetryCall);
      (void)send_error(fc, 0, 0, e);
      return e;
    }
    ++session->connections;
  }
  std::vector<std::byte> out;
  protocol::encode(ok, out);
  FrameHeader reply;
  reply.type = FrameType::kHelloOk;
  Status sent = fc.send(reply, out);
  if (!sent.ok()) {
    std::lock_guard lock(session->mu);
    --session->connections;
    return sent;
  }
  if (ciphers) fc.enable_sealing(std::move(ciphers->first), std::move(ciphers->second));
  return sent;
}

Status DataServer::serve_frames(FrameConn& fc, DataSession& session) {
  std::vector<std::byte> buf;
  std::vector<std::byte> out;
  // Uninitialised on purpose: only the pages a frame touches become resident.
  std::unique_ptr<std::byte[]> scratch_mem(new std::byte[kScratch]);
  std::span<std::byte> scratch(scratch_mem.get(), kScratch);
  auto find = [&](std::uint64_t id) -> std::shared_ptr<Handle> {
    std::lock_guard lock(session.mu);
    auto it = session.handles.find(id);
    return it == session.handles.end() ? nullptr : it->second;
  };
  auto take = [&](std::uint64_t id) -> std::shared_ptr<Handle> {
    std::lock_guard lock(session.mu);
    auto it = session.handles.find(id);
    if (it == session.handles.end()) return nullptr;
    auto h = it->second;
    session.handles.erase(it);
    return h;
  };
  auto no_handle = [](std::uint64_t id) {
    return make_error(ErrorCode::kInvalidArgument, "data frame", "",
                      fmt::format("unknown file handle {}", id));
  };
  auto check_scope = [&](const std::string& path, bool write) -> Status {
    auto checked = check_token_scope(*root_, session.scope, path, write, "open");
    if (!checked) return checked.error();
    return ok_status();
  };
  auto add_handle = [&](std::uint64_t id, std::shared_ptr<Handle> handle) -> Status {
    std::lock_guard lock(session.mu);
    const std::string path = handle->server_path;
    if (!session.handles.emplace(id, std::move(handle)).second) {
      return make_error(ErrorCode::kInvalidArgument, "open", path, "file handle already in use");
    }
    return ok_status();
  };
  // kOpenOk with `reply`, or kError when the open failed.
  auto reply_open = [&](std::uint64_t id, const Status& opened,
                        const protocol::OpenReply& reply) -> Status {
    if (!opened.ok()) return send_error(fc, id, 0, opened.error());
    out.clear();
    protocol::encode(reply, out);
    FrameHeader r;
    r.type = FrameType::kOpenOk;
    r.id = id;
    return fc.send(r, out);
  };
  auto sink_options = [](const protocol::FileMeta& m) {
    SinkOptions o;
    o.size = m.size;
    o.attrs.size = m.size;
    o.attrs.mode = m.mode;
    o.attrs.mtime_ns = m.mtime_ns;
    o.sparse = (m.flags & 1u) != 0;
    o.fsync = (m.flags & 2u) != 0;
    o.resume_existing = (m.flags & 4u) != 0;
    o.resume_name = m.resume_name;
    return o;
  };

  fc.set_deferred(true);
  // As on the client: sendfile pays on a real network; over loopback the
  // buffered path measured faster (docs/protocol.md, "Sessions and flows").
  const bool peer_loopback =
      protocol::peer_is_loopback(fc.fd()) && std::getenv("XFER_LOOPBACK_SENDFILE") == nullptr;
  while (!stopping_.load()) {
    // Replies queue up while more requests are already here; they go out
    // before this thread can block waiting for the client.
    if (fc.buffered_input() < protocol::kHeaderSize) XFER_TRY(fc.flush());
    auto hr = fc.recv_header();
    if (!hr) {
      if (hr.error().code == ErrorCode::kCorrupt) (void)send_error(fc, 0, 0, hr.error());
      (void)fc.flush();
      return hr.error();
    }
    const FrameHeader h = *hr;
    const std::uint32_t plain = fc.plain_length(h);
    switch (h.type) {
      case FrameType::kData: {
        // Written piece by piece as it arrives: a connection never holds more
        // than its scratch buffer, whatever the frame size.
        auto handle = find(h.id);
        Status ws = ok_status();
        if (!handle || !handle->sink) ws = no_handle(h.id);
        Status rs = fc.recv_payload_pieces(
            h, scratch, buf, [&](std::span<const std::byte> piece, std::uint64_t pos) -> Status {
              XFER_TRY(ws);
              return handle->sink->write_at(Offset{h.offset + pos}, piece);
            });
        if (!rs.ok() && rs.error().retry == RetryClass::kFatal &&
            rs.error().code == ErrorCode::kCorrupt && fc.sealed()) {
          (void)send_error(fc, h.id, h.offset, rs.error());
          return rs;  // a frame that fails authentication ends the connection
        }
        if (!rs.ok() && rs.error().code == ErrorCode::kUnavailable) return rs;
        if (rs.ok()) {
          XFER_TRY(send_ack(fc, h.id, h.offset, plain));
        } else {
          XFER_TRY(send_error(fc, h.id, h.offset, rs.error()));
        }
        break;
      }
      case FrameType::kPutFile: {
        if (plain > kMaxPutFile) {
          XFER_TRY(fc.skip_payload(h));
          XFER_TRY(send_error(fc, h.id, 0,
                              make_error(ErrorCode::kInvalidArgument, "put file", "",
                                         "whole-file frame larger than 16 MiB")));
          break;
        }
        buf.resize(plain);
        Status rs = fc.recv_payload(h, std::span<std::byte>(buf));
        if (!rs.ok()) {
          if (rs.error().retry == RetryClass::kFatal) {
            (void)send_error(fc, h.id, h.offset, rs.error());
            return rs;
          }
          XFER_TRY(send_error(fc, h.id, 0, rs.error()));
          break;
        }
        Status ps = [&]() -> Status {
          XFER_ASSIGN_OR_RETURN(auto put, protocol::decode_put_file(buf));
          XFER_TRY(check_scope(put.meta.path, true));
          XFER_ASSIGN_OR_RETURN(auto sink,
                                backend_->open_sink(put.meta.path, sink_options(put.meta)));
          if (!put.data.empty()) XFER_TRY(sink->write_at(Offset{0}, put.data));
          return sink->commit();
        }();
        if (ps.ok())
          XFER_TRY(send_ack(fc, h.id, 0));
        else
          XFER_TRY(send_error(fc, h.id, 0, ps.error()));
        break;
      }
      case FrameType::kOpenWrite: {
        if (plain > kMaxControlPayload)
          return make_error(ErrorCode::kCorrupt, "frame", "", "oversized open");
        XFER_TRY(fc.recv_payload(h, buf));
        protocol::OpenReply reply;
        Status os = [&]() -> Status {
          XFER_ASSIGN_OR_RETURN(auto ow, protocol::decode_open_write(buf));
          XFER_TRY(check_scope(ow.meta.path, true));
          XFER_ASSIGN_OR_RETURN(auto sink,
                                backend_->open_sink(ow.meta.path, sink_options(ow.meta)));
          if (sink->resumed()) reply.flags |= 1u;
          auto handle = std::make_shared<Handle>();
          handle->server_path = ow.meta.path;
          handle->sink = std::move(sink);
          return add_handle(h.id, std::move(handle));
        }();
        XFER_TRY(reply_open(h.id, os, reply));
        break;
      }
      case FrameType::kOpenRead: {
        if (plain > kMaxControlPayload)
          return make_error(ErrorCode::kCorrupt, "frame", "", "oversized open");
        XFER_TRY(fc.recv_payload(h, buf));
        protocol::OpenReply reply;
        Status os = [&]() -> Status {
          XFER_ASSIGN_OR_RETURN(auto orq, protocol::decode_open_read(buf));
          XFER_TRY(check_scope(orq.path, false));
          XFER_ASSIGN_OR_RETURN(auto src, backend_->open_source(orq.path));
          const FileAttrs& a = src->attrs();
          reply.size = a.size;
          reply.mode = a.mode;
          reply.mtime_ns = a.mtime_ns;
          if (a.size <= std::min(orq.inline_limit, kInlineMax)) {
            // Small file: the whole content rides in the reply (one round
            // trip per file), read and checked for changes here.
            reply.inline_data.resize(a.size);
            std::size_t got = 0;
            while (got < a.size) {
              XFER_ASSIGN_OR_RETURN(
                  std::size_t n,
                  src->read_at(Offset{got}, std::span<std::byte>(reply.inline_data).subspan(got)));
              if (n == 0) break;
              got += n;
            }
            if (got != a.size) {
              return make_error(ErrorCode::kChanged, "read", orq.path,
                                "file shrank while being read", RetryClass::kRetryFile);
            }
            XFER_TRY(src->check_unchanged());
            reply.flags |= 2u;
            return ok_status();
          }
          auto handle = std::make_shared<Handle>();
          handle->server_path = orq.path;
          handle->source = std::move(src);
          return add_handle(h.id, std::move(handle));
        }();
        XFER_TRY(reply_open(h.id, os, reply));
        break;
      }
      case FrameType::kRead: {
        if (plain != 0) return make_error(ErrorCode::kCorrupt, "frame", "", "read with a payload");
        XFER_TRY(fc.recv_payload(h, buf));
        const std::uint32_t want =
            std::min<std::uint32_t>(h.aux, protocol::kMaxPayload - protocol::kTagSize);
        auto handle = find(h.id);
        FrameHeader r;
        r.type = FrameType::kData;
        r.id = h.id;
        r.offset = h.offset;
        if (!handle) {
          XFER_TRY(send_error(fc, h.id, h.offset, no_handle(h.id)));
          break;
        }
        if (handle->source && handle->source->native_handle() >= 0 && !fc.sealed() &&
            !peer_loopback) {
          const std::uint64_t size = handle->source->attrs().size;
          const std::uint32_t n = static_cast<std::uint32_t>(
              h.offset >= size ? 0 : std::min<std::uint64_t>(want, size - h.offset));
          r.aux = n;
          // Any failure here (the file shrank under sendfile, a socket
          // error) may leave a frame half-sent: the connection ends and the
          // client retries the read on another one.
          XFER_TRY(fc.send_file(r, handle->source->native_handle(), h.offset, n));
          break;
        }
        buf.resize(want);
        Result<std::size_t> got = handle->source ? handle->source->read_at(Offset{h.offset}, buf)
                                  : handle->sink ? handle->sink->read_back(Offset{h.offset}, buf)
                                                 : Result<std::size_t>(no_handle(h.id));
        if (!got) {
          XFER_TRY(send_error(fc, h.id, h.offset, got.error()));
          break;
        }
        r.aux = static_cast<std::uint32_t>(*got);
        XFER_TRY(fc.send(r, std::span<const std::byte>(buf.data(), *got)));
        break;
      }
      case FrameType::kCommit:
      case FrameType::kAbort:
      case FrameType::kSuspend:
      case FrameType::kClose: {
        XFER_TRY(fc.recv_payload(h, buf));
        auto handle = take(h.id);
        Status s = ok_status();
        if (!handle) {
          s = no_handle(h.id);
        } else if (h.type == FrameType::kCommit) {
          s = handle->sink ? handle->sink->commit() : Status(no_handle(h.id));
        } else if (h.type == FrameType::kAbort) {
          if (handle->sink) s = handle->sink->abort();
        } else if (h.type == FrameType::kSuspend) {
          if (handle->sink) s = handle->sink->suspend();
        }
        if (s.ok())
          XFER_TRY(send_ack(fc, h.id, 0));
        else
          XFER_TRY(send_error(fc, h.id, 0, s.error()));
        break;
      }
      case FrameType::kPing: {
        XFER_TRY(fc.recv_payload(h, buf));
        FrameHeader r;
        r.type = FrameType::kPong;
        r.id = h.id;
        XFER_TRY(fc.send(r, {}));
        break;
      }
      default: {
        Error e = make_error(
            ErrorCode::kCorrupt, "data frame", "",
            fmt::format("unexpected {} frame from a client", protocol::to_string(h.type)));
        (void)send_error(fc, h.id, h.offset, e);
        return e;
      }
    }
  }
  return ok_status();
}

}  // namespace xfer::server
