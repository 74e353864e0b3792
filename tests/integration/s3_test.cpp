// xfer and S3-compatible stores: a real s3rver (tests/servers/s3rver.hpp)
// started on loopback for each test, reached as a user reaches one (keys
// and endpoint in $AWS_*, $HOME a folder of the test's). What is checked
// is what a user would check: the bytes and mtimes that come back, what
// `ls` shows, exit codes and the words of the errors.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "../servers/s3rver.hpp"
#include "harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;
using xfer::testing::S3rverServer;

std::string S(const fs::path& p) {
  return p.string();
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
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
    for (const char* name : {"HOME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                             "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION"}) {
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
// prefixes.
TEST_F(S3, ATreeGoesUpAndComesBackAsItWas) {
  const fs::path src = tmp() / "src";
  put(src / "a.txt", "alpha\n", 1'600'000'001, 123'456'789);
  put(src / "with space.txt", random_bytes(5000, 1), 1'600'000'002, 1);
  put(src / "sub/deeper/x&y+z.bin", random_bytes(100'000, 2), 1'600'000'003, 0);
  put(src / "sub/empty.bin", "", 1'600'000'005, 5);
  put(src / "large.bin", random_bytes(48u << 20, 4), 1'600'000'006, 999'999'999);
  auto up = run_xfer({"cp", "-r", S(src) + "/", "s3://bkt/t/"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  auto ls = run_xfer({"ls", "s3://bkt/t/"});
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
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
  const std::string data = random_bytes(96u << 20, 9);
  const fs::path src = tmp() / "big.bin";
  put(src, data, 1'600'000'000, 0);
  const std::vector<std::string> args = {
      "cp", "--json", "--bwlimit", "24M", "--chunk-size", "8M", S(src), "s3://bkt/up/big.bin"};
  // Socket sends are not in /proc's wchar: the kill comes by the clock, at
  // about 50 MiB of 96 (--bwlimit 24M).
  const auto started = std::chrono::steady_clock::now();
  auto first = run_xfer_signal_when(
      args, SIGKILL, [&](pid_t) { return std::chrono::steady_clock::now() - started > 2200ms; },
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

}  // namespace
}  // namespace xfer_it
