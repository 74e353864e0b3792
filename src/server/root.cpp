#include "xfer/server/root.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <memory>

#include "xfer/server/auth.hpp"

namespace xfer::server {
namespace {

constexpr std::string_view kResolveOp = "resolve";

// openat2(2) has no glibc wrapper on the distributions we build on.
long openat2_beneath(int dirfd, const char* path) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
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
  if (last_slash == 0) return out;  // the parent is the root itself
  // "a/b" for "/a/b/c": relative to the root fd.
  std::string parent = out.server_path.substr(1, last_slash - 1);

  // One openat2 walks the longest existing prefix of the parent: the kernel
  // stops at the first missing component (ENOENT) or non-directory
  // (ENOTDIR), and fails with EXDEV as soon as a component (a symlink, or a
  // ".." inside a symlink's target) would leave the root, including when the
  // escaping symlink dangles. Everything it walked before stopping is
  // therefore beneath the root.
  for (int attempt = 0;; ++attempt) {
    long fd = openat2_beneath(fd_.get(), parent.c_str());
    if (fd >= 0) {
      ::close(static_cast<int>(fd));
      return out;
    }
    int err = errno;
    switch (err) {
      case ENOENT:   // creation below a folder that does not exist yet: the
      case ENOTDIR:  // caller's own call fails with the same errno
        return out;
      case EXDEV:
        return make_error(ErrorCode::kPermission, kResolveOp, out.server_path,
                          "path escapes the root");
      case EINTR:
      case EAGAIN:  // RESOLVE_BENEATH: a concurrent rename/mount raced the walk
        if (attempt < 16) continue;
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

}  // namespace xfer::server
