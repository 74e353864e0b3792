// xfer Error <-> gRPC status, the exact code and retry class riding in
// trailing metadata (grpc_errors.hpp). Stateless: any thread.

#include "protocol/grpc_errors.hpp"

#include <charconv>
#include <string>

namespace xfer::protocol {

grpc::StatusCode grpc_code(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return grpc::StatusCode::OK;
    case ErrorCode::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case ErrorCode::kExists:
      return grpc::StatusCode::ALREADY_EXISTS;
    case ErrorCode::kPermission:
      return grpc::StatusCode::PERMISSION_DENIED;
    case ErrorCode::kNoSpace:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case ErrorCode::kIsDirectory:
    case ErrorCode::kNotDirectory:
    case ErrorCode::kNotEmpty:
    case ErrorCode::kCrossDevice:
    case ErrorCode::kChanged:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case ErrorCode::kInvalidArgument:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case ErrorCode::kUnsupported:
      return grpc::StatusCode::UNIMPLEMENTED;
    case ErrorCode::kCorrupt:
      return grpc::StatusCode::DATA_LOSS;
    case ErrorCode::kCancelled:
      return grpc::StatusCode::CANCELLED;
    case ErrorCode::kUnavailable:
      return grpc::StatusCode::UNAVAILABLE;
    case ErrorCode::kIo:
    case ErrorCode::kInternal:
      return grpc::StatusCode::INTERNAL;
  }
  return grpc::StatusCode::INTERNAL;
}

// gRPC's status codes are coarser than ours (kChanged and kNotEmpty are
// both FAILED_PRECONDITION) and carry no retry class, so the exact pair
// rides in a trailer; the status code is for clients that are not xfer.
grpc::Status to_grpc(grpc::ServerContext& context, const Error& error) {
  context.AddTrailingMetadata(kErrorTrailer, std::to_string(static_cast<int>(error.code)) + ":" +
                                                 std::to_string(static_cast<int>(error.retry)));
  return grpc::Status(grpc_code(error.code), error.detail.empty() ? error.message() : error.detail);
}

// The trailer, when a (checked) one came; else the status code alone, as
// from a proxy or a server that failed before our handler ran.
Error from_grpc(const grpc::Status& status, const grpc::ClientContext& context,
                std::string_view operation, std::string_view path) {
  ErrorCode code = ErrorCode::kInternal;
  RetryClass retry = RetryClass::kFatal;
  bool exact = false;
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(kErrorTrailer);
  if (it != trailers.end()) {
    std::string_view v(it->second.data(), it->second.size());
    auto colon = v.find(':');
    std::int64_t c = 0, r = 0;
    if (colon != std::string_view::npos &&
        std::from_chars(v.data(), v.data() + colon, c).ec == std::errc() &&
        std::from_chars(v.data() + colon + 1, v.data() + v.size(), r).ec == std::errc()) {
      if (auto kind = error_kind_from_wire(c, r)) {
        code = kind->code;
        retry = kind->retry;
        exact = true;
      }
    }
  }
  if (!exact) {
    switch (status.error_code()) {
      case grpc::StatusCode::NOT_FOUND:
        code = ErrorCode::kNotFound;
        break;
      case grpc::StatusCode::ALREADY_EXISTS:
        code = ErrorCode::kExists;
        break;
      case grpc::StatusCode::PERMISSION_DENIED:
      case grpc::StatusCode::UNAUTHENTICATED:
        code = ErrorCode::kPermission;
        break;
      case grpc::StatusCode::UNAVAILABLE:
      case grpc::StatusCode::DEADLINE_EXCEEDED:
      case grpc::StatusCode::ABORTED:
        code = ErrorCode::kUnavailable;
        retry = RetryClass::kRetryCall;
        break;
      case grpc::StatusCode::CANCELLED:
        code = ErrorCode::kCancelled;
        break;
      case grpc::StatusCode::INVALID_ARGUMENT:
        code = ErrorCode::kInvalidArgument;
        break;
      case grpc::StatusCode::UNIMPLEMENTED:
        code = ErrorCode::kUnsupported;
        break;
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        code = ErrorCode::kNoSpace;
        break;
      default:
        break;
    }
  }
  std::string detail = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE && !exact) {
    detail = "server unreachable (is xferd running there, and does it use TLS: --tls/--tls-ca?): " +
             detail;
  }
  return make_error(code, operation, path, detail, retry);
}

}  // namespace xfer::protocol
