// Integration tests of `xfer transfer` / `xfer cp`, run against the real
// binary ($XFER_BIN). See docs/cli.md for the behaviour under test.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "harness.hpp"
#include "xferd_harness.hpp"

#include <optional>

namespace xfer_it {
namespace {

using namespace std::chrono_literals;

class Transfer : public XferTest {};

#define EXPECT_EXIT_CODE(res, code) EXPECT_EQ((res).exit_code, (code)) << (res).describe()
#define ASSERT_EXIT_CODE(res, code) ASSERT_EQ((res).exit_code, (code)) << (res).describe()

std::string S(const fs::path& p) {
  return p.string();
}

// ------------------------------------------------------------ basic copies

TEST_F(Transfer, SingleFileCopy) {
  fs::path src = tmp() / "src.bin";
  std::mt19937_64 rng(11);
  write_file(src, random_bytes(rng, (1 << 20) + 17));
  ::chmod(src.c_str(), 0640);
  set_mtime(src, 1234567890, 123456789);
  fs::path dst = tmp() / "dst.bin";

  auto r = run_xfer({"cp", S(src), S(dst)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, dst));
}

// scp's habit: `xfer cp big.iso myserver:backup.iso` means a remote. A
// name that is no configured remote is refused with a message saying how
// to write a local file with a colon; it never becomes ./myserver:backup.iso.
TEST_F(Transfer, HostColonPathIsARemoteNeverALocalFile) {
  write_file(tmp() / "a.txt", "hello\n");
  auto r = run_xfer({"cp", "a.txt", "myserver:backup.txt"}, 60s, nullptr, S(tmp()));
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "'myserver' is not a configured remote")) << r.describe();
  EXPECT_TRUE(icontains(r.err, "./myserver:backup.txt")) << r.describe();
  EXPECT_FALSE(fs::exists(tmp() / "myserver:backup.txt"));
  auto listed = run_xfer({"ls", "myserver:"}, 60s, nullptr, S(tmp()));
  EXPECT_EXIT_CODE(listed, 1);
  // Written with ./ it is a local name like any other.
  auto local = run_xfer({"cp", "a.txt", "./myserver:backup.txt"}, 60s, nullptr, S(tmp()));
  ASSERT_EXIT_CODE(local, 0);
  EXPECT_TRUE(files_equal(tmp() / "a.txt", tmp() / "myserver:backup.txt"));
}

// The summary counts what a dry run would move, and speaks English.
TEST_F(Transfer, SummaryCountsDryRunBytesAndSaysOneFile) {
  write_file(tmp() / "one.txt", "12345");
  fs::create_directories(tmp() / "d");
  write_file(tmp() / "d" / "a.bin", std::string(1000, 'a'));
  write_file(tmp() / "d" / "b.bin", std::string(234, 'b'));
  auto dry = run_xfer({"cp", "-r", "--dry-run", S(tmp() / "d"), S(tmp() / "new")});
  ASSERT_EXIT_CODE(dry, 0);
  EXPECT_TRUE(icontains(dry.err, "would have copied 2 files (1234 bytes)")) << dry.describe();
  EXPECT_FALSE(fs::exists(tmp() / "new"));
  auto one = run_xfer({"cp", S(tmp() / "one.txt"), S(tmp() / "two.txt")});
  ASSERT_EXIT_CODE(one, 0);
  EXPECT_TRUE(icontains(one.err, "copied 1 file (5 bytes)")) << one.describe();
  EXPECT_TRUE(icontains(one.err, ", 0 errors")) << one.describe();
}

TEST_F(Transfer, TransferCommandNameWorksToo) {
  fs::path src = tmp() / "a.txt";
  write_file(src, "hello, xfer\n");
  fs::path dst = tmp() / "b.txt";
  auto r = run_xfer({"transfer", S(src), S(dst)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, dst));
}

TEST_F(Transfer, SingleFileIntoExistingDirectory) {
  fs::path src = tmp() / "file.dat";
  std::mt19937_64 rng(12);
  write_file(src, random_bytes(rng, 100000));
  set_mtime(src, 1600000000, 1);
  fs::path dir = tmp() / "dest";
  fs::create_directory(dir);

  auto r = run_xfer({"cp", S(src), S(dir)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, dir / "file.dat"));
  EXPECT_EQ(list_relative(dir), std::vector<std::string>{"file.dat"});
}

TEST_F(Transfer, SingleFileReplacesExistingFile) {
  fs::path src = tmp() / "new.bin";
  std::mt19937_64 rng(13);
  write_file(src, random_bytes(rng, 5000));
  set_mtime(src, 1500000000, 999999999);
  fs::path dst = tmp() / "old.bin";
  write_file(dst, random_bytes(rng, 300000));  // larger: must be truncated
  ::chmod(dst.c_str(), 0600);

  auto r = run_xfer({"cp", S(src), S(dst)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, dst));
}

TEST_F(Transfer, ZeroByteFiles) {
  fs::path one = tmp() / "empty.bin";
  write_file(one, "");
  set_mtime(one, 1400000000, 42);
  auto r = run_xfer({"cp", S(one), S(tmp() / "empty.copy")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(one, tmp() / "empty.copy"));

  TreeSpec spec;
  spec.seed = 14;
  spec.dirs = 5;
  spec.files = 50;
  spec.min_size = 0;
  spec.max_size = 0;
  generate_tree(tmp() / "zeros", spec);
  auto r2 = run_xfer({"cp", "-r", S(tmp() / "zeros"), S(tmp() / "zeros.copy")});
  ASSERT_EXIT_CODE(r2, 0);
  EXPECT_TRUE(compare_trees(tmp() / "zeros", tmp() / "zeros.copy"));
}

TEST_F(Transfer, ChunkBoundarySizes) {
  // Sizes around the chunk size catch off-by-one errors in chunking.
  fs::path src = tmp() / "src";
  fs::create_directory(src);
  const std::size_t K = 64 * 1024;
  const std::size_t sizes[] = {1, 4095, 4096, 4097, K - 1, K, K + 1, 3 * K, 3 * K + 1, 16 * K - 1};
  std::mt19937_64 rng(15);
  for (std::size_t s : sizes) write_file(src / ("size_" + std::to_string(s)), random_bytes(rng, s));
  stamp_mtimes(src, 15);

  auto r = run_xfer({"cp", "-r", "--chunk-size", "64K", "--workers", "3", "--memory", "8M", S(src),
                     S(tmp() / "dst")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, tmp() / "dst"));
}

TEST_F(Transfer, FlagsWithSizeSuffixesAccepted) {
  TreeSpec spec;
  spec.seed = 16;
  spec.files = 30;
  spec.max_size = 300000;
  generate_tree(tmp() / "src", spec);
  auto r = run_xfer({"cp", "-r", "--workers", "2", "--chunk-size", "1M", "--memory", "64M",
                     "--bwlimit", "1G", "--no-progress", S(tmp() / "src"), S(tmp() / "dst")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "dst"));
}

TEST_F(Transfer, FsyncFlag) {
  TreeSpec spec;
  spec.seed = 17;
  spec.files = 20;
  spec.max_size = 200000;
  generate_tree(tmp() / "src", spec);
  auto r = run_xfer({"cp", "-r", "--fsync", S(tmp() / "src"), S(tmp() / "dst")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "dst"));
}

TEST_F(Transfer, DirectIoWithUnalignedSizes) {
  // O_DIRECT needs aligned buffers/offsets/lengths; the tail of a file whose
  // size is not a multiple of the block size must still be copied exactly.
  fs::path src = tmp() / "src";
  fs::create_directory(src);
  std::mt19937_64 rng(18);
  const std::size_t sizes[] = {0, 1, 511, 4095, 4097, (1u << 20) + 3, (5u << 20) + 4096 + 7};
  for (std::size_t s : sizes) write_file(src / ("f" + std::to_string(s)), random_bytes(rng, s));
  stamp_mtimes(src, 18);
  auto r = run_xfer({"cp", "-r", "--direct", S(src), S(tmp() / "dst")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, tmp() / "dst"));
}

TEST_F(Transfer, SummaryLineOnStderr) {
  fs::path src = tmp() / "src";
  fs::create_directory(src);
  std::size_t total = 0;
  for (int i = 0; i < 5; ++i) {
    std::string content(1000 * (i + 1), static_cast<char>('a' + i));
    total += content.size();
    write_file(src / ("f" + std::to_string(i)), content);
  }
  auto r = run_xfer({"cp", "-r", S(src), S(tmp() / "dst")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_NE(r.err.find("xfer: copied 5 files ("), std::string::npos)
      << "expected the summary line 'xfer: copied N files (S bytes) in T s, "
         "R/s, E errors'\n"
      << r.describe();
  // docs/cli.md: "(S bytes)": the byte count, in bytes.
  const std::string bytes = "(" + std::to_string(total) + " bytes)";
  EXPECT_NE(r.err.find(bytes), std::string::npos)
      << "expected '" << bytes << "' in the summary line\n"
      << r.describe();
  EXPECT_NE(r.err.find("0 errors"), std::string::npos) << r.describe();
}

// ------------------------------------------------------------ large / many

TEST_F(Transfer, SparseFile3GiB) {
  const std::uint64_t kSize = 3ull << 30;
  fs::path src = tmp() / "sparse.img";
  {
    int fd = ::open(src.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(kSize)), 0);
    std::mt19937_64 rng(19);
    const std::uint64_t offsets[] = {0,
                                     (1ull << 20) - 100,  // straddles 1 MiB
                                     (1ull << 30) + 123,
                                     (2ull << 30) + (7ull << 20),
                                     kSize - 4096 - 5000,
                                     kSize - 333};
    for (std::uint64_t off : offsets) {
      std::size_t len =
          static_cast<std::size_t>(std::min<std::uint64_t>(200000 + rng() % 100000, kSize - off));
      std::string data = random_bytes(rng, len);
      ASSERT_EQ(::pwrite(fd, data.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len));
    }
    ::close(fd);
  }
  set_mtime(src, 1700000000, 555555555);
  fs::path dst = tmp() / "sparse.copy";

  auto r = run_xfer({"cp", S(src), S(dst)}, 300s);
  ASSERT_EXIT_CODE(r, 0);
  ASSERT_EQ(lsize(dst), kSize);
  // The holes stayed holes: no more allocated than the source (plus a few
  // blocks of extent tree).
  EXPECT_LE(allocated_bytes(dst), allocated_bytes(src) + (64u << 10));
  // Bytes compared in 1 MiB blocks (holes must read back as zeros).
  EXPECT_TRUE(files_equal(src, dst));
  EXPECT_EQ(get_mode(dst), 0644u);
  auto m = get_mtime(dst);
  EXPECT_EQ(m.tv_sec, 1700000000);
  EXPECT_EQ(m.tv_nsec, 555555555);
  struct stat st;
  ASSERT_EQ(::stat(dst.c_str(), &st), 0);
  RecordProperty("dst_allocated_bytes", std::to_string(st.st_blocks * 512));
  std::printf("[info] sparse copy took %.2f s, destination allocates %lld bytes\n", r.seconds,
              static_cast<long long>(st.st_blocks) * 512);
}

// 200 MiB with 8 KiB of data (two 4 KiB blocks, one straddling a 1 MiB
// piece boundary) and 1 MiB of written zeros: the copy reads only the data
// extents, leaves zero blocks unwritten, and allocates at most 64 KiB.
TEST_F(Transfer, SparseFileKeepsItsHolesAtBlockSize) {
  const fs::path src = tmp() / "holes.img";
  ASSERT_NO_FATAL_FAILURE(write_sparse_file(src, 200ull << 20, {(5ull << 20) - 2048, 150ull << 20},
                                            4096, 80ull << 20, 1 << 20));
  ASSERT_GE(allocated_bytes(src), 1u << 20) << "the written zeros are allocated";
  const fs::path dst = tmp() / "holes.copy";
  auto r = run_xfer({"cp", S(src), S(dst)}, 120s);
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(files_equal(src, dst));
  EXPECT_LE(allocated_bytes(dst), 64u << 10);
}

TEST_F(Transfer, TwentyThousandTinyFiles) {
  TreeSpec spec;
  spec.seed = 20;
  spec.dirs = 200;
  spec.max_depth = 3;
  spec.files = 20000;
  spec.min_size = 1;
  spec.max_size = 24;
  spec.symlinks = 20;
  spec.empty_dirs = 10;
  generate_tree(tmp() / "src", spec);

  auto r = run_xfer({"cp", "-r", S(tmp() / "src"), S(tmp() / "dst")}, 180s);
  ASSERT_EXIT_CODE(r, 0);
  CompareOptions opt;
  opt.max_diffs = 20;
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "dst", opt));
  std::printf("[info] 20,000 files copied in %.2f s\n", r.seconds);
}

TEST_F(Transfer, DeepNesting100Levels) {
  fs::path src = tmp() / "deep";
  fs::path cur = src;
  fs::create_directory(cur);
  std::mt19937_64 rng(21);
  for (int i = 0; i < 100; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "level_%03d", i);
    cur /= name;
    fs::create_directory(cur);
    write_file(cur / "f.txt", random_bytes(rng, static_cast<std::size_t>(i)));
  }
  ASSERT_EQ(::symlink("../../../level_097", (cur / "up").c_str()), 0);
  stamp_mtimes(src, 21);

  auto r = run_xfer({"cp", "-r", S(src), S(tmp() / "deep.copy")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, tmp() / "deep.copy"));
}

TEST_F(Transfer, UnusualNames) {
  fs::path src = tmp() / "src dir ñ";
  fs::create_directory(src);
  const std::vector<std::string> names = {
      "with space",
      " leading space",
      "trailing space ",
      "unicode_日本語_ñ_🚀",
      "new\nline",
      "tab\tname",
      "quote\"s'single",
      "back\\slash",
      "-dash",
      "--double-dash",
      "*glob?[x]",
      "$HOME",
      "%s%n%d",
      "ends.with.dot.",
      ".hidden",
      "latin1_\xe9_not_utf8",
      std::string(251, 'n') + ".bin",  // 255 bytes: NAME_MAX
  };
  for (const auto& n : names) write_file(src / n, "content of " + n);
  fs::create_directories(src / "dir with space" / "sub\nnewline" / "日本");
  write_file(src / "dir with space" / "sub\nnewline" / "日本" / "x y", "xy");
  ASSERT_EQ(::symlink("with space", (src / "link to space").c_str()), 0);
  ASSERT_EQ(::symlink("new\nline", (src / "link\nto newline").c_str()), 0);
  stamp_mtimes(src, 22);

  fs::path dst = tmp() / "dst 目的地";
  auto r = run_xfer({"cp", "-r", S(src), S(dst)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, dst));
}

TEST_F(Transfer, ReplaceExistingFileWithLongName) {
  // Replacing an existing destination (e.g. re-running a copy) must work
  // for names up to NAME_MAX (255 bytes), whatever temporary name is used.
  for (std::size_t len : {200u, 240u, 255u}) {
    SCOPED_TRACE("name length " + std::to_string(len));
    const std::string name(len, 'L');
    fs::path src = tmp() / "src";
    fs::path dst = tmp() / "dst";
    fs::create_directories(src);
    fs::create_directories(dst);
    write_file(src / name, "first version");
    auto r1 = run_xfer({"cp", S(src / name), S(dst / name)});
    ASSERT_EXIT_CODE(r1, 0);
    write_file(src / name, "second version, longer");
    auto r2 = run_xfer({"cp", S(src / name), S(dst / name)});
    EXPECT_EXIT_CODE(r2, 0);
    EXPECT_TRUE(compare_trees(src / name, dst / name));
    // The same through a tree copy, run twice (the second run replaces).
    fs::path out = tmp() / "out";
    auto r3 = run_xfer({"cp", "-r", S(src), S(out) + "/"});
    EXPECT_EXIT_CODE(r3, 0);
    write_file(src / name, "third");
    auto r4 = run_xfer({"cp", "-r", S(src), S(out) + "/"});
    EXPECT_EXIT_CODE(r4, 0);
    EXPECT_TRUE(compare_trees(src, out / "src"));
    fs::remove_all(out);
    std::error_code ec;
    fs::remove_all(src, ec);
    fs::remove_all(dst, ec);
  }
}

TEST_F(Transfer, EmptyDirectoryCopy) {
  fs::path src = tmp() / "empty";
  fs::create_directory(src);
  ::chmod(src.c_str(), 0710);
  set_mtime(src, 1450000000, 450000000);
  auto r = run_xfer({"cp", "-r", S(src), S(tmp() / "copy")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, tmp() / "copy"));
}

// ------------------------------------------------------------ metadata

TEST_F(Transfer, SymlinksCopiedAsSymlinks) {
  fs::path src = tmp() / "src";
  fs::create_directories(src / "sub");
  write_file(src / "target.txt", "target");
  write_file(src / "sub" / "inner.txt", "inner");
  fs::path outside = tmp() / "outside";
  fs::create_directory(outside);
  write_file(outside / "secret.txt", "must not be copied");

  auto mk = [&](const std::string& target, const fs::path& link) {
    ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0) << link;
  };
  mk("target.txt", src / "rel_file");
  mk("sub", src / "rel_dir");
  mk("../target.txt", src / "sub" / "rel_up");
  mk(S(src / "target.txt"), src / "abs_file");
  mk(S(outside), src / "abs_dir_outside");  // must not be followed
  mk("does/not/exist", src / "dangling_rel");
  mk("/nonexistent/xfer/test/path", src / "dangling_abs");
  mk("rel_file", src / "link_to_link");
  mk("loop_b", src / "loop_a");
  mk("loop_a", src / "loop_b");
  mk(".", src / "sub" / "self_dir");
  stamp_mtimes(src, 23);

  fs::path dst = tmp() / "dst";
  auto r = run_xfer({"cp", "-r", S(src), S(dst)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, dst));
  // Absolute targets are kept verbatim (still pointing into src / outside).
  EXPECT_TRUE(fs::is_symlink(dst / "abs_dir_outside"));
}

TEST_F(Transfer, SymlinkMtimesPreserved) {
  // The spec promises nanosecond mtimes; cp -a also keeps symlinks' mtimes.
  fs::path src = tmp() / "src";
  fs::create_directory(src);
  write_file(src / "t", "t");
  ASSERT_EQ(::symlink("t", (src / "l").c_str()), 0);
  ASSERT_EQ(::symlink("/nowhere", (src / "d").c_str()), 0);
  stamp_mtimes(src, 24);
  auto r = run_xfer({"cp", "-r", S(src), S(tmp() / "dst")});
  ASSERT_EXIT_CODE(r, 0);
  CompareOptions opt;
  opt.compare_symlink_mtime = true;
  EXPECT_TRUE(compare_trees(src, tmp() / "dst", opt));
}

TEST_F(Transfer, ModesPreserved) {
  fs::path src = tmp() / "src";
  fs::create_directories(src / "private");
  fs::create_directories(src / "readonly_dir");
  write_file(src / "ro.txt", "read only");
  write_file(src / "exec.sh", "#!/bin/sh\necho hi\n");
  write_file(src / "secret", "0600");
  write_file(src / "nobody", "0000");
  write_file(src / "private" / "in.txt", "x");
  write_file(src / "readonly_dir" / "child.txt", "child of a 0555 dir");
  ::chmod((src / "ro.txt").c_str(), 0444);
  ::chmod((src / "exec.sh").c_str(), 0755);
  ::chmod((src / "secret").c_str(), 0600);
  ::chmod((src / "nobody").c_str(), 0000);
  ::chmod((src / "private").c_str(), 0700);
  ::chmod((src / "readonly_dir").c_str(), 0555);
  stamp_mtimes(src, 25);

  auto r = run_xfer({"cp", "-r", S(src), S(tmp() / "dst")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, tmp() / "dst"));
  EXPECT_EQ(get_mode(tmp() / "dst" / "ro.txt"), 0444u);
  EXPECT_EQ(get_mode(tmp() / "dst" / "exec.sh"), 0755u);
}

TEST_F(Transfer, SpecialModeBitsPreserved) {
  // setgid / sticky directories and a setuid file: st_mode & 07777.
  fs::path src = tmp() / "src";
  fs::create_directories(src / "sticky");
  fs::create_directories(src / "setgid");
  write_file(src / "setuid_bin", "not really a binary");
  ::chmod((src / "sticky").c_str(), 01777);
  ::chmod((src / "setgid").c_str(), 02755);
  ::chmod((src / "setuid_bin").c_str(), 04755);
  stamp_mtimes(src, 26);
  auto r = run_xfer({"cp", "-r", S(src), S(tmp() / "dst")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, tmp() / "dst"));
}

// ------------------------------------------------------------ cp semantics

class TransferTree : public Transfer {
 protected:
  void SetUp() override {
    Transfer::SetUp();
    if (HasFatalFailure()) return;
    spec_.seed = 30;
    spec_.dirs = 12;
    spec_.files = 80;
    spec_.max_size = 70000;
    spec_.symlinks = 5;
    spec_.empty_dirs = 3;
    generate_tree(tmp() / "src", spec_);
    generate_tree(tmp() / "reference", spec_);  // identical twin
  }
  TreeSpec spec_;
};

TEST_F(TransferTree, RecursiveToNewDirectory) {
  // DST does not exist: DST becomes the copy of SRC.
  auto r = run_xfer({"cp", "-r", S(tmp() / "src"), S(tmp() / "new")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "new"));
  EXPECT_FALSE(lexists(tmp() / "new" / "src"));
  // The source is left untouched.
  EXPECT_TRUE(compare_trees(tmp() / "reference", tmp() / "src"));
}

TEST_F(TransferTree, RecursiveLongFlag) {
  auto r = run_xfer({"cp", "--recursive", S(tmp() / "src"), S(tmp() / "new")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "new"));
}

TEST_F(TransferTree, RecursiveIntoExistingDirectory) {
  // DST is an existing directory: SRC is copied to DST/<basename of SRC>.
  fs::path dst = tmp() / "existing";
  fs::create_directory(dst);
  write_file(dst / "bystander.txt", "stays");
  auto r = run_xfer({"cp", "-r", S(tmp() / "src"), S(dst)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(tmp() / "src", dst / "src"));
  auto top = list_relative(dst);
  std::set<std::string> top_level;
  for (const auto& e : top)
    if (e.find('/') == std::string::npos) top_level.insert(e);
  EXPECT_EQ(top_level, (std::set<std::string>{"bystander.txt", "src"}));
  EXPECT_EQ(read_file(dst / "bystander.txt"), "stays");
}

TEST_F(TransferTree, TrailingSlashCreatesMissingDirectory) {
  // DST ends in '/': a missing DST directory is created, SRC goes inside.
  fs::path dst = tmp() / "made";
  auto r = run_xfer({"cp", "-r", S(tmp() / "src"), S(dst) + "/"});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(tmp() / "src", dst / "src"));
  EXPECT_EQ(count_entries(dst), count_entries(tmp() / "src") + 1);
}

TEST_F(TransferTree, SeveralSourcesIntoMissingDirectory) {
  write_file(tmp() / "loose.txt", "loose file");
  set_mtime(tmp() / "loose.txt", 1300000000, 7);
  fs::path dst = tmp() / "multi";
  auto r = run_xfer({"cp", "-r", S(tmp() / "src"), S(tmp() / "loose.txt"), S(dst)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(tmp() / "src", dst / "src"));
  EXPECT_TRUE(compare_trees(tmp() / "loose.txt", dst / "loose.txt"));
  EXPECT_EQ(count_entries(dst), count_entries(tmp() / "src") + 2);
}

TEST_F(TransferTree, RecopyOverwritesChangedFiles) {
  fs::path parent = tmp() / "parent";
  fs::create_directory(parent);
  auto r = run_xfer({"cp", "-r", S(tmp() / "src"), S(parent) + "/"});
  ASSERT_EXIT_CODE(r, 0);
  ASSERT_TRUE(compare_trees(tmp() / "src", parent / "src"));

  // Change every source file in place: new contents (shorter, empty and
  // longer), new modes, new mtimes. Names stay the same.
  std::mt19937_64 rng(31);
  int i = 0;
  for (const auto& rel : list_relative(tmp() / "src")) {
    fs::path p = tmp() / "src" / rel;
    if (!fs::is_regular_file(fs::symlink_status(p))) continue;
    std::size_t size = i % 5 == 0 ? 150000 : i % 3 == 0 ? 0 : rng() % 20000;
    ::chmod(p.c_str(), 0644);
    write_file(p, random_bytes(rng, size));
    ::chmod(p.c_str(), i % 2 ? 0600 : 0755);
    ++i;
  }
  stamp_mtimes(tmp() / "src", 32);
  auto r2 = run_xfer({"cp", "-r", S(tmp() / "src"), S(parent) + "/"});
  ASSERT_EXIT_CODE(r2, 0);
  // Names are the same in both generations (same counts), so a full compare
  // checks every file was replaced.
  EXPECT_TRUE(compare_trees(tmp() / "src", parent / "src"));
}

TEST_F(TransferTree, DirectoryWithoutRecursiveFails) {
  auto r = run_xfer({"cp", S(tmp() / "src"), S(tmp() / "dst")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "is a directory")) << r.describe();
  EXPECT_FALSE(lexists(tmp() / "dst"));
}

// ------------------------------------------------------------ errors

TEST_F(Transfer, MissingSourceFails) {
  fs::path missing = tmp() / "no_such_thing";
  fs::path dst = tmp() / "dst";
  auto r = run_xfer({"cp", S(missing), S(dst)});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "no such file")) << r.describe();
  EXPECT_NE(r.err.find("no_such_thing"), std::string::npos) << "the error should name the path\n"
                                                            << r.describe();
  EXPECT_FALSE(lexists(dst));

  // Same with -r and an existing destination directory: nothing created.
  fs::path dir = tmp() / "dir";
  fs::create_directory(dir);
  auto r2 = run_xfer({"cp", "-r", S(missing), S(dir)});
  EXPECT_EXIT_CODE(r2, 1);
  EXPECT_TRUE(icontains(r2.err, "no such file")) << r2.describe();
  EXPECT_EQ(count_entries(dir), 0u);
}

TEST_F(Transfer, ErrorLineFormat) {
  auto r = run_xfer({"cp", S(tmp() / "gone.txt"), S(tmp() / "x")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_NE(r.err.find("xfer: error: "), std::string::npos)
      << "errors go to stderr as 'xfer: error: <operation> <path>: <reason>'\n"
      << r.describe();
}

TEST_F(Transfer, OneMissingSourceAmongSeveralIsPartialFailure) {
  write_file(tmp() / "present.txt", "here");
  fs::path dst = tmp() / "out";
  fs::create_directory(dst);
  auto r = run_xfer({"cp", S(tmp() / "present.txt"), S(tmp() / "absent.txt"), S(dst)});
  // Exit code 3: some files were copied, some failed.
  EXPECT_EXIT_CODE(r, 3);
  EXPECT_TRUE(icontains(r.err, "no such file")) << r.describe();
  EXPECT_TRUE(compare_trees(tmp() / "present.txt", dst / "present.txt"));
  EXPECT_FALSE(lexists(dst / "absent.txt"));
}

TEST_F(TransferTree, DestinationInsideSourceRefused) {
  fs::path src = tmp() / "src";
  auto r = run_xfer({"cp", "-r", S(src), S(src / "d0000" / "copy")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "inside the source")) << r.describe();
  EXPECT_FALSE(lexists(src / "d0000" / "copy"));

  // `cp -r src src`: DST is an existing dir, so the target is src/src.
  auto r2 = run_xfer({"cp", "-r", S(src), S(src)});
  EXPECT_EXIT_CODE(r2, 1);
  EXPECT_TRUE(icontains(r2.err, "inside the source")) << r2.describe();
  EXPECT_FALSE(lexists(src / "src"));
  EXPECT_TRUE(compare_trees(tmp() / "reference", src));
}

TEST_F(TransferTree, DestinationInsideSourceViaSymlinkRefused) {
  // tmp/alias -> tmp/src; copying src to alias/copy writes inside src.
  fs::path src = tmp() / "src";
  ASSERT_EQ(::symlink(src.c_str(), (tmp() / "alias").c_str()), 0);
  auto r = run_xfer({"cp", "-r", S(src), S(tmp() / "alias" / "copy")}, 60s);
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "inside the source")) << r.describe();
  EXPECT_FALSE(lexists(src / "copy"));
}

TEST_F(Transfer, UsageErrors) {
  write_file(tmp() / "f", "f");
  auto r1 = run_xfer({"cp", "--no-such-flag", S(tmp() / "f"), S(tmp() / "g")});
  EXPECT_EXIT_CODE(r1, 2);
  auto r2 = run_xfer({"cp", S(tmp() / "f")});  // missing DST
  EXPECT_EXIT_CODE(r2, 2);
  auto r3 = run_xfer({"cp", "--chunk-size", "12Q", S(tmp() / "f"), S(tmp() / "g")});
  EXPECT_EXIT_CODE(r3, 2);
  auto r4 = run_xfer({"cp", "--workers", "many", S(tmp() / "f"), S(tmp() / "g")});
  EXPECT_EXIT_CODE(r4, 2);
  auto r5 = run_xfer({"no-such-command"});
  EXPECT_EXIT_CODE(r5, 2);
  EXPECT_FALSE(lexists(tmp() / "g"));
}

TEST_F(Transfer, UnreadableSourceFile) {
  fs::path src = tmp() / "src";
  fs::create_directory(src);
  write_file(src / "ok.txt", "fine");
  write_file(src / "locked.txt", "locked");
  ::chmod((src / "locked.txt").c_str(), 0000);
  // Root bypasses permissions: run xfer as nobody, owning the test's folders.
  std::optional<AsUser> as_nobody;
  if (::geteuid() == 0) {
    chown_tree(tmp(), kNobody);
    chown_tree(state_dir(), kNobody);
    as_nobody.emplace(kNobody);
  }
  auto r = run_xfer({"cp", "-r", S(src), S(tmp() / "dst")});
  EXPECT_EXIT_CODE(r, 3);
  EXPECT_TRUE(icontains(r.err, "permission denied")) << r.describe();
  EXPECT_NE(r.err.find("locked.txt"), std::string::npos) << r.describe();
  EXPECT_TRUE(compare_trees(src / "ok.txt", tmp() / "dst" / "ok.txt"));
  EXPECT_FALSE(lexists(tmp() / "dst" / "locked.txt"));
}

TEST_F(Transfer, UnwritableDestinationDirectory) {
  write_file(tmp() / "f.txt", "data");
  fs::path dir = tmp() / "ro";
  fs::create_directory(dir);
  ::chmod(dir.c_str(), 0555);
  std::optional<AsUser> as_nobody;
  if (::geteuid() == 0) {
    chown_tree(tmp(), kNobody);
    chown_tree(state_dir(), kNobody);
    as_nobody.emplace(kNobody);
  }
  auto r = run_xfer({"cp", S(tmp() / "f.txt"), S(dir)});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "permission denied")) << r.describe();
  EXPECT_EQ(count_entries(dir), 0u);
}

TEST_F(Transfer, ReadOnlyDestinationFilesystem) {
  auto mnt = mount_tmpfs("ro_mnt", "ro,size=4m");
  if (!mnt) GTEST_SKIP() << "cannot mount tmpfs here: " << std::strerror(errno);
  std::mt19937_64 rng(40);
  write_file(tmp() / "f.bin", random_bytes(rng, 100000));
  auto r = run_xfer({"cp", S(tmp() / "f.bin"), S(*mnt)});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "read-only")) << r.describe();
  EXPECT_EQ(count_entries(*mnt), 0u);

  TreeSpec spec;
  spec.seed = 41;
  spec.files = 10;
  generate_tree(tmp() / "tree", spec);
  auto r2 = run_xfer({"cp", "-r", S(tmp() / "tree"), S(*mnt)});
  EXPECT_EXIT_CODE(r2, 1);
  EXPECT_EQ(count_entries(*mnt), 0u);
}

TEST_F(Transfer, DiskFullLeavesNoFile) {
  auto mnt = mount_tmpfs("small", "size=8m");
  if (!mnt) GTEST_SKIP() << "cannot mount tmpfs here: " << std::strerror(errno);
  fs::path src = tmp() / "big.bin";
  write_random_file(src, 50, 20u << 20);

  auto r = run_xfer({"cp", S(src), S(*mnt)});
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_EXIT_CODE(r, 1);  // nothing could be done
  EXPECT_TRUE(icontains(r.err, "No space left")) << r.describe();
  EXPECT_FALSE(lexists(*mnt / "big.bin")) << "a partial file was left under the final name";
  auto left = list_relative(*mnt);
  EXPECT_TRUE(left.empty()) << "left behind in the destination: " << testing::PrintToString(left);

  // Same with an explicit destination file name.
  auto r2 = run_xfer({"cp", S(src), S(*mnt / "named.bin")});
  EXPECT_EXIT_CODE(r2, 1);
  EXPECT_TRUE(icontains(r2.err, "No space left")) << r2.describe();
  auto left2 = list_relative(*mnt);
  EXPECT_TRUE(left2.empty()) << "left behind in the destination: " << testing::PrintToString(left2);
}

TEST_F(Transfer, DiskFullWithSparseSourceLeavesNoFile) {
  // A sparse source may not be preallocated, so the disk fills up in the
  // middle of the writes instead of at creation: same guarantees.
  auto mnt = mount_tmpfs("small", "size=8m");
  if (!mnt) GTEST_SKIP() << "cannot mount tmpfs here: " << std::strerror(errno);
  fs::path src = tmp() / "holey.bin";
  {
    int fd = ::open(src.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 40 << 20), 0);
    std::mt19937_64 rng(55);
    const std::string block = random_bytes(rng, 1 << 20);
    for (off_t off = 0; off < (40 << 20); off += 2 << 20)  // 20 MiB of data
      ASSERT_EQ(::pwrite(fd, block.data(), block.size(), off), static_cast<ssize_t>(block.size()));
    ::close(fd);
  }
  auto r = run_xfer({"cp", S(src), S(*mnt)});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "No space left")) << r.describe();
  auto left = list_relative(*mnt);
  EXPECT_TRUE(left.empty()) << "left behind in the destination: " << testing::PrintToString(left);
}

TEST_F(Transfer, DiskFullReplacingExistingFileKeepsOldContent) {
  // Replacing an existing destination must not destroy it when the new copy
  // cannot be written (the new file is published only when complete).
  auto mnt = mount_tmpfs("small", "size=8m");
  if (!mnt) GTEST_SKIP() << "cannot mount tmpfs here: " << std::strerror(errno);
  write_file(*mnt / "keep.bin", "old content that must survive");
  fs::path src = tmp() / "big.bin";
  write_random_file(src, 51, 20u << 20);
  auto r = run_xfer({"cp", S(src), S(*mnt / "keep.bin")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_TRUE(icontains(r.err, "No space left")) << r.describe();
  ASSERT_TRUE(lexists(*mnt / "keep.bin"));
  EXPECT_EQ(read_file(*mnt / "keep.bin"), "old content that must survive");
  EXPECT_EQ(list_relative(*mnt), std::vector<std::string>{"keep.bin"});
}

// Checks a destination tree after a partial failure: every name in dst
// exists in src, every regular file present is complete and identical.
void expect_only_complete_files(const fs::path& src, const fs::path& dst,
                                std::size_t* files_present) {
  std::size_t present = 0;
  for (const auto& rel : list_relative(dst)) {
    fs::path s = src / rel, d = dst / rel;
    EXPECT_TRUE(lexists(s)) << "unexpected entry in destination (temp file "
                               "left behind?): "
                            << rel;
    if (!lexists(s)) continue;
    if (fs::is_regular_file(fs::symlink_status(d))) {
      ++present;
      EXPECT_TRUE(compare_trees(s, d)) << "incomplete or wrong file " << rel;
    }
  }
  *files_present = present;
}

TEST_F(Transfer, PartialFailureWhenDestinationFillsUp) {
  auto mnt = mount_tmpfs("small", "size=8m");
  if (!mnt) GTEST_SKIP() << "cannot mount tmpfs here: " << std::strerror(errno);
  // 100 x 64 KiB + 1 x 4 MiB = 10.25 MiB > 8 MiB: whatever the order, some
  // files fit and some do not.
  fs::path src = tmp() / "src";
  fs::create_directory(src);
  std::mt19937_64 rng(52);
  for (int i = 0; i < 100; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "small_%03d", i);
    write_file(src / name, random_bytes(rng, 64 * 1024));
  }
  write_random_file(src / "big", 53, 4u << 20);
  stamp_mtimes(src, 52);

  auto r = run_xfer({"cp", "-r", S(src), S(*mnt)}, 120s);
  EXPECT_EXIT_CODE(r, 3);
  EXPECT_TRUE(icontains(r.err, "No space left")) << r.describe();
  ASSERT_TRUE(lexists(*mnt / "src")) << r.describe();
  std::size_t present = 0;
  expect_only_complete_files(src, *mnt / "src", &present);
  EXPECT_GT(present, 0u);
  EXPECT_LT(present, 101u);
  std::printf("[info] %zu of 101 files fit\n", present);
}

TEST_F(Transfer, PartialFailureWhenInodesRunOut) {
  // 64 MiB of space but only ~24 inodes: deterministic partial failure.
  auto mnt = mount_tmpfs("few_inodes", "size=64m,nr_inodes=24");
  if (!mnt) GTEST_SKIP() << "cannot mount tmpfs here: " << std::strerror(errno);
  fs::path src = tmp() / "src";
  fs::create_directory(src);
  for (int i = 0; i < 60; ++i)
    write_file(src / ("f" + std::to_string(i)), "file number " + std::to_string(i));
  stamp_mtimes(src, 54);

  auto r = run_xfer({"cp", "-r", S(src), S(*mnt)});
  EXPECT_EXIT_CODE(r, 3);
  EXPECT_TRUE(icontains(r.err, "No space left")) << r.describe();
  ASSERT_TRUE(lexists(*mnt / "src")) << r.describe();
  std::size_t present = 0;
  expect_only_complete_files(src, *mnt / "src", &present);
  EXPECT_GT(present, 0u);
  EXPECT_LT(present, 60u);
}

// ------------------------------------------------------------ modes of operation

TEST_F(TransferTree, DryRunCreatesNothing) {
  fs::path src = tmp() / "src";
  // New destination.
  auto r = run_xfer({"cp", "-r", "--dry-run", S(src), S(tmp() / "new")});
  EXPECT_EXIT_CODE(r, 0);
  EXPECT_FALSE(lexists(tmp() / "new"));
  EXPECT_TRUE(r.out.find("f00000.bin") != std::string::npos ||
              r.err.find("f00000.bin") != std::string::npos)
      << "--dry-run should print what would be copied\n"
      << r.describe();

  // Existing destination directory stays empty.
  fs::path existing = tmp() / "existing";
  fs::create_directory(existing);
  set_mtime(existing, 1111111111, 111);
  auto r2 = run_xfer({"cp", "-r", "--dry-run", S(src), S(existing)});
  EXPECT_EXIT_CODE(r2, 0);
  EXPECT_EQ(count_entries(existing), 0u);
  EXPECT_EQ(get_mtime(existing).tv_sec, 1111111111);

  // An existing destination file is not replaced.
  write_file(tmp() / "file.new", "new");
  write_file(tmp() / "file.old", "old");
  set_mtime(tmp() / "file.old", 1222222222, 222);
  auto r3 = run_xfer({"cp", "--dry-run", S(tmp() / "file.new"), S(tmp() / "file.old")});
  EXPECT_EXIT_CODE(r3, 0);
  EXPECT_EQ(read_file(tmp() / "file.old"), "old");
  EXPECT_EQ(get_mtime(tmp() / "file.old").tv_nsec, 222);

  // The trailing-slash form would create a directory: not in a dry run.
  auto r4 = run_xfer({"cp", "-r", "--dry-run", S(src), S(tmp() / "made") + "/"});
  EXPECT_EXIT_CODE(r4, 0);
  EXPECT_FALSE(lexists(tmp() / "made"));
  EXPECT_TRUE(compare_trees(tmp() / "reference", src));
}

TEST_F(TransferTree, VerifyCopySucceeds) {
  auto r = run_xfer({"cp", "-r", "--verify", S(tmp() / "src"), S(tmp() / "dst")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "dst"));
  std::mt19937_64 rng(60);
  write_random_file(tmp() / "big.bin", 61, 40u << 20);
  auto r2 = run_xfer({"cp", "--verify", S(tmp() / "big.bin"), S(tmp() / "big.copy")});
  ASSERT_EXIT_CODE(r2, 0);
  EXPECT_TRUE(compare_trees(tmp() / "big.bin", tmp() / "big.copy"));
}

void expect_json_lines(const RunResult& r) {
  auto lines = split_lines(r.out);
  ASSERT_FALSE(lines.empty()) << "no JSON output on stdout\n" << r.describe();
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string why;
    EXPECT_TRUE(is_json_object(lines[i], &why))
        << "stdout line " << i + 1 << " is not a JSON object (" << why << "): " << lines[i];
  }
  EXPECT_NE(lines.back().find("\"event\":\"summary\""), std::string::npos)
      << "last line is not the summary: " << lines.back();
  EXPECT_FALSE(r.out.empty() || r.out.back() != '\n') << "stdout does not end with a newline";
}

TEST_F(TransferTree, JsonOutput) {
  auto r = run_xfer({"cp", "-r", "--json", S(tmp() / "src"), S(tmp() / "dst")});
  ASSERT_EXIT_CODE(r, 0);
  expect_json_lines(r);
  auto lines = split_lines(r.out);
  ASSERT_FALSE(lines.empty());
  const std::string& last = lines.back();
  // The tree holds spec_.files regular files and spec_.symlinks symlinks;
  // counting the symlinks as files is acceptable.
  EXPECT_TRUE(last.find("\"files\":" + std::to_string(spec_.files) + ",") != std::string::npos ||
              last.find("\"files\":" + std::to_string(spec_.files + spec_.symlinks) + ",") !=
                  std::string::npos)
      << "summary should count " << spec_.files << " files (+" << spec_.symlinks
      << " symlinks): " << last;
  EXPECT_NE(last.find("\"errors\":0"), std::string::npos) << last;
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "dst"));
}

TEST_F(Transfer, JsonOutputReportsErrors) {
  write_file(tmp() / "ok.txt", "ok");
  fs::path dst = tmp() / "out";
  fs::create_directory(dst);
  // Names that need escaping in JSON.
  const std::string weird = "missing \"quoted\"\\name\nwith newline";
  auto r = run_xfer({"cp", "--json", S(tmp() / "ok.txt"), S(tmp() / weird), S(dst)});
  EXPECT_EXIT_CODE(r, 3);
  expect_json_lines(r);
  EXPECT_NE(r.out.find("\"event\":\"error\""), std::string::npos) << r.describe();
  EXPECT_NE(r.out.find("\"errors\":1"), std::string::npos) << r.describe();
}

TEST_F(Transfer, SourceGrowingDuringCopy) {
  fs::path src = tmp() / "growing.bin";
  const std::uint64_t initial = 200ull << 20;
  write_random_file(src, 70, initial);
  fs::path dst = tmp() / "growing.copy";

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> appended{0};
  std::thread appender([&] {
    int fd = ::open(src.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return;
    std::mt19937_64 rng(71);
    const std::string chunk = random_bytes(rng, 1 << 20);
    while (!stop.load() && appended.load() < (256ull << 20)) {
      if (::write(fd, chunk.data(), chunk.size()) > 0) appended += chunk.size();
      std::this_thread::sleep_for(5ms);
    }
    ::close(fd);
  });
  RunResult r;
  try {
    r = run_xfer({"cp", S(src), S(dst)}, 120s);
  } catch (...) {
    stop = true;
    appender.join();
    throw;
  }
  stop = true;
  appender.join();
  std::printf(
      "[info] exit %d after %.2f s, %llu bytes appended during the run; "
      "stderr: %s\n",
      r.exit_code, r.seconds, static_cast<unsigned long long>(appended.load()), r.err.c_str());

  ASSERT_FALSE(r.timed_out) << r.describe();
  ASSERT_GE(r.exit_code, 0) << r.describe();
  if (r.exit_code == 0) {
    ASSERT_TRUE(lexists(dst)) << r.describe();
    EXPECT_GE(lsize(dst), initial)
        << "silently truncated copy: exit 0 but the destination is shorter "
           "than the source was when the copy started\n"
        << r.describe();
    EXPECT_TRUE(is_prefix_of(dst, src)) << "destination is not a consistent snapshot of the source";
  } else {
    EXPECT_NE(r.err.find("growing.bin"), std::string::npos) << "a failure must name the path\n"
                                                            << r.describe();
    if (lexists(dst)) {
      EXPECT_GE(lsize(dst), initial) << "a truncated file was left under the final name";
      EXPECT_TRUE(is_prefix_of(dst, src));
    }
  }
}

TEST_F(Transfer, SourceShrinkingDuringCopy) {
  // The source is truncated while it is being copied (rate-limited so the
  // copy is surely in progress). Acceptable: an error naming the path, or
  // success with the destination equal to the source before or after the
  // truncation. Never a success with some other length.
  fs::path src = tmp() / "shrinking.bin";
  const std::uint64_t initial = 64ull << 20, truncated = 10ull << 20;
  write_random_file(src, 72, initial);
  fs::path dst = tmp() / "shrinking.copy";
  // Truncated once 16 MiB are written (the copy is surely under way); the
  // "signal" is a no-op after that.
  bool cut = false;
  auto run = run_xfer_signal_when(
      {"cp", "--bwlimit", "32M", S(src), S(dst)}, 0,
      [](pid_t pid) { return process_wchar(pid) >= (16u << 20); },
      [&] { cut = ::truncate(src.c_str(), static_cast<off_t>(truncated)) == 0; }, 60s);
  const RunResult& r = run.result;
  ASSERT_TRUE(run.signalled && cut) << "the copy ended before 16 MiB were written\n"
                                    << r.describe();
  std::printf("[info] exit %d after %.2f s; stderr: %s\n", r.exit_code, r.seconds, r.err.c_str());
  ASSERT_FALSE(r.timed_out) << r.describe();
  if (r.exit_code == 0) {
    ASSERT_TRUE(lexists(dst));
    const std::uint64_t got = lsize(dst);
    EXPECT_TRUE(got == initial || got == truncated)
        << "exit 0 but the destination has " << got << " bytes, neither the "
        << "size before (" << initial << ") nor after (" << truncated << ") the truncation\n"
        << r.describe();
    if (got <= lsize(src)) {
      EXPECT_TRUE(files_equal(dst, src));
    } else {
      EXPECT_TRUE(is_prefix_of(src, dst));
    }
  } else {
    EXPECT_NE(r.err.find("shrinking.bin"), std::string::npos) << "a failure must name the path\n"
                                                              << r.describe();
    EXPECT_FALSE(lexists(dst) && lsize(dst) != truncated && lsize(dst) != initial)
        << "a partial file was left under the final name";
  }
}

TEST_F(Transfer, InterruptLeavesNoPartialFile) {
  // SIGINT / SIGTERM during a (rate-limited) copy: exit 130 and no
  // half-written file under the final name. With --no-checkpoint no
  // temporary file is left either; by default (checkpointing) the only
  // thing left is the hidden resumable partial, and the same command run
  // again resumes it and completes the copy.
  fs::path src = tmp() / "slow.bin";
  write_random_file(src, 80, 64u << 20);
  for (bool checkpoint : {false, true}) {
    for (int sig : {SIGINT, SIGTERM}) {
      SCOPED_TRACE(std::string(sig == SIGINT ? "SIGINT" : "SIGTERM") +
                   (checkpoint ? " checkpoint" : " --no-checkpoint"));
      fs::path dst = tmp() / "slow.copy";
      // 1 MiB chunks: several complete (and are journaled) before the signal.
      std::vector<std::string> args = {"cp", "--bwlimit", "8M",  "--chunk-size",
                                       "1M", S(src),      S(dst)};
      if (!checkpoint) args.insert(args.begin() + 1, "--no-checkpoint");
      // The signal once 4 MiB are written: several 1 MiB chunks are done.
      auto run = run_xfer_signal_when(args, sig,
                                      [](pid_t pid) { return process_wchar(pid) >= (4u << 20); });
      const RunResult& r = run.result;
      ASSERT_TRUE(run.signalled) << "the copy ended before 4 MiB were written\n" << r.describe();
      EXPECT_EXIT_CODE(r, 130);
      EXPECT_FALSE(lexists(dst)) << "half-written file under the final name";
      auto left = list_relative(tmp());
      if (!checkpoint) {
        EXPECT_EQ(left, std::vector<std::string>{"slow.bin"}) << "temporary files were left behind";
      } else {
        ASSERT_EQ(left.size(), 2u) << "expected slow.bin and one hidden partial";
        EXPECT_EQ(left[1], "slow.bin");
        EXPECT_EQ(left[0].rfind(".slow.copy.xfer-part-", 0), 0u) << left[0];
        // Resume: no rate limit now; it must finish with the right bytes and
        // report what was already there.
        auto again = run_xfer({"cp", "--json", "--chunk-size", "1M", S(src), S(dst)});
        EXPECT_EXIT_CODE(again, 0);
        EXPECT_TRUE(files_equal(src, dst)) << "resumed copy differs from the source";
        EXPECT_NE(again.out.find("\"bytes_resumed\":"), std::string::npos) << again.describe();
        EXPECT_EQ(again.out.find("\"bytes_resumed\":0,"), std::string::npos)
            << "nothing was resumed\n"
            << again.describe();
        EXPECT_EQ(list_relative(tmp()), (std::vector<std::string>{"slow.bin", "slow.copy"}))
            << "the partial must be gone after the resumed copy";
      }
      std::error_code ec;
      fs::remove(dst, ec);
    }
  }
}

TEST_F(Transfer, InterruptDuringTreeCopyLeavesOnlyCompleteFiles) {
  // 80 x 1 MiB at 8 MiB/s takes ~10 s; SIGINT after 1.5 s must stop the
  // run promptly (not after the whole tree), leaving only complete files.
  constexpr int kFiles = 80;
  fs::path src = tmp() / "src";
  fs::create_directory(src);
  std::mt19937_64 rng(81);
  for (int i = 0; i < kFiles; ++i)
    write_file(src / ("f" + std::to_string(i)), random_bytes(rng, 1 << 20));
  stamp_mtimes(src, 81);
  fs::path dst = tmp() / "dst";
  // SIGINT once 4 files are at the destination; it must stop the run
  // promptly: at most the files in flight then (one per worker) finish.
  auto finished = [&] {
    std::size_t n = 0;
    if (lexists(dst)) {
      for (const auto& rel : list_relative(dst)) n += rel.find(".xfer-") == std::string::npos;
    }
    return n;
  };
  std::size_t at_signal = 0;
  auto run = run_xfer_signal_when(
      {"cp", "-r", "--bwlimit", "8M", "--workers", "4", S(src), S(dst)}, SIGINT,
      [&](pid_t) { return finished() >= 4; }, [&] { at_signal = finished(); });
  const RunResult& r = run.result;
  ASSERT_TRUE(run.signalled) << r.describe();
  EXPECT_EXIT_CODE(r, 130);
  EXPECT_LE(finished(), at_signal + 4 + 1)
      << "xfer kept copying after SIGINT: " << at_signal << " files at the signal\n"
      << r.describe();
  std::size_t present = 0;
  if (lexists(dst)) {
    for (const auto& rel : list_relative(dst)) {
      EXPECT_TRUE(lexists(src / rel)) << "unexpected entry (temporary file left behind?): " << rel;
      if (!lexists(src / rel)) continue;
      ++present;
      auto eq = files_equal(src / rel, dst / rel);
      EXPECT_TRUE(eq) << "half-written file under a final name: " << rel;
    }
  }
  EXPECT_LT(present, static_cast<std::size_t>(kFiles))
      << "every file was copied although the run was interrupted";
  std::printf("[info] %zu of %d files present after the interrupt, exit after %.2f s\n", present,
              kFiles, r.seconds);
}

TEST_F(Transfer, BwlimitIsHonoured) {
  fs::path src = tmp() / "f.bin";
  write_random_file(src, 82, 32u << 20);
  auto r = run_xfer({"cp", "--bwlimit", "8M", S(src), S(tmp() / "g.bin")}, 60s);
  ASSERT_EXIT_CODE(r, 0);
  // 32 MiB at 8 MiB/s cannot take less than 4 s; at least 2 s allows for
  // the clock's and the limiter's slack. Only this lower bound is the
  // promise (a loaded machine makes a run slower, never faster); how close
  // the limiter holds its rate is measured in bench/ (bwlimit rows).
  EXPECT_GE(r.seconds, 2.0) << r.describe();
  EXPECT_TRUE(compare_trees(src, tmp() / "g.bin"));
}

TEST_F(Transfer, LargeFileManyChunksInParallel) {
  fs::path src = tmp() / "big.bin";
  write_random_file(src, 83, (64u << 20) + 12345);
  set_mtime(src, 1650000000, 987654321);
  auto r = run_xfer({"cp", "--workers", "4", "--chunk-size", "1M", S(src), S(tmp() / "big.copy")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, tmp() / "big.copy"));
}

TEST_F(Transfer, SameFileIsNotDestroyed) {
  fs::path a = tmp() / "a.bin";
  std::mt19937_64 rng(84);
  const std::string content = random_bytes(rng, 300000);
  write_file(a, content);
  // cp a a: an error (cp: 'are the same file') or a no-op; never data loss.
  auto r = run_xfer({"cp", S(a), S(a)});
  EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 1) << r.describe();
  EXPECT_EQ(read_file(a), content) << "copying a file onto itself damaged it";
  // Same through a hard link.
  ASSERT_EQ(::link(a.c_str(), (tmp() / "hard.bin").c_str()), 0);
  auto r2 = run_xfer({"cp", S(a), S(tmp() / "hard.bin")});
  EXPECT_TRUE(r2.exit_code == 0 || r2.exit_code == 1) << r2.describe();
  EXPECT_EQ(read_file(a), content) << "copying onto a hard link damaged it";
  EXPECT_EQ(read_file(tmp() / "hard.bin"), content);
  // And into its own directory: cp a.bin DIR where DIR/a.bin is a.bin.
  auto r3 = run_xfer({"cp", S(a), S(tmp())});
  EXPECT_TRUE(r3.exit_code == 0 || r3.exit_code == 1) << r3.describe();
  EXPECT_EQ(read_file(a), content) << "copying into its own dir damaged it";
}

TEST_F(TransferTree, DirectoryOntoExistingFileFails) {
  write_file(tmp() / "file", "precious");
  auto r = run_xfer({"cp", "-r", S(tmp() / "src"), S(tmp() / "file")});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_EQ(read_file(tmp() / "file"), "precious");
}

TEST_F(Transfer, SpecialFilesDoNotHang) {
  // A FIFO in the tree must not block the copy forever (reading it would).
  fs::path src = tmp() / "src";
  fs::create_directory(src);
  write_file(src / "regular.txt", "regular");
  ASSERT_EQ(::mkfifo((src / "fifo").c_str(), 0644), 0);
  stamp_mtimes(src, 85);
  auto r = run_xfer({"cp", "-r", S(src), S(tmp() / "dst")}, 30s);
  ASSERT_FALSE(r.timed_out) << "xfer hung on a FIFO\n" << r.describe();
  EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 3) << r.describe();
  EXPECT_TRUE(compare_trees(src / "regular.txt", tmp() / "dst" / "regular.txt"));
  // Either recreated as a FIFO or skipped (with an error); never a regular
  // file.
  if (lexists(tmp() / "dst" / "fifo")) {
    EXPECT_TRUE(fs::is_fifo(fs::symlink_status(tmp() / "dst" / "fifo")));
  }
}

TEST_F(TransferTree, SourceWithTrailingSlash) {
  // rsync's rule (docs/cli.md): "src/" is the contents of src, copied into
  // the existing folder itself.
  fs::path dst = tmp() / "existing";
  fs::create_directory(dst);
  auto r = run_xfer({"cp", "-r", S(tmp() / "src") + "/", S(dst)});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(tmp() / "src", dst, {.compare_root = false}));
  EXPECT_EQ(count_entries(dst), count_entries(tmp() / "src"));
}

TEST_F(TransferTree, RelativePaths) {
  fs::create_directory(tmp() / "out");
  auto r = run_xfer({"cp", "-r", "src", "out/copy"}, 60s, {}, S(tmp()));
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "out" / "copy"));
  auto r2 = run_xfer({"cp", "-r", "src", "."}, 60s, {}, S(tmp() / "out"));
  // DST "." is an existing directory, so this is out/src... except that
  // "src" is relative to out/, where it does not exist.
  EXPECT_EXIT_CODE(r2, 1);
  auto r3 = run_xfer({"cp", "-r", "../src", "."}, 60s, {}, S(tmp() / "out"));
  ASSERT_EXIT_CODE(r3, 0);
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "out" / "src"));
}

TEST_F(Transfer, DestinationSymlinkToDirectory) {
  // DST is a symlink to a directory: an existing directory, like cp.
  write_file(tmp() / "f.txt", "into the linked dir");
  fs::create_directory(tmp() / "real");
  ASSERT_EQ(::symlink("real", (tmp() / "link").c_str()), 0);
  auto r = run_xfer({"cp", S(tmp() / "f.txt"), S(tmp() / "link")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(fs::is_symlink(tmp() / "link")) << "the link was replaced";
  EXPECT_TRUE(compare_trees(tmp() / "f.txt", tmp() / "real" / "f.txt"));
}

// --memory bounds what the transfer holds: 8 files of 48 MiB copied by 64
// workers through buffers (--verify turns copy_file_range off) stay within
// the 32 MiB budget plus the process's own size, measured by the peak RSS
// of the xfer process against a run that moves one small file.
TEST_F(Transfer, MemoryBudgetBoundsThePeakResidentSet) {
  const fs::path src = tmp() / "src";
  fs::create_directories(src);
  for (int i = 0; i < 8; ++i) {
    write_random_file(src / ("f" + std::to_string(i)), 60 + i, 48u << 20);
  }
  write_file(tmp() / "small.txt", "small");
  auto baseline = run_xfer(
      {"cp", "--verify", "--no-progress", S(tmp() / "small.txt"), S(tmp() / "small.copy")});
  ASSERT_EXIT_CODE(baseline, 0);
  auto r = run_xfer({"cp", "-r", "--verify", "--no-progress", "--memory", "32M", "--workers", "64",
                     S(src), S(tmp() / "dst")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(src, tmp() / "dst"));
  const long budget_kib = 32 * 1024;
  std::printf("[info] peak RSS %ld KiB with --memory 32M (one small file: %ld KiB)\n",
              r.peak_rss_kib, baseline.peak_rss_kib);
  EXPECT_LT(r.peak_rss_kib, baseline.peak_rss_kib + budget_kib + 8 * 1024)
      << "the transfer held more than its memory budget";
}

// ------------------------------------------------------ include/exclude

// Runs `rsync -a FLAGS SRC DST` (rsync is the reference for these rules).
RunResult rsync_a(const std::vector<std::string>& flags, const fs::path& src, const fs::path& dst,
                  bool contents) {
  std::vector<std::string> argv = {"rsync", "-a"};
  for (std::size_t i = 0; i < flags.size(); ++i) {
    if (flags[i] == "--filter-from" && i + 1 < flags.size()) {
      argv.push_back("--filter=merge " + flags[++i]);  // rsync's spelling of it
    } else {
      argv.push_back(flags[i]);
    }
  }
  argv.push_back(src.string() + (contents ? "/" : ""));
  argv.push_back(dst.string() + "/");
  return run(argv, 60s);
}

// A tree with names the rules below pick apart.
void make_filter_tree(const fs::path& root) {
  for (const char* d : {"build", "src/build", "src/doc", "doc", "deep/a/b", "cache", "empty"}) {
    fs::create_directories(root / d);
  }
  int i = 0;
  for (const char* f : {"a.c", "a.o", "keep.o", "b.txt", ".hidden", "build/x.o", "build/y.c",
                        "src/main.c", "src/main.o", "src/build/z.o", "src/doc/a.tmp", "doc/a.tmp",
                        "doc/b.md", "deep/a/b/d.txt", "deep/a/x.c", "sp ace.txt"}) {
    write_file(root / f, std::string(static_cast<std::size_t>(100 + i++), 'x'));
  }
  stamp_mtimes(root, 7);
}

// cp -r with --include/--exclude/--filter-from/--exclude-from keeps what
// `rsync -a` keeps with the same flags, copying a folder's contents
// ("src/") and the folder itself ("src", where the rules see "src/..."),
// the flags' order deciding (the first match wins).
TEST_F(Transfer, IncludeExcludeKeepWhatRsyncKeeps) {
  const fs::path src = tmp() / "src";
  make_filter_tree(src);
  write_file(tmp() / "rules.txt", "# build output\n- *.o\n+ /doc/***\n- *.tmp\n");
  write_file(tmp() / "patterns.txt", "*.md\nbuild/\n");
  const std::vector<std::vector<std::string>> cases = {
      {"--exclude", "*.o"},
      {"--include", "keep.o", "--exclude", "*.o"},
      {"--exclude", "*.o", "--include", "keep.o"},
      {"--exclude", "/build/"},
      {"--exclude", "build/"},
      {"--include", "*/", "--include", "*.c", "--exclude", "*"},
      {"--include", "/deep/***", "--exclude", "*"},
      {"--exclude", "doc/*.tmp", "--exclude", ".*"},
      {"--filter", "- **/b/**"},
      {"--filter-from", S(tmp() / "rules.txt")},
      {"--exclude-from", S(tmp() / "patterns.txt")},
      {"--include-from", S(tmp() / "patterns.txt"), "--exclude", "*.md"},
      {"--exclude", "/src/build/", "--exclude", "sp ace.txt"},
  };
  int n = 0;
  for (const auto& flags : cases) {
    for (const bool contents : {true, false}) {
      const std::string tag = std::to_string(n++);
      SCOPED_TRACE(::testing::PrintToString(flags) + (contents ? " src/" : " src"));
      const fs::path ours = tmp() / ("x" + tag);
      const fs::path theirs = tmp() / ("r" + tag);
      fs::create_directories(ours);
      fs::create_directories(theirs);
      std::vector<std::string> args = {"cp", "-r", "--no-progress"};
      args.insert(args.end(), flags.begin(), flags.end());
      args.push_back(S(src) + (contents ? "/" : ""));
      args.push_back(S(ours) + "/");
      auto r = run_xfer(args);
      ASSERT_EQ(r.exit_code, 0) << r.describe();
      auto rs = rsync_a(flags, src, theirs, contents);
      ASSERT_EQ(rs.exit_code, 0) << rs.describe();
      CompareOptions co;
      co.compare_root = false;
      EXPECT_TRUE(compare_trees(theirs, ours, co));
    }
  }
}

// The rules are part of the job: a run killed mid-way and resumed with
// `xfer resume ID` (which takes the options from the job record) keeps
// them; the config file's rules come after the command line's; a bad rule
// is a usage error naming it, with nothing copied.
TEST_F(Transfer, IncludeExcludeRulesAreKeptByTheJobAndComeAfterTheFlags) {
  const fs::path src = tmp() / "src";
  make_filter_tree(src);
  write_random_file(src / "big.bin", 5, 32u << 20);
  write_random_file(src / "big.o", 6, 1u << 20);
  const fs::path dst = tmp() / "dst";
  fs::create_directories(dst);
  auto killed = run_xfer_signal_when({"cp", "-r", "--no-progress", "--bwlimit", "8M", "--job",
                                      "filtered", "--exclude", "*.o", S(src) + "/", S(dst) + "/"},
                                     SIGKILL, [&](pid_t) {
                                       for (const auto& h : xfer_hidden_files(dst)) {
                                         if (lsize(dst / h) >= (4u << 20)) return true;
                                       }
                                       return false;
                                     });
  ASSERT_TRUE(killed.signalled) << killed.result.describe();
  auto resumed = run_xfer({"resume", "filtered"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  const fs::path ref = tmp() / "ref";
  fs::create_directories(ref);
  ASSERT_EQ(rsync_a({"--exclude", "*.o"}, src, ref, true).exit_code, 0);
  CompareOptions co;
  co.compare_root = false;
  EXPECT_TRUE(compare_trees(ref, dst, co));

  // Config rules after the flags: the flag's include of keep.o wins over
  // the file's exclude of *.o.
  write_file(tmp() / "config.toml", "[transfer]\nfilter = \"- *.o\\n- big.bin\\n\"\n");
  const fs::path cfg_dst = tmp() / "cfg";
  auto c = run_xfer({"--config", S(tmp() / "config.toml"), "cp", "-r", "--no-progress", "--include",
                     "keep.o", S(src) + "/", S(cfg_dst) + "/"});
  ASSERT_EQ(c.exit_code, 0) << c.describe();
  EXPECT_TRUE(fs::exists(cfg_dst / "keep.o"));
  EXPECT_FALSE(fs::exists(cfg_dst / "a.o"));
  EXPECT_FALSE(fs::exists(cfg_dst / "big.bin"));
  EXPECT_TRUE(fs::exists(cfg_dst / "a.c"));

  write_file(tmp() / "bad.txt", "- ok\nmerge other.txt\n");
  auto bad = run_xfer(
      {"cp", "-r", "--filter-from", S(tmp() / "bad.txt"), S(src) + "/", S(tmp() / "bad") + "/"});
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
  EXPECT_TRUE(icontains(bad.err, S(tmp() / "bad.txt") + ":2")) << bad.describe();
  EXPECT_FALSE(fs::exists(tmp() / "bad"));
  auto missing = run_xfer(
      {"cp", "-r", "--exclude-from", S(tmp() / "nope.txt"), S(src) + "/", S(tmp() / "bad") + "/"});
  EXPECT_EQ(missing.exit_code, 2) << missing.describe();
  EXPECT_FALSE(fs::exists(tmp() / "bad"));
}

}  // namespace
}  // namespace xfer_it
