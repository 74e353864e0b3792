#pragma once
// The xfer:// backend: namespace operations over xferd's gRPC control
// channel, file data over the TCP data channel (docs/protocol.md).
//
//   xfer://host:port/path      port = the server's control port (default 7400)
//
// Credentials: the profile's token (profile.hpp: --token, the remote's,
// $XFER_TOKEN, the ["host:port"] table of credentials.toml); TLS when the
// options or the remote say so (tls = "true", tls_ca = FILE).

#include <cstdint>
#include <memory>
#include <string>

#include "xfer/backend/backend.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/core/url.hpp"

namespace xfer {

// kDefaultXferPort (7400): include/xfer/core/url.hpp.

Result<std::unique_ptr<Backend>> make_xfer_backend(const Url& url, const Profile& profile,
                                                   const EndpointOptions& options);

// The connection choices of `options` with the profile's TLS settings added.
EndpointOptions with_profile_tls(EndpointOptions options, const Profile& profile);

}  // namespace xfer
