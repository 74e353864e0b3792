#pragma once
// The client side of the control channel, shared by the xfer:// backend and
// third-party transfers: how an endpoint is named, how its channel is built
// (TLS with --tls/--tls-ca), how a call is authenticated.
//
// Stateless functions: any thread.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "xfer/backend/registry.hpp"
#include "xfer/core/result.hpp"
#include "xfer/core/url.hpp"
#include "xfer/v1/xfer.grpc.pb.h"

namespace xfer {

// "host:port" ("[v6]:port"), the default port filled in.
std::string endpoint_name(const Url& url);
// A stub on a channel to `url`: TLS when options.tls or a CA bundle is
// given (the bundle is read here; an unreadable one is an error). A reply
// larger than `max_receive_bytes` fails its call (RESOURCE_EXHAUSTED)
// before it is parsed.
Result<std::unique_ptr<xfer::v1::Xfer::Stub>> make_control_stub(const Url& url,
                                                                const EndpointOptions& options,
                                                                int max_receive_bytes = 64 << 20);
// Deadline and "authorization: Bearer <token>" (none when token is empty).
void prepare_call(grpc::ClientContext& ctx, const std::string& token, std::chrono::seconds timeout);

}  // namespace xfer
