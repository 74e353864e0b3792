// The URL scheme -> backend factory table (registry.hpp), under a mutex:
// factories are registered at start-up and looked up by engines on any
// thread.

#include "xfer/backend/registry.hpp"

#include "xfer/backend/local.hpp"
#include "xfer/backend/xfer.hpp"

namespace xfer {

std::shared_ptr<BackendRegistry> BackendRegistry::with_builtins() {
  auto r = std::make_shared<BackendRegistry>();
  r->register_scheme("file",
                     [](const Url&, const EndpointOptions&) -> Result<std::unique_ptr<Backend>> {
                       return make_local_backend();
                     });
  r->register_scheme("xfer", make_xfer_backend);
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

Result<std::unique_ptr<Backend>> BackendRegistry::create(const Url& url,
                                                         const EndpointOptions& options) const {
  BackendFactory factory;
  {
    std::lock_guard lock(mu_);
    auto it = factories_.find(url.scheme);
    if (it == factories_.end()) {
      return make_error(ErrorCode::kUnsupported, "open endpoint", url.to_string(),
                        "no backend for scheme '" + url.scheme + "'");
    }
    factory = it->second;
  }
  return factory(url, options);
}

}  // namespace xfer
