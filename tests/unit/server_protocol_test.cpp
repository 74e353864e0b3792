// The data channel of a real, in-process xferd under faults: a session is
// opened over gRPC like the xfer:// client does, then the test speaks raw
// frames (FrameConn) to the data server and checks exactly what comes back:
// corrupt payloads, bad tokens, garbage handshakes, damaged headers, unknown
// handles, paths outside the token, sealing, client disconnects.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "protocol/conn.hpp"
#include "xfer/protocol/crypto.hpp"
#include "xfer/protocol/frame.hpp"
#include "xfer/server/auth.hpp"
#include "xfer/server/config.hpp"
#include "xfer/server/server.hpp"
#include "xfer/v1/xfer.grpc.pb.h"

namespace xfer::server {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::xfer::v1;
using protocol::FrameConn;
using protocol::FrameHeader;
using protocol::FrameType;

constexpr const char* kSecret = "server-protocol-test-secret-42";

struct Frame {
  FrameHeader h;
  std::vector<std::byte> body;
};

std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

std::vector<std::byte> read_local(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  if (!c.empty()) std::memcpy(out.data(), c.data(), c.size());
  return out;
}

std::vector<std::byte> encode_open_write(const std::string& path, std::uint64_t size,
                                         const std::string& resume_name = {},
                                         std::uint32_t flags = 0) {
  protocol::OpenWrite ow;
  ow.meta.path = path;
  ow.meta.size = size;
  ow.meta.mode = 0644;
  ow.meta.mtime_ns = 1'650'000'000'000'000'000LL;
  ow.meta.resume_name = resume_name;
  ow.meta.flags = flags;
  std::vector<std::byte> out;
  protocol::encode(ow, out);
  return out;
}

std::vector<std::byte> encode_put_file(const std::string& path,
                                       const std::vector<std::byte>& data) {
  protocol::PutFile put;
  put.meta.path = path;
  put.meta.size = data.size();
  put.meta.mode = 0644;
  put.meta.mtime_ns = 1'650'000'000'000'000'000LL;
  put.data = data;
  std::vector<std::byte> out;
  protocol::encode(put, out);
  return out;
}

FrameHeader header(FrameType type, std::uint64_t id = 0, std::uint64_t offset = 0,
                   std::uint32_t aux = 0) {
  FrameHeader h;
  h.type = type;
  h.id = id;
  h.offset = offset;
  h.aux = aux;
  return h;
}

class ServerProtocol : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    base_ = fs::temp_directory_path() /
            ("xfer_srvproto_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(base_);
    fs::create_directories(base_ / "root");
    fs::create_directories(base_ / "state");
    root_ = fs::canonical(base_ / "root");
    ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.data_listen = {"127.0.0.1:0"};
    config.root = root_.string();
    config.state_dir = (base_ / "state").string();
    config.secret = kSecret;
    config.auth_required = true;
    auto started = Server::start(config);
    ASSERT_TRUE(started.ok()) << started.error().message();
    server_ = std::move(*started);
    stub_ = v1::Xfer::NewStub(
        grpc::CreateChannel(server_->control_address(), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    stub_.reset();
    if (server_) server_->shutdown(1);
    server_.reset();
    fs::remove_all(base_);
  }

  static std::string token(const std::string& prefix = "/", bool write = true) {
    TokenScope scope;
    scope.subject = "protocol-test";
    scope.prefix = prefix;
    scope.write = write;
    scope.expires_at = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count() +
                       3600;
    auto t = issue_token(kSecret, scope);
    EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message());
    return t.ok() ? *t : std::string();
  }

  // OpenSession over gRPC, as the xfer:// client does.
  v1::Session open_session(const std::string& bearer, bool encrypt = false) {
    v1::OpenSessionRequest req;
    req.set_streams(2);
    req.set_encrypt(encrypt);
    v1::Session session;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.AddMetadata("authorization", "Bearer " + bearer);
    grpc::Status st = stub_->OpenSession(&ctx, req, &session);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_FALSE(session.data_token().empty());
    EXPECT_EQ(session.encrypt(), encrypt);
    EXPECT_EQ(session.data_addresses_size(), 1);
    return session;
  }

  // A TCP connection to the data server; reads time out after 3 s so a
  // server that never answers fails the test instead of hanging it.
  std::unique_ptr<FrameConn> dial(const v1::Session& session) {
    std::string address = session.data_addresses_size() > 0 ? session.data_addresses(0)
                                                            : server_->data_addresses().at(0);
    auto hp = protocol::split_host_port(address);
    EXPECT_TRUE(hp.ok()) << address;
    if (!hp) return nullptr;
    auto fd = protocol::tcp_connect(hp->first, hp->second);
    EXPECT_TRUE(fd.ok()) << (fd.ok() ? "" : fd.error().message());
    if (!fd) return nullptr;
    timeval tv{};
    tv.tv_sec = 3;
    ::setsockopt(fd->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return std::make_unique<FrameConn>(std::move(*fd));
  }

  static Status send_magic(FrameConn& fc) {
    return fc.send_raw(std::as_bytes(std::span(protocol::kMagic)));
  }

  static Result<Frame> recv_frame(FrameConn& fc) {
    XFER_ASSIGN_OR_RETURN(FrameHeader h, fc.recv_header());
    Frame f{h, {}};
    XFER_TRY(fc.recv_payload(h, f.body));
    return f;
  }

  // Magic + an unsealed Hello carrying `credential` verbatim; returns the
  // reply frame.
  static Result<Frame> raw_hello(FrameConn& fc, const std::string& credential,
                                 const protocol::Hello& base = {}) {
    XFER_TRY(send_magic(fc));
    protocol::Hello hello = base;
    hello.data_token = credential;
    std::vector<std::byte> payload;
    protocol::encode(hello, payload);
    XFER_TRY(fc.send(header(FrameType::kHello), payload));
    return recv_frame(fc);
  }

  // Magic + an unsealed Hello with the session's credential (a proof of
  // `data_token`, docs/protocol.md "Handshake"); returns the reply frame.
  static Result<Frame> plain_hello(FrameConn& fc, const std::string& session_id,
                                   const std::string& data_token) {
    protocol::Hello hello;
    XFER_TRY(protocol::random_bytes(hello.nonce));
    return raw_hello(
        fc, protocol::hello_credential(session_id, data_token, hello.public_key, hello.nonce),
        hello);
  }

  // Magic + a sealed Hello; on HelloOk the connection is switched to sealed
  // frames. Returns the reply frame.
  static Result<Frame> sealed_hello(FrameConn& fc, const v1::Session& session) {
    XFER_ASSIGN_OR_RETURN(auto pair, protocol::KeyPair::generate());
    protocol::Hello hello;
    hello.flags = 1;
    hello.public_key = pair.public_key();
    XFER_TRY(protocol::random_bytes(hello.nonce));
    const std::string credential = protocol::hello_credential(
        session.session_id(), session.data_token(), hello.public_key, hello.nonce);
    XFER_ASSIGN_OR_RETURN(Frame reply, raw_hello(fc, credential, hello));
    if (reply.h.type != FrameType::kHelloOk) return reply;
    XFER_ASSIGN_OR_RETURN(auto ok, protocol::decode_hello_ok(reply.body));
    if ((ok.flags & 1u) == 0) {
      return make_error(ErrorCode::kCorrupt, "test", "", "HelloOk without the seal flag");
    }
    XFER_ASSIGN_OR_RETURN(auto shared,
                          pair.agree(std::span<const std::uint8_t, 32>(ok.public_key)));
    XFER_ASSIGN_OR_RETURN(
        auto keys, protocol::derive_keys(shared, session.data_token(), hello.nonce, ok.nonce));
    XFER_ASSIGN_OR_RETURN(auto send, protocol::FrameCipher::create(keys.client_to_server));
    XFER_ASSIGN_OR_RETURN(auto recv, protocol::FrameCipher::create(keys.server_to_client));
    fc.enable_sealing(std::move(send), std::move(recv));
    return reply;
  }

  // A data connection past a successful (unsealed) handshake.
  std::unique_ptr<FrameConn> connected(const v1::Session& session) {
    auto fc = dial(session);
    if (!fc) return nullptr;
    auto reply = plain_hello(*fc, session.session_id(), session.data_token());
    EXPECT_TRUE(reply.ok()) << (reply.ok() ? "" : reply.error().message());
    if (!reply) return nullptr;
    EXPECT_EQ(reply->h.type, FrameType::kHelloOk) << describe(*reply);
    if (reply->h.type != FrameType::kHelloOk) return nullptr;
    return fc;
  }

  // Sends one frame and returns the reply.
  static Result<Frame> call(FrameConn& fc, const FrameHeader& h, std::span<const std::byte> a = {},
                            std::span<const std::byte> b = {}) {
    XFER_TRY(fc.send(h, a, b));
    return recv_frame(fc);
  }

  static std::string describe(const Frame& f) {
    std::string out = std::string(protocol::to_string(f.h.type)) + " id=" + std::to_string(f.h.id) +
                      " offset=" + std::to_string(f.h.offset);
    if (f.h.type == FrameType::kError) {
      auto e = protocol::decode_error(f.body);
      if (e) out += " code=" + std::to_string(e->code) + " message=" + e->message;
    }
    return out;
  }

  static protocol::ErrorBody error_of(const Frame& f) {
    EXPECT_EQ(f.h.type, FrameType::kError) << describe(f);
    auto e = protocol::decode_error(f.body);
    EXPECT_TRUE(e.ok());
    return e.ok() ? *e : protocol::ErrorBody{};
  }

  // The peer closed the connection (EOF or reset) rather than going quiet:
  // nothing more arrives, and the end comes within 1 s.
  static void expect_closed(FrameConn& fc) {
    timeval tv{};
    tv.tv_sec = 1;
    ::setsockopt(fc.transport().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    auto h = fc.recv_header();
    ASSERT_FALSE(h.ok()) << "got another frame: " << protocol::to_string(h->type);
    EXPECT_NE(h.error().sys_errno, EAGAIN) << "connection still open (read timed out)";
    EXPECT_EQ(h.error().code, ErrorCode::kUnavailable) << h.error().message();
  }

  // Entries of the served root whose name starts with '.'.
  std::vector<std::string> hidden_entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(root_)) {
      const std::string name = e.path().filename().string();
      if (!name.empty() && name[0] == '.') out.push_back(e.path().string());
    }
    return out;
  }

  // Descriptors of this process (the server runs in it) that refer to
  // something below the served root: open temporaries, O_TMPFILEs.
  std::vector<std::string> open_files_below_root() const {
    std::vector<std::string> out;
    const std::string prefix = root_.string() + "/";
    for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      auto target = fs::read_symlink(e.path(), ec);
      if (ec) continue;
      if (target.string().rfind(prefix, 0) == 0) out.push_back(target.string());
    }
    return out;
  }

  fs::path base_;
  fs::path root_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::Xfer::Stub> stub_;
};

// 1. A kData frame whose payload does not match payload_hash is refused for
// that (id, offset) as retryable corruption; the connection stays in sync and
// the corrected frame is accepted.
TEST_F(ServerProtocol, CorruptDataPayloadIsRetryableAndStreamStaysInSync) {
  auto session = open_session(token());
  auto fc = connected(session);
  ASSERT_TRUE(fc);
  // 2 chunks; the second spans more than the server's 512 KiB receive piece.
  constexpr std::size_t kFirst = 300'000, kSecond = 700'001;
  auto data = pattern(kFirst + kSecond, 1);
  auto open = call(*fc, header(FrameType::kOpenWrite, 7), encode_open_write("/c.bin", data.size()));
  ASSERT_TRUE(open.ok()) << open.error().message();
  ASSERT_EQ(open->h.type, FrameType::kOpenOk) << describe(*open);

  auto first = call(*fc, header(FrameType::kData, 7, 0), {data.data(), kFirst});
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->h.type, FrameType::kAck) << describe(*first);
  EXPECT_EQ(first->h.aux, kFirst);

  // The second chunk with a wrong payload_hash, built by hand.
  std::span<const std::byte> second(data.data() + kFirst, kSecond);
  FrameHeader bad = header(FrameType::kData, 7, kFirst);
  bad.length = static_cast<std::uint32_t>(kSecond);
  bad.payload_hash = protocol::payload_hash(second) ^ 0x5a5a;
  ASSERT_TRUE(fc->send_raw(protocol::encode_header(bad)).ok());
  ASSERT_TRUE(fc->send_raw(second).ok());
  auto refused = recv_frame(*fc);
  ASSERT_TRUE(refused.ok()) << refused.error().message();
  ASSERT_EQ(refused->h.type, FrameType::kError) << describe(*refused);
  EXPECT_EQ(refused->h.id, 7u);
  EXPECT_EQ(refused->h.offset, kFirst);
  auto e = error_of(*refused);
  EXPECT_EQ(e.code, static_cast<std::uint32_t>(ErrorCode::kCorrupt)) << e.message;
  EXPECT_EQ(e.retry, static_cast<std::uint32_t>(RetryClass::kRetryCall)) << e.message;

  // Same connection: the correct frame is acknowledged, then committed.
  auto resent = call(*fc, header(FrameType::kData, 7, kFirst), second);
  ASSERT_TRUE(resent.ok()) << resent.error().message();
  ASSERT_EQ(resent->h.type, FrameType::kAck) << describe(*resent);
  EXPECT_EQ(resent->h.id, 7u);
  EXPECT_EQ(resent->h.offset, kFirst);
  EXPECT_EQ(resent->h.aux, kSecond);
  auto commit = call(*fc, header(FrameType::kCommit, 7));
  ASSERT_TRUE(commit.ok());
  ASSERT_EQ(commit->h.type, FrameType::kAck) << describe(*commit);
  EXPECT_TRUE(read_local(root_ / "c.bin") == data);

  // The same for a whole-file frame with a bad checksum.
  auto small = pattern(5000, 2);
  auto put = encode_put_file("/p.bin", small);
  FrameHeader bad_put = header(FrameType::kPutFile, 8);
  bad_put.length = static_cast<std::uint32_t>(put.size());
  bad_put.payload_hash = protocol::payload_hash(put) + 1;
  ASSERT_TRUE(fc->send_raw(protocol::encode_header(bad_put)).ok());
  ASSERT_TRUE(fc->send_raw(put).ok());
  auto put_refused = recv_frame(*fc);
  ASSERT_TRUE(put_refused.ok());
  auto pe = error_of(*put_refused);
  EXPECT_EQ(put_refused->h.id, 8u);
  EXPECT_EQ(pe.code, static_cast<std::uint32_t>(ErrorCode::kCorrupt));
  EXPECT_EQ(pe.retry, static_cast<std::uint32_t>(RetryClass::kRetryCall));
  EXPECT_FALSE(fs::exists(root_ / "p.bin"));
  auto put_ok = call(*fc, header(FrameType::kPutFile, 8), put);
  ASSERT_TRUE(put_ok.ok());
  ASSERT_EQ(put_ok->h.type, FrameType::kAck) << describe(*put_ok);
  EXPECT_TRUE(read_local(root_ / "p.bin") == small);
}

// 2. A Hello whose credential does not prove the session's data token (or
// names no session, or is the bare token of the old protocol): refused with
// "invalid or expired data token", then the connection is closed.
TEST_F(ServerProtocol, WrongDataTokenIsRefusedAndClosed) {
  auto session = open_session(token());
  std::string wrong = session.data_token();
  wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
  protocol::Hello zero;
  const std::vector<std::pair<std::string, std::string>> credentials = {
      {"proof of another token",
       protocol::hello_credential(session.session_id(), wrong, zero.public_key, zero.nonce)},
      {"unknown session id", protocol::hello_credential("0123456789abcdef", session.data_token(),
                                                        zero.public_key, zero.nonce)},
      {"bare data token", session.data_token()},
      {"empty", ""},
      {"id without proof", session.session_id() + ":"},
  };
  for (const auto& [what, credential] : credentials) {
    SCOPED_TRACE(what);
    auto fc = dial(session);
    ASSERT_TRUE(fc);
    auto reply = raw_hello(*fc, credential, zero);
    ASSERT_TRUE(reply.ok()) << reply.error().message();
    auto e = error_of(*reply);
    EXPECT_EQ(reply->h.id, 0u);
    EXPECT_EQ(e.code, static_cast<std::uint32_t>(ErrorCode::kPermission)) << e.message;
    EXPECT_NE(e.message.find("invalid or expired data token"), std::string::npos) << e.message;
    expect_closed(*fc);
  }
  // A proof made for another nonce does not transfer to this Hello.
  {
    auto fc = dial(session);
    ASSERT_TRUE(fc);
    protocol::Hello other = zero;
    other.nonce[0] = 1;
    auto reply = raw_hello(*fc,
                           protocol::hello_credential(session.session_id(), session.data_token(),
                                                      zero.public_key, zero.nonce),
                           other);
    ASSERT_TRUE(reply.ok()) << reply.error().message();
    EXPECT_EQ(error_of(*reply).code, static_cast<std::uint32_t>(ErrorCode::kPermission));
    expect_closed(*fc);
  }
  // The session itself still works.
  EXPECT_TRUE(connected(session) != nullptr);
}

// 3. Something that is not an xfer client: closed without a word, and the
// server goes on serving.
TEST_F(ServerProtocol, GarbageInsteadOfMagicIsClosedAndServerKeepsServing) {
  auto session = open_session(token());
  auto fc = dial(session);
  ASSERT_TRUE(fc);
  const std::string garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(fc->send_raw(std::as_bytes(std::span(garbage))).ok());
  expect_closed(*fc);

  auto good = connected(session);
  ASSERT_TRUE(good);
  auto pong = call(*good, header(FrameType::kPing, 99));
  ASSERT_TRUE(pong.ok());
  EXPECT_EQ(pong->h.type, FrameType::kPong);
  EXPECT_EQ(pong->h.id, 99u);
}

// 4. A header whose header_check does not match: kError, then close (the
// stream cannot be re-framed).
TEST_F(ServerProtocol, DamagedHeaderIsAnErrorThenClose) {
  auto session = open_session(token());
  auto fc = connected(session);
  ASSERT_TRUE(fc);
  auto raw = protocol::encode_header(header(FrameType::kPing, 5));
  raw[36] ^= std::byte{0x01};  // header_check
  ASSERT_TRUE(fc->send_raw(raw).ok());
  auto reply = recv_frame(*fc);
  ASSERT_TRUE(reply.ok()) << reply.error().message();
  auto e = error_of(*reply);
  EXPECT_EQ(e.code, static_cast<std::uint32_t>(ErrorCode::kCorrupt)) << e.message;
  EXPECT_EQ(e.retry, static_cast<std::uint32_t>(RetryClass::kFatal)) << e.message;
  EXPECT_EQ(reply->h.id, 0u) << "the id of a damaged header is not trusted";
  expect_closed(*fc);
}

// 5. Data for a handle that was never opened: refused, payload drained, the
// stream stays usable.
TEST_F(ServerProtocol, DataForUnknownHandleIsRefusedAndStreamStaysInSync) {
  auto session = open_session(token());
  auto fc = connected(session);
  ASSERT_TRUE(fc);
  auto data = pattern(600'000, 3);  // more than one receive piece
  auto reply = call(*fc, header(FrameType::kData, 424242, 4096), data);
  ASSERT_TRUE(reply.ok()) << reply.error().message();
  auto e = error_of(*reply);
  EXPECT_EQ(reply->h.id, 424242u);
  EXPECT_EQ(reply->h.offset, 4096u);
  EXPECT_NE(e.message.find("unknown file handle"), std::string::npos) << e.message;
  auto commit = call(*fc, header(FrameType::kCommit, 424242));
  ASSERT_TRUE(commit.ok());
  EXPECT_EQ(commit->h.type, FrameType::kError) << describe(*commit);
  auto pong = call(*fc, header(FrameType::kPing, 17));
  ASSERT_TRUE(pong.ok()) << pong.error().message();
  EXPECT_EQ(pong->h.type, FrameType::kPong) << describe(*pong);
  EXPECT_EQ(pong->h.id, 17u);
  EXPECT_TRUE(fs::is_empty(root_));
}

// 6. Paths that escape the root or the token's prefix, and writes with a
// read-only token, are refused with kPermission; the connection goes on.
TEST_F(ServerProtocol, PathsOutsideRootOrTokenPrefixAreRefused) {
  fs::create_directories(root_ / "a");
  fs::create_directories(root_ / "b");
  auto session = open_session(token("/a"));
  auto fc = connected(session);
  ASSERT_TRUE(fc);
  std::uint64_t id = 1;
  for (const char* path : {"/../x", "/a/../../x", "/b/x", "/ab", "/x", "/", "/a/../b/x"}) {
    SCOPED_TRACE(path);
    auto reply = call(*fc, header(FrameType::kOpenWrite, id++), encode_open_write(path, 2 << 20));
    ASSERT_TRUE(reply.ok()) << reply.error().message();
    auto e = error_of(*reply);
    EXPECT_EQ(e.code, static_cast<std::uint32_t>(ErrorCode::kPermission)) << e.message;
    auto put = call(*fc, header(FrameType::kPutFile, id++), encode_put_file(path, pattern(10, 4)));
    ASSERT_TRUE(put.ok()) << put.error().message();
    auto pe = error_of(*put);
    EXPECT_EQ(pe.code, static_cast<std::uint32_t>(ErrorCode::kPermission)) << pe.message;
    protocol::OpenRead orq;
    orq.path = path;
    std::vector<std::byte> payload;
    protocol::encode(orq, payload);
    auto rd = call(*fc, header(FrameType::kOpenRead, id++), payload);
    ASSERT_TRUE(rd.ok()) << rd.error().message();
    auto re = error_of(*rd);
    EXPECT_EQ(re.code, static_cast<std::uint32_t>(ErrorCode::kPermission)) << re.message;
  }
  // Inside the prefix it works on the same connection.
  auto ok = call(*fc, header(FrameType::kPutFile, id++), encode_put_file("/a/in", pattern(10, 5)));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->h.type, FrameType::kAck) << describe(*ok);
  EXPECT_TRUE(fs::exists(root_ / "a" / "in"));
  EXPECT_FALSE(fs::exists(root_ / "x"));
  EXPECT_FALSE(fs::exists(base_ / "x"));
  EXPECT_TRUE(fs::is_empty(root_ / "b"));

  // A read-only token for the whole root may read but not write.
  auto ro_session = open_session(token("/", false));
  auto ro = connected(ro_session);
  ASSERT_TRUE(ro);
  auto refused = call(*ro, header(FrameType::kOpenWrite, 1), encode_open_write("/a/w", 2 << 20));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(error_of(*refused).code, static_cast<std::uint32_t>(ErrorCode::kPermission));
  auto put_refused =
      call(*ro, header(FrameType::kPutFile, 2), encode_put_file("/a/w", pattern(10, 6)));
  ASSERT_TRUE(put_refused.ok());
  EXPECT_EQ(error_of(*put_refused).code, static_cast<std::uint32_t>(ErrorCode::kPermission));
  protocol::OpenRead orq;
  orq.path = "/a/in";
  orq.inline_limit = 1024;
  std::vector<std::byte> payload;
  protocol::encode(orq, payload);
  auto rd = call(*ro, header(FrameType::kOpenRead, 3), payload);
  ASSERT_TRUE(rd.ok());
  EXPECT_EQ(rd->h.type, FrameType::kOpenOk) << describe(*rd);
  EXPECT_FALSE(fs::exists(root_ / "a" / "w"));
}

// 7. A session opened with encrypt = true: an unsealed Hello is refused; a
// sealed handshake works and sealed frames carry data.
TEST_F(ServerProtocol, SealedSessionRefusesPlainHelloAndCarriesSealedFrames) {
  auto session = open_session(token(), /*encrypt=*/true);
  ASSERT_TRUE(session.encrypt());
  {
    auto fc = dial(session);
    ASSERT_TRUE(fc);
    auto reply = plain_hello(*fc, session.session_id(), session.data_token());
    ASSERT_TRUE(reply.ok()) << reply.error().message();
    auto e = error_of(*reply);
    EXPECT_EQ(e.code, static_cast<std::uint32_t>(ErrorCode::kPermission));
    EXPECT_NE(e.message.find("requires sealed frames"), std::string::npos) << e.message;
    expect_closed(*fc);
  }
  auto fc = dial(session);
  ASSERT_TRUE(fc);
  auto reply = sealed_hello(*fc, session);
  ASSERT_TRUE(reply.ok()) << reply.error().message();
  ASSERT_EQ(reply->h.type, FrameType::kHelloOk) << describe(*reply);
  EXPECT_EQ(reply->h.flags & protocol::kFlagSealed, 0) << "HelloOk itself is never sealed";
  ASSERT_TRUE(fc->sealed());

  auto data = pattern(70'000, 7);
  auto put = call(*fc, header(FrameType::kPutFile, 1), encode_put_file("/sealed.bin", data));
  ASSERT_TRUE(put.ok()) << put.error().message();
  EXPECT_EQ(put->h.type, FrameType::kAck) << describe(*put);
  EXPECT_NE(put->h.flags & protocol::kFlagSealed, 0) << "replies are sealed";
  EXPECT_TRUE(read_local(root_ / "sealed.bin") == data);
  // Reading it back through the sealed channel.
  protocol::OpenRead orq;
  orq.path = "/sealed.bin";
  orq.inline_limit = 1 << 20;
  std::vector<std::byte> rp;
  protocol::encode(orq, rp);
  auto rd = call(*fc, header(FrameType::kOpenRead, 2), rp);
  ASSERT_TRUE(rd.ok()) << rd.error().message();
  ASSERT_EQ(rd->h.type, FrameType::kOpenOk) << describe(*rd);
  auto r = protocol::decode_open_reply(rd->body);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->inline_data == data);
}

// 7b. On a sealed connection, a frame whose tag does not verify ends the
// connection; docs/protocol.md ("A bad frame"): the receiver sends one ERROR
// frame (code 12 corrupt, retry 2 fatal, sealed) and closes.
TEST_F(ServerProtocol, SealedFrameWithBadTagIsAnErrorThenClose) {
  auto session = open_session(token(), /*encrypt=*/true);
  auto fc = dial(session);
  ASSERT_TRUE(fc);
  auto pair = protocol::KeyPair::generate();
  ASSERT_TRUE(pair.ok());
  protocol::Hello hello;
  hello.flags = 1;
  hello.public_key = pair->public_key();
  ASSERT_TRUE(protocol::random_bytes(hello.nonce).ok());
  auto reply = raw_hello(*fc,
                         protocol::hello_credential(session.session_id(), session.data_token(),
                                                    hello.public_key, hello.nonce),
                         hello);
  ASSERT_TRUE(reply.ok());
  ASSERT_EQ(reply->h.type, FrameType::kHelloOk) << describe(*reply);
  auto ok = protocol::decode_hello_ok(reply->body);
  ASSERT_TRUE(ok.ok());
  auto shared = pair->agree(std::span<const std::uint8_t, 32>(ok->public_key));
  ASSERT_TRUE(shared.ok());
  auto keys = protocol::derive_keys(*shared, session.data_token(), hello.nonce, ok->nonce);
  ASSERT_TRUE(keys.ok());
  // A sealed PutFile built by hand with a damaged ciphertext byte.
  auto sealer = protocol::FrameCipher::create(keys->client_to_server);
  ASSERT_TRUE(sealer.ok());
  auto put = encode_put_file("/tampered.bin", pattern(1000, 8));
  FrameHeader h = header(FrameType::kPutFile, 3);
  h.flags = protocol::kFlagSealed;
  h.length = static_cast<std::uint32_t>(put.size() + protocol::kTagSize);
  auto hdr = protocol::encode_header(h);
  std::array<std::byte, protocol::kTagSize> tag;
  ASSERT_TRUE(sealer->seal(hdr, put, tag).ok());
  put[10] ^= std::byte{0x80};
  ASSERT_TRUE(fc->send_raw(hdr).ok());
  ASSERT_TRUE(fc->send_raw(put).ok());
  ASSERT_TRUE(fc->send_raw(tag).ok());
  // What comes back is sealed with the server->client key.
  auto recv = protocol::FrameCipher::create(keys->server_to_client);
  auto send = protocol::FrameCipher::create(keys->client_to_server);
  ASSERT_TRUE(send.ok() && recv.ok());
  fc->enable_sealing(std::move(*send), std::move(*recv));
  auto answer = recv_frame(*fc);
  ASSERT_TRUE(answer.ok()) << "no ERROR frame before the close: " << answer.error().message();
  auto e = error_of(*answer);
  EXPECT_EQ(e.code, static_cast<std::uint32_t>(ErrorCode::kCorrupt)) << e.message;
  EXPECT_EQ(e.retry, static_cast<std::uint32_t>(RetryClass::kFatal)) << e.message;
  expect_closed(*fc);
  EXPECT_FALSE(fs::exists(root_ / "tampered.bin"));
}

// 8. The client vanishes with a non-resumable file open: its temporary is
// removed (no hidden file, no open descriptor below the root) within 2 s.
TEST_F(ServerProtocol, DisconnectWithOpenWriteHandleLeavesNoTemporary) {
  auto session = open_session(token());
  {
    auto fc = connected(session);
    ASSERT_TRUE(fc);
    auto data = pattern(1 << 20, 9);
    auto open =
        call(*fc, header(FrameType::kOpenWrite, 1), encode_open_write("/gone.bin", 4u << 20));
    ASSERT_TRUE(open.ok());
    ASSERT_EQ(open->h.type, FrameType::kOpenOk) << describe(*open);
    auto ack = call(*fc, header(FrameType::kData, 1, 0), data);
    ASSERT_TRUE(ack.ok());
    ASSERT_EQ(ack->h.type, FrameType::kAck) << describe(*ack);
    EXPECT_FALSE(open_files_below_root().empty() && hidden_entries().empty())
        << "the open file left no trace at all (test cannot see it)";
  }  // socket closed, no commit, no abort
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < deadline &&
         (!hidden_entries().empty() || !open_files_below_root().empty())) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto hidden = hidden_entries();
  EXPECT_TRUE(hidden.empty()) << "left behind: " << (hidden.empty() ? "" : hidden[0]);
  auto open_files = open_files_below_root();
  EXPECT_TRUE(open_files.empty()) << "still open: " << (open_files.empty() ? "" : open_files[0]);
  EXPECT_TRUE(fs::is_empty(root_));
}

// 8b. The same with a resumable file: its partial survives the disconnect
// and a new session resumes it.
TEST_F(ServerProtocol, DisconnectWithResumableHandleKeepsThePartial) {
  auto data = pattern(3 << 20, 10);
  {
    auto session = open_session(token());
    auto fc = connected(session);
    ASSERT_TRUE(fc);
    auto open = call(*fc, header(FrameType::kOpenWrite, 1),
                     encode_open_write("/part.bin", data.size(), "job-1"));
    ASSERT_TRUE(open.ok());
    ASSERT_EQ(open->h.type, FrameType::kOpenOk) << describe(*open);
    auto ack = call(*fc, header(FrameType::kData, 1, 0), {data.data(), 1 << 20});
    ASSERT_TRUE(ack.ok());
    ASSERT_EQ(ack->h.type, FrameType::kAck) << describe(*ack);
  }
  // Give the server the time to notice the close.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < deadline && !open_files_below_root().empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(hidden_entries().size(), 1u) << "the resumable partial is kept";
  EXPECT_FALSE(fs::exists(root_ / "part.bin"));

  auto session = open_session(token());
  auto fc = connected(session);
  ASSERT_TRUE(fc);
  auto open = call(*fc, header(FrameType::kOpenWrite, 1),
                   encode_open_write("/part.bin", data.size(), "job-1", /*resume_existing=*/4));
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->h.type, FrameType::kOpenOk) << describe(*open);
  auto reply = protocol::decode_open_reply(open->body);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->flags & 1u, 1u) << "resumed";
  auto ack = call(*fc, header(FrameType::kData, 1, 1 << 20),
                  {data.data() + (1 << 20), data.size() - (1 << 20)});
  ASSERT_TRUE(ack.ok());
  ASSERT_EQ(ack->h.type, FrameType::kAck) << describe(*ack);
  auto commit = call(*fc, header(FrameType::kCommit, 1));
  ASSERT_TRUE(commit.ok());
  ASSERT_EQ(commit->h.type, FrameType::kAck) << describe(*commit);
  EXPECT_TRUE(read_local(root_ / "part.bin") == data);
  EXPECT_TRUE(hidden_entries().empty());
}

// Two servers in one process keep their own state: each one's jobs reach
// its own root through its own backend registry (no process-wide registry
// whose "xferd" scheme the second server would take over).
TEST_F(ServerProtocol, TwoServersInOneProcessRunTheirOwnJobs) {
  const fs::path other_base = base_ / "other";
  fs::create_directories(other_base / "root");
  fs::create_directories(other_base / "state");
  ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.data_listen = {"127.0.0.1:0"};
  config.root = fs::canonical(other_base / "root").string();
  config.state_dir = (other_base / "state").string();
  config.secret = kSecret;
  config.auth_required = true;
  auto started = Server::start(config);
  ASSERT_TRUE(started.ok()) << started.error().message();
  std::unique_ptr<Server> other = std::move(*started);
  auto other_stub = v1::Xfer::NewStub(
      grpc::CreateChannel(other->control_address(), grpc::InsecureChannelCredentials()));
  {
    std::ofstream(root_ / "a.txt") << "first server";
    std::ofstream(other_base / "root" / "a.txt") << "second server";
  }
  std::vector<std::pair<v1::Xfer::Stub*, std::string>> jobs;
  for (v1::Xfer::Stub* stub : {stub_.get(), other_stub.get()}) {
    v1::JobRequest req;
    req.add_sources("/a.txt");
    req.set_destination("/b.txt");
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token());
    v1::JobAccepted acc;
    grpc::Status st = stub->SubmitJob(&ctx, req, &acc);
    ASSERT_TRUE(st.ok()) << st.error_message();
    jobs.emplace_back(stub, acc.job_id());
  }
  for (auto& [stub, id] : jobs) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token());
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::JobId jid;
    jid.set_job_id(id);
    auto reader = stub->WatchJob(&ctx, jid);
    v1::JobProgress p, last;
    while (reader->Read(&p)) last = p;
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(last.state(), "done") << last.message();
  }
  auto read = [](const fs::path& f) {
    std::ifstream in(f);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(read(root_ / "b.txt"), "first server");
  EXPECT_EQ(read(other_base / "root" / "b.txt"), "second server");
  other_stub.reset();
  other->shutdown(1);
}

}  // namespace
}  // namespace xfer::server
