#pragma once
// A real Azure Blob server for the tests (docs/testing.md, "Real servers"):
// Azurite's blob service from the npm registry (scripts/setup.sh installs
// it into $XFER_NPM_DIR, default /opt/xfer-npm), started by the test on a
// loopback port of its own with its data in a folder of its own, and
// stopped by its PID. It runs with the emulator's well-known account
// (kAccount, kKey); one container is made at start.
//
// Not thread-safe: one test thread drives it.

#include <sys/types.h>

#include <filesystem>
#include <string>

namespace xfer::testing {

class AzuriteServer {
 public:
  static constexpr const char* kAccount = "devstoreaccount1";
  static constexpr const char* kKey =
      "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
      "KBHBeksoGMGw==";

  AzuriteServer(std::filesystem::path dir, std::string container);
  ~AzuriteServer();
  AzuriteServer(const AzuriteServer&) = delete;
  AzuriteServer& operator=(const AzuriteServer&) = delete;

  // Starts Azurite, waits until it answers and makes the container. False
  // with the reason in error().
  bool start();
  void stop();
  bool running() const { return pid_ > 0; }
  // Makes another container (a request signed with the account's key).
  bool make_container(const std::string& name);
  // A signed request's status and body, for what a test checks on the
  // server itself (a blob's block list). `path_and_query` follows the
  // account: "/container/blob?comp=blocklist&blocklisttype=uncommitted".
  long request(const std::string& method, const std::string& path_and_query, std::string* body);

  // "http://127.0.0.1:PORT/devstoreaccount1"
  std::string endpoint() const;
  int port() const { return port_; }
  const std::string& container() const { return container_; }
  const std::string& error() const { return error_; }

 private:
  bool spawn();
  std::filesystem::path dir_;
  std::string container_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::string error_;
};

}  // namespace xfer::testing
