// AWS Signature Version 4 (sign.hpp), from AWS's documented algorithm:
// canonical request -> string to sign -> HMAC chain of date, region,
// service -> signature. Pure; any thread.

#include "backend/s3/sign.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <map>

namespace xfer::s3 {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Header values are signed trimmed, inner runs of spaces as one.
std::string squeeze(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

std::span<const unsigned char> as_uchars(std::string_view s) {
  return {reinterpret_cast<const unsigned char*>(s.data()), s.size()};
}

}  // namespace

std::string hex(std::span<const unsigned char> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::string sha256_hex(std::span<const std::byte> data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md.data(), &len, EVP_sha256(), nullptr);
  return hex({md.data(), len});
}

std::string sha256_hex(std::string_view text) {
  return sha256_hex(std::as_bytes(std::span<const char>(text.data(), text.size())));
}

std::vector<unsigned char> hmac_sha256(std::span<const unsigned char> key, std::string_view data) {
  std::vector<unsigned char> out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
  out.resize(len);
  return out;
}

std::string uri_encode(std::string_view text, bool keep_slash) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 15]);
    }
  }
  return out;
}

std::string amz_date(std::time_t t) {
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  return fmt::format("{:04}{:02}{:02}T{:02}{:02}{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (const auto& [k, v] : query) encoded.emplace_back(uri_encode(k, false), uri_encode(v, false));
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [k, v] : encoded) {
    if (!out.empty()) out.push_back('&');
    out += k;
    out.push_back('=');
    out += v;
  }
  return out;
}

std::vector<std::string> sign_v4(const Request& r, const Credentials& c, std::time_t now) {
  const std::string date_time = amz_date(now);
  const std::string date = date_time.substr(0, 8);
  std::map<std::string, std::string> headers;  // lowercased name -> value, sorted
  for (const auto& [k, v] : r.headers) {
    std::string& slot = headers[lower(k)];
    slot = slot.empty() ? squeeze(v) : slot + "," + squeeze(v);
  }
  headers["host"] = r.host;
  headers["x-amz-date"] = date_time;
  headers["x-amz-content-sha256"] = r.payload_hash;
  if (!c.session_token.empty()) headers["x-amz-security-token"] = c.session_token;
  std::string canonical_headers;
  std::string signed_headers;
  for (const auto& [k, v] : headers) {
    canonical_headers += fmt::format("{}:{}\n", k, v);
    if (!signed_headers.empty()) signed_headers.push_back(';');
    signed_headers += k;
  }
  const std::string canonical =
      fmt::format("{}\n{}\n{}\n{}\n{}\n{}", r.method, r.path.empty() ? "/" : r.path,
                  canonical_query(r.query), canonical_headers, signed_headers, r.payload_hash);
  const std::string scope = fmt::format("{}/{}/{}/aws4_request", date, c.region, c.service);
  const std::string to_sign =
      fmt::format("AWS4-HMAC-SHA256\n{}\n{}\n{}", date_time, scope, sha256_hex(canonical));
  const std::string secret = "AWS4" + c.secret_access_key;
  auto k = hmac_sha256(as_uchars(secret), date);
  k = hmac_sha256(k, c.region);
  k = hmac_sha256(k, c.service);
  k = hmac_sha256(k, "aws4_request");
  const auto signature = hmac_sha256(k, to_sign);
  std::vector<std::string> out;
  out.push_back("x-amz-date: " + date_time);
  out.push_back("x-amz-content-sha256: " + r.payload_hash);
  if (!c.session_token.empty()) out.push_back("x-amz-security-token: " + c.session_token);
  out.push_back(fmt::format(
      "Authorization: AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}",
      c.access_key_id, scope, signed_headers, hex(signature)));
  return out;
}

}  // namespace xfer::s3
