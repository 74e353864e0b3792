// WireRelay (see wire_relay.hpp): listeners and outgoing connections made
// by the acceptor thread (inside the named network namespace), bytes copied
// by two blocking pump threads per connection and appended to that
// direction's record.
#include "wire_relay.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>

namespace xfer_it {

namespace {

// Everything recorded is capped: the tests send a few MiB.
constexpr std::size_t kMaxRecorded = std::size_t{256} << 20;

sockaddr_in ipv4(const std::string& host, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  return a;
}

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

}  // namespace

struct WireRelay::Stream {
  std::string bytes;  // guarded by WireRelay::mu_
};

WireRelay::WireRelay(std::vector<Route> routes, std::string netns)
    : routes_(std::move(routes)), netns_(std::move(netns)) {
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    error_ = errno_text("pipe");
    return;
  }
  std::promise<std::string> bound;
  auto bound_result = bound.get_future();
  acceptor_ = std::thread([this, &bound] {
    if (!netns_.empty()) {
      const int fd = ::open(("/run/netns/" + netns_).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
        bound.set_value(errno_text("setns " + netns_));
        if (fd >= 0) ::close(fd);
        return;
      }
      ::close(fd);
    }
    for (const Route& r : routes_) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      sockaddr_in a = ipv4(r.listen_host, r.listen_port);
      if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
          ::listen(fd, 64) != 0) {
        bound.set_value(
            errno_text("listen on " + r.listen_host + ":" + std::to_string(r.listen_port)));
        if (fd >= 0) ::close(fd);
        return;
      }
      listeners_.push_back(fd);
    }
    bound_ = true;
    bound.set_value("");
    accept_loop();
  });
  error_ = bound_result.get();
}

WireRelay::~WireRelay() {
  stopping_ = true;
  if (stop_pipe_[1] >= 0) (void)!::write(stop_pipe_[1], "x", 1);
  if (acceptor_.joinable()) acceptor_.join();
  {
    std::lock_guard lock(mu_);
    for (int fd : conn_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  // The pumps end once their sockets are shut down; none is added any more.
  for (std::thread& t : pumps_) t.join();
  for (int fd : conn_fds_) ::close(fd);
  for (int fd : listeners_) ::close(fd);
  for (int fd : stop_pipe_)
    if (fd >= 0) ::close(fd);
}

::testing::AssertionResult WireRelay::ready() const {
  if (bound_) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relay not listening: " << error_;
}

std::size_t WireRelay::connections() const {
  std::lock_guard lock(mu_);
  return streams_.size() / 2;
}

std::size_t WireRelay::bytes() const {
  std::lock_guard lock(mu_);
  return recorded_;
}

bool WireRelay::contains(std::string_view needle) const {
  std::lock_guard lock(mu_);
  return std::any_of(streams_.begin(), streams_.end(), [&](const std::unique_ptr<Stream>& s) {
    return s->bytes.find(needle) != std::string::npos;
  });
}

void WireRelay::clear() {
  std::lock_guard lock(mu_);
  for (auto& s : streams_) s->bytes.clear();
  recorded_ = 0;
}

void WireRelay::accept_loop() {
  std::vector<pollfd> fds;
  fds.push_back({stop_pipe_[0], POLLIN, 0});
  for (int fd : listeners_) fds.push_back({fd, POLLIN, 0});
  while (!stopping_) {
    if (::poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) return;
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if ((fds[i].revents & POLLIN) == 0) continue;
      const int in = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (in < 0) continue;
      const Route& r = routes_[i - 1];
      // Made here, so inside the relay's namespace.
      const int out = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = ipv4(r.to_host, r.to_port);
      if (out < 0 || ::connect(out, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        ::close(in);
        if (out >= 0) ::close(out);
        continue;
      }
      std::lock_guard lock(mu_);
      conn_fds_.push_back(in);
      conn_fds_.push_back(out);
      streams_.push_back(std::make_unique<Stream>());
      Stream* up = streams_.back().get();
      streams_.push_back(std::make_unique<Stream>());
      Stream* down = streams_.back().get();
      pumps_.emplace_back([this, in, out, up] { pump(in, out, up); });
      pumps_.emplace_back([this, in, out, down] { pump(out, in, down); });
    }
  }
}

void WireRelay::pump(int from, int to, Stream* stream) {
  std::vector<char> buf(256 * 1024);
  while (true) {
    const ssize_t n = ::recv(from, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    {
      std::lock_guard lock(mu_);
      const std::size_t keep =
          std::min<std::size_t>(static_cast<std::size_t>(n), kMaxRecorded - recorded_);
      stream->bytes.append(buf.data(), keep);
      recorded_ += keep;
    }
    for (ssize_t sent = 0; sent < n;) {
      const ssize_t w =
          ::send(to, buf.data() + sent, static_cast<std::size_t>(n - sent), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        ::shutdown(from, SHUT_RDWR);
        return;
      }
      sent += w;
    }
  }
  // End of one direction: pass it on, so the peer sees the close.
  ::shutdown(to, SHUT_WR);
}

}  // namespace xfer_it
