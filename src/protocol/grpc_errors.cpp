// xfer Error <-> gRPC status, the exact code and retry class riding in
// trailing metadata (grpc_errors.hpp). Stateless: any thread.

#include "protocol/grpc_errors.hpp"

#include <fmt/format.h>

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

namespace {

// gRPC's words for an unreachable server ("DNS resolution failed for
// nohost:1: C-ares status is not ARES_SUCCESS qtype=AAAA ...") in the
// user's: one line naming the host and what to check.
std::string unreachable(const std::string& grpc_message) {
  auto after = [&](std::string_view marker) -> std::string {
    auto at = grpc_message.find(marker);
    if (at == std::string::npos) return {};
    at += marker.size();
    auto end = grpc_message.find_first_of(": ", at);
    // "host:port": keep the port, stop at the colon that follows it.
    auto colon = grpc_message.find(':', at);
    if (colon != std::string::npos) end = grpc_message.find_first_of(": ", colon + 1);
    return grpc_message.substr(at, end == std::string::npos ? std::string::npos : end - at);
  };
  if (grpc_message.find("DNS resolution failed") != std::string::npos) {
    const std::string target = after("DNS resolution failed for ");
    const std::string host = target.substr(0, target.rfind(':'));
    return fmt::format("cannot resolve the host name '{}' (is it spelt right?)", host);
  }
  if (grpc_message.find("Connection refused") != std::string::npos) {
    std::string target = after("ipv4:");
    if (target.empty()) target = after("ipv6:");
    return fmt::format("nothing listens on {} (is xferd running there, on that port?)",
                       target.empty() ? std::string("that address") : target);
  }
  if (grpc_message.find("Deadline") != std::string::npos ||
      grpc_message.find("timed out") != std::string::npos ||
      grpc_message.find("Timeout") != std::string::npos) {
    return "the server did not answer in time (a firewall, or the wrong address?)";
  }
  if (grpc_message.find("ssl") != std::string::npos ||
      grpc_message.find("SSL") != std::string::npos ||
      grpc_message.find("handshake") != std::string::npos ||
      grpc_message.find("TLS") != std::string::npos) {
    return "the TLS handshake failed (does the server use TLS? --tls, --tls-ca FILE): " +
           grpc_message;
  }
  return "server unreachable (is xferd running there, and does it use TLS: --tls/--tls-ca?): " +
         grpc_message;
}

}  // namespace

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
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE && !exact) detail = unreachable(detail);
  return make_error(code, operation, path, detail, retry);
}

}  // namespace xfer::protocol
