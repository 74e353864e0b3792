#pragma once
// Endpoint URLs. A bare path ("/data/x", "rel/dir") and "file:///data/x" are
// the local scheme; any other "scheme://authority/path" parses generically so
// later backends (xfer://, sftp://, s3://, http(s)://) need no parser change.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xfer/core/result.hpp"

namespace xfer {

// The control port of xfer:// URLs that name none, and of xferd's default
// `listen`: declared once.
inline constexpr std::uint16_t kDefaultXferPort = 7400;

struct Url {
  std::string scheme;           // "file" for bare paths
  std::string user;             // from user@host, may be empty
  std::string host;             // may be empty (file)
  int port = 0;                 // 0 when absent
  std::string path;             // percent-decoded; for file: as given (relative allowed)
  bool trailing_slash = false;  // the original ended in '/': "treat as directory"
  // "?key=value&..." of a URL (not of a bare path), percent-decoded, in
  // order: settings of the endpoint's profile (region=..., port=...).
  std::vector<std::pair<std::string, std::string>> query;
  // The named remote of "NAME:path" (backend/credentials.hpp), "" for a
  // URL or path; scheme, host and port then come from the remote.
  std::string remote;

  bool is_local() const { return scheme == "file"; }
  // Canonical text form; bare paths print as the path itself, a remote's
  // as "NAME:path".
  std::string to_string() const;
  // The same endpoint with another path.
  Url with_path(std::string new_path) const;
};

// Parses a bare path or a URL. Errors: kInvalidArgument with a reason.
// "NAME:path" is not parsed here: it is a path until a registry that knows
// the remotes expands it (BackendRegistry::parse).
Result<Url> parse_url(std::string_view text);

// "10.0.1.1,10.0.2.1": numeric IP addresses (v4 or v6, no brackets)
// separated by commas, at most kMaxAddressList; "" is the empty list.
// Errors name the first bad entry.
inline constexpr std::size_t kMaxAddressList = 16;
Result<std::vector<std::string>> parse_address_list(std::string_view text);
// A numeric IPv4 or IPv6 address (no brackets, no port).
bool is_ip_literal(const std::string& host);

// The bytes a percent-encoded text stands for ("%41" -> "A"; '+' stays
// '+'); nullopt for a truncated or non-hex escape.
std::optional<std::string> percent_decode(std::string_view in);

// Joins a directory path and a child name with exactly one '/'.
std::string join_path(std::string_view dir, std::string_view name);
// Last path component ("a/b/" -> "b", "/" -> "").
std::string base_name(std::string_view path);
// Everything before the last component ("a/b" -> "a", "b" -> ".").
std::string dir_name(std::string_view path);
// `path` is `dir` or lies below it, component-wise ("/a/bc" is not within
// "/a/b"); both absolute and normalised (no "//", "." or ".." components,
// no trailing '/' except for "/" itself).
bool path_within(std::string_view path, std::string_view dir);

}  // namespace xfer
