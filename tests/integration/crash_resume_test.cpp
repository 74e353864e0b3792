// kill -9 at random moments, then the same command again: every byte ends up
// right, and what was already written is not sent again (beyond the chunks in
// flight). Bytes written per run come from /proc/<pid>/io (wchar), read just
// before the SIGKILL; runs use --no-zero-copy so every data byte is a write.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "xferd_harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;

std::string S(const fs::path& p) {
  return p.string();
}

std::uint64_t io_counter(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/io");
  std::string key;
  std::uint64_t value = 0;
  while (in >> key >> value) {
    if (key == name + ":") return value;
  }
  return 0;
}

std::uint64_t wchar_of(pid_t pid) {
  return io_counter(pid, "wchar");
}

struct KillOutcome {
  RunResult result;
  std::uint64_t written = 0;  // wchar just before the kill
  bool killed = false;
};

// Runs xfer and SIGKILLs it after `delay` (unless it finished first).
KillOutcome run_and_kill(const std::vector<std::string>& args, std::chrono::milliseconds delay) {
  KillOutcome out;
  std::thread killer;
  int pidfd = -1;
  out.result = run_xfer(args, 120s, [&](pid_t pid) {
    pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    killer = std::thread([&, pid] {
      std::this_thread::sleep_for(delay);
      out.written = wchar_of(pid);
      if (pidfd >= 0 && ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) == 0) {
        out.killed = true;
      }
    });
  });
  if (killer.joinable()) killer.join();
  if (pidfd >= 0) ::close(pidfd);
  out.killed = out.killed && out.result.exit_code != 0;
  return out;
}

// Runs xfer and SIGKILLs it once `ready()` holds (unless it finished first).
KillOutcome kill_when(const std::vector<std::string>& args, const std::function<bool()>& ready) {
  KillOutcome out;
  pid_t running = 0;
  auto r = run_xfer_signal_when(
      args, SIGKILL,
      [&](pid_t pid) {
        running = pid;
        return ready();
      },
      [&] { out.written = wchar_of(running); });
  out.result = r.result;
  out.killed = r.signalled && out.result.exit_code != 0;
  return out;
}

// How far the writes into the longest hidden partial in `dir` reached (its
// size: the local backend preallocates without changing it, so allocation
// says nothing).
std::uint64_t partial_reach(const fs::path& dir) {
  std::uint64_t most = 0;
  for (const auto& h : xfer_hidden_files(dir)) most = std::max(most, lsize(dir / h));
  return most;
}

std::uint64_t json_number(const std::string& out, const std::string& key) {
  auto pos = out.rfind("\"" + key + "\":");
  if (pos == std::string::npos) return 0;
  return std::strtoull(out.c_str() + pos + key.size() + 3, nullptr, 10);
}

// Bytes the job's checkpoint vouches for now (`xfer jobs --json`,
// recorded_bytes, summed over this test's jobs): what a resume will not
// send again.
std::uint64_t recorded_now() {
  auto r = run_xfer({"jobs", "--json"}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  std::uint64_t sum = 0;
  for (const std::string& line : split_lines(r.out)) {
    if (line.find("\"recorded_bytes\":") != std::string::npos)
      sum += json_number(line, "recorded_bytes");
  }
  return sum;
}

// Runs `args` and SIGKILLs it at a random moment (delay drawn from `delay`),
// up to `max_kills` times or until a run finishes first, then once more to
// completion if needed. `after_kill` runs after every kill (checks of what a
// killed run left behind). Returns the kills, the bytes the runs wrote in
// all (wchar before each kill, the summary's bytes for a finished run) and,
// per kill, what that run wrote that the checkpoint did not keep (its
// wchar less the growth of recorded_now()): the bytes the kill cost.
struct KillLoop {
  int kills = 0;
  std::uint64_t written = 0;
  std::vector<std::uint64_t> lost;  // per kill
  std::uint64_t worst() const {
    return lost.empty() ? 0 : *std::max_element(lost.begin(), lost.end());
  }
};
KillLoop kill_until_done(const std::vector<std::string>& args, int max_kills, std::mt19937_64& rng,
                         std::uniform_int_distribution<int> delay,
                         const std::function<void()>& after_kill = nullptr) {
  KillLoop out;
  bool finished = false;
  std::uint64_t recorded = recorded_now();
  for (int i = 0; i < max_kills; ++i) {
    auto k = run_and_kill(args, std::chrono::milliseconds(delay(rng)));
    if (!k.killed) {
      EXPECT_EQ(k.result.exit_code, 0) << k.result.describe();
      out.written += json_number(k.result.out, "bytes");
      finished = true;
      break;  // it finished before the kill
    }
    ++out.kills;
    out.written += k.written;
    const std::uint64_t now = recorded_now();
    const std::uint64_t kept = now > recorded ? now - recorded : 0;
    out.lost.push_back(k.written > kept ? k.written - kept : 0);
    recorded = now;
    if (std::getenv("XFER_TEST_VERBOSE")) {
      std::printf("[run %d] killed after %.2f s, %llu bytes written, %llu kept\n", i,
                  k.result.seconds, static_cast<unsigned long long>(k.written),
                  static_cast<unsigned long long>(kept));
    }
    if (after_kill) after_kill();
  }
  if (!finished) {
    auto last = run_xfer(args);
    EXPECT_EQ(last.exit_code, 0) << last.describe();
    out.written += json_number(last.out, "bytes");
  }
  return out;
}

// Each kill, not only all of them together, within `bound` bytes lost.
#define EXPECT_EACH_KILL_WITHIN(loop, bound)                                               \
  for (std::size_t kill_ = 0; kill_ < (loop).lost.size(); ++kill_) {                       \
    EXPECT_LE((loop).lost[kill_], (bound)) << "kill " << kill_ << " cost that many bytes"; \
  }

class CrashResume : public XferTest {};

TEST_F(CrashResume, LargeFileKilled20TimesResumesWithoutResending) {
  // Chunks of 16 MiB, resumed within: a kill costs the piece (1 MiB) in
  // flight on each stream, not the chunk.
  constexpr std::uint64_t kSize = 512ull << 20, kChunk = 16ull << 20, kPiece = 1ull << 20;
  constexpr int kStreams = 4, kKills = 20;
  fs::path src = tmp() / "big.bin";
  {
    std::mt19937_64 rng(7);
    write_file(src, random_bytes(rng, kSize));
  }
  fs::path dst = tmp() / "big.copy";
  const std::vector<std::string> args = {"cp",
                                         "--json",
                                         "--no-zero-copy",
                                         "--bwlimit",
                                         "40M",
                                         "--chunk-size",
                                         "16M",
                                         "--chunk-parallelism",
                                         std::to_string(kStreams),
                                         S(src),
                                         S(dst)};
  std::mt19937_64 rng(2026);
  std::uniform_int_distribution<int> delay_ms(120, 350);
  auto loop = kill_until_done(args, kKills, rng, delay_ms, [&] {
    if (lexists(dst)) ASSERT_TRUE(files_equal(src, dst)) << "partial file under the final name";
  });
  const int kills = loop.kills;
  const std::uint64_t written = loop.written;
  ASSERT_TRUE(files_equal(src, dst));
  EXPECT_EQ(list_relative(tmp()), (std::vector<std::string>{"big.bin", "big.copy"}))
      << "the partial must be published, not left beside the file";
  const std::uint64_t resent = written > kSize ? written - kSize : 0;
  std::printf(
      "[info] %d kills; %.1f MiB written in all for a %.0f MiB file: %.1f MiB re-sent "
      "(%.2f MiB per kill per stream; chunks of %llu MiB)\n",
      kills, written / 1048576.0, kSize / 1048576.0, resent / 1048576.0,
      kills ? resent / 1048576.0 / kills / kStreams : 0.0,
      static_cast<unsigned long long>(kChunk >> 20));
  // At most the piece in flight on each stream, plus what completed during
  // the last journal flush (20 ms at 40 MiB/s), per kill.
  std::printf("[info] the costliest kill: %.2f MiB\n", loop.worst() / 1048576.0);
  EXPECT_EACH_KILL_WITHIN(loop, kStreams * kPiece + kPiece);
  EXPECT_LE(resent, static_cast<std::uint64_t>(kills) * (kStreams * kPiece + kPiece) + kPiece);
  EXPECT_GE(kills, 10) << "the runs finished too fast to be killed mid-way";
}

TEST_F(CrashResume, TreeKilled20TimesEndsIdentical) {
  TreeSpec spec;
  spec.seed = 11;
  spec.dirs = 40;
  spec.files = 3000;
  spec.min_size = 16 << 10;
  spec.max_size = 128 << 10;
  spec.symlinks = 20;
  fs::path src = tmp() / "tree";
  generate_tree(src, spec);
  std::uint64_t total = 0;
  for (auto& e : fs::recursive_directory_iterator(src)) {
    if (e.is_regular_file() && !e.is_symlink()) total += e.file_size();
  }
  fs::path dst = tmp() / "copy";
  constexpr int kWorkers = 8;
  const std::vector<std::string> args = {"cp",        "-r",  "--json",    "--no-zero-copy",
                                         "--bwlimit", "20M", "--workers", std::to_string(kWorkers),
                                         S(src),      S(dst)};
  std::mt19937_64 rng(99);
  std::uniform_int_distribution<int> delay_ms(100, 300);
  auto loop = kill_until_done(args, 20, rng, delay_ms);
  const int kills = loop.kills;
  const std::uint64_t written = loop.written;
  EXPECT_TRUE(compare_trees(src, dst));
  const std::uint64_t resent = written > total ? written - total : 0;
  std::printf("[info] %d kills; %.1f MiB written for %.1f MiB of files: %.1f MiB re-sent\n", kills,
              written / 1048576.0, total / 1048576.0, resent / 1048576.0);
  // Per kill at most the files in flight (one per worker, 128 KiB at most)
  // plus those finished during the last journal fsync.
  std::printf("[info] the costliest kill: %.2f MiB\n", loop.worst() / 1048576.0);
  EXPECT_EACH_KILL_WITHIN(loop, 2 * kWorkers * (128u << 10) + (1u << 20));
  EXPECT_LE(resent, static_cast<std::uint64_t>(kills) * 2 * kWorkers * (128u << 10) + (1u << 20));
  EXPECT_GE(kills, 10);
}

// ---- client -> xferd (issue 4: the same guarantees over the xfer protocol) ----

class CrashResumeXferd : public XferTest {
 protected:
  void SetUp() override {
    XferTest::SetUp();
    if (xferd_bin().empty()) GTEST_SKIP() << "XFERD_BIN not set";
    server_ = std::make_unique<XferdProcess>(tmp() / "server");
    ASSERT_TRUE(server_->start());
    token_ = server_->token("/", true);
  }
  void TearDown() override {
    server_.reset();
    XferTest::TearDown();
  }
  std::vector<std::string> remote(std::vector<std::string> args) {
    args.push_back("--token");
    args.push_back(token_);
    return args;
  }
  std::unique_ptr<XferdProcess> server_;
  std::string token_;
};

TEST_F(CrashResumeXferd, ClientKilled20TimesLargeUploadResumesWithoutResending) {
  constexpr std::uint64_t kSize = 256ull << 20, kPiece = 1ull << 20;
  constexpr int kStreams = 4, kKills = 20;
  fs::path src = tmp() / "big.bin";
  {
    std::mt19937_64 rng(17);
    write_file(src, random_bytes(rng, kSize));
  }
  const auto args = remote({"cp", "--json", "--no-zero-copy", "--bwlimit", "40M", "--chunk-size",
                            "16M", "--chunk-parallelism", std::to_string(kStreams), "--streams",
                            std::to_string(kStreams), S(src), server_->url("/big.copy")});
  const fs::path dst = server_->root() / "big.copy";
  std::mt19937_64 rng(4242);
  std::uniform_int_distribution<int> delay_ms(150, 400);
  auto loop = kill_until_done(args, kKills, rng, delay_ms, [&] {
    if (lexists(dst)) ASSERT_TRUE(files_equal(src, dst)) << "partial file under the final name";
  });
  const int kills = loop.kills;
  const std::uint64_t written = loop.written;
  ASSERT_TRUE(files_equal(src, dst));
  // The server dropped each killed client's session; the resumable partial
  // was published by the last run: nothing hidden is left.
  EXPECT_TRUE(wait_until([&] { return xfer_hidden_files(server_->root()).empty(); }))
      << ::testing::PrintToString(xfer_hidden_files(server_->root()));
  const std::uint64_t resent = written > kSize ? written - kSize : 0;
  std::printf(
      "[info] %d client kills; %.1f MiB sent for a %.0f MiB file: %.1f MiB re-sent "
      "(%.2f MiB per kill per stream; chunks of 16 MiB)\n",
      kills, written / 1048576.0, kSize / 1048576.0, resent / 1048576.0,
      kills ? resent / 1048576.0 / kills / kStreams : 0.0);
  // The piece in flight per stream and the last journal flush, per kill.
  std::printf("[info] the costliest kill: %.2f MiB\n", loop.worst() / 1048576.0);
  EXPECT_EACH_KILL_WITHIN(loop, kStreams * kPiece + kPiece);
  EXPECT_LE(resent, static_cast<std::uint64_t>(kills) * (kStreams * kPiece + kPiece) + kPiece);
  EXPECT_GE(kills, 10) << "the runs finished too fast to be killed mid-way";
}

// The same kills of a download: the chunks being read from the server are
// resumed at the last piece written here.
TEST_F(CrashResumeXferd, ClientKilled20TimesLargeDownloadResumesWithoutResending) {
  constexpr std::uint64_t kSize = 256ull << 20, kPiece = 1ull << 20;
  constexpr int kStreams = 4, kKills = 20;
  const fs::path src = server_->root() / "big.bin";
  {
    std::mt19937_64 rng(29);
    write_file(src, random_bytes(rng, kSize));
  }
  const fs::path dst = tmp() / "big.copy";
  const auto args = remote({"cp", "--json", "--bwlimit", "40M", "--chunk-size", "16M",
                            "--chunk-parallelism", std::to_string(kStreams), "--streams",
                            std::to_string(kStreams), server_->url("/big.bin"), S(dst)});
  std::mt19937_64 rng(777);
  std::uniform_int_distribution<int> delay_ms(150, 400);
  auto loop = kill_until_done(args, kKills, rng, delay_ms, [&] {
    if (lexists(dst)) ASSERT_TRUE(files_equal(src, dst)) << "partial file under the final name";
  });
  ASSERT_TRUE(files_equal(src, dst));
  EXPECT_EQ(xfer_hidden_files(tmp()), std::vector<std::string>{});
  const std::uint64_t resent = loop.written > kSize ? loop.written - kSize : 0;
  std::printf(
      "[info] %d client kills; %.1f MiB written for a %.0f MiB download: %.1f MiB re-sent "
      "(%.2f MiB per kill per stream)\n",
      loop.kills, loop.written / 1048576.0, kSize / 1048576.0, resent / 1048576.0,
      loop.kills ? resent / 1048576.0 / loop.kills / kStreams : 0.0);
  std::printf("[info] the costliest kill: %.2f MiB\n", loop.worst() / 1048576.0);
  EXPECT_EACH_KILL_WITHIN(loop, kStreams * kPiece + kPiece);
  EXPECT_LE(resent, static_cast<std::uint64_t>(loop.kills) * (kStreams * kPiece + kPiece) + kPiece);
  EXPECT_GE(loop.kills, 10) << "the runs finished too fast to be killed mid-way";
}

TEST_F(CrashResumeXferd, ClientKilled20TimesTreeUploadEndsIdentical) {
  TreeSpec spec;
  spec.seed = 12;
  spec.dirs = 30;
  spec.files = 2000;
  spec.min_size = 16 << 10;
  spec.max_size = 128 << 10;
  spec.symlinks = 10;
  fs::path src = tmp() / "tree";
  generate_tree(src, spec);
  std::uint64_t total = 0;
  for (auto& e : fs::recursive_directory_iterator(src)) {
    if (e.is_regular_file() && !e.is_symlink()) total += e.file_size();
  }
  constexpr int kWorkers = 8;
  const auto args = remote({"cp", "-r", "--json", "--no-zero-copy", "--bwlimit", "20M", "--workers",
                            std::to_string(kWorkers), S(src), server_->url("/copy")});
  std::mt19937_64 rng(77);
  std::uniform_int_distribution<int> delay_ms(150, 350);
  auto loop = kill_until_done(args, 20, rng, delay_ms);
  const int kills = loop.kills;
  const std::uint64_t written = loop.written;
  EXPECT_TRUE(compare_trees(src, server_->root() / "copy"));
  EXPECT_TRUE(wait_until([&] { return xfer_hidden_files(server_->root()).empty(); }))
      << ::testing::PrintToString(xfer_hidden_files(server_->root()));
  const std::uint64_t resent = written > total ? written - total : 0;
  std::printf("[info] %d client kills; %.1f MiB sent for %.1f MiB of files: %.1f MiB re-sent\n",
              kills, written / 1048576.0, total / 1048576.0, resent / 1048576.0);
  // Per kill at most the files in flight (one per worker, 128 KiB at most),
  // those finished during the last journal fsync, and frame overhead.
  std::printf("[info] the costliest kill: %.2f MiB\n", loop.worst() / 1048576.0);
  EXPECT_EACH_KILL_WITHIN(loop, 2 * kWorkers * (128u << 10) + (2u << 20));
  EXPECT_LE(resent, static_cast<std::uint64_t>(kills) * 2 * kWorkers * (128u << 10) + (2u << 20));
  EXPECT_GE(kills, 10);
}

// The server is SIGKILLed at random moments while a client uploads; the
// client reports the lost server and gives up after its retries; the server
// is restarted and the same command resumes. Bytes the servers received in
// all, minus the file, is what was sent twice.
TEST_F(CrashResumeXferd, ServerKilled20TimesLargeUploadResumes) {
  constexpr std::uint64_t kSize = 256ull << 20, kChunk = 2ull << 20;
  constexpr int kStreams = 4, kKills = 20;
  fs::path src = tmp() / "big.bin";
  {
    std::mt19937_64 rng(23);
    write_file(src, random_bytes(rng, kSize));
  }
  const auto args = remote({"cp", "--json", "--no-zero-copy", "--bwlimit", "40M", "--chunk-size",
                            "2M", "--chunk-parallelism", std::to_string(kStreams), "--streams",
                            std::to_string(kStreams), S(src), server_->url("/big.copy")});
  const fs::path dst = server_->root() / "big.copy";
  std::mt19937_64 rng(5151);
  std::uniform_int_distribution<int> delay_ms(150, 400);
  std::uint64_t received = 0;
  int kills = 0;
  bool finished = false;
  for (int i = 0; i < kKills && !finished; ++i) {
    std::thread killer;
    std::uint64_t got = 0;
    std::atomic<bool> killed{false};
    const pid_t server_pid = server_->pid();
    auto r = run_xfer(args, 120s, [&](pid_t) {
      killer = std::thread([&, server_pid] {
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
        got = io_counter(server_pid, "rchar");
        server_->kill9();
        killed = true;
      });
    });
    if (killer.joinable()) killer.join();
    if (r.exit_code == 0) {
      // Finished before the kill landed.
      received += got;
      finished = true;
      ASSERT_TRUE(server_->restart());
      break;
    }
    ASSERT_TRUE(killed.load());
    ++kills;
    received += got;
    // (A kill that lands before the run's first connection reads
    // "nothing listens on H:P (is xferd running there ...)".)
    EXPECT_TRUE(icontains(r.err, "server") || icontains(r.err, "connect") ||
                icontains(r.err, "nothing listens"))
        << "the client must say what went wrong: " << r.describe();
    EXPECT_FALSE(r.timed_out) << "the client must give up by itself";
    if (lexists(dst)) ASSERT_TRUE(files_equal(src, dst)) << "partial file under the final name";
    ASSERT_TRUE(server_->restart());
  }
  if (!finished) {
    const std::uint64_t before = io_counter(server_->pid(), "rchar");
    auto last = run_xfer(args);
    ASSERT_EQ(last.exit_code, 0) << last.describe();
    received += io_counter(server_->pid(), "rchar") - before;
  }
  ASSERT_TRUE(files_equal(src, dst));
  EXPECT_EQ(xfer_hidden_files(server_->root()), std::vector<std::string>{});
  const std::uint64_t resent = received > kSize ? received - kSize : 0;
  std::printf(
      "[info] %d server kills; servers received %.1f MiB for a %.0f MiB file: %.1f MiB "
      "twice (%.2f chunks per kill per stream)\n",
      kills, received / 1048576.0, kSize / 1048576.0, resent / 1048576.0,
      kills ? resent / double(kChunk) / kills / kStreams : 0.0);
  EXPECT_LE(resent, static_cast<std::uint64_t>(kills) * kStreams * kChunk + (2u << 20));
  EXPECT_GE(kills, 10);
}
}  // namespace
}  // namespace xfer_it

namespace xfer_it {
namespace {

TEST_F(CrashResume, UnwritableStateFolderOnlyCostsResumability) {
  fs::path src = tmp() / "f.bin";
  std::mt19937_64 rng(5);
  write_file(src, random_bytes(rng, 3 << 20));
  const char* saved = std::getenv("XFER_STATE_DIR");
  std::string keep = saved ? saved : "";
  ::setenv("XFER_STATE_DIR", "/proc/xfer-cannot-write-here", 1);
  auto r = run_xfer({"cp", S(src), S(tmp() / "g.bin")});
  ::setenv("XFER_STATE_DIR", keep.c_str(), 1);
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("checkpoints disabled"), std::string::npos) << r.describe();
  EXPECT_TRUE(files_equal(src, tmp() / "g.bin"));
}

// `xfer resume` plans every file as the first run did: the planning options
// (here a small-file threshold under the default, so a 6 MiB file is cut in
// 64 chunks of 96K) come back from job.json, and the chunks the resumed run
// sends plus those it found done add up to the same 64.
TEST_F(CrashResume, ResumedJobPlansFilesAsTheFirstRun) {
  fs::path src = tmp() / "mid.bin";
  std::mt19937_64 rng(8);
  write_file(src, random_bytes(rng, 6u << 20));
  fs::path dst = tmp() / "mid.copy";
  // Killed once 2 MiB are at the destination: a second after the first
  // chunks were done, so the journal holds some (bytes_resumed > 0).
  auto k =
      kill_when({"cp", "--json", "--bwlimit", "2M", "--small-file-threshold", "1M", "--chunk-size",
                 "96K", "--chunk-parallelism", "2", "--job", "plans", S(src), S(dst)},
                [&] { return partial_reach(tmp()) >= (2u << 20); });
  ASSERT_TRUE(k.killed) << k.result.describe();
  auto resumed = run_xfer({"resume", "--json", "plans"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  EXPECT_TRUE(files_equal(src, dst));
  const std::uint64_t resumed_bytes = json_number(resumed.out, "bytes_resumed");
  EXPECT_GT(resumed_bytes, 0u) << resumed.describe();
  EXPECT_EQ(resumed_bytes % (96u << 10), 0u) << "whole chunks of the first run's plan";
  EXPECT_EQ(json_number(resumed.out, "chunks"), 64u) << resumed.describe();
}

// A finished job run again with -I copies anew; killed mid-way, that run leaves a
// partial beside the (still whole) destination. The next run finds the
// destination whole and skips the file: it must also remove the partial,
// not leave it hidden forever (seen as a flaky leftover in the xferd kill
// loop, when a kill landed between "done" and the process's exit).
TEST_F(CrashResume, SkippedFileLosesTheStalePartialOfAKilledRecopy) {
  fs::path src = tmp() / "big.bin";
  std::mt19937_64 rng(9);
  write_file(src, random_bytes(rng, 64u << 20));
  fs::path out = tmp() / "out";
  fs::create_directories(out);
  const std::vector<std::string> args = {"cp",    "--bwlimit", "32M",  "--chunk-size",     "1M",
                                         "--job", "again",     S(src), S(out / "copy.bin")};
  auto first = run_xfer(args);
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  // A re-run skips the unchanged file; -I makes it copy anew.
  std::vector<std::string> forced = args;
  forced.insert(forced.begin() + 1, "-I");
  auto k = kill_when(forced, [&] { return partial_reach(out) >= (1u << 20); });
  ASSERT_TRUE(k.killed) << k.result.describe();
  ASSERT_EQ(xfer_hidden_files(out).size(), 1u) << "the re-copy left no partial to clean";
  auto last = run_xfer(args);
  ASSERT_EQ(last.exit_code, 0) << last.describe();
  EXPECT_TRUE(files_equal(src, out / "copy.bin"));
  EXPECT_EQ(xfer_hidden_files(out), std::vector<std::string>{});
}

TEST_F(CrashResume, JobsListsKilledJobAndResumeFinishesIt) {
  fs::path src = tmp() / "big.bin";
  std::mt19937_64 rng(6);
  write_file(src, random_bytes(rng, 64u << 20));
  fs::path dst = tmp() / "copy.bin";
  auto k = kill_when(
      {"cp", "--bwlimit", "16M", "--chunk-size", "1M", "--job", "nightly", S(src), S(dst)},
      [&] { return partial_reach(tmp()) >= (8u << 20); });
  ASSERT_TRUE(k.killed) << k.result.describe();
  auto jobs = run_xfer({"jobs"});
  EXPECT_EQ(jobs.exit_code, 0) << jobs.describe();
  EXPECT_NE(jobs.out.find("nightly"), std::string::npos) << jobs.describe();
  EXPECT_NE(jobs.out.find("killed"), std::string::npos) << jobs.describe();
  // The same job as JSON, with the fields docs/cli.md lists.
  {
    auto j = run_xfer({"jobs", "--json"});
    ASSERT_EQ(j.exit_code, 0) << j.describe();
    const auto lines = split_lines(j.out);
    ASSERT_EQ(lines.size(), 1u) << j.out;
    const nlohmann::json job = nlohmann::json::parse(lines[0]);
    EXPECT_EQ(job["schema"], 1) << lines[0];
    EXPECT_EQ(job["id"], "nightly") << lines[0];
    EXPECT_EQ(job["status"], "killed") << lines[0];
    ASSERT_TRUE(job["sources"].is_array()) << lines[0];
    EXPECT_EQ(job["sources"][0], S(src)) << lines[0];
    EXPECT_EQ(job["destination"], S(dst)) << lines[0];
    EXPECT_EQ(job["files_done"], 0) << lines[0];
    EXPECT_EQ(job["files_total"], 1) << lines[0];
    EXPECT_EQ(job["bytes_total"], 64u << 20) << lines[0];
    EXPECT_EQ(job["partial_files"], 1) << lines[0];
    const std::uint64_t partial = job["partial_bytes"].get<std::uint64_t>();
    const std::uint64_t recorded = job["recorded_bytes"].get<std::uint64_t>();
    EXPECT_GE(partial, 8u << 20) << lines[0];
    EXPECT_LE(partial, 64u << 20) << lines[0];
    // The checkpoint vouches for what it recorded of what is there.
    EXPECT_GT(recorded, 0u) << lines[0];
    EXPECT_LE(recorded, partial) << lines[0];
    EXPECT_GT(job["state_bytes"].get<std::uint64_t>(), 0u) << lines[0];
    EXPECT_TRUE(job["updated_s"].is_number()) << lines[0];
    EXPECT_TRUE(job.contains("pid")) << lines[0];
    EXPECT_LE(job["bytes_done"].get<std::uint64_t>(), 64u << 20) << lines[0];
  }
  auto resumed = run_xfer({"resume", "--json", "nightly"});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.describe();
  EXPECT_TRUE(files_equal(src, dst));
  EXPECT_GT(json_number(resumed.out, "bytes_resumed"), 0u) << resumed.describe();
  auto after = run_xfer({"jobs"});
  EXPECT_EQ(after.out.find("nightly"), std::string::npos) << "a finished job is not listed\n"
                                                          << after.describe();
  auto all = run_xfer({"jobs", "--all"});
  EXPECT_NE(all.out.find("nightly"), std::string::npos) << all.describe();
  auto clean = run_xfer({"jobs", "--clean"});
  EXPECT_EQ(clean.exit_code, 0);
  EXPECT_EQ(run_xfer({"jobs", "--all"}).out.find("nightly"), std::string::npos);
  auto missing = run_xfer({"resume", "nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no such job"), std::string::npos) << missing.describe();
}

// `xfer jobs` shows what each job holds on disk; `xfer jobs rm` removes a
// job with its partial file and state; --failed spares finished jobs and
// --all takes them too. The record keeps resolved paths: `xfer resume`
// from another folder finishes the copy where the first run was going.
TEST_F(CrashResume, JobsRmRemovesAJobWithWhatItHoldsAndResumeWorksFromElsewhere) {
  fs::create_directories(tmp() / "work");
  write_random_file(tmp() / "work" / "big.bin", 31, 64u << 20);
  const std::vector<std::string> args = {"cp",    "--bwlimit", "16M",     "--chunk-size", "4M",
                                         "--job", "first",     "big.bin", "out.bin"};
  // Killed once 8 MiB are written: chunks begun, a partial on disk.
  auto killed_run = [&](const std::vector<std::string>& a) {
    auto run = run_xfer_signal_when(
        a, SIGKILL, [](pid_t pid) { return process_wchar(pid) >= (8u << 20); }, nullptr, 60s,
        S(tmp() / "work"));
    EXPECT_EQ(run.result.term_signal, SIGKILL) << run.result.describe();
  };
  killed_run(args);
  ASSERT_EQ(xfer_hidden_files(tmp() / "work").size(), 1u);
  auto jobs = run_xfer({"jobs"});
  ASSERT_EQ(jobs.exit_code, 0) << jobs.describe();
  EXPECT_NE(jobs.out.find("ON DISK"), std::string::npos) << jobs.out;
  EXPECT_NE(jobs.out.find(S(tmp() / "work" / "big.bin")), std::string::npos)
      << "the record keeps resolved paths\n"
      << jobs.out;
  // Resumed from another folder: the relative names the user typed would
  // point elsewhere; the record's absolute ones do not.
  auto resumed = run_xfer({"resume", "--json", "first"}, 60s, nullptr, S(tmp()));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  // 8 MiB were written when the kill came; the checkpoint keeps all but
  // the piece (1 MiB) each of the 4 chunks in flight was writing.
  EXPECT_GE(json_number(resumed.out, "bytes_resumed"), 4u << 20)
      << "the checkpoint's files are found from another folder too\n"
      << resumed.describe();
  EXPECT_TRUE(files_equal(tmp() / "work" / "big.bin", tmp() / "work" / "out.bin"));
  EXPECT_FALSE(fs::exists(tmp() / "out.bin"));

  // A killed job: rm takes its partial and its state.
  std::vector<std::string> second = args;
  second[6] = "second";
  second[8] = "out2.bin";
  killed_run(second);
  ASSERT_EQ(xfer_hidden_files(tmp() / "work").size(), 1u);
  auto rm = run_xfer({"jobs", "rm", "second"});
  ASSERT_EQ(rm.exit_code, 0) << rm.describe();
  EXPECT_TRUE(icontains(rm.out, "removed job second (killed): 1 partial file (")) << rm.out;
  EXPECT_EQ(xfer_hidden_files(tmp() / "work"), std::vector<std::string>{});
  EXPECT_FALSE(fs::exists(state_dir() / "jobs" / "second"));
  auto again = run_xfer({"jobs", "rm", "second"});
  EXPECT_EQ(again.exit_code, 1) << again.describe();
  EXPECT_TRUE(icontains(again.err, "no such job")) << again.describe();
  auto neither = run_xfer({"jobs", "rm"});
  EXPECT_EQ(neither.exit_code, 2) << neither.describe();

  // --failed leaves the finished job "first"; --all takes it.
  std::vector<std::string> third = args;
  third[6] = "third";
  third[8] = "out3.bin";
  killed_run(third);
  auto failed = run_xfer({"jobs", "rm", "--failed"});
  ASSERT_EQ(failed.exit_code, 0) << failed.describe();
  EXPECT_TRUE(icontains(failed.out, "removed job third (killed)")) << failed.out;
  EXPECT_FALSE(icontains(failed.out, "first")) << failed.out;
  EXPECT_TRUE(fs::exists(state_dir() / "jobs" / "first"));
  EXPECT_EQ(xfer_hidden_files(tmp() / "work"), std::vector<std::string>{});
  auto all = run_xfer({"jobs", "rm", "--all"});
  ASSERT_EQ(all.exit_code, 0) << all.describe();
  EXPECT_TRUE(icontains(all.out, "removed job first (done)")) << all.out;
  EXPECT_FALSE(fs::exists(state_dir() / "jobs" / "first"));
  EXPECT_TRUE(files_equal(tmp() / "work" / "big.bin", tmp() / "work" / "out.bin"))
      << "removing a job never touches what it copied";
}

// Over xfer://: the partial a killed upload left on the server goes too.
TEST_F(CrashResumeXferd, JobsRmRemovesTheServersPartial) {
  write_random_file(tmp() / "big.bin", 37, 64u << 20);
  // Killed once the server holds 8 MiB of the partial.
  auto k = run_xfer_signal_when(remote({"cp", "--bwlimit", "16M", "--chunk-size", "4M", "--job",
                                        "up", S(tmp() / "big.bin"), server_->url("/big.bin")}),
                                SIGKILL, [&](pid_t) {
                                  const auto hidden = xfer_hidden_files(server_->root());
                                  struct stat st {};
                                  return hidden.size() == 1 &&
                                         ::stat((server_->root() / hidden[0]).c_str(), &st) == 0 &&
                                         st.st_blocks * 512 >= (8 << 20);
                                });
  ASSERT_TRUE(k.signalled) << k.result.describe();
  ASSERT_EQ(xfer_hidden_files(server_->root()).size(), 1u);
  auto rm = run_xfer(remote({"jobs", "rm", "up"}));
  ASSERT_EQ(rm.exit_code, 0) << rm.describe();
  EXPECT_TRUE(icontains(rm.out, "removed job up (killed): 1 partial file at the destination"))
      << rm.out;
  EXPECT_EQ(xfer_hidden_files(server_->root()), std::vector<std::string>{});
  EXPECT_FALSE(fs::exists(server_->root() / "big.bin"));
}

}  // namespace
}  // namespace xfer_it
