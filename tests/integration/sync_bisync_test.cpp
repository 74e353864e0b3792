// xfer sync --bidirectional A B (docs/sync.md, "Bidirectional"): the first
// run joins two trees and keeps both versions of what differs; later runs
// carry each side's creates, edits, mode changes, symlinks, deletions and
// type changes to the other; a file changed on both sides is kept twice,
// on both sides; a deletion never beats an edit; a side that lost
// everything, too many deletions, a state that cannot be read and a second
// run of the same pair all stop the run before it changes anything. Between
// local folders and with one side on a real xferd. Each run's user-visible
// outcome is checked: the bytes on both sides, exit codes, the lines.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "harness.hpp"
#include "xferd_harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;

std::string S(const fs::path& p) {
  return p.string();
}

constexpr std::int64_t kT0 = 1'600'000'000;

void put(const fs::path& p, std::string_view content, std::int64_t sec, mode_t mode = 0644) {
  fs::create_directories(p.parent_path());
  write_file(p, content);
  ::chmod(p.c_str(), mode);
  set_mtime(p, sec, 0);
}

// Both sides alike: names, types, bytes, modes, file mtimes, link targets
// (folders' mtimes are not part of a two-way sync).
::testing::AssertionResult alike(const fs::path& a, const fs::path& b) {
  CompareOptions o;
  o.compare_root = false;
  o.compare_dir_mtime = false;
  return compare_trees(a, b, o);
}

// The -i lines ("B >f+++++++++ path"), sorted.
std::vector<std::string> changes(const RunResult& r) {
  std::vector<std::string> out;
  for (const auto& l : split_lines(r.out)) {
    if (l.size() > 14 && (l[0] == 'A' || l[0] == 'B') && l[1] == ' ' && l[13] == ' ') {
      out.push_back(l);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The names in `dir` that start with `prefix`.
std::vector<std::string> named(const fs::path& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

class Bisync : public XferTest {
 protected:
  RunResult bisync(const std::string& a, const std::string& b,
                   std::vector<std::string> extra = {}) {
    std::vector<std::string> args;
    if (!token_.empty()) args = {"--token", token_};
    for (const char* f : {"sync", "--bidirectional", "--no-progress", "-i"}) args.push_back(f);
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(a);
    args.push_back(b);
    return run_xfer(args, 120s);
  }
  XferdProcess* start_server() {
    server_ = std::make_unique<XferdProcess>(tmp() / "srv");
    auto r = server_->start();
    if (!r) {
      ADD_FAILURE() << r.message();
      return nullptr;
    }
    token_ = server_->token("/", true);
    return server_.get();
  }
  std::unique_ptr<XferdProcess> server_;
  std::string token_;
};

// The first run has no state: what only one side has goes across; what
// both have alike stays; what both have and differs is kept twice (the
// newer under the name); one content with two mtimes is not a conflict.
TEST_F(Bisync, TheFirstRunJoinsBothTreesAndKeepsBothVersionsOfWhatDiffers) {
  const fs::path a = tmp() / "a";
  const fs::path b = tmp() / "b";
  put(a / "only_a.txt", "a\n", kT0);
  put(a / "dir/in_a.txt", "in a\n", kT0);
  put(a / "same.txt", "same bytes\n", kT0 + 10);
  put(a / "differs.txt", "A's version\n", kT0 + 5);
  put(b / "only_b.txt", "b\n", kT0);
  put(b / "dir/in_b.txt", "in b\n", kT0, 0600);
  put(b / "same.txt", "same bytes\n", kT0 + 20);
  put(b / "differs.txt", "B's newer version\n", kT0 + 50);
  fs::create_symlink("only_b.txt", b / "link");
  auto r = bisync(S(a), S(b));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(alike(a, b));
  EXPECT_EQ(read_file(a / "differs.txt"), "B's newer version\n");
  const auto kept = named(a, "differs.txt.conflict-A-");
  ASSERT_EQ(kept.size(), 1u) << r.describe();
  EXPECT_EQ(read_file(a / kept[0]), "A's version\n");
  EXPECT_EQ(read_file(b / kept[0]), "A's version\n");
  EXPECT_EQ(get_mtime(a / "same.txt").tv_sec, kT0 + 20);  // the newer attributes
  EXPECT_EQ(fs::read_symlink(a / "link"), "only_b.txt");
  EXPECT_EQ(get_mode(a / "dir/in_b.txt"), 0600u);
  EXPECT_TRUE(icontains(r.err, "first run")) << r.err;
  EXPECT_TRUE(icontains(r.err, "conflict: differs.txt changed on both sides")) << r.err;
  EXPECT_TRUE(icontains(r.err, "1 conflict (both versions kept)")) << r.err;
  // A second run finds nothing to do.
  auto again = bisync(S(a), S(b));
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_TRUE(changes(again).empty()) << again.out;
  EXPECT_TRUE(icontains(again.err, "0 changes to B, 0 to A, 0 deleted on B, 0 on A, 0 conflicts"))
      << again.err;
}

// Each side's creates, edits, modes, symlinks, deletions (files and whole
// folders) and type changes reach the other side; then nothing is left.
TEST_F(Bisync, ChangesOnEitherSideGoAcross) {
  const fs::path a = tmp() / "a";
  const fs::path b = tmp() / "b";
  TreeSpec spec;
  spec.files = 200;
  spec.dirs = 20;
  spec.symlinks = 10;
  spec.empty_dirs = 2;
  generate_tree(a, spec);
  put(a / "edit_on_a.txt", "old\n", kT0);
  put(a / "edit_on_b.txt", "old\n", kT0);
  put(a / "chmod_on_a.txt", "mode\n", kT0);
  put(a / "delete_on_a.txt", "bye\n", kT0);
  put(a / "gone_on_b/x.txt", "x\n", kT0);
  put(a / "gone_on_b/deeper/y.txt", "y\n", kT0);
  put(a / "file_to_folder", "was a file\n", kT0);
  put(a / "rename_me.txt", "moving\n", kT0);
  ASSERT_EQ(bisync(S(a), S(b)).exit_code, 0);
  ASSERT_TRUE(alike(a, b));

  put(a / "edit_on_a.txt", "new on A\n", kT0 + 100);
  ::chmod((a / "chmod_on_a.txt").c_str(), 0600);
  fs::remove(a / "delete_on_a.txt");
  put(a / "new_dir_a/new.txt", "new on A\n", kT0 + 100);
  fs::create_symlink("edit_on_a.txt", a / "new_link");
  fs::rename(a / "rename_me.txt", a / "renamed.txt");
  put(b / "edit_on_b.txt", "new on B, longer\n", kT0 + 100);
  put(b / "new_on_b.txt", "new on B\n", kT0 + 100);
  fs::remove_all(b / "gone_on_b");
  fs::remove(b / "file_to_folder");
  put(b / "file_to_folder/inside.txt", "now a folder\n", kT0 + 100);
  auto r = bisync(S(a), S(b));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(alike(a, b));
  EXPECT_EQ(read_file(b / "edit_on_a.txt"), "new on A\n");
  EXPECT_EQ(read_file(a / "edit_on_b.txt"), "new on B, longer\n");
  EXPECT_EQ(get_mode(b / "chmod_on_a.txt"), 0600u);
  EXPECT_FALSE(lexists(b / "delete_on_a.txt"));
  EXPECT_FALSE(lexists(a / "gone_on_b"));
  EXPECT_FALSE(lexists(b / "rename_me.txt"));
  EXPECT_EQ(read_file(b / "renamed.txt"), "moving\n");
  EXPECT_EQ(read_file(a / "file_to_folder/inside.txt"), "now a folder\n");
  EXPECT_EQ(fs::read_symlink(b / "new_link"), "edit_on_a.txt");
  EXPECT_TRUE(named(a, "").size() > 10);
  EXPECT_TRUE(named(a, "edit_on").size() == 2);  // no conflict copies
  const auto lines = changes(r);
  auto has = [&](const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  };
  EXPECT_TRUE(has("B >f.st...... edit_on_a.txt")) << r.out;
  EXPECT_TRUE(has("A >f.st...... edit_on_b.txt")) << r.out;
  EXPECT_TRUE(has("B *deleting   delete_on_a.txt")) << r.out;
  EXPECT_TRUE(has("A *deleting   gone_on_b/")) << r.out;
  EXPECT_TRUE(has("B .f...p..... chmod_on_a.txt")) << r.out;
  auto again = bisync(S(a), S(b));
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_TRUE(changes(again).empty()) << again.out;
}

// Edited on both sides since the last run: both versions kept on both
// sides, the newer under the name, reported (and in --json); the same
// size does not hide it (the contents are compared); the same bytes
// written on both sides are no conflict.
TEST_F(Bisync, EditsOnBothSidesAreAConflictWithBothVersionsKept) {
  const fs::path a = tmp() / "a";
  const fs::path b = tmp() / "b";
  put(a / "doc.txt", "first\n", kT0);
  put(a / "same_size.txt", "AAAA\n", kT0);
  put(a / "agreed.txt", "old\n", kT0);
  ASSERT_EQ(bisync(S(a), S(b)).exit_code, 0);
  put(a / "doc.txt", "edited on A\n", kT0 + 100);
  put(b / "doc.txt", "edited on B\n", kT0 + 200);
  put(a / "same_size.txt", "BBBB\n", kT0 + 300);  // A is newer here
  put(b / "same_size.txt", "CCCC\n", kT0 + 250);
  put(a / "agreed.txt", "agreed\n", kT0 + 100);
  put(b / "agreed.txt", "agreed\n", kT0 + 110);
  auto r = bisync(S(a), S(b), {"--json"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(alike(a, b));
  EXPECT_EQ(read_file(a / "doc.txt"), "edited on B\n");
  auto doc = named(b, "doc.txt.conflict-A-");
  ASSERT_EQ(doc.size(), 1u);
  EXPECT_EQ(read_file(b / doc[0]), "edited on A\n");
  EXPECT_EQ(read_file(b / "same_size.txt"), "BBBB\n");
  auto same = named(a, "same_size.txt.conflict-B-");
  ASSERT_EQ(same.size(), 1u);
  EXPECT_EQ(read_file(a / same[0]), "CCCC\n");
  EXPECT_TRUE(named(a, "agreed.txt.conflict").empty());
  int conflicts = 0;
  for (const auto& line : split_lines(r.out)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object()) continue;
    if (j.value("event", "") == "conflict") {
      ++conflicts;
      EXPECT_TRUE(j["path"] == "doc.txt" || j["path"] == "same_size.txt") << line;
    }
    if (j.value("event", "") == "summary") {
      EXPECT_EQ(j["bidirectional"]["conflicts"], 2) << line;
      EXPECT_EQ(j["bidirectional"]["first_run"], false) << line;
    }
  }
  EXPECT_EQ(conflicts, 2) << r.out;
}

// A deletion never beats an edit: deleted on one side and edited on the
// other, the edit comes back; a folder deleted on one side while the other
// added a file in it keeps that file (and loses only what was unchanged).
TEST_F(Bisync, ADeletionOnOneSideNeverBeatsAnEditOnTheOther) {
  const fs::path a = tmp() / "a";
  const fs::path b = tmp() / "b";
  put(a / "x.txt", "x\n", kT0);
  put(a / "y.txt", "y\n", kT0);
  put(a / "folder/old1.txt", "1\n", kT0);
  put(a / "folder/old2.txt", "2\n", kT0);
  ASSERT_EQ(bisync(S(a), S(b)).exit_code, 0);
  fs::remove(a / "x.txt");
  put(b / "x.txt", "edited on B\n", kT0 + 100);
  put(a / "y.txt", "edited on A\n", kT0 + 100);
  fs::remove(b / "y.txt");
  fs::remove_all(a / "folder");
  put(b / "folder/added_on_b.txt", "new\n", kT0 + 100);
  auto r = bisync(S(a), S(b));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(alike(a, b));
  EXPECT_EQ(read_file(a / "x.txt"), "edited on B\n");
  EXPECT_EQ(read_file(b / "y.txt"), "edited on A\n");
  EXPECT_EQ(read_file(a / "folder/added_on_b.txt"), "new\n");
  EXPECT_FALSE(lexists(b / "folder/old1.txt"));
  EXPECT_FALSE(lexists(b / "folder/old2.txt"));
}

// A file replaced by a folder on one side and edited on the other: the
// folder keeps the name, the edited file is kept beside it.
TEST_F(Bisync, ATypeChangeAgainstAnEditKeepsBoth) {
  const fs::path a = tmp() / "a";
  const fs::path b = tmp() / "b";
  put(a / "thing", "a file\n", kT0);
  put(a / "d/kept.txt", "k\n", kT0);
  ASSERT_EQ(bisync(S(a), S(b)).exit_code, 0);
  put(a / "thing", "edited file on A\n", kT0 + 100);
  fs::remove(b / "thing");
  put(b / "thing/inside.txt", "folder on B\n", kT0 + 100);
  // A folder replaced by a file on B while A added to it.
  put(a / "d/added_on_a.txt", "added\n", kT0 + 100);
  fs::remove_all(b / "d");
  put(b / "d", "d is a file on B\n", kT0 + 100);
  auto r = bisync(S(a), S(b));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(alike(a, b));
  EXPECT_EQ(read_file(a / "thing/inside.txt"), "folder on B\n");
  auto t = named(b, "thing.conflict-A-");
  ASSERT_EQ(t.size(), 1u) << r.describe();
  EXPECT_EQ(read_file(b / t[0]), "edited file on A\n");
  EXPECT_EQ(read_file(b / "d/added_on_a.txt"), "added\n");
  EXPECT_FALSE(lexists(a / "d/kept.txt"));  // B deleted it, A had not changed it
  auto d = named(a, "d.conflict-B-");
  ASSERT_EQ(d.size(), 1u) << r.describe();
  EXPECT_EQ(read_file(a / d[0]), "d is a file on B\n");
}

// An edit made on the receiving side after the run listed it is never
// overwritten: the leg into A starts after the leg into B (slowed here by
// --bwlimit), and A's y.txt is edited meanwhile. A keeps that edit, the run
// says so, and the next run finds y.txt changed on both sides: a conflict,
// both versions kept.
TEST_F(Bisync, AnEditOnTheReceivingSideDuringTheRunIsNotOverwritten) {
  const fs::path a = tmp() / "a";
  const fs::path b = tmp() / "b";
  put(a / "y.txt", "y\n", kT0);
  put(b / "y.txt", "y\n", kT0);
  ASSERT_EQ(bisync(S(a), S(b)).exit_code, 0);
  write_random_file(a / "big.bin", 11, 8u << 20);  // to B: about 4 s at 2 MiB/s
  put(b / "y.txt", "B's edit\n", kT0 + 100);       // to A, in the second leg
  std::thread editor([&] {
    std::this_thread::sleep_for(1500ms);
    put(a / "y.txt", "A's edit, made during the run\n", kT0 + 200);
  });
  auto r = bisync(S(a), S(b), {"--bwlimit", "2M"});
  editor.join();
  EXPECT_EQ(read_file(a / "y.txt"), "A's edit, made during the run\n") << r.describe();
  EXPECT_EQ(read_file(b / "y.txt"), "B's edit\n");
  EXPECT_TRUE(icontains(r.err, "changed since this sync listed it")) << r.describe();
  EXPECT_EQ(read_file(b / "big.bin"), read_file(a / "big.bin"));
  auto next = bisync(S(a), S(b));
  ASSERT_EQ(next.exit_code, 0) << next.describe();
  EXPECT_TRUE(alike(a, b));
  EXPECT_EQ(read_file(a / "y.txt"), "A's edit, made during the run\n")
      << "the newer keeps the name";
  const auto kept = named(a, "y.txt.conflict-B-");
  ASSERT_EQ(kept.size(), 1u) << next.describe();
  EXPECT_EQ(read_file(a / kept[0]), "B's edit\n");
}

// What would lose data stops the run before it changes anything.
TEST_F(Bisync, WhatWouldLoseDataStopsTheRunFirst) {
  const fs::path a = tmp() / "a";
  const fs::path b = tmp() / "b";
  for (int i = 0; i < 6; ++i) put(a / ("f" + std::to_string(i) + ".txt"), "data\n", kT0);
  ASSERT_EQ(bisync(S(a), S(b)).exit_code, 0);
  // A side emptied (an unmounted disk): nothing deleted on the other.
  for (int i = 0; i < 6; ++i) fs::remove(a / ("f" + std::to_string(i) + ".txt"));
  auto empty = bisync(S(a), S(b));
  EXPECT_EQ(empty.exit_code, 1) << empty.describe();
  EXPECT_TRUE(icontains(empty.err, "is empty, but held 6 entries at the last sync")) << empty.err;
  EXPECT_EQ(count_entries(b), 6u);
  // More deletions than --max-delete: none made.
  put(a / "f0.txt", "data\n", kT0);
  put(a / "f1.txt", "data\n", kT0);
  auto many = bisync(S(a), S(b), {"--max-delete", "2"});
  EXPECT_EQ(many.exit_code, 1) << many.describe();
  EXPECT_TRUE(icontains(many.err, "4 deletions planned on B, more than --max-delete 2"))
      << many.err;
  EXPECT_EQ(count_entries(b), 6u);
  // --resync starts over: nothing is deleted, what only B has comes back.
  auto resync = bisync(S(a), S(b), {"--resync"});
  EXPECT_EQ(resync.exit_code, 0) << resync.describe();
  EXPECT_EQ(count_entries(a), 6u);
  EXPECT_TRUE(alike(a, b));
  // A state file that cannot be read is named, and nothing is done.
  fs::path state;
  for (const auto& e : fs::directory_iterator(state_dir() / "bisync")) {
    if (e.path().extension() == ".state") state = e.path();
  }
  ASSERT_FALSE(state.empty());
  write_file(state, "xfer-bisync-v1\nf 1 644 1 1 ../../etc/passwd\n");
  fs::remove(a / "f5.txt");
  auto bad = bisync(S(a), S(b));
  EXPECT_EQ(bad.exit_code, 1) << bad.describe();
  EXPECT_TRUE(icontains(bad.err, "cannot be read")) << bad.err;
  EXPECT_TRUE(lexists(b / "f5.txt"));
  // Another run of the pair holds the lock: refused.
  const int fd = ::open((S(state) + ".lock").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  auto locked = bisync(S(a), S(b), {"--resync"});
  ::close(fd);
  EXPECT_EQ(locked.exit_code, 1) << locked.describe();
  EXPECT_TRUE(icontains(locked.err, "another xfer sync --bidirectional")) << locked.err;
  // Flags with no meaning here, a third path, a missing side: usage and
  // clear errors.
  auto del = bisync(S(a), S(b), {"--delete"});
  EXPECT_EQ(del.exit_code, 2) << del.describe();
  EXPECT_TRUE(icontains(del.err, "--delete does not apply")) << del.err;
  auto three = run_xfer({"sync", "--bidirectional", S(a), S(b), S(tmp() / "c")});
  EXPECT_EQ(three.exit_code, 2) << three.describe();
  ASSERT_EQ(bisync(S(a), S(b), {"--resync"}).exit_code, 0);  // a state again
  // A side gone since the last run (an unmounted disk): nothing deleted.
  fs::rename(b, tmp() / "b.away");
  auto missing = bisync(S(a), S(b));
  EXPECT_EQ(missing.exit_code, 1) << missing.describe();
  EXPECT_TRUE(icontains(missing.err, "no such folder, but it was synced before")) << missing.err;
  EXPECT_FALSE(lexists(b));
  EXPECT_EQ(count_entries(a), 6u);
}

// Names the legs' path lists could misread: one starting with '#' or ';'
// is synced like any other; one holding a line break stops the run before
// any change (it could name another path in a list).
TEST_F(Bisync, NamesThatLookLikeListSyntaxAreSafe) {
  const fs::path a = tmp() / "a";
  const fs::path b = tmp() / "b";
  put(a / "#autosave#", "emacs\n", kT0);
  put(a / ";semi", "s\n", kT0);
  auto r = bisync(S(a), S(b));
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(read_file(b / "#autosave#"), "emacs\n");
  EXPECT_EQ(read_file(b / ";semi"), "s\n");
  put(b / "data.csv", "edited on B\n", kT0 + 100);
  put(a / "data.csv\r", "a stray CR\n", kT0 + 100);
  auto bad = bisync(S(a), S(b));
  EXPECT_EQ(bad.exit_code, 1) << bad.describe();
  EXPECT_TRUE(icontains(bad.err, "line break")) << bad.err;
  EXPECT_EQ(read_file(b / "data.csv"), "edited on B\n");
  EXPECT_FALSE(lexists(a / "data.csv"));
}

// --dry-run prints the plan and changes nothing, the state included.
TEST_F(Bisync, DryRunChangesNothing) {
  const fs::path a = tmp() / "a";
  const fs::path b = tmp() / "b";
  put(a / "x.txt", "x\n", kT0);
  put(b / "y.txt", "y\n", kT0);
  put(a / "both.txt", "A\n", kT0);
  put(b / "both.txt", "B!\n", kT0 + 1);
  auto r = bisync(S(a), S(b), {"-n"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const auto lines = changes(r);
  EXPECT_NE(std::find(lines.begin(), lines.end(), "B >f+++++++++ x.txt"), lines.end()) << r.out;
  EXPECT_NE(std::find(lines.begin(), lines.end(), "A >f+++++++++ y.txt"), lines.end()) << r.out;
  EXPECT_TRUE(icontains(r.err, "would be kept as both.txt.conflict-A-")) << r.err;
  EXPECT_FALSE(lexists(b / "x.txt"));
  EXPECT_FALSE(lexists(a / "y.txt"));
  EXPECT_EQ(count_entries(a), 2u);
  bool state_written = false;
  if (fs::exists(state_dir() / "bisync")) {
    for (const auto& e : fs::directory_iterator(state_dir() / "bisync")) {
      state_written = state_written || e.path().extension() == ".state";
    }
  }
  EXPECT_FALSE(state_written);
}

// One side on a real xferd: the same rules through the server, a conflict
// included; the server's side ends byte for byte like the local one.
TEST_F(Bisync, WithOneSideOnXferd) {
  XferdProcess* server = start_server();
  ASSERT_NE(server, nullptr);
  const fs::path a = tmp() / "a";
  const fs::path b = server->root() / "b";
  const std::string url = server->url("/b");
  TreeSpec spec;
  spec.files = 150;
  spec.dirs = 12;
  spec.symlinks = 5;
  generate_tree(a, spec);
  put(b / "from_server.txt", "server\n", kT0);
  auto first = bisync(S(a), url);
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  EXPECT_TRUE(alike(a, b));
  put(a / "local_edit.txt", "local\n", kT0 + 100);
  put(b / "server_edit.txt", "server side\n", kT0 + 100);
  fs::remove(b / "from_server.txt");
  put(a / "both.txt", "A\n", kT0 + 100);
  put(b / "both.txt", "B, newer\n", kT0 + 200);
  auto r = bisync(S(a), url);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(alike(a, b));
  EXPECT_FALSE(lexists(a / "from_server.txt"));
  EXPECT_EQ(read_file(b / "local_edit.txt"), "local\n");
  EXPECT_EQ(read_file(a / "server_edit.txt"), "server side\n");
  EXPECT_EQ(read_file(a / "both.txt"), "B, newer\n");
  EXPECT_EQ(named(b, "both.txt.conflict-A-").size(), 1u);
  auto again = bisync(S(a), url);
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_TRUE(changes(again).empty()) << again.out;
}

}  // namespace
}  // namespace xfer_it
