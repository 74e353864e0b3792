// The tree watcher (watcher.hpp). Its thread owns the inotify or fanotify
// descriptor, the watched folder's descriptor, the watch table and the
// pending changes; it shares the feed, the folder budget and, under
// failure_mu, why it ended by itself.

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
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"
#include "xfer/io/unique_fd.hpp"

namespace xfer {

using Clock = std::chrono::steady_clock;

namespace {

// Watches are added through /proc/self/fd/N of a folder opened beneath
// the watched one: that magic link must be followed (no IN_DONT_FOLLOW).
constexpr std::uint32_t kDirMask = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE |
                                   IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |
                                   IN_ONLYDIR | IN_EXCL_UNLINK;
// The longest relative path kept or reported (kMaxChangedPathBytes): a
// longer one (folders renamed into deep chains) is a rescan, never a
// bigger string.
constexpr std::size_t kMaxPathBytes = kMaxChangedPathBytes;
// Rescans come at most this often; one due meanwhile waits.
constexpr auto kMinRescanInterval = std::chrono::seconds(2);
// Reads of the kernel's queue (64 KiB each) before pending renames are
// settled and quiet paths sent.
constexpr int kReadsPerWake = 4;

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
  return dir.empty() || path == dir ||
         (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
          path[dir.size()] == '/');
}

// The keys of `m` that are `path` or lie below it: `path` itself, then the
// range from "path/" up to "path0" ('0' follows '/').
template <typename Map, typename F>
void for_each_under(Map& m, const std::string& path, F&& f) {
  if (auto it = m.find(path); it != m.end()) f(it);
  const std::string from = path + "/";
  const std::string to = path + "0";
  for (auto it = m.lower_bound(from); it != m.end() && it->first < to;) f(it++);
}

}  // namespace

struct TreeWatcher::Impl {
  std::size_t root = 0;
  std::string base;  // the watched folder, as named in messages (printable)
  UniqueFd base_fd;  // ... and open
  std::shared_ptr<ChangeFeed> feed;
  WatchOptions options;
  UniqueFd inotify;   // inotify: one watch per folder (dirs)
  UniqueFd fanotify;  // or fanotify: one mark on the file system
  UniqueFd wake;      // eventfd: stop()
  std::thread thread;
  std::atomic<bool> stopping{false};
  mutable std::mutex failure_mu;
  std::optional<Error> failure;  // why it ended by itself

  std::unordered_map<int, std::string> dirs;  // watch descriptor -> folder, relative ("" = base)
  std::size_t dir_bytes = 0;                  // of the paths in dirs
  std::size_t budget_taken = 0;               // folders counted in options.folder_budget
  struct Pending {
    Clock::time_point first;
    Clock::time_point last;
  };
  std::map<std::string, Pending> pending;  // changed paths, waiting to be quiet
  std::size_t pending_bytes = 0;
  // A MOVED_FROM waits for the next event: its MOVED_TO, queued right
  // after it by the kernel when the rename stays in the tree.
  struct MovedFrom {
    std::uint32_t cookie = 0;
    std::string path;
    bool dir = false;
    Clock::time_point seen;
  };
  std::optional<MovedFrom> held_move;
  bool rescan_due = false;
  bool rebuild_due = false;  // the watch table may be stale: make it again
  Clock::time_point last_rescan{};
  Clock::time_point next_reconcile;
  // Warnings said once per watch.
  bool warned_folders = false;
  bool warned_budget = false;
  bool warned_bytes = false;
  bool warned_pending = false;
  bool warned_long = false;
  bool warned_limit = false;
  int warned_errors = 0;

  ~Impl() {
    if (inotify.valid()) drop_all_dirs();  // the budget's share goes back
  }

  bool over_bytes(std::size_t more) const {
    return options.max_bytes > 0 && dir_bytes + pending_bytes + more > options.max_bytes;
  }

  void warn_once(bool& said, std::string_view text) {
    if (said) return;
    said = true;
    log().warn("watch {}: {}", base, text);
  }

  // ---- the watch table (inotify) -------------------------------------

  void erase_dir(std::unordered_map<int, std::string>::iterator it, bool remove_watch) {
    if (remove_watch) (void)::inotify_rm_watch(inotify.get(), it->first);
    dir_bytes -= it->second.size();
    if (options.folder_budget && budget_taken > 0) {
      options.folder_budget->give(1);
      --budget_taken;
    }
    dirs.erase(it);
  }

  void drop_all_dirs() {
    while (!dirs.empty()) erase_dir(dirs.begin(), true);
  }

  // The watches of `path` and below go (a folder that left the tree, or is
  // about to be watched again under a new name).
  void forget_dirs(const std::string& path) {
    for (auto it = dirs.begin(); it != dirs.end();) {
      if (under(it->second, path)) {
        auto next = std::next(it);
        erase_dir(it, true);
        it = next;
      } else {
        ++it;
      }
    }
  }

  // Adds a watch on `rel` and on every folder below it (a folder that
  // appeared: its contents may have come before its watch). False when
  // one could not be added (the tree is then rescanned).
  bool watch_tree(const std::string& rel) {
    std::vector<std::string> stack{rel};
    bool all = true;
    while (!stack.empty()) {
      std::string dir = std::move(stack.back());
      stack.pop_back();
      if (options.max_folders > 0 && dirs.size() >= options.max_folders) {
        warn_once(warned_folders, fmt::format("more than {} folders; the rest are found by rescans",
                                              options.max_folders));
        return false;
      }
      if (dir.size() > kMaxPathBytes || over_bytes(dir.size())) {
        warn_once(warned_bytes, "folder paths too long or too many to follow; rescanning instead");
        all = false;
        continue;
      }
      UniqueFd fd(open_beneath(base_fd.get(), dir));
      if (!fd.valid()) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP || errno == EXDEV) {
          continue;  // gone again, or replaced by a link (never followed)
        }
        if (warned_errors++ < 5) {
          log().warn("watch {}: {}", printable_name(join(base, dir), 300), std::strerror(errno));
        }
        all = false;
        continue;
      }
      if (options.folder_budget && !options.folder_budget->take()) {
        warn_once(warned_budget,
                  "the server watches as many folders as it may; rescanning instead");
        return false;
      }
      const std::string via = fmt::format("/proc/self/fd/{}", fd.get());
      const int wd = ::inotify_add_watch(inotify.get(), via.c_str(), kDirMask);
      if (wd < 0) {
        if (options.folder_budget) options.folder_budget->give(1);
        if (errno == ENOSPC) {
          warn_once(warned_limit,
                    "the inotify watch limit is reached (raise fs.inotify.max_user_watches); "
                    "changes are found by rescans");
        } else if (warned_errors++ < 5) {
          log().warn("watch {}: {}", printable_name(join(base, dir), 300), std::strerror(errno));
        }
        all = false;
        continue;
      }
      // The same folder seen again (a rename raced with this walk) keeps
      // its descriptor: its path is the latest one.
      if (auto it = dirs.find(wd); it != dirs.end()) {
        dir_bytes -= it->second.size();
        if (options.folder_budget) options.folder_budget->give(1);
      } else if (options.folder_budget) {
        ++budget_taken;
      }
      dir_bytes += dir.size();
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
        if (!is_dir) continue;
        // Past the folder bound the rest is never watched anyway: the
        // stack stays within it.
        if (options.max_folders > 0 && dirs.size() + stack.size() >= options.max_folders) {
          warn_once(warned_folders,
                    fmt::format("more than {} folders; the rest are found by rescans",
                                options.max_folders));
          all = false;
          continue;
        }
        stack.push_back(join(dir, name));
      }
      ::closedir(d);
    }
    return all;
  }

  // The watched folder itself was moved or removed: what is reported from
  // here on would name another place (a folder moved out of a token's
  // scope, say). The watch ends; the sync (or xferd's client) says so.
  void lost(std::string_view why) {
    log().warn("watch {}: {}", base, why);
    {
      std::lock_guard lock(failure_mu);
      failure = make_error(ErrorCode::kNotFound, "watch", base,
                           fmt::format("{}; watch it again where it is now", why));
    }
    if (inotify.valid()) drop_all_dirs();
    stopping.store(true);
    feed->close();
  }

  // The queue overflowed: events are lost, renames among them, so the
  // table may hold folders that left the tree. Made again from the top.
  void rebuild() {
    rebuild_due = false;
    drop_all_dirs();
    held_move.reset();
    if (!watch_tree("")) rescan_due = true;
    if (dirs.empty()) {
      lost("the watched folder cannot be watched any more");
      return;
    }
    rescan_due = true;
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
    if (!refresh_base()) {
      fanotify.reset();
      return make_error(ErrorCode::kInternal, "watch", base, "cannot read the folder's path back");
    }
    // Events name folders by handle: they must open again here (this needs
    // CAP_DAC_READ_SEARCH too), or every event would be dropped.
    std::vector<std::uint64_t> probe((sizeof(file_handle) + MAX_HANDLE_SZ + 7) / 8);
    auto* fh = reinterpret_cast<file_handle*>(probe.data());
    fh->handle_bytes = MAX_HANDLE_SZ;
    int mount_id = 0;
    if (::name_to_handle_at(base_fd.get(), "", fh, &mount_id, AT_EMPTY_PATH) != 0) {
      const int err = errno;
      fanotify.reset();
      return errno_error(err, "name_to_handle_at", base);
    }
    UniqueFd again(::open_by_handle_at(base_fd.get(), fh, O_PATH | O_CLOEXEC));
    if (!again.valid()) {
      const int err = errno;
      fanotify.reset();
      return errno_error(err, "open_by_handle_at", base);
    }
    return ok_status();
  }

  // The watched folder's path now (it, or a folder above it, may have
  // been renamed); false when it is gone.
  bool refresh_base() {
    auto real = fd_path(base_fd.get());
    if (!real) return false;
    base_real = *real;
    const auto slash = base_real.rfind('/');
    base_parent = slash == 0 ? "/" : base_real.substr(0, slash);
    base_name = base_real.substr(slash + 1);
    return true;
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
    if (name == ".") {
      // An event on a folder itself (its mode or times changed): the
      // record names the folder, not its parent. The watched folder's
      // own attributes are not part of what is followed.
      if (dir->size() > base_real.size() && under_base(*dir)) {
        out.rel = dir->substr(base_real == "/" ? 1 : base_real.size() + 1);
      }
      return out;
    }
    if (name.empty() || name == ".." || is_xfer_temporary(name)) return out;
    if (*dir == base_parent && name == base_name) {
      out.self = true;
      return out;
    }
    if (*dir == base_real) {
      out.rel = std::string(name);
    } else if (dir->size() > base_real.size() && under_base(*dir)) {
      out.rel = join(dir->substr(base_real == "/" ? 1 : base_real.size() + 1), name);
    }
    return out;
  }

  // `dir` (canonical, longer than base_real) lies below the watched folder.
  bool under_base(const std::string& dir) const {
    return dir.compare(0, base_real.size(), base_real) == 0 &&
           (dir[base_real.size()] == '/' || base_real == "/");
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
    if ((at.self && (m.mask & FAN_DELETE) != 0) || (from.self && (m.mask & FAN_RENAME) != 0)) {
      lost("the watched folder itself was moved or removed");
      return;
    }
    if (is_dir && (m.mask & (FAN_RENAME | FAN_DELETE)) != 0) {
      // Paths below a renamed folder changed; the watched folder's own
      // path may have too (a folder above it renamed).
      folder_paths.clear();
      if (!refresh_base()) {
        lost("the watched folder was removed");
        return;
      }
    }
    if ((m.mask & FAN_RENAME) != 0) {
      if (from.rel && to.rel) {
        renamed(MovedFrom{0, *from.rel, is_dir, now}, *to.rel, now);
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
    for (int i = 0; i < kReadsPerWake && !stopping.load(); ++i) {
      const ssize_t len = ::read(fanotify.get(), buf, sizeof buf);
      if (len <= 0) break;
      ssize_t left = len;
      for (auto* m = reinterpret_cast<fanotify_event_metadata*>(buf);
           FAN_EVENT_OK(m, left) && !stopping.load(); m = FAN_EVENT_NEXT(m, left)) {
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

  bool reportable(const std::string& path) {
    if (path.size() <= kMaxPathBytes) return true;
    warn_once(warned_long, "a path longer than 4096 bytes changed; rescanning instead");
    rescan_due = true;
    return false;
  }

  void erase_pending(std::map<std::string, Pending>::iterator it) {
    pending_bytes -= it->first.size();
    pending.erase(it);
  }

  void changed(const std::string& path, Clock::time_point now) {
    if (!reportable(path)) return;
    auto it = pending.find(path);
    if (it != pending.end()) {
      it->second.last = now;
      return;
    }
    if (pending.size() >= options.max_pending || over_bytes(path.size())) {
      warn_once(warned_pending, fmt::format("more than {} changed paths wait at once; rescanning",
                                            options.max_pending));
      pending.clear();
      pending_bytes = 0;
      rescan_due = true;
      return;
    }
    pending.emplace(path, Pending{now, now});
    pending_bytes += path.size();
  }

  void removed(const std::string& path, Clock::time_point now) {
    if (!reportable(path)) return;
    for_each_under(pending, path, [&](auto it) { erase_pending(it); });
    ChangeEvent e;
    e.kind = ChangeEvent::Kind::kRemoved;
    e.path = path;
    e.seen = now;
    push(std::move(e));
  }

  void renamed(const MovedFrom& from, const std::string& to, Clock::time_point now) {
    if (!reportable(from.path) || !reportable(to)) return;
    std::vector<std::pair<std::string, Pending>> moved;
    for_each_under(pending, from.path, [&](auto it) {
      moved.emplace_back(to + it->first.substr(from.path.size()), it->second);
      erase_pending(it);
    });
    for (auto& [p, when] : moved) {
      if (p.size() > kMaxPathBytes) {
        rescan_due = true;
        continue;
      }
      pending_bytes += p.size();
      pending[p] = when;
    }
    ChangeEvent e;
    e.kind = ChangeEvent::Kind::kRenamed;
    e.from = from.path;
    e.path = to;
    e.seen = from.seen;
    push(std::move(e));
    changed(to, now);  // compared once quiet: the content may have changed too
  }

  // A rename whose other half did not come next moved the entry out of
  // the tree: a removal.
  void settle_move(Clock::time_point now) {
    if (!held_move) return;
    const MovedFrom f = std::move(*held_move);
    held_move.reset();
    removed(f.path, now);
  }

  void handle(const inotify_event& ev, Clock::time_point now) {
    if (held_move && !((ev.mask & IN_MOVED_TO) != 0 && ev.cookie == held_move->cookie)) {
      settle_move(now);
    }
    if ((ev.mask & IN_Q_OVERFLOW) != 0) {
      log().warn("watch {}: the event queue overflowed; rescanning", base);
      rebuild_due = true;
      return;
    }
    auto dir_it = dirs.find(ev.wd);
    if ((ev.mask & IN_IGNORED) != 0) {
      if (dir_it == dirs.end()) return;
      const bool top = dir_it->second.empty();
      erase_dir(dir_it, false);
      if (top) lost("the watched folder was removed");
      return;
    }
    if (dir_it == dirs.end()) return;  // a watch just forgotten: its last events
    const std::string dir = dir_it->second;
    if ((ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) != 0) {
      if (dir.empty()) lost("the watched folder itself was moved or removed");
      return;  // a subfolder: its parent reports it
    }
    if (ev.len == 0) return;
    const std::string_view name(ev.name);
    if (name.empty() || is_xfer_temporary(name)) return;  // xfer's partials are never synced
    const std::string path = join(dir, name);
    const bool is_dir = (ev.mask & IN_ISDIR) != 0;
    if ((ev.mask & IN_MOVED_FROM) != 0) {
      // Its watches go at once: from now on they would report from
      // wherever it went. A move inside the tree watches it again below.
      if (is_dir) forget_dirs(path);
      held_move = MovedFrom{ev.cookie, path, is_dir, now};
      return;
    }
    if ((ev.mask & IN_MOVED_TO) != 0) {
      if (is_dir && !watch_tree(path)) rescan_due = true;
      if (held_move && held_move->cookie == ev.cookie) {
        const MovedFrom f = std::move(*held_move);
        held_move.reset();
        renamed(f, path, now);
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

  // Pending paths quiet for the debounce go to the feed; the time until
  // the next one is due.
  std::chrono::milliseconds flush(Clock::time_point now) {
    auto wait = options.reconcile.count() > 0
                    ? std::chrono::duration_cast<std::chrono::milliseconds>(next_reconcile - now)
                    : std::chrono::milliseconds(60'000);
    if (options.reconcile.count() > 0 && now >= next_reconcile) {
      next_reconcile = now + options.reconcile;
      wait = options.reconcile;
      rescan_due = true;
    }
    if (rescan_due) {
      const auto since = now - last_rescan;
      if (last_rescan == Clock::time_point{} || since >= kMinRescanInterval) {
        rescan_due = false;
        last_rescan = now;
        pending.clear();
        pending_bytes = 0;
        ChangeEvent e;
        e.kind = ChangeEvent::Kind::kRescan;
        e.seen = now;
        push(std::move(e));
      } else {
        wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(
                                  kMinRescanInterval - since) +
                                  std::chrono::milliseconds(1));
      }
    }
    std::vector<std::pair<std::string, Clock::time_point>> due;
    for (auto it = pending.begin(); it != pending.end();) {
      const auto ready = it->second.last + options.debounce;
      if (ready <= now) {
        due.emplace_back(it->first, it->second.first);
        auto gone = it++;
        erase_pending(gone);
      } else {
        wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(ready - now) +
                                  std::chrono::milliseconds(1));
        ++it;
      }
    }
    // In name order: parents before children, a new folder before its files.
    for (auto& [path, first] : due) {
      ChangeEvent e;
      e.kind = ChangeEvent::Kind::kChanged;
      e.path = path;
      e.seen = first;
      push(std::move(e));
    }
    if (held_move) wait = std::min(wait, std::chrono::milliseconds(10));
    return std::max(wait, std::chrono::milliseconds(1));
  }

  // Up to kReadsPerWake reads of the inotify queue; false when it was empty.
  void read_inotify(Clock::time_point now) {
    alignas(inotify_event) char buf[64 * 1024];
    for (int i = 0; i < kReadsPerWake && !stopping.load(); ++i) {
      const ssize_t len = ::read(inotify.get(), buf, sizeof buf);
      if (len <= 0) break;
      for (ssize_t off = 0; off < len && !stopping.load();) {
        const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
        handle(*ev, now);
        off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      }
    }
  }

  void run() {
    next_reconcile = Clock::now() + options.reconcile;
    std::chrono::milliseconds wait = flush(Clock::now());
    while (!stopping.load()) {
      const int source = fanotify.valid() ? fanotify.get() : inotify.get();
      pollfd fds[2] = {{source, POLLIN, 0}, {wake.get(), POLLIN, 0}};
      const int n = ::poll(fds, 2, static_cast<int>(std::min<long long>(wait.count(), 60'000)));
      if (stopping.load()) break;
      const auto now = Clock::now();
      if (n > 0 && (fds[0].revents & POLLIN) != 0) {
        if (fanotify.valid()) {
          read_fanotify(now);
        } else {
          read_inotify(now);
        }
      } else {
        settle_move(now);  // nothing came after it
      }
      if (stopping.load()) break;
      if (rebuild_due) rebuild();
      if (stopping.load()) break;
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
  impl->base = printable_name(label, 300);
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
          " (--watch-with fanotify needs CAP_SYS_ADMIN, CAP_DAC_READ_SEARCH, Linux 5.17 "
          "and a file system with file handles; --watch-with inotify works everywhere)";
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

std::optional<Error> TreeWatcher::failure() const {
  if (!impl_) return std::nullopt;
  std::lock_guard lock(impl_->failure_mu);
  return impl_->failure;
}

}  // namespace xfer
