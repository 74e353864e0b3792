#pragma once
// A real nginx for the tests (docs/testing.md, "Real servers"): started by
// the test on loopback with a config of its own, in a folder of its own,
// and stopped by its PID. One process serves one root folder on three
// ports: plain HTTP with the HTML autoindex, plain HTTP with the JSON
// autoindex, and HTTPS (HTTP/2, HTML autoindex) with a certificate signed
// by a CA the harness makes with the openssl command (ca_file()).
//
// Not thread-safe: one test thread drives it.

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace xfer::testing {

class NginxServer {
 public:
  // Everything lives below `dir`: root/ (served), conf, logs, tls/.
  explicit NginxServer(std::filesystem::path dir);
  ~NginxServer();
  NginxServer(const NginxServer&) = delete;
  NginxServer& operator=(const NginxServer&) = delete;

  // Starts nginx (its ports picked now) and waits until it answers. False
  // with the reason in error(): nginx not installed, a port taken twice.
  bool start();
  // SIGTERM, then SIGKILL after 5 s; waits for it. Idempotent.
  void stop();
  // SIGKILL at once (a server that dies mid-transfer).
  void kill9();
  // Starts again on the same ports.
  bool restart();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  const std::filesystem::path& root() const { return root_; }
  // The CA that signed the HTTPS certificate (PEM).
  std::filesystem::path ca_file() const { return dir_ / "tls" / "ca.pem"; }
  // URLs of `path` (starting with '/') on each port.
  std::string http_url(std::string_view path = "/") const;
  std::string json_url(std::string_view path = "/") const;
  std::string https_url(std::string_view path = "/") const;
  int http_port() const { return http_port_; }
  const std::string& error() const { return error_; }
  // nginx's error log, for failure messages.
  std::string log() const;

 private:
  bool make_tls();
  void write_config() const;
  bool spawn();

  std::filesystem::path dir_;
  std::filesystem::path root_;
  int http_port_ = 0;
  int json_port_ = 0;
  int https_port_ = 0;
  pid_t pid_ = -1;
  std::string error_;
};

}  // namespace xfer::testing
