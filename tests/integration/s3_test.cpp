// xfer and S3-compatible stores: a real s3rver (tests/servers/s3rver.hpp)
// started on loopback for each test, reached as a user reaches one (keys
// and endpoint in $AWS_*, $HOME a folder of the test's). What is checked
// is what a user would check: the bytes and mtimes that come back, what
// `ls` shows, exit codes and the words of the errors.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "../servers/fault_proxy.hpp"
#include "../servers/hostile_http.hpp"
#include "../servers/s3rver.hpp"
#include "harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;
using xfer::testing::FaultProxy;
using xfer::testing::S3rverServer;

std::string S(const fs::path& p) {
  return p.string();
}

// `n` bytes of the harness's random_bytes from `seed`.
std::string bytes_of(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  return random_bytes(rng, n);
}

void put(const fs::path& p, const std::string& data, std::int64_t sec, long nsec) {
  fs::create_directories(p.parent_path());
  write_file(p, data);
  timespec t[2] = {{sec, nsec}, {sec, nsec}};
  ::utimensat(AT_FDCWD, p.c_str(), t, 0);
}

std::int64_t mtime_ns(const fs::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec;
}

class S3 : public XferTest {
 protected:
  void SetUp() override {
    XferTest::SetUp();
    server_ = std::make_unique<S3rverServer>(tmp() / "s3rver", "bkt");
    ASSERT_TRUE(server_->start()) << server_->error();
    home_ = tmp() / "home";
    fs::create_directories(home_);
    // AWS_CA_BUNDLE too: rclone's S3 client refuses its own transport
    // with one set.
    for (const char* name : {"HOME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                             "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "AWS_CA_BUNDLE"}) {
      if (const char* v = std::getenv(name)) saved_.emplace_back(name, v);
      ::unsetenv(name);
    }
    ::setenv("HOME", home_.c_str(), 1);
    ::setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
    ::setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
    ::setenv("AWS_ENDPOINT_URL", server_->endpoint().c_str(), 1);
  }
  void TearDown() override {
    for (const char* name :
         {"HOME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}) {
      ::unsetenv(name);
    }
    for (const auto& [k, v] : saved_) ::setenv(k.c_str(), v.c_str(), 1);
    server_.reset();  // stopped by its PID
    XferTest::TearDown();
  }
  std::unique_ptr<S3rverServer> server_;
  fs::path home_;
  std::vector<std::pair<std::string, std::string>> saved_;
};

// A tree goes up and comes back as it was: every file's bytes and its
// mtime to the nanosecond (x-amz-meta-mtime), the large one through a
// multipart upload and parallel ranged reads; `ls` shows folders as
// prefixes. An empty folder cannot be kept there: it is skipped with a
// notice, and the copy still succeeds.
TEST_F(S3, ATreeGoesUpAndComesBackAsItWas) {
  const fs::path src = tmp() / "src";
  fs::create_directories(src / "hollow");
  put(src / "a.txt", "alpha\n", 1'600'000'001, 123'456'789);
  put(src / "with space.txt", bytes_of(5000, 1), 1'600'000'002, 1);
  put(src / "sub/deeper/x&y+z.bin", bytes_of(100'000, 2), 1'600'000'003, 0);
  put(src / "sub/empty.bin", "", 1'600'000'005, 5);
  put(src / "large.bin", bytes_of(48u << 20, 4), 1'600'000'006, 999'999'999);
  auto up = run_xfer({"cp", "-r", S(src) + "/", "s3://bkt/t/"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_NE(up.err.find("skipping empty folder " + S(src / "hollow")), std::string::npos) << up.err;
  auto ls = run_xfer({"ls", "s3://bkt/t/"});
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
  EXPECT_EQ(ls.out.find("hollow"), std::string::npos) << ls.out;
  for (const char* name : {"a.txt", "with space.txt", "large.bin", "sub"}) {
    EXPECT_NE(ls.out.find(name), std::string::npos) << name << "\n" << ls.out;
  }
  auto deep = run_xfer({"ls", "s3://bkt/t/sub/deeper/"});
  ASSERT_EQ(deep.exit_code, 0) << deep.describe();
  EXPECT_NE(deep.out.find("x&y+z.bin"), std::string::npos) << deep.out;

  const fs::path back = tmp() / "back";
  auto down = run_xfer({"cp", "-r", "s3://bkt/t/", S(back) + "/"});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const fs::path got = back / fs::relative(e.path(), src);
    ASSERT_TRUE(fs::exists(got)) << got;
    EXPECT_EQ(read_file(got), read_file(e.path())) << got;
    EXPECT_EQ(mtime_ns(got), mtime_ns(e.path())) << got;
  }
  // No multipart upload is left behind: s3rver keeps those in a folder.
  const fs::path uploads = server_->data() / "bkt" / "._S3rver_uploads";
  if (fs::exists(uploads)) EXPECT_TRUE(fs::is_empty(uploads)) << uploads;
}

// xfer SIGKILLed in the middle of a multipart upload: the same command
// again takes the upload up where it was (the upload id and the parts'
// ETags are in the job's journal), sends only the parts it lacks, and
// leaves no multipart upload behind on the server.
TEST_F(S3, AKilledMultipartUploadIsResumedByTheRerun) {
  const std::string data = bytes_of(96u << 20, 9);
  const fs::path src = tmp() / "big.bin";
  put(src, data, 1'600'000'000, 0);
  const std::vector<std::string> args = {
      "cp", "--json", "--bwlimit", "24M", "--chunk-size", "8M", S(src), "s3://bkt/up/big.bin"};
  // The kill comes once s3rver holds four whole parts (it keeps each in
  // its own file) and 200 ms more for their answers to reach the journal:
  // counted from the process start, a slow start on a loaded machine left
  // one part to resume.
  const fs::path uploads = server_->data() / "bkt" / "._S3rver_uploads";
  std::optional<std::chrono::steady_clock::time_point> parts_seen;
  auto first = run_xfer_signal_when(
      args, SIGKILL,
      [&](pid_t) {
        const auto now = std::chrono::steady_clock::now();
        if (parts_seen) return now - *parts_seen > 200ms;
        std::error_code ec;
        int whole = 0;
        for (auto it = fs::recursive_directory_iterator(uploads, ec);
             !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
          if (it->is_regular_file(ec) && it->file_size(ec) == (8u << 20)) ++whole;
        }
        if (whole >= 4) parts_seen = now;
        return false;
      },
      nullptr, 120s);
  ASSERT_TRUE(first.signalled) << first.result.describe();
  auto gone = run_xfer({"ls", "s3://bkt/up/"});
  EXPECT_EQ(gone.out.find("big.bin"), std::string::npos) << "published before its commit";
  auto again = run_xfer(args, 180s);
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  nlohmann::json summary;
  for (const auto& line : split_lines(again.out)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("event", "") == "summary") summary = j;
  }
  const std::uint64_t resumed = summary.value("bytes_resumed", 0ull);
  const std::uint64_t moved = summary.value("bytes", 0ull);
  EXPECT_GE(resumed, 16ull << 20) << again.out;
  // Parts in flight at the kill are sent again whole: at most one 8 MiB
  // part per stream (16).
  EXPECT_LE(moved, data.size() - resumed + (128ull << 20)) << again.out;
  auto down = run_xfer({"cp", "s3://bkt/up/big.bin", S(tmp() / "back.bin")});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  EXPECT_TRUE(read_file(tmp() / "back.bin") == data);
  EXPECT_EQ(mtime_ns(tmp() / "back.bin"), 1'600'000'000'000'000'000LL);
  if (fs::exists(uploads)) EXPECT_TRUE(fs::is_empty(uploads)) << uploads;
}

// Twenty SIGKILLs at random moments of multipart uploads, each followed by
// the same command, through a proxy that logs every request: each object
// ends byte-identical with its mtime, no part is sent again beyond the two
// in flight at each kill (--chunk-parallelism 2), and no upload is left on
// the server. An upload that ends before its kill is verified, and the
// next kill goes to a new object.
TEST_F(S3, TwentyRandomKillsOfMultipartUploadsEachEndWhole) {
  FaultProxy proxy(std::string(XFER_SOURCE_DIR) + "/tests/servers/fault_proxy.py", server_->port(),
                   tmp() / "proxy", "[]");
  ASSERT_TRUE(proxy.running());
  ::setenv("AWS_ENDPOINT_URL", proxy.endpoint().c_str(), 1);
  std::mt19937_64 rng(20261206);
  std::uniform_int_distribution<int> at_ms(150, 700);
  int kills = 0;
  std::string record;  // the kill times, for a failure's message
  for (int object = 0; kills < 20 && object < 10; ++object) {
    const std::string data = bytes_of(160u << 20, 100 + object);
    const fs::path src = tmp() / ("big" + std::to_string(object) + ".bin");
    put(src, data, 1'600'000'000 + object, 7);
    const std::string key = "kills/big" + std::to_string(object) + ".bin";
    const std::vector<std::string> args = {
        "cp",   "--bwlimit",      "30M", "--chunk-size", "5M", "--chunk-parallelism", "2",
        S(src), "s3://bkt/" + key};
    int kills_here = 0;
    for (;;) {
      const int ms = at_ms(rng);
      const auto started = std::chrono::steady_clock::now();
      auto r = run_xfer_signal_when(
          args, SIGKILL,
          [&](pid_t) {
            return std::chrono::steady_clock::now() - started > std::chrono::milliseconds(ms);
          },
          nullptr, 120s);
      if (!r.signalled) {
        ASSERT_EQ(r.result.exit_code, 0) << record << r.result.describe();
        break;
      }
      ++kills_here;
      record += std::to_string(ms) + " ms; ";
      if (++kills == 20) {
        auto last = run_xfer(args, 180s);
        ASSERT_EQ(last.exit_code, 0) << record << last.describe();
        break;
      }
    }
    SCOPED_TRACE(key + " after " + std::to_string(kills_here) + " kills: " + record);
    // Each part's PUTs: one, and one more for each kill that found it in flight.
    std::map<std::string, int> puts;
    for (const auto& l : proxy.lines()) {
      if (l.method != "PUT" || l.target.find("/bkt/" + key + "?") != 0) continue;
      const auto at = l.target.find("partNumber=");
      if (at != std::string::npos) ++puts[l.target.substr(at, l.target.find('&', at) - at)];
    }
    int again = 0;
    for (const auto& [part, n] : puts) again += n - 1;
    EXPECT_EQ(puts.size(), 32u);
    EXPECT_LE(again, 2 * kills_here);
    ::setenv("AWS_ENDPOINT_URL", server_->endpoint().c_str(), 1);
    const fs::path back = tmp() / "back.bin";
    auto down = run_xfer({"cp", "s3://bkt/" + key, S(back)});
    ASSERT_EQ(down.exit_code, 0) << down.describe();
    EXPECT_TRUE(read_file(back) == data);
    EXPECT_EQ(mtime_ns(back), (1'600'000'000 + object) * 1'000'000'000LL + 7);
    fs::remove(back);
    fs::remove(src);
    ::setenv("AWS_ENDPOINT_URL", proxy.endpoint().c_str(), 1);
  }
  EXPECT_EQ(kills, 20);
  const fs::path uploads = server_->data() / "bkt" / "._S3rver_uploads";
  if (fs::exists(uploads)) EXPECT_TRUE(fs::is_empty(uploads)) << uploads;
}

// rm -r removes every object below a prefix; the rest stays.
TEST_F(S3, RmRemovesAPrefixAndOnlyIt) {
  const fs::path src = tmp() / "src";
  put(src / "keep.txt", "keep\n", 1'600'000'000, 0);
  put(src / "gone/a.txt", "a\n", 1'600'000'000, 0);
  put(src / "gone/b/c.txt", "c\n", 1'600'000'000, 0);
  ASSERT_EQ(run_xfer({"cp", "-r", S(src) + "/", "s3://bkt/r/"}).exit_code, 0);
  auto rm = run_xfer({"rm", "-r", "s3://bkt/r/gone"});
  ASSERT_EQ(rm.exit_code, 0) << rm.describe();
  auto ls = run_xfer({"ls", "s3://bkt/r/"});
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
  EXPECT_NE(ls.out.find("keep.txt"), std::string::npos) << ls.out;
  EXPECT_EQ(ls.out.find("gone"), std::string::npos) << ls.out;
  auto again = run_xfer({"ls", "s3://bkt/r/gone/"});
  EXPECT_EQ(again.exit_code, 1) << again.describe();
}

// sync both ways, run again: nothing is sent the second time, though S3's
// listing gives its write time and not the file's mtime (the mtime is
// metadata a HEAD returns, asked where the sizes agree); a file touched to
// another mtime with its size kept goes again, alone.
TEST_F(S3, SyncRunAgainSendsNothingAndATouchedFileAlone) {
  const fs::path src = tmp() / "src";
  put(src / "a.txt", "alpha\n", 1'600'000'001, 1);
  put(src / "sub/b.bin", bytes_of(300'000, 5), 1'600'000'002, 2);
  put(src / "sub/c.bin", bytes_of(20'000, 6), 1'600'000'003, 3);
  FaultProxy proxy(std::string(XFER_SOURCE_DIR) + "/tests/servers/fault_proxy.py", server_->port(),
                   tmp() / "proxy", "[]");
  ASSERT_TRUE(proxy.running());
  ::setenv("AWS_ENDPOINT_URL", proxy.endpoint().c_str(), 1);
  auto count = [&](std::size_t from, const std::string& method) {
    int n = 0;
    const auto lines = proxy.lines();
    for (std::size_t i = from; i < lines.size(); ++i) {
      if (lines[i].method == method && lines[i].target.find("list-type") == std::string::npos) ++n;
    }
    return n;
  };
  const fs::path back = tmp() / "back";
  ASSERT_EQ(run_xfer({"sync", S(src) + "/", "s3://bkt/s/"}).exit_code, 0);
  ASSERT_EQ(run_xfer({"sync", "s3://bkt/s/", S(back) + "/"}).exit_code, 0);
  std::size_t mark = proxy.lines().size();
  auto up = run_xfer({"sync", S(src) + "/", "s3://bkt/s/"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_EQ(count(mark, "PUT"), 0) << up.describe();
  mark = proxy.lines().size();
  auto down = run_xfer({"sync", "s3://bkt/s/", S(back) + "/"});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  EXPECT_EQ(count(mark, "GET"), 0) << down.describe();
  put(src / "sub/c.bin", bytes_of(20'000, 6), 1'600'000'099, 9);
  mark = proxy.lines().size();
  auto touched = run_xfer({"sync", S(src) + "/", "s3://bkt/s/"});
  ASSERT_EQ(touched.exit_code, 0) << touched.describe();
  EXPECT_EQ(count(mark, "PUT"), 1) << touched.describe();
  ASSERT_EQ(run_xfer({"sync", "s3://bkt/s/", S(back) + "/"}).exit_code, 0);
  EXPECT_EQ(mtime_ns(back / "sub/c.bin"), 1'600'000'099'000'000'009LL);
  EXPECT_EQ(mtime_ns(back / "a.txt"), 1'600'000'001'000'000'001LL);
  EXPECT_TRUE(read_file(back / "sub/b.bin") == bytes_of(300'000, 5));
  ::setenv("AWS_ENDPOINT_URL", server_->endpoint().c_str(), 1);
}

// Ctrl-C (or SIGTERM) ends ls and rm -r at once, as it ends ls(1) and
// rm(1), even while a request hangs on the server: such a command has
// nothing to save. (It used to set a flag only a transfer reads, and an
// rm -r of a store's folder went on to its end.)
TEST_F(S3, ASignalEndsLsAndRmAtOnce) {
  xfer::testing::HostileHttp slow([](const xfer::testing::HostileHttp::Request&) {
    std::this_thread::sleep_for(3s);
    return std::string("HTTP/1.1 500 Slow\r\nContent-Length: 0\r\n\r\n");
  });
  ::setenv("AWS_ENDPOINT_URL", slow.url("").c_str(), 1);
  for (const auto& [args, sig] :
       {std::pair{std::vector<std::string>{"ls", "s3://bkt/d/"}, SIGINT},
        std::pair{std::vector<std::string>{"rm", "-r", "s3://bkt/d"}, SIGTERM}}) {
    const auto started = std::chrono::steady_clock::now();
    auto r = run_xfer_signal_when(
        args, sig, [&](pid_t) { return std::chrono::steady_clock::now() - started > 500ms; },
        nullptr, 60s);
    EXPECT_TRUE(r.signalled) << args[0];
    EXPECT_EQ(r.result.term_signal, sig) << r.result.describe();
    EXPECT_LT(r.result.seconds, 2.5) << r.result.describe();
  }
  ::setenv("AWS_ENDPOINT_URL", server_->endpoint().c_str(), 1);
}

// A tree of more than a thousand objects, counted at a proxy: a copy down
// walks it with one listing of a thousand keys per request (not one per
// folder), the filter rules still apply to its folders; rm -r deletes
// with DeleteObjects, a thousand keys per request, never one DELETE per
// object; what is beside the folder stays.
TEST_F(S3, AThousandObjectsAreListedAndDeletedPerRequest) {
  const fs::path src = tmp() / "src";
  put(src / "keep.txt", "keep\n", 1'600'000'000, 0);
  for (int i = 0; i < 1003; ++i) {
    put(src / "many" / std::to_string(i % 7) / ("o" + std::to_string(i)), std::to_string(i),
        1'600'000'000, i);
  }
  auto up = run_xfer({"cp", "-r", S(src) + "/", "s3://bkt/m/"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  FaultProxy proxy(std::string(XFER_SOURCE_DIR) + "/tests/servers/fault_proxy.py", server_->port(),
                   tmp() / "proxy", "[]");
  ASSERT_TRUE(proxy.running());
  ::setenv("AWS_ENDPOINT_URL", proxy.endpoint().c_str(), 1);
  const fs::path back = tmp() / "back";
  auto down = run_xfer({"cp", "-r", "--exclude", "3/", "s3://bkt/m/", S(back) + "/"});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  int flat = 0;
  int by_folder = 0;
  for (const auto& l : proxy.lines()) {
    if (l.method != "GET" || l.target.find("list-type") == std::string::npos) continue;
    ++(l.target.find("delimiter") == std::string::npos ? flat : by_folder);
  }
  EXPECT_EQ(flat, 2) << "1004 keys, a thousand a page";
  EXPECT_LE(by_folder, 1) << "the source's own stat() at most";
  EXPECT_EQ(read_file(back / "keep.txt"), "keep\n");
  EXPECT_FALSE(fs::exists(back / "many/3")) << "an excluded folder came down";
  std::size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(back / "many")) {
    if (!e.is_regular_file()) continue;
    ++files;
    const std::string name = e.path().filename().string();
    EXPECT_EQ("o" + read_file(e.path()), name);
    EXPECT_EQ(mtime_ns(e.path()), 1'600'000'000'000'000'000LL + std::stoll(name.substr(1)));
  }
  EXPECT_EQ(files, 1003u - 143u);  // 143 of them in many/3
  auto not_empty = run_xfer({"rm", "s3://bkt/m/many"});
  EXPECT_EQ(not_empty.exit_code, 1) << not_empty.describe();
  auto rm = run_xfer({"rm", "-r", "s3://bkt/m/many"});
  ASSERT_EQ(rm.exit_code, 0) << rm.describe();
  int batches = 0;
  int deletes = 0;
  for (const auto& l : proxy.lines()) {
    if (l.method == "POST" && l.target.find("delete") != std::string::npos) ++batches;
    if (l.method == "DELETE") ++deletes;
  }
  EXPECT_EQ(batches, 2);
  EXPECT_EQ(deletes, 0);
  ::setenv("AWS_ENDPOINT_URL", server_->endpoint().c_str(), 1);
  auto ls = run_xfer({"ls", "-R", "s3://bkt/m/"});
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
  EXPECT_NE(ls.out.find("keep.txt"), std::string::npos) << ls.out;
  EXPECT_EQ(ls.out.find("many"), std::string::npos) << ls.out;
}

// With the remote's directory_markers (rclone's name), an empty folder is
// kept as a zero-byte "folder/" object: by cp -r, sync and mkdir, for the
// folders that hold nothing (a folder with objects exists by them), and a
// copy down makes them again. Without it, no marker is written.
TEST_F(S3, DirectoryMarkersKeepEmptyFoldersWhenAsked) {
  const fs::path src = tmp() / "src";
  fs::create_directories(src / "hollow");
  fs::create_directories(src / "a/deep/empty");
  fs::create_directories(src / "only/sub");
  put(src / "a/f.txt", "eff\n", 1'600'000'010, 10);
  FaultProxy proxy(std::string(XFER_SOURCE_DIR) + "/tests/servers/fault_proxy.py", server_->port(),
                   tmp() / "proxy", "[]");
  ASSERT_TRUE(proxy.running());
  ::setenv("AWS_ENDPOINT_URL", proxy.endpoint().c_str(), 1);
  // The markers PUT since `from` lines of the log.
  auto markers = [&](std::size_t from) {
    std::set<std::string> out;
    const auto lines = proxy.lines();
    for (std::size_t i = from; i < lines.size(); ++i) {
      if (lines[i].method == "PUT" && lines[i].target.back() == '/') out.insert(lines[i].target);
    }
    return out;
  };
  // The destination folder made by the copy gets one too, as rclone's.
  const std::set<std::string> want_t = {"/bkt/t/", "/bkt/t/hollow/", "/bkt/t/a/deep/empty/",
                                        "/bkt/t/only/sub/"};
  auto up = run_xfer({"cp", "-r", S(src) + "/", "s3://bkt/t/?directory_markers=true"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_EQ(up.err.find("skipping empty folder"), std::string::npos) << up.err;
  EXPECT_EQ(markers(0), want_t);
  std::size_t mark = proxy.lines().size();
  auto sync = run_xfer({"sync", S(src) + "/", "s3://bkt/s/?directory_markers=yes"});
  ASSERT_EQ(sync.exit_code, 0) << sync.describe();
  EXPECT_EQ(markers(mark), (std::set<std::string>{"/bkt/s/", "/bkt/s/hollow/",
                                                  "/bkt/s/a/deep/empty/", "/bkt/s/only/sub/"}));
  mark = proxy.lines().size();
  auto again = run_xfer({"sync", S(src) + "/", "s3://bkt/s/?directory_markers=yes"});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_TRUE(markers(mark).empty()) << "a marker already there was written again";
  mark = proxy.lines().size();
  auto plain = run_xfer({"cp", "-r", S(src) + "/", "s3://bkt/n/"});
  ASSERT_EQ(plain.exit_code, 0) << plain.describe();
  EXPECT_NE(plain.err.find("skipping empty folder " + S(src / "hollow")), std::string::npos)
      << plain.err;
  EXPECT_TRUE(markers(mark).empty());

  auto ls = run_xfer({"ls", "s3://bkt/t/"});
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
  EXPECT_NE(ls.out.find("hollow/"), std::string::npos) << ls.out;
  const fs::path back = tmp() / "back";
  auto down = run_xfer({"cp", "-r", "s3://bkt/t/", S(back) + "/"});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  for (const char* dir : {"hollow", "a/deep/empty", "only/sub"}) {
    EXPECT_TRUE(fs::is_directory(back / dir)) << dir;
    EXPECT_TRUE(fs::is_directory(back / dir) && fs::is_empty(back / dir)) << dir;
  }
  EXPECT_EQ(read_file(back / "a/f.txt"), "eff\n");

  auto made = run_xfer({"mkdir", "s3://bkt/made?directory_markers=on"});
  ASSERT_EQ(made.exit_code, 0) << made.describe();
  auto top = run_xfer({"ls", "s3://bkt/"});
  EXPECT_NE(top.out.find("made/"), std::string::npos) << top.describe();
  auto rm = run_xfer({"rm", "-r", "s3://bkt/made"});
  ASSERT_EQ(rm.exit_code, 0) << rm.describe();
  top = run_xfer({"ls", "s3://bkt/"});
  EXPECT_EQ(top.out.find("made/"), std::string::npos) << top.describe();
  auto bad = run_xfer({"mkdir", "s3://bkt/x?directory_markers=maybe"});
  EXPECT_EQ(bad.exit_code, 1) << bad.describe();
  EXPECT_NE(bad.err.find("'maybe' is not true or false"), std::string::npos) << bad.err;
  ::setenv("AWS_ENDPOINT_URL", server_->endpoint().c_str(), 1);
}

// What a user gets wrong says so in one line, exit 1, and nothing is left
// at the destination.
TEST_F(S3, MistakesAreClearErrors) {
  auto bucket = run_xfer({"ls", "s3://nobucket/"});
  EXPECT_EQ(bucket.exit_code, 1) << bucket.describe();
  EXPECT_TRUE(icontains(bucket.err, "no such bucket 'nobucket'")) << bucket.err;

  auto key = run_xfer({"cp", "s3://bkt/nope.bin", S(tmp() / "x")});
  EXPECT_EQ(key.exit_code, 1) << key.describe();
  EXPECT_TRUE(icontains(key.err, "nope.bin")) << key.err;
  EXPECT_FALSE(fs::exists(tmp() / "x"));

  write_file(tmp() / "f.txt", "f\n");
  // s3rver checks the key id, not the signature (the signer is checked
  // against AWS's published example in the unit tests).
  ::setenv("AWS_ACCESS_KEY_ID", "NOBODY", 1);
  auto creds = run_xfer({"cp", S(tmp() / "f.txt"), "s3://bkt/f.txt"});
  EXPECT_EQ(creds.exit_code, 1) << creds.describe();
  EXPECT_TRUE(icontains(creds.err, "check access_key_id and secret_access_key")) << creds.err;
  EXPECT_EQ(split_lines(creds.err).size(), 1u) << creds.err;
  ::setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
  auto ls = run_xfer({"ls", "s3://bkt/"});
  EXPECT_EQ(ls.out.find("f.txt"), std::string::npos) << ls.out;

  ::unsetenv("AWS_ACCESS_KEY_ID");
  auto none = run_xfer({"ls", "s3://bkt/"});
  EXPECT_EQ(none.exit_code, 1) << none.describe();
  EXPECT_TRUE(icontains(none.err, "no S3 credentials")) << none.err;
}

// A hostile S3 endpoint (tests/servers/hostile_http.hpp): what it claims
// is never believed past its bounds. Each case: exit 1, the words that say
// what was wrong, nothing under the destination's name.
TEST_F(S3, AHostileServerIsRefusedNeverBelieved) {
  using Request = xfer::testing::HostileHttp::Request;
  const std::string data = bytes_of(1u << 20, 11);
  auto head = [](int status, const std::string& extra) {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nConnection: close\r\n" + extra + "\r\n";
  };
  const std::string good_head = "Content-Length: " + std::to_string(data.size()) +
                                "\r\nETag: \"v1\"\r\nx-amz-meta-mtime: 1600000000.5\r\n";
  struct Case {
    std::string name;
    std::function<std::string(const Request&)> answer;
    std::vector<std::string> args;
    std::string says;
  };
  const fs::path dst = tmp() / "dst.bin";
  const std::vector<Case> cases = {
      {"a size past 5 TiB",
       [&](const Request&) {
         return head(200, "Content-Length: 1152921504606846976\r\nETag: \"v\"\r\n");
       },
       {"cp", "s3://bkt/f.bin", S(dst)},
       "over 5 TiB"},
      {"an ETag of 2000 bytes",
       [&](const Request& r) {
         const std::string h =
             head(200, "Content-Length: 10\r\nETag: \"" + std::string(2000, 'e') + "\"\r\n");
         return r.head ? h : h + std::string(10, 'x');
       },
       {"cp", "s3://bkt/f.bin", S(dst)},
       "no ETag"},
      {"another range than asked",
       [&](const Request& r) {
         if (r.head) return head(200, good_head);
         const std::string body = data.substr(0, 65536);
         return head(206, "Content-Length: 65536\r\nContent-Range: bytes 1-65536/" +
                              std::to_string(data.size()) + "\r\n") +
                body;
       },
       {"cp", "s3://bkt/f.bin", S(dst)},
       "range is not the one asked for"},
      {"the object replaced after the HEAD (If-Match fails)",
       [&](const Request& r) {
         if (r.head) return head(200, good_head);
         const std::string xml =
             "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions "
             "you specified did not hold</Message></Error>";
         return head(412, "Content-Length: " + std::to_string(xml.size()) + "\r\n") + xml;
       },
       {"cp", "s3://bkt/f.bin", S(dst)},
       "replaced on the server"},
      {"SlowDown for ever",
       [&](const Request&) {
         const std::string xml =
             "<Error><Code>SlowDown</Code><Message>Reduce your request "
             "rate.</Message></Error>";
         return head(503,
                     "Retry-After: 1\r\nContent-Length: " + std::to_string(xml.size()) + "\r\n") +
                xml;
       },
       {"ls", "s3://bkt/"},
       "SlowDown"},
      {"a delete of a batch refused for one key",
       [&](const Request& r) {
         const auto xml_answer = [&](const std::string& xml) {
           return head(200, "Content-Length: " + std::to_string(xml.size()) + "\r\n") + xml;
         };
         if (r.head) return head(404, "Content-Length: 0\r\n");
         if (r.path.find("delete") != std::string::npos) {
           return xml_answer(
               "<DeleteResult><Error><Key>d/a</Key><Code>AccessDenied</Code><Message>Access "
               "Denied</Message></Error></DeleteResult>");
         }
         return xml_answer(
             "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>d/a</Key>"
             "<Size>1</Size></Contents><Contents><Key>d/b</Key><Size>1</Size></Contents>"
             "</ListBucketResult>");
       },
       {"rm", "-r", "s3://bkt/d"},
       "1 of the 2 objects were not deleted; this one: AccessDenied"},
      {"a listing nested 40 deep",
       [&](const Request&) {
         std::string xml = "<ListBucketResult>";
         for (int i = 0; i < 40; ++i) xml += "<a>";
         for (int i = 0; i < 40; ++i) xml += "</a>";
         xml += "</ListBucketResult>";
         return head(200, "Content-Length: " + std::to_string(xml.size()) + "\r\n") + xml;
       },
       {"ls", "s3://bkt/"},
       "nests deeper than 16"},
      {"a listing that goes on with the same token",
       [&](const Request&) {
         const std::string xml =
             "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>k</Key><Size>1</Size>"
             "</Contents><NextContinuationToken>same</NextContinuationToken></ListBucketResult>";
         return head(200, "Content-Length: " + std::to_string(xml.size()) + "\r\n") + xml;
       },
       {"ls", "s3://bkt/"},
       "no way to go on"},
      {"a key that names the parent folder",
       [&](const Request&) {
         const std::string xml =
             "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>..</Key>"
             "<Size>1</Size></Contents><Contents><Key>ok</Key><Size>1</Size></Contents>"
             "</ListBucketResult>";
         return head(200, "Content-Length: " + std::to_string(xml.size()) + "\r\n") + xml;
       },
       {"ls", "s3://bkt/"},
       "skipping key '..'"},
      {"a part copied without an ETag",
       [&](const Request& r) {
         const auto xml_answer = [&](const std::string& xml) {
           return head(200, "Content-Length: " + std::to_string(xml.size()) + "\r\n") + xml;
         };
         if (r.head && r.path.rfind("/bkt/f.bin", 0) == 0) {
           return head(200,
                       "Content-Length: 6291456\r\nETag: \"v1\"\r\n"
                       "x-amz-meta-mtime: 1600000000.5\r\n");
         }
         if (r.head) return head(404, "Content-Length: 0\r\n");
         if (r.path.find("list-type") != std::string::npos) {
           return xml_answer(
               "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>");
         }
         if (r.path.find("?uploads") != std::string::npos) {
           return xml_answer(
               "<InitiateMultipartUploadResult><UploadId>u1</UploadId>"
               "</InitiateMultipartUploadResult>");
         }
         if (r.path.find("partNumber=") != std::string::npos) {
           return xml_answer(
               "<CopyPartResult><LastModified>2020-01-01T00:00:00.000Z"
               "</LastModified></CopyPartResult>");
         }
         return head(204, "Content-Length: 0\r\n");  // the abort
       },
       {"cp", "s3://bkt/f.bin", "s3://bkt/to.bin?copy_cutoff=5M"},
       "not a CopyPartResult with an ETag"},
      {"a flat listing out of order",
       [&](const Request& r) {
         const auto xml_answer = [&](const std::string& xml) {
           return head(200, "Content-Length: " + std::to_string(xml.size()) + "\r\n") + xml;
         };
         if (r.head || r.path.find("list-type") == std::string::npos) {
           return head(404, "Content-Length: 0\r\n");
         }
         // A folder already left comes back: b/, then a/, then b/ again.
         return xml_answer(
             "<ListBucketResult><IsTruncated>false</IsTruncated>"
             "<Contents><Key>d/b/x</Key><Size>1</Size></Contents>"
             "<Contents><Key>d/a/y</Key><Size>1</Size></Contents>"
             "<Contents><Key>d/b/z</Key><Size>1</Size></Contents></ListBucketResult>");
       },
       {"cp", "-r", "s3://bkt/d/", S(tmp() / "tree") + "/"},
       "not in the order of their bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    xfer::testing::HostileHttp server(c.answer);
    ::setenv("AWS_ENDPOINT_URL", server.url("").c_str(), 1);
    std::vector<std::string> args = c.args;
    if (args[0] == "cp") args.insert(args.begin() + 1, "--no-checkpoint");
    auto r = run_xfer(args, 120s);
    if (c.name == "a key that names the parent folder") {
      // Skipped with a warning; the valid name is listed.
      EXPECT_EQ(r.exit_code, 0) << r.describe();
      EXPECT_NE(r.out.find("ok"), std::string::npos) << r.out;
    } else {
      EXPECT_EQ(r.exit_code, 1) << r.describe();
    }
    EXPECT_TRUE(icontains(r.err, c.says)) << r.err;
    EXPECT_FALSE(fs::exists(dst));
  }
  ::setenv("AWS_ENDPOINT_URL", server_->endpoint().c_str(), 1);
}

// Both ways with rclone (its s3 backend, on the same s3rver): what xfer
// uploads, rclone downloads with the same bytes and mtimes (read from
// x-amz-meta-mtime, the key both use), and what rclone uploads (a
// multipart object among them), xfer downloads the same.
TEST_F(S3, RcloneReadsWhatXferWritesAndTheOtherWay) {
  if (::access("/usr/bin/rclone", X_OK) != 0) {
    FAIL() << "rclone is not installed (scripts/setup.sh installs it)";
  }
  const fs::path src = tmp() / "src";
  put(src / "a.txt", "alpha\n", 1'600'000'001, 123'456'789);
  put(src / "sub/b.bin", bytes_of(70'000, 3), 1'600'000'002, 5);
  put(src / "sub/deeper/big.bin", bytes_of(24u << 20, 4), 1'600'000'003, 999'999'999);
  auto expect_same = [&](const fs::path& got_root) {
    for (const auto& e : fs::recursive_directory_iterator(src)) {
      if (!e.is_regular_file()) continue;
      const fs::path got = got_root / fs::relative(e.path(), src);
      ASSERT_TRUE(fs::exists(got)) << got;
      EXPECT_TRUE(read_file(got) == read_file(e.path())) << got;
      EXPECT_EQ(mtime_ns(got), mtime_ns(e.path())) << got;
    }
  };
  auto up = run_xfer({"cp", "-r", "--chunk-size", "8M", S(src) + "/", "s3://bkt/by-xfer/"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  auto rclone = [&](const std::string& from, const std::string& to) {
    return run({"rclone", "copy", "--config", "/dev/null", "--s3-provider", "Other",
                "--s3-endpoint", server_->endpoint(), "--s3-access-key-id", "S3RVER",
                "--s3-secret-access-key", "S3RVER", "--s3-force-path-style", "--s3-upload-cutoff",
                "5M", "--s3-chunk-size", "5M", from, to});
  };
  auto down = rclone(":s3:bkt/by-xfer", S(tmp() / "by-rclone"));
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  expect_same(tmp() / "by-rclone");

  auto rup = rclone(S(src), ":s3:bkt/by-rclone");
  ASSERT_EQ(rup.exit_code, 0) << rup.describe();
  auto xdown = run_xfer({"cp", "-r", "s3://bkt/by-rclone/", S(tmp() / "back") + "/"});
  ASSERT_EQ(xdown.exit_code, 0) << xdown.describe();
  expect_same(tmp() / "back");
}

// gs:// is the same code with GCS's endpoint and conventions; there is no
// GCS emulator here, so it runs against s3rver with the endpoint given in
// the URL and the HMAC keys in ~/.boto, where gsutil keeps them.
TEST_F(S3, GsUrlsSpeakTheXmlApiWithHmacKeysFromBoto) {
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  const std::string data = bytes_of(12u << 20, 21);
  const fs::path src = tmp() / "g.bin";
  put(src, data, 1'600'000'020, 20);
  const std::string url = "gs://bkt/g/g.bin?endpoint=" + server_->endpoint();
  auto none = run_xfer({"cp", S(src), url});
  EXPECT_EQ(none.exit_code, 1) << none.describe();
  EXPECT_TRUE(icontains(none.err, "no GCS HMAC keys")) << none.err;
  write_file(home_ / ".boto",
             "[Credentials]\ngs_access_key_id = S3RVER\n"
             "gs_secret_access_key = S3RVER\n");
  auto up = run_xfer({"cp", "--chunk-size", "5M", S(src), url});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  auto down = run_xfer({"cp", url, S(tmp() / "back.bin")});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  EXPECT_TRUE(read_file(tmp() / "back.bin") == data);
  EXPECT_EQ(mtime_ns(tmp() / "back.bin"), 1'600'000'020'000'000'020LL);
  // The same object through s3://: one store, two names for its API.
  ::setenv("AWS_ACCESS_KEY_ID", "S3RVER", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "S3RVER", 1);
  auto ls = run_xfer({"ls", "s3://bkt/g/"});
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
  EXPECT_NE(ls.out.find("g.bin"), std::string::npos) << ls.out;
}

// What a tree of small objects costs, counted at a proxy: up, a HEAD of
// the destination key and its PUT (only the PUT once the destination
// folder is listed, from a folder's 8th file); down, one ranged GET that
// holds the whole object, its metadata and its ETag; a rerun over what
// is there, one HEAD each way (S3's listing has no mtime; then nothing is
// sent).
TEST_F(S3, ASmallObjectCostsTwoRequestsUpAndOneDown) {
  const fs::path src = tmp() / "src";
  std::map<std::string, std::string> files;
  for (int i = 0; i < 30; ++i) {
    const std::string name = (i % 2 ? "sub/f" : "f") + std::to_string(i) + ".bin";
    files[name] = bytes_of(static_cast<std::size_t>(1000 + i * 8000), 40 + i);
    put(src / name, files[name], 1'600'000'100 + i, i);
  }
  FaultProxy proxy(std::string(XFER_SOURCE_DIR) + "/tests/servers/fault_proxy.py", server_->port(),
                   tmp() / "proxy", "[]");
  ASSERT_TRUE(proxy.running());
  ::setenv("AWS_ENDPOINT_URL", proxy.endpoint().c_str(), 1);
  // Requests per object key since `from` lines of the log (listings apart).
  auto per_key = [&](std::size_t from) {
    std::map<std::string, std::string> out;
    const auto lines = proxy.lines();
    for (std::size_t i = from; i < lines.size(); ++i) {
      const auto& l = lines[i];
      if (l.target.rfind("/bkt/t/", 0) != 0) continue;
      out[l.target.substr(7, l.target.find('?') - 7)] += l.method + " ";
    }
    return out;
  };
  auto up = run_xfer({"cp", "-r", S(src) + "/", "s3://bkt/t/"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  auto seen = per_key(0);
  // The first 7 files of a folder cost a HEAD each; from the next, the
  // folder's listing at the destination (one request) says what is there.
  int listed_only = 0;
  for (const auto& [name, data] : files) {
    EXPECT_TRUE(seen[name] == "HEAD PUT " || seen[name] == "PUT ") << name << ": " << seen[name];
    listed_only += seen[name] == "PUT ";
  }
  EXPECT_EQ(listed_only, 2 * (15 - 7));
  for (const auto& [name, methods] : seen) {
    EXPECT_TRUE(files.count(name) != 0 || name == "sub") << name << ": " << methods;
  }
  std::size_t mark = proxy.lines().size();
  auto again = run_xfer({"cp", "-r", S(src) + "/", "s3://bkt/t/"});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  seen = per_key(mark);
  for (const auto& [name, data] : files) EXPECT_EQ(seen[name], "HEAD ") << name;
  mark = proxy.lines().size();
  auto down = run_xfer({"cp", "-r", "s3://bkt/t/", S(tmp() / "back") + "/"});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  seen = per_key(mark);
  for (const auto& [name, data] : files) {
    EXPECT_EQ(seen[name], "GET ") << name;
    EXPECT_TRUE(read_file(tmp() / "back" / name) == data) << name;
    EXPECT_EQ(mtime_ns(tmp() / "back" / name), mtime_ns(src / name)) << name;
  }
  mark = proxy.lines().size();
  auto down_again = run_xfer({"cp", "-r", "s3://bkt/t/", S(tmp() / "back") + "/"});
  ASSERT_EQ(down_again.exit_code, 0) << down_again.describe();
  seen = per_key(mark);
  for (const auto& [name, data] : files) EXPECT_EQ(seen[name], "HEAD ") << name;
  ::setenv("AWS_ENDPOINT_URL", server_->endpoint().c_str(), 1);
}

// A copy within the store is the store's own (CopyObject): no byte of it
// passes through xfer, seen in the log of a proxy in front of s3rver (a
// HEAD of each source object, no GET), and the copies keep bytes and
// mtimes, in the same bucket and into another.
TEST_F(S3, CopiesWithinTheStoreStayInTheStore) {
  ASSERT_TRUE(server_->make_bucket("other")) << server_->error();
  const fs::path src = tmp() / "src";
  const std::string big = bytes_of(3u << 20, 31);
  put(src / "a.bin", big, 1'600'000'030, 30);
  put(src / "sub/b.txt", "bee\n", 1'600'000'031, 31);
  ASSERT_EQ(run_xfer({"cp", "-r", S(src) + "/", "s3://bkt/from/"}).exit_code, 0);
  FaultProxy proxy(std::string(XFER_SOURCE_DIR) + "/tests/servers/fault_proxy.py", server_->port(),
                   tmp() / "proxy", "[]");
  ASSERT_TRUE(proxy.running());
  ::setenv("AWS_ENDPOINT_URL", proxy.endpoint().c_str(), 1);
  auto within = run_xfer({"cp", "-r", "s3://bkt/from/", "s3://bkt/to/"});
  ASSERT_EQ(within.exit_code, 0) << within.describe();
  auto across = run_xfer({"cp", "s3://bkt/from/a.bin", "s3://other/a.bin"});
  ASSERT_EQ(across.exit_code, 0) << across.describe();
  std::string log;
  for (const auto& l : proxy.lines()) {
    log += l.action + " " + l.method + " " + l.target + "\n";
    EXPECT_FALSE(l.method == "GET" && l.target.rfind("/bkt/from/", 0) == 0)
        << "the bytes came through xfer: " << l.target;
  }
  EXPECT_NE(log.find("PUT /bkt/to/a.bin"), std::string::npos) << log;
  EXPECT_NE(log.find("PUT /other/a.bin"), std::string::npos) << log;
  ::setenv("AWS_ENDPOINT_URL", server_->endpoint().c_str(), 1);
  auto back = run_xfer({"cp", "-r", "s3://bkt/to/", S(tmp() / "back") + "/"});
  ASSERT_EQ(back.exit_code, 0) << back.describe();
  EXPECT_TRUE(read_file(tmp() / "back/a.bin") == big);
  EXPECT_EQ(read_file(tmp() / "back/sub/b.txt"), "bee\n");
  EXPECT_EQ(mtime_ns(tmp() / "back/a.bin"), 1'600'000'030'000'000'030LL);
  EXPECT_EQ(mtime_ns(tmp() / "back/sub/b.txt"), 1'600'000'031'000'000'031LL);
  auto other = run_xfer({"cp", "s3://other/a.bin", S(tmp() / "other.bin")});
  ASSERT_EQ(other.exit_code, 0) << other.describe();
  EXPECT_TRUE(read_file(tmp() / "other.bin") == big);
  EXPECT_EQ(mtime_ns(tmp() / "other.bin"), 1'600'000'030'000'000'030LL);
}

// A copy within the store of an object over the remote's copy_cutoff
// (5 GiB by default; 5 MiB here) goes in parts the store copies itself
// (UploadPartCopy, each with x-amz-copy-source-if-match), seen at a proxy:
// three parts of a 13 MiB object, no GET of the source; the copy has the
// bytes and the mtime. A store that answers UploadPartCopy 501 (s3rver
// does, unpatched) gets the object streamed through xfer instead.
TEST_F(S3, ACopyOverTheCutoffIsCopiedInPartsByTheStore) {
  const fs::path src = tmp() / "src.bin";
  const std::string data = bytes_of((13u << 20) + 12345, 71);
  put(src, data, 1'600'000'070, 70);
  ASSERT_EQ(run_xfer({"cp", S(src), "s3://bkt/big.bin"}).exit_code, 0);
  for (const bool refused : {false, true}) {
    FaultProxy proxy(
        std::string(XFER_SOURCE_DIR) + "/tests/servers/fault_proxy.py", server_->port(),
        tmp() / (refused ? "proxy2" : "proxy"),
        refused ? R"([{"method": "PUT", "match": "partNumber", "do": "501", "times": 1}])" : "[]");
    ASSERT_TRUE(proxy.running());
    ::setenv("AWS_ENDPOINT_URL", proxy.endpoint().c_str(), 1);
    const std::string to = refused ? "streamed.bin" : "copy.bin";
    auto cp = run_xfer({"cp", "s3://bkt/big.bin", "s3://bkt/" + to + "?copy_cutoff=5M"});
    ASSERT_EQ(cp.exit_code, 0) << cp.describe();
    std::string log;
    int parts = 0;
    int source_gets = 0;
    for (const auto& l : proxy.lines()) {
      log += l.action + " " + l.method + " " + l.target + "\n";
      if (l.method == "PUT" && l.target.rfind("/bkt/" + to + "?", 0) == 0 &&
          l.target.find("partNumber=") != std::string::npos) {
        ++parts;
      }
      if (l.method == "GET" && l.target.rfind("/bkt/big.bin", 0) == 0) ++source_gets;
    }
    if (refused) {
      // The parts already asked are dropped with their upload.
      EXPECT_NE(log.find("DELETE /bkt/streamed.bin?uploadId="), std::string::npos) << log;
      EXPECT_GE(source_gets, 1) << "not streamed\n" << log;
      EXPECT_NE(log.find("PUT /bkt/streamed.bin"), std::string::npos) << log;
    } else {
      EXPECT_EQ(parts, 3) << log;
      EXPECT_EQ(source_gets, 0) << "the bytes came through xfer\n" << log;
    }
    ::setenv("AWS_ENDPOINT_URL", server_->endpoint().c_str(), 1);
    const fs::path back = tmp() / (to + ".back");
    auto down = run_xfer({"cp", "s3://bkt/" + to, S(back)});
    ASSERT_EQ(down.exit_code, 0) << down.describe();
    EXPECT_TRUE(read_file(back) == data) << to;
    EXPECT_EQ(mtime_ns(back), 1'600'000'070'000'000'070LL) << to;
  }
  auto bad = run_xfer({"cp", "s3://bkt/big.bin", "s3://bkt/x.bin?copy_cutoff=1k"});
  EXPECT_EQ(bad.exit_code, 1) << bad.describe();
  EXPECT_NE(bad.err.find("'1k' is not a size from 5M to 5G"), std::string::npos) << bad.err;
}

// A store that throttles, and one that drops a connection in the middle of
// a part, in front of the real s3rver (tests/servers/fault_proxy.py): each
// throttled call is made again after the server's Retry-After and then
// succeeds, the cut part is sent again, and the object is whole.
TEST_F(S3, ThrottlesAreWaitedOutAndACutPartIsSentAgain) {
  const std::string data = bytes_of(24u << 20, 7);
  const fs::path src = tmp() / "big.bin";
  put(src, data, 1'600'000'010, 250);
  FaultProxy proxy(std::string(XFER_SOURCE_DIR) + "/tests/servers/fault_proxy.py", server_->port(),
                   tmp() / "proxy", R"([
      {"method": "POST", "match": "?uploads", "do": "503", "times": 1, "retry_after": 1},
      {"method": "PUT", "match": "partNumber=1&", "do": "503", "times": 2, "retry_after": 1},
      {"method": "PUT", "match": "partNumber=2&", "do": "cut", "times": 1, "after": 1048576},
      {"method": "PUT", "match": "partNumber=3&", "do": "429", "times": 1, "retry_after": 2},
      {"method": "GET", "match": "list-type=2", "do": "429", "times": 2, "retry_after": 0}])");
  ASSERT_TRUE(proxy.running());
  ::setenv("AWS_ENDPOINT_URL", proxy.endpoint().c_str(), 1);
  auto up = run_xfer({"cp", "--chunk-size", "8M", S(src), "s3://bkt/big.bin"}, 120s);
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  auto ls = run_xfer({"ls", "s3://bkt/"}, 60s);
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
  EXPECT_NE(ls.out.find("big.bin"), std::string::npos) << ls.out;

  // What the proxy saw: every rule fired, and each throttled call came
  // again no sooner than its Retry-After.
  const auto lines = proxy.lines();
  auto first_after = [&](std::size_t i) -> const FaultProxy::Line* {
    for (std::size_t j = i + 1; j < lines.size(); ++j) {
      if (lines[j].method == lines[i].method && lines[j].action == "fwd" &&
          lines[j].target.find(lines[i].target.substr(0, lines[i].target.find("uploadId"))) == 0) {
        return &lines[j];
      }
    }
    return nullptr;
  };
  std::map<std::string, int> fired;
  std::string log;
  for (const auto& l : lines) {
    log += std::to_string(l.t) + " " + l.action + " " + l.method + " " + l.target + "\n";
  }
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto& l = lines[i];
    if (l.action == "fwd") continue;
    ++fired[l.action];
    const FaultProxy::Line* again = first_after(i);
    ASSERT_NE(again, nullptr) << "not made again: " << l.method << " " << l.target << "\n" << log;
    if (l.action == "503" && l.method == "PUT") EXPECT_GE(again->t - l.t, 0.9) << log;
    if (l.action == "429" && l.method == "PUT") EXPECT_GE(again->t - l.t, 1.9) << log;
  }
  EXPECT_EQ(fired["503"], 3) << log;
  EXPECT_EQ(fired["429"], 3) << log;
  EXPECT_EQ(fired["cut"], 1) << log;

  // The object, read straight from the server: whole, with its mtime.
  ::setenv("AWS_ENDPOINT_URL", server_->endpoint().c_str(), 1);
  const fs::path back = tmp() / "back.bin";
  auto down = run_xfer({"cp", "s3://bkt/big.bin", S(back)});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  EXPECT_TRUE(read_file(back) == data);
  EXPECT_EQ(mtime_ns(back), 1'600'000'010'000'000'250LL);
  const fs::path uploads = server_->data() / "bkt" / "._S3rver_uploads";
  if (fs::exists(uploads)) EXPECT_TRUE(fs::is_empty(uploads)) << uploads;
}

}  // namespace
}  // namespace xfer_it
