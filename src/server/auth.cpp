// Issues and verifies xferd's bearer tokens (auth.hpp): HS256 JWTs under the
// server's secret. Pure functions of their arguments: any thread.

#include "xfer/server/auth.hpp"

#include "xfer/core/url.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <optional>

namespace xfer::server {
namespace {

using nlohmann::json;

constexpr std::string_view kIssueOp = "issue token";
constexpr std::string_view kVerifyOp = "verify token";
constexpr std::string_view kResolveOp = "resolve";

// The only header this code writes or accepts.
constexpr std::string_view kHeader = R"({"alg":"HS256","typ":"JWT"})";

// Tokens travel in gRPC metadata; ours are ~300 bytes. Anything far larger
// is refused before any decoding or hashing.
constexpr std::size_t kMaxTokenSize = 8192;
// Longest client path accepted (PATH_MAX).
constexpr std::size_t kMaxPathSize = 4096;

constexpr std::size_t kMacSize = 32;  // SHA-256
using Mac = std::array<unsigned char, kMacSize>;

constexpr char kB64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64url_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  std::size_t i = 0;
  auto byte = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(in[k]));
  };
  for (; i + 3 <= in.size(); i += 3) {
    std::uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += kB64Alphabet[(v >> 18) & 63];
    out += kB64Alphabet[(v >> 12) & 63];
    out += kB64Alphabet[(v >> 6) & 63];
    out += kB64Alphabet[v & 63];
  }
  if (in.size() - i == 1) {
    std::uint32_t v = byte(i) << 16;
    out += kB64Alphabet[(v >> 18) & 63];
    out += kB64Alphabet[(v >> 12) & 63];
  } else if (in.size() - i == 2) {
    std::uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8);
    out += kB64Alphabet[(v >> 18) & 63];
    out += kB64Alphabet[(v >> 12) & 63];
    out += kB64Alphabet[(v >> 6) & 63];
  }
  return out;
}

int base64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// Strict decoder: the URL-safe alphabet only, no padding, and the unused low
// bits of the last character must be zero, so every byte string has exactly
// one encoding (a flipped bit in a token always changes the decoded bytes).
std::optional<std::string> base64url_decode(std::string_view in) {
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = base64url_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::optional<Mac> hmac_sha256(std::string_view key, std::string_view data) {
  Mac mac{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(),
           &len) == nullptr ||
      len != kMacSize) {
    return std::nullopt;
  }
  return mac;
}

std::int64_t to_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

Error malformed() {
  return make_error(ErrorCode::kPermission, kVerifyOp, "", "malformed token");
}

// A printable form of a client path for error messages (NUL shown as \0).
std::string printable(std::string_view path) {
  std::string out;
  for (char c : path.substr(0, 256)) {
    if (c == '\0') {
      out += "\\0";
    } else {
      out += c;
    }
  }
  if (path.size() > 256) out += "...";
  return out;
}

}  // namespace

bool TokenScope::covers(std::string_view path) const {
  std::string_view p = prefix;
  while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
  if (p.empty() || p.front() != '/') return false;  // not a valid prefix: covers nothing
  if (path.empty()) path = "/";
  return path_within(path, p);
}

Result<std::string> issue_token(std::string_view secret, TokenScope scope) {
  if (secret.empty()) {
    return make_error(ErrorCode::kInvalidArgument, kIssueOp, "", "empty token secret");
  }
  XFER_ASSIGN_OR_RETURN(scope.prefix, normalize_server_path(scope.prefix));
  if (scope.issued_at == 0) scope.issued_at = to_seconds(std::chrono::system_clock::now());
  if (scope.expires_at <= scope.issued_at) {
    return make_error(ErrorCode::kInvalidArgument, kIssueOp, "",
                      "token expiry must be after its issue time");
  }
  if (scope.id.empty()) {
    std::array<unsigned char, 16> raw{};
    if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
      return make_error(ErrorCode::kInternal, kIssueOp, "", "RAND_bytes failed");
    }
    for (unsigned char b : raw) scope.id += fmt::format("{:02x}", b);
  }
  json claims = {{"sub", scope.subject},   {"prefix", scope.prefix},  {"write", scope.write},
                 {"iat", scope.issued_at}, {"exp", scope.expires_at}, {"jti", scope.id}};
  std::string payload;
  try {
    payload = claims.dump();
  } catch (const json::exception&) {  // invalid UTF-8 in a string claim
    return make_error(ErrorCode::kInvalidArgument, kIssueOp, "",
                      "token subject and id must be valid UTF-8");
  }
  std::string token = base64url_encode(kHeader) + '.' + base64url_encode(payload);
  auto mac = hmac_sha256(secret, token);
  if (!mac) return make_error(ErrorCode::kInternal, kIssueOp, "", "HMAC-SHA256 failed");
  token += '.';
  token +=
      base64url_encode(std::string_view(reinterpret_cast<const char*>(mac->data()), mac->size()));
  return token;
}

Result<TokenScope> verify_token(std::string_view secret, std::string_view token,
                                std::chrono::system_clock::time_point now) {
  if (secret.empty()) {
    return make_error(ErrorCode::kInvalidArgument, kVerifyOp, "", "empty token secret");
  }
  // Structure first: three non-empty base64url parts and a 32-byte MAC.
  if (token.size() > kMaxTokenSize) return malformed();
  std::size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return malformed();
  std::size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return malformed();
  }
  std::string_view header_b64 = token.substr(0, dot1);
  std::string_view payload_b64 = token.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string_view mac_b64 = token.substr(dot2 + 1);
  if (header_b64.empty() || payload_b64.empty()) return malformed();
  auto header = base64url_decode(header_b64);
  auto payload = base64url_decode(payload_b64);
  auto given_mac = base64url_decode(mac_b64);
  if (!header || !payload || !given_mac || given_mac->size() != kMacSize) return malformed();

  // The signature is checked before any JSON is parsed: only the holder of
  // the secret gets to feed the parser. An "alg":"none" token has no
  // signature at all and stops above.
  auto mac = hmac_sha256(secret, token.substr(0, dot2));
  if (!mac) return make_error(ErrorCode::kInternal, kVerifyOp, "", "HMAC-SHA256 failed");
  if (CRYPTO_memcmp(mac->data(), given_mac->data(), kMacSize) != 0) {
    return make_error(ErrorCode::kPermission, kVerifyOp, "", "bad token signature");
  }

  json h = json::parse(*header, nullptr, /*allow_exceptions=*/false);
  // Exactly {"alg":"HS256","typ":"JWT"} (any key order). Compared by hand:
  // nlohmann's != is false for a discarded (unparseable) value.
  auto h_string = [&](const char* name) -> const std::string* {
    auto it = h.find(name);
    return it != h.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
  };
  const std::string* alg = h.is_object() ? h_string("alg") : nullptr;
  const std::string* typ = h.is_object() ? h_string("typ") : nullptr;
  if (h.size() != 2 || alg == nullptr || *alg != "HS256" || typ == nullptr || *typ != "JWT") {
    return malformed();
  }
  json c = json::parse(*payload, nullptr, /*allow_exceptions=*/false);
  if (!c.is_object()) return malformed();
  auto string_claim = [&](const char* name) -> const std::string* {
    auto it = c.find(name);
    return it != c.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
  };
  auto int_claim = [&](const char* name) -> std::optional<std::int64_t> {
    auto it = c.find(name);
    if (it == c.end() || !it->is_number_integer()) return std::nullopt;
    if (it->is_number_unsigned() && it->get<std::uint64_t>() > INT64_MAX) return std::nullopt;
    return it->get<std::int64_t>();
  };
  const std::string* sub = string_claim("sub");
  const std::string* prefix = string_claim("prefix");
  const std::string* jti = string_claim("jti");
  auto write = c.find("write");
  auto iat = int_claim("iat");
  auto exp = int_claim("exp");
  if (sub == nullptr || prefix == nullptr || jti == nullptr || write == c.end() ||
      !write->is_boolean() || !iat || !exp) {
    return malformed();
  }
  auto norm = normalize_server_path(*prefix);
  if (!norm.ok() || *norm != *prefix) return malformed();

  // RFC 7519: the token must not be accepted on or after "exp".
  if (to_seconds(now) >= *exp) {
    return make_error(ErrorCode::kPermission, kVerifyOp, "", "token expired");
  }
  TokenScope scope;
  scope.subject = *sub;
  scope.prefix = *prefix;
  scope.write = write->get<bool>();
  scope.issued_at = *iat;
  scope.expires_at = *exp;
  scope.id = *jti;
  return scope;
}

Result<std::string> normalize_server_path(std::string_view path) {
  if (path.size() > kMaxPathSize) {
    return make_error(ErrorCode::kInvalidArgument, kResolveOp, printable(path), "path too long");
  }
  if (path.find('\0') != std::string_view::npos) {
    return make_error(ErrorCode::kInvalidArgument, kResolveOp, printable(path),
                      "path contains a NUL byte");
  }
  std::string out;
  out.reserve(path.size() + 1);
  std::size_t pos = 0;
  while (pos <= path.size()) {
    std::size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(pos, end - pos);
    pos = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      return make_error(ErrorCode::kPermission, kResolveOp, printable(path),
                        "path escapes the root");
    }
    out += '/';
    out += part;
  }
  if (out.empty()) out = "/";
  return out;
}

}  // namespace xfer::server
