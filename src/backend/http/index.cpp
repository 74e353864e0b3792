// Parsing of what an HTTP server sends about files (index.hpp): index
// pages, Content-Range, dates, percent-encoding. Pure functions; any
// thread.

#include "backend/http/index.hpp"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "xfer/core/names.hpp"
#include "xfer/core/url.hpp"

namespace xfer::http {
namespace {

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// Case-insensitive find of an ASCII `needle` (lower case) from `from`.
std::size_t ifind(std::string_view hay, std::string_view needle, std::size_t from) {
  if (needle.empty() || hay.size() < needle.size()) return std::string_view::npos;
  for (std::size_t i = from; i + needle.size() <= hay.size(); ++i) {
    std::size_t k = 0;
    while (k < needle.size() && lower(hay[i + k]) == needle[k]) ++k;
    if (k == needle.size()) return i;
  }
  return std::string_view::npos;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f';
}

// The HTML character references autoindex pages use (&amp; &lt; &gt;
// &quot; &apos; &#N; &#xN;); anything else is kept as written.
std::string decode_entities(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '&') {
      out += in[i];
      continue;
    }
    // Within the longest reference (10 bytes): a page of '&' costs no
    // quadratic search.
    const std::size_t semi = in.substr(i, 11).find(';');
    if (semi == std::string_view::npos) {
      out += in[i];
      continue;
    }
    const std::string_view ref = in.substr(i + 1, semi - 1);
    unsigned long code = 0;
    bool known = true;
    if (ref == "amp") {
      code = '&';
    } else if (ref == "lt") {
      code = '<';
    } else if (ref == "gt") {
      code = '>';
    } else if (ref == "quot") {
      code = '"';
    } else if (ref == "apos") {
      code = '\'';
    } else if (ref.size() > 1 && ref[0] == '#') {
      const bool hex = ref[1] == 'x' || ref[1] == 'X';
      const std::string_view digits = ref.substr(hex ? 2 : 1);
      auto [p, ec] =
          std::from_chars(digits.data(), digits.data() + digits.size(), code, hex ? 16 : 10);
      known = ec == std::errc() && p == digits.data() + digits.size() && code > 0 && code < 128;
    } else {
      known = false;
    }
    if (!known) {
      out += in[i];
      continue;
    }
    out += static_cast<char>(code);
    i += semi;
  }
  return out;
}

// nginx's HTML autoindex puts "DD-Mon-YYYY HH:MM   SIZE" after each link:
// the date, to the minute, when `tail` (the text after "</a>") starts so.
std::optional<std::int64_t> nginx_listed_date(std::string_view tail) {
  std::size_t i = 0;
  while (i < tail.size() && tail[i] == ' ') ++i;
  tail = tail.substr(i);
  if (tail.size() < 17 || tail[2] != '-' || tail[6] != '-' || tail[11] != ' ' || tail[14] != ':') {
    return std::nullopt;
  }
  static constexpr std::string_view kMonths = "JanFebMarAprMayJunJulAugSepOctNovDec";
  auto num = [&](std::size_t at, std::size_t n) -> int {
    int v = 0;
    for (std::size_t k = at; k < at + n; ++k) {
      if (tail[k] < '0' || tail[k] > '9') return -1;
      v = v * 10 + (tail[k] - '0');
    }
    return v;
  };
  const std::size_t month = kMonths.find(tail.substr(3, 3));
  const int day = num(0, 2), year = num(7, 4), hour = num(12, 2), minute = num(15, 2);
  if (month == std::string_view::npos || month % 3 != 0 || day < 1 || day > 31 || year < 1970 ||
      hour > 23 || minute > 59 || hour < 0 || minute < 0) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = static_cast<int>(month / 3);
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  const time_t t = timegm(&tm);
  if (t < 0 || t > 9'000'000'000LL) return std::nullopt;
  return static_cast<std::int64_t>(t) * 1'000'000'000LL;
}

// One href of the page of `dir_path`: the direct child it names, with
// "/" at its end for a folder, or nullopt.
std::optional<std::string> child_of(std::string_view href, std::string_view dir_path) {
  if (const auto hash = href.find('#'); hash != std::string_view::npos) href = href.substr(0, hash);
  if (href.empty() || href.find('?') != std::string_view::npos) return std::nullopt;
  // A scheme ("https:", "mailto:"; a ':' before any '/') or a network
  // path ("//host/..."): another place, not an entry.
  if (const auto c = href.find_first_of(":/"); c != std::string_view::npos && href[c] == ':') {
    return std::nullopt;
  }
  if (href.rfind("//", 0) == 0) return std::nullopt;
  std::optional<std::string> decoded = percent_decode(href);
  if (!decoded) return std::nullopt;
  std::string_view rel = *decoded;
  if (!rel.empty() && rel.front() == '/') {
    if (rel.size() <= dir_path.size() || rel.substr(0, dir_path.size()) != dir_path) {
      return std::nullopt;
    }
    rel.remove_prefix(dir_path.size());
  } else if (rel.rfind("./", 0) == 0) {
    rel.remove_prefix(2);
  }
  return std::string(rel);
}

// nginx's JSON index as events: the top-level array's objects, their
// "name", "type", "mtime" (strings) and "size" (an unsigned number);
// anything else, at any depth, is passed over.
struct IndexSax : nlohmann::json_sax<nlohmann::json> {
  struct Item {
    std::optional<std::string> name;
    std::string type;
    std::optional<std::string> mtime;
    std::optional<std::uint64_t> size;
  };
  std::vector<Item> items;
  std::size_t not_objects = 0;
  bool top_array = false;
  bool too_many = false;
  int depth = 0;         // 1 inside the top array, 2 inside one of its values
  bool in_item = false;  // ...and that value is an object (an entry)
  std::string current_key;

  bool value_at_top() {  // a value directly in the top array
    if (depth == 1) ++not_objects;
    return count();
  }
  bool count() {
    if (items.size() + not_objects > kMaxIndexEntries) {
      too_many = true;
      return false;
    }
    return true;
  }
  bool null() override { return value_at_top(); }
  bool boolean(bool) override { return value_at_top(); }
  bool number_integer(number_integer_t) override { return value_at_top(); }
  bool number_float(number_float_t, const string_t&) override { return value_at_top(); }
  bool number_unsigned(number_unsigned_t v) override {
    if (depth == 2 && in_item && current_key == "size") items.back().size = v;
    return value_at_top();
  }
  bool string(string_t& v) override {
    if (depth == 2 && in_item) {
      Item& it = items.back();
      if (current_key == "name") it.name = std::move(v);
      if (current_key == "type") it.type = v.substr(0, 16);
      if (current_key == "mtime") it.mtime = v.substr(0, 64);
    }
    return value_at_top();
  }
  bool binary(binary_t&) override { return value_at_top(); }
  bool start_object(std::size_t) override {
    if (depth == 0) return false;  // the page is no array
    if (depth == 1) {
      items.emplace_back();
      in_item = true;
      if (!count()) return false;
    }
    ++depth;
    if (depth == 2) current_key.clear();
    return true;
  }
  bool key(string_t& k) override {
    if (depth == 2) current_key = k.substr(0, 8);
    return true;
  }
  bool end_object() override {
    --depth;
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth == 0) top_array = true;
    if (depth == 1) {
      ++not_objects;
      in_item = false;
    }
    ++depth;
    return count();
  }
  bool end_array() override {
    --depth;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }
};

}  // namespace

std::optional<std::string> percent_decode(std::string_view in) {
  std::optional<std::string> out = xfer::percent_decode(in);
  if (out && out->find('\0') != std::string::npos) return std::nullopt;  // never part of a name
  return out;
}

std::string percent_encode_path(std::string_view path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(path.size());
  for (const char ch : path) {
    const auto c = static_cast<unsigned char>(ch);
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
    if (plain) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

bool is_strong_etag(std::string_view etag) {
  return etag.size() >= 2 && etag.front() == '"' && etag.back() == '"';
}

std::optional<std::int64_t> parse_http_date(std::string_view value) {
  if (value.empty() || value.size() > 64) return std::nullopt;
  const std::string text(value);
  const time_t t = curl_getdate(text.c_str(), nullptr);
  // Before 1970, or past what nanoseconds in 64 bits hold (year 2255).
  if (t < 0 || t > 9'000'000'000LL) return std::nullopt;
  return static_cast<std::int64_t>(t) * 1'000'000'000LL;
}

std::optional<ContentRange> parse_content_range(std::string_view v) {
  auto number = [](std::string_view s) -> std::optional<std::uint64_t> {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return n;
  };
  while (!v.empty() && is_space(v.front())) v.remove_prefix(1);
  while (!v.empty() && is_space(v.back())) v.remove_suffix(1);
  if (v.size() < 6 || ifind(v.substr(0, 6), "bytes ", 0) != 0) return std::nullopt;
  v.remove_prefix(6);
  const std::size_t slash = v.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  ContentRange r;
  const std::string_view span = v.substr(0, slash);
  const std::string_view total = v.substr(slash + 1);
  if (total != "*") {
    r.total = number(total);
    if (!r.total) return std::nullopt;
  }
  if (span == "*") {
    if (!r.total) return std::nullopt;
    return r;
  }
  const std::size_t dash = span.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  r.first = number(span.substr(0, dash));
  const auto last = number(span.substr(dash + 1));
  if (!r.first || !last || *last < *r.first) return std::nullopt;
  r.last = *last;
  if (r.total && r.last >= *r.total) return std::nullopt;
  return r;
}

Result<IndexPage> parse_index(std::string_view body, IndexFormat format,
                              std::string_view dir_path) {
  if (body.size() > kMaxIndexBytes) {
    return make_error(ErrorCode::kCorrupt, "list", dir_path,
                      fmt::format("index page larger than {} MiB", kMaxIndexBytes >> 20));
  }
  IndexPage page;
  std::unordered_set<std::string> seen;
  auto add = [&](std::string name, EntryType type, std::optional<std::uint64_t> size,
                 std::optional<std::int64_t> mtime,
                 std::optional<std::int64_t> listed = std::nullopt) -> Status {
    // xfer's own temporaries are never entries: a server listing both
    // "a" and ".a.xfer-tmp-..." would have two copies share one.
    if (!validate_name_component(name, "listed name").ok() || is_xfer_temporary(name) ||
        !seen.insert(name).second) {
      ++page.skipped;
      return ok_status();
    }
    if (page.entries.size() >= kMaxIndexEntries) {
      return make_error(ErrorCode::kCorrupt, "list", dir_path,
                        fmt::format("index page lists more than {} entries", kMaxIndexEntries));
    }
    page.entries.push_back({std::move(name), type, size, mtime, listed});
    return ok_status();
  };

  if (format == IndexFormat::kJson) {
    // Read as events, never as a document: memory is the entries, whatever
    // the page holds (a tree of nlohmann values costs 25-40 times the text).
    IndexSax sax;
    const bool parsed = nlohmann::json::sax_parse(body, &sax);
    if (sax.too_many) {
      return make_error(ErrorCode::kCorrupt, "list", dir_path,
                        fmt::format("index page lists more than {} entries", kMaxIndexEntries));
    }
    if (!parsed || !sax.top_array) {
      return make_error(ErrorCode::kCorrupt, "list", dir_path,
                        "the JSON index is not an array of entries");
    }
    for (auto& item : sax.items) {
      if (!item.name) {
        ++page.skipped;
        continue;
      }
      EntryType t = EntryType::kOther;
      if (item.type == "file") t = EntryType::kFile;
      if (item.type == "directory") t = EntryType::kDirectory;
      std::optional<std::int64_t> mtime;
      if (item.mtime) mtime = parse_http_date(*item.mtime);
      std::optional<std::uint64_t> size = item.size;
      if (t != EntryType::kFile) {
        size.reset();                // a folder's time is kept, a size means nothing
      } else if (!size || !mtime) {  // a file's exact attributes: both or neither
        size.reset();
        mtime.reset();
      }
      XFER_TRY(add(std::move(*item.name), t, size, mtime));
    }
    page.skipped += sax.not_objects;
    return page;
  }

  for (std::size_t at = 0; (at = ifind(body, "<a", at)) != std::string_view::npos;) {
    at += 2;
    if (at >= body.size() || !is_space(body[at])) continue;
    const std::size_t close = body.find('>', at);
    if (close == std::string_view::npos) break;
    const std::string_view tag = body.substr(at, close - at);
    // href = "..." | '...' | bare
    std::size_t h = 0;
    std::optional<std::string_view> href;
    while ((h = ifind(tag, "href", h)) != std::string_view::npos) {
      const bool starts = h == 0 || is_space(tag[h - 1]);
      std::size_t k = h + 4;
      h = k;
      if (!starts) continue;
      while (k < tag.size() && is_space(tag[k])) ++k;
      if (k >= tag.size() || tag[k] != '=') continue;
      ++k;
      while (k < tag.size() && is_space(tag[k])) ++k;
      if (k >= tag.size()) break;
      if (tag[k] == '"' || tag[k] == '\'') {
        const std::size_t end = tag.find(tag[k], k + 1);
        if (end == std::string_view::npos) break;
        href = tag.substr(k + 1, end - k - 1);
      } else {
        std::size_t end = k;
        while (end < tag.size() && !is_space(tag[end])) ++end;
        href = tag.substr(k, end - k);
      }
      break;
    }
    at = close + 1;
    if (!href || href->size() > kMaxHrefBytes) continue;
    std::optional<std::string> child = child_of(decode_entities(*href), dir_path);
    if (!child) continue;
    EntryType type = EntryType::kFile;
    if (!child->empty() && child->back() == '/') {
      child->pop_back();
      type = EntryType::kDirectory;
    }
    if (child->empty() || *child == "." || *child == ".." ||
        child->find('/') != std::string::npos) {
      if (!child->empty() && *child != "." && *child != "..") ++page.skipped;
      continue;
    }
    std::optional<std::int64_t> listed;
    // Within the link's own text (nginx shortens names to 50 characters,
    // HTML-escaped): a page without "</a>" costs no quadratic search.
    const std::string_view near = body.substr(at, 1024);
    if (const std::size_t end_a = ifind(near, "</a>", 0); end_a != std::string_view::npos) {
      listed = nginx_listed_date(near.substr(end_a + 4, 100));
    }
    XFER_TRY(add(std::move(*child), type, std::nullopt, std::nullopt, listed));
  }
  return page;
}

}  // namespace xfer::http
