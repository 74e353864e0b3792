#pragma once
// Request signing for the object stores: AWS Signature Version 4 (S3 and
// every S3-compatible store, GCS's XML API with HMAC keys) and the pieces
// it is made of (SHA-256, HMAC-SHA256, S3's URI encoding), with OpenSSL.
// Pure functions; any thread.
//
// Why not libcurl's CURLOPT_AWS_SIGV4: libcurl 7.88 (Debian 12) signs the
// query string as it is written (S3 wants it sorted and encoded its way)
// and cannot be given the time, so it cannot be tested against AWS's
// published examples; this is about 150 lines and is (docs/s3.md).

#include <cstdint>
#include <ctime>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xfer::s3 {

std::string hex(std::span<const unsigned char> bytes);
std::string sha256_hex(std::span<const std::byte> data);
std::string sha256_hex(std::string_view text);
std::vector<unsigned char> hmac_sha256(std::span<const unsigned char> key, std::string_view data);

// RFC 3986 percent-encoding as S3 canonicalises it: unreserved characters
// (A-Z a-z 0-9 - _ . ~) stay, every other byte becomes %XX (upper case);
// '/' stays too when `keep_slash` (object keys in paths).
std::string uri_encode(std::string_view text, bool keep_slash);

// "20130524T000000Z" of `t` (UTC).
std::string amz_date(std::time_t t);

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // temporary credentials; "" for none
  std::string region = "us-east-1";
  std::string service = "s3";
};

// A request to sign. `path` is already encoded (uri_encode(..., true));
// `query` holds decoded names and values (encoded and sorted here);
// `headers` are the ones sent besides those signing adds, names in any
// case (all of them are signed); `host` is the Host header's value.
struct Request {
  std::string method;
  std::string host;
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;
  // The body's SHA-256 in hex, or "UNSIGNED-PAYLOAD" (streamed bodies: TLS
  // or the part's MD5 checked against its ETag guards them instead).
  std::string payload_hash = "UNSIGNED-PAYLOAD";
};

// The canonical query string of `query` (encoded, sorted by name then value).
std::string canonical_query(const std::vector<std::pair<std::string, std::string>>& query);

// The headers signing adds, as "Name: value" lines: x-amz-date,
// x-amz-content-sha256, x-amz-security-token (with a session token) and
// Authorization. `now` is the request's time.
std::vector<std::string> sign_v4(const Request& request, const Credentials& credentials,
                                 std::time_t now);

}  // namespace xfer::s3
