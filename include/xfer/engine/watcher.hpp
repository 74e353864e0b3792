#pragma once
// Watches a local folder tree and reports what changes in it to a
// ChangeFeed (xfer sync --watch; docs/sync.md "Watch"). inotify, one watch
// per folder, added as folders appear. A burst of events on one path is
// one change, reported once the path has been quiet for `debounce`; a
// rename inside the tree is one rename; a removal is reported at once.
// When the kernel's queue overflows, or a watch cannot be added, a rescan
// of the whole tree is reported instead (nothing is lost, the sync walk
// compares everything); a rescan is reported every `reconcile` anyway.
//
// Threading: one thread of its own, started by start() and joined by
// stop() (or the destructor). The feed is thread-safe.

#include <chrono>
#include <memory>
#include <string>

#include "xfer/core/result.hpp"
#include "xfer/engine/changes.hpp"

namespace xfer {

struct WatchOptions {
  std::chrono::milliseconds debounce{500};
  std::chrono::milliseconds reconcile{3'600'000};  // 0: never
};

class TreeWatcher {
 public:
  // Starts watching `path` (a folder) and reporting its changes as events
  // of source root `root`, paths relative to `path`. Fails when inotify
  // cannot be set up for the folder itself.
  static Result<std::unique_ptr<TreeWatcher>> start(std::size_t root, std::string path,
                                                    std::shared_ptr<ChangeFeed> feed,
                                                    WatchOptions options);
  ~TreeWatcher();
  TreeWatcher(const TreeWatcher&) = delete;
  TreeWatcher& operator=(const TreeWatcher&) = delete;
  void stop();

  struct Impl;

 private:
  explicit TreeWatcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace xfer
