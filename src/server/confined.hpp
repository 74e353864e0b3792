#pragma once
// A Backend over xferd's root: every path is a server path ("/a/b"),
// resolved once by ServerRoot::open_parent (beneath the root, no '..', no
// symlink on the way out) and checked against the caller's token scope on
// that same resolution; the operation then runs with *at(2) calls on the
// parent's descriptor (backend/local/fs_at.hpp), so no path string is ever
// re-resolved between the check and the use. A final symlink is never
// followed (open, list, set_attrs refuse it), only regular files, folders
// and symlinks are opened, and setuid/setgid/sticky bits are dropped unless
// the configuration allows them.
//
// Threading: stateless apart from shared, thread-safe state; one instance
// may serve many threads.

#include <memory>

#include "xfer/backend/backend.hpp"
#include "xfer/server/auth.hpp"
#include "xfer/server/root.hpp"

namespace xfer::server {

struct ConfinedOptions {
  bool allow_special_bits = false;  // config: server.allow_setuid
};

// The root's shared state (policy, umask, O_TMPFILE support).
class ConfinedRoot;
std::shared_ptr<ConfinedRoot> make_confined_root(std::shared_ptr<const ServerRoot> root,
                                                 ConfinedOptions options);

// A backend on `root` limited to `scope`: its prefix (on the path as given
// and on its canonical form), read-only unless it may write, and nothing at
// all once it has expired (expires_at > 0), so a session or a server-run job
// ends with its token. There is no unscoped backend: everything a peer
// causes, a job included, goes through its token.
std::unique_ptr<Backend> make_confined_backend(std::shared_ptr<ConfinedRoot> root,
                                               TokenScope scope);

// May a token with `scope` touch `path` (for writing when `write`)? Checked
// on the path as given and on its canonical form (ServerRoot::Resolved), so
// a symlink inside the prefix that points elsewhere in the root does not
// widen the token. Returns the normalised server path; kPermission "path
// outside the token's scope" / "token is read-only" otherwise.
Result<std::string> check_token_scope(const ServerRoot& root, const TokenScope& scope,
                                      std::string_view path, bool write, std::string_view op);

}  // namespace xfer::server
