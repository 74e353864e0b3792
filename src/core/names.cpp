// Validation of peer-supplied names and identifiers (include/xfer/core/names.hpp).
// Pure functions; any thread.

#include "xfer/core/names.hpp"

#include <fmt/format.h>

namespace xfer {

std::string printable_name(std::string_view s, std::size_t max) {
  std::string out;
  const std::size_t n = std::min(s.size(), max);
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c >= 0x7f || c == '\\') {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

Status validate_name_component(std::string_view name, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("check {}", what),
                      printable_name(name), fmt::format("invalid {}: {}", what, why));
  };
  if (name.empty()) return bad("empty");
  if (name.size() > kMaxNameBytes) return bad("longer than 255 bytes");
  if (name == "." || name == "..") return bad("'.' and '..' are not names");
  if (name.find('/') != std::string_view::npos) return bad("contains '/'");
  if (name.find('\0') != std::string_view::npos) return bad("contains a NUL byte");
  return ok_status();
}

Status validate_relative_path(std::string_view path, std::string_view what, bool allow_empty) {
  if (path.empty()) {
    if (allow_empty) return ok_status();
    return make_error(ErrorCode::kInvalidArgument, fmt::format("check {}", what), "",
                      fmt::format("invalid {}: empty", what));
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = path.find('/', start);
    XFER_TRY(validate_name_component(
        path.substr(start,
                    slash == std::string_view::npos ? std::string_view::npos : slash - start),
        what));
    if (slash == std::string_view::npos) return ok_status();
    start = slash + 1;
  }
}

bool is_xfer_temporary(std::string_view name) {
  return !name.empty() && name.front() == '.' &&
         (name.find(".xfer-part-") != std::string_view::npos ||
          name.find(".xfer-tmp-") != std::string_view::npos);
}

Status validate_id(std::string_view id, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return make_error(ErrorCode::kInvalidArgument, fmt::format("check {}", what),
                      printable_name(id, kMaxIdBytes + 8),
                      fmt::format("invalid {}: {}", what, why));
  };
  if (id.empty()) return bad("empty");
  if (id.size() > kMaxIdBytes) return bad("longer than 64 bytes");
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return bad("only letters, digits, '-' and '_' are allowed");
  }
  return ok_status();
}

}  // namespace xfer
