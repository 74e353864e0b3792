#pragma once
// The one folder xferd serves (docs/server.md, "Root confinement"). Every
// client path is resolved here before any file-system call: it is normalised
// (normalize_server_path: no '..'), then the existing part of it is resolved
// with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) relative to the root
// directory fd, so a symlink anywhere on the way that points outside the
// root is refused (kPermission "path escapes the root"). The final component
// itself may be a symlink (list/stat/remove/rename operate on the link, as
// the local backend does); it is never followed for writes.

#include <string>
#include <string_view>

#include "xfer/core/result.hpp"
#include "xfer/io/unique_fd.hpp"

namespace xfer::server {

class ServerRoot {
 public:
  // `root` must be an existing directory; it is opened once (O_PATH).
  static Result<ServerRoot> open(std::string root);

  const std::string& path() const { return root_; }

  // Maps a client path ("/a/b", "a/b", "" = root) to an absolute local path
  // below the root after the checks above. The parent folder of the final
  // component must resolve beneath the root; the final component may not
  // exist yet (creation). Returns the normalised server path too.
  struct Resolved {
    std::string server_path;  // "/a/b"
    std::string local_path;   // "<root>/a/b"
    // server_path with the symlinks of its existing folders resolved (the
    // final component as given): what token scopes are checked against, so
    // a link inside a token's prefix cannot lead outside it.
    std::string canonical_path;
  };
  Result<Resolved> resolve(std::string_view client_path) const;

  // The one resolution every confined operation acts on: the parent folder
  // of `client_path` opened beneath the root (O_PATH | O_DIRECTORY with
  // RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) and the final component, which
  // the caller uses with *at(2) calls on `dir`, so nothing is resolved by
  // name twice. For the root itself `dir` is the root and `name` is ".".
  // A missing parent is the errno of the walk (ENOENT, ENOTDIR), named by
  // the server path; a walk that would leave the root is kPermission "path
  // escapes the root".
  struct Parent {
    UniqueFd dir;
    std::string name;            // one component (validated), or "."
    std::string server_path;     // "/a/b"
    std::string canonical_path;  // as in Resolved
  };
  Result<Parent> open_parent(std::string_view client_path) const;

 private:
  // The server path of the folder open at `fd` (a descriptor beneath the
  // root), read back from /proc: kPermission when it is not below the root.
  Result<std::string> inside_path(int fd, const std::string& server_path) const;

  std::string root_;
  UniqueFd fd_;
};

}  // namespace xfer::server
