// URL parsing, percent-decoding and path joining (url.hpp). Pure functions.

#include "xfer/core/url.hpp"

#include <arpa/inet.h>

#include <fmt/format.h>

#include <cctype>
#include <charconv>

namespace xfer {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> decode_url_part(std::string_view in, std::string_view whole) {
  std::optional<std::string> out = percent_decode(in);
  if (!out)
    return make_error(ErrorCode::kInvalidArgument, "parse url", whole, "bad or truncated %-escape");
  return std::move(*out);
}

bool valid_scheme(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

// Bounds what a URL can make us hold.
constexpr std::size_t kMaxQueryParams = 32;

std::string encode_query_part(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '&' || c == '=' || c == '%' || c == '#' || c == '?' ||
        static_cast<unsigned char>(c) <= 0x20) {
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out;
}

std::string query_text(const std::vector<std::pair<std::string, std::string>>& query) {
  std::string out;
  for (const auto& [k, v] : query) {
    out += out.empty() ? "?" : "&";
    out += encode_query_part(k) + "=" + encode_query_part(v);
  }
  return out;
}

}  // namespace

std::optional<std::string> percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return std::nullopt;
    const int hi = hex_value(in[i + 1]);
    const int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string Url::to_string() const {
  if (!remote.empty()) return remote + ":" + path + query_text(query);
  if (scheme == "file" && host.empty()) return path;
  std::string out = scheme + "://";
  if (!user.empty()) out += user + "@";
  if (host.find(':') != std::string::npos) {
    out += "[" + host + "]";
  } else {
    out += host;
  }
  if (port != 0) out += fmt::format(":{}", port);
  if (!path.empty() && path[0] != '/') out += '/';
  for (char c : path) {
    if (c == '?' || c == '%') {
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out + query_text(query);
}

Url Url::with_path(std::string new_path) const {
  Url u = *this;
  u.path = std::move(new_path);
  u.trailing_slash = false;
  return u;
}

Result<Url> parse_url(std::string_view text) {
  if (text.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "parse url", text, "empty path");
  }
  Url url;
  auto sep = text.find("://");
  bool has_scheme = sep != std::string_view::npos && valid_scheme(text.substr(0, sep));
  if (!has_scheme) {
    // A bare local path: taken literally (no percent-decoding), so any file
    // name, including ones with '%' or ':', can be named.
    url.scheme = "file";
    url.path = std::string(text);
    url.trailing_slash = text.size() > 1 && text.back() == '/';
    return url;
  }
  url.scheme = std::string(text.substr(0, sep));
  for (auto& c : url.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string_view rest = text.substr(sep + 3);
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view raw_path = slash == std::string_view::npos ? "" : rest.substr(slash);

  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    url.user = std::string(authority.substr(0, at));
    authority = authority.substr(at + 1);
  }
  std::string_view port_text;
  if (!authority.empty() && authority[0] == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      return make_error(ErrorCode::kInvalidArgument, "parse url", text, "unclosed '[' in host");
    }
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        return make_error(ErrorCode::kInvalidArgument, "parse url", text, "junk after host");
      }
      port_text = after.substr(1);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    url.host = std::string(authority.substr(0, colon));
    port_text = authority.substr(colon + 1);
  } else {
    url.host = std::string(authority);
  }
  // A host is a name or an address, a user a login name: nothing that
  // could change how the URL reads when printed again (':', '@', '/',
  // brackets, spaces, control bytes).
  const bool bracketed = !authority.empty() && authority[0] == '[';
  for (unsigned char c : url.host) {
    const bool ok = std::isalnum(c) || c == '.' || c == '-' || c == '_' ||
                    (bracketed && (c == ':' || c == '%'));
    if (!ok) {
      return make_error(ErrorCode::kInvalidArgument, "parse url", text,
                        "invalid character in the host name");
    }
  }
  for (unsigned char c : url.user) {
    if (c <= 0x20 || c >= 0x7f || c == '@' || c == '/' || c == ':' || c == '[' || c == ']') {
      return make_error(ErrorCode::kInvalidArgument, "parse url", text,
                        "invalid character in the user name");
    }
  }
  if (!port_text.empty()) {
    int port = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || p != port_text.data() + port_text.size() || port <= 0 ||
        port > 65535) {
      return make_error(ErrorCode::kInvalidArgument, "parse url", text,
                        fmt::format("bad port '{}'", port_text));
    }
    url.port = port;
  }
  if (url.scheme == "file" && !url.host.empty() && url.host != "localhost") {
    return make_error(ErrorCode::kInvalidArgument, "parse url", text,
                      "file:// URLs cannot name a remote host");
  }
  if (url.scheme == "file") url.host.clear();
  if (url.scheme != "file") {
    // "?k=v&k2=v2": the endpoint's settings. A '?' in a remote path is
    // written %3F.
    if (auto q = raw_path.find('?'); q != std::string_view::npos) {
      std::string_view query = raw_path.substr(q + 1);
      raw_path = raw_path.substr(0, q);
      if (raw_path.empty()) raw_path = "";
      while (!query.empty()) {
        const auto amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (pair.empty()) continue;
        if (url.query.size() >= kMaxQueryParams) {
          return make_error(ErrorCode::kInvalidArgument, "parse url", text,
                            "too many query parameters");
        }
        const auto eq = pair.find('=');
        XFER_ASSIGN_OR_RETURN(std::string key, decode_url_part(pair.substr(0, eq), text));
        XFER_ASSIGN_OR_RETURN(
            std::string value,
            decode_url_part(eq == std::string_view::npos ? "" : pair.substr(eq + 1), text));
        if (key.empty()) {
          return make_error(ErrorCode::kInvalidArgument, "parse url", text,
                            "a query parameter without a name");
        }
        url.query.emplace_back(std::move(key), std::move(value));
      }
    }
  }
  auto decoded = decode_url_part(raw_path, text);
  if (!decoded) return std::move(decoded).error();
  url.path = std::move(decoded).value();
  url.trailing_slash = url.path.size() > 1 && url.path.back() == '/';
  if (url.scheme == "file" && url.path.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "parse url", text, "file URL without a path");
  }
  return url;
}

std::string join_path(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  if (name.empty()) return std::string(dir);
  std::string out(dir);
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  if (out != "/") out += '/';
  while (!name.empty() && name.front() == '/') name.remove_prefix(1);
  out += name;
  return out;
}

std::string base_name(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (path == "/") return "";
  auto pos = path.rfind('/');
  return std::string(pos == std::string_view::npos ? path : path.substr(pos + 1));
}

std::string dir_name(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  auto pos = path.rfind('/');
  if (pos == std::string_view::npos) return ".";
  if (pos == 0) return "/";
  return std::string(path.substr(0, pos));
}

bool path_within(std::string_view path, std::string_view dir) {
  if (dir == "/") return !path.empty() && path.front() == '/';
  if (!path.starts_with(dir)) return false;
  return path.size() == dir.size() || path[dir.size()] == '/';
}

bool is_ip_literal(const std::string& host) {
  in_addr a4{};
  in6_addr a6{};
  return ::inet_pton(AF_INET, host.c_str(), &a4) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

Result<std::vector<std::string>> parse_address_list(std::string_view text) {
  constexpr std::size_t kMaxEntry = 45;  // the longest IPv6 text form
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string one(text.substr(0, comma).substr(0, kMaxEntry + 1));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    if (one.empty()) continue;
    if (one.size() > kMaxEntry || !is_ip_literal(one)) {
      return make_error(ErrorCode::kInvalidArgument, "parse addresses", one.substr(0, kMaxEntry),
                        "not a numeric IP address (expected addresses separated by commas, "
                        "as in 10.0.1.1,10.0.2.1)");
    }
    if (out.size() == kMaxAddressList) {
      return make_error(ErrorCode::kInvalidArgument, "parse addresses", one,
                        fmt::format("more than {} addresses", kMaxAddressList));
    }
    out.push_back(std::move(one));
  }
  return out;
}

}  // namespace xfer
