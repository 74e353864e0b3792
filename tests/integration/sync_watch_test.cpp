// xfer sync --watch between local folders (docs/sync.md, "Watch"): the
// destination follows creates, writes, bursts, renames of files and
// folders, deletions and a 10,000-file untar; an event queue that
// overflows (a tiny kernel limit) is recovered by a rescan; a watcher
// killed and started again while changes go on loses nothing; a folder on
// a real xferd is followed through the server's own watch, across a
// restart of the server. Each run ends with SIGINT, which ends a watch
// cleanly (exit 0).

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "harness.hpp"
#include "xferd_harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;

class SyncWatch : public XferTest {};

std::string S(const fs::path& p) {
  return p.string();
}

CompareOptions files_only() {
  CompareOptions o;
  o.compare_root = false;
  o.compare_dir_mtime = false;  // a folder's mtime is fixed by the next full pass
  return o;
}

nlohmann::json summary_of(const RunResult& r) {
  for (const auto& line : split_lines(r.out)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("event", "") == "summary") return j;
  }
  return {};
}

// Runs `xfer sync --watch ARGS` while `scenario` runs on a thread of its
// own; SIGINT once the scenario returned. The scenario may not start
// changing things before the first comparison ended: it waits for the
// destination to match first (the watcher is up by then).
// `pid`, when given, gets the process's PID as soon as it runs.
RunResult watch_while(const std::vector<std::string>& args, const std::function<void()>& scenario,
                      std::chrono::seconds timeout = 300s, std::atomic<pid_t>* pid = nullptr) {
  std::atomic<bool> done{false};
  std::thread t([&] {
    scenario();
    done.store(true);
  });
  auto r = run_xfer_signal_when(
      args, SIGINT,
      [&](pid_t p) {
        if (pid != nullptr) pid->store(p);
        return done.load();
      },
      nullptr, timeout);
  done.store(true);
  t.join();
  return r.result;
}

void append(const fs::path& p, std::string_view text) {
  std::ofstream f(p, std::ios::app | std::ios::binary);
  f << text;
}

// The scenario of the two tests below, with `with` as --watch-with.
void follows_everything(const fs::path& tmp, const std::string& with) {
  const fs::path src = tmp / "src";
  const fs::path dst = tmp / "dst";
  TreeSpec spec;
  spec.files = 60;
  spec.dirs = 6;
  spec.symlinks = 3;
  generate_tree(src, spec);
  fs::create_directories(src / "a");
  fs::create_directories(src / "b");
  fs::create_directories(src / "folder/inner");
  fs::create_directories(src / "gone/deeper");
  write_file(src / "a/one.txt", "one\n");
  write_file(src / "folder/inner/x.txt", "x\n");
  write_file(src / "gone/deeper/p.txt", "p\n");
  write_file(src / "removed.txt", "r\n");
  // 10,000 files to untar into the watched tree.
  const fs::path pack = tmp / "pack";
  TreeSpec many;
  many.seed = 7;
  many.files = 10'000;
  many.dirs = 100;
  many.max_size = 512;
  generate_tree(pack, many);
  const fs::path tarball = tmp / "many.tar";
  ASSERT_EQ(run({"tar", "cf", tarball.string(), "-C", pack.string(), "."}).exit_code, 0);

  bool first = false, step1 = false, step2 = false;
  std::string why1, why2;
  auto r = watch_while(
      {"sync", "--watch", "--watch-with", with, "--watch-debounce", "100ms", "--delete", "--json",
       S(src) + "/", S(dst) + "/"},
      [&] {
        first = wait_until([&] { return bool(compare_trees(src, dst, files_only())); }, 60s);
        if (!first) {
          why1 = compare_trees(src, dst, files_only()).message();
          return;
        }
        write_file(src / "new.txt", "a new file\n");
        for (int i = 0; i < 300; ++i) append(src / "burst.log", std::to_string(i) + "\n");
        fs::rename(src / "a/one.txt", src / "b/one-moved.txt");  // across folders
        fs::rename(src / "folder", src / "folder-renamed");      // a folder with its contents
        fs::remove_all(src / "gone");
        fs::remove(src / "removed.txt");
        fs::create_directories(src / "deep/er/est");
        write_file(src / "deep/er/est/leaf.txt", "leaf\n");
        fs::create_symlink("../new.txt", src / "deep/link");
        ::chmod((src / "new.txt").c_str(), 0600);
        step1 = wait_until([&] { return bool(compare_trees(src, dst, files_only())); }, 60s);
        if (!step1) why1 = compare_trees(src, dst, files_only()).message();
        fs::create_directories(src / "untarred");
        run({"tar", "xf", tarball.string(), "-C", (src / "untarred").string()});
        step2 = wait_until([&] { return bool(compare_trees(src, dst, files_only())); }, 120s);
        if (!step2) why2 = compare_trees(src, dst, files_only()).message();
      });
  ASSERT_TRUE(first) << "the first comparison never made the trees equal: " << why1 << "\n"
                     << r.err;
  EXPECT_TRUE(step1) << why1 << "\n" << r.err;
  EXPECT_TRUE(step2) << why2 << "\n" << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.describe();
  const auto s = summary_of(r);
  EXPECT_GE(s.value("files_renamed", 0), 2) << "renames were copies\n" << r.err;
  EXPECT_GT(s["propagation"].value("changes", 0), 10000) << s.dump();
  EXPECT_GE(s.value("files_deleted", 0), 4) << s.dump();
  // Progress events say how long changes take as they land.
  bool live_latency = false;
  for (const auto& line : split_lines(r.out)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("event", "") == "progress" && j.contains("propagation")) {
      live_latency =
          j["propagation"].value("changes", 0) > 0 && j["propagation"].value("last_ms", -1.0) >= 0;
    }
  }
  EXPECT_TRUE(live_latency) << "no progress event carried the propagation latency";
  // The burst of 300 writes was one copy (or a few), not 300.
  int burst_copies = 0;
  for (const auto& line : split_lines(r.out)) {
    if (line.find(R"("path":"burst.log")") != std::string::npos) ++burst_copies;
  }
  EXPECT_GE(burst_copies, 1);
  EXPECT_LE(burst_copies, 5) << "a burst of writes should be coalesced";
}

// fanotify: one mark on the file system, events matched to SRC by path.
TEST_F(SyncWatch, FollowsCreatesWritesRenamesDeletesAndAnUntarWithFanotify) {
  if (::geteuid() != 0) GTEST_SKIP() << "fanotify's file-system marks need CAP_SYS_ADMIN";
  follows_everything(tmp(), "fanotify");
}

// inotify: one watch per folder, added as folders appear.
TEST_F(SyncWatch, FollowsCreatesWritesRenamesDeletesAndAnUntarWithInotify) {
  follows_everything(tmp(), "inotify");
}

// The kernel's queue for the watcher holds 16 events here: 500 new files
// overflow it, and the rescan that follows still brings every file; with
// inotify and with fanotify (each has its own queue limit).
void overflow_is_rescanned(const fs::path& tmp, const std::string& with, const fs::path& knob) {
  const fs::path src = tmp / (with + "-src");
  const fs::path dst = tmp / (with + "-dst");
  fs::create_directories(src);
  write_file(src / "start.txt", "start\n");
  const std::string before = read_file(knob);
  write_file(knob, "16\n");
  struct Restore {
    fs::path knob;
    std::string value;
    bool done = false;
    void now() {
      if (!done) write_file(knob, value);
      done = true;
    }
    ~Restore() { now(); }
  } restore{knob, before};
  bool first = false, last = false;
  std::string why;
  std::atomic<pid_t> pid{0};
  auto r = watch_while(
      {"sync", "--watch", "--watch-with", with, "--watch-debounce", "100ms", S(src) + "/",
       S(dst) + "/"},
      [&] {
        // The watcher made its queue when it started: the
        // limit goes back as soon as the first pass is done.
        first = wait_until([&] { return fs::exists(dst / "start.txt"); }, 60s);
        restore.now();
        if (!first) return;
        // Stopped while the files come, the watcher reads
        // none of their events: the queue overflows
        // whatever the machine's pace.
        const pid_t p = pid.load();
        EXPECT_GT(p, 0);
        if (p > 0) ::kill(p, SIGSTOP);
        for (int i = 0; i < 500; ++i) {
          write_file(src / ("f" + std::to_string(i) + ".txt"), std::to_string(i));
        }
        if (p > 0) ::kill(p, SIGCONT);
        last = wait_until([&] { return bool(compare_trees(src, dst, files_only())); }, 60s);
        if (!last) why = compare_trees(src, dst, files_only()).message();
      },
      300s, &pid);
  restore.now();
  ASSERT_TRUE(first) << r.err;
  EXPECT_TRUE(last) << why << "\n" << r.err;
  EXPECT_NE(r.err.find("overflowed; rescanning"), std::string::npos) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

TEST_F(SyncWatch, AnOverflowedQueueIsRecoveredByARescan) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to lower the queue limits";
  overflow_is_rescanned(tmp(), "inotify", "/proc/sys/fs/inotify/max_queued_events");
  overflow_is_rescanned(tmp(), "fanotify", "/proc/sys/fs/fanotify/max_queued_events");
}

// Changes go on while the watcher is killed (SIGKILL) and started again:
// the second one's first comparison finds what the first one missed.
TEST_F(SyncWatch, AKilledWatcherRestartedLosesNothing) {
  const fs::path src = tmp() / "src";
  const fs::path dst = tmp() / "dst";
  fs::create_directories(src / "d");
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 0; !stop.load() && i < 100'000; ++i) {
      write_file(src / "d" / ("w" + std::to_string(i % 400) + ".txt"), std::to_string(i));
      if (i % 3 == 0) fs::remove(src / "d" / ("w" + std::to_string((i + 7) % 400) + ".txt"));
      written.store(i);
      std::this_thread::sleep_for(1ms);
    }
  });
  const std::vector<std::string> args = {"sync",     "--watch",    "--watch-debounce", "50ms",
                                         "--delete", S(src) + "/", S(dst) + "/"};
  // The first watcher is killed once it has copied something and the
  // writer has gone on for a while.
  auto killed = run_xfer_signal_when(
      args, SIGKILL, [&](pid_t) { return fs::exists(dst / "d") && written.load() > 300; });
  EXPECT_TRUE(killed.signalled) << killed.result.describe();
  const int at_kill = written.load();
  bool same = false;
  std::string why;
  auto r = watch_while(args, [&] {
    // Changes continue under the second watcher, then stop.
    wait_until([&] { return written.load() > at_kill + 300; }, 30s);
    stop.store(true);
    same = wait_until([&] { return bool(compare_trees(src, dst, files_only())); }, 60s);
    if (!same) why = compare_trees(src, dst, files_only()).message();
  });
  stop.store(true);
  writer.join();
  EXPECT_TRUE(same) << why << "\n" << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

// The watched folder itself moved away: the watch ends by itself with a
// clear error (what it would follow next lies elsewhere), with each
// watcher.
TEST_F(SyncWatch, AWatchedFolderMovedAwayEndsTheWatchWithAnError) {
  std::vector<std::string> withs = {"inotify"};
  if (::geteuid() == 0) withs.push_back("fanotify");
  for (const std::string& with : withs) {
    SCOPED_TRACE(with);
    const fs::path src = tmp() / (with + "-src");
    const fs::path dst = tmp() / (with + "-dst");
    fs::create_directories(src);
    write_file(src / "a.txt", "a\n");
    std::atomic<bool> moved{false};
    std::thread mover([&] {
      if (wait_until([&] { return fs::exists(dst / "a.txt"); }, 60s)) {
        fs::rename(src, tmp() / (with + "-moved"));
        moved.store(true);
      }
    });
    auto r = run_xfer({"sync", "--watch", "--watch-with", with, S(src) + "/", S(dst) + "/"}, 60s);
    mover.join();
    ASSERT_TRUE(moved.load()) << r.describe();
    EXPECT_EQ(r.exit_code, 1) << r.describe();
    EXPECT_TRUE(icontains(r.err, "moved or removed")) << r.describe();
  }
}

// A folder on xferd, watched by the server itself (WatchChanges): creates,
// writes, renames and deletions there reach the local copy; the server is
// stopped, the folder changed while it is down, and started again: the
// client reconnects, rescans, and the copy ends identical again.
TEST_F(SyncWatch, FollowsAFolderOnXferdAcrossARestartOfTheServer) {
  XferdProcess server(tmp() / "srv");
  ASSERT_TRUE(server.start());
  const std::string token = server.token("/", false);  // read-only is enough to watch
  const fs::path src = server.root() / "data";
  const fs::path dst = tmp() / "dst";
  fs::create_directories(src / "a");
  fs::create_directories(src / "folder/inner");
  write_file(src / "a/one.txt", "one\n");
  write_file(src / "folder/inner/x.txt", "x\n");
  write_file(src / "removed.txt", "r\n");
  bool first = false, step1 = false, step2 = false, restarted = false;
  std::string why1, why2;
  auto r = watch_while(
      {"--token", token, "sync", "--watch", "--watch-debounce", "100ms", "--delete",
       server.url("/data") + "/", S(dst) + "/"},
      [&] {
        first = wait_until([&] { return bool(compare_trees(src, dst, files_only())); }, 60s);
        if (!first) return;
        write_file(src / "new.txt", "a new file\n");
        for (int i = 0; i < 100; ++i) append(src / "burst.log", std::to_string(i) + "\n");
        fs::rename(src / "a/one.txt", src / "moved.txt");
        fs::rename(src / "folder", src / "folder-renamed");
        fs::remove(src / "removed.txt");
        fs::create_directories(src / "deep/er");
        write_file(src / "deep/er/leaf.txt", "leaf\n");
        step1 = wait_until([&] { return bool(compare_trees(src, dst, files_only())); }, 60s);
        if (!step1) {
          why1 = compare_trees(src, dst, files_only()).message();
          return;
        }
        server.stop();
        write_file(src / "while-down.txt", "written while the server was down\n");
        fs::remove_all(src / "deep");
        restarted = bool(server.restart());
        if (!restarted) return;
        write_file(src / "after.txt", "after the restart\n");
        step2 = wait_until([&] { return bool(compare_trees(src, dst, files_only())); }, 90s);
        if (!step2) why2 = compare_trees(src, dst, files_only()).message();
      });
  ASSERT_TRUE(first) << r.describe();
  EXPECT_TRUE(step1) << why1 << "\n" << r.err;
  ASSERT_TRUE(restarted) << server.log();
  EXPECT_TRUE(step2) << why2 << "\n" << r.err;
  EXPECT_EQ(read_file(dst / "while-down.txt"), "written while the server was down\n");
  EXPECT_FALSE(fs::exists(dst / "deep"));
  EXPECT_NE(r.err.find("following the server's changes again"), std::string::npos) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

// An error while following is repaired by the next full comparison that
// meets none: it is still reported, but it no longer fails the run. One
// that is never repaired does (exit 3 or 1).
TEST_F(SyncWatch, AnErrorARescanRepairedDoesNotFailTheRun) {
  for (const bool repair : {true, false}) {
    SCOPED_TRACE(repair ? "repaired" : "left");
    const fs::path src = tmp() / (repair ? "src-r" : "src-l");
    const fs::path dst = tmp() / (repair ? "dst-r" : "dst-l");
    fs::create_directories(src);
    write_file(src / "a.txt", "a\n");
    // A folder with entries where the source will put a file: without
    // --delete that file is an error until the folder is emptied.
    fs::create_directories(dst / "blocker");
    write_file(dst / "blocker/kept.txt", "kept\n");
    bool failed = false;
    bool synced = false;
    auto r = watch_while({"sync", "--watch", "--watch-debounce", "50ms", "--watch-reconcile", "1s",
                          "--json", S(src) + "/", S(dst) + "/"},
                         [&] {
                           if (!wait_until([&] { return fs::exists(dst / "a.txt"); }, 60s)) return;
                           write_file(src / "blocker", "a file now\n");
                           std::this_thread::sleep_for(1500ms);  // debounce, a copy, a reconcile
                           failed = fs::exists(dst / "blocker/kept.txt");
                           if (!repair) return;
                           fs::remove_all(dst / "blocker");
                           synced = wait_until(
                               [&] {
                                 return fs::is_regular_file(dst / "blocker") &&
                                        read_file(dst / "blocker") == "a file now\n";
                               },
                               30s);
                         });
    ASSERT_TRUE(failed) << r.describe();
    EXPECT_NE(r.err.find("cannot delete non-empty directory"), std::string::npos) << r.describe();
    const auto summary = summary_of(r);
    ASSERT_TRUE(summary.is_object()) << r.describe();
    if (repair) {
      EXPECT_TRUE(synced) << r.describe();
      EXPECT_EQ(summary.value("errors", -1), 0) << r.describe();
      EXPECT_GE(summary.value("errors_repaired", 0), 1) << r.describe();
      EXPECT_NE(r.err.find("repaired by a later rescan"), std::string::npos) << r.describe();
      EXPECT_EQ(r.exit_code, 0) << r.describe();
    } else {
      EXPECT_TRUE(fs::exists(dst / "blocker/kept.txt"));
      EXPECT_GE(summary.value("errors", 0), 1) << r.describe();
      EXPECT_NE(r.exit_code, 0) << r.describe();
    }
  }
}

// What cannot be watched says so at once: a file, a folder outside the
// token's prefix, a missing one.
TEST_F(SyncWatch, AServerFolderThatCannotBeWatchedIsAClearError) {
  XferdProcess server(tmp() / "srv");
  ASSERT_TRUE(server.start());
  fs::create_directories(server.root() / "mine");
  fs::create_directories(server.root() / "theirs");
  write_file(server.root() / "mine/file.txt", "f\n");
  const std::string token = server.token("/mine", false);
  const fs::path dst = tmp() / "dst";
  struct Case {
    std::string path;
    std::string says;
  };
  for (const Case& c :
       {Case{"/mine/file.txt", "needs a folder"}, Case{"/theirs", "outside the token's scope"},
        Case{"/mine/missing", "No such file"}}) {
    SCOPED_TRACE(c.path);
    auto r = run_xfer({"--token", token, "sync", "--watch", server.url(c.path), S(dst)}, 30s);
    EXPECT_NE(r.exit_code, 0) << r.describe();
    EXPECT_TRUE(icontains(r.err, c.says)) << r.describe();
    EXPECT_FALSE(fs::exists(dst / "file.txt"));
  }
}

}  // namespace
}  // namespace xfer_it
