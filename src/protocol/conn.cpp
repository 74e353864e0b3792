// One data connection (conn.hpp): framing, sealing, sendfile, TCP_INFO.
// Senders serialise on send_mu_ (small plaintext frames combine through
// queue_mu_); receiving belongs to the connection's one reader thread.

#include "protocol/conn.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "xfer/core/checksum.hpp"
#include "xfer/core/files.hpp"
#include "xfer/core/limits.hpp"

namespace xfer::protocol {
namespace {

constexpr std::size_t kReadBuffer = 256 * 1024;
constexpr std::size_t kDeferMax = 64 * 1024;     // larger frames are never queued
constexpr std::size_t kDeferFlush = 256 * 1024;  // queue size that forces a flush
constexpr std::size_t kCombineMax = 64 * 1024;   // frames up to this are combined
// Larger sealed frames are sealed and written in pieces of this size.
constexpr std::size_t kSealChunk = 256 * 1024;

Error closed_error() {
  return make_error(ErrorCode::kUnavailable, "recv", "data connection", "connection closed by peer",
                    RetryClass::kRetryCall);
}

}  // namespace

FrameConn::FrameConn(UniqueFd fd) : FrameConn(make_tcp_transport(std::move(fd))) {}

FrameConn::FrameConn(std::unique_ptr<Transport> transport)
    : transport_(std::move(transport)), rbuf_(kReadBuffer) {}

void FrameConn::enable_sealing(FrameCipher send, FrameCipher recv) {
  std::lock_guard lock(send_mu_);
  send_cipher_.emplace(std::move(send));
  recv_cipher_.emplace(std::move(recv));
}

Status FrameConn::write_all(std::span<const std::byte> a, std::span<const std::byte> b,
                            std::span<const std::byte> c) {
  const std::span<const std::byte> pieces[3] = {a, b, c};
  return transport_->write_all(pieces);
}

// Plaintext frames from many threads: whoever finds no sender active becomes
// the leader and writes the frames queued meanwhile together, in one writev
// per batch (flat combining), so a burst of small files costs one syscall
// per batch instead of one per file. A frame is complete on the socket
// before its sender returns (callers own the payload memory).
Status FrameConn::send_combined(const std::array<std::byte, kHeaderSize>& hdr,
                                std::span<const std::byte> a, std::span<const std::byte> b) {
  Outgoing me{&hdr, a, b};
  std::unique_lock q(queue_mu_);
  queue_.push_back(&me);
  while (!me.done && leader_) queue_cv_.wait(q);
  if (me.done) return me.status;
  leader_ = true;
  std::vector<Outgoing*> batch;
  std::vector<std::span<const std::byte>> pieces;
  // A bounded number of rounds, then leadership passes to a waiter, so no
  // caller keeps sending for others forever.
  for (int round = 0; round < 16 && !queue_.empty(); ++round) {
    batch.clear();
    batch.swap(queue_);
    q.unlock();
    pieces.clear();
    for (Outgoing* o : batch) {
      for (auto sp : {std::span<const std::byte>(*o->hdr), o->a, o->b}) {
        if (!sp.empty()) pieces.push_back(sp);
      }
    }
    Status st = ok_status();
    {
      std::lock_guard w(send_mu_);
      st = transport_->write_all(pieces);
    }
    q.lock();
    for (Outgoing* o : batch) {
      o->status = st;
      o->done = true;
    }
    queue_cv_.notify_all();
  }
  leader_ = false;
  queue_cv_.notify_all();  // a waiter whose frame is still queued takes over
  return me.status;
}

Status FrameConn::flush_locked() {
  if (out_.empty()) return ok_status();
  Status s = write_all(out_, {}, {});
  out_.clear();
  return s;
}

Status FrameConn::flush() {
  std::lock_guard lock(send_mu_);
  return flush_locked();
}

Status FrameConn::send_raw(std::span<const std::byte> bytes) {
  std::lock_guard lock(send_mu_);
  return write_all(bytes, {}, {});
}

Status FrameConn::send(FrameHeader h, std::span<const std::byte> a, std::span<const std::byte> b) {
  const std::size_t plain = a.size() + b.size();
  if (plain + kTagSize > kMaxPayload) {
    return make_error(ErrorCode::kInvalidArgument, "send frame", "", "payload too large");
  }
  if (!send_cipher_) {
    // Hashing needs no lock: only the write is serialised.
    h.flags = 0;
    h.length = static_cast<std::uint32_t>(plain);
    if (plain == 0) {
      h.payload_hash = 0;
    } else if (b.empty()) {
      h.payload_hash = payload_hash(a);
    } else {
      Xxh3Stream s;
      s.update(a);
      s.update(b);
      h.payload_hash = s.digest();
    }
    auto hdr = encode_header(h);
    // Small frames are combined; a large one is written by its own thread
    // (its writev already amortises the syscall, and it would only make
    // another sender wait behind it).
    if (!deferred_ && kHeaderSize + plain <= kCombineMax) return send_combined(hdr, a, b);
    std::lock_guard lock(send_mu_);
    if (deferred_ && kHeaderSize + plain <= kDeferMax) {
      out_.insert(out_.end(), hdr.begin(), hdr.end());
      out_.insert(out_.end(), a.begin(), a.end());
      out_.insert(out_.end(), b.begin(), b.end());
      return out_.size() >= kDeferFlush ? flush_locked() : ok_status();
    }
    XFER_TRY(flush_locked());
    return write_all(hdr, a, b);
  }
  std::lock_guard lock(send_mu_);  // sealing must follow the wire order
  h.flags = kFlagSealed;
  h.length = static_cast<std::uint32_t>(plain + kTagSize);
  h.payload_hash = 0;  // the tag authenticates sealed payloads
  auto hdr = encode_header(h);
  if (plain + kTagSize > kSealChunk) return send_sealed_pieces(hdr, a, b);
  seal_scratch_.resize(plain + kTagSize);
  if (!a.empty()) std::memcpy(seal_scratch_.data(), a.data(), a.size());
  if (!b.empty()) std::memcpy(seal_scratch_.data() + a.size(), b.data(), b.size());
  std::span<std::byte> body(seal_scratch_.data(), plain);
  std::span<std::byte, kTagSize> tag(seal_scratch_.data() + plain, kTagSize);
  XFER_TRY(send_cipher_->seal(hdr, body, tag));
  if (deferred_ && kHeaderSize + seal_scratch_.size() <= kDeferMax) {
    out_.insert(out_.end(), hdr.begin(), hdr.end());
    out_.insert(out_.end(), seal_scratch_.begin(), seal_scratch_.end());
    return out_.size() >= kDeferFlush ? flush_locked() : ok_status();
  }
  XFER_TRY(flush_locked());
  return write_all(hdr, seal_scratch_, {});
}

// A large sealed frame goes out a piece at a time through seal_scratch_
// (kSealChunk): a sealed connection never holds a second copy of a payload
// that its caller already buffers. Called with send_mu_ held.
Status FrameConn::send_sealed_pieces(std::span<const std::byte, kHeaderSize> hdr,
                                     std::span<const std::byte> a, std::span<const std::byte> b) {
  XFER_TRY(flush_locked());
  XFER_TRY(send_cipher_->seal_begin(hdr));
  XFER_TRY(write_all(hdr, {}, {}));
  seal_scratch_.resize(kSealChunk);
  for (std::span<const std::byte> part : {a, b}) {
    for (std::size_t pos = 0; pos < part.size(); pos += kSealChunk) {
      const std::size_t n = std::min(kSealChunk, part.size() - pos);
      std::memcpy(seal_scratch_.data(), part.data() + pos, n);
      std::span<std::byte> piece(seal_scratch_.data(), n);
      XFER_TRY(send_cipher_->seal_update(piece));
      XFER_TRY(write_all(piece, {}, {}));
    }
  }
  std::array<std::byte, kTagSize> tag;
  XFER_TRY(send_cipher_->seal_end(tag));
  return write_all(tag, {}, {});
}

Status FrameConn::send_file(FrameHeader h, int file_fd, std::uint64_t offset,
                            std::uint32_t length) {
  if (sealed() || length == 0) {
    std::vector<std::byte> data(length);
    std::size_t got = 0;
    while (got < length) {
      ssize_t r =
          ::pread(file_fd, data.data() + got, length - got, static_cast<off_t>(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errno_error(errno, "read", "");
      if (r == 0) {
        return make_error(ErrorCode::kChanged, "read", "", "file shrank while being sent",
                          RetryClass::kRetryFile);
      }
      got += static_cast<std::size_t>(r);
    }
    return send(h, data);
  }
  // Plaintext: hash the bytes as pread() returns them, through a small
  // per-thread buffer, then hand the page-cache pages to the socket with
  // sendfile. Not through a mapping: the peer may truncate the file
  // meanwhile, and touching a mapped page past the new end is SIGBUS.
  // Bytes that change between the hash and sendfile make the receiver's
  // check fail (kCorrupt), never pass unnoticed.
  constexpr std::size_t kHashChunk = 256 * 1024;
  thread_local std::vector<std::byte> chunk;
  chunk.resize(kHashChunk);
  Xxh3Stream hash;
  std::uint64_t hashed = 0;
  while (hashed < length) {
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(length - hashed, kHashChunk));
    ssize_t r = ::pread(file_fd, chunk.data(), want, static_cast<off_t>(offset + hashed));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error(errno, "read", "");
    if (r == 0) {
      return make_error(ErrorCode::kChanged, "read", "", "file shrank while being sent",
                        RetryClass::kRetryFile);
    }
    hash.update({chunk.data(), static_cast<std::size_t>(r)});
    hashed += static_cast<std::uint64_t>(r);
  }
  h.payload_hash = hash.digest();
  h.flags = 0;
  h.length = length;
  auto hdr = encode_header(h);
  std::lock_guard lock(send_mu_);
  XFER_TRY(flush_locked());
  XFER_TRY(write_all(hdr, {}, {}));
  // A file that shrank after the check leaves the frame short: the
  // connection is unusable then (kChanged), and the receiver sees it.
  return transport_->send_file(file_fd, offset, length);
}

Status FrameConn::read_exact(std::span<std::byte> out) {
  std::size_t done = 0;
  // Serve from the buffer first. An empty `out` may have a null data()
  // (an unallocated vector), which memcpy must not be given.
  if (!out.empty() && rpos_ < rend_) {
    std::size_t n = std::min(out.size(), rend_ - rpos_);
    std::memcpy(out.data(), rbuf_.data() + rpos_, n);
    rpos_ += n;
    done = n;
  }
  while (done < out.size()) {
    const std::size_t want = out.size() - done;
    // Large payloads go straight to their destination; small reads refill
    // the buffer.
    const bool direct = want >= rbuf_.size() / 2;
    XFER_ASSIGN_OR_RETURN(std::size_t r,
                          transport_->read_some(direct ? out.subspan(done) : std::span(rbuf_)));
    if (r == 0) {
      if (done == 0) return closed_error();
      return make_error(ErrorCode::kUnavailable, "recv", "data connection",
                        "connection closed in the middle of a frame", RetryClass::kRetryCall);
    }
    if (direct) {
      done += r;
      continue;
    }
    rpos_ = 0;
    rend_ = r;
    const std::size_t n = std::min(want, rend_);
    std::memcpy(out.data() + done, rbuf_.data(), n);
    rpos_ = n;
    done += n;
  }
  return ok_status();
}

Status FrameConn::recv_raw(std::span<std::byte> out) {
  return read_exact(out);
}

Result<FrameHeader> FrameConn::recv_header() {
  std::array<std::byte, kHeaderSize> raw;
  XFER_TRY(read_exact(raw));
  XFER_ASSIGN_OR_RETURN(FrameHeader h, decode_header(raw));
  const bool is_sealed = (h.flags & kFlagSealed) != 0;
  if (is_sealed != recv_cipher_.has_value()) {
    return make_error(ErrorCode::kCorrupt, "recv frame", "data connection",
                      is_sealed ? "sealed frame on a plaintext connection"
                                : "plaintext frame on a sealed connection");
  }
  if (is_sealed && h.length < kTagSize) {
    return make_error(ErrorCode::kCorrupt, "recv frame", "data connection",
                      "sealed frame shorter than its tag");
  }
  return h;
}

std::uint32_t FrameConn::plain_length(const FrameHeader& h) const {
  return (h.flags & kFlagSealed) ? h.length - static_cast<std::uint32_t>(kTagSize) : h.length;
}

Status FrameConn::recv_payload(const FrameHeader& h, std::span<std::byte> out) {
  if (out.size() != plain_length(h)) {
    return make_error(ErrorCode::kInternal, "recv frame", "", "payload size mismatch");
  }
  XFER_TRY(read_exact(out));
  if (h.flags & kFlagSealed) {
    std::array<std::byte, kTagSize> tag;
    XFER_TRY(read_exact(tag));
    auto hdr = encode_header(h);
    Status s = recv_cipher_->open(hdr, out, tag);
    if (!s.ok()) {
      Error e = s.error();
      e.retry = RetryClass::kFatal;
      return e;
    }
    return ok_status();
  }
  if (payload_hash(out) != h.payload_hash) {
    return make_error(ErrorCode::kCorrupt, "recv frame", "data connection",
                      fmt::format("payload checksum mismatch (id {}, offset {})", h.id, h.offset),
                      RetryClass::kRetryCall);
  }
  return ok_status();
}

Status FrameConn::recv_payload(const FrameHeader& h, std::vector<std::byte>& out) {
  out.resize(plain_length(h));
  return recv_payload(h, std::span<std::byte>(out));
}

Status FrameConn::recv_payload_pieces(
    const FrameHeader& h, std::span<std::byte> scratch, std::vector<std::byte>& whole,
    const std::function<Status(std::span<const std::byte>, std::uint64_t)>& consume) {
  if (h.flags & kFlagSealed) {
    XFER_TRY(recv_payload(h, whole));
    return consume(whole, 0);
  }
  Xxh3Stream hash;
  Status first_error = ok_status();
  std::uint64_t pos = 0;
  while (pos < h.length) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(scratch.size(), h.length - pos));
    std::span<std::byte> piece = scratch.subspan(0, n);
    XFER_TRY(read_exact(piece));
    hash.update(piece);
    if (first_error.ok()) first_error = consume(piece, pos);
    pos += n;
  }
  const std::uint64_t got = h.length == 0 ? 0 : hash.digest();
  if (got != h.payload_hash) {
    return make_error(ErrorCode::kCorrupt, "recv frame", "data connection",
                      fmt::format("payload checksum mismatch (id {}, offset {})", h.id, h.offset),
                      RetryClass::kRetryCall);
  }
  return first_error;
}

Status FrameConn::skip_payload(const FrameHeader& h) {
  std::vector<std::byte> sink;
  sink.resize(std::min<std::uint32_t>(h.length, 1u << 20));
  std::uint64_t left = h.length;
  while (left > 0) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, sink.size()));
    XFER_TRY(read_exact({sink.data(), n}));
    left -= n;
  }
  // A sealed frame's counter must advance even when skipped; callers skip
  // only on plaintext connections or right before closing.
  return ok_status();
}

void FrameConn::shutdown() {
  transport_->shutdown();
}

Result<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view text) {
  std::string host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return make_error(ErrorCode::kInvalidArgument, "parse address", std::string(text),
                        "expected [v6-address]:port");
    }
    host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return make_error(ErrorCode::kInvalidArgument, "parse address", std::string(text),
                        "expected host:port");
    }
    host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  unsigned port = 0;
  if (port_text.empty() || port_text.size() > 5) {
    return make_error(ErrorCode::kInvalidArgument, "parse address", std::string(text), "bad port");
  }
  for (char c : port_text) {
    if (c < '0' || c > '9') {
      return make_error(ErrorCode::kInvalidArgument, "parse address", std::string(text),
                        "bad port");
    }
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port > 65535) {
    return make_error(ErrorCode::kInvalidArgument, "parse address", std::string(text),
                      "port out of range");
  }
  return std::make_pair(host, static_cast<std::uint16_t>(port));
}

bool sendfile_pays(bool peer_loopback) {
  if (!peer_loopback) return true;
  const char* force = std::getenv("XFER_LOOPBACK_SENDFILE");
  return force != nullptr && std::string_view(force) == "1";
}

bool peer_is_loopback(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr)) return true;
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) return a->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

void tune_data_socket(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::size_t path_socket_buffer(double rtt_ms, unsigned streams, std::size_t cap) {
  if (!(rtt_ms > 0)) return 0;
  const double share = 2.0 * rtt_ms / 1000.0 * kWindowRate / std::max(1u, streams);
  const double bounded = std::clamp(share, static_cast<double>(kLoopbackSocketBuffer),
                                    static_cast<double>(std::max(cap, kLoopbackSocketBuffer)));
  return static_cast<std::size_t>(bounded);
}

namespace {

// net.core.wmem_max / rmem_max: what SO_SNDBUF / SO_RCVBUF may ask for
// without privilege. 0 when unreadable.
std::size_t sysctl_size(const char* path) {
  auto text = read_small_file(path, 64);
  if (!text.ok()) return 0;
  return static_cast<std::size_t>(std::strtoull(text->c_str(), nullptr, 10));
}

}  // namespace

std::size_t set_socket_buffers(int fd, std::size_t bytes) {
  if (bytes == 0) return 0;
  const int v = static_cast<int>(std::min<std::size_t>(bytes, INT_MAX / 2));
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) == 0 &&
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) == 0) {
    return static_cast<std::size_t>(v);
  }
  static const std::size_t wmem_max = sysctl_size("/proc/sys/net/core/wmem_max");
  static const std::size_t rmem_max = sysctl_size("/proc/sys/net/core/rmem_max");
  if (bytes > wmem_max || bytes > rmem_max) return 0;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
  return static_cast<std::size_t>(v);
}

Status set_congestion_control(int fd, const std::string& name) {
  if (::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name.data(),
                   static_cast<socklen_t>(name.size())) == 0) {
    return ok_status();
  }
  const int err = errno;
  auto available = read_small_file("/proc/sys/net/ipv4/tcp_available_congestion_control", 4096);
  std::string list = available.ok() ? *available : "";
  while (!list.empty() && (list.back() == '\n' || list.back() == ' ')) list.pop_back();
  return make_error(
      ErrorCode::kInvalidArgument, "congestion control", name,
      fmt::format("{} (this kernel has: {})", std::strerror(err), list.empty() ? "unknown" : list));
}

Result<UniqueFd> tcp_connect(const std::string& host, std::uint16_t port, std::size_t buffer_bytes,
                             const std::string& local, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port_text = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &res);
  if (rc != 0) {
    return make_error(ErrorCode::kNotFound, "resolve", host, ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(res, &::freeaddrinfo);
  int last = ECONNREFUSED;
  std::string failed_op = "connect";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd.valid()) {
      last = errno;
      continue;
    }
    tune_data_socket(fd.get());
    set_socket_buffers(fd.get(), buffer_bytes);
    if (!local.empty()) {
      sockaddr_storage from{};
      socklen_t from_len = 0;
      if (ai->ai_family == AF_INET) {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&from);
        s4->sin_family = AF_INET;
        if (::inet_pton(AF_INET, local.c_str(), &s4->sin_addr) != 1) continue;
        from_len = sizeof(sockaddr_in);
      } else {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&from);
        s6->sin6_family = AF_INET6;
        if (::inet_pton(AF_INET6, local.c_str(), &s6->sin6_addr) != 1) continue;
        from_len = sizeof(sockaddr_in6);
      }
      if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), from_len) != 0) {
        last = errno;
        failed_op = "bind " + local;
        continue;
      }
    }
    // Non-blocking for the handshake only: bounded by `timeout`.
    const int flags = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK);
    int err = 0;
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        pollfd p{fd.get(), POLLOUT, 0};
        int n;
        do {
          n = ::poll(&p, 1, static_cast<int>(timeout.count()));
        } while (n < 0 && errno == EINTR);
        if (n == 0) {
          err = ETIMEDOUT;
        } else {
          socklen_t len = sizeof(err);
          if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        }
      }
    }
    if (err == 0) {
      ::fcntl(fd.get(), F_SETFL, flags);
      return fd;
    }
    last = err;
    failed_op = "connect";
  }
  Error e = connection_error(last, failed_op);
  e.path = fmt::format("{}:{}", host, port);
  return e;
}

Result<UniqueFd> tcp_listen(const std::string& host, std::uint16_t port, int backlog,
                            std::size_t buffer_bytes) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
  addrinfo* res = nullptr;
  std::string port_text = std::to_string(port);
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &res);
  if (rc != 0) {
    return make_error(ErrorCode::kInvalidArgument, "listen", host, ::gai_strerror(rc));
  }
  int last = EADDRNOTAVAIL;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd.valid()) {
      last = errno;
      continue;
    }
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    set_socket_buffers(fd.get(), buffer_bytes);
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd.get(), backlog) == 0) {
      ::freeaddrinfo(res);
      return fd;
    }
    last = errno;
  }
  ::freeaddrinfo(res);
  return errno_error(last, "listen", fmt::format("{}:{}", host, port));
}

std::string local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    return fmt::format("{}:{}", host, ntohs(a->sin_port));
  }
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
  ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
  return fmt::format("[{}]:{}", host, ntohs(a->sin6_port));
}

}  // namespace xfer::protocol
