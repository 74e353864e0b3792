// The adversarial suite against a real xferd (docs/server.md, "Threat
// model"): one test per attack found in the review of the server, each
// speaking raw frames or raw gRPC like an attacker would, and asserting
// what a user would check afterwards — nothing read, written, created or
// deleted outside the root or the token's prefix; the attacked resource
// still serving an honest client; descriptors, threads and memory within
// the documented bounds.

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "harness.hpp"
#include "peer.hpp"
#include "xfer/core/checksum.hpp"
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

  // A server whose [limits] table holds `limits` ("key = value\n"...).
  XferdProcess* start_with_limits(const std::string& limits) {
    XferdOptions o;
    o.extra_toml = "[limits]\n" + limits;
    return start_server("srv", o);
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

// Pings `fc` every `step` until the server closes it or `limit` passes;
// true when it was closed.
bool closed_within(FrameConn& fc, std::chrono::milliseconds limit, std::chrono::milliseconds step) {
  for (const auto until = Clock::now() + limit; Clock::now() < until;
       std::this_thread::sleep_for(step)) {
    if (!Peer::call(fc, header(FrameType::kPing, 1)).ok()) return true;
  }
  return false;
}

// A new connection to `session` is refused at its Hello.
void expect_no_new_connection(Peer& p, const v1::Session& session) {
  auto again = p.dial();
  ASSERT_NE(again, nullptr);
  auto r = p.plain_hello(*again, session);
  if (r.ok()) EXPECT_EQ(r->h.type, FrameType::kError);
}

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
    set_job_option(req, "job_id", bad);
    set_job_option(req, "checkpoint", true);
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
  XferdProcess* srv = start_with_limits("handshake_seconds = 2\n");
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
  const ProcFigures during = settled_figures(srv->pid());  // the acceptor admitted what it can
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
  // The server reaps the closed connections within a watchdog tick: until
  // then a copy may find no descriptor free.
  xfer_it::wait_until([&] {
    up = xfer_it::run_xfer(
        {"--token", tok, "transfer", "--no-progress", S(f), srv->url("/after.bin")}, 60s);
    return up.exit_code == 0;
  });
  EXPECT_EXIT_CODE(up, 0);
  EXPECT_TRUE(xfer_it::compare_trees(f, srv->root() / "after.bin"));
  EXPECT_TRUE(srv->alive()) << srv->log();
}

// ------------------------------------------------ 3. per-token exhaustion

TEST_F(Attack, HandlesPerSessionAreCapped) {
  XferdProcess* srv = start_with_limits("max_handles_per_session = 16\n");
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
  XferdProcess* srv = start_with_limits("connection_buffer_kib = 1024\n");
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
  XferdProcess* srv = start_with_limits("max_sessions_per_subject = 3\n");
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

// session_idle_seconds is honoured as configured (it was silently raised to
// 60 s): with one session allowed per subject, a second one is refused
// while the first, without connections, lives, and granted once it has
// been idle for 5 s: not sooner, and well before 60 s.
TEST_F(Attack, IdleSessionsCloseAfterTheConfiguredTime) {
  XferdProcess* srv = start_with_limits("max_sessions_per_subject = 1\nsession_idle_seconds = 5\n");
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  const std::string tok = srv->token("/", true, 3600, "idle");
  grpc::Status st;
  const v1::Session first = p.open_session(tok, false, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const auto opened = std::chrono::steady_clock::now();
  p.open_session(tok, false, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << "the first session is alive";
  EXPECT_TRUE(xfer_it::wait_until(
      [&] {
        p.open_session(tok, false, &st);
        return st.ok();
      },
      30s))
      << "the idle session still holds its place: " << st.error_message();
  const double idle =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - opened).count();
  EXPECT_GE(idle, 4.5) << "closed before its idle time";
  expect_no_new_connection(p, first);
}

// A token holder asks for a wider token: a prefix outside its own, write
// from a read-only token, a lifetime past its own. Refused, or (lifetime)
// clamped; and what was issued is tried: it reaches no further.
TEST_F(Attack, IssuedTokensNeverWiden) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  fs::create_directories(srv->root() / "a");
  fs::create_directories(srv->root() / "b");
  Peer p = peer(*srv);
  const std::string parent = srv->token("/a", false, 600, "mallory");  // read-only, 10 min
  auto issue = [&](const std::string& prefix, bool write, unsigned ttl, v1::IssuedToken* out) {
    v1::IssueTokenRequest req;
    req.set_prefix(prefix);
    req.set_write(write);
    req.set_ttl_seconds(ttl);
    grpc::ClientContext ctx;
    Peer::prepare(ctx, parent);
    return p.stub().IssueToken(&ctx, req, out);
  };
  auto stat_with = [&](const std::string& token, const std::string& path) {
    v1::PathRequest req;
    req.set_path(path);
    v1::FileAttrs attrs;
    grpc::ClientContext ctx;
    Peer::prepare(ctx, token);
    return p.stub().Stat(&ctx, req, &attrs);
  };
  auto mkdir_with = [&](const std::string& token, const std::string& path) {
    v1::MkdirRequest req;
    req.set_path(path);
    v1::Empty empty;
    grpc::ClientContext ctx;
    Peer::prepare(ctx, token);
    return p.stub().Mkdir(&ctx, req, &empty);
  };
  v1::IssuedToken issued;
  for (const std::string& wider : {"/", "/b", "/a/../b", "/ab"}) {
    grpc::Status st = issue(wider, false, 60, &issued);
    EXPECT_FALSE(st.ok()) << "a token for " << wider << " was issued from one for /a";
  }
  EXPECT_FALSE(issue("/a", true, 60, &issued).ok()) << "write issued from a read-only token";
  // Narrower is fine, and the lifetime asked for (a day) is cut to the
  // parent's (10 minutes).
  ASSERT_TRUE(issue("/a", false, 86400, &issued).ok());
  EXPECT_LE(issued.expires_at(), static_cast<std::uint64_t>(::time(nullptr)) + 600 + 5);
  EXPECT_TRUE(stat_with(issued.token(), "/a").ok());
  EXPECT_FALSE(stat_with(issued.token(), "/b").ok()) << "the issued token reaches /b";
  EXPECT_FALSE(mkdir_with(issued.token(), "/a/new").ok()) << "the issued token writes";
  EXPECT_FALSE(fs::exists(srv->root() / "a" / "new"));
  // A token issued from an issued one is no wider either.
  const std::string child = issued.token();
  v1::IssueTokenRequest req;
  req.set_prefix("/");
  req.set_write(true);
  req.set_ttl_seconds(86400);
  grpc::ClientContext ctx;
  Peer::prepare(ctx, child);
  v1::IssuedToken grandchild;
  EXPECT_FALSE(p.stub().IssueToken(&ctx, req, &grandchild).ok());
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
  set_job_option(req, "bwlimit", "8M");  // keeps it running for a while
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
  // An absence can only be watched for a while: a second for a connection
  // the refused job should never make.
  pollfd pfd{trap, POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 1000), 0) << "the server connected to an unlisted peer";
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
  XferdProcess* srv = start_with_limits("max_finished_jobs = 2\nmax_jobs_per_subject = 8\n");
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
  EXPECT_TRUE(closed_within(*fc, 15s, 500ms)) << "a data connection outlived its token by 12 s";
  // And the session takes no new connection.
  expect_no_new_connection(p, session);
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
  XferdProcess* srv = start_with_limits("handshake_seconds = 2\n");
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
  XferdProcess* srv = start_with_limits("log_refusals_per_minute = 5\n");
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

// ------------------------------------------- 9. the review of the hardening

// SubmitJob for `token`; the job id, or "" with the status in *status.
std::string submit_job(Peer& p, const std::string& token, const v1::JobRequest& req,
                       grpc::Status* status = nullptr) {
  grpc::ClientContext ctx;
  Peer::prepare(ctx, token);
  v1::JobAccepted acc;
  grpc::Status st = p.stub().SubmitJob(&ctx, req, &acc);
  if (status != nullptr) *status = st;
  if (!st.ok()) return {};
  return acc.job_id();
}

// Watches a job to its end (the stream authenticates once, at its start).
v1::JobProgress watch_to_end(Peer& p, const std::string& token, const std::string& id,
                             std::chrono::seconds deadline = 60s) {
  grpc::ClientContext ctx;
  Peer::prepare(ctx, token);
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  v1::JobId jid;
  jid.set_job_id(id);
  auto reader = p.stub().WatchJob(&ctx, jid);
  v1::JobProgress prog, last;
  while (reader->Read(&prog)) last = prog;
  (void)reader->Finish();
  return last;
}

// A job request's options are names and text from the client: each is
// checked against the option table, and only those a request may carry
// pass. Nothing runs for a refused request.
TEST_F(Attack, JobOptionsAreCheckedAgainstTheOptionTable) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  xfer_it::write_file(srv->root() / "a.txt", "a");
  Peer p = peer(*srv);
  const std::string tok = srv->token("/", true);
  auto request = [] {
    v1::JobRequest req;
    req.add_sources("/a.txt");
    req.set_destination("/b.txt");
    return req;
  };
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"memory", "1T"},                      // the server's memory is not the client's to size
      {"workers", "1024"},                   // nor its threads
      {"no_such_option", "1"},               // unknown
      {"bwlimit", "lots"},                   // not a size
      {"streams", "100000"},                 // out of range
      {"verify", "perhaps"},                 // not a yes/no
      {"job_id", "../../etc"},               // not an id
      {"recursive", std::string(300, 'x')},  // too long
      {"filter", "merge /etc/passwd\n"},     // not a rule xfer reads
      {"filter", std::string((16 << 10) + 1, '-')},  // past the 16 KiB of rules
  };
  for (const auto& [name, value] : refused) {
    v1::JobRequest req = request();
    set_job_option(req, name, value);
    grpc::Status st;
    EXPECT_EQ(submit_job(p, tok, req, &st), "") << name;
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << name << ": " << st.error_message();
  }
  v1::JobRequest many = request();
  for (int i = 0; i < 200; ++i) set_job_option(many, "x" + std::to_string(i), "1");
  grpc::Status st;
  EXPECT_EQ(submit_job(p, tok, many, &st), "");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_FALSE(xfer_it::lexists(srv->root() / "b.txt")) << "a refused job ran";
  // And the accepted form runs.
  v1::JobRequest ok = request();
  set_job_option(ok, "verify", true);
  set_job_option(ok, "bwlimit", "10M");
  const std::string id = submit_job(p, tok, ok, &st);
  ASSERT_NE(id, "") << st.error_message();
  EXPECT_EQ(watch_to_end(p, tok, id).state(), "done");
  EXPECT_TRUE(xfer_it::lexists(srv->root() / "b.txt"));
  // Include/exclude rules from a request: 16 KiB of them (the most a
  // request may carry), of which the job runs the last that matters.
  fs::create_directories(srv->root() / "tree");
  xfer_it::write_file(srv->root() / "tree" / "keep.c", "c");
  xfer_it::write_file(srv->root() / "tree" / "drop.o", "o");
  std::string rules;
  for (int i = 0; rules.size() + 16 < (16u << 10); ++i) rules += "- n" + std::to_string(i) + "\n";
  rules += "- *.o\n";
  ASSERT_LE(rules.size(), 16u << 10);
  v1::JobRequest filtered;
  filtered.add_sources("/tree");
  filtered.set_destination("/copy");
  set_job_option(filtered, "recursive", true);
  set_job_option(filtered, "filter", rules);
  const std::string fid = submit_job(p, tok, filtered, &st);
  ASSERT_NE(fid, "") << st.error_message();
  EXPECT_EQ(watch_to_end(p, tok, fid).state(), "done");
  EXPECT_TRUE(xfer_it::lexists(srv->root() / "copy" / "keep.c"));
  EXPECT_FALSE(xfer_it::lexists(srv->root() / "copy" / "drop.o"));
  // Past 16 KiB: refused before anything runs.
  v1::JobRequest too_long = filtered;
  too_long.set_destination("/copy2");
  set_job_option(too_long, "filter", rules + std::string(16u << 10, 'x') + "\n");
  EXPECT_EQ(submit_job(p, tok, too_long, &st), "");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_FALSE(xfer_it::lexists(srv->root() / "copy2"));
}

// A server-run job reaches the root only as its submitter's token does:
// swapping the job's destination folder for a link into another user's
// folder while it writes lands nothing there.
TEST_F(Attack, JobsFollowNoSwappedSymlinkOutOfTheirPrefix) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const fs::path alice = srv->root() / "in" / "alice";
  fs::create_directories(alice / "src");
  fs::create_directories(alice / "dst");
  fs::create_directories(srv->root() / "in" / "bob");
  for (int i = 0; i < 200; ++i) {
    xfer_it::write_file(alice / "src" / ("f" + std::to_string(i)), std::string(4096, 'a'));
  }
  const std::string tok = srv->token("/in/alice", true, 3600, "alice");
  Peer p = peer(*srv);
  v1::JobRequest req;
  req.add_sources("/in/alice/src");
  req.set_destination("/in/alice/dst/copy");
  set_job_option(req, "recursive", true);
  set_job_option(req, "bwlimit", "256K");  // about 3 s
  grpc::Status st;
  const std::string id = submit_job(p, tok, req, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  // Once the job writes into dst/copy, that folder becomes a link to bob's
  // and back, alternately, until the job ends: done on the file system
  // directly (a local user racing the job).
  const fs::path copy = alice / "dst" / "copy";
  for (auto until = Clock::now() + 10s; Clock::now() < until; std::this_thread::sleep_for(5ms)) {
    std::error_code ec;
    if (fs::exists(copy / "f0", ec) || fs::exists(copy / "f1", ec)) break;
  }
  std::atomic<bool> stop{false};
  std::thread swapper([&] {
    std::error_code ec;
    while (!stop.load()) {
      fs::rename(copy, alice / "dst" / "copy.real", ec);
      fs::create_directory_symlink("../../bob", copy, ec);
      std::this_thread::sleep_for(2ms);
      fs::remove(copy, ec);
      fs::rename(alice / "dst" / "copy.real", copy, ec);
      std::this_thread::sleep_for(1ms);
    }
  });
  const v1::JobProgress end = watch_to_end(p, tok, id);
  stop.store(true);
  swapper.join();
  EXPECT_TRUE(fs::is_empty(srv->root() / "in" / "bob"))
      << "the job wrote into bob's folder (job state " << end.state() << ")";
  RecordProperty("job_state", end.state());
  RecordProperty("files_done", std::to_string(end.files_done()));
}

// A job ends with its submitter's token: the next file it opens after the
// expiry fails, and the job stops well before copying everything.
TEST_F(Attack, JobsEndWithTheirToken) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  fs::create_directories(srv->root() / "src");
  for (int i = 0; i < 60; ++i) {
    xfer_it::write_file(srv->root() / "src" / ("f" + std::to_string(i)),
                        std::string(64 << 10, 'b'));
  }
  const std::string tok = srv->token("/", true, 3, "alice");
  Peer p = peer(*srv);
  v1::JobRequest req;
  req.add_sources("/src");
  req.set_destination("/dst");
  set_job_option(req, "recursive", true);
  set_job_option(req, "bwlimit", "256K");  // 3.75 MiB: about 15 s, the token lives 3
  grpc::Status st;
  const std::string id = submit_job(p, tok, req, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const v1::JobProgress end = watch_to_end(p, tok, id);
  // Stopped, not run to its end: a job outliving its token would copy all
  // 60 files and end "done".
  EXPECT_EQ(end.state(), "failed");
  EXPECT_LT(end.files_done(), 60u) << "the job ran on after its token expired";
  EXPECT_NE(end.message().find("expired"), std::string::npos) << end.message();
}

// cp -r a a/b: a job whose destination lies inside a source is refused, also
// when a symlink hides it, and nothing is created.
TEST_F(Attack, JobIntoItsOwnSourceIsRefused) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  fs::create_directories(srv->root() / "d" / "sub");
  xfer_it::write_file(srv->root() / "d" / "f.txt", "f");
  fs::create_directory_symlink("d", srv->root() / "alias");
  const std::string tok = srv->token();
  Peer p = peer(*srv);
  for (const std::string dest : {"/d/sub/deep", "/d", "/alias/sub/x", "/d/new"}) {
    v1::JobRequest req;
    req.add_sources("/d");
    req.set_destination(dest);
    set_job_option(req, "recursive", true);
    grpc::Status st;
    submit_job(p, tok, req, &st);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << dest;
    EXPECT_NE(st.error_message().find("inside the source"), std::string::npos)
        << st.error_message();
  }
  v1::JobRequest root_req;
  root_req.add_sources("/");
  root_req.set_destination("/elsewhere");
  grpc::Status st;
  submit_job(p, tok, root_req, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(fs::exists(srv->root() / "d" / "sub" / "deep"));
  EXPECT_FALSE(fs::exists(srv->root() / "d" / "new"));
  EXPECT_FALSE(fs::exists(srv->root() / "elsewhere"));
}

// Checkpointed job ids are per subject: mallory submitting alice's job id
// neither resumes nor overwrites alice's checkpoint.
TEST_F(Attack, JobCheckpointsAreSeparatePerSubject) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  xfer_it::write_file(srv->root() / "a.txt", "alice's");
  xfer_it::write_file(srv->root() / "m.txt", "mallory's");
  Peer p = peer(*srv);
  const std::string alice = srv->token("/", true, 3600, "alice");
  const std::string mallory = srv->token("/", true, 3600, "mallory");
  for (const auto& [tok, src, dst] :
       {std::tuple{alice, "/a.txt", "/a.copy"}, std::tuple{mallory, "/m.txt", "/m.copy"}}) {
    v1::JobRequest req;
    req.add_sources(src);
    req.set_destination(dst);
    set_job_option(req, "job_id", "nightly");
    set_job_option(req, "checkpoint", true);
    grpc::Status st;
    const std::string id = submit_job(p, tok, req, &st);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(watch_to_end(p, tok, id).state(), "done");
  }
  EXPECT_EQ(xfer_it::read_file(srv->root() / "a.copy"), "alice's");
  EXPECT_EQ(xfer_it::read_file(srv->root() / "m.copy"), "mallory's");
  // Two records named "nightly", one per subject, each with its own source.
  std::vector<std::string> records;
  for (const auto& e : fs::recursive_directory_iterator(srv->dir() / "state")) {
    if (e.path().filename() == "job.json" && e.path().parent_path().filename() == "nightly") {
      records.push_back(xfer_it::read_file(e.path()));
    }
  }
  ASSERT_EQ(records.size(), 2u);
  EXPECT_NE(records[0], records[1]);
}

// Two connections of one session: a DATA frame is half received on one
// when the other commits its handle and opens a new file. The rest of the
// frame must land nowhere: not in the committed file, not in the new one
// (which may get the closed descriptor's number).
TEST_F(Attack, WritesRacingACommitNeverLandInAnotherFile) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  grpc::Status st;
  auto session = p.open_session(srv->token(), false, &st, 4);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto committer = p.connected(session);
  ASSERT_NE(committer, nullptr);
  const std::string clean(64 << 10, 'c');
  for (std::uint64_t i = 1; i <= 6; i += 2) {
    auto writer = p.connected(session);
    ASSERT_NE(writer, nullptr);
    const std::string name = "race" + std::to_string(i);
    auto o =
        Peer::call(*committer, header(FrameType::kOpenWrite, i), open_write("/" + name, 4 << 20));
    ASSERT_TRUE(o.ok());
    ASSERT_EQ(o->h.type, FrameType::kOpenOk) << error_text(*o);
    // Half of a 4 MiB DATA frame: the server writes what it has and waits
    // for the rest.
    const std::vector<std::byte> junk(4 << 20, std::byte{'X'});
    FrameHeader h = header(FrameType::kData, i, 0);
    h.length = static_cast<std::uint32_t>(junk.size());
    h.payload_hash = xfer::protocol::payload_hash(junk);
    const auto hdr = xfer::protocol::encode_header(h);
    const std::uint64_t written_before = xfer_it::process_wchar(srv->pid());
    ASSERT_TRUE(writer->send_raw(hdr).ok());
    ASSERT_TRUE(writer->send_raw(std::span(junk).first(2 << 20)).ok());
    // Until the server has written (most of) the half it has.
    EXPECT_TRUE(xfer_it::wait_until([&] {
      return xfer_it::process_wchar(srv->pid()) >= written_before + (1u << 20);
    })) << "the server never wrote the first half of the frame";
    auto c = Peer::call(*committer, header(FrameType::kCommit, i));
    ASSERT_TRUE(c.ok());
    ASSERT_EQ(c->h.type, FrameType::kAck) << error_text(*c);
    const std::string committed = xfer_it::read_file(srv->root() / name);
    auto o2 = Peer::call(*committer, header(FrameType::kOpenWrite, i + 1),
                         open_write("/clean" + std::to_string(i), clean.size()));
    ASSERT_TRUE(o2.ok());
    ASSERT_EQ(o2->h.type, FrameType::kOpenOk) << error_text(*o2);
    auto d = Peer::call(*committer, header(FrameType::kData, i + 1, 0), bytes_of(clean));
    ASSERT_TRUE(d.ok());
    // The rest of the frame arrives after the commit.
    ASSERT_TRUE(writer->send_raw(std::span(junk).subspan(2 << 20)).ok());
    auto reply = Peer::recv_frame(*writer);  // an error for the finished handle
    auto c2 = Peer::call(*committer, header(FrameType::kCommit, i + 1));
    ASSERT_TRUE(c2.ok());
    ASSERT_EQ(c2->h.type, FrameType::kAck) << error_text(*c2);
    EXPECT_EQ(xfer_it::read_file(srv->root() / ("clean" + std::to_string(i))), clean)
        << "the rest of a frame for a committed handle landed in the next file opened";
    EXPECT_EQ(xfer_it::read_file(srv->root() / name), committed)
        << "a committed file changed after its COMMIT was acknowledged";
    if (reply.ok()) EXPECT_EQ(reply->h.type, FrameType::kError);
  }
}

// A file truncated while the server sends it with sendfile: the reader
// gets an error or short data, the server keeps serving (it used to hash
// through a mapping and die of SIGBUS).
TEST_F(Attack, TruncatingAFileDuringADownloadDoesNotCrashTheServer) {
  XferdOptions o;
  o.env = {{"XFER_LOOPBACK_SENDFILE", "1"}};  // the sendfile path, as for a remote peer
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  const fs::path big = srv->root() / "big.bin";
  xfer_it::write_random_file(big, 5, 32u << 20);
  Peer p = peer(*srv);
  grpc::Status st;
  auto session = p.open_session(srv->token(), false, &st, 16);
  ASSERT_TRUE(st.ok()) << st.error_message();
  // The session lives while it has a connection: this one stays idle.
  auto keeper = p.connected(session);
  ASSERT_NE(keeper, nullptr);
  std::atomic<bool> stop{false};
  std::thread truncater([&] {
    std::error_code ec;
    while (!stop.load()) {
      fs::resize_file(big, 0, ec);
      std::this_thread::sleep_for(1ms);
      fs::resize_file(big, 32u << 20, ec);
      std::this_thread::sleep_for(1ms);
    }
  });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop.store(true);
      if (t.joinable()) t.join();
    }
  } join{stop, truncater};
  int reads = 0;
  int reconnects = 0;
  std::unique_ptr<FrameConn> fc;
  const auto until = Clock::now() + 3s;
  for (std::uint64_t h = 1; Clock::now() < until; ++h) {
    if (!fc) {
      // A frame cut short by the truncation ends its connection; the old
      // one leaves the session's count once the server has seen it go.
      std::this_thread::sleep_for(20ms);
      fc = p.connected(session);
      ASSERT_NE(fc, nullptr) << "the server stopped answering";
      ++reconnects;
    }
    auto opened = Peer::call(*fc, header(FrameType::kOpenRead, h), open_read("/big.bin"));
    if (!opened.ok()) {
      fc.reset();
      continue;
    }
    if (opened->h.type != FrameType::kOpenOk) continue;
    for (std::uint64_t off = 0; off < (32u << 20); off += 4u << 20) {
      auto r = Peer::call(*fc, header(FrameType::kRead, h, off, 4u << 20));
      ++reads;
      if (!r.ok()) {
        fc.reset();
        break;
      }
      if (r->h.type != FrameType::kData) break;
    }
    if (fc && !Peer::call(*fc, header(FrameType::kClose, h)).ok()) fc.reset();
  }
  RecordProperty("reconnects", reconnects);
  stop.store(true);
  truncater.join();
  EXPECT_GT(reads, 0);
  ASSERT_EQ(::kill(srv->pid(), 0), 0) << "xferd died";
  v1::PathRequest req;
  req.set_path("/big.bin");
  grpc::ClientContext ctx;
  Peer::prepare(ctx, srv->token());
  v1::FileAttrs a;
  EXPECT_TRUE(p.stub().Stat(&ctx, req, &a).ok()) << "xferd stopped serving";
}

// A recursive remove of a tree 2,000 levels deep (which fits in PATH_MAX)
// succeeds without exhausting the stack or the descriptors of the server
// (it walks with one descriptor and no recursion), while other requests go
// on being served.
TEST_F(Attack, DeepTreeIsRemovedWithBoundedResources) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  {
    int dir = ::open(srv->root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(dir, 0);
    ASSERT_EQ(::mkdirat(dir, "deep", 0755), 0);
    int cur = ::openat(dir, "deep", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ::close(dir);
    for (int i = 0; i < 2000 && cur >= 0; ++i) {
      ASSERT_EQ(::mkdirat(cur, "d", 0755), 0);
      if (i % 100 == 0) ASSERT_EQ(::close(::openat(cur, "f", O_CREAT | O_WRONLY, 0644)), 0);
      int next = ::openat(cur, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      ::close(cur);
      cur = next;
    }
    ASSERT_GE(cur, 0);
    ::close(cur);
  }
  const std::size_t fds_before = proc_figures(srv->pid()).fds;
  Peer p = peer(*srv);
  v1::RemoveRequest rm;
  rm.set_path("/deep");
  rm.set_recursive(true);
  grpc::ClientContext ctx;
  Peer::prepare(ctx, srv->token());
  v1::Empty e;
  grpc::Status st = p.stub().Remove(&ctx, rm, &e);
  EXPECT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(::kill(srv->pid(), 0), 0) << "xferd died";
  EXPECT_FALSE(fs::exists(srv->root() / "deep"));
  EXPECT_LE(proc_figures(srv->pid()).fds, fds_before + 4);
}

// A closed session takes its connections with it, and no new connection
// can join it (CloseSession, or a handshake racing the close).
TEST_F(Attack, ClosedSessionTakesItsConnections) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  grpc::Status st;
  const std::string tok = srv->token();
  auto session = p.open_session(tok, false, &st, 4);
  ASSERT_TRUE(st.ok()) << st.error_message();
  auto fc = p.connected(session);
  ASSERT_NE(fc, nullptr);
  auto opened =
      Peer::call(*fc, header(FrameType::kOpenWrite, 1), open_write("/left-open", 1 << 20));
  ASSERT_TRUE(opened.ok());
  ASSERT_EQ(opened->h.type, FrameType::kOpenOk);
  {
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    v1::CloseSessionRequest req;
    req.set_session_id(session.session_id());
    v1::Empty e;
    ASSERT_TRUE(p.stub().CloseSession(&ctx, req, &e).ok());
  }
  EXPECT_TRUE(closed_within(*fc, 5s, 100ms)) << "a connection kept serving a closed session";
  expect_no_new_connection(p, session);
  EXPECT_FALSE(fs::exists(srv->root() / "left-open"));
}

// Open files are bounded per subject across its sessions, not only per
// session.
TEST_F(Attack, OpenFilesAreBoundedPerSubject) {
  XferdProcess* srv = start_with_limits("max_open_files_per_subject = 8\n");
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  const std::string tok = srv->token("/", true, 3600, "mallory");
  v1::Session s1, s2;
  auto c1 = p.session_connection(tok, &s1);
  auto c2 = p.session_connection(tok, &s2);
  ASSERT_NE(c1, nullptr);
  ASSERT_NE(c2, nullptr);
  int opened = 0;
  std::string refusal;
  for (std::uint64_t i = 1; i <= 10; ++i) {
    FrameConn& fc = i % 2 ? *c1 : *c2;
    auto r =
        Peer::call(fc, header(FrameType::kOpenWrite, i), open_write("/o" + std::to_string(i), 1));
    ASSERT_TRUE(r.ok());
    if (r->h.type == FrameType::kOpenOk) {
      ++opened;
    } else if (refusal.empty()) {
      refusal = error_text(*r);
    }
  }
  EXPECT_EQ(opened, 8);
  EXPECT_NE(refusal.find("files open, the most one token subject may"), std::string::npos)
      << refusal;
  // Closing one frees a slot.
  auto a = Peer::call(*c1, header(FrameType::kAbort, 1));
  ASSERT_TRUE(a.ok());
  auto r = Peer::call(*c1, header(FrameType::kOpenWrite, 99), open_write("/o99", 1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->h.type, FrameType::kOpenOk) << error_text(*r);
}

// The server's partials and temporaries are neither listed nor opened for
// a peer: another transfer may be writing them right now.
TEST_F(Attack, PartialsAreNeitherListedNorOpened) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  xfer_it::write_file(srv->root() / ".a.bin.xfer-part-job1", "half");
  xfer_it::write_file(srv->root() / ".a.bin.xfer-tmp-file", "tmp");
  xfer_it::write_file(srv->root() / "a.bin", "whole");
  Peer p = peer(*srv);
  const std::string tok = srv->token();
  {
    v1::ListRequest req;
    req.set_path("/");
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    auto reader = p.stub().List(&ctx, req);
    v1::ListReply reply;
    std::vector<std::string> names;
    while (reader->Read(&reply)) {
      for (const auto& e : reply.entries()) names.push_back(e.name());
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(names, std::vector<std::string>{"a.bin"});
  }
  v1::Session session;
  auto fc = p.session_connection(tok, &session);
  ASSERT_NE(fc, nullptr);
  std::uint64_t h = 1;
  for (const std::string name : {"/.a.bin.xfer-part-job1", "/.a.bin.xfer-tmp-file"}) {
    auto r = Peer::call(*fc, header(FrameType::kOpenRead, h++), open_read(name, 1024));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->h.type, FrameType::kError) << name;
    EXPECT_NE(error_text(*r).find("partial or temporary"), std::string::npos) << error_text(*r);
    auto w = Peer::call(*fc, header(FrameType::kOpenWrite, h++), open_write(name, 4));
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->h.type, FrameType::kError) << name;
  }
  EXPECT_EQ(xfer_it::read_file(srv->root() / ".a.bin.xfer-part-job1"), "half");
}

// WatchJob streams are bounded per subject (each holds a gRPC thread for
// as long as its job runs); another subject still watches its own.
TEST_F(Attack, JobWatchesAreBoundedPerSubject) {
  XferdProcess* srv = start_with_limits("max_watches_per_subject = 2\n");
  ASSERT_NE(srv, nullptr);
  xfer_it::write_random_file(srv->root() / "a.bin", 4, 8u << 20);
  Peer p = peer(*srv);
  const std::string mallory = srv->token("/", true, 3600, "mallory");
  v1::JobRequest req;
  req.add_sources("/a.bin");
  req.set_destination("/b.bin");
  set_job_option(req, "bwlimit", "1M");  // runs for about 8 s
  grpc::Status st;
  const std::string id = submit_job(p, mallory, req, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  v1::JobId jid;
  jid.set_job_id(id);
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::JobProgress>>> readers;
  int watching = 0;
  std::string refusal;
  for (int i = 0; i < 4; ++i) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    Peer::prepare(*ctx, mallory);
    auto reader = p.stub().WatchJob(ctx.get(), jid);
    v1::JobProgress prog;
    if (reader->Read(&prog)) {
      ++watching;
      ctxs.push_back(std::move(ctx));
      readers.push_back(std::move(reader));
    } else {
      grpc::Status fin = reader->Finish();
      EXPECT_EQ(fin.error_code(), grpc::StatusCode::UNAVAILABLE);
      if (refusal.empty()) refusal = fin.error_message();
    }
  }
  EXPECT_EQ(watching, 2);
  EXPECT_NE(refusal.find("job watches open"), std::string::npos) << refusal;
  for (auto& c : ctxs) c->TryCancel();
  for (auto& r : readers) (void)r->Finish();
  grpc::ClientContext cctx;
  Peer::prepare(cctx, mallory);
  v1::Empty e;
  EXPECT_TRUE(p.stub().CancelJob(&cctx, jid, &e).ok());
}

// Peer-chosen text reaches the log escaped: a newline in a job's
// destination cannot forge a log line.
TEST_F(Attack, JobTextCannotForgeLogLines) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  xfer_it::write_file(srv->root() / "a.txt", "a");
  Peer p = peer(*srv);
  const std::string tok = srv->token();
  v1::JobRequest req;
  req.add_sources("/a.txt");
  req.set_destination("/x\nFORGED: job srv-1: done");
  grpc::Status st;
  const std::string id = submit_job(p, tok, req, &st);
  if (st.ok()) watch_to_end(p, tok, id);
  const std::string log = srv->log();
  EXPECT_EQ(log.find("\nFORGED"), std::string::npos) << log;
}

// A '%' in a job's path is a file name, not an escape: "/d%2Fsub" is a
// sibling of /d, not /d/sub (which the self-copy check never saw).
TEST_F(Attack, JobPathsAreNotPercentDecoded) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  fs::create_directories(srv->root() / "d" / "sub");
  xfer_it::write_file(srv->root() / "d" / "f.txt", "f");
  Peer p = peer(*srv);
  const std::string tok = srv->token();
  v1::JobRequest req;
  req.add_sources("/d");
  req.set_destination("/d%2Fsub");
  set_job_option(req, "recursive", true);
  grpc::Status st;
  const std::string id = submit_job(p, tok, req, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const v1::JobProgress end = watch_to_end(p, tok, id);
  EXPECT_EQ(end.state(), "done") << end.message();
  EXPECT_EQ(xfer_it::read_file(srv->root() / "d%2Fsub" / "f.txt"), "f");
  EXPECT_TRUE(fs::is_empty(srv->root() / "d" / "sub")) << "the job copied into its own source";
}

// Sizes from a peer are bounded before anything is sized from them: an
// OPEN_WRITE of an exabyte is refused, DATA stays within the declared size,
// and a declared size reserves no disk.
TEST_F(Attack, PeerSizesAreBoundedAndReserveNothing) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  v1::Session session;
  auto fc = p.session_connection(srv->token(), &session);
  ASSERT_NE(fc, nullptr);
  auto huge = Peer::call(*fc, header(FrameType::kOpenWrite, 1),
                         open_write("/huge", std::uint64_t{1} << 62, "", 1));
  ASSERT_TRUE(huge.ok());
  EXPECT_EQ(huge->h.type, FrameType::kError);
  EXPECT_NE(error_text(*huge).find("larger than xfer handles"), std::string::npos)
      << error_text(*huge);
  // A 1 GiB file, not sparse: nothing is reserved on open.
  auto big = Peer::call(*fc, header(FrameType::kOpenWrite, 2), open_write("/big", 1u << 30));
  ASSERT_TRUE(big.ok());
  ASSERT_EQ(big->h.type, FrameType::kOpenOk) << error_text(*big);
  auto beyond =
      Peer::call(*fc, header(FrameType::kData, 2, std::uint64_t{1} << 40), bytes_of("far away"));
  ASSERT_TRUE(beyond.ok());
  EXPECT_EQ(beyond->h.type, FrameType::kError);
  EXPECT_NE(error_text(*beyond).find("beyond the file's declared size"), std::string::npos)
      << error_text(*beyond);
  auto c = Peer::call(*fc, header(FrameType::kCommit, 2));
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->h.type, FrameType::kAck) << error_text(*c);
  struct stat sb {};
  ASSERT_EQ(::stat((srv->root() / "big").c_str(), &sb), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(sb.st_size), 1u << 30);
  EXPECT_LT(static_cast<std::uint64_t>(sb.st_blocks) * 512, 1u << 20)
      << "the server reserved disk for data it never received";
  EXPECT_FALSE(fs::exists(srv->root() / "huge"));
}

// A file larger than xfer handles (a sparse exabyte on tmpfs) is an error
// for that file, in a server-run job and in the client downloading it,
// never an allocation failure that kills the process.
TEST_F(Attack, HugeSparseFileIsAnErrorNotACrash) {
  // The root's file system must hold a file larger than 16 TiB: tmpfs does.
  const fs::path shm = fs::path("/dev/shm") / ("xfer-adv-" + std::to_string(::getpid()));
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{shm};
  servers_.push_back(std::make_unique<XferdProcess>(shm / "srv", XferdOptions{}));
  XferdProcess* srv = servers_.back().get();
  ASSERT_TRUE(srv->start());
  { std::ofstream(srv->root() / "huge").put('x'); }
  fs::resize_file(srv->root() / "huge", std::uint64_t{1} << 58);
  Peer p = peer(*srv);
  const std::string tok = srv->token();
  v1::JobRequest req;
  req.add_sources("/huge");
  req.set_destination("/copy");
  set_job_option(req, "verify", true);
  set_job_option(req, "checkpoint", true);
  grpc::Status st;
  const std::string id = submit_job(p, tok, req, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const v1::JobProgress end = watch_to_end(p, tok, id);
  EXPECT_EQ(end.state(), "failed");
  ASSERT_EQ(::kill(srv->pid(), 0), 0) << "xferd died";
  EXPECT_FALSE(fs::exists(srv->root() / "copy"));
  auto local = xfer_it::run_xfer({"--token", tok, "cp", "--no-progress", "--verify",
                                  srv->url("/huge"), S(tmp() / "local-copy")},
                                 60s);
  EXPECT_NE(local.exit_code, 0) << local.describe();
  EXPECT_NE(local.exit_code, 134) << "xfer died: " << local.describe();
  EXPECT_NE(local.err.find("larger than xfer handles"), std::string::npos) << local.describe();
  EXPECT_FALSE(fs::exists(tmp() / "local-copy"));
}

// mkdir on a symlink whose target lies outside the root tells nothing
// about that target: the answer is the same whether it exists or not.
TEST_F(Attack, MkdirRevealsNothingOutsideTheRoot) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  fs::create_directory_symlink("/etc", srv->root() / "exists");
  fs::create_directory_symlink("/nonexistent-xfer-dir", srv->root() / "missing");
  Peer p = peer(*srv);
  const std::string tok = srv->token();
  auto mkdir = [&](const std::string& path, bool parents) {
    v1::MkdirRequest req;
    req.set_path(path);
    req.set_parents(parents);
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    v1::Empty e;
    grpc::Status st = p.stub().Mkdir(&ctx, req, &e);
    return std::to_string(st.error_code()) + ": " + st.error_message();
  };
  for (bool parents : {true, false}) {
    for (const std::string sub : {"", "/x"}) {
      SCOPED_TRACE(sub + (parents ? " -p" : ""));
      const std::string a = mkdir("/exists" + sub, parents);
      const std::string b = mkdir("/missing" + sub, parents);
      EXPECT_NE(a.rfind("0:", 0), 0u) << a;
      std::string b_as_a = b;  // the same answer, the name aside
      for (std::size_t at; (at = b_as_a.find("/missing")) != std::string::npos;) {
        b_as_a.replace(at, 8, "/exists");
      }
      EXPECT_EQ(a, b_as_a);
    }
  }
  EXPECT_FALSE(fs::exists("/etc/x"));
}

// ------------------------------------------- 10. the limits in total

// CloseSession for `session` with `token`.
grpc::Status close_session(Peer& p, const std::string& token, const v1::Session& session) {
  v1::CloseSessionRequest req;
  req.set_session_id(session.session_id());
  grpc::ClientContext ctx;
  Peer::prepare(ctx, token);
  v1::Empty e;
  return p.stub().CloseSession(&ctx, req, &e);
}

// max_sessions bounds the sessions of all subjects together: a third
// subject is refused while two sessions live, and served once one closes.
TEST_F(Attack, SessionsAreLimitedInTotal) {
  XferdProcess* srv = start_with_limits("max_sessions = 2\n");
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  const std::string alice = srv->token("/", true, 3600, "alice");
  const std::string bob = srv->token("/", true, 3600, "bob");
  const std::string carol = srv->token("/", true, 3600, "carol");
  grpc::Status st;
  const v1::Session a = p.open_session(alice, false, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  p.open_session(bob, false, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  p.open_session(carol, false, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  ASSERT_TRUE(close_session(p, alice, a).ok());
  p.open_session(carol, false, &st);
  EXPECT_TRUE(st.ok()) << "a closed session still counts: " << st.error_message();
}

// A session asks for more streams than max_streams_per_session: it is
// granted the maximum, and may hold twice that many data connections (a
// replacement may connect before the old one is reaped), not one more.
TEST_F(Attack, StreamsPerSessionAreClampedAndBoundTheConnections) {
  XferdProcess* srv = start_with_limits("max_streams_per_session = 2\n");
  ASSERT_NE(srv, nullptr);
  Peer p = peer(*srv);
  grpc::Status st;
  const v1::Session session = p.open_session(srv->token(), false, &st, 16);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(session.streams(), 2u);
  std::vector<std::unique_ptr<FrameConn>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(p.connected(session));
    ASSERT_NE(held.back(), nullptr) << "connection " << i + 1 << " of 4 was refused";
  }
  auto fifth = p.dial();
  ASSERT_NE(fifth, nullptr);
  auto r = p.plain_hello(*fifth, session);
  if (r.ok()) {
    EXPECT_EQ(r->h.type, FrameType::kError);
    EXPECT_NE(error_text(*r).find("too many data connections"), std::string::npos)
        << error_text(*r);
  }
  // The four still serve.
  for (auto& fc : held) EXPECT_TRUE(Peer::call(*fc, header(FrameType::kPing, 1)).ok());
}

// A job that stays running until cancelled (8 MiB/s over 64 MiB).
v1::JobRequest slow_job(const std::string& from, const std::string& to) {
  v1::JobRequest req;
  req.add_sources(from);
  req.set_destination(to);
  set_job_option(req, "bwlimit", "8M");
  return req;
}

void cancel_job(Peer& p, const std::string& token, const std::string& id) {
  v1::JobId jid;
  jid.set_job_id(id);
  grpc::ClientContext ctx;
  Peer::prepare(ctx, token);
  v1::Empty e;
  EXPECT_TRUE(p.stub().CancelJob(&ctx, jid, &e).ok());
}

// max_jobs bounds the running jobs of all subjects together: with one
// running, another subject's job is refused with a retryable UNAVAILABLE,
// and accepted once the first has ended.
TEST_F(Attack, JobsAreLimitedInTotal) {
  XferdProcess* srv = start_with_limits("max_jobs = 1\n");
  ASSERT_NE(srv, nullptr);
  xfer_it::write_random_file(srv->root() / "a.bin", 4, 64u << 20);
  Peer p = peer(*srv);
  const std::string alice = srv->token("/", true, 3600, "alice");
  const std::string bob = srv->token("/", true, 3600, "bob");
  grpc::Status st;
  const std::string first = submit_job(p, alice, slow_job("/a.bin", "/alice.bin"), &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  submit_job(p, bob, slow_job("/a.bin", "/bob.bin"), &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_NE(st.error_message().find("server runs 1 jobs already"), std::string::npos)
      << st.error_message();
  cancel_job(p, alice, first);
  EXPECT_EQ(watch_to_end(p, alice, first).state(), "cancelled");
  const std::string second = submit_job(p, bob, slow_job("/a.bin", "/bob.bin"), &st);
  EXPECT_TRUE(st.ok()) << "an ended job still counts: " << st.error_message();
  if (!second.empty()) cancel_job(p, bob, second);
}

// SIGTERM while a checkpointed job runs (docs/server.md, "Shutdown"): the
// job is cancelled, xferd exits 0 without SIGKILL, nothing is under the
// final name, the partial stays; the same job submitted again after the
// restart resumes it and finishes with the source's bytes.
TEST_F(Attack, SigtermCancelsRunningJobsAndKeepsTheirPartials) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  constexpr std::uint64_t kSize = 64u << 20;
  xfer_it::write_random_file(srv->root() / "a.bin", 4, kSize);
  const std::string tok = srv->token("/", true, 3600, "alice");
  v1::JobRequest req = slow_job("/a.bin", "/copy.bin");
  set_job_option(req, "job_id", "nightly");
  set_job_option(req, "checkpoint", true);
  {
    Peer p = peer(*srv);
    grpc::Status st;
    submit_job(p, tok, req, &st);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  // Once the partial holds 4 MiB (half a second at the limit). What it
  // holds is what is allocated: chunks are written at their offsets, so
  // its size (the furthest byte) can be far more than was written.
  auto partial_bytes = [&] {
    std::uint64_t most = 0;
    for (const auto& h : xfer_it::xfer_hidden_files(srv->root())) {
      struct stat sb {};
      if (::stat((srv->root() / h).c_str(), &sb) == 0) {
        most = std::max<std::uint64_t>(
            most, std::min<std::uint64_t>(static_cast<std::uint64_t>(sb.st_size),
                                          static_cast<std::uint64_t>(sb.st_blocks) * 512));
      }
    }
    return most;
  };
  ASSERT_TRUE(xfer_it::wait_until([&] { return partial_bytes() >= (4u << 20); }))
      << "the job never wrote 4 MiB";
  const xfer_it::XferdExit e = srv->stop(20s);
  EXPECT_TRUE(e.exited && e.code == 0) << e.describe() << "\n" << srv->log();
  EXPECT_FALSE(e.escalated) << "a running job held xferd past SIGTERM\n" << e.describe();
  EXPECT_FALSE(fs::exists(srv->root() / "copy.bin")) << "a file under the final name";
  const std::uint64_t kept = partial_bytes();
  EXPECT_GE(kept, 4u << 20) << "the job's partial was not kept";
  EXPECT_LT(kept, kSize);

  ASSERT_TRUE(srv->start());
  Peer p = peer(*srv);
  req.mutable_options()->mutable_values()->erase("bwlimit");
  grpc::Status st;
  const std::string id = submit_job(p, tok, req, &st);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const v1::JobProgress end = watch_to_end(p, tok, id);
  EXPECT_EQ(end.state(), "done") << end.message();
  EXPECT_TRUE(xfer_it::files_equal(srv->root() / "a.bin", srv->root() / "copy.bin"));
  EXPECT_LE(end.bytes_done(), kSize - kept + (16u << 20))
      << "the resubmitted job copied " << end.bytes_done() << " bytes: it did not resume";
  EXPECT_EQ(xfer_it::xfer_hidden_files(srv->root()), std::vector<std::string>{});
}

// Checksum (sync --checksum) reads a whole file on the server: only inside
// the token's prefix, never through a symlink out of it, never a FIFO (it
// must not hang), and at most max_checksums_per_subject at once, each
// stopped as soon as its caller goes away.
// sync's delta on the server: an OPEN_WRITE with a basis opens only the
// regular file at its own name (never through a symlink, and only as the
// client's signature saw it); COPY_BASIS copies only from inside that file,
// only into the declared size, at most 64 MiB per frame and at most the
// declared size in all (a few small frames cannot make the server write
// more than the file it declared). The Signature call is confined like
// Checksum and checks the block sizes it is asked for.
TEST_F(Attack, DeltaCopiesStayInsideTheOldFileAndTheDeclaredSize) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const fs::path pub = srv->root() / "pub";
  fs::create_directories(pub);
  xfer_it::write_random_file(pub / "old.bin", 41, 1u << 20);
  xfer_it::write_file(srv->root() / "private.txt", "not for this token\n");
  xfer_it::write_file(outside(*srv) / "secret.txt", std::string(1u << 20, 's'));
  fs::create_symlink(outside(*srv) / "secret.txt", pub / "link");
  ASSERT_EQ(::mkfifo((pub / "fifo").c_str(), 0644), 0);
  struct stat old_st {};
  ASSERT_EQ(::stat((pub / "old.bin").c_str(), &old_st), 0);
  const std::int64_t old_mtime = old_st.st_mtim.tv_sec * 1'000'000'000LL + old_st.st_mtim.tv_nsec;
  struct stat secret_st {};
  ASSERT_EQ(::stat((outside(*srv) / "secret.txt").c_str(), &secret_st), 0);
  const std::int64_t secret_mtime =
      secret_st.st_mtim.tv_sec * 1'000'000'000LL + secret_st.st_mtim.tv_nsec;
  const std::string tok = srv->token("/pub", true, 3600, "delta");
  Peer p = peer(*srv);
  v1::Session session;
  auto fc = p.session_connection(tok, &session);
  ASSERT_NE(fc, nullptr);
  auto open_with_basis = [&](std::uint64_t id, const std::string& path, std::uint64_t size,
                             std::uint64_t basis_size, std::int64_t basis_mtime) {
    xfer::protocol::OpenWrite ow;
    ow.meta.path = path;
    ow.meta.size = size;
    ow.meta.mode = 0644;
    ow.meta.flags = xfer::protocol::kMetaBasis;
    ow.meta.basis_size = basis_size;
    ow.meta.basis_mtime_ns = basis_mtime;
    std::vector<std::byte> body;
    xfer::protocol::encode(ow, body);
    return Peer::call(*fc, header(FrameType::kOpenWrite, id), body);
  };
  auto copy = [&](std::uint64_t id, std::uint64_t offset, std::uint64_t from, std::uint64_t n) {
    std::vector<std::byte> body;
    xfer::protocol::encode(xfer::protocol::CopyBasis{from, n}, body);
    return Peer::call(*fc, header(FrameType::kCopyBasis, id, offset), body);
  };
  auto refused = [](const xfer::Result<Frame>& r, std::string_view why) {
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->h.type, FrameType::kError);
    EXPECT_NE(error_text(*r).find(why), std::string::npos) << error_text(*r);
  };

  // A symlink out of the root is no basis, even with its target's exact
  // size and mtime; nor is a FIFO or a file outside the prefix.
  refused(open_with_basis(1, "/pub/link", 1u << 20, 1u << 20, secret_mtime), "old file");
  refused(open_with_basis(2, "/pub/fifo", 1u << 20, 0, 0), "old file");
  refused(open_with_basis(3, "/private.txt", 1u << 20, 19, 0), "");
  // Not the file the signature saw.
  refused(open_with_basis(4, "/pub/old.bin", 2u << 20, 1u << 20, old_mtime + 1), "changed");

  auto opened = open_with_basis(5, "/pub/old.bin", 2u << 20, 1u << 20, old_mtime);
  ASSERT_TRUE(opened.ok());
  ASSERT_EQ(opened->h.type, FrameType::kOpenOk) << error_text(*opened);
  refused(copy(5, 0, (1u << 20) - 10, 11), "outside");        // past the old file's end
  refused(copy(5, (2u << 20) - 10, 0, 11), "outside");        // past the declared size
  refused(copy(5, 0, ~std::uint64_t{0} - 5, 10), "outside");  // wrapping around
  refused(copy(5, 0, 0, (64ull << 20) + 1), "the most is");   // one frame, too much
  refused(Peer::call(*fc, header(FrameType::kCopyBasis, 5), bytes_of("short")), "COPY_BASIS");
  refused(copy(77, 0, 0, 10), "unknown file handle");
  // The declared 2 MiB from the old file, then not one byte more.
  for (std::uint64_t at : {0u, 1u << 20}) {
    auto ok = copy(5, at, 0, 1u << 20);
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(ok->h.type, FrameType::kAck) << error_text(*ok);
  }
  refused(copy(5, 0, 0, 1), "more than the new file's declared");
  auto c = Peer::call(*fc, header(FrameType::kCommit, 5));
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->h.type, FrameType::kAck) << error_text(*c);
  EXPECT_EQ(fs::file_size(pub / "old.bin"), 2u << 20);
  const std::string twice = xfer_it::read_file(pub / "old.bin");
  EXPECT_EQ(twice.substr(0, 1u << 20), twice.substr(1u << 20));

  // A handle opened without a basis copies nothing.
  auto plain =
      Peer::call(*fc, header(FrameType::kOpenWrite, 6), open_write("/pub/new.bin", 4 << 20));
  ASSERT_TRUE(plain.ok());
  ASSERT_EQ(plain->h.type, FrameType::kOpenOk) << error_text(*plain);
  refused(copy(6, 0, 0, 10), "no basis");

  // Signature: confined like Checksum, answered at once when refused.
  auto signature = [&](const std::string& path, std::uint32_t min, std::uint32_t avg,
                       std::uint32_t max, std::vector<v1::SignatureReply>* out = nullptr) {
    v1::SignatureRequest req;
    req.set_path(path);
    req.set_min_block(min);
    req.set_avg_block(avg);
    req.set_max_block(max);
    grpc::ClientContext ctx;
    Peer::prepare(ctx, tok);
    auto reader = p.stub().Signature(&ctx, req);
    v1::SignatureReply reply;
    while (reader->Read(&reply)) {
      if (out != nullptr) out->push_back(reply);
    }
    return reader->Finish();
  };
  for (const char* path :
       {"/private.txt", "/pub/../private.txt", "/pub/link", "/pub/fifo", "/pub", "/pub/missing"}) {
    SCOPED_TRACE(path);
    const auto t0 = Clock::now();
    EXPECT_FALSE(signature(path, 16u << 10, 64u << 10, 256u << 10).ok());
    EXPECT_LT(Clock::now() - t0, 5s);
  }
  for (auto [min, avg, max] :
       {std::tuple{1u, 64u << 10, 256u << 10}, std::tuple{16u << 10, 60000u, 256u << 10},
        std::tuple{16u << 10, 64u << 10, 1u << 31}}) {
    const grpc::Status st = signature("/pub/old.bin", min, avg, max);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  }
  std::vector<v1::SignatureReply> replies;
  ASSERT_TRUE(signature("/pub/old.bin", 16u << 10, 64u << 10, 256u << 10, &replies).ok());
  ASSERT_FALSE(replies.empty());
  EXPECT_TRUE(replies.back().last());
  EXPECT_EQ(replies.back().size(), 2u << 20);
  std::uint64_t sum = 0;
  for (const auto& r : replies) {
    for (std::uint32_t len : r.length()) sum += len;
  }
  EXPECT_EQ(sum, 2u << 20);
  EXPECT_FALSE(fs::exists(pub / "link.xfer-tmp")) << "nothing written next to the symlink";
  EXPECT_EQ(xfer_it::read_file(outside(*srv) / "secret.txt"), std::string(1u << 20, 's'));
}

// A WatchChanges stream seen from the peer's side: its changes are
// gathered by a thread of its own until the stream ends.
class ChangeStream {
 public:
  // Opens a stream on `path`; ok() when the server said it is watching.
  ChangeStream(Peer& p, const std::string& token, const std::string& path,
               std::uint32_t debounce_ms = 50, std::uint32_t reconcile_ms = 0) {
    ctx_.AddMetadata("authorization", "Bearer " + token);
    ctx_.set_deadline(std::chrono::system_clock::now() + 120s);
    v1::WatchChangesRequest req;
    req.set_path(path);
    req.set_debounce_ms(debounce_ms);
    req.set_reconcile_ms(reconcile_ms);
    reader_ = p.stub().WatchChanges(&ctx_, req);
    v1::WatchChangesReply first;
    if (reader_->Read(&first) && first.ready()) {
      ready_ = true;
      thread_ = std::thread([this] {
        v1::WatchChangesReply r;
        while (reader_->Read(&r)) {
          std::lock_guard lock(mu_);
          for (const auto& c : r.changes()) {
            changes_.push_back(v1::WatchChange::Kind_Name(c.kind()) + " " + c.path());
          }
        }
        std::lock_guard lock(mu_);
        ended_ = true;
      });
    } else {
      status_ = reader_->Finish();
      finished_ = true;
    }
  }
  ~ChangeStream() { close(); }
  bool ok() const { return ready_; }
  // The refusal (or, once ended, how the stream ended).
  const grpc::Status& status() const { return status_; }
  bool ended() {
    std::lock_guard lock(mu_);
    return ended_;
  }
  std::vector<std::string> changes() {
    std::lock_guard lock(mu_);
    return changes_;
  }
  bool saw(const std::string& change, std::chrono::seconds wait = 10s) {
    return xfer_it::wait_until(
        [&] {
          auto c = changes();
          return std::find(c.begin(), c.end(), change) != c.end();
        },
        wait);
  }
  void close() {
    if (finished_) return;
    ctx_.TryCancel();
    if (thread_.joinable()) thread_.join();
    status_ = reader_->Finish();
    finished_ = true;
  }
  // Waits for the server to end the stream; its status.
  grpc::Status wait_end(std::chrono::seconds wait) {
    if (!xfer_it::wait_until([&] { return ended(); }, wait)) return grpc::Status::CANCELLED;
    if (thread_.joinable()) thread_.join();
    status_ = reader_->Finish();
    finished_ = true;
    return status_;
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::WatchChangesReply>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> changes_;
  bool ready_ = false;
  bool ended_ = false;
  bool finished_ = false;
  grpc::Status status_;
};

// WatchChanges (sync --watch of a server folder) is confined like a read:
// the token's prefix, '..', a symlink (never followed, at the folder or
// below it), and a folder moved out of the watched tree reports nothing
// more from where it went; the watched folder itself moved away ends the
// stream. Its requests are checked; streams are bounded
// per subject and in total and end with their token; a tree with more
// folders than max_watched_folders is a rescan, not more watches.
TEST_F(Attack, ChangeWatchesStayInsideTheTokenAndAreBounded) {
  XferdProcess* srv = start_with_limits(
      "max_change_watches = 3\nmax_change_watches_per_subject = 2\nmax_watched_folders = 20\n");
  ASSERT_NE(srv, nullptr);
  const fs::path pub = srv->root() / "pub";
  const fs::path out = outside(*srv);
  fs::create_directories(pub / "dir");
  fs::create_directories(srv->root() / "private");
  fs::create_directories(out / "elsewhere");
  xfer_it::write_file(pub / "file.txt", "f\n");
  fs::create_symlink(out / "elsewhere", pub / "out");
  Peer p = peer(*srv);
  const std::string tok = srv->token("/pub", false, 3600, "watcher");

  // Refused, each at once: outside the prefix, climbing out, a symlink to
  // outside the root, a file, a missing folder, out-of-range timings.
  struct Refusal {
    std::string path;
    std::uint32_t debounce_ms;
    std::uint32_t reconcile_ms;
  };
  for (const Refusal& r :
       {Refusal{"/private", 50, 0}, Refusal{"/pub/../private", 50, 0}, Refusal{"/pub/out", 50, 0},
        Refusal{"/pub/file.txt", 50, 0}, Refusal{"/pub/missing", 50, 0},
        Refusal{"/pub", 3'600'000, 0}, Refusal{"/pub", 50, 5}}) {
    SCOPED_TRACE(r.path + " " + std::to_string(r.debounce_ms) + " " +
                 std::to_string(r.reconcile_ms));
    const auto t0 = Clock::now();
    ChangeStream s(p, tok, r.path, r.debounce_ms, r.reconcile_ms);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.status().error_code(), grpc::StatusCode::OK);
    EXPECT_LT(Clock::now() - t0, 5s);
  }

  // A read-only token may watch inside its prefix; changes come as paths
  // relative to the watched folder.
  ChangeStream a(p, tok, "/pub");
  ASSERT_TRUE(a.ok()) << a.status().error_message();
  xfer_it::write_file(pub / "dir/new.txt", "n\n");
  EXPECT_TRUE(a.saw("CHANGED dir/new.txt"));

  // A folder moved out of the tree reports nothing from where it went; a
  // symlink to a folder outside is never descended.
  fs::create_directories(pub / "moving");
  EXPECT_TRUE(a.saw("CHANGED moving"));
  fs::rename(pub / "moving", out / "moved");
  EXPECT_TRUE(a.saw("REMOVED moving"));
  fs::create_symlink(out / "elsewhere", pub / "link");
  EXPECT_TRUE(a.saw("CHANGED link"));
  xfer_it::write_file(out / "moved/leak.txt", "not for this token\n");
  xfer_it::write_file(out / "elsewhere/leak2.txt", "not for this token\n");
  xfer_it::write_file(pub / "marker.txt", "m\n");
  EXPECT_TRUE(a.saw("CHANGED marker.txt"));
  std::this_thread::sleep_for(300ms);
  for (const auto& c : a.changes()) {
    EXPECT_EQ(c.find("leak"), std::string::npos) << c;
  }

  // Two streams per subject, three in total; a slot is free again once
  // its stream is cancelled.
  ChangeStream b(p, tok, "/pub/dir");
  EXPECT_TRUE(b.ok()) << b.status().error_message();
  ChangeStream c(p, tok, "/pub");
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(c.status().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(c.status().error_message().find("change watches open"), std::string::npos)
      << c.status().error_message();
  ChangeStream d(p, srv->token("/pub", false, 3600, "other"), "/pub");
  EXPECT_TRUE(d.ok()) << d.status().error_message();
  const std::string third = srv->token("/", false, 3600, "third");
  ChangeStream e(p, third, "/pub");
  EXPECT_FALSE(e.ok());
  EXPECT_NE(e.status().error_message().find("follows 3 folders already"), std::string::npos)
      << e.status().error_message();
  a.close();
  b.close();
  d.close();

  // More folders than max_watched_folders (20): a rescan, said in the log.
  for (int i = 0; i < 30; ++i) fs::create_directories(srv->root() / "big" / std::to_string(i));
  std::unique_ptr<ChangeStream> big;
  EXPECT_TRUE(xfer_it::wait_until(
      [&] {
        big = std::make_unique<ChangeStream>(p, third, "/big");
        return big->ok();
      },
      10s))
      << "the cancelled streams' slots were never freed";
  ASSERT_TRUE(big && big->ok());
  EXPECT_TRUE(big->saw("RESCAN "));
  EXPECT_NE(srv->log().find("more than 20 folders"), std::string::npos) << srv->log();
  big.reset();

  // The watched folder itself moved out of the scope: the stream ends
  // (NOT_FOUND), and nothing done where it went is reported.
  fs::create_directories(pub / "sub");
  {
    std::unique_ptr<ChangeStream> opened;
    ASSERT_TRUE(xfer_it::wait_until(
        [&] {
          opened = std::make_unique<ChangeStream>(p, tok, "/pub/sub");
          return opened->ok();
        },
        10s))
        << opened->status().error_message();
    ChangeStream& sub = *opened;
    fs::rename(pub / "sub", out / "sub-moved");
    xfer_it::write_file(out / "sub-moved/leak3.txt", "not for this token\n");
    grpc::Status gone = sub.wait_end(10s);
    EXPECT_EQ(gone.error_code(), grpc::StatusCode::NOT_FOUND) << gone.error_message();
    EXPECT_NE(gone.error_message().find("moved or removed"), std::string::npos)
        << gone.error_message();
    for (const auto& c : sub.changes()) EXPECT_EQ(c.find("leak"), std::string::npos) << c;
  }

  // A stream ends with its token.
  ChangeStream brief(p, srv->token("/pub", false, 2, "brief"), "/pub");
  ASSERT_TRUE(brief.ok()) << brief.status().error_message();
  grpc::Status end = brief.wait_end(15s);
  EXPECT_EQ(end.error_code(), grpc::StatusCode::PERMISSION_DENIED) << end.error_message();
  EXPECT_NE(end.error_message().find("expired"), std::string::npos) << end.error_message();
}

TEST_F(Attack, ChecksumStaysInsideTheTokenAndIsBoundedAndCancellable) {
  XferdProcess* srv = start_with_limits("max_checksums = 2\nmax_checksums_per_subject = 1\n");
  ASSERT_NE(srv, nullptr);
  const fs::path pub = srv->root() / "pub";
  fs::create_directories(pub / "dir");
  xfer_it::write_random_file(pub / "a.bin", 3, 3u << 20);
  xfer_it::write_file(pub / "tiny.bin", "t");
  xfer_it::write_file(srv->root() / "private.txt", "not for this token\n");
  xfer_it::write_file(outside(*srv) / "secret.txt", "outside the root\n");
  fs::create_symlink(outside(*srv) / "secret.txt", pub / "out");
  ASSERT_EQ(::mkfifo((pub / "fifo").c_str(), 0644), 0);
  {
    // A sparse file that takes many seconds to read whole.
    int fd = ::open((pub / "huge.bin").c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, std::int64_t{256} << 30), 0);
    ::close(fd);
  }
  Peer p = peer(*srv);
  const std::string tok = srv->token("/pub", false, 3600, "hasher");
  auto checksum = [&](const std::string& token, const std::string& path,
                      v1::ChecksumReply* out = nullptr, grpc::ClientContext* given = nullptr) {
    v1::PathRequest req;
    req.set_path(path);
    v1::ChecksumReply reply;
    grpc::ClientContext ctx;
    grpc::ClientContext& c = given != nullptr ? *given : ctx;
    if (given == nullptr) Peer::prepare(c, token);
    grpc::Status st = p.stub().Checksum(&c, req, &reply);
    if (out != nullptr) *out = reply;
    return st;
  };

  // The right digest for a file inside the prefix, with a read-only token.
  v1::ChecksumReply reply;
  ASSERT_TRUE(checksum(tok, "/pub/a.bin", &reply).ok());
  const std::string bytes = xfer_it::read_file(pub / "a.bin");
  xfer::Xxh3Stream128 want;
  want.update(std::as_bytes(std::span(bytes.data(), bytes.size())));
  EXPECT_EQ(reply.size(), bytes.size());
  EXPECT_EQ(reply.xxh3_high(), want.digest().first);
  EXPECT_EQ(reply.xxh3_low(), want.digest().second);

  // Refused: outside the prefix, climbing out, a symlink out of the root,
  // a FIFO (answered at once, not hung), a folder, a missing file.
  for (const char* path : {"/private.txt", "/pub/../private.txt", "/pub/out", "/pub/fifo",
                           "/pub/dir", "/pub/missing", "/pub/a.bin/x"}) {
    SCOPED_TRACE(path);
    const auto t0 = Clock::now();
    grpc::Status st = checksum(tok, path);
    EXPECT_FALSE(st.ok());
    EXPECT_LT(Clock::now() - t0, 5s);
  }

  // One checksum per subject at a time: a second is refused while the
  // first reads 256 GiB; another subject still gets one (2 in total).
  // The long call retries while a probe below holds the subject's slot.
  std::mutex ctx_mu;
  std::unique_ptr<grpc::ClientContext> long_ctx;
  bool stop_retrying = false;
  std::atomic<bool> long_done{false};
  grpc::Status long_status;
  std::thread hasher([&] {
    for (;;) {
      grpc::ClientContext* c = nullptr;
      {
        std::lock_guard lock(ctx_mu);
        if (stop_retrying) break;
        long_ctx = std::make_unique<grpc::ClientContext>();
        long_ctx->AddMetadata("authorization", "Bearer " + tok);
        long_ctx->set_deadline(std::chrono::system_clock::now() + 120s);
        c = long_ctx.get();
      }
      long_status = checksum(tok, "/pub/huge.bin", nullptr, c);
      if (long_status.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    }
    long_done.store(true);
  });
  grpc::Status second;
  EXPECT_TRUE(xfer_it::wait_until(
      [&] {
        second = checksum(tok, "/pub/tiny.bin");
        return !second.ok();
      },
      10s))
      << "a second checksum of the subject was never refused";
  EXPECT_EQ(second.error_code(), grpc::StatusCode::UNAVAILABLE) << second.error_message();
  EXPECT_NE(second.error_message().find("checksums running"), std::string::npos)
      << second.error_message();
  const std::string other = srv->token("/pub", false, 3600, "someone-else");
  EXPECT_TRUE(checksum(other, "/pub/a.bin").ok());
  EXPECT_FALSE(long_done.load()) << "256 GiB were read too fast for this test to hold a slot";

  // The caller goes away: the server stops reading and frees the slot.
  {
    std::lock_guard lock(ctx_mu);
    stop_retrying = true;
    long_ctx->TryCancel();
  }
  hasher.join();
  EXPECT_EQ(long_status.error_code(), grpc::StatusCode::CANCELLED) << long_status.error_message();
  EXPECT_TRUE(xfer_it::wait_until([&] { return checksum(tok, "/pub/a.bin").ok(); }, 5s))
      << "the cancelled checksum still holds the subject's slot";
  EXPECT_TRUE(srv->alive()) << srv->log();
}

}  // namespace
}  // namespace xfer_adv
