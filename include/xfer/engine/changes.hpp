#pragma once
// A transfer whose input stays open: after its first scan, the engine takes
// the paths a producer reports as changed (an inotify or fanotify watcher
// for continuous sync, a test) and copies each again, until the feed is
// closed. A path that changes while its copy is in flight is copied once
// more after that copy ends, never twice at once (the two copies would
// share the destination's partial).
//
// Thread-safe: producers push from any thread; the engine's scanner thread
// takes.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace xfer {

struct ChangeEvent {
  // Which SRC argument of the request the path lies under (0 for the first).
  std::size_t root = 0;
  // Relative to that SRC ("sub/file"); "" for the SRC itself. Components
  // are checked: no "..", ".", empty names or absolute paths.
  std::string path;
  // Removals are not propagated by a copy (that is sync's --delete).
  // kRenamed: `from` (relative, checked alike) became `path`; a sync with
  // --delete renames at the destination too. kRescan: compare the whole
  // SRC again (a watcher lost track: its queue overflowed; or the periodic
  // reconcile); `path` is "".
  enum class Kind { kChanged, kRemoved, kRenamed, kRescan } kind = Kind::kChanged;
  std::string from;
  // When the change was first noticed: sync --watch reports the time from
  // here to the commit at the destination (propagation latency).
  std::chrono::steady_clock::time_point seen{};
};

// How a watch (Backend::watch) reports: a changed path once it has been
// quiet for `debounce`; a rescan every `reconcile` anyway. The bounds keep
// what a huge or busy tree costs finite; past them the watch reports a
// rescan instead of following each change.
// How a local folder is watched (engine/watcher.hpp): inotify, one watch
// per folder; fanotify, one mark on the whole file system with events
// matched to the folder by path (needs CAP_SYS_ADMIN and Linux 5.17); or
// fanotify where it can be set up, inotify otherwise.
enum class WatchMechanism { kAuto, kInotify, kFanotify };

// Folders watched by several watches together, at most `limit` (xferd's
// streams share one: their inotify watches come from one user's
// fs.inotify.max_user_watches). Thread-safe.
class FolderBudget {
 public:
  explicit FolderBudget(std::size_t limit) : limit_(limit) {}
  bool take() {
    std::size_t used = used_.load();
    do {
      if (used >= limit_) return false;
    } while (!used_.compare_exchange_weak(used, used + 1));
    return true;
  }
  void give(std::size_t n) { used_.fetch_sub(n); }
  std::size_t used() const { return used_.load(); }

 private:
  const std::size_t limit_;
  std::atomic<std::size_t> used_{0};
};

struct WatchOptions {
  WatchMechanism mechanism = WatchMechanism::kInotify;
  std::chrono::milliseconds debounce{500};
  std::chrono::milliseconds reconcile{3'600'000};  // 0: never
  std::size_t max_folders = 0;                     // folders watched at most (0: no bound)
  std::size_t max_pending = 1'000'000;             // changed paths waiting to be quiet
  // Bytes of paths held (the watch table and the waiting paths); past it,
  // a rescan instead. 0: no bound.
  std::size_t max_bytes = 0;
  std::shared_ptr<FolderBudget> folder_budget;  // shared with other watches; null: none
};

class ChangeFeed {
 public:
  explicit ChangeFeed(std::size_t capacity = 65536) : capacity_(capacity) {}
  // Blocks while `capacity` events wait; false once the feed is closed.
  bool push(ChangeEvent event);
  // No more events: the transfer ends once what is queued is done.
  void close();
  // The next event, waiting at most `wait`; nullopt when none came (check
  // drained() to tell the end from a pause).
  std::optional<ChangeEvent> next(std::chrono::milliseconds wait);
  // Closed and empty.
  bool drained() const;

 private:
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable ready_cv_;
  std::condition_variable space_cv_;
  std::deque<ChangeEvent> events_;
  bool closed_ = false;
};

}  // namespace xfer
