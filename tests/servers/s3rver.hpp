#pragma once
// A real S3 server for the tests (docs/testing.md, "Real servers"): s3rver
// from the npm registry (scripts/setup.sh installs it into $XFER_NPM_DIR,
// default /opt/xfer-npm), started by the test on a loopback port of its
// own with its data in a folder of its own, and stopped by its PID. Its
// keys are S3RVER/S3RVER; one bucket is made at start.
//
// Not thread-safe: one test thread drives it.

#include <sys/types.h>

#include <filesystem>
#include <string>

namespace xfer::testing {

class S3rverServer {
 public:
  S3rverServer(std::filesystem::path dir, std::string bucket);
  ~S3rverServer();
  S3rverServer(const S3rverServer&) = delete;
  S3rverServer& operator=(const S3rverServer&) = delete;

  // Starts s3rver and waits until it answers. False with the reason in
  // error(): Node or s3rver not installed, a port taken twice.
  bool start();
  void stop();
  // SIGKILL at once (a server that dies mid-transfer), and a restart on
  // the same port with the same data.
  void kill9();
  bool restart();
  bool running() const { return pid_ > 0; }

  // Makes another bucket (s3rver takes an unsigned PUT). False with the
  // reason in error().
  bool make_bucket(const std::string& name);
  // "http://127.0.0.1:PORT"
  std::string endpoint() const;
  const std::string& bucket() const { return bucket_; }
  int port() const { return port_; }
  const std::filesystem::path& data() const { return data_; }
  const std::string& error() const { return error_; }
  // Environment for an xfer child: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
  // AWS_ENDPOINT_URL as "NAME=value ..." for a shell line.
  std::string env() const;

 private:
  bool spawn();
  std::filesystem::path dir_;
  std::filesystem::path data_;
  std::string bucket_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string error_;
};

}  // namespace xfer::testing
