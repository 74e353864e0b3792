#pragma once
// A real OpenSSH sshd for the tests: started by the test on a loopback
// port with a config, host key and client key of its own (made with
// ssh-keygen in its folder), accepting that key for the user running the
// test; stopped by its PID. SFTP is its internal-sftp.
//
// Not thread-safe: one test thread drives it.

#include <sys/types.h>

#include <filesystem>
#include <string>

namespace xfer::testing {

class SshdServer {
 public:
  explicit SshdServer(std::filesystem::path dir);
  ~SshdServer();
  SshdServer(const SshdServer&) = delete;
  SshdServer& operator=(const SshdServer&) = delete;

  // Starts sshd and waits until it answers; false with error() otherwise
  // (sshd or ssh-keygen missing, the port taken).
  bool start();
  void stop();  // SIGTERM, then SIGKILL after 5 s; waits. Idempotent.
  // SIGKILL to sshd and to every session process it forked (they run in
  // sessions of their own): the server dies mid-transfer.
  void kill9();
  // start() again on the same port with the same keys.
  bool restart();
  // Before start(): let users log in with a password too.
  void allow_passwords(bool allow) { passwords_ = allow; }
  // Before start(): the command sshd runs as its sftp subsystem (a
  // hostile server of the test's) instead of its own internal-sftp.
  void set_sftp_subsystem(std::string command) { subsystem_ = std::move(command); }
  // Accepts the public key in `pub` too (appended to authorized_keys).
  void authorize(const std::filesystem::path& pub);
  bool running() const { return pid_ > 0; }

  int port() const { return port_; }
  std::string user() const;  // the user running the test
  std::filesystem::path client_key() const { return dir_ / "client_ed25519"; }
  std::filesystem::path host_public_key() const { return dir_ / "host_ed25519.pub"; }
  // A known_hosts file holding this server's key for [127.0.0.1]:port
  // (written by start()).
  std::filesystem::path known_hosts() const { return dir_ / "known_hosts"; }
  const std::string& error() const { return error_; }
  std::string log() const;

 private:
  std::filesystem::path dir_;
  int port_ = 0;
  pid_t pid_ = -1;
  bool passwords_ = false;
  std::string subsystem_ = "internal-sftp";
  std::string error_;
};

}  // namespace xfer::testing
