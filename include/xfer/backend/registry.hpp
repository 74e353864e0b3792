#pragma once
// Backends are created from URLs by scheme. Bare paths and file:// map to the
// local backend; later backends register their own schemes.

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "xfer/backend/backend.hpp"
#include "xfer/backend/profile.hpp"

namespace xfer {

class StreamStatsBoard;  // xfer/metrics/streams.hpp

// How to reach an endpoint beyond its URL: credentials and connection
// choices. Backends ignore what does not apply to them.
struct EndpointOptions {
  std::string token;            // bearer token (--token); empty: from the profile (profile.hpp)
  unsigned streams = 0;         // data connections; 0: the backend's default
  int encrypt = -1;             // data-channel sealing: -1 auto (off on loopback), 0 off, 1 on
  unsigned streams_max = 16;    // the most connections auto streams (streams == 0) may use
  std::string bind;             // local addresses for data connections, "A,B" (--bind)
  std::string cc;               // TCP congestion control of data connections; empty: the system's
  std::string tls_ca;           // CA bundle that signs the server's control-channel certificate
  bool tls = false;             // use TLS on the control channel
  std::string ca;               // https: CA bundle instead of the system's (--ca)
  bool insecure = false;        // https: do not verify the server's certificate (--insecure)
  bool ssh_accept_new = false;  // sftp: record an unknown host key (--ssh-accept-new)
  // Where the backend files its per-stream statistics (TCP_INFO of its data
  // connections); null: nowhere. The CLI keeps one board per process,
  // xferd one per job.
  std::shared_ptr<StreamStatsBoard> stats_board;
  // false: use only `token` and the URL, never the environment, the
  // registry's credentials file or ~/.ssh, ~/.aws (xferd's jobs must not
  // lend the server's own credentials to a client's request).
  bool ambient_credentials = true;
};

// Makes a backend for `url` from its resolved profile (host, port, user,
// secrets opened) and the process's endpoint choices.
using BackendFactory = std::function<Result<std::unique_ptr<Backend>>(const Url&, const Profile&,
                                                                      const EndpointOptions&)>;

// Thread-safe. Not a process-wide singleton: each front end (the CLI, each
// xferd) makes its own, adds what only it serves (xferd's "xferd" scheme for
// its jobs) and hands it to the engine in TransferRequest::backends.
class BackendRegistry {
 public:
  // A registry with the built-in backends: file (and bare paths), xfer.
  // xferd's: a client must not make the server fetch from other places.
  static std::shared_ptr<BackendRegistry> with_builtins();
  // The built-ins and every client-side endpoint: http, https, sftp (the
  // CLI's).
  static std::shared_ptr<BackendRegistry> with_client_backends();

  void register_scheme(std::string scheme, BackendFactory factory);
  bool has_scheme(const std::string& scheme) const;
  // The credentials file its URLs may name remotes of and take tokens from
  // (the CLI's); none by default (xferd's registries).
  void set_credentials(std::shared_ptr<const Credentials> credentials);

  // A URL, a bare path, or "NAME:path" for a remote of the credentials file.
  Result<Url> parse(std::string_view text) const;
  // The profile of `url` (profile.hpp) with `options.token` as --token.
  Result<Profile> profile(const Url& url, const EndpointOptions& options = {}) const;
  // kUnsupported naming the scheme when nothing is registered for it.
  Result<std::unique_ptr<Backend>> create(const Url& url,
                                          const EndpointOptions& options = {}) const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, BackendFactory> factories_;
  std::shared_ptr<const Credentials> credentials_;
};

}  // namespace xfer
