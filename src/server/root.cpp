// Server-path normalisation and the one openat2 resolution of the served
// root (root.hpp). A ServerRoot is immutable once opened: any thread may
// resolve through it at the same time.

#include "xfer/server/root.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <memory>

#include "xfer/core/names.hpp"
#include "xfer/core/url.hpp"
#include "xfer/server/auth.hpp"

namespace xfer::server {
namespace {

constexpr std::string_view kResolveOp = "resolve";

// openat2(2) has no glibc wrapper on the distributions we build on.
long openat2_beneath(int dirfd, const char* path, bool no_symlinks = false,
                     bool directory = false) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC | (directory ? O_DIRECTORY : 0);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | (no_symlinks ? RESOLVE_NO_SYMLINKS : 0);
  return ::syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

Error openat2_unsupported(std::string_view path) {
  return make_error(ErrorCode::kUnsupported, "open root", path,
                    "openat2(2) is not available (Linux 5.6 or newer is required)");
}

}  // namespace

Result<ServerRoot> ServerRoot::open(std::string root) {
  if (root.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "open root", root, "empty root path");
  }
  // The root is kept as a canonical absolute path: local paths are built by
  // appending the server path to it.
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(root.c_str(), nullptr), &std::free);
  if (!real) return errno_error(errno, "open root", root);
  ServerRoot r;
  r.root_ = real.get();
  int fd = ::open(r.root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "open root", r.root_);
  r.fd_ = UniqueFd(fd);
  // Probe openat2 once so a kernel without it fails at startup, not on the
  // first request.
  long probe = openat2_beneath(r.fd_.get(), ".");
  if (probe < 0) {
    int err = errno;
    if (err == ENOSYS) return openat2_unsupported(r.root_);
    return errno_error(err, "open root", r.root_);
  }
  ::close(static_cast<int>(probe));
  return r;
}

Result<ServerRoot::Resolved> ServerRoot::resolve(std::string_view client_path) const {
  Resolved out;
  XFER_ASSIGN_OR_RETURN(out.server_path, normalize_server_path(client_path));
  if (out.server_path == "/") {
    out.local_path = root_;
    return out;
  }
  out.local_path = root_ == "/" ? out.server_path : root_ + out.server_path;

  std::size_t last_slash = out.server_path.rfind('/');
  out.canonical_path = out.server_path;
  if (last_slash == 0) return out;  // the parent is the root itself
  // "a/b" for "/a/b/c": relative to the root fd; `rest` is what follows it.
  std::string prefix = out.server_path.substr(1, last_slash - 1);
  std::string rest = out.server_path.substr(last_slash + 1);

  // openat2 walks the longest existing prefix of the parent: the kernel
  // stops at the first missing component (ENOENT) or non-directory
  // (ENOTDIR), and fails with EXDEV as soon as a component (a symlink, or a
  // ".." inside a symlink's target) would leave the root, including when the
  // escaping symlink dangles. The deepest existing folder is then opened and
  // its real path read back: that gives the canonical server path (symlinks
  // on the way resolved), which token scopes are checked against.
  for (int attempt = 0;;) {
    // Fast path: no symlink on the way, so the canonical path is the path
    // itself and nothing needs reading back (one syscall per request).
    long fd = openat2_beneath(fd_.get(), prefix.c_str(), /*no_symlinks=*/true);
    if (fd >= 0) {
      ::close(static_cast<int>(fd));
      out.canonical_path = "/" + prefix + "/" + rest;
      return out;
    }
    if (errno == ELOOP) fd = openat2_beneath(fd_.get(), prefix.c_str());
    if (fd >= 0) {
      UniqueFd owned(static_cast<int>(fd));
      XFER_ASSIGN_OR_RETURN(std::string inside, inside_path(owned.get(), out.server_path));
      out.canonical_path = inside == "/" ? "/" + rest : inside + "/" + rest;
      return out;
    }
    int err = errno;
    switch (err) {
      case ENOENT:   // creation below a folder that does not exist yet: the
      case ENOTDIR:  // caller's own call fails with the same errno; resolve
                     // the part that exists
      {
        auto slash = prefix.rfind('/');
        if (slash == std::string::npos) {
          out.canonical_path = "/" + prefix + "/" + rest;
          return out;
        }
        rest = prefix.substr(slash + 1) + "/" + rest;
        prefix.resize(slash);
        continue;
      }
      case EXDEV:
        return make_error(ErrorCode::kPermission, kResolveOp, out.server_path,
                          "path escapes the root");
      case EINTR:
      case EAGAIN:  // RESOLVE_BENEATH: a concurrent rename/mount raced the walk
        if (++attempt < 16) continue;
        break;
      case ENOSYS:
        return openat2_unsupported(root_);
      default:
        break;
    }
    // Error paths name the server path, never the local one: these messages
    // go back to clients.
    return errno_error(err, kResolveOp, out.server_path);
  }
}

Result<std::string> ServerRoot::inside_path(int fd, const std::string& server_path) const {
  char buf[PATH_MAX];
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return errno_error(errno, kResolveOp, server_path);
  std::string real(buf, static_cast<std::size_t>(n));
  if (root_ == "/") return real;
  if (real == root_) return std::string("/");
  if (path_within(real, root_)) return real.substr(root_.size());
  return make_error(ErrorCode::kPermission, kResolveOp, server_path, "path escapes the root");
}

Result<ServerRoot::Parent> ServerRoot::open_parent(std::string_view client_path) const {
  Parent out;
  XFER_ASSIGN_OR_RETURN(out.server_path, normalize_server_path(client_path));
  std::string prefix = ".";
  out.name = ".";
  if (out.server_path != "/") {
    const std::size_t last_slash = out.server_path.rfind('/');
    if (last_slash > 0) prefix = out.server_path.substr(1, last_slash - 1);
    out.name = out.server_path.substr(last_slash + 1);
    XFER_TRY(validate_name_component(out.name, "file name"));
  }
  for (int attempt = 0;;) {
    // Fast path: no symlink on the way, so the canonical path is the path
    // itself and nothing needs reading back.
    long fd = openat2_beneath(fd_.get(), prefix.c_str(), /*no_symlinks=*/true, /*directory=*/true);
    if (fd >= 0) {
      out.dir = UniqueFd(static_cast<int>(fd));
      out.canonical_path = out.server_path;
      return out;
    }
    if (errno == ELOOP) fd = openat2_beneath(fd_.get(), prefix.c_str(), false, true);
    if (fd >= 0) {
      out.dir = UniqueFd(static_cast<int>(fd));
      XFER_ASSIGN_OR_RETURN(std::string inside, inside_path(out.dir.get(), out.server_path));
      out.canonical_path = out.name == "." ? inside
                           : inside == "/" ? "/" + out.name
                                           : inside + "/" + out.name;
      return out;
    }
    const int err = errno;
    switch (err) {
      case EXDEV:
        return make_error(ErrorCode::kPermission, kResolveOp, out.server_path,
                          "path escapes the root");
      case EINTR:
      case EAGAIN:  // RESOLVE_BENEATH: a concurrent rename/mount raced the walk
        if (++attempt < 16) continue;
        break;
      case ENOSYS:
        return openat2_unsupported(root_);
      case ELOOP:  // a symlink loop on the way
        return make_error(ErrorCode::kInvalidArgument, kResolveOp, out.server_path,
                          "too many levels of symbolic links");
      default:
        break;
    }
    return errno_error(err, kResolveOp, out.server_path);
  }
}

}  // namespace xfer::server
