#pragma once
// A hostile web server for the tests: one thread, one connection at a time,
// answers scripted per request by the test (raw bytes: status line,
// headers, body, as a broken or malicious server would send them). Each
// answer ends its connection. A request's body (its Content-Length, up to
// 64 MiB) is read and dropped before the answer.
// Listens on 127.0.0.1, a port of the kernel's pick; stopped and joined
// by its destructor.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <utility>

namespace xfer::testing {

class HostileHttp {
 public:
  struct Request {
    std::string path;  // with its query
    std::optional<std::pair<std::uint64_t, std::uint64_t>> range;
    bool head = false;
  };
  using Handler = std::function<std::string(const Request&)>;
  explicit HostileHttp(Handler h) : handler_(std::move(h)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 64);
    thread_ = std::thread([this] { serve(); });
  }
  ~HostileHttp() {
    stop_.store(true);
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int requests() const { return requests_.load(); }

 private:
  void serve() {
    while (!stop_.load()) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos && req.size() < 65536) {
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<std::size_t>(n));
      }
      if (const auto at = lower(req).find("\r\ncontent-length:"); at != std::string::npos) {
        const auto end = req.find("\r\n\r\n");
        std::uint64_t body = std::strtoull(req.c_str() + at + 17, nullptr, 10);
        if (end != std::string::npos && body <= (64u << 20)) {
          std::uint64_t have = req.size() - (end + 4);
          while (have < body) {
            const ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) break;
            have += static_cast<std::uint64_t>(n);
          }
        }
      }
      Request r;
      r.head = req.rfind("HEAD ", 0) == 0;
      const auto sp1 = req.find(' ');
      const auto sp2 = req.find(' ', sp1 + 1);
      if (sp1 != std::string::npos && sp2 != std::string::npos)
        r.path = req.substr(sp1 + 1, sp2 - sp1 - 1);
      if (const auto at = req.find("Range: bytes="); at != std::string::npos) {
        std::uint64_t a = 0, b = 0;
        if (std::sscanf(req.c_str() + at + 13, "%lu-%lu", &a, &b) == 2) r.range = {{a, b}};
      }
      ++requests_;
      const std::string answer = handler_(r);
      std::size_t sent = 0;
      while (sent < answer.size()) {
        const ssize_t n = ::send(c, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
      }
      ::shutdown(c, SHUT_WR);
      ::close(c);
    }
  }
  static std::string lower(std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  }
  Handler handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

}  // namespace xfer::testing
