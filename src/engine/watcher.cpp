// The inotify tree watcher (watcher.hpp). Its thread owns the inotify
// descriptor, the watched folder's descriptor, the watch table and the
// pending changes; the feed is the only thing it shares.

#include "xfer/engine/watcher.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "xfer/core/log.hpp"
#include "xfer/io/unique_fd.hpp"

namespace xfer {

using Clock = std::chrono::steady_clock;

namespace {

// Watches are added through /proc/self/fd/N of a folder opened beneath
// the watched one: that magic link must be followed (no IN_DONT_FOLLOW).
constexpr std::uint32_t kDirMask = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE |
                                   IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |
                                   IN_ONLYDIR | IN_EXCL_UNLINK;

// `rel` (relative, checked names) below `base`, never through a symlink
// nor out of it; -1 with errno otherwise (ELOOP/EXDEV for a link).
int open_beneath(int base, const std::string& rel) {
  open_how how{};
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(
      ::syscall(SYS_openat2, base, rel.empty() ? "." : rel.c_str(), &how, sizeof(how)));
}

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
  std::string base;  // the watched folder, as named in messages
  UniqueFd base_fd;  // ... and open
  std::shared_ptr<ChangeFeed> feed;
  WatchOptions options;
  UniqueFd inotify;   // inotify: one watch per folder (dirs)
  UniqueFd fanotify;  // or fanotify: one mark on the file system
  UniqueFd wake;      // eventfd: stop()
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
  bool warned_folders = false;
  bool warned_pending = false;
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
      if (options.max_folders > 0 && dirs.size() >= options.max_folders) {
        if (!warned_folders) {
          warned_folders = true;
          log().warn("watch {}: more than {} folders; the rest are found by rescans", base,
                     options.max_folders);
        }
        return false;
      }
      UniqueFd fd(open_beneath(base_fd.get(), dir));
      if (!fd.valid()) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP || errno == EXDEV) {
          continue;  // gone again, or replaced by a link (never followed)
        }
        log().warn("watch {}: {}", full, std::strerror(errno));
        all = false;
        continue;
      }
      const std::string via = fmt::format("/proc/self/fd/{}", fd.get());
      const int wd = ::inotify_add_watch(inotify.get(), via.c_str(), kDirMask);
      if (wd < 0) {
        if (errno == ENOSPC) {
          log().warn(
              "watch {}: the inotify watch limit is reached (raise fs.inotify.max_user_watches); "
              "its changes are found by rescans",
              full);
        } else {
          log().warn("watch {}: {}", full, std::strerror(errno));
        }
        all = false;
        continue;
      }
      // The same folder seen again (a rename raced with this walk) keeps
      // its descriptor: its path is the latest one.
      dirs[wd] = dir;
      DIR* d = ::fdopendir(fd.release());
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

  // A folder left the tree (moved out): its watches and those below it go,
  // so nothing from outside the tree is ever reported under its old name.
  void forget_dirs(const std::string& path) {
    for (auto it = dirs.begin(); it != dirs.end();) {
      if (under(it->second, path)) {
        (void)::inotify_rm_watch(inotify.get(), it->first);
        it = dirs.erase(it);
      } else {
        ++it;
      }
    }
  }

  // ---- fanotify -------------------------------------------------------
  // The file system's events carry the folder (a file handle) and the
  // name; a folder's handle is opened (open_by_handle_at) and its path
  // read back from /proc once, then cached, and an event counts only when
  // that path lies below the watched folder's. A folder renamed or removed
  // anywhere empties the cache (paths below it changed).
  std::string base_real;    // the watched folder's path now (canonical)
  std::string base_parent;  // its parent's, and its own name there: an event
  std::string base_name;    // on that name is the folder itself moved or gone
  std::unordered_map<std::string, std::string> folder_paths;  // handle -> canonical path
  static constexpr std::size_t kMaxCachedFolders = 65'536;

  Status setup_fanotify() {
    const int fd =
        ::fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME,
                        O_RDONLY | O_CLOEXEC | O_LARGEFILE);
    if (fd < 0) return errno_error(errno, "fanotify_init", base);
    fanotify = UniqueFd(fd);
    constexpr std::uint64_t kMask = FAN_CREATE | FAN_DELETE | FAN_RENAME | FAN_MODIFY |
                                    FAN_CLOSE_WRITE | FAN_ATTRIB | FAN_ONDIR;
    if (::fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, kMask, base_fd.get(), nullptr) !=
        0) {
      const int err = errno;
      fanotify.reset();
      return errno_error(err, "fanotify_mark", base);
    }
    auto real = fd_path(base_fd.get());
    if (!real) {
      fanotify.reset();
      return make_error(ErrorCode::kInternal, "watch", base, "cannot read the folder's path back");
    }
    base_real = *real;
    const auto slash = base_real.rfind('/');
    base_parent = slash == 0 ? "/" : base_real.substr(0, slash);
    base_name = base_real.substr(slash + 1);
    return ok_status();
  }

  static std::optional<std::string> fd_path(int fd) {
    char buf[4096 + 64];
    const std::string via = fmt::format("/proc/self/fd/{}", fd);
    const ssize_t n = ::readlink(via.c_str(), buf, sizeof buf);
    if (n <= 0 || static_cast<std::size_t>(n) >= sizeof buf) return std::nullopt;
    std::string out(buf, static_cast<std::size_t>(n));
    if (out.empty() || out.front() != '/' || out.ends_with(" (deleted)")) return std::nullopt;
    return out;
  }

  // The canonical path of the folder `fh` names; nullopt when it is gone.
  std::optional<std::string> folder_path(const file_handle* fh, std::size_t room) {
    const std::size_t bytes = sizeof(file_handle) + fh->handle_bytes;
    if (fh->handle_bytes > MAX_HANDLE_SZ || bytes > room) return std::nullopt;
    std::string key(reinterpret_cast<const char*>(fh), bytes);
    if (auto it = folder_paths.find(key); it != folder_paths.end()) return it->second;
    std::vector<std::uint64_t> aligned((bytes + 7) / 8);
    std::memcpy(aligned.data(), fh, bytes);
    UniqueFd dir(::open_by_handle_at(base_fd.get(), reinterpret_cast<file_handle*>(aligned.data()),
                                     O_PATH | O_CLOEXEC));
    if (!dir.valid()) return std::nullopt;  // removed since (its removal is an event too)
    auto path = fd_path(dir.get());
    if (!path) return std::nullopt;
    if (folder_paths.size() >= kMaxCachedFolders) folder_paths.clear();
    folder_paths.emplace(std::move(key), *path);
    return path;
  }

  // What one DFID_NAME record names: the path relative to the watched
  // folder, "" for nothing inside it; `self` when it is the watched folder.
  struct Named {
    std::optional<std::string> rel;
    bool self = false;
  };
  Named named(const fanotify_event_info_fid* fid, std::size_t len) {
    Named out;
    if (len < sizeof(fanotify_event_info_fid) + sizeof(file_handle)) return out;
    const auto* fh = reinterpret_cast<const file_handle*>(fid->handle);
    const std::size_t room = len - sizeof(fanotify_event_info_fid);
    auto dir = folder_path(fh, room);
    if (!dir) return out;
    const std::size_t name_at = sizeof(file_handle) + fh->handle_bytes;
    if (name_at >= room) return out;
    const char* name_p = reinterpret_cast<const char*>(fid->handle) + name_at;
    const std::string_view name(name_p, ::strnlen(name_p, room - name_at));
    if (name.empty() || name == "." || name == "..") return out;
    if (*dir == base_parent && name == base_name) {
      out.self = true;
      return out;
    }
    if (*dir == base_real) {
      out.rel = std::string(name);
    } else if (dir->size() > base_real.size() &&
               dir->compare(0, base_real.size(), base_real) == 0 &&
               ((*dir)[base_real.size()] == '/' || base_real == "/")) {
      out.rel = join(dir->substr(base_real == "/" ? 1 : base_real.size() + 1), name);
    }
    return out;
  }

  void handle_fan(const fanotify_event_metadata& m, Clock::time_point now) {
    if ((m.mask & FAN_Q_OVERFLOW) != 0) {
      log().warn("watch {}: the event queue overflowed; rescanning", base);
      rescan_due = true;
      return;
    }
    Named at;
    Named from;
    Named to;
    const char* p = reinterpret_cast<const char*>(&m) + m.metadata_len;
    const char* end = reinterpret_cast<const char*>(&m) + m.event_len;
    while (p + sizeof(fanotify_event_info_header) <= end) {
      const auto* h = reinterpret_cast<const fanotify_event_info_header*>(p);
      if (h->len < sizeof(*h) || h->len > end - p) break;
      const auto* fid = reinterpret_cast<const fanotify_event_info_fid*>(p);
      if (h->info_type == FAN_EVENT_INFO_TYPE_DFID_NAME) at = named(fid, h->len);
      if (h->info_type == FAN_EVENT_INFO_TYPE_OLD_DFID_NAME) from = named(fid, h->len);
      if (h->info_type == FAN_EVENT_INFO_TYPE_NEW_DFID_NAME) to = named(fid, h->len);
      p += h->len;
    }
    const bool is_dir = (m.mask & FAN_ONDIR) != 0;
    if (is_dir && (m.mask & (FAN_RENAME | FAN_DELETE)) != 0) folder_paths.clear();
    if (at.self || from.self) {
      log().warn("watch {}: the watched folder itself was moved or removed", base);
      rescan_due = true;
      return;
    }
    if ((m.mask & FAN_RENAME) != 0) {
      if (from.rel && to.rel) {
        renamed(MovedFrom{*from.rel, is_dir, now}, *to.rel, is_dir, now);
      } else if (from.rel) {
        removed(*from.rel, now);
      } else if (to.rel) {
        changed(*to.rel, now);
      }
      return;
    }
    if (!at.rel) return;
    if ((m.mask & FAN_DELETE) != 0) {
      // Merged with a creation of the same name: whatever is there now.
      struct stat st {};
      if ((m.mask & FAN_CREATE) == 0 ||
          ::fstatat(base_fd.get(), at.rel->c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        removed(*at.rel, now);
        return;
      }
    }
    changed(*at.rel, now);
  }

  void read_fanotify(Clock::time_point now) {
    alignas(fanotify_event_metadata) char buf[64 * 1024];
    for (;;) {
      const ssize_t len = ::read(fanotify.get(), buf, sizeof buf);
      if (len <= 0) break;
      ssize_t left = len;
      for (auto* m = reinterpret_cast<fanotify_event_metadata*>(buf); FAN_EVENT_OK(m, left);
           m = FAN_EVENT_NEXT(m, left)) {
        if (m->vers != FANOTIFY_METADATA_VERSION) {
          log().warn("watch {}: fanotify speaks another version; rescanning", base);
          rescan_due = true;
          return;
        }
        if (m->fd >= 0) ::close(m->fd);  // none in FID mode; never leak one
        handle_fan(*m, now);
      }
    }
  }

  void push(ChangeEvent e) {
    e.root = root;
    (void)feed->push(std::move(e));  // blocks while the engine is behind
  }

  void changed(const std::string& path, Clock::time_point now) {
    if (pending.size() >= options.max_pending && pending.find(path) == pending.end()) {
      if (!warned_pending) {
        warned_pending = true;
        log().warn("watch {}: more than {} changed paths wait at once; rescanning", base,
                   options.max_pending);
      }
      pending.clear();
      rescan_due = true;
      return;
    }
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
    for (auto& [cookie, from] : moved_from) {
      if (from.dir) forget_dirs(from.path);
      removed(from.path, now);
    }
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
      const int source = fanotify.valid() ? fanotify.get() : inotify.get();
      pollfd fds[2] = {{source, POLLIN, 0}, {wake.get(), POLLIN, 0}};
      const int n = ::poll(fds, 2, static_cast<int>(std::min<long long>(wait.count(), 60'000)));
      if (stopping.load()) break;
      const auto now = Clock::now();
      if (n > 0 && (fds[0].revents & POLLIN) != 0 && fanotify.valid()) {
        read_fanotify(now);
      } else if (n > 0 && (fds[0].revents & POLLIN) != 0) {
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
  UniqueFd folder(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!folder.valid()) return errno_error(errno, "watch", path);
  return start_at(root, std::move(folder), std::move(path), std::move(feed), options);
}

Result<std::unique_ptr<TreeWatcher>> TreeWatcher::start_at(std::size_t root, UniqueFd folder,
                                                           std::string label,
                                                           std::shared_ptr<ChangeFeed> feed,
                                                           WatchOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->root = root;
  impl->base = std::move(label);
  impl->base_fd = std::move(folder);
  impl->feed = std::move(feed);
  impl->options = options;
  impl->wake = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!impl->wake.valid()) return errno_error(errno, "watch", impl->base);
  if (options.mechanism != WatchMechanism::kInotify) {
    Status fan = impl->setup_fanotify();
    if (fan.ok()) {
      log().debug("watch {}: fanotify (one mark on the file system)", impl->base);
      Impl* raw = impl.get();
      impl->thread = std::thread([raw] { raw->run(); });
      return std::unique_ptr<TreeWatcher>(new TreeWatcher(std::move(impl)));
    }
    if (options.mechanism == WatchMechanism::kFanotify) {
      Error e = fan.error();
      e.detail +=
          " (--watch-with fanotify needs CAP_SYS_ADMIN, Linux 5.17 and a file system "
          "with file handles; --watch-with inotify works everywhere)";
      return e;
    }
    log().debug("watch {}: inotify ({})", impl->base, fan.error().message());
  }
  impl->inotify = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!impl->inotify.valid()) {
    if (errno == EMFILE) {
      return make_error(ErrorCode::kUnavailable, "watch", impl->base,
                        "no inotify instance left (fs.inotify.max_user_instances)",
                        RetryClass::kRetryCall);
    }
    return errno_error(errno, "watch", impl->base);
  }
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
