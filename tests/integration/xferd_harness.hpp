// An xferd server for the integration tests: XferdProcess writes a config in
// its own folder, starts the real `xferd` ($XFERD_BIN) in the foreground in a
// process group of its own, waits for its "xferd: listening ..." line and
// stops it again (always: the destructor stops it by PID).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "harness.hpp"

namespace xfer_it {

// Path of the xferd binary from $XFERD_BIN ("" if unset).
std::string xferd_bin();

struct XferdOptions {
  std::string secret = "0123456789abcdef0123456789abcdef";
  bool auth_required = true;
  // Extra TOML appended to the generated config (e.g. "[limits]\n...").
  std::string extra_toml;
  // Extra lines inside the [server] table (e.g. "user = \"nobody\"\n").
  std::string server_extra;
  // RLIMIT_NOFILE (soft and hard) for the server; 0 = inherited.
  unsigned long rlimit_nofile = 0;
  // Variables added to (or replacing in) the server's environment.
  std::vector<std::pair<std::string, std::string>> env;
  // The address both listeners bind (a lab host's address, say).
  std::string host = "127.0.0.1";
  // More data listeners, one per address (a lab host's second NIC): xferd
  // advertises each to clients as a path.
  std::vector<std::string> more_data_hosts;
  // Run xferd through this command (e.g. {netlab, "exec", "--lab", L, "b",
  // "--"}: xferd inside a lab host). Its first word is an absolute path.
  std::vector<std::string> command_prefix;
};

// How a stopped xferd ended.
struct XferdExit {
  bool was_running = false;  // there was a process to stop
  bool exited = false;       // WIFEXITED
  int code = -1;             // WEXITSTATUS when exited
  int signal = 0;            // WTERMSIG when killed by a signal
  bool escalated = false;    // stop() had to SIGKILL it after the grace period
  double seconds = 0;        // from the first signal until it was reaped
  std::string describe() const;
};

class XferdProcess {
 public:
  // `dir` is created; it holds the config, root/, state/ (outside root) and
  // the server's logs. Does not start the server: call start().
  explicit XferdProcess(std::filesystem::path dir, XferdOptions opt = {});
  ~XferdProcess();
  XferdProcess(const XferdProcess&) = delete;
  XferdProcess& operator=(const XferdProcess&) = delete;

  // Starts xferd and waits (up to `timeout`) for its ready line. The first
  // start listens on any free ports; later starts (restart) re-use the ports
  // it got the first time (they are written into the config). Returns an
  // assertion result naming what went wrong (with the server's log).
  ::testing::AssertionResult start(std::chrono::seconds timeout = std::chrono::seconds(10));
  // stop() (if running), then start() on the same ports. Retries for a few
  // seconds while the old ports are still busy.
  ::testing::AssertionResult restart();

  // SIGTERM, wait up to `grace`, then SIGKILL. Idempotent.
  XferdExit stop(std::chrono::seconds grace = std::chrono::seconds(10));
  // SIGKILL at once and reap.
  XferdExit kill9();

  // Still running (not exited, not reaped)?
  bool alive();
  pid_t pid() const { return pid_; }

  const std::string& control_address() const { return control_; }    // 127.0.0.1:PORT
  const std::string& data_address() const { return data_.front(); }  // 127.0.0.1:PORT
  // Every data listener's address, data_address() first.
  const std::vector<std::string>& data_addresses() const { return data_; }
  int data_port() const { return data_ports_.empty() ? 0 : data_ports_.front(); }
  int control_port() const { return control_port_; }

  // "xfer://127.0.0.1:PORT" + path ("/" added in front when missing).
  std::string url(std::string_view path = "/") const;
  // `xferd token --config ... --prefix P [--write] --ttl TTL`; empty string
  // and a test failure if that fails.
  // Limits are per token subject: `subject` names who the token is for.
  std::string token(const std::string& prefix = "/", bool write = true, long ttl = 3600,
                    const std::string& subject = "xfer-it") const;

  const std::filesystem::path& dir() const { return dir_; }
  const std::filesystem::path& root() const { return root_; }
  const std::filesystem::path& state_dir() const { return state_; }
  const std::filesystem::path& config_path() const { return config_; }
  // Everything the current (or last) run printed, stdout and stderr.
  std::string log() const;

 private:
  void write_config() const;
  // Reaps the child if it has exited (non-blocking); true if it is gone.
  bool reap_nonblocking(int* status);

  std::filesystem::path dir_, root_, state_, config_, log_path_;
  XferdOptions opt_;
  pid_t pid_ = -1;
  XferdExit reaped_;  // how the last run ended (once reaped)
  int runs_ = 0;
  int control_port_ = 0;
  std::vector<int> data_ports_;  // one per data listener, 0 until the first start
  std::string control_;
  std::vector<std::string> data_ = {""};
};

// Free-text helper: the entries below `dir` (recursive) whose name contains
// ".xfer-" (temporaries ".xfer-tmp-*", partials ".xfer-part-*").
std::vector<std::string> xfer_hidden_files(const std::filesystem::path& dir);

}  // namespace xfer_it
