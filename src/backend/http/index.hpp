#pragma once
// What an HTTP server sends that the http backend reads as data about
// files: directory index pages (nginx and Apache autoindex HTML, nginx's
// JSON autoindex), Content-Range, and the dates of Last-Modified. Every
// byte of it is hostile (docs/http.md, "What a server may send"): a name
// passes validate_name_component, and sizes and counts are bounded.
//
// Pure functions; any thread.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "xfer/core/file_attrs.hpp"
#include "xfer/core/result.hpp"

namespace xfer::http {

// The largest index page read (a folder of about 300,000 entries in nginx's
// HTML); a longer one is an error, never a truncated listing.
inline constexpr std::size_t kMaxIndexBytes = 64u << 20;
// The most entries one index page may list.
inline constexpr std::size_t kMaxIndexEntries = 1'000'000;
// The longest link read as an entry (a name is at most 255 bytes, each
// escaped as "%XX" or "&#NNN;").
inline constexpr std::size_t kMaxHrefBytes = 8192;

enum class IndexFormat { kHtml, kJson };

struct IndexEntry {
  std::string name;  // one path component, percent- and entity-decoded, validated
  EntryType type = EntryType::kFile;
  // Exact attributes when the page gives them (nginx's JSON: size in
  // bytes, mtime to the second); HTML pages give neither exactly.
  std::optional<std::uint64_t> size;
  std::optional<std::int64_t> mtime_ns;
  // The "DD-Mon-YYYY HH:MM" nginx's HTML page shows after the link: to the
  // minute only, so used for folders (whose time no HEAD gives), never to
  // compare files.
  std::optional<std::int64_t> listed_mtime_ns;
};

// The entries of the index page `body` of the folder `dir_path` (the
// decoded path the page was asked for, ending in '/'). HTML: every link to
// a direct child (relative "name", "name/", "./name", or an absolute path
// "/dir_path/name"); links with a query ("?C=M;O=A" sorting links), to a
// parent, to other hosts, or deeper down are not entries. A trailing '/'
// makes a folder. A name listed twice counts once. JSON: nginx's
// autoindex_format json, an array of {"name","type","mtime","size"}.
// kCorrupt for a page that is not one (JSON that does not parse), names
// that are no valid component are skipped (logged by the caller from
// `skipped`).
struct IndexPage {
  std::vector<IndexEntry> entries;
  std::size_t skipped = 0;  // links or items that named no valid entry
};
Result<IndexPage> parse_index(std::string_view body, IndexFormat format, std::string_view dir_path);

// "bytes FIRST-LAST/TOTAL" (TOTAL may be "*"), or "bytes */TOTAL" of a 416.
struct ContentRange {
  std::optional<std::uint64_t> first;  // absent in "bytes */TOTAL"
  std::uint64_t last = 0;
  std::optional<std::uint64_t> total;
};
std::optional<ContentRange> parse_content_range(std::string_view value);

// An HTTP date (IMF-fixdate, RFC 850 or asctime forms), as nanoseconds
// since the epoch; nullopt when it does not parse or lies before 1970 or
// after 2255.
std::optional<std::int64_t> parse_http_date(std::string_view value);

// The decoded form of a percent-encoded path; nullopt for a malformed
// escape or a NUL.
std::optional<std::string> percent_decode(std::string_view in);
// `path` with every byte but unreserved characters and '/' escaped, for a
// request line.
std::string percent_encode_path(std::string_view path);

// A strong entity tag ("\"abc\"", not W/"abc"): usable in If-Range.
bool is_strong_etag(std::string_view etag);

}  // namespace xfer::http
