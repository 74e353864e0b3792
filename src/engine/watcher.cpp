// The inotify tree watcher (watcher.hpp). Its thread owns the inotify
// descriptor, the watch table and the pending changes; the feed is the
// only thing it shares.

#include "xfer/engine/watcher.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <unordered_map>
#include <vector>

#include "xfer/core/log.hpp"
#include "xfer/io/unique_fd.hpp"

namespace xfer {

using Clock = std::chrono::steady_clock;

namespace {

constexpr std::uint32_t kDirMask = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE |
                                   IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |
                                   IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK;

std::string join(const std::string& a, std::string_view b) {
  if (a.empty()) return std::string(b);
  std::string out = a;
  out += '/';
  out += b;
  return out;
}

bool under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

}  // namespace

struct TreeWatcher::Impl {
  std::size_t root = 0;
  std::string base;  // the watched folder
  std::shared_ptr<ChangeFeed> feed;
  WatchOptions options;
  UniqueFd inotify;
  UniqueFd wake;  // eventfd: stop()
  std::thread thread;
  std::atomic<bool> stopping{false};

  std::unordered_map<int, std::string> dirs;  // watch descriptor -> folder, relative ("" = base)
  struct Pending {
    Clock::time_point first;
    Clock::time_point last;
  };
  std::unordered_map<std::string, Pending> pending;  // changed paths, waiting to be quiet
  struct MovedFrom {
    std::string path;
    bool dir = false;
    Clock::time_point seen;
  };
  std::unordered_map<std::uint32_t, MovedFrom> moved_from;  // by cookie, within one read
  bool rescan_due = false;
  Clock::time_point next_reconcile;

  // Adds a watch on `rel` and on every folder below it (a folder that
  // appeared: its contents may have come before its watch). False when
  // one could not be added (the tree is then rescanned).
  bool watch_tree(const std::string& rel) {
    std::vector<std::string> stack{rel};
    bool all = true;
    while (!stack.empty()) {
      std::string dir = std::move(stack.back());
      stack.pop_back();
      const std::string full = dir.empty() ? base : join(base, dir);
      const int wd = ::inotify_add_watch(inotify.get(), full.c_str(), kDirMask);
      if (wd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) continue;  // gone again
        if (errno == ENOSPC) {
          log().warn(
              "watch {}: the inotify watch limit is reached (raise fs.inotify.max_user_watches); "
              "its changes are found by the periodic reconcile",
              full);
        } else {
          log().warn("watch {}: {}", full, std::strerror(errno));
        }
        all = false;
        continue;
      }
      dirs[wd] = dir;
      DIR* d = ::opendir(full.c_str());
      if (d == nullptr) continue;
      while (dirent* e = ::readdir(d)) {
        const std::string_view name = e->d_name;
        if (name == "." || name == "..") continue;
        bool is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
          struct stat st {};
          is_dir = ::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                   S_ISDIR(st.st_mode);
        }
        if (is_dir) stack.push_back(join(dir, name));
      }
      ::closedir(d);
    }
    return all;
  }

  void push(ChangeEvent e) {
    e.root = root;
    (void)feed->push(std::move(e));  // blocks while the engine is behind
  }

  void changed(const std::string& path, Clock::time_point now) {
    auto [it, fresh] = pending.try_emplace(path, Pending{now, now});
    if (!fresh) it->second.last = now;
  }

  void removed(const std::string& path, Clock::time_point now) {
    for (auto it = pending.begin(); it != pending.end();) {
      it = under(it->first, path) ? pending.erase(it) : std::next(it);
    }
    ChangeEvent e;
    e.kind = ChangeEvent::Kind::kRemoved;
    e.path = path;
    e.seen = now;
    push(std::move(e));
  }

  void renamed(const MovedFrom& from, const std::string& to, bool dir, Clock::time_point now) {
    if (dir) {
      // The folder's watches keep their descriptors: their paths move.
      for (auto& [wd, p] : dirs) {
        if (under(p, from.path)) p = to + p.substr(from.path.size());
      }
    }
    std::vector<std::pair<std::string, Pending>> moved;
    for (auto it = pending.begin(); it != pending.end();) {
      if (under(it->first, from.path)) {
        moved.emplace_back(to + it->first.substr(from.path.size()), it->second);
        it = pending.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [p, when] : moved) pending[p] = when;
    ChangeEvent e;
    e.kind = ChangeEvent::Kind::kRenamed;
    e.from = from.path;
    e.path = to;
    e.seen = from.seen;
    push(std::move(e));
    changed(to, now);  // compared once quiet: the content may have changed too
  }

  void handle(const inotify_event& ev, Clock::time_point now) {
    if ((ev.mask & IN_Q_OVERFLOW) != 0) {
      log().warn("watch {}: the event queue overflowed; rescanning", base);
      rescan_due = true;
      return;
    }
    auto dir_it = dirs.find(ev.wd);
    if ((ev.mask & IN_IGNORED) != 0) {
      if (dir_it != dirs.end()) dirs.erase(dir_it);
      return;
    }
    if (dir_it == dirs.end()) return;
    const std::string dir = dir_it->second;
    if ((ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) != 0) {
      if (dir.empty()) {
        log().warn("watch {}: the watched folder itself was moved or removed", base);
        rescan_due = true;
      }
      return;  // a subfolder: its parent reports it
    }
    if (ev.len == 0) return;
    const std::string path = join(dir, ev.name);
    const bool is_dir = (ev.mask & IN_ISDIR) != 0;
    if ((ev.mask & IN_MOVED_FROM) != 0) {
      moved_from[ev.cookie] = {path, is_dir, now};
      return;
    }
    if ((ev.mask & IN_MOVED_TO) != 0) {
      auto from = moved_from.find(ev.cookie);
      if (is_dir && !watch_tree(path)) rescan_due = true;
      if (from != moved_from.end()) {
        const MovedFrom f = from->second;
        moved_from.erase(from);
        renamed(f, path, is_dir, now);
      } else {
        changed(path, now);  // moved in from outside the tree
      }
      return;
    }
    if ((ev.mask & IN_DELETE) != 0) {
      removed(path, now);
      return;
    }
    if ((ev.mask & IN_CREATE) != 0 && is_dir && !watch_tree(path)) rescan_due = true;
    changed(path, now);
  }

  // A rename whose other half did not come in the same read moved the
  // entry out of the tree: a removal.
  void settle_moves(Clock::time_point now) {
    for (auto& [cookie, from] : moved_from) removed(from.path, now);
    moved_from.clear();
  }

  // Pending paths quiet for the debounce go to the feed; the time until
  // the next one is due.
  std::chrono::milliseconds flush(Clock::time_point now) {
    if (rescan_due) {
      rescan_due = false;
      pending.clear();
      ChangeEvent e;
      e.kind = ChangeEvent::Kind::kRescan;
      e.seen = now;
      push(std::move(e));
    }
    if (options.reconcile.count() > 0 && now >= next_reconcile) {
      next_reconcile = now + options.reconcile;
      ChangeEvent e;
      e.kind = ChangeEvent::Kind::kRescan;
      e.seen = now;
      push(std::move(e));
    }
    auto wait = options.reconcile.count() > 0
                    ? std::chrono::duration_cast<std::chrono::milliseconds>(next_reconcile - now)
                    : std::chrono::milliseconds(60'000);
    std::vector<std::pair<std::string, Clock::time_point>> due;
    for (auto it = pending.begin(); it != pending.end();) {
      const auto ready = it->second.last + options.debounce;
      if (ready <= now) {
        due.emplace_back(it->first, it->second.first);
        it = pending.erase(it);
      } else {
        wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(ready - now) +
                                  std::chrono::milliseconds(1));
        ++it;
      }
    }
    // Parents before children: a new folder is made before its files.
    std::sort(due.begin(), due.end());
    for (auto& [path, first] : due) {
      ChangeEvent e;
      e.kind = ChangeEvent::Kind::kChanged;
      e.path = path;
      e.seen = first;
      push(std::move(e));
    }
    return std::max(wait, std::chrono::milliseconds(1));
  }

  void run() {
    alignas(inotify_event) char buf[64 * 1024];
    next_reconcile = Clock::now() + options.reconcile;
    std::chrono::milliseconds wait = flush(Clock::now());
    while (!stopping.load()) {
      pollfd fds[2] = {{inotify.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
      const int n = ::poll(fds, 2, static_cast<int>(std::min<long long>(wait.count(), 60'000)));
      if (stopping.load()) break;
      const auto now = Clock::now();
      if (n > 0 && (fds[0].revents & POLLIN) != 0) {
        for (;;) {
          const ssize_t len = ::read(inotify.get(), buf, sizeof buf);
          if (len <= 0) break;
          for (ssize_t off = 0; off < len;) {
            const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
            handle(*ev, now);
            off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
          }
        }
        settle_moves(now);
      }
      wait = flush(Clock::now());
    }
  }
};

Result<std::unique_ptr<TreeWatcher>> TreeWatcher::start(std::size_t root, std::string path,
                                                        std::shared_ptr<ChangeFeed> feed,
                                                        WatchOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->root = root;
  impl->base = std::move(path);
  impl->feed = std::move(feed);
  impl->options = options;
  impl->inotify = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!impl->inotify.valid()) return errno_error(errno, "watch", impl->base);
  impl->wake = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!impl->wake.valid()) return errno_error(errno, "watch", impl->base);
  if (!impl->watch_tree("")) impl->rescan_due = true;
  if (impl->dirs.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "watch", impl->base,
                      "cannot watch this folder (see the warning above)");
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->run(); });
  return std::unique_ptr<TreeWatcher>(new TreeWatcher(std::move(impl)));
}

TreeWatcher::TreeWatcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TreeWatcher::~TreeWatcher() {
  stop();
}

void TreeWatcher::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->stopping.store(true);
  const std::uint64_t one = 1;
  (void)!::write(impl_->wake.get(), &one, sizeof one);
  impl_->feed->close();  // a push blocked on a full feed returns
  impl_->thread.join();
}

}  // namespace xfer
