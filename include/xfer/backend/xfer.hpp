#pragma once
// The xfer:// backend: namespace operations over xferd's gRPC control
// channel, file data over the TCP data channel (docs/protocol.md).
//
//   xfer://host:port/path      port = the server's control port (default 7400)
//
// Credentials: EndpointOptions::token, else $XFER_TOKEN, else the table
// named "host:port" in ~/.config/xfer/credentials.toml (key "token").

#include <cstdint>
#include <memory>
#include <string>

#include "xfer/backend/backend.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/core/url.hpp"

namespace xfer {

inline constexpr std::uint16_t kDefaultXferPort = 7400;

Result<std::unique_ptr<Backend>> make_xfer_backend(const Url& url, const EndpointOptions& options);

// The token the backend would use for `url` (options, env, credentials file).
std::string find_xfer_token(const Url& url, const EndpointOptions& options);

}  // namespace xfer
