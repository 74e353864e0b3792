// Profiles of endpoints (profile.hpp): the URL, the named remote and the
// conventional places (environment, ~/.ssh/config, ~/.aws/*) merged into
// one set of fields. Reads files and the environment; no state; any thread.

#include "xfer/backend/profile.hpp"

#include <fmt/format.h>

#include <fnmatch.h>
#include <cctype>
#include <cstdlib>
#include <sstream>
#include <vector>

#include "xfer/backend/xfer.hpp"
#include "xfer/core/files.hpp"
#include "xfer/core/names.hpp"

namespace xfer {
namespace {

constexpr std::size_t kMaxConventionalFile = 1 << 20;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

std::string home_of(const ProfileEnvironment& e) {
  return e.home.empty() ? env("HOME") : e.home;
}

// ssh's Host patterns: space-separated, '*' and '?' wildcards, '!' negates.
bool host_matches(std::string_view patterns, std::string_view host) {
  bool matched = false;
  std::istringstream in{std::string(patterns)};
  std::string p;
  const std::string h(host);
  while (in >> p) {
    const bool negated = !p.empty() && p[0] == '!';
    if (negated) p.erase(0, 1);
    if (::fnmatch(lower(p).c_str(), lower(h).c_str(), 0) == 0) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

// Sets `key` unless something of higher precedence already did.
void offer(Profile& p, const std::string& key, const std::string& value, std::string origin) {
  if (value.empty() || p.has(key)) return;
  p.fields[key] = value;
  p.origins[key] = std::move(origin);
}

void from_ssh(Profile& p, const std::string& host, const ProfileEnvironment& e) {
  const std::string home = home_of(e);
  if (!home.empty()) {
    if (auto text = read_small_file(home + "/.ssh/config", kMaxConventionalFile)) {
      for (auto& [k, v] : ssh_config_for(*text, host)) {
        std::string value = v;
        if (k == "key_file" && value.rfind("~/", 0) == 0) value = home + value.substr(1);
        // The URL's host is the alias ssh looks up; its HostName is where
        // to go (what ssh itself does), unless a remote named the host.
        if (k == "host" && p.origins[k] == "the URL") p.fields.erase(k);
        offer(p, k, value, "~/.ssh/config");
      }
    }
  }
  offer(p, "agent", env("SSH_AUTH_SOCK"), "$SSH_AUTH_SOCK");
}

void from_aws(Profile& p, const ProfileEnvironment& e) {
  offer(p, "access_key_id", env("AWS_ACCESS_KEY_ID"), "$AWS_ACCESS_KEY_ID");
  offer(p, "secret_access_key", env("AWS_SECRET_ACCESS_KEY"), "$AWS_SECRET_ACCESS_KEY");
  offer(p, "session_token", env("AWS_SESSION_TOKEN"), "$AWS_SESSION_TOKEN");
  offer(p, "region", env("AWS_REGION"), "$AWS_REGION");
  offer(p, "region", env("AWS_DEFAULT_REGION"), "$AWS_DEFAULT_REGION");
  offer(p, "endpoint", env("AWS_ENDPOINT_URL"), "$AWS_ENDPOINT_URL");
  const std::string home = home_of(e);
  if (home.empty()) return;
  std::string profile = env("AWS_PROFILE");
  if (profile.empty()) profile = "default";
  const std::string creds_path = env("AWS_SHARED_CREDENTIALS_FILE").empty()
                                     ? home + "/.aws/credentials"
                                     : env("AWS_SHARED_CREDENTIALS_FILE");
  if (auto text = read_small_file(creds_path, kMaxConventionalFile)) {
    auto s = ini_section(*text, profile);
    offer(p, "access_key_id", s["aws_access_key_id"], "~/.aws/credentials");
    offer(p, "secret_access_key", s["aws_secret_access_key"], "~/.aws/credentials");
    offer(p, "session_token", s["aws_session_token"], "~/.aws/credentials");
  }
  const std::string config_path =
      env("AWS_CONFIG_FILE").empty() ? home + "/.aws/config" : env("AWS_CONFIG_FILE");
  if (auto text = read_small_file(config_path, kMaxConventionalFile)) {
    auto s = ini_section(*text, profile == "default" ? profile : "profile " + profile);
    offer(p, "region", s["region"], "~/.aws/config");
    offer(p, "endpoint", s["endpoint_url"], "~/.aws/config");
  }
}

// gsutil's ~/.boto ($BOTO_CONFIG): GCS's HMAC keys.
void from_boto(Profile& p, const ProfileEnvironment& e) {
  const std::string path = env("BOTO_CONFIG").empty() ? home_of(e) + "/.boto" : env("BOTO_CONFIG");
  if (auto text = read_small_file(path, kMaxConventionalFile)) {
    auto s = ini_section(*text, "Credentials");
    offer(p, "access_key_id", s["gs_access_key_id"], "~/.boto");
    offer(p, "secret_access_key", s["gs_secret_access_key"], "~/.boto");
  }
}

void from_azure(Profile& p) {
  offer(p, "account", env("AZURE_STORAGE_ACCOUNT"), "$AZURE_STORAGE_ACCOUNT");
  offer(p, "key", env("AZURE_STORAGE_KEY"), "$AZURE_STORAGE_KEY");
  offer(p, "sas_token", env("AZURE_STORAGE_SAS_TOKEN"), "$AZURE_STORAGE_SAS_TOKEN");
  offer(p, "connection_string", env("AZURE_STORAGE_CONNECTION_STRING"),
        "$AZURE_STORAGE_CONNECTION_STRING");
}

}  // namespace

std::string Profile::get(std::string_view key, std::string_view fallback) const {
  auto it = fields.find(std::string(key));
  return it == fields.end() ? std::string(fallback) : it->second;
}

std::map<std::string, std::string> ssh_config_for(std::string_view text, std::string_view host) {
  static const std::map<std::string, std::string> kKeys = {
      {"hostname", "host"}, {"user", "user"}, {"port", "port"}, {"identityfile", "key_file"}};
  std::map<std::string, std::string> out;
  bool active = true;  // lines before the first Host apply to every host
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::string_view l = trim(line);
    if (l.empty() || l[0] == '#') continue;
    std::size_t split = 0;
    while (split < l.size() && !std::isspace(static_cast<unsigned char>(l[split])) &&
           l[split] != '=') {
      ++split;
    }
    const std::string key = lower(l.substr(0, split));
    std::string_view value = trim(l.substr(split));
    if (!value.empty() && value[0] == '=') value = trim(value.substr(1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    if (key == "host") {
      active = host_matches(value, host);
      continue;
    }
    if (key == "match") {
      active = false;  // Match blocks need ssh's evaluation: not applied
      continue;
    }
    if (!active) continue;
    auto k = kKeys.find(key);
    if (k != kKeys.end() && out.count(k->second) == 0) out[k->second] = std::string(value);
  }
  return out;
}

std::map<std::string, std::string> ini_section(std::string_view text, std::string_view section) {
  std::map<std::string, std::string> out;
  bool active = false;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::string_view l = trim(line);
    if (l.empty() || l[0] == '#' || l[0] == ';') continue;
    if (l.front() == '[' && l.back() == ']') {
      active = trim(l.substr(1, l.size() - 2)) == section;
      continue;
    }
    if (!active) continue;
    const auto eq = l.find('=');
    if (eq == std::string_view::npos) continue;
    out[lower(trim(l.substr(0, eq)))] = std::string(trim(l.substr(eq + 1)));
  }
  return out;
}

std::optional<Url> expand_remote(std::string_view text, const CredentialStore& store) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  const std::string_view name = text.substr(0, colon);
  if (text.substr(colon).rfind("://", 0) == 0) return std::nullopt;   // a URL
  if (name.find('/') != std::string_view::npos) return std::nullopt;  // "./a:b", "dir/a:b"
  const RemoteSpec* r = store.remote(name);
  if (r == nullptr) return std::nullopt;
  Url url;
  url.scheme = r->type == "azure" ? "az" : r->type;  // the type's URL scheme
  url.remote = r->name;
  auto f = [&](const char* k) {
    auto it = r->fields.find(k);
    return it == r->fields.end() ? std::string() : it->second;
  };
  url.host = f("host");
  if (const std::string port = f("port"); !port.empty()) url.port = std::atoi(port.c_str());
  std::string path(text.substr(colon + 1));
  url.trailing_slash = path.size() > 1 && path.back() == '/';
  if (path.empty() || path[0] != '/') path = "/" + path;
  if ((r->type == "s3" || r->type == "azure") && url.host.empty()) {
    // NAME:bucket/key: an object store's bucket (container) is the
    // path's first name, as in s3://bucket/key.
    const auto slash = path.find('/', 1);
    url.host = path.substr(1, slash == std::string::npos ? std::string::npos : slash - 1);
    path = slash == std::string::npos ? "/" : path.substr(slash);
  }
  url.path = std::move(path);
  return url;
}

Result<Profile> resolve_profile(const Url& url, const Credentials* credentials,
                                const std::string& explicit_token, const ProfileEnvironment& e) {
  Profile p;
  // az:// URLs are of the remote type "azure".
  const std::string type_name = url.scheme == "az" ? "azure" : url.scheme;
  p.type = type_name;
  p.remote = url.remote;
  const RemoteType* type = find_remote_type(type_name);
  // 1. The command line and the URL.
  offer(p, "token", explicit_token, "--token");
  for (const auto& [key, value] : url.query) {
    if (type == nullptr ||
        std::find(type->keys.begin(), type->keys.end(), key) == type->keys.end()) {
      return make_error(
          ErrorCode::kInvalidArgument, "open endpoint", url.to_string(),
          fmt::format("a {} URL takes no parameter \"{}\"", url.scheme, printable_name(key, 40)));
    }
    if (is_secret_key(type_name, key)) {
      return make_error(
          ErrorCode::kInvalidArgument, "open endpoint", url.to_string(),
          fmt::format("{} is a secret: keep it in credentials.toml (xfer remote add), "
                      "not in a URL",
                      key));
    }
    offer(p, key, value, "the URL");
  }
  offer(p, "user", url.user, "the URL");
  if (url.port != 0) offer(p, "port", std::to_string(url.port), "the URL");
  if (!url.host.empty()) offer(p, "host", url.host, "the URL");
  // 2. The named remote.
  std::shared_ptr<const CredentialStore> store;
  auto need_store = [&]() -> Status {
    if (store || credentials == nullptr) return ok_status();
    XFER_ASSIGN_OR_RETURN(store, credentials->store());
    return ok_status();
  };
  if (!url.remote.empty()) {
    XFER_TRY(need_store());
    const RemoteSpec* r = store ? store->remote(url.remote) : nullptr;
    if (r == nullptr) {
      return make_error(ErrorCode::kNotFound, "open endpoint", url.remote,
                        "no such remote (xfer remote list)");
    }
    for (const auto& [key, value] : r->fields) {
      XFER_ASSIGN_OR_RETURN(std::string opened, credentials->reveal(value));
      offer(p, key, opened, "remote " + r->name);
    }
  }
  // 3. The conventional places.
  if (!e.ambient) return p;
  if (url.scheme == "xfer") {
    offer(p, "token", env("XFER_TOKEN"), "$XFER_TOKEN");
    if (!p.has("token") && credentials != nullptr) {
      XFER_TRY(need_store());
      const std::string host_port = fmt::format(
          "{}:{}", url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host,
          url.port != 0 ? url.port : kDefaultXferPort);
      if (auto t = store->endpoint_token(host_port)) {
        XFER_ASSIGN_OR_RETURN(std::string opened, credentials->reveal(*t));
        offer(p, "token", opened, "credentials.toml [\"" + host_port + "\"]");
      }
    }
  } else if (url.scheme == "sftp") {
    from_ssh(p, url.host, e);
  } else if (url.scheme == "s3") {
    from_aws(p, e);
  } else if (url.scheme == "gs") {
    from_boto(p, e);
  } else if (type_name == "azure") {
    from_azure(p);
  }
  return p;
}

}  // namespace xfer
