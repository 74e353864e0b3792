// The client side of the threat model: a hostile server (a fake xferd
// control service in this process) answers `xfer cp -r` with entry names
// that would lead outside the destination. The client must refuse them and
// write nothing outside its destination. And a server that offers setuid
// files (a real xferd that keeps such bits) does not make setuid files on
// the client. And a server whose data port answers the handshake a byte at
// a time costs the client one handshake timeout, not a hang. And the
// changes a server streams to `sync --watch` cannot name paths outside the
// destination either.

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "xfer/protocol/frame.hpp"
#include "xfer/v1/xfer.grpc.pb.h"
#include "xferd_harness.hpp"

namespace xfer_adv {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::xfer::v1;
using namespace std::chrono_literals;

// Serves a folder "/d" whose listing holds the names given.
class HostileService final : public v1::Xfer::Service {
 public:
  explicit HostileService(std::vector<std::string> names) : names_(std::move(names)) {}

  grpc::Status ServerInfo(grpc::ServerContext*, const v1::Empty*,
                          v1::ServerInfoReply* resp) override {
    resp->set_version("xferd 0.1.0");
    resp->set_protocol_version(1);
    return grpc::Status::OK;
  }
  grpc::Status Stat(grpc::ServerContext*, const v1::PathRequest* req,
                    v1::FileAttrs* resp) override {
    if (req->path() == "/d" || req->path() == "/d/") {
      resp->set_type(v1::ENTRY_DIRECTORY);
      resp->set_mode(0755);
      resp->set_mtime_ns(1'600'000'000'000'000'000LL);
      return grpc::Status::OK;
    }
    resp->set_type(v1::ENTRY_FILE);
    resp->set_size(4);
    resp->set_mode(0644);
    return grpc::Status::OK;
  }
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest*,
                    grpc::ServerWriter<v1::ListReply>* writer) override {
    v1::ListReply reply;
    for (const auto& n : names_) {
      auto* e = reply.add_entries();
      e->set_name(n);
      e->set_type(v1::ENTRY_FILE);
      e->mutable_attrs()->set_type(v1::ENTRY_FILE);
      e->mutable_attrs()->set_size(4);
      e->mutable_attrs()->set_mode(0644);
    }
    writer->Write(reply);
    return grpc::Status::OK;
  }

 private:
  std::vector<std::string> names_;
};

class HostileServer : public xfer_it::XferTest {};

// A fake control service on a loopback port of its own (`port`).
std::unique_ptr<grpc::Server> serve(grpc::Service& service, int& port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  return builder.BuildAndStart();
}

TEST_F(HostileServer, ListingNamesCannotLeadOutsideTheDestination) {
  for (const std::vector<std::string>& names :
       {std::vector<std::string>{"../escaped.txt"}, std::vector<std::string>{"a/../../escaped.txt"},
        std::vector<std::string>{".."}, std::vector<std::string>{"/abs.txt"},
        std::vector<std::string>{std::string("nul\0byte", 8)}}) {
    SCOPED_TRACE(names.front());
    HostileService service(names);
    int port = 0;
    auto server = serve(service, port);
    ASSERT_TRUE(server);
    const fs::path dst = tmp() / "dst";
    auto r = xfer_it::run_xfer({"--token", "t", "cp", "-r", "--no-progress",
                                "xfer://127.0.0.1:" + std::to_string(port) + "/d", dst.string()},
                               60s);
    server->Shutdown(std::chrono::system_clock::now() + 1s);
    EXPECT_NE(r.exit_code, 0) << r.describe();
    EXPECT_TRUE(xfer_it::icontains(r.err, "invalid entry name")) << r.describe();
    // Nothing beside the destination, nothing anywhere named like the bait.
    for (const auto& e : fs::recursive_directory_iterator(tmp())) {
      EXPECT_EQ(e.path().filename().string().find("escaped"), std::string::npos) << e.path();
      EXPECT_EQ(e.path().filename().string().find("abs"), std::string::npos) << e.path();
    }
  }
}

// A name listed twice (a file and a folder of one name could make a sync
// write through a symlink it just made): the folder is refused as corrupt
// and nothing of that name is made.
TEST_F(HostileServer, ANameListedTwiceIsRefusedBySync) {
  HostileService service({"twice", "other", "twice"});
  int port = 0;
  auto server = serve(service, port);
  ASSERT_TRUE(server);
  const fs::path dst = tmp() / "dst";
  auto r = xfer_it::run_xfer({"--token", "t", "sync", "--delete", "--no-progress",
                              "xfer://127.0.0.1:" + std::to_string(port) + "/d/", dst.string()},
                             60s);
  server->Shutdown(std::chrono::system_clock::now() + 1s);
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(xfer_it::icontains(r.err, "a name is listed twice")) << r.describe();
  EXPECT_FALSE(fs::exists(dst / "twice"));
}

// sync --bidirectional against a server whose listing is corrupt (a name
// twice, a name that climbs out): the run stops before it changes anything
// on the local side, and no state is written that could later turn the
// bad listing into deletions.
TEST_F(HostileServer, ACorruptListingStopsABidirectionalSyncBeforeAnyChange) {
  const std::vector<std::vector<std::string>> listings = {{"twice", "other", "twice"},
                                                          {"fine", "../escaped"}};
  for (std::size_t i = 0; i < listings.size(); ++i) {
    HostileService service(listings[i]);
    int port = 0;
    auto server = serve(service, port);
    ASSERT_TRUE(server);
    const fs::path local = tmp() / ("local" + std::to_string(i));
    fs::create_directories(local);
    xfer_it::write_file(local / "keep.txt", "mine\n");
    auto r = xfer_it::run_xfer({"--token", "t", "sync", "--bidirectional", "--no-progress",
                                local.string(), "xfer://127.0.0.1:" + std::to_string(port) + "/d"},
                               60s);
    server->Shutdown(std::chrono::system_clock::now() + 1s);
    EXPECT_EQ(r.exit_code, 1) << r.describe();
    EXPECT_TRUE(xfer_it::icontains(r.err, i == 0 ? "listed twice" : "invalid")) << r.describe();
    EXPECT_EQ(xfer_it::list_relative(local), std::vector<std::string>{"keep.txt"});
    EXPECT_EQ(xfer_it::read_file(local / "keep.txt"), "mine\n");
    EXPECT_FALSE(fs::exists(tmp() / "escaped"));
  }
  const fs::path states = state_dir() / "bisync";
  if (fs::exists(states)) {
    for (const auto& e : fs::directory_iterator(states)) {
      EXPECT_NE(e.path().extension(), ".state") << e.path();
    }
  }
}

// A data port that accepts connections and answers every HELLO with a
// valid HELLO_OK header announcing a 4 KiB body, one byte every 300 ms:
// each read succeeds long before any per-read timeout, so only a deadline
// on the whole handshake ends it (otherwise about 20 minutes).
class TricklingDataPort {
 public:
  TricklingDataPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 && ::listen(fd_, 16) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port_ = ntohs(a.sin_port);
    }
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TricklingDataPort() {
    stop_ = true;
    acceptor_.join();
    for (auto& t : tricklers_) t.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  int connections() const { return connections_.load(); }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++connections_;
      tricklers_.emplace_back([this, c] { trickle(c); });
    }
  }
  void trickle(int c) {
    xfer::protocol::FrameHeader h;
    h.type = xfer::protocol::FrameType::kHelloOk;
    h.length = 4096;
    const auto header = xfer::protocol::encode_header(h);
    std::vector<std::byte> bytes(header.begin(), header.end());
    bytes.resize(bytes.size() + 4096, std::byte{0});
    for (std::size_t i = 0; i < bytes.size() && !stop_; ++i) {
      if (::send(c, &bytes[i], 1, MSG_NOSIGNAL) != 1) break;
      for (int k = 0; k < 3 && !stop_; ++k) std::this_thread::sleep_for(100ms);
    }
    ::close(c);
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  std::vector<std::thread> tricklers_;  // the acceptor's; joined after it
};

// Offers one 8 MiB file, "/f.bin", over a session whose data address is
// the trickling port.
class TricklingService final : public v1::Xfer::Service {
 public:
  explicit TricklingService(int data_port) : data_port_(data_port) {}
  grpc::Status Stat(grpc::ServerContext*, const v1::PathRequest*, v1::FileAttrs* resp) override {
    resp->set_type(v1::ENTRY_FILE);
    resp->set_size(8u << 20);
    resp->set_mode(0644);
    return grpc::Status::OK;
  }
  grpc::Status OpenSession(grpc::ServerContext*, const v1::OpenSessionRequest* req,
                           v1::Session* resp) override {
    resp->set_session_id("s");
    resp->set_data_token("t");
    resp->add_data_addresses("127.0.0.1:" + std::to_string(data_port_));
    resp->set_streams(req->streams());
    return grpc::Status::OK;
  }
  grpc::Status CloseSession(grpc::ServerContext*, const v1::CloseSessionRequest*,
                            v1::Empty*) override {
    return grpc::Status::OK;
  }

 private:
  int data_port_;
};

// Serves an empty folder "/d" and answers WatchChanges with changes whose
// paths would lead outside the destination, an unknown kind, and (when
// `say_ready` is false) a first answer that is not `ready`.
class HostileWatchService final : public v1::Xfer::Service {
 public:
  explicit HostileWatchService(bool say_ready) : say_ready_(say_ready) {}
  grpc::Status ServerInfo(grpc::ServerContext*, const v1::Empty*,
                          v1::ServerInfoReply* resp) override {
    resp->set_version("xferd 0.1.0");
    resp->set_protocol_version(1);
    return grpc::Status::OK;
  }
  grpc::Status Stat(grpc::ServerContext*, const v1::PathRequest*, v1::FileAttrs* resp) override {
    resp->set_type(v1::ENTRY_DIRECTORY);
    resp->set_mode(0755);
    resp->set_mtime_ns(1'600'000'000'000'000'000LL);
    return grpc::Status::OK;
  }
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest*,
                    grpc::ServerWriter<v1::ListReply>*) override {
    return grpc::Status::OK;
  }
  grpc::Status WatchChanges(grpc::ServerContext* ctx, const v1::WatchChangesRequest*,
                            grpc::ServerWriter<v1::WatchChangesReply>* writer) override {
    v1::WatchChangesReply reply;
    reply.set_ready(say_ready_);
    auto add = [&](v1::WatchChange::Kind kind, const std::string& path,
                   const std::string& from = "") {
      auto* c = reply.add_changes();
      c->set_kind(kind);
      c->set_path(path);
      c->set_from(from);
    };
    if (say_ready_) {
      writer->Write(reply);
      reply.Clear();
    }
    add(v1::WatchChange::CHANGED, "../escaped.txt");
    add(v1::WatchChange::CHANGED, "/abs-escaped.txt");
    add(v1::WatchChange::CHANGED, "a//b");
    add(v1::WatchChange::CHANGED, "");
    add(v1::WatchChange::REMOVED, "..");
    add(v1::WatchChange::RENAMED, "fine.txt", "../../escaped-from");
    add(v1::WatchChange::RENAMED, "../escaped-to", "fine.txt");
    add(static_cast<v1::WatchChange::Kind>(99), "odd.txt");
    writer->Write(reply);
    sent_.store(true);
    while (!ctx->IsCancelled()) std::this_thread::sleep_for(50ms);
    return grpc::Status::OK;
  }
  bool sent() const { return sent_.load(); }

 private:
  bool say_ready_;
  std::atomic<bool> sent_{false};
};

// sync --watch of a hostile server's folder: every change whose path could
// lead outside the destination (or of an unknown kind) is refused, with a
// warning, and replaced by a rescan of the checked listing; nothing is
// written outside the destination. A server whose first answer does not
// say it is watching is an error at once.
TEST_F(HostileServer, ChangesFromAServerCannotLeadOutsideTheDestination) {
  {
    HostileWatchService service(true);
    int port = 0;
    auto server = serve(service, port);
    ASSERT_TRUE(server);
    const fs::path dst = tmp() / "dst";
    std::chrono::steady_clock::time_point sent_at{};
    auto r = xfer_it::run_xfer_signal_when(
        {"--token", "t", "sync", "--watch", "--no-progress",
         "xfer://127.0.0.1:" + std::to_string(port) + "/d/", dst.string() + "/"},
        SIGINT,
        [&](pid_t) {
          if (!service.sent()) return false;
          if (sent_at == std::chrono::steady_clock::time_point{}) {
            sent_at = std::chrono::steady_clock::now();
          }
          return std::chrono::steady_clock::now() - sent_at > 2s;
        },
        nullptr, 60s);
    server->Shutdown(std::chrono::system_clock::now() + 1s);
    EXPECT_EQ(r.result.exit_code, 0) << r.result.describe();
    EXPECT_TRUE(xfer_it::icontains(r.result.err, "refused a change from the server"))
        << r.result.describe();
    EXPECT_TRUE(xfer_it::icontains(r.result.err, "unknown kind of change")) << r.result.describe();
    for (const auto& e : fs::recursive_directory_iterator(tmp())) {
      EXPECT_EQ(e.path().filename().string().find("escaped"), std::string::npos) << e.path();
    }
  }
  {
    HostileWatchService service(false);
    int port = 0;
    auto server = serve(service, port);
    ASSERT_TRUE(server);
    auto r = xfer_it::run_xfer(
        {"--token", "t", "sync", "--watch", "--no-progress",
         "xfer://127.0.0.1:" + std::to_string(port) + "/d/", (tmp() / "dst2").string() + "/"},
        60s);
    server->Shutdown(std::chrono::system_clock::now() + 1s);
    EXPECT_EQ(r.exit_code, 1) << r.describe();
    EXPECT_TRUE(xfer_it::icontains(r.err, "did not say the folder is watched")) << r.describe();
  }
}

TEST_F(HostileServer, ATricklingHandshakeCostsOneTimeoutNotAHang) {
  TricklingDataPort data;
  ASSERT_NE(data.port(), 0);
  TricklingService service(data.port());
  int port = 0;
  auto server = serve(service, port);
  ASSERT_TRUE(server);
  const fs::path dst = tmp() / "f.bin";
  // One try: the engine would otherwise try the file again, a timeout each.
  auto r = xfer_it::run_xfer({"--token", "t", "cp", "--no-progress", "--max-attempts", "1",
                              "xfer://127.0.0.1:" + std::to_string(port) + "/f.bin", dst.string()},
                             90s);
  server->Shutdown(std::chrono::system_clock::now() + 1s);
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(xfer_it::icontains(r.err, "did not finish the handshake")) << r.describe();
  EXPECT_GE(data.connections(), 1);
  EXPECT_FALSE(fs::exists(dst));
}

// A real xferd that keeps setuid/setgid/sticky bits (allow_special_bits)
// serves such files: the client takes the permission bits only.
TEST_F(HostileServer, SpecialBitsFromAServerAreNotApplied) {
  xfer_it::XferdOptions o;
  o.server_extra = "allow_special_bits = true\n";
  xfer_it::XferdProcess srv(tmp() / "srv", o);
  ASSERT_TRUE(srv.start());
  const fs::path d = srv.root() / "d";
  fs::create_directories(d / "shared");
  xfer_it::write_file(d / "suid.bin", "#!/bin/sh\n");
  xfer_it::write_file(d / "shared" / "sgid.bin", "x");
  ASSERT_EQ(::chmod((d / "suid.bin").c_str(), 04755), 0);
  ASSERT_EQ(::chmod((d / "shared" / "sgid.bin").c_str(), 02750), 0);
  ASSERT_EQ(::chmod((d / "shared").c_str(), 03777), 0);
  const fs::path dst = tmp() / "dst";
  auto r = xfer_it::run_xfer(
      {"--token", srv.token(), "cp", "-r", "--no-progress", srv.url("/d"), dst.string()}, 60s);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const fs::path single = tmp() / "single.bin";
  auto r2 = xfer_it::run_xfer(
      {"--token", srv.token(), "cp", "--no-progress", srv.url("/d/suid.bin"), single.string()},
      60s);
  ASSERT_EQ(r2.exit_code, 0) << r2.describe();
  for (const auto& [path, perms] :
       {std::pair{dst / "suid.bin", 0755u}, std::pair{dst / "shared" / "sgid.bin", 0750u},
        std::pair{single, 0755u}}) {
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
    EXPECT_EQ(st.st_mode & 07777, perms) << path;
  }
  struct stat dir {};
  ASSERT_EQ(::stat((dst / "shared").c_str(), &dir), 0);
  EXPECT_EQ(dir.st_mode & 07000, 0u) << "the folder kept its setgid/sticky bits";
}

}  // namespace
}  // namespace xfer_adv
