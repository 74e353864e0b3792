// Helpers for the xfer integration tests: a temp-dir fixture, a fork/execvp
// runner that captures stdout/stderr/exit code, seeded tree generators and a
// strict tree comparison (type, bytes, size, mode, nanosecond mtime, names).
#pragma once

#include <gtest/gtest.h>

#include <sys/types.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace xfer_it {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- processes

struct RunResult {
  int exit_code = -1;      // WEXITSTATUS, or -1 if killed by a signal
  int term_signal = 0;     // signal number if the child was killed
  bool timed_out = false;  // the runner killed the child after the timeout
  std::string out;         // captured stdout
  std::string err;         // captured stderr
  double seconds = 0.0;    // wall time
  long peak_rss_kib = 0;   // the child's peak resident set (ru_maxrss)
  std::vector<std::string> argv;
  std::string cwd;

  // Human-readable dump for failure messages.
  std::string describe() const;
};

// Runs argv[0] (looked up in PATH by execvp) with the given args, no shell.
// stdin is /dev/null. The child gets its own process group; on timeout the
// runner SIGKILLs that group (only the child it started) and sets timed_out.
RunResult run(const std::vector<std::string>& argv,
              std::chrono::seconds timeout = std::chrono::seconds(120));

// Same, and calls on_spawn(pid) in the parent right after the child started
// (e.g. to start a thread that signals the child or mutates its input).
// If cwd is not empty the child runs in that directory.
RunResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout,
              const std::function<void(pid_t)>& on_spawn, const std::string& cwd = {});

// While an AsUser is alive, children started by run() drop root and run as
// `uid` (gid = uid, no supplementary groups): permission tests as root.
class AsUser {
 public:
  explicit AsUser(int uid);
  ~AsUser();
  AsUser(const AsUser&) = delete;
  AsUser& operator=(const AsUser&) = delete;

 private:
  int previous_;
};
int child_uid();  // -1: run children as ourselves
inline constexpr int kNobody = 65534;
// lchown of root and everything below it to uid:uid.
void chown_tree(const fs::path& root, int uid);

// Path of the xfer binary from $XFER_BIN ("" if unset).
std::string xfer_bin();

// run({xfer_bin(), args...}).
RunResult run_xfer(const std::vector<std::string>& args,
                   std::chrono::seconds timeout = std::chrono::seconds(120));
RunResult run_xfer(const std::vector<std::string>& args, std::chrono::seconds timeout,
                   const std::function<void(pid_t)>& on_spawn, const std::string& cwd = {});

// Bytes a running process has passed to write-like calls (/proc/PID/io
// wchar); 0 once it is gone.
std::uint64_t process_wchar(pid_t pid);

// Runs xfer and, once `ready(pid)` holds (polled every 5 ms while the run
// lasts), sends `sig` to it through a pidfd (so a reaped pid is never
// confused with another process). `at_signal` runs just before the signal
// (to note the state the signal found). `signalled` is false when the run
// ended first.
struct SignalledRun {
  RunResult result;
  bool signalled = false;
};
SignalledRun run_xfer_signal_when(const std::vector<std::string>& args, int sig,
                                  const std::function<bool(pid_t)>& ready,
                                  const std::function<void()>& at_signal = nullptr,
                                  std::chrono::seconds timeout = std::chrono::seconds(120),
                                  const std::string& cwd = {});

// ---------------------------------------------------------------- fixture

// Creates a fresh directory under $XFER_TEST_TMP (default /var/tmp, i.e. on
// disk) per test, and removes it (after unmounting anything mounted by the
// test) in TearDown. Fails the test clearly if XFER_BIN is missing.
class XferTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // The per-test directory.
  const fs::path& tmp() const { return tmp_; }
  const fs::path& state_dir() const { return state_dir_; }  // $XFER_STATE_DIR of this test

  // Another per-test directory under `base` (e.g. /dev/shm), cleaned up too.
  fs::path make_temp_dir_under(const fs::path& base);

  // Mounts a tmpfs with `options` (e.g. "size=8m" or "ro") on a new directory
  // `name` under tmp(). Returns nullopt if mounting failed: not root (the
  // caller may GTEST_SKIP; tests/skip-allowlist.txt says which may), or,
  // as root, with a test failure already added. Unmounted in TearDown.
  std::optional<fs::path> mount_tmpfs(const std::string& name, const std::string& options);

  // Remounts an already mounted (by mount_tmpfs) dir read-only.
  bool remount_readonly(const fs::path& mountpoint);

 private:
  fs::path tmp_;
  fs::path state_dir_;  // $XFER_STATE_DIR for the runs of this test
  std::vector<fs::path> extra_dirs_;
  std::vector<fs::path> mounts_;
};

// ---------------------------------------------------------------- files

std::string random_bytes(std::mt19937_64& rng, std::size_t n);
// Writes `size` seeded random bytes to p in 8 MiB pieces (gtest assertions).
void write_random_file(const fs::path& p, std::uint64_t seed, std::uint64_t size);
// lstat size, 0 when missing.
std::uint64_t lsize(const fs::path& p);
// Bytes the file system allocated to `p` (st_blocks * 512).
std::uint64_t allocated_bytes(const fs::path& p);
// A sparse file of `size` bytes: random data of `len` bytes at each offset,
// `zeros` bytes of written (allocated) zeros at `zeros_at`, holes elsewhere.
void write_sparse_file(const fs::path& p, std::uint64_t size,
                       const std::vector<std::uint64_t>& offsets, std::size_t len,
                       std::uint64_t zeros_at = 0, std::size_t zeros = 0);
void write_file(const fs::path& p, std::string_view content);
std::string read_file(const fs::path& p);
void set_mtime(const fs::path& p, std::int64_t sec, long nsec, bool no_follow = true);
struct timespec get_mtime(const fs::path& p);  // lstat
mode_t get_mode(const fs::path& p);            // lstat, & 07777
// Exists in the lstat sense (dangling symlinks count).
bool lexists(const fs::path& p);
// Number of entries (recursive, lstat) below `dir`.
std::size_t count_entries(const fs::path& dir);
// All entries (recursive, relative paths, lstat) below `dir`, sorted.
std::vector<std::string> list_relative(const fs::path& dir);

// Compares two regular files (sizes, then bytes in 1 MiB blocks; a block
// inside a hole of a sparse file is known to be zeros and is not read).
::testing::AssertionResult files_equal(const fs::path& a, const fs::path& b);
// True if the first `n` bytes of `big` equal all of `small` (size n).
::testing::AssertionResult is_prefix_of(const fs::path& small, const fs::path& big);

// ---------------------------------------------------------------- trees

struct TreeSpec {
  std::uint64_t seed = 1;
  int dirs = 10;             // number of directories (besides the root)
  int max_depth = 3;         // directories are nested up to this depth
  int files = 100;           // number of regular files
  std::size_t min_size = 0;  // file sizes uniformly in [min_size, max_size]
  std::size_t max_size = 4096;
  int symlinks = 0;          // relative symlinks to files of the tree
  int empty_dirs = 0;        // extra empty leaf directories
  bool random_modes = true;  // a mix of 0644/0600/0444/0755/0700 for files
};

// Deterministic: the same spec produces byte-identical trees with identical
// modes and mtimes (nanosecond mtimes are set on everything, directories
// last, bottom-up). `root` is created (mode 0755) if missing.
void generate_tree(const fs::path& root, const TreeSpec& spec);

// Sets deterministic nanosecond mtimes on every entry below root and root
// itself (directories bottom-up, symlinks with AT_SYMLINK_NOFOLLOW).
void stamp_mtimes(const fs::path& root, std::uint64_t seed);

struct CompareOptions {
  bool compare_root = true;       // compare the roots' type/mode/mtime too
  bool compare_dir_mtime = true;  // directories' mtimes (nanoseconds)
  bool compare_symlink_mtime = false;
  std::size_t max_diffs = 10;  // stop after this many differences
};

// Walks both trees (lstat, never following symlinks) and checks, for each
// entry: same set of names, same type, same size and bytes (files), same
// st_mode & 07777, same mtime to the nanosecond (files, directories),
// same readlink() target (symlinks). Reports the first differences.
::testing::AssertionResult compare_trees(const fs::path& src, const fs::path& dst,
                                         const CompareOptions& opt = {});

// Strict RFC 8259 JSON syntax check of one complete value; on failure *why
// (if given) says what is wrong and where.
bool json_valid(std::string_view text, std::string* why = nullptr);
// json_valid and the value is an object ('{' ... '}').
bool is_json_object(std::string_view line, std::string* why = nullptr);

// Case-insensitive substring search.
bool icontains(std::string_view hay, std::string_view needle);

// Polls `cond` every 20 ms until it holds (true) or `deadline` passes
// (false, after one last look). The deadline is generous on purpose: it
// bounds a hang, it is not a claim about speed.
bool wait_until(const std::function<bool()>& cond,
                std::chrono::milliseconds deadline = std::chrono::seconds(30));

// Raw sockets for the server tests. A TCP connection to "a.b.c.d:port" from
// `source_ip` (any 127.x address; "" = the kernel's choice), -1 on failure.
int tcp_connect(const std::string& address, const std::string& source_ip = "");
// Sends everything it can; stops quietly when the peer has closed.
void send_some(int fd, std::string_view bytes);
// True when the peer closes the connection (EOF or reset) before `deadline`;
// whatever it sent first (an ERROR frame) is read and dropped.
bool closed_by_peer(int fd, std::chrono::steady_clock::time_point deadline);
std::vector<std::string> split_lines(const std::string& s);

}  // namespace xfer_it
