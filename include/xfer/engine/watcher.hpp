#pragma once
// Watches a local folder tree and reports what changes in it to a
// ChangeFeed (xfer sync --watch, and xferd's WatchChanges; docs/sync.md
// "Watch"). inotify, one watch per folder, added as folders appear. A burst
// of events on one path is one change, reported once the path has been
// quiet for `debounce`; a rename inside the tree is one rename; a removal
// is reported at once. When the kernel's queue overflows, a watch cannot be
// added, or a bound of WatchOptions is passed, a rescan of the whole tree is
// reported instead (nothing is lost, the sync walk compares everything; an
// overflow also makes the watch table again, since renames were lost); a
// rescan is reported every `reconcile` anyway, and at most one every 2 s.
// Paths longer than 4096 bytes and xfer's own partials are never reported.
// When the watched folder itself is moved or removed the watch ends
// (failure() says so; its feed is closed): what it would report next would
// name another place.
//
// Confinement: every folder below the watched one is opened from the
// watched folder's descriptor, beneath it and through no symlink
// (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), and watched through that
// descriptor; a folder moved out of the tree loses its watches. So xferd
// can watch a client's folder without reporting names from elsewhere.
//
// Threading: one thread of its own, started by start() and joined by
// stop() (or the destructor). The feed is thread-safe.

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "xfer/backend/backend.hpp"
#include "xfer/core/result.hpp"
#include "xfer/engine/changes.hpp"
#include "xfer/io/unique_fd.hpp"

namespace xfer {

class TreeWatcher final : public ChangeWatch {
 public:
  // Starts watching `path` (a folder; a symlink to one is followed) and
  // reporting its changes as events of source root `root`, paths relative
  // to `path`. Fails when inotify cannot be set up for the folder itself.
  static Result<std::unique_ptr<TreeWatcher>> start(std::size_t root, std::string path,
                                                    std::shared_ptr<ChangeFeed> feed,
                                                    WatchOptions options);
  // The same for the folder open at `folder` (O_RDONLY | O_DIRECTORY);
  // `label` names it in messages.
  static Result<std::unique_ptr<TreeWatcher>> start_at(std::size_t root, UniqueFd folder,
                                                       std::string label,
                                                       std::shared_ptr<ChangeFeed> feed,
                                                       WatchOptions options);
  ~TreeWatcher() override;
  TreeWatcher(const TreeWatcher&) = delete;
  TreeWatcher& operator=(const TreeWatcher&) = delete;
  void stop() override;
  std::optional<Error> failure() const override;

  struct Impl;

 private:
  explicit TreeWatcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace xfer
