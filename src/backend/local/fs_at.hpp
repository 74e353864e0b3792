#pragma once
// The file-system core shared by the local backend and xferd's confined
// root: every operation names a directory descriptor and a name inside it
// (`At`), and is done with *at(2) calls, so a path is never re-resolved by
// name after the caller checked it.
//
// The local backend passes AT_FDCWD and a whole path. xferd passes the
// descriptor of the parent folder it resolved beneath its root (openat2
// RESOLVE_BENEATH) and one validated name component; with `FsPolicy::
// confined` a final symlink is never followed, special files are never
// opened, and setuid/setgid/sticky bits are dropped unless allowed.
//
// Threading: the functions are stateless and safe to call concurrently; the
// Sink and Source they return follow the Backend contract (backend.hpp).

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "xfer/backend/backend.hpp"
#include "xfer/io/unique_fd.hpp"

namespace xfer::fs {

// Where an operation acts. `dir` must stay open for the duration of the call
// (the Sink keeps its own reference, see open_sink_at).
struct At {
  int dir = -100;     // AT_FDCWD
  std::string name;   // relative to dir (a whole path with AT_FDCWD)
  std::string shown;  // the path named in errors (a server path on xferd)
};

struct FsPolicy {
  // xferd: refuse to follow a final symlink (open, list, set_attrs), refuse
  // anything but regular files, directories and symlinks, check reopened
  // partials (regular, one link), no preallocation of resumable partials.
  bool confined = false;
  // Keep setuid/setgid/sticky bits on what is created or changed.
  bool allow_special_bits = true;
};

// State shared by the sinks of one backend.
struct SinkEnv {
  mode_t umask = 022;
  std::atomic<bool> use_tmpfile{true};  // false once a file system refused O_TMPFILE
};

Result<FileAttrs> stat_at(const At& at);
Status list_at(const At& at, const ListOptions& options, const EntrySink& sink,
               const FsPolicy& policy);
// Creates one directory; an existing directory is kExists unless
// `exist_ok` (an existing non-directory is kNotDirectory with exist_ok).
Status mkdir_at(const At& at, bool exist_ok);
// Removes a file, symlink or empty directory; with `recursive` a tree,
// walked by descriptors (never following a symlink inside it).
Status remove_at(const At& at, bool recursive);
Status rename_at(const At& from, const At& to);
Status touch_at(const At& at, std::optional<std::int64_t> mtime_ns);
Status symlink_at(const std::string& target, const At& at, const FileAttrs& attrs);
Status set_attrs_at(const At& at, const FileAttrs& attrs, const FsPolicy& policy);
Result<std::unique_ptr<Source>> open_source_at(const At& at, const FsPolicy& policy);
// `dir_owner` (may be invalid with AT_FDCWD) is kept by the Sink: commit
// publishes relative to it.
Result<std::unique_ptr<Sink>> open_sink_at(UniqueFd dir_owner, At at, const SinkOptions& options,
                                           const FsPolicy& policy, SinkEnv& env);

// The process umask, read from /proc without changing it (umask(2) would
// race with other threads creating files).
mode_t current_umask();

// The mode bits a policy lets through.
inline std::uint32_t allowed_mode(std::uint32_t mode, const FsPolicy& policy) {
  return policy.allow_special_bits ? (mode & 07777) : (mode & 0777);
}

}  // namespace xfer::fs
