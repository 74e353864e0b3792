// Local file system backend (include/xfer/backend/local.hpp) and the *at
// core it shares with xferd's confined root (fs_at.hpp). Every operation is
// one directory descriptor plus a name; the local backend uses AT_FDCWD and
// whole paths. Stateless apart from SinkEnv; safe to call from any thread.

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include "backend/local/fs_at.hpp"
#include "xfer/backend/local.hpp"
#include "xfer/engine/watcher.hpp"
#include "xfer/io/unique_fd.hpp"

namespace xfer {
namespace fs {
namespace {

using Fd = UniqueFd;

std::int64_t to_ns(const struct timespec& ts) {
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec;
}

struct timespec from_ns(std::int64_t ns) {
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000LL);
  ts.tv_nsec = static_cast<long>(ns % 1'000'000'000LL);
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1'000'000'000L;
    ts.tv_sec -= 1;
  }
  return ts;
}

FileAttrs attrs_from_stat(const struct stat& st) {
  FileAttrs a;
  a.type = entry_type_from_mode(st.st_mode);
  a.size = static_cast<std::uint64_t>(st.st_size);
  a.mode = st.st_mode & 07777;
  a.mtime_ns = to_ns(st.st_mtim);
  a.allocated = static_cast<std::uint64_t>(st.st_blocks) * 512;
  a.device = st.st_dev;
  a.inode = st.st_ino;
  return a;
}

const char* name_of(const At& at) {
  return at.name.empty() ? "." : at.name.c_str();
}

Result<std::string> read_link_at(int dir, const char* name, const std::string& shown) {
  std::vector<char> buf(256);
  for (;;) {
    ssize_t n = ::readlinkat(dir, name, buf.data(), buf.size());
    if (n < 0) return errno_error(errno, "readlink", shown);
    if (static_cast<size_t>(n) < buf.size()) return std::string(buf.data(), static_cast<size_t>(n));
    buf.resize(buf.size() * 2);
  }
}

// A confined operation met a symlink as its final component.
Error symlink_refused(std::string_view op, const std::string& shown) {
  return make_error(ErrorCode::kPermission, op, shown,
                    "refusing to follow a symlink on the server");
}

// After an open with O_NOFOLLOW failed with `err`: the symlink refusal when
// the entry is a symlink, the errno otherwise.
Error nofollow_error(int err, const At& at, std::string_view op) {
  struct stat st {};
  if ((err == ELOOP || err == ENOTDIR) &&
      ::fstatat(at.dir, name_of(at), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
    return symlink_refused(op, at.shown);
  }
  return errno_error(err, op, at.shown);
}

// A hidden sibling name ".<name>.xfer-tmp-<purpose>" ("link", "swap",
// "file"). Deterministic on purpose: if the process dies between creating it
// and renaming it over the final name, the next run for the same file finds
// and replaces it instead of leaving a stray behind. Names near the 255-byte
// limit get a short form (a hash of the name) so the temp name always fits.
// Derived only from `name`, which the caller validated.
std::string temp_name_for(const std::string& name, std::string_view purpose) {
  std::string base = base_name(name);
  if (base.size() + purpose.size() + 11 > 255) {
    base = fmt::format("{:016x}", std::hash<std::string>{}(base));
  }
  return join_path(dir_name(name), fmt::format(".{}.xfer-tmp-{}", base, purpose));
}

// The deterministic partial name of a resumable sink.
std::string resumable_name_for(const std::string& name, const std::string& token) {
  std::string base = base_name(name);
  if (base.size() + kLocalTempInfix.size() + token.size() + 2 > 255) {
    base = fmt::format("{:016x}", std::hash<std::string>{}(base));
  }
  return join_path(dir_name(name), fmt::format(".{}{}{}", base, kLocalTempInfix, token));
}

// Runs `make(name)` (a syscall creating `name` in `dir`); when a stale entry
// of an earlier, killed run is in the way (EEXIST), removes it and tries once
// more.
template <typename Make>
int create_replacing_stale(int dir, const std::string& name, Make make) {
  int r = make(name);
  if (r < 0 && errno == EEXIST) {
    ::unlinkat(dir, name.c_str(), 0);
    r = make(name);
  }
  return r;
}

constexpr std::size_t kDirectAlign = 4096;
// Files below this size are not preallocated: delayed allocation handles
// them well, and fallocate costs a syscall and an extent update per file.
constexpr std::uint64_t kPreallocateMin = 1ull << 20;

// tmpfs allocates (and zeroes) every page on fallocate, then the write
// copies over it: preallocating there costs a pass over memory and buys
// nothing (no extents to keep contiguous). Measured: 2 GiB into /dev/shm
// over xfer://, server CPU -10%.
bool preallocation_helps(int fd) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) return true;
  return fs.f_type != TMPFS_MAGIC && fs.f_type != RAMFS_MAGIC;
}

// Reads until `buf` is full or end of file; retries EINTR.
Result<std::size_t> pread_full(int fd, Offset offset, std::span<std::byte> buf, std::string_view op,
                               const std::string& path) {
  std::size_t done = 0;
  while (done < buf.size()) {
    ssize_t n =
        ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset.get() + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, op, path);
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

std::string proc_fd_path(int fd) {
  return fmt::format("/proc/self/fd/{}", fd);
}

// ---------------------------------------------------------------- Source

class LocalSource final : public Source {
 public:
  LocalSource(Fd fd, std::string path, FileAttrs attrs)
      : fd_(std::move(fd)), path_(std::move(path)), attrs_(std::move(attrs)) {}

  const FileAttrs& attrs() const override { return attrs_; }

  Result<std::size_t> read_at(Offset offset, std::span<std::byte> buf) override {
    return pread_full(fd_.get(), offset, buf, "read", path_);
  }

  Status check_unchanged() override {
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) return errno_error(errno, "stat", path_);
    if (static_cast<std::uint64_t>(st.st_size) != attrs_.size ||
        to_ns(st.st_mtim) != attrs_.mtime_ns) {
      return make_error(ErrorCode::kChanged, "read", path_,
                        fmt::format("size {} -> {} while copying", attrs_.size, st.st_size),
                        RetryClass::kRetryFile);
    }
    return ok_status();
  }

  int native_handle() const override { return fd_.get(); }

  // SEEK_DATA/SEEK_HOLE; a file system without them reports the whole file
  // as data (the kernel's generic answer). Clamped to the size seen at open.
  Result<Extent> data_extent(Offset offset) override {
    const std::uint64_t size = attrs_.size;
    if (offset.get() >= size) return Extent{size, size};
    const off_t data = ::lseek(fd_.get(), static_cast<off_t>(offset.get()), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) return Extent{size, size};  // only a hole follows
      return errno_error(errno, "seek data", path_);
    }
    const auto begin = std::min<std::uint64_t>(static_cast<std::uint64_t>(data), size);
    const off_t hole = ::lseek(fd_.get(), data, SEEK_HOLE);
    if (hole < 0) return errno_error(errno, "seek hole", path_);
    const auto end = std::clamp<std::uint64_t>(static_cast<std::uint64_t>(hole), begin, size);
    return Extent{begin, end};
  }

 private:
  Fd fd_;
  std::string path_;
  FileAttrs attrs_;
};

// ---------------------------------------------------------------- Sink

class LocalSink final : public Sink {
 public:
  // The file lives in `dir` (AT_FDCWD, or the descriptor `dir_owner` keeps
  // open) as `final_name` once committed. `anonymous`: fd is an O_TMPFILE
  // with no name yet; else temp_name_ names it. `mode_is_final`: the file
  // was created with its final permission bits, so commit() need not chmod.
  LocalSink(Fd dir_owner, int dir, Fd fd, std::string final_name, std::string shown,
            std::string temp_name, bool anonymous, SinkOptions opts, bool mode_is_final)
      : dir_owner_(std::move(dir_owner)),
        dir_(dir),
        fd_(std::move(fd)),
        final_name_(std::move(final_name)),
        shown_(std::move(shown)),
        temp_name_(std::move(temp_name)),
        anonymous_(anonymous),
        opts_(std::move(opts)),
        mode_is_final_(mode_is_final) {}

  ~LocalSink() override {
    if (resumable()) {
      (void)suspend();
    } else {
      (void)abort();
    }
  }

  Status suspend() override {
    if (!resumable()) return abort();
    if (committed_) return ok_status();
    buffered_.reset();
    fd_.reset();  // the named partial stays for the next run
    committed_ = true;
    return ok_status();
  }

  bool resumed() const override { return resumed_; }
  void set_resumed(bool r) { resumed_ = r; }

  Status write_at(Offset offset, std::span<const std::byte> data) override {
    int fd = fd_.get();
    if (opts_.direct && !aligned(offset, data)) {
      // O_DIRECT needs aligned offsets, lengths and memory; the odd tail of a
      // file goes through a second, buffered descriptor of the same file.
      XFER_ASSIGN_OR_RETURN(fd, buffered_fd());
    }
    // Buffered writes to one file are serialised by the kernel anyway (the
    // inode lock); waiting here, asleep, is cheaper than the kernel's
    // optimistic spinning on that lock, which on a small VM burned 3x the
    // CPU of the copy itself (4 GiB download to tmpfs: 22 s system time).
    std::unique_lock<std::mutex> serial;
    if (fd != fd_.get() || !opts_.direct) serial = std::unique_lock<std::mutex>(write_mu_);
    std::size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done,
                           static_cast<off_t>(offset.get() + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_error(errno, "write", shown_);
      }
      if (n == 0) return errno_error(ENOSPC, "write", shown_);
      done += static_cast<std::size_t>(n);
    }
    return ok_status();
  }

  Result<std::uint64_t> copy_from(Source& source, Offset offset, Length length) override {
    int in_fd = source.native_handle();
    if (in_fd < 0 || opts_.direct) return make_error(ErrorCode::kUnsupported, "copy_from", "");
    std::uint64_t done = 0;
    while (done < length.get()) {
      loff_t in_off = static_cast<loff_t>(offset.get() + done);
      loff_t out_off = in_off;
      ssize_t n = ::copy_file_range(in_fd, &in_off, fd_.get(), &out_off, length.get() - done, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
            errno == EBADF) {
          if (done == 0) return make_error(ErrorCode::kUnsupported, "copy_file_range", "");
        }
        return errno_error(errno, "copy", shown_);
      }
      if (n == 0) break;  // source EOF: the caller checks the count
      done += static_cast<std::uint64_t>(n);
    }
    return done;
  }

  Result<std::size_t> read_back(Offset offset, std::span<std::byte> buf) override {
    return pread_full(fd_.get(), offset, buf, "read back", shown_);
  }

  void set_basis(Fd basis) { basis_ = std::move(basis); }

  // In the kernel (copy_file_range: a reflink where the file system shares
  // extents, an in-kernel copy elsewhere); through a buffer where it cannot.
  Status copy_basis(Offset offset, Offset basis_offset, Length length) override {
    if (!basis_.valid()) {
      return make_error(ErrorCode::kInvalidArgument, "copy_basis", shown_, "no basis was opened");
    }
    if (offset.get() > opts_.size || length.get() > opts_.size - offset.get() ||
        basis_offset.get() > opts_.basis_size ||
        length.get() > opts_.basis_size - basis_offset.get()) {
      return make_error(
          ErrorCode::kInvalidArgument, "copy_basis", shown_,
          fmt::format("{}+{} from {} is outside the file ({}) or its basis ({})", offset.get(),
                      length.get(), basis_offset.get(), opts_.size, opts_.basis_size));
    }
    std::uint64_t done = 0;
    bool in_kernel = !opts_.direct;
    std::vector<std::byte> buf;
    while (done < length.get()) {
      const std::uint64_t left = length.get() - done;
      ssize_t n = -1;
      if (in_kernel) {
        loff_t in_off = static_cast<loff_t>(basis_offset.get() + done);
        loff_t out_off = static_cast<loff_t>(offset.get() + done);
        n = ::copy_file_range(basis_.get(), &in_off, fd_.get(), &out_off, left, 0);
        if (n < 0 &&
            (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
          in_kernel = false;
          continue;
        }
      } else {
        if (buf.empty()) buf.resize(1u << 20);
        const std::size_t want =
            static_cast<std::size_t>(std::min<std::uint64_t>(left, buf.size()));
        n = ::pread(basis_.get(), buf.data(), want, static_cast<off_t>(basis_offset.get() + done));
        if (n > 0) {
          XFER_TRY(write_at(Offset{offset.get() + done},
                            std::span<const std::byte>(buf.data(), static_cast<std::size_t>(n))));
        }
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_error(errno, "copy from the old file", shown_);
      }
      if (n == 0) {
        return make_error(ErrorCode::kChanged, "copy from the old file", shown_,
                          "the old file shrank", RetryClass::kRetryFile);
      }
      done += static_cast<std::uint64_t>(n);
    }
    return ok_status();
  }

  Status commit() override {
    if (!fd_.valid()) return make_error(ErrorCode::kInternal, "commit", shown_, "not open");
    if (basis_.valid()) {
      // The blocks taken from it must be the ones the signature named.
      struct stat bst {};
      if (::fstat(basis_.get(), &bst) != 0) return fail(errno, "stat");
      if (static_cast<std::uint64_t>(bst.st_size) != opts_.basis_size ||
          to_ns(bst.st_mtim) != opts_.basis_mtime_ns) {
        Error e = make_error(ErrorCode::kChanged, "commit", shown_,
                             "the old file changed while the new one was built from it",
                             RetryClass::kRetryFile);
        (void)abort();
        return e;
      }
      basis_.reset();
    }
    // Size first: a sparse tail (or a zero-length file) needs it.
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) return fail(errno, "stat");
    if (opts_.attrs.size_known && static_cast<std::uint64_t>(st.st_size) != opts_.size) {
      if (::ftruncate(fd_.get(), static_cast<off_t>(opts_.size)) != 0)
        return fail(errno, "truncate");
    }
    if (buffered_.valid() && opts_.direct) buffered_.reset();
    if (!mode_is_final_ && ::fchmod(fd_.get(), opts_.attrs.mode & 07777) != 0) {
      return fail(errno, "chmod");
    }
    if (opts_.fsync && ::fdatasync(fd_.get()) != 0) return fail(errno, "fsync");
    struct timespec times[2] = {{0, UTIME_OMIT}, from_ns(opts_.attrs.mtime_ns)};
    if (::futimens(fd_.get(), times) != 0) return fail(errno, "set mtime");
    if (anonymous_) {
      const std::string proc = proc_fd_path(fd_.get());
      if (::linkat(AT_FDCWD, proc.c_str(), dir_, final_name_.c_str(), AT_SYMLINK_FOLLOW) == 0) {
        anonymous_ = false;
        fd_.reset();
        committed_ = true;
        return ok_status();
      }
      if (errno != EEXIST) return fail(errno, "publish");
      // The final name exists: link under a temp name, then rename over it.
      // The temp name is this commit's own: two commits of one name (two
      // processes, or a retry racing a slow first attempt) must not
      // replace each other's temp, or one rename finds it gone (ENOENT).
      static std::atomic<std::uint64_t> swaps{0};
      temp_name_ = temp_name_for(final_name_, fmt::format("swap-{}-{}", ::getpid(), ++swaps));
      if (create_replacing_stale(dir_, temp_name_, [&](const std::string& t) {
            return ::linkat(AT_FDCWD, proc.c_str(), dir_, t.c_str(), AT_SYMLINK_FOLLOW);
          }) != 0) {
        return fail(errno, "publish");
      }
      anonymous_ = false;
    }
    if (::renameat(dir_, temp_name_.c_str(), dir_, final_name_.c_str()) != 0) {
      return fail(errno, "rename");
    }
    fd_.reset();
    committed_ = true;
    return ok_status();
  }

  Status abort() override {
    if (committed_) return ok_status();
    if (!anonymous_ && !temp_name_.empty() && fd_.valid()) {
      ::unlinkat(dir_, temp_name_.c_str(), 0);
    }
    buffered_.reset();
    basis_.reset();
    fd_.reset();  // an O_TMPFILE vanishes with its last descriptor
    committed_ = true;
    return ok_status();
  }

 private:
  Error fail(int err, std::string_view op) {
    Error e = errno_error(err, op, shown_);
    (void)abort();
    return e;
  }

  static bool aligned(Offset offset, std::span<const std::byte> data) {
    return offset.get() % kDirectAlign == 0 && data.size() % kDirectAlign == 0 &&
           reinterpret_cast<std::uintptr_t>(data.data()) % kDirectAlign == 0;
  }

  Result<int> buffered_fd() {
    std::lock_guard lock(buffered_mu_);
    if (!buffered_.valid()) {
      buffered_ = Fd(::open(proc_fd_path(fd_.get()).c_str(), O_RDWR | O_CLOEXEC));
      if (!buffered_.valid()) return errno_error(errno, "open", shown_);
    }
    return buffered_.get();
  }

  bool resumable() const { return !opts_.resume_name.empty() && !anonymous_; }

  std::mutex write_mu_;  // buffered writes, see write_at
  Fd dir_owner_;
  int dir_;
  Fd fd_;
  std::string final_name_;
  std::string shown_;
  std::string temp_name_;
  bool anonymous_;
  SinkOptions opts_;
  bool mode_is_final_;
  bool committed_ = false;
  bool resumed_ = false;
  std::mutex buffered_mu_;
  Fd buffered_;  // lazily opened for unaligned writes under O_DIRECT
  Fd basis_;     // the file being replaced (SinkOptions::basis), read-only
};

// Preallocation reserves the space up front: disk full shows at once, and
// extents come out contiguous. Not every file system supports it; only a
// lack of space is an error.
Status preallocate(int fd, std::uint64_t size, const std::string& shown) {
  if (::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(size)) != 0) {
    int err = errno;
    if (err == ENOSPC || err == EDQUOT || err == EFBIG) return errno_error(err, "create", shown);
  }
  return ok_status();
}

// A named partial ".<name>.xfer-part-<resume_name>" that survives the
// process, reopened as it is with resume_existing. Never follows a symlink
// planted at the partial's name; a fresh partial is created exclusively (a
// stale entry is unlinked first, never truncated through).
Result<std::unique_ptr<Sink>> open_resumable(Fd dir_owner, const At& at, SinkOptions options,
                                             int flags, bool mode_is_final,
                                             const FsPolicy& policy) {
  const std::string temp = resumable_name_for(at.name, options.resume_name);
  bool existed = false;
  Fd f;
  if (options.resume_existing) {
    f = Fd(::openat(at.dir, temp.c_str(), flags | O_NOFOLLOW | O_NONBLOCK));
    if (f.valid()) {
      struct stat st {};
      if (::fstat(f.get(), &st) != 0) return errno_error(errno, "create", at.shown);
      if (!S_ISREG(st.st_mode) || (policy.confined && st.st_nlink != 1)) {
        return make_error(ErrorCode::kPermission, "create", at.shown,
                          "the partial of this file is not a plain file");
      }
      existed = true;
    } else if (errno != ENOENT) {
      return errno_error(errno == ELOOP ? EPERM : errno, "create", at.shown);
    }
  }
  if (!f.valid()) {
    f = Fd(create_replacing_stale(at.dir, temp, [&](const std::string& n) {
      return ::openat(at.dir, n.c_str(), flags | O_CREAT | O_EXCL | O_NOFOLLOW,
                      mode_is_final ? options.attrs.mode & 07777 : 0600);
    }));
    if (!f.valid()) return errno_error(errno, "create", at.shown);
  }
  // xferd does not reserve space for partials: a client could otherwise
  // hold any amount of disk in files it never finishes.
  if (!existed && !policy.confined && options.size >= kPreallocateMin && !options.sparse &&
      preallocation_helps(f.get())) {
    Status s = preallocate(f.get(), options.size, at.shown);
    if (!s.ok()) {
      ::unlinkat(at.dir, temp.c_str(), 0);
      return s.error();
    }
  }
  // An existing partial may have been created under another umask or mode.
  const int dir = at.dir;
  auto sink =
      std::make_unique<LocalSink>(std::move(dir_owner), dir, std::move(f), at.name, at.shown, temp,
                                  false, std::move(options), mode_is_final && !existed);
  sink->set_resumed(existed);
  return std::unique_ptr<Sink>(std::move(sink));
}

// Walks the open directory `dfd` and pushes its entries to `sink`.
Status list_fd(Fd dfd, const std::string& shown, const ListOptions& options,
               const EntrySink& sink) {
  int dup_fd = ::dup(dfd.get());
  if (dup_fd < 0) return errno_error(errno, "list", shown);
  DIR* dir = ::fdopendir(dup_fd);
  if (dir == nullptr) {
    ::close(dup_fd);
    return errno_error(errno, "list", shown);
  }
  struct DirCloser {
    DIR* d;
    ~DirCloser() { ::closedir(d); }
  } closer{dir};
  for (;;) {
    errno = 0;
    struct dirent* de = ::readdir(dir);
    if (de == nullptr) {
      if (errno != 0) return errno_error(errno, "list", shown);
      break;
    }
    std::string_view name = de->d_name;
    if (name == "." || name == "..") continue;
    Entry e;
    e.name = std::string(name);
    bool need_stat = options.want_attrs || de->d_type == DT_UNKNOWN;
    switch (de->d_type) {
      case DT_REG:
        e.type = EntryType::kFile;
        break;
      case DT_DIR:
        e.type = EntryType::kDirectory;
        break;
      case DT_LNK:
        e.type = EntryType::kSymlink;
        break;
      default:
        e.type = EntryType::kOther;
        break;
    }
    if (need_stat) {
      struct stat st {};
      if (::fstatat(dfd.get(), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // vanished between readdir and stat
        return errno_error(errno, "stat", join_path(shown, name));
      }
      FileAttrs a = attrs_from_stat(st);
      e.type = a.type;
      if (options.want_attrs) {
        if (a.type == EntryType::kSymlink) {
          auto t = read_link_at(dfd.get(), de->d_name, join_path(shown, name));
          if (t) a.symlink_target = std::move(t).value();
        }
        e.attrs = std::move(a);
      }
    }
    XFER_TRY(sink(std::move(e)));
  }
  return ok_status();
}

}  // namespace

Result<FileAttrs> stat_at(const At& at) {
  struct stat st {};
  if (::fstatat(at.dir, name_of(at), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno_error(errno, "stat", at.shown);
  }
  FileAttrs a = attrs_from_stat(st);
  if (a.type == EntryType::kSymlink) {
    XFER_ASSIGN_OR_RETURN(a.symlink_target, read_link_at(at.dir, name_of(at), at.shown));
  }
  return a;
}

Status list_at(const At& at, const ListOptions& options, const EntrySink& sink,
               const FsPolicy& policy) {
  const int flags =
      O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK | (policy.confined ? O_NOFOLLOW : 0);
  Fd dfd(::openat(at.dir, name_of(at), flags));
  if (!dfd.valid()) {
    int err = errno;
    if (policy.confined) return nofollow_error(err, at, "list");
    return errno_error(err, "list", at.shown);
  }
  return list_fd(std::move(dfd), at.shown, options, sink);
}

Status mkdir_at(const At& at, bool exist_ok) {
  if (::mkdirat(at.dir, name_of(at), 0777) == 0) return ok_status();
  int err = errno;
  if (err == EEXIST) {
    struct stat st {};
    if (::fstatat(at.dir, name_of(at), &st, 0) == 0 && S_ISDIR(st.st_mode)) {
      if (exist_ok) return ok_status();
      return errno_error(EEXIST, "mkdir", at.shown);
    }
    return errno_error(exist_ok ? ENOTDIR : EEXIST, "mkdir", at.shown);
  }
  return errno_error(err, "mkdir", at.shown);
}

namespace {

// One folder of a recursive remove: its identity (to recognise it again
// when the walk climbs back through ".."), its name in its parent, and the
// names inside it still to remove.
struct RemoveLevel {
  dev_t dev;
  ino_t ino;
  std::string name;
  std::string shown;
  std::vector<std::string> left;
};

// The names in the folder `dir` (collected first: removing while reading a
// directory is unspecified), in reverse so the walk pops them in order.
Result<std::vector<std::string>> names_in(int dir, const std::string& shown) {
  std::vector<std::string> names;
  Fd listed(::dup(dir));
  if (!listed.valid()) return errno_error(errno, "remove", shown);
  XFER_TRY(list_fd(std::move(listed), shown, {}, [&](Entry&& e) {
    names.push_back(std::move(e.name));
    return ok_status();
  }));
  std::reverse(names.begin(), names.end());
  return names;
}

}  // namespace

// A recursive remove walks the tree with one descriptor at a time and no
// recursion: a peer can build a tree 2,000 levels deep within PATH_MAX, and
// neither the stack nor the descriptor table may grow with the depth. It
// goes down with openat(O_NOFOLLOW) (a symlink is removed, never followed;
// a folder swapped for a link under us fails) and back up through "..",
// checked to be the very folder it left (device and inode): a subtree
// moved elsewhere meanwhile stops the walk with an error instead of
// removing in the wrong place. What was removed before an error stays
// removed, as with rm -r.
Status remove_at(const At& at, bool recursive) {
  struct stat st {};
  if (::fstatat(at.dir, name_of(at), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno_error(errno, "remove", at.shown);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(at.dir, name_of(at), 0) != 0) return errno_error(errno, "remove", at.shown);
    return ok_status();
  }
  if (recursive) {
    constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
    Fd cur(::openat(at.dir, name_of(at), kDirFlags));
    if (!cur.valid()) return errno_error(errno, "remove", at.shown);
    if (::fstat(cur.get(), &st) != 0) return errno_error(errno, "remove", at.shown);
    std::vector<RemoveLevel> levels;
    XFER_ASSIGN_OR_RETURN(auto top, names_in(cur.get(), at.shown));
    levels.push_back(RemoveLevel{st.st_dev, st.st_ino, "", at.shown, std::move(top)});
    while (true) {
      RemoveLevel& level = levels.back();
      if (!level.left.empty()) {
        const std::string name = std::move(level.left.back());
        level.left.pop_back();
        const std::string shown = join_path(level.shown, name);
        struct stat child {};
        if (::fstatat(cur.get(), name.c_str(), &child, AT_SYMLINK_NOFOLLOW) != 0) {
          return errno_error(errno, "remove", shown);
        }
        if (!S_ISDIR(child.st_mode)) {
          if (::unlinkat(cur.get(), name.c_str(), 0) != 0) {
            return errno_error(errno, "remove", shown);
          }
          continue;
        }
        Fd sub(::openat(cur.get(), name.c_str(), kDirFlags));
        if (!sub.valid() || ::fstat(sub.get(), &child) != 0) {
          return errno_error(errno, "remove", shown);
        }
        XFER_ASSIGN_OR_RETURN(auto names, names_in(sub.get(), shown));
        levels.push_back(RemoveLevel{child.st_dev, child.st_ino, name, shown, std::move(names)});
        cur = std::move(sub);
        continue;
      }
      if (levels.size() == 1) break;  // the top folder is empty now
      // Back up to the parent, which must still be the folder we came from.
      Fd parent(::openat(cur.get(), "..", kDirFlags));
      struct stat up {};
      if (!parent.valid() || ::fstat(parent.get(), &up) != 0) {
        return errno_error(errno, "remove", level.shown);
      }
      const RemoveLevel& above = levels[levels.size() - 2];
      if (up.st_dev != above.dev || up.st_ino != above.ino) {
        return make_error(ErrorCode::kChanged, "remove", level.shown,
                          "the folder was moved while it was being removed");
      }
      if (::unlinkat(parent.get(), level.name.c_str(), AT_REMOVEDIR) != 0) {
        return errno_error(errno, "remove", level.shown);
      }
      levels.pop_back();
      cur = std::move(parent);
    }
  }
  if (::unlinkat(at.dir, name_of(at), AT_REMOVEDIR) != 0) {
    return errno_error(errno, "remove", at.shown);
  }
  return ok_status();
}

Status rename_at(const At& from, const At& to) {
  if (::renameat(from.dir, name_of(from), to.dir, name_of(to)) != 0) {
    Error e = errno_error(errno, "rename", from.shown);
    e.detail = "to " + to.shown;
    return e;
  }
  return ok_status();
}

Status touch_at(const At& at, std::optional<std::int64_t> mtime_ns) {
  struct timespec times[2];
  if (mtime_ns) {
    times[0] = times[1] = from_ns(*mtime_ns);
  } else {
    times[0] = times[1] = {0, UTIME_NOW};
  }
  if (::utimensat(at.dir, name_of(at), times, AT_SYMLINK_NOFOLLOW) == 0) return ok_status();
  if (errno != ENOENT) return errno_error(errno, "touch", at.shown);
  Fd fd(::openat(at.dir, name_of(at),
                 O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK,
                 0666));
  if (!fd.valid()) return errno_error(errno, "touch", at.shown);
  if (mtime_ns && ::futimens(fd.get(), times) != 0) return errno_error(errno, "touch", at.shown);
  return ok_status();
}

Status symlink_at(const std::string& target, const At& at, const FileAttrs& attrs) {
  const std::string tmp = temp_name_for(at.name, "link");
  if (create_replacing_stale(at.dir, tmp, [&](const std::string& n) {
        return ::symlinkat(target.c_str(), at.dir, n.c_str());
      }) != 0) {
    return errno_error(errno, "symlink", at.shown);
  }
  if (attrs.mtime_ns != 0) {
    struct timespec times[2] = {{0, UTIME_OMIT}, from_ns(attrs.mtime_ns)};
    ::utimensat(at.dir, tmp.c_str(), times, AT_SYMLINK_NOFOLLOW);
  }
  if (::renameat(at.dir, tmp.c_str(), at.dir, name_of(at)) != 0) {
    int err = errno;
    ::unlinkat(at.dir, tmp.c_str(), 0);
    return errno_error(err, "symlink", at.shown);
  }
  return ok_status();
}

Status set_attrs_at(const At& at, const FileAttrs& attrs, const FsPolicy& policy) {
  struct timespec times[2] = {{0, UTIME_OMIT}, from_ns(attrs.mtime_ns)};
  const std::uint32_t mode = allowed_mode(attrs.mode, policy);
  if (!policy.confined) {
    if (attrs.type != EntryType::kSymlink && ::fchmodat(at.dir, name_of(at), mode, 0) != 0) {
      return errno_error(errno, "chmod", at.shown);
    }
    if (::utimensat(at.dir, name_of(at), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return errno_error(errno, "set mtime", at.shown);
    }
    return ok_status();
  }
  // Confined: pin the entry itself (O_PATH, never following it), then change
  // that inode through its descriptor, so nothing is re-resolved by name.
  Fd fd(::openat(at.dir, name_of(at), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return errno_error(errno, "set attributes", at.shown);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_error(errno, "set attributes", at.shown);
  if (S_ISLNK(st.st_mode)) {
    if (attrs.type != EntryType::kSymlink) return symlink_refused("set attributes", at.shown);
    // A link's own mtime; its mode means nothing on Linux.
    if (::utimensat(at.dir, name_of(at), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return errno_error(errno, "set mtime", at.shown);
    }
    return ok_status();
  }
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    return make_error(ErrorCode::kUnsupported, "set attributes", at.shown,
                      "not a regular file or directory");
  }
  const std::string proc = proc_fd_path(fd.get());
  if (::fchmodat(AT_FDCWD, proc.c_str(), mode, 0) != 0) {
    return errno_error(errno, "chmod", at.shown);
  }
  if (::utimensat(AT_FDCWD, proc.c_str(), times, 0) != 0) {
    return errno_error(errno, "set mtime", at.shown);
  }
  return ok_status();
}

Result<std::unique_ptr<Source>> open_source_at(const At& at, const FsPolicy& policy) {
  // O_NONBLOCK: opening a FIFO or a device must never wait; anything but a
  // regular file is refused right after the open.
  int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (policy.confined ? O_NOFOLLOW : 0);
  if (policy.confined) {
    // Devices are not even opened (an open can have side effects).
    struct stat st {};
    if (::fstatat(at.dir, name_of(at), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode) &&
        !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
      return make_error(ErrorCode::kUnsupported, "open", at.shown, "not a regular file");
    }
  }
  int fd = ::openat(at.dir, name_of(at), flags | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = ::openat(at.dir, name_of(at), flags);  // O_NOATIME: owner
  if (fd < 0) {
    int err = errno;
    if (policy.confined) return nofollow_error(err, at, "open");
    return errno_error(err, "open", at.shown);
  }
  Fd f(fd);
  struct stat st {};
  if (::fstat(f.get(), &st) != 0) return errno_error(errno, "stat", at.shown);
  if (S_ISDIR(st.st_mode)) return errno_error(EISDIR, "open", at.shown);
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorCode::kUnsupported, "open", at.shown, "not a regular file");
  }
  const int fl = ::fcntl(f.get(), F_GETFL);
  if (fl >= 0) ::fcntl(f.get(), F_SETFL, fl & ~O_NONBLOCK);  // back to blocking reads
  return std::unique_ptr<Source>(new LocalSource(std::move(f), at.shown, attrs_from_stat(st)));
}

// The file a delta rebuilds from: what is under the final name now, never
// through a symlink, and exactly what its signature described.
Result<Fd> open_basis(const At& at, const SinkOptions& options) {
  Fd f(::openat(at.dir, at.name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  auto changed = [&](std::string_view why) {
    return make_error(ErrorCode::kChanged, "open the old file", at.shown, std::string(why),
                      RetryClass::kRetryFile);
  };
  if (!f.valid()) {
    if (errno == ENOENT || errno == ELOOP) return changed("it is gone");
    return errno_error(errno, "open the old file", at.shown);
  }
  struct stat st {};
  if (::fstat(f.get(), &st) != 0) return errno_error(errno, "stat", at.shown);
  if (!S_ISREG(st.st_mode)) return changed("it is no longer a regular file");
  if (static_cast<std::uint64_t>(st.st_size) != options.basis_size ||
      to_ns(st.st_mtim) != options.basis_mtime_ns) {
    return changed("it changed since its blocks were read");
  }
  return f;
}

Result<std::unique_ptr<Sink>> open_sink_at(Fd dir_owner, At at, const SinkOptions& in,
                                           const FsPolicy& policy, SinkEnv& env) {
  SinkOptions options = in;
  options.attrs.mode = allowed_mode(options.attrs.mode, policy);
  int flags = O_RDWR | O_CLOEXEC | (options.direct ? O_DIRECT : 0);
  // Create the file with its final mode when the umask leaves it intact (no
  // chmod at commit); special bits always go through fchmod.
  const mode_t want = options.attrs.mode & 07777;
  const bool mode_is_final = (want & 07000) == 0 && (want & env.umask) == 0;
  const mode_t create_mode = mode_is_final ? want : 0600;
  if (!options.resume_name.empty()) {
    if (options.basis) {
      return make_error(ErrorCode::kInvalidArgument, "open", at.shown,
                        "a delta is never written to a resumable partial");
    }
    return open_resumable(std::move(dir_owner), at, std::move(options), flags, mode_is_final,
                          policy);
  }
  const std::string dir = dir_name(at.name);
  bool anonymous = true;
  std::string temp;
  int fd = env.use_tmpfile.load(std::memory_order_relaxed)
               ? ::openat(at.dir, dir.c_str(), flags | O_TMPFILE, create_mode)
               : -1;
  if (fd < 0) {
    if (env.use_tmpfile && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
      env.use_tmpfile = false;  // this file system has no O_TMPFILE: named temp files
    } else if (env.use_tmpfile) {
      return errno_error(errno, "create", at.shown);
    }
    anonymous = false;
    temp = temp_name_for(at.name, "file");
    fd = create_replacing_stale(at.dir, temp, [&](const std::string& n) {
      return ::openat(at.dir, n.c_str(), flags | O_CREAT | O_EXCL | O_NOFOLLOW, create_mode);
    });
    if (fd < 0) return errno_error(errno, "create", at.shown);
  }
  Fd f(fd);
  // Nor for any file it writes: space is taken as data arrives, so a client
  // cannot reserve disk with an OPEN_WRITE it never fills.
  if (!policy.confined && options.size >= kPreallocateMin && !options.sparse &&
      preallocation_helps(f.get())) {
    Status s = preallocate(f.get(), options.size, at.shown);
    if (!s.ok()) {
      if (!anonymous) ::unlinkat(at.dir, temp.c_str(), 0);
      return s.error();
    }
  }
  Fd basis;
  if (options.basis) {
    auto opened = open_basis(at, options);
    if (!opened) {
      if (!anonymous) ::unlinkat(at.dir, temp.c_str(), 0);
      return opened.error();
    }
    basis = std::move(opened).value();
  }
  const int dir_fd = at.dir;
  auto sink = std::make_unique<LocalSink>(std::move(dir_owner), dir_fd, std::move(f),
                                          std::move(at.name), std::move(at.shown), temp, anonymous,
                                          std::move(options), mode_is_final);
  sink->set_basis(std::move(basis));
  return std::unique_ptr<Sink>(std::move(sink));
}

// The process umask, read without changing it (umask(2) would race with
// other threads creating files).
mode_t current_umask() {
  FILE* f = std::fopen("/proc/self/status", "r");
  mode_t mask = 022;
  if (f == nullptr) return mask;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned m = 0;
    if (std::sscanf(line, "Umask: %o", &m) == 1) {
      mask = static_cast<mode_t>(m);
      break;
    }
  }
  std::fclose(f);
  return mask;
}

}  // namespace fs

namespace {

fs::At here(std::string_view path) {
  std::string p(path.empty() ? "." : path);
  return fs::At{AT_FDCWD, p, p};
}

// ---------------------------------------------------------------- Backend

class LocalBackend final : public Backend {
 public:
  LocalBackend() {
    caps_.random_writes = true;
    caps_.parallel_writers = true;
    caps_.resume = true;
    caps_.symlinks = true;
    caps_.permissions = true;
    caps_.mtime = true;
    caps_.server_side_copy = false;
    caps_.zero_copy_send = true;
    caps_.basis_copy = true;
    caps_.preferred_chunk_size = 16ull << 20;
    caps_.max_concurrency = 256;
    env_.umask = fs::current_umask();
  }

  const Capabilities& capabilities() const override { return caps_; }
  std::string describe() const override { return "local"; }

  Result<FileAttrs> stat(std::string_view path) override { return fs::stat_at(here(path)); }

  Status list(std::string_view path, const ListOptions& options, const EntrySink& sink) override {
    return fs::list_at(here(path), options, sink, policy_);
  }

  Status mkdir(std::string_view path, bool parents) override {
    const fs::At at = here(path);
    Status s = fs::mkdir_at(at, parents);
    if (s.ok() || !parents || s.error().sys_errno != ENOENT) return s;
    const std::string parent = dir_name(at.name);
    if (parent != at.name && parent != "." && parent != "/") XFER_TRY(mkdir(parent, true));
    return fs::mkdir_at(at, true);
  }

  Status remove(std::string_view path, bool recursive) override {
    return fs::remove_at(here(path), recursive);
  }

  Status rename(std::string_view from, std::string_view to) override {
    return fs::rename_at(here(from), here(to));
  }

  Status touch(std::string_view path, std::optional<std::int64_t> mtime_ns) override {
    return fs::touch_at(here(path), mtime_ns);
  }

  Status symlink(std::string_view target, std::string_view path, const FileAttrs& attrs) override {
    return fs::symlink_at(std::string(target), here(path), attrs);
  }

  Status set_attrs(std::string_view path, const FileAttrs& attrs) override {
    return fs::set_attrs_at(here(path), attrs, policy_);
  }

  Result<std::unique_ptr<Source>> open_source(std::string_view path) override {
    return fs::open_source_at(here(path), policy_);
  }

  Result<std::unique_ptr<ChangeWatch>> watch(std::string_view path, std::size_t root,
                                             std::shared_ptr<ChangeFeed> feed,
                                             const WatchOptions& options) override {
    XFER_ASSIGN_OR_RETURN(auto w,
                          TreeWatcher::start(root, std::string(path), std::move(feed), options));
    return std::unique_ptr<ChangeWatch>(std::move(w));
  }

  Result<std::unique_ptr<Sink>> open_sink(std::string_view path,
                                          const SinkOptions& options) override {
    return fs::open_sink_at(UniqueFd(), here(path), options, policy_, env_);
  }

 private:
  Capabilities caps_;
  fs::FsPolicy policy_;
  fs::SinkEnv env_;
};

}  // namespace

std::unique_ptr<Backend> make_local_backend() {
  return std::make_unique<LocalBackend>();
}

std::string local_partial_path(const std::string& path, const std::string& resume_name) {
  return fs::resumable_name_for(path, resume_name);
}

}  // namespace xfer
