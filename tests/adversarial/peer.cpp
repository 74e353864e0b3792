// The hostile peer of the adversarial tests (peer.hpp): raw gRPC and raw
// frames against a real xferd. Used from the test's threads.

#include "peer.hpp"

#include "harness.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "xfer/protocol/crypto.hpp"

namespace xfer_adv {

using namespace xfer;

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> v(s.size());
  if (!s.empty()) std::memcpy(v.data(), s.data(), s.size());
  return v;
}

FrameHeader header(FrameType type, std::uint64_t id, std::uint64_t offset, std::uint32_t aux) {
  FrameHeader h;
  h.type = type;
  h.id = id;
  h.offset = offset;
  h.aux = aux;
  return h;
}

std::vector<std::byte> open_write(const std::string& path, std::uint64_t size,
                                  const std::string& resume_name, std::uint32_t flags,
                                  std::uint32_t mode) {
  protocol::OpenWrite ow;
  ow.meta.path = path;
  ow.meta.size = size;
  ow.meta.mode = mode;
  ow.meta.mtime_ns = 1'650'000'000'000'000'000LL;
  ow.meta.resume_name = resume_name;
  ow.meta.flags = flags;
  std::vector<std::byte> out;
  protocol::encode(ow, out);
  return out;
}

std::vector<std::byte> open_read(const std::string& path, std::uint32_t inline_limit) {
  protocol::OpenRead orq;
  orq.path = path;
  orq.inline_limit = inline_limit;
  std::vector<std::byte> out;
  protocol::encode(orq, out);
  return out;
}

std::vector<std::byte> put_file(const std::string& path, std::string_view data,
                                std::uint32_t mode) {
  protocol::PutFile put;
  put.meta.path = path;
  put.meta.size = data.size();
  put.meta.mode = mode;
  put.meta.mtime_ns = 1'650'000'000'000'000'000LL;
  put.data = bytes_of(data);
  std::vector<std::byte> out;
  protocol::encode(put, out);
  return out;
}

std::string error_text(const Frame& f) {
  if (f.h.type != FrameType::kError) return {};
  auto e = protocol::decode_error(f.body);
  return e ? e->message : "(undecodable ERROR)";
}

Peer::Peer(std::string control_address, std::string data_address)
    : control_(std::move(control_address)),
      data_(std::move(data_address)),
      stub_(v1::Xfer::NewStub(grpc::CreateChannel(control_, grpc::InsecureChannelCredentials()))) {}

void Peer::prepare(grpc::ClientContext& ctx, const std::string& token) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
}

v1::Session Peer::open_session(const std::string& token, bool encrypt, grpc::Status* status,
                               unsigned streams) {
  v1::OpenSessionRequest req;
  req.set_streams(streams);
  req.set_encrypt(encrypt);
  v1::Session session;
  grpc::ClientContext ctx;
  prepare(ctx, token);
  *status = stub_->OpenSession(&ctx, req, &session);
  return session;
}

std::unique_ptr<FrameConn> Peer::dial(const std::string& source_ip) {
  int fd = xfer_it::tcp_connect(data_, source_ip);
  EXPECT_GE(fd, 0) << "connect " << data_ << " from " << source_ip << ": " << std::strerror(errno);
  if (fd < 0) return nullptr;
  timeval tv{};
  tv.tv_sec = 5;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return std::make_unique<FrameConn>(UniqueFd(fd));
}

Result<Frame> Peer::recv_frame(FrameConn& fc) {
  XFER_ASSIGN_OR_RETURN(FrameHeader h, fc.recv_header());
  Frame f{h, {}};
  XFER_TRY(fc.recv_payload(h, f.body));
  return f;
}

Result<Frame> Peer::call(FrameConn& fc, const FrameHeader& h, std::span<const std::byte> a,
                         std::span<const std::byte> b) {
  XFER_TRY(fc.send(h, a, b));
  return recv_frame(fc);
}

Result<Frame> Peer::plain_hello(FrameConn& fc, const v1::Session& session,
                                const std::array<std::uint8_t, 16>* nonce) {
  XFER_TRY(fc.send_raw(std::as_bytes(std::span(protocol::kMagic))));
  protocol::Hello hello;
  if (nonce != nullptr) {
    hello.nonce = *nonce;
  } else {
    XFER_TRY(protocol::random_bytes(hello.nonce));
  }
  hello.data_token = protocol::hello_credential(session.session_id(), session.data_token(),
                                                hello.public_key, hello.nonce);
  std::vector<std::byte> payload;
  protocol::encode(hello, payload);
  return call(fc, header(FrameType::kHello), payload);
}

Result<Frame> Peer::sealed_hello(FrameConn& fc, const v1::Session& session) {
  XFER_TRY(fc.send_raw(std::as_bytes(std::span(protocol::kMagic))));
  XFER_ASSIGN_OR_RETURN(auto pair, protocol::KeyPair::generate());
  protocol::Hello hello;
  hello.flags = 1;
  hello.public_key = pair.public_key();
  XFER_TRY(protocol::random_bytes(hello.nonce));
  hello.data_token = protocol::hello_credential(session.session_id(), session.data_token(),
                                                hello.public_key, hello.nonce);
  std::vector<std::byte> payload;
  protocol::encode(hello, payload);
  XFER_ASSIGN_OR_RETURN(Frame reply, call(fc, header(FrameType::kHello), payload));
  if (reply.h.type != FrameType::kHelloOk) return reply;
  XFER_ASSIGN_OR_RETURN(auto ok, protocol::decode_hello_ok(reply.body));
  XFER_ASSIGN_OR_RETURN(auto shared, pair.agree(std::span<const std::uint8_t, 32>(ok.public_key)));
  XFER_ASSIGN_OR_RETURN(auto keys,
                        protocol::derive_keys(shared, session.data_token(), hello.nonce, ok.nonce));
  XFER_ASSIGN_OR_RETURN(auto send, protocol::FrameCipher::create(keys.client_to_server));
  XFER_ASSIGN_OR_RETURN(auto recv, protocol::FrameCipher::create(keys.server_to_client));
  fc.enable_sealing(std::move(send), std::move(recv));
  return reply;
}

std::unique_ptr<FrameConn> Peer::connected(const v1::Session& session, bool sealed) {
  auto fc = dial();
  if (!fc) return nullptr;
  auto reply = sealed ? sealed_hello(*fc, session) : plain_hello(*fc, session);
  EXPECT_TRUE(reply.ok()) << (reply.ok() ? "" : reply.error().message());
  if (!reply) return nullptr;
  EXPECT_EQ(reply->h.type, FrameType::kHelloOk) << error_text(*reply);
  if (reply->h.type != FrameType::kHelloOk) return nullptr;
  return fc;
}

std::unique_ptr<FrameConn> Peer::session_connection(const std::string& token, v1::Session* session,
                                                    bool sealed) {
  grpc::Status st;
  *session = open_session(token, sealed, &st);
  EXPECT_TRUE(st.ok()) << st.error_message();
  if (!st.ok()) return nullptr;
  return connected(*session, sealed);
}

ProcFigures proc_figures(pid_t pid) {
  namespace fs = std::filesystem;
  ProcFigures f;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    ++f.fds;
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (status >> key) {
    if (key == "Threads:") status >> f.threads;
    if (key == "VmRSS:") status >> f.rss_kib;
    if (key == "VmHWM:") status >> f.hwm_kib;
  }
  return f;
}

ProcFigures settled_figures(pid_t pid, std::chrono::milliseconds quiet,
                            std::chrono::seconds deadline) {
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + deadline;
  ProcFigures last = proc_figures(pid);
  auto since = Clock::now();
  while (Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const ProcFigures now = proc_figures(pid);
    if (now.fds != last.fds || now.threads != last.threads) {
      last = now;
      since = Clock::now();
    } else if (Clock::now() - since >= quiet) {
      return now;
    }
  }
  return last;
}

}  // namespace xfer_adv
