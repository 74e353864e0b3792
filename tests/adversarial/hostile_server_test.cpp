// The client side of the threat model: a hostile server (a fake xferd
// control service in this process) answers `xfer cp -r` with entry names
// that would lead outside the destination. The client must refuse them and
// write nothing outside its destination. And a server that offers setuid
// files (a real xferd that keeps such bits) does not make setuid files on
// the client.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "harness.hpp"
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

TEST_F(HostileServer, ListingNamesCannotLeadOutsideTheDestination) {
  for (const std::vector<std::string>& names :
       {std::vector<std::string>{"../escaped.txt"}, std::vector<std::string>{"a/../../escaped.txt"},
        std::vector<std::string>{".."}, std::vector<std::string>{"/abs.txt"},
        std::vector<std::string>{std::string("nul\0byte", 8)}}) {
    SCOPED_TRACE(names.front());
    HostileService service(names);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    auto server = builder.BuildAndStart();
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
