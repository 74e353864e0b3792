// The URL scheme -> backend factory table (registry.hpp), under a mutex:
// factories are registered at start-up and looked up by engines on any
// thread.

#include "xfer/backend/registry.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <vector>

#include "xfer/backend/azure.hpp"
#include "xfer/backend/http.hpp"
#include "xfer/backend/local.hpp"
#include "xfer/backend/s3.hpp"
#include "xfer/backend/sftp.hpp"
#include "xfer/backend/xfer.hpp"

namespace xfer {

std::shared_ptr<BackendRegistry> BackendRegistry::with_builtins() {
  auto r = std::make_shared<BackendRegistry>();
  r->register_scheme(
      "file",
      [](const Url&, const Profile&, const EndpointOptions&) -> Result<std::unique_ptr<Backend>> {
        return make_local_backend();
      });
  r->register_scheme("xfer", make_xfer_backend);
  return r;
}

std::shared_ptr<BackendRegistry> BackendRegistry::with_client_backends() {
  auto r = with_builtins();
  r->register_scheme("http", make_http_backend);
  r->register_scheme("https", make_http_backend);
  r->register_scheme("sftp", make_sftp_backend);
  r->register_scheme("s3", make_s3_backend);
  r->register_scheme("az", make_azure_backend);
  r->register_scheme("gs", make_gcs_backend);
  return r;
}

void BackendRegistry::register_scheme(std::string scheme, BackendFactory factory) {
  std::lock_guard lock(mu_);
  factories_[std::move(scheme)] = std::move(factory);
}

bool BackendRegistry::has_scheme(const std::string& scheme) const {
  std::lock_guard lock(mu_);
  return factories_.count(scheme) != 0;
}

void BackendRegistry::set_credentials(std::shared_ptr<const Credentials> credentials) {
  std::lock_guard lock(mu_);
  credentials_ = std::move(credentials);
}

Result<Url> BackendRegistry::parse(std::string_view text) const {
  std::shared_ptr<const Credentials> credentials;
  {
    std::lock_guard lock(mu_);
    credentials = credentials_;
  }
  // "NAME:rest" names a remote, never a local file: `xfer cp f host:f`
  // must not quietly make ./host:f (scp's habit says it is remote). A
  // credentials file that cannot be read is an error, and so is a NAME
  // that is no remote; a local name with a colon is written "./NAME:rest".
  const auto colon = text.find(':');
  const bool remote_form = colon != std::string_view::npos && colon > 0 &&
                           text.substr(0, colon).find('/') == std::string_view::npos &&
                           text.substr(colon, 3) != "://";
  if (remote_form) {
    if (credentials) {
      XFER_ASSIGN_OR_RETURN(auto store, credentials->store());
      if (auto url = expand_remote(text, *store)) return *url;
    }
    const std::string name(text.substr(0, colon));
    return make_error(ErrorCode::kInvalidArgument, "open endpoint", text,
                      fmt::format("'{}' is not a configured remote (xfer remote list); a local "
                                  "file whose name has a colon is written ./{}",
                                  name, text));
  }
  return parse_url(text);
}

Result<Profile> BackendRegistry::profile(const Url& url, const EndpointOptions& options) const {
  std::shared_ptr<const Credentials> credentials;
  {
    std::lock_guard lock(mu_);
    credentials = credentials_;
  }
  ProfileEnvironment env;
  env.ambient = options.ambient_credentials;
  return resolve_profile(url, options.ambient_credentials ? credentials.get() : nullptr,
                         options.token, env);
}

Result<std::unique_ptr<Backend>> BackendRegistry::create(const Url& url,
                                                         const EndpointOptions& options) const {
  BackendFactory factory;
  {
    std::lock_guard lock(mu_);
    auto it = factories_.find(url.scheme);
    if (it == factories_.end()) {
      std::vector<std::string> schemes;
      for (const auto& [scheme, f] : factories_) schemes.push_back(scheme + "://");
      std::sort(schemes.begin(), schemes.end());
      const std::string known = fmt::format("{}", fmt::join(schemes, ", "));
      return make_error(ErrorCode::kUnsupported, "open endpoint", url.to_string(),
                        fmt::format("xfer cannot reach {}:// endpoints yet; it speaks {} (a local "
                                    "path is file://)",
                                    url.scheme, known));
    }
    factory = it->second;
  }
  XFER_ASSIGN_OR_RETURN(Profile p, profile(url, options));
  return factory(url, p, options);
}

}  // namespace xfer
