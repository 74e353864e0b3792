#pragma once
// Backends are created from URLs by scheme. Bare paths and file:// map to the
// local backend; later backends register their own schemes.

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "xfer/backend/backend.hpp"

namespace xfer {

class StreamStatsBoard;  // xfer/metrics/streams.hpp

// How to reach an endpoint beyond its URL: credentials and connection
// choices. Backends ignore what does not apply to them.
struct EndpointOptions {
  std::string token;     // bearer token (xfer://); empty: $XFER_TOKEN, then credentials.toml
  unsigned streams = 0;  // data connections; 0: the backend's default
  int encrypt = -1;      // data-channel sealing: -1 auto (off on loopback), 0 off, 1 on
  std::string tls_ca;    // CA bundle that signs the server's control-channel certificate
  bool tls = false;      // use TLS on the control channel
  // Where the backend files its per-stream statistics (TCP_INFO of its data
  // connections); null: nowhere. The CLI keeps one board per process,
  // xferd one per job.
  std::shared_ptr<StreamStatsBoard> stats_board;
  // false: use only `token`, never $XFER_TOKEN or credentials.toml (xferd's
  // jobs must not lend the server's own credentials to a client's request).
  bool ambient_credentials = true;
};

using BackendFactory =
    std::function<Result<std::unique_ptr<Backend>>(const Url&, const EndpointOptions&)>;

// Thread-safe. Not a process-wide singleton: each front end (the CLI, each
// xferd) makes its own, adds what only it serves (xferd's "xferd" scheme for
// its jobs) and hands it to the engine in TransferRequest::backends.
class BackendRegistry {
 public:
  // A registry with the built-in backends: file (and bare paths), xfer.
  static std::shared_ptr<BackendRegistry> with_builtins();

  void register_scheme(std::string scheme, BackendFactory factory);
  bool has_scheme(const std::string& scheme) const;
  // kUnsupported naming the scheme when nothing is registered for it.
  Result<std::unique_ptr<Backend>> create(const Url& url,
                                          const EndpointOptions& options = {}) const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, BackendFactory> factories_;
};

}  // namespace xfer
