#pragma once
// A Backend over xferd's root: every path is a server path ("/a/b") that is
// resolved by ServerRoot (no '..', no symlink on the way out of the root)
// and then handed to the local backend. On top of the root's rules, the
// operations that would follow a final symlink (open_source, list,
// set_attrs) refuse one: a link inside the root may point anywhere, and
// following it would read or change what lies outside.

#include <memory>

#include "xfer/backend/backend.hpp"
#include "xfer/server/auth.hpp"
#include "xfer/server/root.hpp"

namespace xfer::server {

std::unique_ptr<Backend> make_confined_backend(std::shared_ptr<const ServerRoot> root);

// May a token with `scope` touch `path` (for writing when `write`)? Checked
// on the path as given and on its canonical form (ServerRoot::Resolved), so
// a symlink inside the prefix that points elsewhere in the root does not
// widen the token. Returns the normalised server path; kPermission "path
// outside the token's scope" / "token is read-only" otherwise.
Result<std::string> check_token_scope(const ServerRoot& root, const TokenScope& scope,
                                      std::string_view path, bool write, std::string_view op);

}  // namespace xfer::server
