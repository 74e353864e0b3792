#pragma once
// xferd: the gRPC control service, the TCP data server and the job runner
// over one served root (docs/server.md). One Server per process.

#include <memory>
#include <string>
#include <vector>

#include "xfer/core/result.hpp"
#include "xfer/server/config.hpp"

namespace xfer::server {

class Server {
 public:
  // Binds both listeners and starts serving. Errors name what failed
  // (address in use, unreadable certificate, missing root).
  static Result<std::unique_ptr<Server>> start(const ServerConfig& config);
  virtual ~Server() = default;
  virtual std::string control_address() const = 0;
  // The data listeners' addresses (one per configured data_listen).
  virtual std::vector<std::string> data_addresses() const = 0;
  // Graceful stop: refuses new work, cancels running jobs (their partials
  // and checkpoints stay for a resume), closes data connections (open
  // temporaries are removed, resumable partials kept) and waits for
  // in-flight calls up to `grace_seconds`.
  virtual void shutdown(int grace_seconds) = 0;
  // Blocks until shutdown() completed.
  virtual void wait() = 0;
};

// Loads the config, starts the server, prints the ready line on stdout
// ("xferd: listening control=ADDR data=ADDR"), serves until SIGTERM/SIGINT,
// then shuts down gracefully. Returns the process exit code (0, or 1/2 with
// "<program>: error: ..." on stderr).
int run_foreground(const std::string& config_path, const char* program);

}  // namespace xfer::server
