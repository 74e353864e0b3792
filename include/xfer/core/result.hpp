#pragma once
// Errors as values. Every fallible libxfer call returns Result<T>; an Error
// carries what a user needs to read (operation, path, reason) and what the
// scheduler needs to decide (the retry class). Retry policy lives in the
// engine's scheduler only; nothing below it retries on its own.

#include <cerrno>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace xfer {

enum class ErrorCode {
  kOk = 0,
  kNotFound,
  kExists,
  kPermission,
  kNoSpace,
  kIsDirectory,
  kNotDirectory,
  kNotEmpty,
  kInvalidArgument,
  kUnsupported,
  kIo,
  kChanged,      // the source changed while being copied
  kCorrupt,      // checksum mismatch or malformed data
  kCrossDevice,  // rename across file systems
  kCancelled,
  kUnavailable,  // transient: try the same call again
  kInternal,
};

// Who may retry, and what. Read by the scheduler only.
enum class RetryClass {
  kRetryCall,  // transient: repeating the same call may succeed (EINTR, EAGAIN, timeouts)
  kRetryFile,  // restart this file from scratch (source changed, corrupt chunk)
  kFatal,      // retrying cannot help (missing file, permission, disk full, bad input)
};

std::string_view to_string(ErrorCode code);
std::string_view to_string(RetryClass retry);

// An ErrorCode and RetryClass as numbers from a peer (an ERROR frame, the
// xfer-error gRPC trailer): both, when both are values this build knows
// (and the code is not kOk); nothing otherwise, and the caller decides.
struct WireErrorKind {
  ErrorCode code;
  RetryClass retry;
};
std::optional<WireErrorKind> error_kind_from_wire(std::int64_t code, std::int64_t retry);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  RetryClass retry = RetryClass::kFatal;
  int sys_errno = 0;      // errno when the error came from the OS, else 0
  std::string operation;  // "open", "read", "rename", ...
  std::string path;       // path or URL the operation was about
  std::string detail;     // extra human-readable reason
  // A server's word on when to try again (HTTP Retry-After), 0 when it said
  // nothing: the engine waits at least this long (at most a minute) before
  // it repeats a kRetryCall failure.
  std::int64_t retry_after_ms = 0;

  // "open /a/b: No such file or directory (detail)".
  std::string message() const;
};

// Builds an Error from an errno value, choosing code and retry class from it.
Error errno_error(int err, std::string_view operation, std::string_view path);
Error make_error(ErrorCode code, std::string_view operation, std::string_view path,
                 std::string_view detail = {}, RetryClass retry = RetryClass::kFatal);

// std::expected-like holder of a T or an Error.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;
inline Status ok_status() {
  return {};
}

}  // namespace xfer

#define XFER_CONCAT_INNER(a, b) a##b
#define XFER_CONCAT(a, b) XFER_CONCAT_INNER(a, b)

// Propagates the error of a Status/Result expression.
#define XFER_TRY(expr)                            \
  do {                                            \
    auto&& xfer_try_result_ = (expr);             \
    if (!xfer_try_result_.ok()) {                 \
      return std::move(xfer_try_result_).error(); \
    }                                             \
  } while (0)

// Declares `lhs` from the value of a Result expression, or propagates its error.
#define XFER_ASSIGN_OR_RETURN(lhs, expr) \
  XFER_ASSIGN_OR_RETURN_IMPL(XFER_CONCAT(xfer_result_, __LINE__), lhs, expr)
#define XFER_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return std::move(tmp).error();    \
  lhs = std::move(tmp).value()
