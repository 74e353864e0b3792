// WireRelay: a TCP relay for tests that records every byte passing through
// it, to show what a client and xferd put on the wire (sealing is visible,
// or its absence is). Each route listens on one address and forwards every
// accepted connection to one target; both directions of every connection
// are kept whole in memory (up to a cap) so a test can search them.
//
// Threading: one acceptor thread (made inside a network namespace when one
// is named: it setns(2)s first, so every socket it creates — listeners and
// the outgoing connections — belongs to that namespace) and two pump
// threads per relayed connection. The recorded streams are guarded by a
// mutex; the destructor stops and joins everything.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace xfer_it {

class WireRelay {
 public:
  struct Route {
    std::string listen_host;  // a numeric IPv4 address
    int listen_port = 0;
    std::string to_host;  // a numeric IPv4 address
    int to_port = 0;
  };

  // Binds every route (inside /run/netns/`netns` when not empty) and starts
  // relaying. ready() says whether that worked.
  explicit WireRelay(std::vector<Route> routes, std::string netns = "");
  ~WireRelay();
  WireRelay(const WireRelay&) = delete;
  WireRelay& operator=(const WireRelay&) = delete;

  // Success once every listener is bound, else what failed.
  ::testing::AssertionResult ready() const;
  // Connections accepted so far, over all routes.
  std::size_t connections() const;
  // Bytes recorded so far, both directions of every connection.
  std::size_t bytes() const;
  // Whether `needle` occurs in one recorded direction of one connection.
  bool contains(std::string_view needle) const;
  // Forgets what was recorded (connections stay relayed).
  void clear();

 private:
  struct Stream;
  void accept_loop();
  void pump(int from, int to, Stream* stream);

  std::vector<Route> routes_;
  std::string netns_;
  std::vector<int> listeners_;
  int stop_pipe_[2] = {-1, -1};
  std::string error_;
  std::atomic<bool> bound_{false};
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Stream>> streams_;  // guarded by mu_
  std::vector<int> conn_fds_;                     // guarded by mu_; closed at the end
  std::vector<std::thread> pumps_;                // guarded by mu_
  std::size_t recorded_ = 0;                      // guarded by mu_
  std::thread acceptor_;
};

}  // namespace xfer_it
