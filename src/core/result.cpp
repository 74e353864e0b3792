// Error messages and the errno -> ErrorCode/RetryClass mapping
// (result.hpp). Pure functions.

#include "xfer/core/result.hpp"

#include <fmt/format.h>

#include <cstring>

namespace xfer {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return "ok";
    case ErrorCode::kNotFound:
      return "not found";
    case ErrorCode::kExists:
      return "already exists";
    case ErrorCode::kPermission:
      return "permission denied";
    case ErrorCode::kNoSpace:
      return "no space left";
    case ErrorCode::kIsDirectory:
      return "is a directory";
    case ErrorCode::kNotDirectory:
      return "not a directory";
    case ErrorCode::kNotEmpty:
      return "directory not empty";
    case ErrorCode::kInvalidArgument:
      return "invalid argument";
    case ErrorCode::kUnsupported:
      return "unsupported";
    case ErrorCode::kIo:
      return "i/o error";
    case ErrorCode::kChanged:
      return "source changed during transfer";
    case ErrorCode::kCorrupt:
      return "corrupt data";
    case ErrorCode::kCrossDevice:
      return "cross-device";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kInternal:
      return "internal error";
  }
  return "unknown";
}

std::string_view to_string(RetryClass retry) {
  switch (retry) {
    case RetryClass::kRetryCall:
      return "retry-call";
    case RetryClass::kRetryFile:
      return "retry-file";
    case RetryClass::kFatal:
      return "fatal";
  }
  return "unknown";
}

std::string Error::message() const {
  // With an errno: "<op> <path>: <strerror> (<detail>)"; without one the
  // detail, when given, is the reason itself: "<op> <path>: <detail>".
  std::string reason;
  if (sys_errno != 0) {
    reason = std::strerror(sys_errno);
    if (!detail.empty()) reason += fmt::format(" ({})", detail);
  } else {
    reason = detail.empty() ? std::string(to_string(code)) : detail;
  }
  std::string out = operation;
  if (!path.empty()) {
    if (!out.empty()) out += ' ';
    out += path;
  }
  if (!out.empty()) out += ": ";
  out += reason;
  return out;
}

Error errno_error(int err, std::string_view operation, std::string_view path) {
  Error e;
  e.sys_errno = err;
  e.operation = std::string(operation);
  e.path = std::string(path);
  e.retry = RetryClass::kFatal;
  switch (err) {
    case ENOENT:
      e.code = ErrorCode::kNotFound;
      break;
    case EEXIST:
      e.code = ErrorCode::kExists;
      break;
    case EACCES:
    case EPERM:
    case EROFS:
      e.code = ErrorCode::kPermission;
      break;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      e.code = ErrorCode::kNoSpace;
      break;
    case EISDIR:
      e.code = ErrorCode::kIsDirectory;
      break;
    case ENOTDIR:
      e.code = ErrorCode::kNotDirectory;
      break;
    case ENOTEMPTY:
      e.code = ErrorCode::kNotEmpty;
      break;
    case EINVAL:
    case ENAMETOOLONG:
    case ELOOP:
      e.code = ErrorCode::kInvalidArgument;
      break;
    case EXDEV:
      e.code = ErrorCode::kCrossDevice;
      break;
    case EOPNOTSUPP:
      e.code = ErrorCode::kUnsupported;
      break;
    case EINTR:
    case EAGAIN:
    case ETIMEDOUT:
    case ECONNRESET:
    case ECONNREFUSED:
    case EPIPE:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      e.code = ErrorCode::kUnavailable;
      e.retry = RetryClass::kRetryCall;
      break;
    case EIO:
      e.code = ErrorCode::kIo;
      e.retry = RetryClass::kRetryFile;
      break;
    default:
      e.code = ErrorCode::kIo;
      break;
  }
  return e;
}

Error make_error(ErrorCode code, std::string_view operation, std::string_view path,
                 std::string_view detail, RetryClass retry) {
  Error e;
  e.code = code;
  e.retry = retry;
  e.operation = std::string(operation);
  e.path = std::string(path);
  e.detail = std::string(detail);
  return e;
}

std::optional<WireErrorKind> error_kind_from_wire(std::int64_t code, std::int64_t retry) {
  if (code <= 0 || code > static_cast<std::int64_t>(ErrorCode::kInternal)) return std::nullopt;
  if (retry < 0 || retry > static_cast<std::int64_t>(RetryClass::kFatal)) return std::nullopt;
  return WireErrorKind{static_cast<ErrorCode>(code), static_cast<RetryClass>(retry)};
}

}  // namespace xfer
