#pragma once
// The http and https backends: read-only access to any web server through
// libcurl (docs/http.md).
//
//   http://host[:port]/path   https://host[:port]/path   NAME:path (a remote
//   of type http whose url = "https://host/prefix")
//
// A file is read with ranged GETs, several at once, each checked against
// the version opened (If-Range on its ETag or Last-Modified); a folder is
// listed from its index page (nginx/Apache autoindex HTML, nginx JSON).
// Writes and namespace changes are refused (kUnsupported). Credentials:
// user + password (basic) or bearer_token from the profile, sent only to
// the endpoint's own origin. TLS is verified against the system's CA
// bundle, or the profile's `ca` / --ca; --insecure turns that off.
//
// Only the CLI's registry has it (BackendRegistry::with_client_backends):
// xferd never fetches from a URL a client names.

#include <memory>

#include "xfer/backend/backend.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/core/url.hpp"

namespace xfer {

Result<std::unique_ptr<Backend>> make_http_backend(const Url& url, const Profile& profile,
                                                   const EndpointOptions& options);

}  // namespace xfer
