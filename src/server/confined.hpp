#pragma once
// A Backend over xferd's root: every path is a server path ("/a/b") that is
// resolved by ServerRoot (no '..', no symlink on the way out of the root)
// and then handed to the local backend. On top of the root's rules, the
// operations that would follow a final symlink (open_source, list,
// set_attrs) refuse one: a link inside the root may point anywhere, and
// following it would read or change what lies outside.

#include <memory>

#include "xfer/backend/backend.hpp"
#include "xfer/server/root.hpp"

namespace xfer::server {

std::unique_ptr<Backend> make_confined_backend(std::shared_ptr<const ServerRoot> root);

}  // namespace xfer::server
