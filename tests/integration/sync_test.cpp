// xfer sync against rsync itself: a generated matrix of cases (new, changed
// bytes with the same size and mtime, mtime only, modes only, type changes
// file <-> folder <-> symlink, entries only at the destination, rules,
// --backup-dir, --size-only, -u, --ignore-existing, --delete-before) is
// synced by `rsync -a FLAGS` and by `xfer sync FLAGS`, between local folders
// and to and from a real xferd; the two destinations must be identical
// (names, types, bytes, modes, mtimes, symlink targets), the exit codes must
// agree, and -i must print the lines rsync prints. Then what rsync cannot
// be compared with: --max-delete, deletions held back after a failure,
// --dry-run changing nothing. Each test runs the real binaries ($XFER_BIN,
// $XFERD_BIN) in its own folder.

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

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
  set_mtime(p, sec, 123);
}

void link_to(const std::string& target, const fs::path& p) {
  fs::create_directories(p.parent_path());
  fs::create_symlink(target, p);
}

// Every folder below `root` (and root) gets mtime kT0 + 500, children
// first, so the two trees of a case start with equal folder times.
void stamp_folders(const fs::path& root) {
  std::vector<fs::path> dirs{root};
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_directory() && !e.is_symlink()) dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
    return a.string().size() > b.string().size();
  });
  for (const auto& d : dirs) set_mtime(d, kT0 + 500, 0);
}

// One case: the source and what the destination holds before the sync.
// `with_full_folder` adds a non-empty folder where the source has a file
// (rsync refuses to replace it without --delete).
void make_case(const fs::path& src, const fs::path& dst, bool with_full_folder) {
  fs::create_directories(src);
  fs::create_directories(dst);
  put(src / "new.txt", "a new file\n", kT0);
  put(src / "newdir/a.txt", "a\n", kT0);
  put(src / "newdir/deeper/b.txt", "bb\n", kT0 + 1);
  put(src / "same.txt", "same\n", kT0);
  put(dst / "same.txt", "same\n", kT0);
  put(src / "sneaky.txt", "AAAA\n", kT0);  // same size and mtime, other bytes: -c sees it
  put(dst / "sneaky.txt", "BBBB\n", kT0);
  put(src / "touched.txt", "touched\n", kT0 + 50);  // the mtime alone differs
  put(dst / "touched.txt", "touched\n", kT0);
  put(src / "grown.txt", "grown quite a lot\n", kT0 + 60);
  put(dst / "grown.txt", "small\n", kT0);
  put(src / "older.txt", "the source's version\n", kT0);  // newer at the destination: -u keeps it
  put(dst / "older.txt", "the destination's, newer\n", kT0 + 1000);
  put(src / "mode.txt", "mode\n", kT0, 0600);
  put(dst / "mode.txt", "mode\n", kT0, 0644);
  put(src / "sizeonly.txt", "1234\n", kT0 + 70);  // --size-only keeps it
  put(dst / "sizeonly.txt", "abcd\n", kT0);
  put(src / "f2d/inside.txt", "in\n", kT0);  // a file where the source has a folder
  put(dst / "f2d", "was a file\n", kT0);
  put(src / "e2f", "was an empty folder\n", kT0);
  fs::create_directories(dst / "e2f");
  put(src / "f2l.txt", "was a symlink\n", kT0);
  link_to("nowhere", dst / "f2l.txt");
  link_to("same.txt", src / "l2f");
  put(dst / "l2f", "was a file\n", kT0);
  link_to("new.txt", src / "link");  // target changed
  link_to("same.txt", dst / "link");
  link_to("same.txt", src / "samelink");
  link_to("same.txt", dst / "samelink");
  put(dst / "extra.txt", "only here\n", kT0);
  put(dst / "extradir/x/y.txt", "y\n", kT0);
  put(dst / "keep.keep", "excluded: never deleted\n", kT0);
  put(dst / "extradir2/z.keep", "excluded, in a folder to delete\n", kT0);
  put(dst / "extradir2/w.txt", "w\n", kT0);
  put(src / "skip.keep", "excluded: never sent\n", kT0);
  put(src / "sub/deep/c.txt", "the new c\n", kT0);
  put(dst / "sub/deep/c.txt", "old c\n", kT0 - 5);
  put(dst / "sub/deep/gone.txt", "gone\n", kT0);
  put(src / "big.bin", std::string(3u << 20, 'x') + "changed tail", kT0 + 80);
  put(dst / "big.bin", std::string(3u << 20, 'x') + "older", kT0);
  if (with_full_folder) {
    put(src / "d2f", "was a full folder\n", kT0);
    put(dst / "d2f/sub/q.txt", "q\n", kT0);
  }
  stamp_folders(src);
  stamp_folders(dst);
}

std::vector<std::string> sorted_lines(const std::string& text) {
  std::vector<std::string> out;
  for (auto& l : split_lines(text)) {
    if (!l.empty()) out.push_back(l);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// rsync's -i lines only (its errors go to stderr).
std::vector<std::string> item_lines(const std::string& text) {
  std::vector<std::string> out;
  for (auto& l : sorted_lines(text)) {
    if (l.size() > 12 && l[11] == ' ') out.push_back(l);
  }
  return out;
}

class Sync : public XferTest {
 protected:
  void SetUp() override {
    XferTest::SetUp();
    if (HasFatalFailure()) return;
    ::unsetenv("XFER_TOKEN");
    ::setenv("XFER_CREDENTIALS", (tmp() / "no-credentials.toml").c_str(), 1);
  }
  void TearDown() override {
    for (auto& s : servers_) s->stop();
    servers_.clear();
    XferTest::TearDown();
  }
  XferdProcess* start_server() {
    servers_.push_back(std::make_unique<XferdProcess>(tmp() / "srv"));
    XferdProcess* s = servers_.back().get();
    auto r = s->start();
    if (!r) {
      ADD_FAILURE() << r.message();
      return nullptr;
    }
    return s;
  }
  std::vector<std::unique_ptr<XferdProcess>> servers_;
};

struct FlagSet {
  std::vector<std::string> flags;
  bool full_folder;  // the non-empty folder in a file's way
};

// rsync's spelling of each flag, where it differs.
std::vector<std::string> rsync_flags(const std::vector<std::string>& flags, const fs::path& dst) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < flags.size(); ++i) {
    if (flags[i] == "--backup-dir") {
      out.push_back("--backup-dir=" + flags[++i]);  // relative to the destination, as xfer's
      (void)dst;
    } else {
      out.push_back(flags[i]);
    }
  }
  return out;
}

// The matrix between two local folders, and with an xferd at either end:
// `where` is "local", "up" (local -> xfer://) or "down" (xfer:// -> local).
void run_matrix(Sync& t, const fs::path& tmp, XferdProcess* server, const std::string& where,
                const std::vector<FlagSet>& sets) {
  int n = 0;
  for (const auto& set : sets) {
    const std::string tag = where + std::to_string(n++);
    SCOPED_TRACE(where + " " + ::testing::PrintToString(set.flags));
    const fs::path base = server != nullptr ? server->root() / tag : tmp / tag;
    const fs::path src = base / "src";
    const fs::path ours = base / "ours";
    const fs::path theirs = base / "theirs";
    const fs::path ref_src = base / "ref_src";
    make_case(src, ours, set.full_folder);
    make_case(ref_src, theirs, set.full_folder);
    stamp_folders(base);

    std::vector<std::string> rs = {"rsync", "-a", "-i"};
    for (auto& f : rsync_flags(set.flags, theirs)) rs.push_back(f);
    rs.push_back(S(ref_src) + "/");
    rs.push_back(S(theirs) + "/");
    auto r = run(rs, 60s);

    const std::string token = server != nullptr ? server->token("/", true) : "";
    auto url = [&](const fs::path& p) {
      return server->url("/" + fs::relative(p, server->root()).string());
    };
    const std::string from = where == "down" ? url(src) + "/" : S(src) + "/";
    const std::string to = where == "up" ? url(ours) + "/" : S(ours) + "/";
    std::vector<std::string> args;
    if (!token.empty()) args = {"--token", token};
    for (const char* a : {"sync", "-i", "--no-progress"}) args.push_back(a);
    for (const auto& f : set.flags) args.push_back(f);
    args.push_back(from);
    args.push_back(to);
    auto x = run_xfer(args);

    // A folder kept only for an excluded file in it has the time of the
    // deletions beside it: now, for rsync and for xfer alike.
    for (const auto& d : {theirs, ours}) {
      if (fs::is_directory(d / "extradir2")) set_mtime(d / "extradir2", kT0, 0);
      // With --ignore-existing rsync gives the file it keeps in place of a
      // folder that folder's mtime, a quirk xfer does not copy.
      if (fs::is_regular_file(d / "f2d")) set_mtime(d / "f2d", kT0, 0);
    }
    EXPECT_EQ(r.exit_code == 0, x.exit_code == 0) << r.describe() << "\n" << x.describe();
    EXPECT_EQ(item_lines(x.out), item_lines(r.out)) << "xfer:\n"
                                                    << x.describe() << "\nrsync:\n"
                                                    << r.describe();
    CompareOptions co;
    // rsync makes --backup-dir's folders at the time it runs, as xfer does.
    co.compare_dir_mtime =
        std::find(set.flags.begin(), set.flags.end(), "--backup-dir") == set.flags.end();
    co.compare_root = co.compare_dir_mtime;
    EXPECT_TRUE(compare_trees(theirs, ours, co));
    EXPECT_TRUE(xfer_hidden_files(ours).empty())
        << ::testing::PrintToString(xfer_hidden_files(ours));
  }
  (void)t;
}

const std::vector<FlagSet> kLocalSets = {
    {{}, false},
    {{}, true},
    {{"--delete"}, true},
    {{"--checksum"}, false},
    {{"--delete", "--exclude", "*.keep"}, true},
    {{"--delete", "--backup-dir", "old"}, true},
    {{"--backup-dir", "old"}, false},
    {{"--size-only"}, false},
    {{"-u"}, false},
    {{"--ignore-existing"}, false},
    {{"--delete-before", "--exclude", "*.keep"}, true},
    {{"--delete", "--checksum", "--exclude", "/sub/"}, false},
};

const std::vector<FlagSet> kRemoteSets = {
    {{}, true},
    {{"--delete", "--exclude", "*.keep"}, true},
    {{"--checksum"}, false},
    {{"--delete", "--backup-dir", "old"}, true},
};

TEST_F(Sync, MatchesRsyncBetweenLocalFolders) {
  run_matrix(*this, tmp(), nullptr, "local", kLocalSets);
}

TEST_F(Sync, MatchesRsyncUploadingToXferd) {
  XferdProcess* server = start_server();
  ASSERT_NE(server, nullptr);
  run_matrix(*this, tmp(), server, "up", kRemoteSets);
}

TEST_F(Sync, MatchesRsyncDownloadingFromXferd) {
  XferdProcess* server = start_server();
  ASSERT_NE(server, nullptr);
  run_matrix(*this, tmp(), server, "down", kRemoteSets);
}

// A second sync of a synced tree changes nothing and says so; the
// destination's files are not even opened (their atime is not read here,
// but no change line and no byte is sent).
TEST_F(Sync, ASecondSyncSendsNothing) {
  const fs::path src = tmp() / "src";
  TreeSpec spec;
  spec.files = 300;
  spec.symlinks = 10;
  spec.empty_dirs = 3;
  generate_tree(src, spec);
  const fs::path dst = tmp() / "dst";
  auto first = run_xfer({"sync", "--no-progress", "--json", S(src) + "/", S(dst)});
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  EXPECT_TRUE(compare_trees(src, dst));
  auto again = run_xfer({"sync", "-i", "--no-progress", S(src) + "/", S(dst)});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_TRUE(item_lines(again.out).empty()) << again.out;
  EXPECT_NE(again.err.find("synced 0 files (0 bytes), 310 unchanged"), std::string::npos)
      << again.err;
}

// The --json summary of a run.
nlohmann::json summary_of(const RunResult& r) {
  for (const auto& line : split_lines(r.out)) {
    if (line.empty()) continue;
    auto e = nlohmann::json::parse(line, nullptr, false);
    if (!e.is_discarded() && e.value("event", "") == "summary") return e;
  }
  ADD_FAILURE() << "no summary in\n" << r.describe();
  return nlohmann::json::object();
}

// Bytes the run's data connections carried, both ways.
std::uint64_t data_bytes(const nlohmann::json& summary) {
  std::uint64_t n = 0;
  for (const auto& s : summary.value("streams", nlohmann::json::array())) {
    n += s.value("bytes_sent", std::uint64_t{0}) + s.value("bytes_received", std::uint64_t{0});
  }
  return n;
}

// -c against xferd: each end hashes its own file (xferd with its Checksum
// call), so comparing 16 MiB costs no byte of content on the network, up
// or down; a file that differs is then sent.
TEST_F(Sync, ChecksumIsComputedWhereTheBytesLive) {
  XferdProcess* server = start_server();
  ASSERT_NE(server, nullptr);
  const std::string token = server->token("/", true);
  for (const bool up : {true, false}) {
    SCOPED_TRACE(up ? "upload" : "download");
    const fs::path local = tmp() / (up ? "up" : "down");
    const fs::path remote = server->root() / (up ? "up" : "down");
    fs::create_directories(local);
    write_random_file(local / "big.bin", 11, 16u << 20);
    fs::create_directories(remote);
    fs::copy_file(local / "big.bin", remote / "big.bin");
    const fs::path& from = up ? local : remote;
    const fs::path& to = up ? remote : local;
    set_mtime(from / "big.bin", kT0, 0);
    set_mtime(to / "big.bin", kT0 + 99, 0);  // same bytes, another mtime
    auto url = [&](const fs::path& p) {
      return server->url("/" + fs::relative(p, server->root()).string()) + "/";
    };
    const std::string src = up ? S(from) + "/" : url(from);
    const std::string dst = up ? url(to) : S(to) + "/";
    auto same = run_xfer({"--token", token, "sync", "-c", "-i", "--json", src, dst});
    ASSERT_EQ(same.exit_code, 0) << same.describe();
    const auto s = summary_of(same);
    EXPECT_EQ(s.value("files_hashed", 0), 2) << same.out;
    EXPECT_EQ(s.value("files_attrs_set", 0), 1) << same.out;
    EXPECT_EQ(s.value("bytes", 1), 0) << same.out;
    EXPECT_LT(data_bytes(s), 64u << 10) << "content crossed the network to compare\n" << same.out;
    EXPECT_EQ(get_mtime(to / "big.bin").tv_sec, kT0) << "the source's mtime, set without a copy";

    // One byte changed, same size and mtime: found by the hashes, then sent.
    {
      std::fstream f(from / "big.bin", std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(5 << 20);
      f.put('\x5a' ^ static_cast<char>(read_file(from / "big.bin")[5 << 20]));
    }
    set_mtime(from / "big.bin", kT0, 0);
    auto changed = run_xfer({"--token", token, "sync", "-c", "-i", "--json", src, dst});
    ASSERT_EQ(changed.exit_code, 0) << changed.describe();
    EXPECT_NE(changed.out.find(R"("item":">fc........","path":"big.bin")"), std::string::npos)
        << changed.out;
    EXPECT_TRUE(files_equal(from / "big.bin", to / "big.bin"));
  }
}

// Delta through xferd, up and down: a 1 GiB file with 1 MiB changed in the
// middle, then with one byte inserted at its start, is rebuilt at the
// destination from its old blocks; the data connections carry about the
// change, not the file, and the summary says how much came from the old
// copy.
TEST_F(Sync, DeltaSendsOnlyWhatChangedInALargeFile) {
  XferdProcess* server = start_server();
  ASSERT_NE(server, nullptr);
  const std::string token = server->token("/", true);
  constexpr std::uint64_t kSize = 1ull << 30;
  for (const bool up : {true, false}) {
    SCOPED_TRACE(up ? "upload" : "download");
    const fs::path local = tmp() / (up ? "up" : "down");
    const fs::path remote = server->root() / (up ? "up" : "down");
    fs::create_directories(local);
    fs::create_directories(remote);
    const fs::path& from = up ? local : remote;
    const fs::path& to = up ? remote : local;
    write_random_file(from / "big.bin", 31, kSize);
    fs::copy_file(from / "big.bin", to / "big.bin");
    set_mtime(to / "big.bin", kT0, 0);
    auto url = [&](const fs::path& p) {
      return server->url("/" + fs::relative(p, server->root()).string()) + "/";
    };
    const std::string src = up ? S(from) + "/" : url(from);
    const std::string dst = up ? url(to) : S(to) + "/";
    auto sync = [&](const char* what) {
      SCOPED_TRACE(what);
      auto r = run_xfer({"--token", token, "sync", "--json", src, dst});
      EXPECT_EQ(r.exit_code, 0) << r.describe();
      const auto s = summary_of(r);
      EXPECT_EQ(s.value("files_delta", 0), 1) << r.out;
      const std::uint64_t size = fs::file_size(from / "big.bin");
      EXPECT_GE(s.value("bytes_matched", std::uint64_t{0}), size - (2u << 20)) << r.out;
      EXPECT_LT(data_bytes(s), 3u << 20) << "more than the change crossed the network\n" << r.out;
      EXPECT_TRUE(files_equal(from / "big.bin", to / "big.bin"));
      EXPECT_EQ(list_relative(to), std::vector<std::string>{"big.bin"}) << "a temporary was left";
    };
    {
      std::mt19937_64 rng(32);
      const std::string fresh = random_bytes(rng, 1u << 20);
      std::fstream f(from / "big.bin", std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(kSize / 2);
      f.write(fresh.data(), static_cast<std::streamsize>(fresh.size()));
    }
    set_mtime(from / "big.bin", kT0 + 10, 0);
    sync("1 MiB changed in the middle");
    {
      const fs::path moved = from / "big.tmp";
      std::ifstream in(from / "big.bin", std::ios::binary);
      std::ofstream out(moved, std::ios::binary);
      out.put('!');
      out << in.rdbuf();
      out.close();
      fs::rename(moved, from / "big.bin");
    }
    set_mtime(from / "big.bin", kT0 + 20, 0);
    sync("1 byte inserted at the start");
    fs::remove_all(local);
    fs::remove_all(remote);
  }
}

// --dry-run prints the plan and changes nothing; --max-delete stops every
// deletion when more are planned; a failed copy holds every deletion back.
TEST_F(Sync, DryRunMaxDeleteAndFailuresKeepTheDestination) {
  const fs::path src = tmp() / "src";
  const fs::path dst = tmp() / "dst";
  make_case(src, dst, false);
  const auto before = list_relative(dst);
  auto plan = run_xfer({"sync", "-n", "--delete", "--no-progress", S(src) + "/", S(dst) + "/"});
  ASSERT_EQ(plan.exit_code, 0) << plan.describe();
  EXPECT_EQ(list_relative(dst), before);
  EXPECT_NE(plan.out.find("would delete extra.txt"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("would create new.txt"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("would update grown.txt"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("would set attributes of mode.txt"), std::string::npos) << plan.out;
  EXPECT_EQ(plan.out.find("same.txt"), std::string::npos) << "unchanged files are not in the plan";
  EXPECT_NE(plan.err.find("would have synced"), std::string::npos) << plan.err;

  // 9 deletions are planned (extra.txt, extradir/x/y.txt, extradir/x/,
  // extradir/, keep.keep, extradir2/..., sub/deep/gone.txt): 3 allowed.
  auto stopped = run_xfer(
      {"sync", "--delete", "--max-delete", "3", "--no-progress", S(src) + "/", S(dst) + "/"});
  EXPECT_NE(stopped.exit_code, 0) << stopped.describe();
  EXPECT_NE(stopped.err.find("more than --max-delete 3: none done"), std::string::npos)
      << stopped.err;
  EXPECT_TRUE(fs::exists(dst / "extra.txt"));
  EXPECT_TRUE(fs::exists(dst / "sub/deep/gone.txt"));
  EXPECT_EQ(read_file(dst / "new.txt"), "a new file\n") << "the copies are made all the same";

  // A copy that fails (into a read-only folder: a tmpfs mounted "ro", or
  // an unreadable source file when not root) holds every deletion back.
  put(dst / "extra2.txt", "only here\n", kT0);
  put(src / "ro/new.txt", "cannot be written\n", kT0);
  if (::geteuid() == 0) {
    ASSERT_TRUE(mount_tmpfs("dst/ro", "ro,size=1m").has_value());
  } else {
    ::chmod((src / "ro/new.txt").c_str(), 0);
  }
  auto failed = run_xfer({"sync", "--delete", "--no-progress", S(src) + "/", S(dst) + "/"});
  EXPECT_NE(failed.exit_code, 0) << failed.describe();
  EXPECT_NE(failed.err.find("deletions not done"), std::string::npos) << failed.err;
  EXPECT_TRUE(fs::exists(dst / "extra2.txt"));
  EXPECT_TRUE(fs::exists(dst / "extra.txt"));
}

// --files-from as rsync -r --files-from has it: listed files, listed
// folders with everything in them, the folders on the way; with --delete,
// deletions only inside listed folders. cp and sync, against rsync.
TEST_F(Sync, FilesFromTakesWhatRsyncTakes) {
  write_file(tmp() / "list.txt", "# what to take\nnewdir\n./sub/\ngrown.txt\nf2d\n/link\n");
  for (const bool sync : {false, true}) {
    SCOPED_TRACE(sync ? "sync --delete" : "cp -r");
    const fs::path base = tmp() / (sync ? "sync" : "cp");
    const fs::path src = base / "src", ours = base / "ours", theirs = base / "theirs";
    const fs::path ref_src = base / "ref_src";
    make_case(src, ours, false);
    make_case(ref_src, theirs, false);
    if (!sync) {
      fs::remove_all(ours);
      fs::remove_all(theirs);
      fs::create_directories(ours);
      fs::create_directories(theirs);
    }
    stamp_folders(base);
    std::vector<std::string> rs = {"rsync", "-a", "-r", "-i",
                                   "--files-from=" + S(tmp() / "list.txt")};
    if (sync) rs.push_back("--delete");
    rs.push_back(S(ref_src) + "/");
    rs.push_back(S(theirs) + "/");
    auto r = run(rs, 60s);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    std::vector<std::string> args = {sync ? "sync" : "cp", "--no-progress", "--files-from",
                                     S(tmp() / "list.txt")};
    if (sync) {
      args.insert(args.end(), {"-i", "--delete"});
    } else {
      args.push_back("-r");
    }
    args.push_back(S(src) + "/");
    args.push_back(S(ours) + "/");
    auto x = run_xfer(args);
    ASSERT_EQ(x.exit_code, 0) << x.describe();
    if (sync) EXPECT_EQ(item_lines(x.out), item_lines(r.out)) << x.describe() << r.describe();
    CompareOptions co;
    co.compare_root = sync;  // rsync leaves a new root's mtime as it was made
    EXPECT_TRUE(compare_trees(theirs, ours, co));
  }
  // A bad list is a usage error naming the file and line; nothing is copied.
  write_file(tmp() / "bad.txt", "ok.txt\n../etc/passwd\n");
  auto bad = run_xfer({"sync", "--files-from", S(tmp() / "bad.txt"), S(tmp() / "cp/src") + "/",
                       S(tmp() / "nowhere")});
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
  EXPECT_NE(bad.err.find("line 2"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(tmp() / "nowhere"));
}

// --backup-dir never passes through a symlink: a source entry of its name
// (a symlink out of the destination) is not made, and a symlink already
// standing there makes the backup fail, never move a file out.
TEST_F(Sync, BackupDirIsNeverASymlinkOutOfTheDestination) {
  const fs::path src = tmp() / "src", dst = tmp() / "dst", away = tmp() / "away";
  fs::create_directories(away);
  put(src / "f.txt", "new version\n", kT0 + 10);
  put(dst / "f.txt", "old version\n", kT0);
  link_to(S(away), src / "bk");  // the source offers bk -> away
  auto r = run_xfer({"sync", "--backup-dir", "bk", "--no-progress", S(src) + "/", S(dst) + "/"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(fs::is_empty(away));
  EXPECT_FALSE(fs::is_symlink(dst / "bk"));
  EXPECT_EQ(read_file(dst / "bk/f.txt"), "old version\n");
  EXPECT_EQ(read_file(dst / "f.txt"), "new version\n");

  // A symlink planted at the backup folder beforehand: no file moves out.
  fs::remove_all(dst / "bk");
  link_to(S(away), dst / "bk");
  put(src / "f.txt", "newer version\n", kT0 + 20);
  auto planted =
      run_xfer({"sync", "--backup-dir", "bk", "--no-progress", S(src) + "/", S(dst) + "/"});
  EXPECT_NE(planted.exit_code, 0) << planted.describe();
  EXPECT_NE(planted.err.find("must not pass through a symlink"), std::string::npos) << planted.err;
  EXPECT_TRUE(fs::is_empty(away));
  EXPECT_EQ(read_file(dst / "f.txt"), "new version\n") << "kept, since it could not be backed up";
}

// cp takes the quick check's flags too: -u keeps a newer destination file,
// --ignore-existing keeps any, --size-only trusts the size (and, unlike a
// sync, a copy leaves the kept file's attributes alone).
TEST_F(Sync, CpTakesTheQuickCheckFlags) {
  const fs::path src = tmp() / "src";
  const fs::path dst = tmp() / "dst";
  put(src / "newer_there.txt", "source\n", kT0);
  put(dst / "newer_there.txt", "destination\n", kT0 + 10);
  put(src / "same_size.txt", "AAAA\n", kT0 + 10);
  put(dst / "same_size.txt", "BBBB\n", kT0);
  put(src / "new.txt", "new\n", kT0);
  auto u = run_xfer({"cp", "-r", "-u", "--no-progress", S(src) + "/", S(dst) + "/"});
  ASSERT_EQ(u.exit_code, 0) << u.describe();
  EXPECT_EQ(read_file(dst / "newer_there.txt"), "destination\n");
  EXPECT_EQ(read_file(dst / "same_size.txt"), "AAAA\n") << "-u: older at the destination";
  EXPECT_EQ(read_file(dst / "new.txt"), "new\n");

  put(src / "same_size.txt", "CCCC\n", kT0 + 20);
  auto size_only =
      run_xfer({"cp", "-r", "--size-only", "--no-progress", S(src) + "/", S(dst) + "/"});
  ASSERT_EQ(size_only.exit_code, 0) << size_only.describe();
  EXPECT_EQ(read_file(dst / "same_size.txt"), "AAAA\n") << "--size-only: the same size is current";
  EXPECT_EQ(read_file(dst / "newer_there.txt"), "source\n") << "--size-only alone: other sizes go";

  put(src / "newer_there.txt", "a longer source\n", kT0 + 30);
  auto keep = run_xfer(
      {"cp", "-r", "--ignore-existing", "-I", "--no-progress", S(src) + "/", S(dst) + "/"});
  ASSERT_EQ(keep.exit_code, 0) << keep.describe();
  EXPECT_EQ(read_file(dst / "newer_there.txt"), "source\n") << "--ignore-existing wins over -I";
  auto all = run_xfer({"cp", "-r", "-I", "--no-progress", S(src) + "/", S(dst) + "/"});
  ASSERT_EQ(all.exit_code, 0) << all.describe();
  EXPECT_EQ(read_file(dst / "newer_there.txt"), "a longer source\n");
  EXPECT_EQ(read_file(dst / "same_size.txt"), "CCCC\n");
}

}  // namespace
}  // namespace xfer_it
