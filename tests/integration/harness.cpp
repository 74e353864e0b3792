#include "harness.hpp"

#include <grp.h>
#include <atomic>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <system_error>
#include <thread>

namespace xfer_it {

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// Makes control characters visible in failure messages.
std::string quote(std::string_view s) {
  std::string r = "\"";
  for (unsigned char c : s) {
    if (c == '\n') {
      r += "\\n";
    } else if (c == '\t') {
      r += "\\t";
    } else if (c == '"' || c == '\\') {
      r += '\\';
      r += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      r += buf;
    } else {
      r += static_cast<char>(c);
    }
  }
  r += '"';
  return r;
}

std::string truncate_for_log(const std::string& s, std::size_t max = 4000) {
  if (s.size() <= max) return s;
  return s.substr(0, max / 2) + "\n...[" + std::to_string(s.size() - max) + " bytes elided]...\n" +
         s.substr(s.size() - max / 2);
}

std::uint64_t fnv1a(std::string_view s, std::uint64_t seed) {
  std::uint64_t h = 1469598103934665603ULL ^ (seed * 0x9E3779B97F4A7C15ULL);
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  // final avalanche (splitmix64)
  h += 0x9E3779B97F4A7C15ULL;
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL;
  return h ^ (h >> 31);
}

const char* type_name(mode_t m) {
  if (S_ISREG(m)) return "regular file";
  if (S_ISDIR(m)) return "directory";
  if (S_ISLNK(m)) return "symlink";
  if (S_ISFIFO(m)) return "fifo";
  if (S_ISSOCK(m)) return "socket";
  if (S_ISCHR(m)) return "char device";
  if (S_ISBLK(m)) return "block device";
  return "unknown";
}

std::string fmt_ts(const struct timespec& ts) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld.%09ld", static_cast<long long>(ts.tv_sec), ts.tv_nsec);
  return buf;
}

std::string fmt_mode(mode_t m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

// Names in a directory (readdir, so any byte sequence is fine), sorted.
std::vector<std::string> dir_names(const fs::path& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) throw_errno("opendir " + dir.string());
  while (true) {
    errno = 0;
    struct dirent* e = ::readdir(d);
    if (!e) {
      if (errno != 0) {
        int saved = errno;
        ::closedir(d);
        errno = saved;
        throw_errno("readdir " + dir.string());
      }
      break;
    }
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    names.emplace_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool lstat_path(const fs::path& p, struct stat& st) {
  return ::lstat(p.c_str(), &st) == 0;
}

std::string read_link(const fs::path& p) {
  std::string buf(4096, '\0');
  ssize_t n = ::readlink(p.c_str(), buf.data(), buf.size());
  if (n < 0) throw_errno("readlink " + p.string());
  buf.resize(static_cast<std::size_t>(n));
  return buf;
}

// Reads up to n bytes, retrying short reads; returns bytes read (< n at EOF).
std::size_t read_full(int fd, char* buf, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("read");
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return got;
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

}  // namespace

// ---------------------------------------------------------------- processes

std::string RunResult::describe() const {
  std::ostringstream o;
  o << "command:";
  for (const auto& a : argv) o << ' ' << quote(a);
  if (!cwd.empty()) o << "\ncwd: " << cwd;
  o << "\nexit code: " << exit_code;
  if (term_signal) o << " (killed by signal " << term_signal << ")";
  if (timed_out) o << " (TIMED OUT, killed by the test runner)";
  o << "\nwall time: " << seconds << " s";
  o << "\n--- stdout ---\n" << truncate_for_log(out);
  o << "\n--- stderr ---\n" << truncate_for_log(err) << "\n--------------";
  return o.str();
}

namespace {
std::atomic<int> g_child_uid{-1};
}  // namespace

int child_uid() {
  return g_child_uid.load();
}

AsUser::AsUser(int uid) : previous_(g_child_uid.exchange(uid)) {}
AsUser::~AsUser() {
  g_child_uid.store(previous_);
}

void chown_tree(const fs::path& root, int uid) {
  ::lchown(root.c_str(), static_cast<uid_t>(uid), static_cast<gid_t>(uid));
  for (auto& e : fs::recursive_directory_iterator(root)) {
    ::lchown(e.path().c_str(), static_cast<uid_t>(uid), static_cast<gid_t>(uid));
  }
}

RunResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  return run(argv, timeout, {});
}

RunResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout,
              const std::function<void(pid_t)>& on_spawn, const std::string& cwd) {
  RunResult res;
  res.argv = argv;
  res.cwd = cwd;
  if (argv.empty()) throw std::invalid_argument("run: empty argv");

  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  int outp[2], errp[2];
  if (::pipe2(outp, O_CLOEXEC) != 0) throw_errno("pipe2");
  if (::pipe2(errp, O_CLOEXEC) != 0) throw_errno("pipe2");

  const auto start = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    // Child: only async-signal-safe calls from here on.
    ::setpgid(0, 0);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
      const char msg[] = "harness: chdir failed\n";
      (void)!::write(errp[1], msg, sizeof msg - 1);
      ::_exit(127);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(outp[1], 1);
    ::dup2(errp[1], 2);
    if (const int uid = child_uid(); uid >= 0) {
      // Drop root for this child (permission tests): no groups, then gid, uid.
      if (::setgroups(0, nullptr) != 0 || ::setgid(static_cast<gid_t>(uid)) != 0 ||
          ::setuid(static_cast<uid_t>(uid)) != 0) {
        const char msg[] = "harness: cannot drop privileges\n";
        (void)!::write(2, msg, sizeof msg - 1);
        ::_exit(127);
      }
    }
    ::execvp(cargv[0], cargv.data());
    const char msg[] = "harness: execvp failed: ";
    (void)!::write(2, msg, sizeof msg - 1);
    const char* e = ::strerror(errno);
    (void)!::write(2, e, ::strlen(e));
    (void)!::write(2, "\n", 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent, to avoid the race
  ::close(outp[1]);
  ::close(errp[1]);
  if (on_spawn) on_spawn(pid);

  const auto deadline = start + timeout;
  struct pollfd fds[2] = {{outp[0], POLLIN, 0}, {errp[0], POLLIN, 0}};
  std::string* sinks[2] = {&res.out, &res.err};
  int open_count = 2;
  char buf[65536];
  while (open_count > 0) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      res.timed_out = true;
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      break;
    }
    int ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count());
    int pr = ::poll(fds, 2, std::min(ms, 1000));
    if (pr < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll");
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0) continue;
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
        if (n > 0) {
          sinks[i]->append(buf, static_cast<std::size_t>(n));
        } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
          ::close(fds[i].fd);
          fds[i].fd = -1;
          --open_count;
        }
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);

  int status = 0;
  struct rusage usage {};
  while (::wait4(pid, &status, 0, &usage) < 0) {
    if (errno != EINTR) throw_errno("wait4");
  }
  res.peak_rss_kib = usage.ru_maxrss;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (WIFEXITED(status)) {
    res.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    res.exit_code = -1;
    res.term_signal = WTERMSIG(status);
  }
  return res;
}

std::string xfer_bin() {
  const char* b = std::getenv("XFER_BIN");
  return b ? std::string(b) : std::string();
}

RunResult run_xfer(const std::vector<std::string>& args, std::chrono::seconds timeout) {
  return run_xfer(args, timeout, {});
}

RunResult run_xfer(const std::vector<std::string>& args, std::chrono::seconds timeout,
                   const std::function<void(pid_t)>& on_spawn, const std::string& cwd) {
  std::vector<std::string> argv;
  argv.reserve(args.size() + 1);
  argv.push_back(xfer_bin());
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, timeout, on_spawn, cwd);
}

// ---------------------------------------------------------------- fixture

void XferTest::SetUp() {
  const std::string bin = xfer_bin();
  ASSERT_FALSE(bin.empty())
      << "environment variable XFER_BIN is not set: it must point to the xfer "
         "binary (CTest sets it; by hand: XFER_BIN=build/apps/xfer/xfer)";
  ASSERT_EQ(::access(bin.c_str(), X_OK), 0)
      << "XFER_BIN=" << bin << " is not an executable file: " << std::strerror(errno);

  ::umask(022);
  const char* base_env = std::getenv("XFER_TEST_TMP");
  fs::path base = (base_env && *base_env) ? fs::path(base_env) : fs::path("/var/tmp");
  tmp_ = make_temp_dir_under(base);
  // Job state (checkpoints) of this test's runs goes to a folder of its own,
  // outside tmp() so tree comparisons do not see it; removed in TearDown.
  state_dir_ = make_temp_dir_under(base);
  ::setenv("XFER_STATE_DIR", state_dir_.c_str(), 1);
  // Nor does the user's own config or credentials file reach a test: both
  // name files that do not exist until a test writes them.
  ::setenv("XFER_CONFIG", (tmp_ / "no-config.toml").c_str(), 1);
  ::setenv("XFER_CREDENTIALS", (tmp_ / "no-credentials.toml").c_str(), 1);
}

fs::path XferTest::make_temp_dir_under(const fs::path& base) {
  std::string tmpl = (base / "xfer-it-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    ADD_FAILURE() << "mkdtemp under " << base << ": " << std::strerror(errno);
    throw_errno("mkdtemp " + tmpl);
  }
  fs::path p(tmpl);
  ::chmod(p.c_str(), 0755);
  extra_dirs_.push_back(p);
  return p;
}

std::optional<fs::path> XferTest::mount_tmpfs(const std::string& name, const std::string& options) {
  fs::path dir = tmp_ / name;
  fs::create_directories(dir);
  unsigned long flags = MS_NOSUID | MS_NODEV;
  std::string data;
  std::stringstream ss(options);
  std::string opt;
  while (std::getline(ss, opt, ',')) {
    if (opt == "ro") {
      flags |= MS_RDONLY;
    } else if (!opt.empty()) {
      if (!data.empty()) data += ',';
      data += opt;
    }
  }
  if (::mount("tmpfs", dir.c_str(), "tmpfs", flags, data.empty() ? nullptr : data.c_str()) != 0) {
    // Only a non-root run may skip: as root the mount must work, and a test
    // that silently stopped testing would hide what it guards.
    if (::geteuid() == 0) {
      ADD_FAILURE() << "cannot mount tmpfs on " << dir << " as root: " << std::strerror(errno);
    }
    return std::nullopt;
  }
  mounts_.push_back(dir);
  return dir;
}

bool XferTest::remount_readonly(const fs::path& mountpoint) {
  return ::mount(nullptr, mountpoint.c_str(), nullptr,
                 MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) == 0;
}

void XferTest::TearDown() {
  for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) {
    if (::umount2(it->c_str(), MNT_DETACH) != 0) {
      ADD_FAILURE() << "umount " << *it << ": " << std::strerror(errno);
    }
  }
  mounts_.clear();
  if (std::getenv("XFER_TEST_KEEP") && HasFailure()) {
    for (auto& d : extra_dirs_) std::fprintf(stderr, "[harness] keeping %s\n", d.c_str());
    return;
  }
  for (auto& d : extra_dirs_) {
    std::error_code ec;
    // Read-only dirs (0555) are fine for root; make them writable otherwise.
    if (::geteuid() != 0) {
      for (auto i = fs::recursive_directory_iterator(
               d, fs::directory_options::skip_permission_denied, ec);
           !ec && i != fs::recursive_directory_iterator(); i.increment(ec)) {
        if (i->is_directory(ec) && !i->is_symlink(ec)) ::chmod(i->path().c_str(), 0755);
      }
      ::chmod(d.c_str(), 0755);
    }
    // A server still winding down may remove its own files meanwhile
    // (ENOENT half-way): that is no leftover, so try again.
    for (int attempt = 0; attempt < 5; ++attempt) {
      ec.clear();
      fs::remove_all(d, ec);
      if (!ec || ec != std::errc::no_such_file_or_directory) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (ec) ADD_FAILURE() << "cleanup of " << d << ": " << ec.message();
  }
  extra_dirs_.clear();
}

// ---------------------------------------------------------------- files

std::string random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::string s(n, '\0');
  std::size_t i = 0;
  while (i + 8 <= n) {
    std::uint64_t v = rng();
    std::memcpy(s.data() + i, &v, 8);
    i += 8;
  }
  if (i < n) {
    std::uint64_t v = rng();
    std::memcpy(s.data() + i, &v, n - i);
  }
  return s;
}

void write_random_file(const fs::path& p, std::uint64_t seed, std::uint64_t size) {
  std::mt19937_64 rng(seed);
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << p << ": " << std::strerror(errno);
  std::uint64_t left = size;
  while (left > 0) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, 8u << 20));
    std::string buf = random_bytes(rng, n);
    ASSERT_EQ(::write(fd, buf.data(), n), static_cast<ssize_t>(n));
    left -= n;
  }
  ::close(fd);
}

std::uint64_t process_wchar(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/io");
  std::string key;
  std::uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "wchar:") return value;
  }
  return 0;
}

SignalledRun run_xfer_signal_when(const std::vector<std::string>& args, int sig,
                                  const std::function<bool(pid_t)>& ready,
                                  const std::function<void()>& at_signal,
                                  std::chrono::seconds timeout, const std::string& cwd) {
  SignalledRun out;
  std::thread watcher;
  std::atomic<bool> ended{false};
  int pidfd = -1;
  out.result = run_xfer(
      args, timeout,
      [&](pid_t pid) {
        pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
        watcher = std::thread([&, pid] {
          while (!ended.load()) {
            // Still running (a zombie is not: pidfd polls readable)?
            pollfd p{pidfd, POLLIN, 0};
            if (pidfd < 0 || ::poll(&p, 1, 0) != 0) return;
            if (ready(pid)) {
              if (at_signal) at_signal();
              out.signalled = ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == 0;
              return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
          }
        });
      },
      cwd);
  ended = true;
  if (watcher.joinable()) watcher.join();
  if (pidfd >= 0) ::close(pidfd);
  return out;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

std::uint64_t allocated_bytes(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) {
    ADD_FAILURE() << "lstat " << p << ": " << std::strerror(errno);
    return 0;
  }
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

void write_sparse_file(const fs::path& p, std::uint64_t size,
                       const std::vector<std::uint64_t>& offsets, std::size_t len,
                       std::uint64_t zeros_at, std::size_t zeros) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << p << ": " << std::strerror(errno);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  std::mt19937_64 rng(size ^ len);
  for (std::uint64_t off : offsets) {
    std::string data = random_bytes(rng, len);
    data[0] = 'x';  // never a zero block, even by chance
    ASSERT_EQ(::pwrite(fd, data.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len));
  }
  if (zeros > 0) {
    const std::string z(zeros, '\0');
    ASSERT_EQ(::pwrite(fd, z.data(), zeros, static_cast<off_t>(zeros_at)),
              static_cast<ssize_t>(zeros));
  }
  ASSERT_EQ(::fsync(fd), 0);
  ::close(fd);
}

std::uint64_t lsize(const fs::path& p) {
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_size);
}

void write_file(const fs::path& p, std::string_view content) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_errno("open " + p.string());
  Fd guard(fd);
  std::size_t off = 0;
  while (off < content.size()) {
    ssize_t w = ::write(fd, content.data() + off, content.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw_errno("write " + p.string());
    }
    off += static_cast<std::size_t>(w);
  }
}

std::string read_file(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("open " + p.string());
  Fd guard(fd);
  std::string s;
  char buf[65536];
  while (true) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("read " + p.string());
    }
    if (r == 0) break;
    s.append(buf, static_cast<std::size_t>(r));
  }
  return s;
}

void set_mtime(const fs::path& p, std::int64_t sec, long nsec, bool no_follow) {
  struct timespec ts[2];
  ts[0].tv_sec = static_cast<time_t>(sec);  // atime: same value
  ts[0].tv_nsec = nsec;
  ts[1].tv_sec = static_cast<time_t>(sec);
  ts[1].tv_nsec = nsec;
  if (::utimensat(AT_FDCWD, p.c_str(), ts, no_follow ? AT_SYMLINK_NOFOLLOW : 0) != 0)
    throw_errno("utimensat " + p.string());
}

struct timespec get_mtime(const fs::path& p) {
  struct stat st;
  if (!lstat_path(p, st)) throw_errno("lstat " + p.string());
  return st.st_mtim;
}

mode_t get_mode(const fs::path& p) {
  struct stat st;
  if (!lstat_path(p, st)) throw_errno("lstat " + p.string());
  return st.st_mode & 07777;
}

bool lexists(const fs::path& p) {
  struct stat st;
  return lstat_path(p, st);
}

std::vector<std::string> list_relative(const fs::path& dir) {
  std::vector<std::string> out;
  std::function<void(const fs::path&, const std::string&)> walk = [&](const fs::path& d,
                                                                      const std::string& prefix) {
    for (const auto& n : dir_names(d)) {
      std::string rel = prefix.empty() ? n : prefix + "/" + n;
      out.push_back(rel);
      struct stat st;
      if (lstat_path(d / n, st) && S_ISDIR(st.st_mode)) walk(d / n, rel);
    }
  };
  walk(dir, "");
  std::sort(out.begin(), out.end());
  return out;
}

std::size_t count_entries(const fs::path& dir) {
  return list_relative(dir).size();
}

namespace {

// Reads fixed-size blocks of a file. Blocks lying entirely inside a hole
// (per SEEK_DATA) are known to read back as zeros and are filled without a
// read(2): reading gigabytes of holes through the page cache is slow.
class BlockReader {
 public:
  explicit BlockReader(int fd) : fd_(fd) {}
  // Fills buf with n bytes at off; returns false on a short read.
  bool fill(std::uint64_t off, char* buf, std::size_t n) {
    if (in_hole(off, n)) {
      std::memset(buf, 0, n);
      return true;
    }
    std::size_t got = 0;
    while (got < n) {
      ssize_t r = ::pread(fd_, buf + got, n - got, static_cast<off_t>(off + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw_errno("pread");
      }
      if (r == 0) return false;
      got += static_cast<std::size_t>(r);
    }
    return true;
  }

 private:
  bool in_hole(std::uint64_t off, std::size_t n) {
    if (!seek_ok_) return false;
    if (off < data_from_ && off >= hole_from_) return off + n <= data_from_;
    off_t d = ::lseek(fd_, static_cast<off_t>(off), SEEK_DATA);
    if (d < 0) {
      if (errno == ENXIO) {  // no data at or after off: hole up to EOF
        hole_from_ = off;
        data_from_ = UINT64_MAX;
        return true;
      }
      seek_ok_ = false;  // SEEK_DATA unsupported
      return false;
    }
    hole_from_ = off;
    data_from_ = static_cast<std::uint64_t>(d);
    return off + n <= data_from_;
  }
  int fd_;
  bool seek_ok_ = true;
  std::uint64_t hole_from_ = 0, data_from_ = 0;  // [hole_from_, data_from_) is a hole
};

}  // namespace

::testing::AssertionResult files_equal(const fs::path& a, const fs::path& b) {
  int fa = ::open(a.c_str(), O_RDONLY | O_CLOEXEC);
  if (fa < 0)
    return ::testing::AssertionFailure() << "cannot open " << a << ": " << std::strerror(errno);
  Fd ga(fa);
  int fb = ::open(b.c_str(), O_RDONLY | O_CLOEXEC);
  if (fb < 0)
    return ::testing::AssertionFailure() << "cannot open " << b << ": " << std::strerror(errno);
  Fd gb(fb);
  struct stat sa, sb;
  if (::fstat(fa, &sa) != 0 || ::fstat(fb, &sb) != 0)
    return ::testing::AssertionFailure() << "fstat: " << std::strerror(errno);
  if (sa.st_size != sb.st_size)
    return ::testing::AssertionFailure() << "sizes differ: " << a << " has " << sa.st_size
                                         << " bytes, " << b << " has " << sb.st_size << " bytes";
  ::posix_fadvise(fa, 0, 0, POSIX_FADV_SEQUENTIAL);
  ::posix_fadvise(fb, 0, 0, POSIX_FADV_SEQUENTIAL);
  const std::uint64_t size = static_cast<std::uint64_t>(sa.st_size);
  constexpr std::size_t kBlock = 1 << 20;  // compare in 1 MiB blocks
  std::unique_ptr<char[]> ba(new char[kBlock]), bb(new char[kBlock]);
  BlockReader ra(fa), rb(fb);
  for (std::uint64_t off = 0; off < size; off += kBlock) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kBlock, size - off));
    if (!ra.fill(off, ba.get(), n))
      return ::testing::AssertionFailure()
             << "short read of " << a << " at " << off << " (file changed?)";
    if (!rb.fill(off, bb.get(), n))
      return ::testing::AssertionFailure()
             << "short read of " << b << " at " << off << " (file changed?)";
    if (std::memcmp(ba.get(), bb.get(), n) != 0) {
      std::size_t i = 0;
      while (ba[i] == bb[i]) ++i;
      return ::testing::AssertionFailure()
             << "contents differ at byte offset " << off + i << ": " << a << " vs " << b;
    }
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult is_prefix_of(const fs::path& small, const fs::path& big) {
  int fs_ = ::open(small.c_str(), O_RDONLY | O_CLOEXEC);
  if (fs_ < 0)
    return ::testing::AssertionFailure() << "cannot open " << small << ": " << std::strerror(errno);
  Fd g1(fs_);
  int fb = ::open(big.c_str(), O_RDONLY | O_CLOEXEC);
  if (fb < 0)
    return ::testing::AssertionFailure() << "cannot open " << big << ": " << std::strerror(errno);
  Fd g2(fb);
  constexpr std::size_t kBlock = 1 << 20;
  std::unique_ptr<char[]> b1(new char[kBlock]), b2(new char[kBlock]);
  std::uint64_t off = 0;
  while (true) {
    std::size_t n1 = read_full(fs_, b1.get(), kBlock);
    if (n1 == 0) break;
    std::size_t n2 = read_full(fb, b2.get(), n1);
    if (n2 < n1)
      return ::testing::AssertionFailure()
             << big << " is shorter (" << off + n2 << " bytes) than " << small;
    if (std::memcmp(b1.get(), b2.get(), n1) != 0) {
      std::size_t i = 0;
      while (b1[i] == b2[i]) ++i;
      return ::testing::AssertionFailure() << small << " is not a prefix of " << big
                                           << ": first difference at byte offset " << off + i;
    }
    off += n1;
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------- trees

void stamp_mtimes(const fs::path& root, std::uint64_t seed) {
  auto stamp = [&](const fs::path& p, const std::string& rel) {
    std::uint64_t h = fnv1a(rel, seed);
    // 2001..2024-ish, with a non-zero nanosecond part.
    std::int64_t sec = 1'000'000'000 + static_cast<std::int64_t>(h % 700'000'000);
    long nsec = static_cast<long>((h >> 32) % 999'999'999) + 1;
    set_mtime(p, sec, nsec, /*no_follow=*/true);
  };
  auto all = list_relative(root);
  // Children first so that nothing we do afterwards touches a stamped dir
  // (utimensat on a child does not change the parent, but be explicit).
  std::sort(all.begin(), all.end(), [](const std::string& a, const std::string& b) {
    auto da = std::count(a.begin(), a.end(), '/');
    auto db = std::count(b.begin(), b.end(), '/');
    return da != db ? da > db : a < b;
  });
  for (const auto& rel : all) stamp(root / rel, rel);
  stamp(root, ".");
}

void generate_tree(const fs::path& root, const TreeSpec& spec) {
  std::mt19937_64 rng(spec.seed);
  fs::create_directories(root);
  ::chmod(root.c_str(), 0755);

  struct Dir {
    fs::path rel;
    int depth;
  };
  std::vector<Dir> dirs{{fs::path(), 0}};
  for (int i = 0; i < spec.dirs; ++i) {
    // choose a parent among the dirs that can still get children
    std::vector<std::size_t> cand;
    for (std::size_t j = 0; j < dirs.size(); ++j)
      if (dirs[j].depth < spec.max_depth) cand.push_back(j);
    const Dir& parent = dirs[cand[rng() % cand.size()]];
    char name[32];
    std::snprintf(name, sizeof name, "d%04d", i);
    fs::path rel = parent.rel / name;
    fs::create_directory(root / rel);
    dirs.push_back({rel, parent.depth + 1});
  }

  static const mode_t kFileModes[] = {0644, 0644, 0644, 0600, 0444, 0755, 0700, 0640};
  static const mode_t kDirModes[] = {0755, 0755, 0750, 0700};

  std::vector<fs::path> files;
  const std::size_t span = spec.max_size - spec.min_size + 1;
  for (int i = 0; i < spec.files; ++i) {
    const Dir& d = dirs[rng() % dirs.size()];
    char name[32];
    std::snprintf(name, sizeof name, "f%05d.bin", i);
    fs::path rel = d.rel / name;
    std::size_t size = spec.min_size + static_cast<std::size_t>(rng() % span);
    write_file(root / rel, random_bytes(rng, size));
    mode_t m =
        spec.random_modes ? kFileModes[rng() % (sizeof kFileModes / sizeof *kFileModes)] : 0644;
    if (::chmod((root / rel).c_str(), m) != 0) throw_errno("chmod");
    files.push_back(rel);
  }

  for (int i = 0; i < spec.symlinks && !files.empty(); ++i) {
    const Dir& d = dirs[rng() % dirs.size()];
    const fs::path& target = files[rng() % files.size()];
    char name[32];
    std::snprintf(name, sizeof name, "l%04d", i);
    fs::path link_rel = d.rel / name;
    fs::path link_target = target.lexically_relative(d.rel.empty() ? fs::path(".") : d.rel);
    if (::symlink(link_target.c_str(), (root / link_rel).c_str()) != 0) throw_errno("symlink");
  }

  for (int i = 0; i < spec.empty_dirs; ++i) {
    const Dir& d = dirs[rng() % dirs.size()];
    char name[32];
    std::snprintf(name, sizeof name, "e%04d", i);
    fs::create_directory(root / d.rel / name);
  }

  if (spec.random_modes) {
    for (std::size_t j = 1; j < dirs.size(); ++j) {
      mode_t m = kDirModes[rng() % (sizeof kDirModes / sizeof *kDirModes)];
      if (::chmod((root / dirs[j].rel).c_str(), m) != 0) throw_errno("chmod");
    }
  }
  stamp_mtimes(root, spec.seed);
}

::testing::AssertionResult compare_trees(const fs::path& src, const fs::path& dst,
                                         const CompareOptions& opt) {
  std::vector<std::string> diffs;
  std::size_t compared = 0;
  auto add = [&](std::string s) {
    if (diffs.size() < opt.max_diffs) diffs.push_back(std::move(s));
  };
  auto full = [&]() { return diffs.size() >= opt.max_diffs; };

  // Compares the entry at rel (already known to exist on both sides by name).
  std::function<void(const std::string&, bool)> cmp = [&](const std::string& rel, bool is_root) {
    if (full()) return;
    fs::path a = rel.empty() ? src : src / rel;
    fs::path b = rel.empty() ? dst : dst / rel;
    const std::string shown = quote(rel.empty() ? "." : rel);
    struct stat sa, sb;
    if (!lstat_path(a, sa)) {
      add("cannot lstat source " + quote(a.string()) + ": " + std::strerror(errno));
      return;
    }
    if (!lstat_path(b, sb)) {
      add("missing in destination: " + shown + " (" + std::strerror(errno) + ")");
      return;
    }
    ++compared;
    if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT)) {
      add(shown + ": type differs: source is " + type_name(sa.st_mode) + ", destination is " +
          type_name(sb.st_mode));
      return;
    }
    const bool check_meta = !is_root || opt.compare_root;
    if (check_meta && !S_ISLNK(sa.st_mode) && (sa.st_mode & 07777) != (sb.st_mode & 07777)) {
      add(shown + ": mode differs: " + fmt_mode(sa.st_mode) + " vs " + fmt_mode(sb.st_mode));
    }
    const bool want_mtime =
        check_meta && (S_ISREG(sa.st_mode) || (S_ISDIR(sa.st_mode) && opt.compare_dir_mtime) ||
                       (S_ISLNK(sa.st_mode) && opt.compare_symlink_mtime));
    if (want_mtime &&
        (sa.st_mtim.tv_sec != sb.st_mtim.tv_sec || sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec)) {
      add(shown + " (" + type_name(sa.st_mode) + "): mtime differs: " + fmt_ts(sa.st_mtim) +
          " vs " + fmt_ts(sb.st_mtim));
    }
    if (S_ISREG(sa.st_mode)) {
      if (sa.st_size != sb.st_size) {
        add(shown + ": size differs: " + std::to_string(sa.st_size) + " vs " +
            std::to_string(sb.st_size));
        return;
      }
      auto eq = files_equal(a, b);
      if (!eq) add(shown + ": " + eq.message());
    } else if (S_ISLNK(sa.st_mode)) {
      std::string ta = read_link(a), tb = read_link(b);
      if (ta != tb) add(shown + ": symlink target differs: " + quote(ta) + " vs " + quote(tb));
    } else if (S_ISDIR(sa.st_mode)) {
      auto na = dir_names(a), nb = dir_names(b);
      std::vector<std::string> only_a, only_b;
      std::set_difference(na.begin(), na.end(), nb.begin(), nb.end(), std::back_inserter(only_a));
      std::set_difference(nb.begin(), nb.end(), na.begin(), na.end(), std::back_inserter(only_b));
      auto join = [&](const std::string& n) { return rel.empty() ? n : rel + "/" + n; };
      for (const auto& n : only_a) add("missing in destination: " + quote(join(n)));
      for (const auto& n : only_b) add("extra in destination: " + quote(join(n)));
      for (const auto& n : na) {
        if (full()) return;
        if (std::binary_search(nb.begin(), nb.end(), n)) cmp(join(n), false);
      }
    }
  };

  try {
    cmp("", true);
  } catch (const std::exception& e) {
    add(std::string("exception while comparing: ") + e.what());
  }
  if (diffs.empty()) return ::testing::AssertionSuccess() << compared << " entries identical";
  auto r = ::testing::AssertionFailure();
  r << "trees differ (" << src << " vs " << dst << "); first " << diffs.size() << " difference(s):";
  for (const auto& d : diffs) r << "\n  - " << d;
  return r;
}

namespace {

// Minimal recursive-descent JSON syntax checker.
struct JsonChecker {
  std::string_view s;
  std::size_t i = 0;
  std::string err;
  int depth = 0;

  bool fail(const std::string& what) {
    if (err.empty()) err = what + " at offset " + std::to_string(i);
    return false;
  }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  bool lit(std::string_view w) {
    if (s.substr(i, w.size()) != w) return fail("bad literal");
    i += w.size();
    return true;
  }
  bool str() {
    if (i >= s.size() || s[i] != '"') return fail("expected string");
    ++i;
    while (i < s.size()) {
      unsigned char c = static_cast<unsigned char>(s[i]);
      if (c == '"') {
        ++i;
        return true;
      }
      if (c < 0x20) return fail("unescaped control character in string");
      if (c == '\\') {
        ++i;
        if (i >= s.size()) return fail("truncated escape");
        char e = s[i];
        if (e == 'u') {
          for (int k = 1; k <= 4; ++k)
            if (i + k >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + k])))
              return fail("bad \\u escape");
          i += 5;
          continue;
        }
        if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos)
          return fail("bad escape");
        ++i;
        continue;
      }
      ++i;
    }
    return fail("unterminated string");
  }
  bool num() {
    std::size_t st = i;
    if (i < s.size() && s[i] == '-') ++i;
    if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) return fail("bad number");
    if (s[i] == '0') {
      ++i;
    } else {
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i])))
        return fail("bad fraction");
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i])))
        return fail("bad exponent");
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    }
    return i > st;
  }
  bool value() {
    if (++depth > 200) return fail("nesting too deep");
    ws();
    if (i >= s.size()) return fail("unexpected end");
    bool ok;
    switch (s[i]) {
      case '{':
        ok = object();
        break;
      case '[':
        ok = array();
        break;
      case '"':
        ok = str();
        break;
      case 't':
        ok = lit("true");
        break;
      case 'f':
        ok = lit("false");
        break;
      case 'n':
        ok = lit("null");
        break;
      default:
        ok = num();
        break;
    }
    --depth;
    ws();
    return ok;
  }
  bool object() {
    ++i;  // {
    ws();
    if (i < s.size() && s[i] == '}') {
      ++i;
      return true;
    }
    while (true) {
      ws();
      if (!str()) return false;
      ws();
      if (i >= s.size() || s[i] != ':') return fail("expected ':'");
      ++i;
      if (!value()) return false;
      if (i < s.size() && s[i] == ',') {
        ++i;
        continue;
      }
      if (i < s.size() && s[i] == '}') {
        ++i;
        return true;
      }
      return fail("expected ',' or '}'");
    }
  }
  bool array() {
    ++i;  // [
    ws();
    if (i < s.size() && s[i] == ']') {
      ++i;
      return true;
    }
    while (true) {
      if (!value()) return false;
      if (i < s.size() && s[i] == ',') {
        ++i;
        continue;
      }
      if (i < s.size() && s[i] == ']') {
        ++i;
        return true;
      }
      return fail("expected ',' or ']'");
    }
  }
};

}  // namespace

bool json_valid(std::string_view text, std::string* why) {
  JsonChecker c;
  c.s = text;
  bool ok = c.value();
  if (ok && c.i != text.size()) ok = c.fail("trailing characters");
  if (!ok && why) *why = c.err;
  return ok;
}

bool is_json_object(std::string_view line, std::string* why) {
  if (line.empty() || line.front() != '{' || line.back() != '}') {
    if (why) *why = "does not start with '{' and end with '}'";
    return false;
  }
  return json_valid(line, why);
}

bool icontains(std::string_view hay, std::string_view needle) {
  auto it = std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) ==
           std::tolower(static_cast<unsigned char>(b));
  });
  return it != hay.end() || needle.empty();
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  std::string cur;
  for (char c : s) {
    if (c == '\n') {
      lines.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  return lines;
}

int tcp_connect(const std::string& address, const std::string& source_ip) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::atoi(address.c_str() + colon + 1)));
  if (::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr) != 1) return -1;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (!source_ip.empty()) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    if (::inet_pton(AF_INET, source_ip.c_str(), &src.sin_addr) != 1 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      ::close(fd);
      return -1;
    }
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_some(int fd, std::string_view bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

bool closed_by_peer(int fd, std::chrono::steady_clock::time_point deadline) {
  char buf[4096];
  while (true) {
    // At least one look, even when the deadline has passed already.
    const int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        deadline - std::chrono::steady_clock::now())
                                        .count());
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, std::max(ms, 0));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return true;
    if (n < 0 && errno != EINTR && errno != EAGAIN) return true;
  }
}

}  // namespace xfer_it
