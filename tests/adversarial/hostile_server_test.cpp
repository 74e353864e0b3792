// The client side of the threat model: a hostile server (a fake xferd
// control service in this process) answers `xfer cp -r` with entry names
// that would lead outside the destination. The client must refuse them and
// write nothing outside its destination.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "harness.hpp"
#include "xfer/v1/xfer.grpc.pb.h"

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

}  // namespace
}  // namespace xfer_adv
