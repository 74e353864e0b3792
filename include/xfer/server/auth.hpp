#pragma once
// Bearer tokens for xferd (docs/server.md, "Tokens"): JWT (RFC 7519) signed
// with HMAC-SHA256 (HS256) under the server's secret. Claims:
//   "sub"    who the token was issued to (free text, logged)
//   "prefix" path prefix the token may touch ("/" = the whole root)
//   "write"  true: read-write, false: read-only
//   "iat", "exp"  issued-at and expiry, seconds since the epoch
//   "jti"    random id (logged)
// Verification is constant-time on the signature and refuses anything else
// (alg other than HS256, missing claims, expired, malformed base64/JSON).

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "xfer/core/result.hpp"

namespace xfer::server {

struct TokenScope {
  std::string subject;
  std::string prefix = "/";  // normalised: starts with '/', no trailing '/' except the root
  bool write = false;
  std::int64_t issued_at = 0;   // seconds since the epoch
  std::int64_t expires_at = 0;  // seconds since the epoch
  std::string id;

  // True when `path` (a normalised server path, "/a/b") lies inside prefix:
  // equal to it or below it at a component boundary ("/ab" is not in "/a").
  bool covers(std::string_view path) const;
};

// Signs `scope` (its id and issued_at are filled when empty/0).
Result<std::string> issue_token(std::string_view secret, TokenScope scope);
// Verifies signature, structure and expiry (at `now`). kPermission with
// "token expired" / "bad token signature" / "malformed token" details.
Result<TokenScope> verify_token(
    std::string_view secret, std::string_view token,
    std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// Normalises a client path to "/a/b": collapses '//' and '.', removes a
// trailing '/', refuses '..' components, NUL bytes and empty input
// (kPermission "path escapes the root" for '..'). "" and "/" both mean root.
Result<std::string> normalize_server_path(std::string_view path);

}  // namespace xfer::server
