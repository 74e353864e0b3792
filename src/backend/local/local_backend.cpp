// Local file system backend. See include/xfer/backend/local.hpp.

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include "xfer/backend/local.hpp"
#include "xfer/io/unique_fd.hpp"

namespace xfer {
namespace {

std::string path_str(std::string_view p) {
  return std::string(p.empty() ? "." : p);
}

using Fd = UniqueFd;

EntryType type_from_mode(mode_t m) {
  if (S_ISREG(m)) return EntryType::kFile;
  if (S_ISDIR(m)) return EntryType::kDirectory;
  if (S_ISLNK(m)) return EntryType::kSymlink;
  return EntryType::kOther;
}

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
  a.type = type_from_mode(st.st_mode);
  a.size = static_cast<std::uint64_t>(st.st_size);
  a.mode = st.st_mode & 07777;
  a.mtime_ns = to_ns(st.st_mtim);
  a.allocated = static_cast<std::uint64_t>(st.st_blocks) * 512;
  a.device = st.st_dev;
  a.inode = st.st_ino;
  return a;
}

Result<std::string> read_link(const std::string& path) {
  std::vector<char> buf(256);
  for (;;) {
    ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0) return errno_error(errno, "readlink", path);
    if (static_cast<size_t>(n) < buf.size()) return std::string(buf.data(), static_cast<size_t>(n));
    buf.resize(buf.size() * 2);
  }
}

// A hidden sibling name ".<name>.xfer-tmp-<purpose>" ("link", "swap",
// "file"). Deterministic on purpose: if the process dies between creating it
// and renaming it over the final name, the next run for the same file finds
// and replaces it instead of leaving a stray behind. Names near the 255-byte
// limit get a short form (a hash of the name) so the temp name always fits.
std::string temp_name_for(const std::string& final_path, std::string_view purpose) {
  std::string base = base_name(final_path);
  if (base.size() + purpose.size() + 11 > 255) {
    base = fmt::format("{:016x}", std::hash<std::string>{}(base));
  }
  return join_path(dir_name(final_path), fmt::format(".{}.xfer-tmp-{}", base, purpose));
}

// Runs `make(path)` (a syscall creating `path`); when a stale entry of an
// earlier, killed run is in the way (EEXIST), removes it and tries once more.
template <typename Make>
int create_replacing_stale(const std::string& path, Make make) {
  int r = make(path);
  if (r < 0 && errno == EEXIST) {
    ::unlink(path.c_str());
    r = make(path);
  }
  return r;
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

// The deterministic partial name of a resumable sink.
std::string resumable_name_for(const std::string& final_path, const std::string& token) {
  std::string base = base_name(final_path);
  if (base.size() + kLocalTempInfix.size() + token.size() + 2 > 255) {
    base = fmt::format("{:016x}", std::hash<std::string>{}(base));
  }
  return join_path(dir_name(final_path), fmt::format(".{}{}{}", base, kLocalTempInfix, token));
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

 private:
  Fd fd_;
  std::string path_;
  FileAttrs attrs_;
};

// ---------------------------------------------------------------- Sink

class LocalSink final : public Sink {
 public:
  // `anonymous`: fd is an O_TMPFILE with no name yet; else temp_path_ names it.
  // `mode_is_final`: the file was created with its final permission bits, so
  // commit() need not chmod it.
  LocalSink(Fd fd, std::string final_path, std::string temp_path, bool anonymous, SinkOptions opts,
            bool mode_is_final)
      : fd_(std::move(fd)),
        final_path_(std::move(final_path)),
        temp_path_(std::move(temp_path)),
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
        return errno_error(errno, "write", final_path_);
      }
      if (n == 0) return errno_error(ENOSPC, "write", final_path_);
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
        return errno_error(errno, "copy", final_path_);
      }
      if (n == 0) break;  // source EOF: the caller checks the count
      done += static_cast<std::uint64_t>(n);
    }
    return done;
  }

  Result<std::size_t> read_back(Offset offset, std::span<std::byte> buf) override {
    return pread_full(fd_.get(), offset, buf, "read back", final_path_);
  }

  Status commit() override {
    if (!fd_.valid()) return make_error(ErrorCode::kInternal, "commit", final_path_, "not open");
    // Size first: a sparse tail (or a zero-length file) needs it.
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) return fail(errno, "stat");
    if (static_cast<std::uint64_t>(st.st_size) != opts_.size) {
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
      std::string proc = fmt::format("/proc/self/fd/{}", fd_.get());
      if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, final_path_.c_str(), AT_SYMLINK_FOLLOW) == 0) {
        anonymous_ = false;
        fd_.reset();
        committed_ = true;
        return ok_status();
      }
      if (errno != EEXIST) return fail(errno, "publish");
      // The final name exists: link under a temp name, then rename over it.
      temp_path_ = temp_name_for(final_path_, "swap");
      if (create_replacing_stale(temp_path_, [&](const std::string& t) {
            return ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, t.c_str(), AT_SYMLINK_FOLLOW);
          }) != 0) {
        return fail(errno, "publish");
      }
      anonymous_ = false;
    }
    if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) return fail(errno, "rename");
    fd_.reset();
    committed_ = true;
    return ok_status();
  }

  Status abort() override {
    if (committed_) return ok_status();
    if (!anonymous_ && !temp_path_.empty() && fd_.valid()) ::unlink(temp_path_.c_str());
    buffered_.reset();
    fd_.reset();  // an O_TMPFILE vanishes with its last descriptor
    committed_ = true;
    return ok_status();
  }

 private:
  Error fail(int err, std::string_view op) {
    Error e = errno_error(err, op, final_path_);
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
      std::string proc = fmt::format("/proc/self/fd/{}", fd_.get());
      buffered_ = Fd(::open(proc.c_str(), O_RDWR | O_CLOEXEC));
      if (!buffered_.valid()) return errno_error(errno, "open", final_path_);
    }
    return buffered_.get();
  }

  std::mutex write_mu_;  // buffered writes, see write_at
  Fd fd_;
  std::string final_path_;
  std::string temp_path_;
  bool anonymous_;
  SinkOptions opts_;
  bool resumable() const { return !opts_.resume_name.empty() && !anonymous_; }

  bool mode_is_final_;
  bool committed_ = false;
  bool resumed_ = false;
  std::mutex buffered_mu_;
  Fd buffered_;  // lazily opened for unaligned writes under O_DIRECT
};

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
    caps_.preferred_chunk_size = 16ull << 20;
    caps_.max_concurrency = 256;
  }

  const Capabilities& capabilities() const override { return caps_; }
  std::string describe() const override { return "local"; }

  Result<FileAttrs> stat(std::string_view path) override {
    std::string p = path_str(path);
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return errno_error(errno, "stat", p);
    FileAttrs a = attrs_from_stat(st);
    if (a.type == EntryType::kSymlink) {
      XFER_ASSIGN_OR_RETURN(a.symlink_target, read_link(p));
    }
    return a;
  }

  Status list(std::string_view path, const ListOptions& options, const EntrySink& sink) override {
    std::string p = path_str(path);
    Fd dfd(::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dfd.valid()) return errno_error(errno, "list", p);
    int dup_fd = ::dup(dfd.get());
    if (dup_fd < 0) return errno_error(errno, "list", p);
    DIR* dir = ::fdopendir(dup_fd);
    if (dir == nullptr) {
      ::close(dup_fd);
      return errno_error(errno, "list", p);
    }
    struct DirCloser {
      DIR* d;
      ~DirCloser() { ::closedir(d); }
    } closer{dir};
    for (;;) {
      errno = 0;
      struct dirent* de = ::readdir(dir);
      if (de == nullptr) {
        if (errno != 0) return errno_error(errno, "list", p);
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
          return errno_error(errno, "stat", join_path(p, name));
        }
        FileAttrs a = attrs_from_stat(st);
        e.type = a.type;
        if (options.want_attrs) {
          if (a.type == EntryType::kSymlink) {
            auto t = read_link(join_path(p, name));
            if (t) a.symlink_target = std::move(t).value();
          }
          e.attrs = std::move(a);
        }
      }
      XFER_TRY(sink(std::move(e)));
    }
    return ok_status();
  }

  Status mkdir(std::string_view path, bool parents) override {
    std::string p = path_str(path);
    if (::mkdir(p.c_str(), 0777) == 0) return ok_status();
    int err = errno;
    if (err == EEXIST) {
      struct stat st {};
      if (::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        if (parents) return ok_status();
        return errno_error(EEXIST, "mkdir", p);
      }
      return errno_error(parents ? ENOTDIR : EEXIST, "mkdir", p);
    }
    if (err == ENOENT && parents) {
      std::string parent = dir_name(p);
      if (parent != p && parent != "." && parent != "/") XFER_TRY(mkdir(parent, true));
      if (::mkdir(p.c_str(), 0777) == 0 || errno == EEXIST) return ok_status();
      err = errno;
    }
    return errno_error(err, "mkdir", p);
  }

  Status remove(std::string_view path, bool recursive) override {
    std::string p = path_str(path);
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return errno_error(errno, "remove", p);
    if (!S_ISDIR(st.st_mode)) {
      if (::unlink(p.c_str()) != 0) return errno_error(errno, "remove", p);
      return ok_status();
    }
    if (recursive) {
      // Collect names first: removing while reading a directory is unspecified.
      std::vector<std::string> names;
      XFER_TRY(list(p, {}, [&](Entry&& e) {
        names.push_back(std::move(e.name));
        return ok_status();
      }));
      for (const auto& n : names) XFER_TRY(remove(join_path(p, n), true));
    }
    if (::rmdir(p.c_str()) != 0) return errno_error(errno, "remove", p);
    return ok_status();
  }

  Status rename(std::string_view from, std::string_view to) override {
    std::string f = path_str(from), t = path_str(to);
    if (::rename(f.c_str(), t.c_str()) != 0) {
      Error e = errno_error(errno, "rename", f);
      e.detail = "to " + t;
      return e;
    }
    return ok_status();
  }

  Status touch(std::string_view path, std::optional<std::int64_t> mtime_ns) override {
    std::string p = path_str(path);
    struct timespec times[2];
    if (mtime_ns) {
      times[0] = times[1] = from_ns(*mtime_ns);
    } else {
      times[0] = times[1] = {0, UTIME_NOW};
    }
    if (::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0) return ok_status();
    if (errno != ENOENT) return errno_error(errno, "touch", p);
    Fd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0666));
    if (!fd.valid()) return errno_error(errno, "touch", p);
    if (mtime_ns && ::futimens(fd.get(), times) != 0) return errno_error(errno, "touch", p);
    return ok_status();
  }

  Status symlink(std::string_view target, std::string_view path, const FileAttrs& attrs) override {
    std::string p = path_str(path);
    std::string t(target);
    std::string tmp = temp_name_for(p, "link");
    if (create_replacing_stale(
            tmp, [&](const std::string& n) { return ::symlink(t.c_str(), n.c_str()); }) != 0) {
      return errno_error(errno, "symlink", p);
    }
    if (attrs.mtime_ns != 0) {
      struct timespec times[2] = {{0, UTIME_OMIT}, from_ns(attrs.mtime_ns)};
      ::utimensat(AT_FDCWD, tmp.c_str(), times, AT_SYMLINK_NOFOLLOW);
    }
    if (::rename(tmp.c_str(), p.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return errno_error(err, "symlink", p);
    }
    return ok_status();
  }

  Status set_attrs(std::string_view path, const FileAttrs& attrs) override {
    std::string p = path_str(path);
    if (attrs.type != EntryType::kSymlink && ::chmod(p.c_str(), attrs.mode & 07777) != 0) {
      return errno_error(errno, "chmod", p);
    }
    struct timespec times[2] = {{0, UTIME_OMIT}, from_ns(attrs.mtime_ns)};
    if (::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return errno_error(errno, "set mtime", p);
    }
    return ok_status();
  }

  Result<std::unique_ptr<Source>> open_source(std::string_view path) override {
    std::string p = path_str(path);
    int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY;
    int fd = ::open(p.c_str(), flags | O_NOATIME);
    if (fd < 0 && errno == EPERM) fd = ::open(p.c_str(), flags);  // O_NOATIME needs ownership
    if (fd < 0) return errno_error(errno, "open", p);
    Fd f(fd);
    struct stat st {};
    if (::fstat(f.get(), &st) != 0) return errno_error(errno, "stat", p);
    if (S_ISDIR(st.st_mode)) return errno_error(EISDIR, "open", p);
    if (!S_ISREG(st.st_mode)) {
      return make_error(ErrorCode::kUnsupported, "open", p, "not a regular file");
    }
    return std::unique_ptr<Source>(new LocalSource(std::move(f), p, attrs_from_stat(st)));
  }

  Result<std::unique_ptr<Sink>> open_sink(std::string_view path,
                                          const SinkOptions& options) override {
    std::string p = path_str(path);
    int flags = O_RDWR | O_CLOEXEC | (options.direct ? O_DIRECT : 0);
    std::string dir = dir_name(p);
    bool anonymous = true;
    std::string temp;
    // Create the file with its final mode when the umask leaves it intact (no
    // chmod at commit); special bits always go through fchmod.
    const mode_t want = options.attrs.mode & 07777;
    const bool mode_is_final = (want & 07000) == 0 && (want & umask_) == 0;
    const mode_t create_mode = mode_is_final ? want : 0600;
    if (!options.resume_name.empty()) return open_resumable(p, options, flags, mode_is_final);
    int fd = use_tmpfile_.load(std::memory_order_relaxed)
                 ? ::open(dir.c_str(), flags | O_TMPFILE, create_mode)
                 : -1;
    if (fd < 0) {
      if (use_tmpfile_ && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        use_tmpfile_ = false;  // this file system has no O_TMPFILE: named temp files
      } else if (use_tmpfile_) {
        return errno_error(errno, "create", p);
      }
      anonymous = false;
      temp = temp_name_for(p, "file");
      fd = create_replacing_stale(temp, [&](const std::string& n) {
        return ::open(n.c_str(), flags | O_CREAT | O_EXCL, create_mode);
      });
      if (fd < 0) return errno_error(errno, "create", p);
    }
    Fd f(fd);
    if (options.size >= kPreallocateMin && !options.sparse && preallocation_helps(f.get())) {
      // Preallocation reserves the space up front: disk full shows at once,
      // and extents come out contiguous. Not every file system supports it.
      if (::fallocate(f.get(), FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(options.size)) != 0) {
        int err = errno;
        if (err == ENOSPC || err == EDQUOT || err == EFBIG) {
          if (!anonymous) ::unlink(temp.c_str());
          return errno_error(err, "create", p);
        }
      }
    }
    return std::unique_ptr<Sink>(
        new LocalSink(std::move(f), p, temp, anonymous, options, mode_is_final));
  }

 private:
  // A named partial ".<name>.xfer-part-<resume_name>" that survives the
  // process, reopened as it is with resume_existing.
  Result<std::unique_ptr<Sink>> open_resumable(const std::string& p, const SinkOptions& options,
                                               int flags, bool mode_is_final) {
    std::string temp = resumable_name_for(p, options.resume_name);
    bool existed = false;
    int fd = -1;
    if (options.resume_existing) {
      fd = ::open(temp.c_str(), flags);
      existed = fd >= 0;
    }
    if (fd < 0) {
      fd = ::open(temp.c_str(), flags | O_CREAT | O_TRUNC,
                  mode_is_final ? options.attrs.mode & 07777 : 0600);
    }
    if (fd < 0) return errno_error(errno, "create", p);
    Fd f(fd);
    if (!existed && options.size >= kPreallocateMin && !options.sparse &&
        preallocation_helps(f.get())) {
      if (::fallocate(f.get(), FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(options.size)) != 0) {
        int err = errno;
        if (err == ENOSPC || err == EDQUOT || err == EFBIG) {
          ::unlink(temp.c_str());
          return errno_error(err, "create", p);
        }
      }
    }
    // An existing partial may have been created under another umask or mode.
    auto sink = std::make_unique<LocalSink>(std::move(f), p, temp, false, options,
                                            mode_is_final && !existed);
    sink->set_resumed(existed);
    return std::unique_ptr<Sink>(std::move(sink));
  }

  Capabilities caps_;
  const mode_t umask_ = current_umask();
  std::atomic<bool> use_tmpfile_{true};
};

}  // namespace

std::unique_ptr<Backend> make_local_backend() {
  return std::make_unique<LocalBackend>();
}

}  // namespace xfer
