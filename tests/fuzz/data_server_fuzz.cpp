// libFuzzer target for the data server's request handling
// (src/server/data_server.cpp): frames from the input, sent after a valid
// Hello to a real in-process xferd serving a seeded root in a temp folder.
//
// Input: up to 32 records, integers little-endian:
//   [u8 kind][u64 id][u64 offset][u32 aux][u16 length][length payload bytes]
// kind % 21 picks the frame: 0..15 the frame type kind + 1 with the payload
// as it is; 16 OPEN_WRITE, 17 PUT_FILE, 18 OPEN_READ, each encoded with
// protocol::encode from fields taken out of the payload
//   [u16 path length][u8 resume name length][u8 flags][path][resume name][data]
// (OPEN_WRITE: size = offset, mode = aux, and with the basis flag the
// basis size and mtime from the data's first 16 bytes; PUT_FILE: the data,
// mode = aux, mtime = offset; OPEN_READ: inline_limit = aux); 19 DATA
// again (weight); 20 COPY_BASIS with the payload as it is.
// Frames go out with FrameConn::send, so length, payload hash and header
// check are valid and the handlers see them; a reader thread drains the
// replies. Each input has its own session (token prefix "/", write access)
// and one connection; the server ends the session with that connection.
//
// Fails (abort) when: the server sends a malformed frame, goes quiet for
// 2 s (a hang), refuses OpenSession or a valid Hello (a session or
// descriptor leak shows there within a few inputs), or, once the connection
// ended, anything changed beside the root, a file has setuid/setgid/sticky
// bits, a temporary ".xfer-tmp-" is left in the root (unless the input names
// one itself) or a descriptor of this process still points into the root.

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "fuzz_server.hpp"
#include "protocol/conn.hpp"
#include "xfer/protocol/crypto.hpp"
#include "xfer/protocol/frame.hpp"

namespace {

using xfer_fuzz::fail;
namespace protocol = xfer::protocol;
namespace v1 = ::xfer::v1;
using protocol::FrameConn;
using protocol::FrameHeader;
using protocol::FrameType;

constexpr std::size_t kMaxFrames = 32;
constexpr int kQuietSeconds = 2;  // no reply for this long: the server hangs
constexpr const char* kSubject = "data-fuzz";

struct Outgoing {
  FrameHeader h;
  std::vector<std::byte> payload;
};

// Little-endian fields out of the input; false once it runs out.
class Cursor {
 public:
  Cursor(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
  template <typename T>
  bool take(T& out) {
    if (static_cast<std::size_t>(end_ - p_) < sizeof(T)) return false;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) v |= std::uint64_t{p_[i]} << (8 * i);
    out = static_cast<T>(v);
    p_ += sizeof(T);
    return true;
  }
  std::span<const std::byte> bytes(std::size_t n) {
    n = std::min<std::size_t>(n, end_ - p_);
    std::span<const std::byte> out(reinterpret_cast<const std::byte*>(p_), n);
    p_ += n;
    return out;
  }
  bool done() const { return p_ == end_; }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

std::string as_string(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// The fields of a structured record (see the top of the file).
struct Fields {
  std::string path;
  std::string resume_name;
  std::uint32_t flags = 0;
  std::span<const std::byte> data;
};

Fields fields_of(std::span<const std::byte> payload) {
  Fields f;
  if (payload.size() < 4) {
    f.path = as_string(payload);
    return f;
  }
  const auto u8 = [&](std::size_t i) { return std::to_integer<std::size_t>(payload[i]); };
  std::size_t path_len = u8(0) | (u8(1) << 8);
  std::size_t resume_len = u8(2);
  f.flags = static_cast<std::uint32_t>(u8(3));
  std::span<const std::byte> rest = payload.subspan(4);
  path_len = std::min(path_len, rest.size());
  f.path = as_string(rest.first(path_len));
  rest = rest.subspan(path_len);
  resume_len = std::min(resume_len, rest.size());
  f.resume_name = as_string(rest.first(resume_len));
  f.data = rest.subspan(resume_len);
  return f;
}

std::vector<Outgoing> parse_input(const std::uint8_t* data, std::size_t size) {
  std::vector<Outgoing> out;
  Cursor in(data, size);
  while (out.size() < kMaxFrames && !in.done()) {
    std::uint8_t kind = 0;
    std::uint16_t length = 0;
    Outgoing o;
    if (!in.take(kind) || !in.take(o.h.id) || !in.take(o.h.offset) || !in.take(o.h.aux) ||
        !in.take(length)) {
      break;
    }
    std::span<const std::byte> payload = in.bytes(length);
    const unsigned k = kind % 21;
    if (k < 16) {
      o.h.type = static_cast<FrameType>(k + 1);
      o.payload.assign(payload.begin(), payload.end());
    } else if (k == 16) {
      Fields f = fields_of(payload);
      protocol::OpenWrite ow;
      ow.meta.path = f.path;
      ow.meta.size = o.h.offset;
      ow.meta.mode = o.h.aux;
      ow.meta.mtime_ns = 1'650'000'000'000'000'000LL;
      ow.meta.flags = f.flags;
      ow.meta.resume_name = f.resume_name;
      if ((ow.meta.flags & protocol::kMetaBasis) != 0 && f.data.size() >= 16) {
        std::memcpy(&ow.meta.basis_size, f.data.data(), 8);
        std::memcpy(&ow.meta.basis_mtime_ns, f.data.data() + 8, 8);
      }
      o.h.type = FrameType::kOpenWrite;
      protocol::encode(ow, o.payload);
      o.h.offset = 0;
    } else if (k == 17) {
      Fields f = fields_of(payload);
      protocol::PutFile put;
      put.meta.path = f.path;
      put.meta.size = f.data.size();
      put.meta.mode = o.h.aux;
      put.meta.mtime_ns = static_cast<std::int64_t>(o.h.offset);
      put.meta.flags = f.flags;
      put.meta.resume_name = f.resume_name;
      put.data.assign(f.data.begin(), f.data.end());
      o.h.type = FrameType::kPutFile;
      protocol::encode(put, o.payload);
      o.h.offset = 0;
      o.h.aux = 0;
    } else if (k == 18) {
      Fields f = fields_of(payload);
      protocol::OpenRead rd;
      rd.path = f.path;
      rd.inline_limit = o.h.aux;
      o.h.type = FrameType::kOpenRead;
      protocol::encode(rd, o.payload);
      o.h.offset = 0;
      o.h.aux = 0;
    } else if (k == 20) {
      o.h.type = FrameType::kCopyBasis;
      o.payload.assign(payload.begin(), payload.end());
    } else {
      o.h.type = FrameType::kData;
      o.payload.assign(payload.begin(), payload.end());
    }
    out.push_back(std::move(o));
  }
  return out;
}

std::string describe(const std::vector<Outgoing>& frames) {
  std::string out;
  for (const auto& f : frames) {
    out +=
        fmt::format("\n  {} id={} offset={} aux={} payload={} bytes", protocol::to_string(f.h.type),
                    f.h.id, f.h.offset, f.h.aux, f.payload.size());
  }
  return out;
}

bool is_timeout(const xfer::Error& e) {
  return e.sys_errno == EAGAIN || e.sys_errno == EWOULDBLOCK;
}

v1::Session open_session(xfer_fuzz::FuzzServer& fz, const std::string& token) {
  v1::OpenSessionRequest req;
  req.set_streams(1);
  v1::Session session;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  ctx.AddMetadata("authorization", "Bearer " + token);
  grpc::Status st = fz.stub->OpenSession(&ctx, req, &session);
  if (!st.ok()) fail("OpenSession failed: " + st.error_message());
  return session;
}

// A data connection past magic + a plain Hello (the session's credential).
std::unique_ptr<FrameConn> connect(const v1::Session& session) {
  if (session.data_addresses_size() != 1) fail("session without a data address");
  auto hp = protocol::split_host_port(session.data_addresses(0));
  if (!hp) fail("bad data address " + session.data_addresses(0));
  auto fd = protocol::tcp_connect(hp->first, hp->second);
  // libFuzzer's -timeout alarm may interrupt connect(2) (tcp_connect does
  // not retry): a fresh attempt is fine.
  for (int i = 0; i < 3 && !fd && fd.error().sys_errno == EINTR; ++i) {
    fd = protocol::tcp_connect(hp->first, hp->second);
  }
  if (!fd) fail("cannot connect to the data server: " + fd.error().message());
  timeval tv{};
  tv.tv_sec = kQuietSeconds;
  ::setsockopt(fd->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd->get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  auto fc = std::make_unique<FrameConn>(std::move(*fd));
  if (!fc->send_raw(std::as_bytes(std::span(protocol::kMagic))).ok()) fail("cannot send magic");
  protocol::Hello hello;
  if (!protocol::random_bytes(hello.nonce).ok()) fail("random_bytes");
  hello.data_token = protocol::hello_credential(session.session_id(), session.data_token(),
                                                hello.public_key, hello.nonce);
  std::vector<std::byte> payload;
  protocol::encode(hello, payload);
  FrameHeader h;
  h.type = FrameType::kHello;
  if (!fc->send(h, payload).ok()) fail("cannot send Hello");
  auto reply = fc->recv_header();
  if (!reply) fail("no reply to a valid Hello: " + reply.error().message());
  std::vector<std::byte> body;
  if (!fc->recv_payload(*reply, body).ok()) fail("bad HelloOk payload");
  if (reply->type != FrameType::kHelloOk) {
    auto e = protocol::decode_error(body);
    fail(fmt::format("valid Hello refused: {} {}", protocol::to_string(reply->type),
                     e ? e->message : ""));
  }
  return fc;
}

// Replies until the server closes; what ended the stream.
struct Drained {
  std::size_t frames = 0;
  bool quiet = false;  // read timed out: the server neither answered nor closed
  bool corrupt = false;
  std::string error;
};

void drain(FrameConn& fc, Drained& out) {
  std::vector<std::byte> body;
  // Never empty-and-unallocated: read_exact memcpy()s into data() even for
  // an empty payload (crashes/README.md).
  body.reserve(64);
  while (true) {
    auto h = fc.recv_header();
    xfer::Status s = h ? fc.recv_payload(*h, body) : xfer::Status(h.error());
    if (!s.ok()) {
      out.quiet = is_timeout(s.error());
      out.corrupt = s.error().code == xfer::ErrorCode::kCorrupt;
      out.error = s.error().message();
      return;
    }
    ++out.frames;
    if (h->type == FrameType::kError && !protocol::decode_error(body).ok()) {
      out.corrupt = true;
      out.error = "undecodable ERROR body";
      return;
    }
    if (h->type == FrameType::kOpenOk && !protocol::decode_open_reply(body).ok()) {
      out.corrupt = true;
      out.error = "undecodable OPEN_OK body";
      return;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  auto& fz = xfer_fuzz::fuzz_server("xfer_data_server_fuzz");
  xfer_fuzz::seed_tree(fz.root, /*hardlink=*/true);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto& fz = xfer_fuzz::fuzz_server("xfer_data_server_fuzz");
  static const std::string token = xfer_fuzz::make_token(kSubject, "/", true);
  const std::vector<Outgoing> frames = parse_input(data, size);

  const v1::Session session = open_session(fz, token);
  std::unique_ptr<FrameConn> fc = connect(session);
  Drained drained;
  std::thread reader([&] { drain(*fc, drained); });
  bool send_quiet = false;
  for (const auto& f : frames) {
    xfer::Status s = fc->send(f.h, f.payload);
    if (!s.ok()) {
      // Closed by the server (a fatal frame): fine. Blocked for 2 s: not.
      send_quiet = is_timeout(s.error());
      break;
    }
  }
  ::shutdown(fc->transport().native_handle(), SHUT_WR);
  reader.join();
  if (send_quiet || drained.quiet) {
    fail(
        fmt::format("the data server stopped reading or answering for {} s ({} replies, {}) "
                    "after:{}",
                    kQuietSeconds, drained.frames, drained.error, describe(frames)));
  }
  if (drained.corrupt) {
    fail(fmt::format("the data server sent a malformed frame ({}) after:{}", drained.error,
                     describe(frames)));
  }
  fc.reset();

  xfer_fuzz::check_outside(fz);
  xfer_fuzz::check_no_special_bits(fz.root);
  xfer_fuzz::check_root_released(fz.root, !xfer_fuzz::names_temporaries(data, size));
  xfer_fuzz::clear_dir(fz.root);
  xfer_fuzz::seed_tree(fz.root, /*hardlink=*/true);
  return 0;
}
