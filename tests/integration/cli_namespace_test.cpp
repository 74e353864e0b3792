// Integration tests of the namespace commands of xfer (list, stat, mkdir,
// touch, rename, move, rm), run against the real binary ($XFER_BIN).
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <set>
#include <sstream>

#include "harness.hpp"

namespace xfer_it {
namespace {

// A folder on a tmpfs of its own: another device than tmp(), whatever
// file system that is on (asserted).
#define ASSERT_OTHER_DEVICE(var)                                                       \
  auto var##_mnt = mount_tmpfs("other-device", "size=64m");                            \
  if (!var##_mnt) GTEST_SKIP() << "cannot mount tmpfs here: " << std::strerror(errno); \
  const fs::path var = *var##_mnt;                                                     \
  ASSERT_NE(device_of(var), device_of(tmp())) << var << " and " << tmp()

dev_t device_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_dev;
}

using namespace std::chrono_literals;

#define EXPECT_EXIT_CODE(res, code) EXPECT_EQ((res).exit_code, (code)) << (res).describe()
#define ASSERT_EXIT_CODE(res, code) ASSERT_EQ((res).exit_code, (code)) << (res).describe()

std::string S(const fs::path& p) {
  return p.string();
}

std::set<std::string> line_set(const std::string& out) {
  auto v = split_lines(out);
  return {v.begin(), v.end()};
}

std::vector<std::string> tokens(const std::string& line) {
  std::istringstream is(line);
  std::vector<std::string> t;
  std::string w;
  while (is >> w) t.push_back(w);
  return t;
}

bool has_token(const std::string& line, const std::string& tok) {
  for (const auto& t : tokens(line))
    if (t == tok) return true;
  return false;
}

// ------------------------------------------------------------ list

class List : public XferTest {
 protected:
  void SetUp() override {
    XferTest::SetUp();
    if (HasFatalFailure()) return;
    d_ = tmp() / "dir";
    fs::create_directories(d_ / "sub" / "deeper");
    write_file(d_ / "a.txt", std::string(12345, 'a'));
    ::chmod((d_ / "a.txt").c_str(), 0640);
    write_file(d_ / "b.bin", "bb");
    write_file(d_ / "sub" / "inner.txt", "inner");
    write_file(d_ / "sub" / "deeper" / "x", "x");
    ASSERT_EQ(::symlink("a.txt", (d_ / "link").c_str()), 0);
    stamp_mtimes(d_, 100);
  }
  fs::path d_;
};

TEST_F(List, NamesOnePerLineDirectoriesWithSlash) {
  auto r = run_xfer({"ls", S(d_)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_EQ(line_set(r.out), (std::set<std::string>{"a.txt", "b.bin", "link", "sub/"}))
      << r.describe();
  EXPECT_EQ(split_lines(r.out).size(), 4u) << r.describe();
}

TEST_F(List, ListCommandNameWorksToo) {
  auto r = run_xfer({"list", S(d_ / "sub")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_EQ(line_set(r.out), (std::set<std::string>{"deeper/", "inner.txt"})) << r.describe();
}

TEST_F(List, EmptyDirectoryPrintsNothing) {
  fs::create_directory(tmp() / "empty");
  auto r = run_xfer({"ls", S(tmp() / "empty")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_EQ(r.out, "") << r.describe();
}

TEST_F(List, LongFormat) {
  auto r = run_xfer({"ls", "-l", S(d_)});
  ASSERT_EXIT_CODE(r, 0);
  auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << r.describe();
  bool found_a = false;
  for (const auto& line : lines) {
    EXPECT_GE(tokens(line).size(), 4u) << "expected 'mode size mtime name': " << line;
    auto t = tokens(line);
    if (!t.empty() && t.back() == "a.txt" && line.find("->") == std::string::npos) {
      found_a = true;
      EXPECT_TRUE(has_token(line, "12345")) << "size missing: " << line;
      EXPECT_TRUE(has_token(line, "-rw-r-----") || has_token(line, "0640") ||
                  has_token(line, "640") || has_token(line, "100640"))
          << "mode 0640 missing: " << line;
    }
  }
  EXPECT_TRUE(found_a) << "no line ends with the name a.txt\n" << r.describe();
}

TEST_F(List, Recursive) {
  auto r = run_xfer({"ls", "-R", S(d_)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_EQ(line_set(r.out),
            (std::set<std::string>{"a.txt", "b.bin", "link", "sub/", "sub/inner.txt", "sub/deeper/",
                                   "sub/deeper/x"}))
      << r.describe();
}

// `xfer … | head -1`: once the reader has gone, xfer ends quietly with 141
// (as a program killed by SIGPIPE), for listings in every format and for a
// copy's --json lines — no "terminate called", no abort (134). A copy so
// ended leaves nothing under its final name and resumes.
TEST_F(List, ClosedPipeEndsOutputQuietly) {
  const fs::path many = tmp() / "many";
  fs::create_directories(many / "sub");
  for (int i = 0; i < 3000; ++i) {
    write_file(many / (i % 2 == 0 ? "sub" : "") / ("file-with-a-long-name-" + std::to_string(i)),
               "x");
  }
  const fs::path big = tmp() / "big.bin";
  write_random_file(big, 7, 8u << 20);
  const fs::path copy = tmp() / "copy.bin";
  // The exit status of xfer, the first command of the pipe, and its stderr.
  auto piped = [&](const std::string& args) {
    const std::string err = S(tmp() / "err.txt");
    return run({"bash", "-c",
                "'" + xfer_bin() + "' " + args + " 2>'" + err +
                    "' | head -1 >/dev/null; echo \"${PIPESTATUS[0]}\"; cat '" + err + "'"},
               60s);
  };
  for (const std::string& args :
       {"ls -R --json '" + S(many) + "'", "ls -R -l '" + S(many) + "'", "ls -R '" + S(many) + "'",
        "cp --json --bwlimit 2M '" + S(big) + "' '" + S(copy) + "'"}) {
    SCOPED_TRACE(args);
    auto r = piped(args);
    ASSERT_EXIT_CODE(r, 0);
    const auto lines = split_lines(r.out);
    ASSERT_FALSE(lines.empty()) << r.describe();
    EXPECT_EQ(lines[0], "141") << r.describe();
    EXPECT_EQ(r.out.find("terminate"), std::string::npos) << r.describe();
    EXPECT_EQ(r.out.find("Broken pipe"), std::string::npos) << r.describe();
  }
  // Every other command with output: stat of 1500 paths fills the pipe
  // and ends with 141; the short outputs (jobs, remote list, a completion
  // script) may fit the pipe's buffer and end with 0. Never a crash, never
  // a word on stderr.
  std::string paths;
  for (int i = 1; i < 3000; i += 2)
    paths += " '" + S(many / ("file-with-a-long-name-" + std::to_string(i))) + "'";
  for (const std::string& args : {"stat --json" + paths, "stat" + paths}) {
    auto r = piped(args);
    ASSERT_EXIT_CODE(r, 0);
    EXPECT_EQ(split_lines(r.out)[0], "141") << r.describe();
    EXPECT_EQ(split_lines(r.out).size(), 1u) << "stderr is quiet\n" << r.describe();
  }
  for (const std::string& args :
       {std::string("jobs --json --all"), std::string("jobs --all"), std::string("remote list"),
        std::string("completion fish"), std::string("completion bash"), std::string("--help")}) {
    SCOPED_TRACE(args);
    auto r = piped(args);
    ASSERT_EXIT_CODE(r, 0);
    const auto lines = split_lines(r.out);
    ASSERT_FALSE(lines.empty()) << r.describe();
    EXPECT_TRUE(lines[0] == "0" || lines[0] == "141") << r.describe();
    EXPECT_EQ(r.out.find("terminate"), std::string::npos) << r.describe();
    EXPECT_EQ(r.out.find("rror"), std::string::npos) << r.describe();
  }
  EXPECT_FALSE(fs::exists(copy)) << "a copy cut by the closed pipe is not under its final name";
  auto again = run_xfer({"cp", "--json", S(big), S(copy)});
  ASSERT_EXIT_CODE(again, 0);
  EXPECT_TRUE(files_equal(big, copy));
}

// Listings come sorted as ls sorts them (the backend's order is readdir's,
// a hash on ext4): by name; -S largest first; -t newest first; -r
// reverses; -h gives human sizes with -l, and `ls -lh` is not a request
// for help.
TEST_F(List, SortedByNameSizeOrTimeWithHumanSizes) {
  const fs::path d = tmp() / "sorted";
  fs::create_directories(d);
  write_file(d / "c", std::string(20000, 'c'));
  write_file(d / "a", "a");
  write_file(d / "b", "bb");
  set_mtime(d / "a", 1000000000, 0);
  set_mtime(d / "b", 1300000000, 0);
  set_mtime(d / "c", 1200000000, 0);
  auto names = [&](std::vector<std::string> flags) {
    flags.insert(flags.begin(), "ls");
    flags.push_back(S(d));
    auto r = run_xfer(flags);
    EXPECT_EXIT_CODE(r, 0);
    return split_lines(r.out);
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names({}), (V{"a", "b", "c"}));
  EXPECT_EQ(names({"-S"}), (V{"c", "b", "a"}));
  EXPECT_EQ(names({"-t"}), (V{"b", "c", "a"}));
  EXPECT_EQ(names({"-t", "-r"}), (V{"a", "c", "b"}));
  EXPECT_EQ(names({"-U"}).size(), 3u);
  auto lh = run_xfer({"ls", "-lh", S(d)});
  ASSERT_EXIT_CODE(lh, 0);
  const auto lines = split_lines(lh.out);
  ASSERT_EQ(lines.size(), 3u) << lh.describe();
  EXPECT_NE(lines[2].find("19.5 KiB"), std::string::npos) << lh.describe();
  EXPECT_EQ(lh.out.find("--help"), std::string::npos) << lh.describe();
  auto help = run_xfer({"ls", "--help"});
  EXPECT_EXIT_CODE(help, 0);
  EXPECT_NE(help.out.find("--human-readable"), std::string::npos) << help.describe();
}

TEST_F(List, RecursiveDoesNotFollowSymlinkedDirectories) {
  fs::path outside = tmp() / "outside";
  fs::create_directory(outside);
  write_file(outside / "should_not_be_listed", "x");
  ASSERT_EQ(::symlink(outside.c_str(), (d_ / "sub" / "to_outside").c_str()), 0);
  auto r = run_xfer({"ls", "-R", S(d_)}, 30s);
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_EQ(r.out.find("should_not_be_listed"), std::string::npos) << r.describe();
}

TEST_F(List, Json) {
  auto r = run_xfer({"ls", "--json", S(d_)});
  ASSERT_EXIT_CODE(r, 0);
  auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 4u) << "one JSON object per entry\n" << r.describe();
  for (const auto& line : lines) {
    std::string why;
    EXPECT_TRUE(is_json_object(line, &why)) << why << ": " << line;
  }
  for (const char* name : {"\"a.txt\"", "\"b.bin\"", "\"link\"", "\"sub"})
    EXPECT_NE(r.out.find(name), std::string::npos) << "missing " << name << "\n" << r.describe();
  EXPECT_NE(r.out.find("12345"), std::string::npos) << "size of a.txt missing\n" << r.describe();
}

TEST_F(List, JsonEscapesUnusualNames) {
  fs::path w = tmp() / "weird";
  fs::create_directory(w);
  const std::vector<std::string> names = {"new\nline", "quote\"d", "back\\slash",
                                          "tab\tx",    "日本語",   "ctrl\x01"};
  for (const auto& n : names) write_file(w / n, "x");
  auto r = run_xfer({"ls", "--json", S(w)});
  ASSERT_EXIT_CODE(r, 0);
  auto lines = split_lines(r.out);
  EXPECT_EQ(lines.size(), names.size())
      << "names must be escaped so that there is one line per entry\n"
      << r.describe();
  for (const auto& line : lines) {
    std::string why;
    EXPECT_TRUE(is_json_object(line, &why)) << why << ": " << line;
  }
  EXPECT_NE(r.out.find("new\\nline"), std::string::npos) << r.describe();
  EXPECT_NE(r.out.find("quote\\\"d"), std::string::npos) << r.describe();
}

TEST_F(List, RecursiveJson) {
  auto r = run_xfer({"ls", "-R", "--json", S(d_)});
  ASSERT_EXIT_CODE(r, 0);
  auto lines = split_lines(r.out);
  EXPECT_EQ(lines.size(), 7u) << r.describe();
  for (const auto& line : lines) {
    std::string why;
    EXPECT_TRUE(is_json_object(line, &why)) << why << ": " << line;
  }
  EXPECT_NE(r.out.find("deeper/x"), std::string::npos) << r.describe();
}

TEST_F(List, MissingPathFails) {
  auto r = run_xfer({"ls", S(tmp() / "nope")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "no such file")) << r.describe();
}

// ------------------------------------------------------------ stat

class Stat : public XferTest {};

TEST_F(Stat, RegularFile) {
  fs::path f = tmp() / "file.txt";
  write_file(f, std::string(4321, 'z'));
  ::chmod(f.c_str(), 0640);
  set_mtime(f, 1600000000, 123456789);
  auto r = run_xfer({"stat", S(f)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_NE(r.out.find("4321"), std::string::npos) << "size\n" << r.describe();
  // (The path holds "file" too: the type's own line is checked.)
  EXPECT_NE(r.out.find("type: file"), std::string::npos) << "type\n" << r.describe();
  EXPECT_TRUE(r.out.find("640") != std::string::npos ||
              r.out.find("rw-r-----") != std::string::npos)
      << "mode\n"
      << r.describe();
  // The mtime in some form: epoch seconds or a 2020 date.
  EXPECT_TRUE(r.out.find("1600000000") != std::string::npos ||
              r.out.find("2020") != std::string::npos)
      << "mtime\n"
      << r.describe();
}

TEST_F(Stat, DirectoryAndSymlink) {
  fs::create_directory(tmp() / "d");
  ASSERT_EQ(::symlink("some/target/path", (tmp() / "l").c_str()), 0);
  auto r = run_xfer({"stat", S(tmp() / "d"), S(tmp() / "l")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(icontains(r.out, "dir")) << r.describe();
  EXPECT_TRUE(icontains(r.out, "link")) << r.describe();
  EXPECT_NE(r.out.find("some/target/path"), std::string::npos) << "symlink target\n"
                                                               << r.describe();
}

TEST_F(Stat, Json) {
  fs::path f = tmp() / "file.txt";
  write_file(f, std::string(777, 'q'));
  auto r = run_xfer({"stat", "--json", S(f)});
  ASSERT_EXIT_CODE(r, 0);
  std::string out = r.out;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  std::string why;
  bool whole = is_json_object(out, &why);
  bool per_line = true;
  for (const auto& line : split_lines(r.out)) per_line = per_line && is_json_object(line);
  EXPECT_TRUE(whole || per_line) << "not JSON (" << why << ")\n" << r.describe();
  EXPECT_NE(r.out.find("777"), std::string::npos) << r.describe();
}

TEST_F(Stat, MissingPathFails) {
  auto r = run_xfer({"stat", S(tmp() / "missing")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "no such file")) << r.describe();
}

// ------------------------------------------------------------ mkdir

class Mkdir : public XferTest {};

TEST_F(Mkdir, CreatesDirectory) {
  auto r = run_xfer({"mkdir", S(tmp() / "new")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(tmp() / "new")));
  EXPECT_EQ(get_mode(tmp() / "new"), 0755u) << "0777 & ~umask(022)";
}

TEST_F(Mkdir, SeveralPaths) {
  auto r = run_xfer({"mkdir", S(tmp() / "a"), S(tmp() / "b c")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(fs::is_directory(tmp() / "a"));
  EXPECT_TRUE(fs::is_directory(tmp() / "b c"));
}

TEST_F(Mkdir, ParentsWithP) {
  auto r = run_xfer({"mkdir", "-p", S(tmp() / "x" / "y" / "z")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(fs::is_directory(tmp() / "x" / "y" / "z"));
  // -p on an existing directory is fine.
  auto r2 = run_xfer({"mkdir", "-p", S(tmp() / "x" / "y")});
  EXPECT_EXIT_CODE(r2, 0);
}

TEST_F(Mkdir, MissingParentFailsWithoutP) {
  auto r = run_xfer({"mkdir", S(tmp() / "nope" / "child")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "no such file")) << r.describe();
  EXPECT_FALSE(lexists(tmp() / "nope"));
}

TEST_F(Mkdir, ExistingFailsWithoutP) {
  fs::create_directory(tmp() / "there");
  auto r = run_xfer({"mkdir", S(tmp() / "there")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "exists")) << r.describe();
}

TEST_F(Mkdir, POverExistingFileFails) {
  write_file(tmp() / "file", "f");
  auto r = run_xfer({"mkdir", "-p", S(tmp() / "file" / "sub")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_EQ(read_file(tmp() / "file"), "f");
}

// ------------------------------------------------------------ touch

class Touch : public XferTest {};

TEST_F(Touch, CreatesEmptyFile) {
  auto r = run_xfer({"touch", S(tmp() / "new file")});
  ASSERT_EXIT_CODE(r, 0);
  ASSERT_TRUE(fs::is_regular_file(tmp() / "new file"));
  EXPECT_EQ(fs::file_size(tmp() / "new file"), 0u);
}

TEST_F(Touch, UpdatesMtimeKeepsContent) {
  fs::path f = tmp() / "old";
  write_file(f, "keep me");
  set_mtime(f, 1000000000, 5);
  fs::path d = tmp() / "olddir";
  fs::create_directory(d);
  set_mtime(d, 1000000000, 5);
  const std::time_t before = std::time(nullptr);
  auto r = run_xfer({"touch", S(f), S(d)});
  const std::time_t after = std::time(nullptr);
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_EQ(read_file(f), "keep me");
  for (const auto& p : {f, d}) {
    auto m = get_mtime(p);
    EXPECT_GE(m.tv_sec, before - 2) << p;
    EXPECT_LE(m.tv_sec, after + 2) << p;
  }
}

TEST_F(Touch, MissingParentFails) {
  auto r = run_xfer({"touch", S(tmp() / "no" / "file")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "no such file")) << r.describe();
}

// ------------------------------------------------------------ rename

class Rename : public XferTest {};

TEST_F(Rename, FileSameFilesystem) {
  fs::path a = tmp() / "a.bin", b = tmp() / "b.bin";
  std::mt19937_64 rng(200);
  const std::string content = random_bytes(rng, 100000);
  write_file(a, content);
  set_mtime(a, 1500000000, 77);
  auto r = run_xfer({"rename", S(a), S(b)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_FALSE(lexists(a));
  EXPECT_EQ(read_file(b), content);
  EXPECT_EQ(get_mtime(b).tv_nsec, 77);
}

TEST_F(Rename, Directory) {
  TreeSpec spec;
  spec.seed = 201;
  spec.files = 20;
  generate_tree(tmp() / "d1", spec);
  generate_tree(tmp() / "ref", spec);
  auto r = run_xfer({"rename", S(tmp() / "d1"), S(tmp() / "d2")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_FALSE(lexists(tmp() / "d1"));
  EXPECT_TRUE(compare_trees(tmp() / "ref", tmp() / "d2"));
}

TEST_F(Rename, ReplacesExistingFile) {
  write_file(tmp() / "a", "new");
  write_file(tmp() / "b", "old");
  auto r = run_xfer({"rename", S(tmp() / "a"), S(tmp() / "b")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_FALSE(lexists(tmp() / "a"));
  EXPECT_EQ(read_file(tmp() / "b"), "new");
}

TEST_F(Rename, AcrossDevicesFails) {
  ASSERT_OTHER_DEVICE(shm);
  write_file(shm / "f", "stays put");
  auto r = run_xfer({"rename", S(shm / "f"), S(tmp() / "f")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_EQ(read_file(shm / "f"), "stays put");
  EXPECT_FALSE(lexists(tmp() / "f"));
}

TEST_F(Rename, OntoNonEmptyDirectoryFails) {
  fs::create_directory(tmp() / "a");
  write_file(tmp() / "a" / "x", "a's");
  fs::create_directory(tmp() / "b");
  write_file(tmp() / "b" / "y", "b's");
  auto r = run_xfer({"rename", S(tmp() / "a"), S(tmp() / "b")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_EQ(read_file(tmp() / "a" / "x"), "a's");
  EXPECT_EQ(read_file(tmp() / "b" / "y"), "b's");
}

TEST_F(Rename, MissingSourceFails) {
  auto r = run_xfer({"rename", S(tmp() / "a"), S(tmp() / "b")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "no such file")) << r.describe();
  EXPECT_FALSE(lexists(tmp() / "b"));
}

// ------------------------------------------------------------ move

class Move : public XferTest {};

TEST_F(Move, FileSameFilesystem) {
  std::mt19937_64 rng(300);
  const std::string content = random_bytes(rng, 123456);
  write_file(tmp() / "a", content);
  auto r = run_xfer({"move", S(tmp() / "a"), S(tmp() / "b")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_FALSE(lexists(tmp() / "a"));
  EXPECT_EQ(read_file(tmp() / "b"), content);
}

TEST_F(Move, IntoExistingDirectory) {
  write_file(tmp() / "a", "aaa");
  write_file(tmp() / "b", "bbb");
  fs::create_directory(tmp() / "dir");
  auto r = run_xfer({"mv", S(tmp() / "a"), S(tmp() / "b"), S(tmp() / "dir")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_FALSE(lexists(tmp() / "a"));
  EXPECT_FALSE(lexists(tmp() / "b"));
  EXPECT_EQ(read_file(tmp() / "dir" / "a"), "aaa");
  EXPECT_EQ(read_file(tmp() / "dir" / "b"), "bbb");
}

TEST_F(Move, FileAcrossDevices) {
  // tmpfs -> the test dir (another device): copy + delete.
  ASSERT_OTHER_DEVICE(shm);

  std::mt19937_64 rng(301);
  const std::string content = random_bytes(rng, (3 << 20) + 5);
  write_file(shm / "big.bin", content);
  ::chmod((shm / "big.bin").c_str(), 0751);
  set_mtime(shm / "big.bin", 1555555555, 555);
  auto r = run_xfer({"mv", S(shm / "big.bin"), S(tmp() / "moved.bin")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_FALSE(lexists(shm / "big.bin")) << "source still there";
  ASSERT_TRUE(lexists(tmp() / "moved.bin"));
  EXPECT_EQ(read_file(tmp() / "moved.bin"), content);
  EXPECT_EQ(get_mode(tmp() / "moved.bin"), 0751u);
  EXPECT_EQ(get_mtime(tmp() / "moved.bin").tv_sec, 1555555555);
  EXPECT_EQ(get_mtime(tmp() / "moved.bin").tv_nsec, 555);
  EXPECT_EQ(count_entries(shm), 0u);
}

TEST_F(Move, TreeAcrossDevices) {
  ASSERT_OTHER_DEVICE(shm);
  TreeSpec spec;
  spec.seed = 302;
  spec.dirs = 8;
  spec.files = 60;
  spec.max_size = 50000;
  spec.symlinks = 4;
  spec.empty_dirs = 2;
  generate_tree(shm / "tree", spec);
  generate_tree(tmp() / "reference", spec);
  auto r = run_xfer({"move", S(shm / "tree"), S(tmp() / "tree")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_FALSE(lexists(shm / "tree")) << "source tree still there";
  EXPECT_TRUE(compare_trees(tmp() / "reference", tmp() / "tree"));
}

TEST_F(Move, IntoOwnSubdirectoryRefused) {
  TreeSpec spec;
  spec.seed = 303;
  spec.files = 30;
  generate_tree(tmp() / "tree", spec);
  generate_tree(tmp() / "reference", spec);
  auto r = run_xfer({"mv", S(tmp() / "tree"), S(tmp() / "tree" / "d0000")}, 60s);
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(compare_trees(tmp() / "reference", tmp() / "tree"));
}

TEST_F(Move, AcrossDevicesFailureLosesNothing) {
  // Moving a 12 MiB tree from /dev/shm into an 8 MiB tmpfs must fail, and
  // every file must still exist complete on one side or the other
  // (normally: the whole source is still there).
  fs::path shm = make_temp_dir_under("/dev/shm");
  auto mnt = mount_tmpfs("small", "size=8m");
  if (!mnt) GTEST_SKIP() << "cannot mount tmpfs here: " << std::strerror(errno);
  TreeSpec spec;
  spec.seed = 304;
  spec.dirs = 4;
  spec.files = 24;
  spec.min_size = 512 * 1024;
  spec.max_size = 512 * 1024;
  generate_tree(shm / "tree", spec);
  generate_tree(tmp() / "reference", spec);
  auto r = run_xfer({"mv", S(shm / "tree"), S(*mnt / "tree")}, 60s);
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(icontains(r.err, "No space left")) << r.describe();
  for (const auto& rel : list_relative(tmp() / "reference")) {
    fs::path ref = tmp() / "reference" / rel;
    if (!fs::is_regular_file(fs::symlink_status(ref))) continue;
    bool in_src = lexists(shm / "tree" / rel) && files_equal(ref, shm / "tree" / rel);
    bool in_dst = lexists(*mnt / "tree" / rel) && files_equal(ref, *mnt / "tree" / rel);
    EXPECT_TRUE(in_src || in_dst) << "data lost: " << rel;
  }
}

TEST_F(Move, MissingSourceFails) {
  auto r = run_xfer({"mv", S(tmp() / "ghost"), S(tmp() / "b")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "no such file")) << r.describe();
  EXPECT_FALSE(lexists(tmp() / "b"));
}

// ------------------------------------------------------------ rm

class Rm : public XferTest {};

TEST_F(Rm, File) {
  write_file(tmp() / "f", "f");
  write_file(tmp() / "g h", "g");
  auto r = run_xfer({"rm", S(tmp() / "f"), S(tmp() / "g h")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_FALSE(lexists(tmp() / "f"));
  EXPECT_FALSE(lexists(tmp() / "g h"));
}

TEST_F(Rm, DirectoryWithoutRFails) {
  fs::create_directories(tmp() / "d" / "sub");
  write_file(tmp() / "d" / "x", "x");
  auto r = run_xfer({"rm", S(tmp() / "d")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(lexists(tmp() / "d" / "x"));
  EXPECT_TRUE(lexists(tmp() / "d" / "sub"));
}

TEST_F(Rm, RecursiveRemovesTreeButNotSymlinkTargets) {
  TreeSpec spec;
  spec.seed = 400;
  spec.dirs = 10;
  spec.files = 100;
  spec.symlinks = 5;
  spec.empty_dirs = 3;
  generate_tree(tmp() / "tree", spec);
  ::chmod((tmp() / "tree" / "d0000").c_str(), 0555);  // read-only dir inside
  fs::path outside = tmp() / "outside";
  fs::create_directory(outside);
  write_file(outside / "precious", "do not delete");
  ASSERT_EQ(::symlink(outside.c_str(), (tmp() / "tree" / "to_outside").c_str()), 0);

  auto r = run_xfer({"rm", "-r", S(tmp() / "tree")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_FALSE(lexists(tmp() / "tree"));
  EXPECT_EQ(read_file(outside / "precious"), "do not delete");
}

TEST_F(Rm, SymlinkToDirectoryRemovesOnlyTheLink) {
  fs::create_directory(tmp() / "real");
  write_file(tmp() / "real" / "f", "f");
  ASSERT_EQ(::symlink("real", (tmp() / "link").c_str()), 0);
  auto r = run_xfer({"rm", S(tmp() / "link")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_FALSE(lexists(tmp() / "link"));
  EXPECT_EQ(read_file(tmp() / "real" / "f"), "f");
}

TEST_F(Rm, MissingFails) {
  auto r = run_xfer({"rm", S(tmp() / "none")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "no such file")) << r.describe();
}

}  // namespace
}  // namespace xfer_it
