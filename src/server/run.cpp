// The foreground loop shared by `xferd --config` and `xfer serve`.
//
// Main thread: it waits for SIGTERM/SIGINT and stops the server.

#include <signal.h>

#include <cstdio>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "xfer/core/log.hpp"
#include "xfer/server/server.hpp"

namespace xfer::server {

int run_foreground(const std::string& config_path, const char* program) {
  auto config = load_server_config(config_path);
  if (!config) {
    fmt::print(stderr, "{}: error: {}\n", program, config.error().message());
    return 2;
  }
  // Signals are taken synchronously by this thread; every other thread
  // (gRPC, data connections, jobs) inherits the blocked mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto server = Server::start(*config);
  if (!server) {
    fmt::print(stderr, "{}: error: {}\n", program, server.error().message());
    return 1;
  }
  // data=A[,B...]: one address per data listener (tests and scripts read
  // this line).
  const std::string data = fmt::format("{}", fmt::join((*server)->data_addresses(), ","));
  fmt::print("xferd: listening control={} data={}\n", (*server)->control_address(), data);
  std::fflush(stdout);
  log().info("serving {} (control {}, data {})", config->root, (*server)->control_address(), data);
  int sig = 0;
  sigwait(&set, &sig);
  log().info("received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->shutdown(10);
  (*server)->wait();
  server->reset();
  return 0;
}

}  // namespace xfer::server
