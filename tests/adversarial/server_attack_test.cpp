// The adversarial suite against a real xferd (docs/server.md, "Threat
// model"): one test per attack found in the review of the server, each
// speaking raw frames or raw gRPC like an attacker would, and asserting
// what a user would check afterwards — nothing read, written, created or
// deleted outside the root or the token's prefix; the attacked resource
// still serving an honest client; descriptors, threads and memory within
// the documented bounds.

#include <arpa/inet.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "peer.hpp"
#include "xferd_harness.hpp"

namespace xfer_adv {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using xfer_it::RunResult;
using xfer_it::XferdOptions;
using xfer_it::XferdProcess;

#define EXPECT_EXIT_CODE(res, code) EXPECT_EQ((res).exit_code, (code)) << (res).describe()

std::string S(const fs::path& p) {
  return p.string();
}

class Attack : public xfer_it::XferTest {
 protected:
  void SetUp() override {
    XferTest::SetUp();
    if (HasFatalFailure()) return;
    // A server that closes while a frame is being written must not kill
    // the test (the write fails with EPIPE instead).
    ::signal(SIGPIPE, SIG_IGN);
    ASSERT_FALSE(xfer_it::xferd_bin().empty()) << "XFERD_BIN is not set";
    ::unsetenv("XFER_TOKEN");
  }

  XferdProcess* start_server(const std::string& name = "srv", XferdOptions opt = {}) {
    servers_.push_back(std::make_unique<XferdProcess>(tmp() / name, std::move(opt)));
    XferdProcess* s = servers_.back().get();
    auto r = s->start();
    if (!r) {
      ADD_FAILURE() << r.message();
      return nullptr;
    }
    return s;
  }

  static Peer peer(const XferdProcess& s) { return Peer(s.control_address(), s.data_address()); }

  // A folder beside the root that no request may reach; tests check it is
  // exactly as they left it.
  fs::path outside(const XferdProcess& s) {
    fs::path o = s.dir() / "outside";
    fs::create_directories(o);
    return o;
  }

  std::vector<std::unique_ptr<XferdProcess>> servers_;
};

// ------------------------------------------------------ 1. names and paths

// The resume name of OPEN_WRITE becomes part of a hidden file name: '/',
// '..' or anything but an identifier is refused, and nothing appears
// outside the token's prefix.
TEST_F(Attack, ResumeNamesCannotLeaveTheFolder) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  fs::path out = outside(*srv);
  fs::create_directories(srv->root() / "in" / "alice");
  fs::create_directories(srv->root() / "in" / "bob");
  Peer p = peer(*srv);
  v1::Session session;
  auto fc = p.session_connection(srv->token("/in/alice", true), &session);
  ASSERT_NE(fc, nullptr);
  std::uint64_t id = 1;
  for (const std::string bad :
       std::vector<std::string>{"../../bob/x", "a/b", "..", "../../../outside/x", "x\ny",
                                std::string(65, 'a'), std::string("a\0b", 3), "-"}) {
    SCOPED_TRACE(xfer_it::icontains(bad, "\n") ? "newline" : bad);
    auto r = Peer::call(*fc, header(FrameType::kOpenWrite, id++),
                        open_write("/in/alice/f", 100, bad, 4));
    ASSERT_TRUE(r.ok()) << r.error().message();
    if (bad == "-") {
      // A valid identifier: accepted, the partial stays beside the target.
      EXPECT_EQ(r->h.type, FrameType::kOpenOk) << error_text(*r);
      continue;
    }
    ASSERT_EQ(r->h.type, FrameType::kError);
    // Refused by the name check, or (a NUL byte) already by the frame decoder.
    EXPECT_TRUE(error_text(*r).find("invalid resume name") != std::string::npos ||
                error_text(*r).find("NUL byte") != std::string::npos)
        << error_text(*r);
  }
  fc.reset();
  EXPECT_TRUE(fs::is_empty(srv->root() / "in" / "bob"));
  EXPECT_TRUE(fs::is_empty(out));
  for (const auto& e : fs::recursive_directory_iterator(srv->root())) {
    EXPECT_EQ(e.path().filename().string().find(".."), std::string::npos) << e.path();
  }
}

// A symlink planted at a partial's hidden name (with the Symlink call the
// token allows) is never followed: not reopened, not truncated through.
TEST_F(Attack, PlantedSymlinkAtAPartialIsNeverFollowed) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  fs::path out = outside(*srv);
  xfer_it::write_file(out / "victim.txt", "precious");
  fs::create_directories(srv->root() / "in");
  const std::string tok = srv->token("/in", true);
  Peer p = peer(*srv);
  {
    v1::SymlinkRequest req;
    req.set_path("/in/.f.xfer-part-job1");
    req.set_target(S(out / "victim.txt"));
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    v1::Empty e;
    ASSERT_TRUE(p.stub().Symlink(&ctx, req, &e).ok());
  }
  v1::Session session;
  auto fc = p.session_connection(tok, &session);
  ASSERT_NE(fc, nullptr);
  // Reopen "as it is" (resume_existing): refused, the target untouched.
  auto r = Peer::call(*fc, header(FrameType::kOpenWrite, 1), open_write("/in/f", 8, "job1", 4));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->h.type, FrameType::kError);
  EXPECT_EQ(xfer_it::read_file(out / "victim.txt"), "precious");
  // A fresh partial under that name: the link is replaced, not written through.
  r = Peer::call(*fc, header(FrameType::kOpenWrite, 2), open_write("/in/f", 8, "job1", 0));
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_EQ(r->h.type, FrameType::kOpenOk) << error_text(*r);
  auto w = Peer::call(*fc, header(FrameType::kData, 2, 0), bytes_of("hijacked"));
  ASSERT_TRUE(w.ok());
  auto c = Peer::call(*fc, header(FrameType::kCommit, 2));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->h.type, FrameType::kAck) << error_text(*c);
  EXPECT_EQ(xfer_it::read_file(out / "victim.txt"), "precious");
  EXPECT_EQ(xfer_it::read_file(srv->root() / "in" / "f"), "hijacked");
}

// A job id becomes a folder under the state directory: through the failed
// job's clean-up, a job id with '..' once deleted an arbitrary folder.
TEST_F(Attack, JobIdsCannotNameFoldersOutsideTheStateDir) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  fs::path out = outside(*srv);
  xfer_it::write_file(out / "keep.txt", "keep");
  xfer_it::write_file(srv->root() / "a.txt", "a");
  Peer p = peer(*srv);
  const std::string tok = srv->token("/", true);
  // "../../outside" from <state>/jobs is the folder beside the root.
  for (const std::string bad :
       std::vector<std::string>{"../../outside", "../../../" + S(out), "a/b", "..", "x y"}) {
    v1::JobRequest req;
    req.add_sources("/a.txt");
    req.set_destination("/missing/b.txt");  // the job fails and cleans up
    req.mutable_options()->set_job_id(bad);
    req.mutable_options()->set_checkpoint(true);
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    v1::JobAccepted acc;
    grpc::Status st = p.stub().SubmitJob(&ctx, req, &acc);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    if (!st.ok()) continue;
    v1::JobId jid;  // an accepted job: let it finish before looking
    jid.set_job_id(acc.job_id());
    grpc::ClientContext wctx;
    Peer::prepare(wctx, tok);
    auto reader = p.stub().WatchJob(&wctx, jid);
    v1::JobProgress prog;
    while (reader->Read(&prog)) {
    }
  }
  // WatchJob / CancelJob with such ids: not found, nothing touched.
  for (const std::string bad : {"../../outside", "/etc"}) {
    v1::JobId id;
    id.set_job_id(bad);
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    v1::Empty e;
    EXPECT_EQ(p.stub().CancelJob(&ctx, id, &e).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_TRUE(fs::exists(out / "keep.txt")) << "a job deleted the folder beside the root";
  EXPECT_FALSE(fs::exists(srv->root() / "missing"));
}

// The scope is checked on the same resolution the operation uses: racing a
// symlink into a folder while writing through it never lands a file in
// another user's prefix.
TEST_F(Attack, RacingASymlinkSwapCannotLeaveThePrefix) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  fs::create_directories(srv->root() / "in" / "alice" / "d");
  fs::create_directories(srv->root() / "in" / "bob");
  const std::string tok = srv->token("/in/alice", true);
  Peer p = peer(*srv);
  std::atomic<bool> stop{false};
  std::thread swapper([&] {
    // Alternates d between a folder and a link to bob's folder, as fast as
    // the control channel allows (bounded in time by the writer).
    Peer q = peer(*srv);
    while (!stop.load()) {
      auto unary = [&](auto method, const auto& req) {
        grpc::ClientContext ctx;
        Peer::prepare(ctx, tok);
        v1::Empty e;
        (void)(q.stub().*method)(&ctx, req, &e);
      };
      v1::RenameRequest away;
      away.set_from("/in/alice/d");
      away.set_to("/in/alice/d.real");
      unary(&v1::Xfer::Stub::Rename, away);
      v1::SymlinkRequest link;
      link.set_path("/in/alice/d");
      link.set_target("../bob");
      unary(&v1::Xfer::Stub::Symlink, link);
      v1::RemoveRequest rm;
      rm.set_path("/in/alice/d");
      unary(&v1::Xfer::Stub::Remove, rm);
      v1::RenameRequest back;
      back.set_from("/in/alice/d.real");
      back.set_to("/in/alice/d");
      unary(&v1::Xfer::Stub::Rename, back);
    }
  });
  v1::Session session;
  auto fc = p.session_connection(tok, &session);
  ASSERT_NE(fc, nullptr);
  int accepted = 0;
  const auto until = Clock::now() + 3s;
  for (std::uint64_t i = 1; Clock::now() < until; ++i) {
    auto r = Peer::call(*fc, header(FrameType::kPutFile, i),
                        put_file("/in/alice/d/f" + std::to_string(i), "x"));
    ASSERT_TRUE(r.ok()) << r.error().message();
    accepted += r->h.type == FrameType::kAck;
  }
  stop.store(true);
  swapper.join();
  EXPECT_TRUE(fs::is_empty(srv->root() / "in" / "bob")) << "a write landed in bob's folder";
  RecordProperty("accepted", accepted);
}

// ------------------------------------------ 2. descriptors and handshakes

// One deadline for the whole handshake: a byte every half second does not
// keep the connection.
TEST_F(Attack, SlowHandshakeIsCutAtItsDeadline) {
  XferdOptions o;
  o.extra_toml = "[limits]\nhandshake_seconds = 2\n";
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  int fd = tcp_connect(srv->data_address());
  ASSERT_GE(fd, 0);
  const std::string magic = "XFERDATA";
  const auto t0 = Clock::now();
  bool closed = false;
  for (std::size_t i = 0; i < 40 && !closed; ++i) {
    const char c = magic[i % magic.size()];
    if (::send(fd, &c, 1, MSG_NOSIGNAL) != 1) closed = true;
    closed = closed || closed_by_peer(fd, Clock::now() + 500ms);
  }
  ::close(fd);
  EXPECT_TRUE(closed) << "a connection trickling one byte every 0.5 s was kept for 20 s";
  EXPECT_LT(Clock::now() - t0, 15s);
  EXPECT_NE(srv->log().find("handshake not finished in time"), std::string::npos) << srv->log();
}

// Connections that never authenticate cannot take every slot: the oldest
// handshakes are evicted and each address is capped, so an honest client
// still gets through during the flood.
TEST_F(Attack, HandshakeFloodDoesNotLockOutHonestClients) {
  XferdOptions o;
  o.extra_toml =
      "[limits]\nmax_unauthenticated = 16\nmax_unauthenticated_per_address = 4\n"
      "handshake_seconds = 30\n";
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  std::vector<int> flood;
  for (int i = 0; i < 120; ++i) {
    int fd = tcp_connect(srv->data_address(), "127.0.0." + std::to_string(2 + i % 30));
    if (fd >= 0) flood.push_back(fd);
  }
  ASSERT_GE(flood.size(), 100u);
  fs::path f = tmp() / "honest.bin";
  xfer_it::write_random_file(f, 7, 3u << 20);
  auto up = xfer_it::run_xfer(
      {"--token", srv->token(), "transfer", "--no-progress", S(f), srv->url("/honest.bin")}, 60s);
  EXPECT_EXIT_CODE(up, 0);
  EXPECT_TRUE(xfer_it::compare_trees(f, srv->root() / "honest.bin"));
  // At most max_unauthenticated of the flood is still held by the server.
  int held = 0;
  for (int fd : flood) {
    held += closed_by_peer(fd, Clock::now() + 10ms) ? 0 : 1;
    ::close(fd);
  }
  EXPECT_LE(held, 16);
}

// Out of descriptors: the data channel refuses what it cannot hold (its
// share of RLIMIT_NOFILE), the control channel keeps serving, and both work
// normally once the flood is gone.
TEST_F(Attack, DescriptorFloodLeavesTheControlChannelServing) {
  XferdOptions o;
  o.rlimit_nofile = 256;
  o.extra_toml =
      "[limits]\nmax_unauthenticated_per_address = 1000\nmax_unauthenticated = 1000\n"
      "max_connections_per_address = 1000\nhandshake_seconds = 60\n";
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  std::vector<int> flood;
  for (int i = 0; i < 400; ++i) {
    int fd = tcp_connect(srv->data_address(), "127.0.1." + std::to_string(1 + i % 200));
    if (fd >= 0) flood.push_back(fd);
  }
  std::this_thread::sleep_for(300ms);  // let the acceptor admit what it can
  const ProcFigures during = proc_figures(srv->pid());
  EXPECT_LT(during.fds, 256u);
  // The control channel answers during the flood.
  Peer p = peer(*srv);
  const std::string tok = srv->token();
  for (int i = 0; i < 5; ++i) {
    v1::PathRequest req;
    req.set_path("/");
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    v1::FileAttrs a;
    grpc::Status st = p.stub().Stat(&ctx, req, &a);
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
  for (int fd : flood) ::close(fd);
  fs::path f = tmp() / "after.bin";
  xfer_it::write_random_file(f, 8, 2u << 20);
  RunResult up;
  // The server reaps the closed connections within a watchdog tick.
  for (int attempt = 0; attempt < 20; ++attempt) {
    up = xfer_it::run_xfer(
        {"--token", tok, "transfer", "--no-progress", S(f), srv->url("/after.bin")}, 60s);
    if (up.exit_code == 0) break;
    std::this_thread::sleep_for(250ms);
  }
  EXPECT_EXIT_CODE(up, 0);
  EXPECT_TRUE(xfer_it::compare_trees(f, srv->root() / "after.bin"));
  EXPECT_TRUE(srv->alive()) << srv->log();
}

// ------------------------------------------------ 3. per-token exhaustion

TEST_F(Attack, HandlesPerSessionAreCapped) {
  XferdOptions o;
  o.extra_toml = "[limits]\nmax_handles_per_session = 16\n";
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  v1::Session session;
  auto fc = p.session_connection(srv->token("/", true, 3600, "mallory"), &session);
  ASSERT_NE(fc, nullptr);
  int opened = 0;
  std::string refusal;
  for (std::uint64_t i = 1; i <= 40; ++i) {
    auto r = Peer::call(*fc, header(FrameType::kOpenWrite, i),
                        open_write("/f" + std::to_string(i), 10 << 20));
    ASSERT_TRUE(r.ok());
    if (r->h.type == FrameType::kOpenOk) {
      ++opened;
    } else if (refusal.empty()) {
      refusal = error_text(*r);
    }
  }
  EXPECT_EQ(opened, 16);
  EXPECT_NE(refusal.find("files open"), std::string::npos) << refusal;
  // Another user is not affected.
  fs::path f = tmp() / "other.bin";
  xfer_it::write_random_file(f, 9, 9u << 20);
  auto up = xfer_it::run_xfer({"--token", srv->token("/", true, 3600, "alice"), "transfer",
                               "--no-progress", S(f), srv->url("/other.bin")},
                              60s);
  EXPECT_EXIT_CODE(up, 0);
}

// READ is clamped to what the file has and, when buffered, to the
// connection's buffer: 8 connections asking 64 MiB each cannot make the
// server allocate 512 MiB.
TEST_F(Attack, HugeReadsAreClampedToTheFileAndTheBuffer) {
  XferdOptions o;
  o.extra_toml = "[limits]\nconnection_buffer_kib = 1024\n";
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  xfer_it::write_file(srv->root() / "small.txt", "fifteen bytes!!");
  xfer_it::write_random_file(srv->root() / "big.bin", 3, 64u << 20);
  Peer p = peer(*srv);
  grpc::Status st;
  auto session = p.open_session(srv->token(), false, &st, 16);
  ASSERT_TRUE(st.ok());
  const ProcFigures before = proc_figures(srv->pid());
  std::vector<std::unique_ptr<FrameConn>> conns;
  for (int i = 0; i < 8; ++i) {
    conns.push_back(p.connected(session));
    ASSERT_NE(conns.back(), nullptr);
  }
  auto r = Peer::call(*conns[0], header(FrameType::kOpenRead, 1), open_read("/small.txt"));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->h.type, FrameType::kOpenOk) << error_text(*r);
  r = Peer::call(*conns[0], header(FrameType::kRead, 1, 0, 64u << 20));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->h.aux, 15u);
  EXPECT_EQ(r->body.size(), 15u);
  for (std::uint64_t i = 0; i < conns.size(); ++i) {
    auto o2 = Peer::call(*conns[i], header(FrameType::kOpenRead, 10 + i), open_read("/big.bin"));
    ASSERT_TRUE(o2.ok());
    ASSERT_EQ(o2->h.type, FrameType::kOpenOk) << error_text(*o2);
    auto rd = Peer::call(*conns[i], header(FrameType::kRead, 10 + i, 0, 64u << 20));
    ASSERT_TRUE(rd.ok()) << rd.error().message();
    EXPECT_EQ(rd->h.type, FrameType::kData);
    EXPECT_LE(rd->body.size(), 1u << 20);
    EXPECT_GT(rd->body.size(), 0u);
  }
  const ProcFigures after = proc_figures(srv->pid());
  // 8 connections x (1 MiB buffer + 512 KiB receive piece) plus slack.
  EXPECT_LT(after.hwm_kib, before.rss_kib + 8 * 1536 + 32 * 1024)
      << "before " << before.rss_kib << " KiB, peak " << after.hwm_kib << " KiB";
}

// Sealed frames are authenticated whole, so they are bounded by the
// connection's buffer (the session says so in max_payload): a 48 MiB sealed
// DATA frame is refused before it is buffered.
TEST_F(Attack, OversizedSealedFrameIsRefusedUnbuffered) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  grpc::Status st;
  auto session = p.open_session(srv->token(), true, &st);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(session.max_payload(), 4u << 20);
  auto fc = p.connected(session, /*sealed=*/true);
  ASSERT_NE(fc, nullptr);
  auto o2 = Peer::call(*fc, header(FrameType::kOpenWrite, 1), open_write("/big", 64u << 20));
  ASSERT_TRUE(o2.ok());
  ASSERT_EQ(o2->h.type, FrameType::kOpenOk) << error_text(*o2);
  const ProcFigures before = proc_figures(srv->pid());
  std::vector<std::byte> big(48u << 20, std::byte{7});
  auto w = Peer::call(*fc, header(FrameType::kData, 1, 0), big);
  // Either the ERROR arrives or the server closed before reading it all.
  if (w.ok()) {
    EXPECT_EQ(w->h.type, FrameType::kError);
    EXPECT_NE(error_text(*w).find("larger than this server accepts"), std::string::npos)
        << error_text(*w);
  }
  const ProcFigures after = proc_figures(srv->pid());
  EXPECT_LT(after.hwm_kib, before.hwm_kib + 24 * 1024) << "the frame was buffered";
  EXPECT_FALSE(fs::exists(srv->root() / "big"));
}

TEST_F(Attack, SessionsAreLimitedPerSubject) {
  XferdOptions o;
  o.extra_toml = "[limits]\nmax_sessions_per_subject = 3\n";
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  const std::string mallory = srv->token("/", true, 3600, "mallory");
  grpc::Status st;
  for (int i = 0; i < 3; ++i) {
    p.open_session(mallory, false, &st);
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
  p.open_session(mallory, false, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(st.error_message().find("mallory"), std::string::npos) << st.error_message();
  // A delegated token keeps its subject: no way around the limit.
  v1::IssueTokenRequest ireq;
  ireq.set_prefix("/");
  ireq.set_write(true);
  ireq.set_subject("someone-else");
  v1::IssuedToken issued;
  {
    grpc::ClientContext ctx;
    Peer::prepare(ctx, mallory);
    ASSERT_TRUE(p.stub().IssueToken(&ctx, ireq, &issued).ok());
  }
  p.open_session(issued.token(), false, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  // Another subject still gets a session.
  p.open_session(srv->token("/", true, 3600, "alice"), false, &st);
  EXPECT_TRUE(st.ok()) << st.error_message();
}

// --------------------------------------------------------------- 4. modes

TEST_F(Attack, SetuidAndSetgidBitsAreDropped) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  const std::string tok = srv->token();
  v1::Session session;
  auto fc = p.session_connection(tok, &session);
  ASSERT_NE(fc, nullptr);
  auto r =
      Peer::call(*fc, header(FrameType::kPutFile, 1), put_file("/suid", "#!/bin/sh\nid\n", 04755));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->h.type, FrameType::kAck) << error_text(*r);
  EXPECT_EQ(xfer_it::get_mode(srv->root() / "suid"), 0755u);
  r = Peer::call(*fc, header(FrameType::kOpenWrite, 2), open_write("/sgid", 1, {}, 0, 02775));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->h.type, FrameType::kOpenOk);
  ASSERT_TRUE(Peer::call(*fc, header(FrameType::kData, 2, 0), bytes_of("x")).ok());
  ASSERT_TRUE(Peer::call(*fc, header(FrameType::kCommit, 2)).ok());
  EXPECT_EQ(xfer_it::get_mode(srv->root() / "sgid"), 0775u);
  v1::SetAttrsRequest sa;
  sa.set_path("/suid");
  sa.mutable_attrs()->set_mode(06755);
  sa.mutable_attrs()->set_mtime_ns(1'600'000'000'000'000'000LL);
  grpc::ClientContext ctx;
  Peer::prepare(ctx, tok);
  v1::Empty e;
  ASSERT_TRUE(p.stub().SetAttrs(&ctx, sa, &e).ok());
  EXPECT_EQ(xfer_it::get_mode(srv->root() / "suid"), 0755u);
  v1::MkdirRequest mk;
  mk.set_path("/sticky");
  {
    grpc::ClientContext c2;
    Peer::prepare(c2, tok);
    ASSERT_TRUE(p.stub().Mkdir(&c2, mk, &e).ok());
  }
  sa.set_path("/sticky");
  sa.mutable_attrs()->set_type(v1::ENTRY_DIRECTORY);
  sa.mutable_attrs()->set_mode(01777);
  {
    grpc::ClientContext c3;
    Peer::prepare(c3, tok);
    ASSERT_TRUE(p.stub().SetAttrs(&c3, sa, &e).ok());
  }
  EXPECT_EQ(xfer_it::get_mode(srv->root() / "sticky"), 0777u);
}

TEST_F(Attack, SpecialBitsAreKeptOnlyWhenTheConfigAllowsThem) {
  XferdOptions o;
  o.extra_toml = "";
  o.server_extra = "allow_special_bits = true\n";
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  v1::Session session;
  auto fc = p.session_connection(srv->token(), &session);
  ASSERT_NE(fc, nullptr);
  auto r = Peer::call(*fc, header(FrameType::kPutFile, 1), put_file("/suid", "x", 04755));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->h.type, FrameType::kAck) << error_text(*r);
  EXPECT_EQ(xfer_it::get_mode(srv->root() / "suid"), 04755u);
}

// ---------------------------------------------------------------- 5. jobs

TEST_F(Attack, JobsAreVisibleOnlyToTheirSubject) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  xfer_it::write_random_file(srv->root() / "a.bin", 4, 64u << 20);
  Peer p = peer(*srv);
  const std::string alice = srv->token("/", true, 3600, "alice");
  const std::string mallory = srv->token("/", true, 3600, "mallory");
  v1::JobRequest req;
  req.add_sources("/a.bin");
  req.set_destination("/b.bin");
  req.mutable_options()->set_bwlimit(8u << 20);  // keeps it running for a while
  v1::JobAccepted acc;
  {
    grpc::ClientContext ctx;
    Peer::prepare(ctx, alice);
    grpc::Status st = p.stub().SubmitJob(&ctx, req, &acc);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  v1::JobId id;
  id.set_job_id(acc.job_id());
  {
    grpc::ClientContext ctx;
    Peer::prepare(ctx, mallory);
    v1::Empty e;
    EXPECT_EQ(p.stub().CancelJob(&ctx, id, &e).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    Peer::prepare(ctx, mallory);
    auto reader = p.stub().WatchJob(&ctx, id);
    v1::JobProgress prog;
    EXPECT_FALSE(reader->Read(&prog));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // The owner can still cancel it: mallory's attempt did nothing.
  {
    grpc::ClientContext ctx;
    Peer::prepare(ctx, alice);
    auto reader = p.stub().WatchJob(&ctx, id);
    v1::JobProgress prog;
    ASSERT_TRUE(reader->Read(&prog));
    EXPECT_EQ(prog.state(), "running");
    grpc::ClientContext c2;
    Peer::prepare(c2, alice);
    v1::Empty e;
    EXPECT_TRUE(p.stub().CancelJob(&c2, id, &e).ok());
    while (reader->Read(&prog)) {
    }
    EXPECT_EQ(prog.state(), "cancelled");
  }
}

// A job only goes to the peers the configuration lists, and with only the
// credentials the request carries: the server never lends its own.
TEST_F(Attack, JobsGoOnlyToListedPeersWithTheRequestsCredentials) {
  XferdProcess* b = start_server("B");
  ASSERT_NE(b, nullptr);
  // A listener nobody lists: the server must not even connect to it.
  int trap = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT_GE(trap, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  ASSERT_EQ(::bind(trap, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(::listen(trap, 8), 0);
  ASSERT_EQ(::getsockname(trap, reinterpret_cast<sockaddr*>(&sa), &len), 0);
  const int trap_port = ntohs(sa.sin_port);

  XferdOptions ao;
  ao.extra_toml = "[jobs]\npeers = [\"" + b->control_address() + "\"]\n";
  // The server's own environment holds a token B accepts: it must not be used.
  ao.env = {{"XFER_TOKEN", b->token()}};
  XferdProcess* a = start_server("A", ao);
  ASSERT_NE(a, nullptr);
  xfer_it::write_file(a->root() / "x.txt", "x");
  Peer p = peer(*a);
  const std::string tok = a->token();
  auto submit = [&](const std::string& dest, const std::string& dest_token, grpc::Status* st) {
    v1::JobRequest req;
    req.add_sources("/x.txt");
    req.set_destination(dest);
    req.set_destination_token(dest_token);
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    v1::JobAccepted acc;
    *st = p.stub().SubmitJob(&ctx, req, &acc);
    return acc.job_id();
  };
  grpc::Status st;
  submit("xfer://127.0.0.1:" + std::to_string(trap_port) + "/x.txt", "", &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("jobs.peers"), std::string::npos) << st.error_message();
  std::this_thread::sleep_for(200ms);
  EXPECT_LT(::accept(trap, nullptr, nullptr), 0) << "the server connected to an unlisted peer";
  ::close(trap);

  // A listed peer, no destination token: the job fails at B's door.
  const std::string id = submit(b->url("/x.txt"), "", &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  v1::JobId jid;
  jid.set_job_id(id);
  grpc::ClientContext ctx;
  Peer::prepare(ctx, tok);
  auto reader = p.stub().WatchJob(&ctx, jid);
  v1::JobProgress prog;
  while (reader->Read(&prog)) {
  }
  EXPECT_EQ(prog.state(), "failed") << prog.message();
  EXPECT_TRUE(xfer_it::icontains(prog.message(), "token")) << prog.message();
  EXPECT_FALSE(fs::exists(b->root() / "x.txt"));
}

TEST_F(Attack, FinishedJobsAreForgottenAndTheirThreadsJoined) {
  XferdOptions o;
  o.extra_toml = "[limits]\nmax_finished_jobs = 2\nmax_jobs_per_subject = 8\n";
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  xfer_it::write_file(srv->root() / "a.txt", "a");
  Peer p = peer(*srv);
  const std::string tok = srv->token();
  const ProcFigures idle = proc_figures(srv->pid());
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) {
    v1::JobRequest req;
    req.add_sources("/a.txt");
    req.set_destination("/missing-folder/x" + std::to_string(i) + "/a.txt");  // fails
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    v1::JobAccepted acc;
    grpc::Status st = p.stub().SubmitJob(&ctx, req, &acc);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ids.push_back(acc.job_id());
    // Wait for it to end so the next one is not refused by max_jobs.
    v1::JobId jid;
    jid.set_job_id(acc.job_id());
    grpc::ClientContext wctx;
    Peer::prepare(wctx, tok);
    auto reader = p.stub().WatchJob(&wctx, jid);
    v1::JobProgress prog;
    while (reader->Read(&prog)) {
    }
  }
  // The oldest are forgotten (NOT_FOUND), the last two remembered.
  auto found = [&](const std::string& id) {
    v1::JobId jid;
    jid.set_job_id(id);
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    auto reader = p.stub().WatchJob(&ctx, jid);
    v1::JobProgress prog;
    while (reader->Read(&prog)) {
    }
    return reader->Finish().ok();
  };
  EXPECT_FALSE(found(ids.front()));
  EXPECT_TRUE(found(ids.back()));
  const ProcFigures after = proc_figures(srv->pid());
  EXPECT_LE(after.threads, idle.threads + 4) << "threads of finished jobs were not reclaimed";
}

// ------------------------------------------------------------ 6. sessions

TEST_F(Attack, SessionsEndWithTheirToken) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  grpc::Status st;
  const std::string short_lived = srv->token("/", true, 3);
  auto session = p.open_session(short_lived, false, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto fc = p.connected(session);
  ASSERT_NE(fc, nullptr);
  // The open connection is closed within seconds of the token's expiry.
  bool closed = false;
  const auto until = Clock::now() + 15s;
  while (!closed && Clock::now() < until) {
    auto r = Peer::call(*fc, header(FrameType::kPing, 1));
    closed = !r.ok();
    if (!closed) std::this_thread::sleep_for(500ms);
  }
  EXPECT_TRUE(closed) << "a data connection outlived its token by 12 s";
  // And the session takes no new connection.
  auto again = p.dial();
  ASSERT_NE(again, nullptr);
  auto r = p.plain_hello(*again, session);
  if (r.ok()) EXPECT_EQ(r->h.type, FrameType::kError);
}

TEST_F(Attack, PlaintextHelloCannotBeReplayed) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  grpc::Status st;
  auto session = p.open_session(srv->token(), false, &st);
  ASSERT_TRUE(st.ok());
  std::array<std::uint8_t, 16> nonce{};
  nonce.fill(0x42);
  auto first = p.dial();
  auto r1 = p.plain_hello(*first, session, &nonce);
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(r1->h.type, FrameType::kHelloOk) << error_text(*r1);
  auto second = p.dial();
  auto r2 = p.plain_hello(*second, session, &nonce);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->h.type, FrameType::kError);
  EXPECT_NE(error_text(*r2).find("used already"), std::string::npos) << error_text(*r2);
}

// ------------------------------------------------------- 7. special files

TEST_F(Attack, FifoIsRefusedWithoutBlocking) {
  XferdOptions o;
  o.extra_toml = "[limits]\nhandshake_seconds = 2\n";
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  ASSERT_EQ(::mkfifo((srv->root() / "fifo").c_str(), 0644), 0);
  Peer p = peer(*srv);
  v1::Session session;
  auto fc = p.session_connection(srv->token(), &session);
  ASSERT_NE(fc, nullptr);
  // The connection's reads time out after 5 s: a blocked server fails here.
  auto r = Peer::call(*fc, header(FrameType::kOpenRead, 1), open_read("/fifo"));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->h.type, FrameType::kError);
  EXPECT_NE(error_text(*r).find("not a regular file"), std::string::npos) << error_text(*r);
  fc.reset();
  auto ex = srv->stop(10s);
  EXPECT_TRUE(ex.exited && ex.code == 0) << ex.describe();
  EXPECT_FALSE(ex.escalated);
}

// ---------------------------------------------------------------- 8. small

TEST_F(Attack, HugeResumableOpenReservesNoDisk) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  v1::Session session;
  auto fc = p.session_connection(srv->token(), &session);
  ASSERT_NE(fc, nullptr);
  auto r =
      Peer::call(*fc, header(FrameType::kOpenWrite, 1), open_write("/huge", 1ull << 40, "job1", 0));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->h.type, FrameType::kOpenOk) << error_text(*r);
  ASSERT_TRUE(Peer::call(*fc, header(FrameType::kSuspend, 1)).ok());
  struct stat sb {};
  ASSERT_EQ(::stat((srv->root() / ".huge.xfer-part-job1").c_str(), &sb), 0);
  EXPECT_EQ(sb.st_blocks, 0) << "the partial reserved " << sb.st_blocks * 512 << " bytes";
}

TEST_F(Attack, ErrorsNeverNameTheServersOwnPaths) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  fs::create_directories(srv->root() / "d");
  Peer p = peer(*srv);
  const std::string tok = srv->token();
  std::vector<std::string> messages;
  auto record = [&](const grpc::Status& s) { messages.push_back(s.error_message()); };
  v1::Empty e;
  {
    v1::MkdirRequest req;
    req.set_path("/d");
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    record(p.stub().Mkdir(&ctx, req, &e));
  }
  {
    v1::RemoveRequest req;
    req.set_path("/nope/x");
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    record(p.stub().Remove(&ctx, req, &e));
  }
  {
    v1::RenameRequest req;
    req.set_from("/missing");
    req.set_to("/d/x");
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    record(p.stub().Rename(&ctx, req, &e));
  }
  grpc::Status st;
  auto session = p.open_session(tok, false, &st);
  auto fc = p.connected(session);
  ASSERT_NE(fc, nullptr);
  auto r = Peer::call(*fc, header(FrameType::kOpenRead, 1), open_read("/d/none"));
  ASSERT_TRUE(r.ok());
  messages.push_back(error_text(*r));
  r = Peer::call(*fc, header(FrameType::kOpenWrite, 2), open_write("/no/such/dir/f", 3));
  ASSERT_TRUE(r.ok());
  messages.push_back(error_text(*r));
  for (const auto& m : messages) {
    EXPECT_FALSE(m.empty());
    EXPECT_EQ(m.find(S(srv->root())), std::string::npos) << m;
    EXPECT_EQ(m.find(S(srv->dir())), std::string::npos) << m;
  }
}

TEST_F(Attack, ShortSecretIsRefusedAtStart) {
  XferdOptions o;
  o.secret = "short-secret";
  XferdProcess srv(tmp() / "short", o);
  auto r = srv.start(5s);
  EXPECT_FALSE(r);
  EXPECT_NE(srv.log().find("at least 32 are required"), std::string::npos) << srv.log();
}

// No SO_REUSEPORT: another local process cannot bind the server's ports
// beside it to take a share of the connections.
TEST_F(Attack, PortsCannotBeSharedWithAnotherProcess) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  for (int port : {srv->control_port(), srv->data_port()}) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_NE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << "port " << port;
    EXPECT_EQ(errno, EADDRINUSE);
    ::close(fd);
  }
}

// Refusals leave a trace (who, what, why), rate-limited so a flood cannot
// fill the disk.
TEST_F(Attack, RefusalsAreLoggedAndRateLimited) {
  XferdOptions o;
  o.extra_toml = "[limits]\nlog_refusals_per_minute = 5\n";
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  const std::string forged = srv->token() + "x";
  for (int i = 0; i < 50; ++i) {
    v1::PathRequest req;
    req.set_path("/");
    grpc::ClientContext ctx;
    Peer::prepare(ctx, forged);
    v1::FileAttrs a;
    EXPECT_FALSE(p.stub().Stat(&ctx, req, &a).ok());
  }
  const std::string out_of_scope = srv->token("/in", false);
  v1::PathRequest req;
  req.set_path("/etc");
  grpc::ClientContext ctx;
  Peer::prepare(ctx, out_of_scope);
  v1::FileAttrs a;
  EXPECT_FALSE(p.stub().Stat(&ctx, req, &a).ok());
  const std::string log = srv->log();
  std::size_t lines = 0;
  for (std::size_t pos = 0; (pos = log.find("refused: ", pos)) != std::string::npos; ++pos) {
    ++lines;
  }
  EXPECT_GE(lines, 1u) << log;
  EXPECT_LE(lines, 6u) << log;
  EXPECT_NE(log.find("malformed token"), std::string::npos) << log;
}

// xferd can drop to an unprivileged user once its ports are bound.
TEST_F(Attack, ServerDropsToItsConfiguredUser) {
  XferdOptions o;
  o.server_extra = "user = \"nobody\"\n";
  if (::geteuid() != 0) {
    // Only root can switch users: anyone else is told so at start.
    XferdProcess srv(tmp() / "user", o);
    EXPECT_FALSE(srv.start(5s));
    EXPECT_NE(srv.log().find("only root can switch"), std::string::npos) << srv.log();
    return;
  }
  XferdProcess srv(tmp() / "user", o);
  fs::create_directories(srv.root());
  xfer_it::chown_tree(srv.dir(), xfer_it::kNobody);
  ASSERT_TRUE(srv.start());
  std::ifstream status("/proc/" + std::to_string(srv.pid()) + "/status");
  std::string key;
  unsigned ruid = 0, euid = 0;
  while (status >> key) {
    if (key == "Uid:") {
      status >> ruid >> euid;
      break;
    }
  }
  EXPECT_EQ(ruid, static_cast<unsigned>(xfer_it::kNobody));
  EXPECT_EQ(euid, static_cast<unsigned>(xfer_it::kNobody));
  fs::path f = tmp() / "u.bin";
  xfer_it::write_random_file(f, 11, 1u << 20);
  auto up = xfer_it::run_xfer(
      {"--token", srv.token(), "transfer", "--no-progress", S(f), srv.url("/u.bin")}, 60s);
  EXPECT_EXIT_CODE(up, 0);
  struct stat sb {};
  ASSERT_EQ(::stat((srv.root() / "u.bin").c_str(), &sb), 0);
  EXPECT_EQ(sb.st_uid, static_cast<uid_t>(xfer_it::kNobody));
}

}  // namespace
}  // namespace xfer_adv
