#pragma once
// A fault-injecting HTTP proxy in front of a real server (fault_proxy.py,
// run with python3 from the source tree): it forwards every request to
// the upstream except those its rules catch, which it answers with a
// throttle (503 SlowDown, 429, with Retry-After) or cuts mid-body. Its log
// has a line per request: "<seconds> <fwd|503|429|cut> <METHOD> <target>".
// Started by the constructor on a port of the kernel's pick, stopped by
// its PID in the destructor.
//
// Not thread-safe: one test thread drives it.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common.hpp"

namespace xfer::testing {

class FaultProxy {
 public:
  struct Line {
    double t = 0;
    std::string action, method, target;
  };
  // `rules_json`: a JSON list of {"method", "match", "do", "times",
  // "retry_after", "after"} (fault_proxy.py).
  FaultProxy(const std::string& script, int upstream, const std::filesystem::path& dir,
             const std::string& rules_json)
      : port_file_(dir / "fault_proxy.port"), log_(dir / "fault_proxy.log") {
    std::filesystem::create_directories(dir);
    std::filesystem::remove(port_file_);
    pid_ = spawn({"/usr/bin/python3", script, std::to_string(upstream), port_file_.string(),
                  log_.string(), rules_json});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(port_file_);
      if (in >> port_) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~FaultProxy() { stop_child(pid_); }
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  bool running() const { return pid_ > 0 && port_ > 0; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<Line> lines() const {
    std::vector<Line> out;
    std::ifstream in(log_);
    std::string text;
    while (std::getline(in, text)) {
      std::istringstream ls(text);
      Line l;
      if (ls >> l.t >> l.action >> l.method >> l.target) out.push_back(l);
    }
    return out;
  }

 private:
  std::filesystem::path port_file_;
  std::filesystem::path log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace xfer::testing
