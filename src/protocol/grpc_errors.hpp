#pragma once
// xfer Error <-> gRPC status, shared by the client backend and xferd.
// The gRPC code carries the coarse class; trailing metadata "xfer-error"
// = "<ErrorCode>:<RetryClass>" carries the exact one, so a client sees the
// same Error the server's backend produced.
//
// Stateless: any thread.

#include <grpcpp/grpcpp.h>

#include <string_view>

#include "xfer/core/result.hpp"

namespace xfer::protocol {

inline constexpr const char* kErrorTrailer = "xfer-error";

grpc::StatusCode grpc_code(ErrorCode code);
// Builds the status and adds the trailer to `context`.
grpc::Status to_grpc(grpc::ServerContext& context, const Error& error);
// `operation`/`path` describe the client-side call for the message.
Error from_grpc(const grpc::Status& status, const grpc::ClientContext& context,
                std::string_view operation, std::string_view path);

}  // namespace xfer::protocol
