#pragma once
// The xfer:// backend: namespace operations over xferd's gRPC control
// channel, file data over the TCP data channel (docs/protocol.md).
//
//   xfer://host:port/path      port = the server's control port (default 7400)
//
// Credentials: EndpointOptions::token, else $XFER_TOKEN, else the table
// named "host:port" in ~/.config/xfer/credentials.toml (key "token").

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "xfer/backend/backend.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/core/url.hpp"
#include "xfer/engine/options.hpp"
#include "xfer/metrics/metrics.hpp"

namespace xfer {

inline constexpr std::uint16_t kDefaultXferPort = 7400;

Result<std::unique_ptr<Backend>> make_xfer_backend(const Url& url, const EndpointOptions& options);

// The token the backend would use for `url` (options, env, credentials file).
std::string find_xfer_token(const Url& url, const EndpointOptions& options);

// Third-party transfer (both ends xfer://): asks the destination server for
// a token restricted to the destination, then asks the source server to run
// the transfer itself (data flows A -> B, never through this process), and
// follows the job's progress into `counters`. Returns the job's final
// figures; errors are the job's.
struct ThirdPartyResult {
  std::uint64_t files_done = 0;
  std::uint64_t files_failed = 0;
  std::uint64_t bytes_done = 0;
  double seconds = 0;
  int exit_code = 0;
  std::string message;
  std::string job_id;
};
Result<ThirdPartyResult> run_third_party(const TransferRequest& request, TransferCounters& counters,
                                         const std::atomic<bool>* cancel);

}  // namespace xfer
