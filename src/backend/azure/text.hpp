// Azure Blob's text forms, read from and written for the service: base64
// (account keys, block ids, Content-MD5), RFC 1123 dates (x-ms-date),
// RFC 3339 mtimes (x-ms-meta-mtime, rclone's form) and connection strings.
// What the service or a user sends passes through these before any use;
// tests/fuzz/azure_fuzz.cpp fuzzes the readers.
//
// Threading: pure functions.

#pragma once

#include <cstdint>
#include <ctime>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace xfer::azure {

std::string base64(std::span<const unsigned char> in);
// Strict base64 (a multiple of 4 characters, at most 4096); nullopt
// otherwise.
std::optional<std::vector<unsigned char>> unbase64(std::string_view in);
// "Sun, 06 Dec 2026 16:56:19 GMT", whatever the locale.
std::string rfc1123(std::time_t t);
// "2020-09-13T12:26:40.123456789Z" of `ns`.
std::string format_mtime(std::int64_t ns);
// RFC 3339 ("2020-09-13T12:26:40.5Z", "...+02:00", 20 to 40 characters,
// at most 9 digits of fraction) -> ns; nullopt otherwise.
std::optional<std::int64_t> parse_mtime(std::string_view v);
// A block's id: base64 of "xfer" + the upload's 16-hex-digit token + the
// chunk's index in ten digits (30 bytes: 40 characters, no padding; every
// id of a blob must have one length).
std::string block_id(const std::string& token, std::uint64_t index);
// "AccountName=a;AccountKey=k;BlobEndpoint=http://...;SharedAccessSignature=..."
// as its key=value parts (the first '=' splits; a part without one is
// dropped; a later key wins).
std::map<std::string, std::string> parse_connection_string(std::string_view s);

}  // namespace xfer::azure
