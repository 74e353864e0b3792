#pragma once
// The sftp backend: files on any SSH server through its SFTP subsystem
// (docs/sftp.md).
//
//   sftp://[user@]host[:port]/path   sftp://host/~/path (the login folder)
//   NAME:path (a remote of type sftp)
//
// Reached as ssh reaches it: ~/.ssh/config (Host aliases, HostName, Port,
// User, IdentityFile, ProxyJump), known_hosts checked (a changed host key
// is refused; an unknown one needs --ssh-accept-new), ssh-agent, key files
// with passphrases, passwords from credentials.toml. Up to `--streams`
// SSH connections per endpoint (default kSftpDefaultConnections), opened
// as calls need them; many requests in flight on each.
//
// Only the CLI's registry has it (BackendRegistry::with_client_backends).

#include <memory>

#include "xfer/backend/backend.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/core/url.hpp"

namespace xfer {

// The SSH connections per endpoint when --streams does not say: what fills
// 1 Gbit/s at 50 ms with OpenSSH's 2 MiB channel window, and under
// OpenSSH's MaxStartups (10 logins at once).
inline constexpr unsigned kSftpDefaultConnections = 8;

Result<std::unique_ptr<Backend>> make_sftp_backend(const Url& url, const Profile& profile,
                                                   const EndpointOptions& options);

}  // namespace xfer
