// xfer cp from web servers: a real nginx (tests/servers/nginx.hpp) for what
// a user does (files, trees from autoindex pages in HTML and JSON, https
// with a CA of the test's, a server killed mid-transfer, a file changed
// between runs), and a hostile server of this file's own for what a broken
// or malicious one sends (a body cut short, a lying Content-Length or
// Content-Range, 416 to everything): each a clear error, exit 1, nothing
// under the final name.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "../servers/hostile_http.hpp"
#include "../servers/nginx.hpp"
#include "harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;
using xfer::testing::NginxServer;

std::string S(const fs::path& p) {
  return p.string();
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

void put(const fs::path& p, const std::string& data, std::int64_t mtime) {
  fs::create_directories(p.parent_path());
  write_file(p, data);
  timespec t[2] = {{mtime, 0}, {mtime, 0}};
  ::utimensat(AT_FDCWD, p.c_str(), t, 0);
}

std::int64_t mtime_s(const fs::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mtim.tv_sec;
}

nlohmann::json summary_of(const RunResult& r) {
  for (const auto& line : split_lines(r.out)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("event", "") == "summary") return j;
  }
  return {};
}

// The names below `root` (files and folders, relative), sorted.
std::vector<std::string> names_below(const fs::path& root) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    out.push_back(fs::relative(e.path(), root).string() + (e.is_directory() ? "/" : ""));
  }
  std::sort(out.begin(), out.end());
  return out;
}

class Http : public XferTest {
 protected:
  void SetUp() override {
    XferTest::SetUp();
    nginx_ = std::make_unique<NginxServer>(tmp() / "nginx");
    ASSERT_TRUE(nginx_->start()) << nginx_->error();
  }
  void TearDown() override {
    nginx_.reset();  // stopped by its PID
    XferTest::TearDown();
  }
  // A tree of files (names a server must escape, one file large enough to
  // go in chunks) under the served pub/.
  void make_tree() {
    const fs::path pub = nginx_->root() / "pub";
    put(pub / "a.txt", "alpha\n", 1'600'000'001);
    put(pub / "with space.txt", random_bytes(5000, 1), 1'600'000'002);
    put(pub / "sub/deeper/x&y.bin", random_bytes(100'000, 2), 1'600'000'003);
    put(pub / "sub/c:d.bin", random_bytes(3, 3), 1'600'000'004);
    put(pub / "sub/empty.bin", "", 1'600'000'005);
    put(pub / "large.bin", random_bytes(40u << 20, 4), 1'600'000'006);
  }
  std::unique_ptr<NginxServer> nginx_;
};

// What the server has is what arrives: every file's bytes and mtime, from
// the HTML index, the JSON index and over https (HTTP/2).
TEST_F(Http, CopiesFilesAndTreesAsTheServerHasThem) {
  make_tree();
  const fs::path pub = nginx_->root() / "pub";
  struct Case {
    std::string name, url;
    std::vector<std::string> extra;
  };
  const std::vector<Case> cases = {
      {"html", nginx_->http_url("/pub/"), {}},
      {"json", nginx_->json_url("/pub/"), {}},
      {"https", nginx_->https_url("/pub/"), {"--ca", S(nginx_->ca_file())}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path dst = tmp() / ("dst-" + c.name);
    std::vector<std::string> args = c.extra;
    for (const std::string a : {"cp", "-r", "--json"}) args.push_back(a);
    args.push_back(c.url);
    args.push_back(S(dst) + "/");
    auto r = run_xfer(args);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_EQ(names_below(dst), names_below(pub));
    for (const auto& e : fs::recursive_directory_iterator(pub)) {
      if (!e.is_regular_file()) continue;
      const fs::path got = dst / fs::relative(e.path(), pub);
      EXPECT_EQ(read_file(got), read_file(e.path())) << got;
      EXPECT_EQ(mtime_s(got), mtime_s(e.path())) << got;
    }
    EXPECT_EQ(summary_of(r).value("files", 0), 6) << r.out;
  }
  // One file, to a name of the user's.
  auto one = run_xfer({"cp", nginx_->http_url("/pub/with%20space.txt"), S(tmp() / "one.txt")});
  ASSERT_EQ(one.exit_code, 0) << one.describe();
  EXPECT_EQ(read_file(tmp() / "one.txt"), read_file(pub / "with space.txt"));
}

// An https server is verified: its CA unknown is a clear error and nothing
// is written; --ca FILE or --insecure (asked for) let it through.
TEST_F(Http, HttpsIsVerifiedUnlessToldOtherwise) {
  put(nginx_->root() / "f.bin", random_bytes(3000, 5), 1'600'000'000);
  const fs::path dst = tmp() / "f.bin";
  auto refused = run_xfer({"cp", nginx_->https_url("/f.bin"), S(dst)});
  EXPECT_EQ(refused.exit_code, 1) << refused.describe();
  EXPECT_TRUE(icontains(refused.err, "certificate is not trusted")) << refused.err;
  EXPECT_TRUE(icontains(refused.err, "--ca")) << refused.err;
  EXPECT_FALSE(fs::exists(dst));
  auto with_ca =
      run_xfer({"--ca", S(nginx_->ca_file()), "cp", nginx_->https_url("/f.bin"), S(dst)});
  ASSERT_EQ(with_ca.exit_code, 0) << with_ca.describe();
  fs::remove(dst);
  auto insecure = run_xfer({"cp", "--insecure", nginx_->https_url("/f.bin"), S(dst)});
  ASSERT_EQ(insecure.exit_code, 0) << insecure.describe();
  EXPECT_EQ(read_file(dst), read_file(nginx_->root() / "f.bin"));
}

TEST_F(Http, MissingFilesAndReadOnlyAreClearErrors) {
  auto missing = run_xfer({"cp", nginx_->http_url("/nope.bin"), S(tmp() / "x")});
  EXPECT_EQ(missing.exit_code, 1) << missing.describe();
  EXPECT_TRUE(icontains(missing.err, "nope.bin")) << missing.err;
  EXPECT_FALSE(fs::exists(tmp() / "x"));
  write_file(tmp() / "up.txt", "up\n");
  auto upload = run_xfer({"cp", S(tmp() / "up.txt"), nginx_->http_url("/up.txt")});
  EXPECT_NE(upload.exit_code, 0) << upload.describe();
  EXPECT_TRUE(icontains(upload.err, "read-only")) << upload.err;
  EXPECT_FALSE(fs::exists(nginx_->root() / "up.txt"));
}

// nginx killed in the middle of a large download: the run fails, its
// partial stays; the same command after nginx is back sends only what is
// missing (at most a chunk per stream again).
TEST_F(Http, AServerKilledMidTransferIsResumedByTheRerun) {
  const std::string data = random_bytes(96u << 20, 6);
  put(nginx_->root() / "big.bin", data, 1'600'000'000);
  const fs::path dst = tmp() / "big.bin";
  const std::vector<std::string> args = {
      "cp",  "--json", "--bwlimit", "24M", "--chunk-size", "4M", nginx_->http_url("/big.bin"),
      S(dst)};
  std::atomic<bool> killed{false};
  auto first = run_xfer_signal_when(
      args, 0,
      [&](pid_t pid) {
        if (!killed.load() && process_wchar(pid) > (30u << 20)) {
          nginx_->kill9();
          killed.store(true);
        }
        return false;
      },
      nullptr, 120s);
  ASSERT_TRUE(killed.load()) << first.result.describe();
  EXPECT_NE(first.result.exit_code, 0) << first.result.describe();
  EXPECT_FALSE(fs::exists(dst));
  ASSERT_TRUE(nginx_->restart()) << nginx_->error();
  auto again = run_xfer(args);
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_TRUE(read_file(dst) == data);
  const auto s = summary_of(again);
  const std::uint64_t resumed = s.value("bytes_resumed", 0ull);
  const std::uint64_t moved = s.value("bytes", 0ull);
  EXPECT_GE(resumed, 24ull << 20) << again.out;
  // At most one 4 MiB chunk per stream in flight was lost (16 at most).
  EXPECT_LE(moved, data.size() - resumed + (64ull << 20)) << again.out;
}

// A file changed on the server between two runs is fetched anew, never
// stitched onto the old partial or left as it was.
TEST_F(Http, AFileChangedBetweenRunsIsFetchedAnew) {
  const fs::path src = nginx_->root() / "v.bin";
  const std::string v1 = random_bytes(48u << 20, 7);
  put(src, v1, 1'600'000'000);
  const fs::path dst = tmp() / "v.bin";
  auto first = run_xfer_signal_when(
      {"cp", "--bwlimit", "16M", "--chunk-size", "4M", nginx_->http_url("/v.bin"), S(dst)}, SIGINT,
      [&](pid_t pid) { return process_wchar(pid) > (12u << 20); }, nullptr, 120s);
  ASSERT_TRUE(first.signalled) << first.result.describe();
  EXPECT_FALSE(fs::exists(dst));
  const std::string v2 = random_bytes(48u << 20, 8);  // same size, new bytes and time
  put(src, v2, 1'600'000'100);
  auto again = run_xfer({"cp", "--json", nginx_->http_url("/v.bin"), S(dst)});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_TRUE(read_file(dst) == v2) << "not the new version";
  EXPECT_EQ(mtime_s(dst), 1'600'000'100);
  // And a sync after a later change fetches it too.
  const std::string v3 = random_bytes(1000, 9);
  put(src, v3, 1'600'000'200);
  auto sync = run_xfer({"sync", nginx_->http_url("/v.bin"), S(dst)});
  ASSERT_EQ(sync.exit_code, 0) << sync.describe();
  EXPECT_EQ(read_file(dst), v3);
}

// ------------------------------------------------------------------------
// A hostile server (tests/servers/hostile_http.hpp), scripted per path.

using Request = xfer::testing::HostileHttp::Request;
using xfer::testing::HostileHttp;

constexpr std::uint64_t kHostileSize = 8u << 20;

std::string head_of(int status, const std::string& extra) {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nConnection: close\r\n" +
         "ETag: \"v1\"\r\nLast-Modified: Sun, 13 Sep 2020 12:26:40 GMT\r\n" + extra + "\r\n";
}

// A range answer that is what was asked for, with `body` as its bytes.
std::string ranged(const Request& r, const std::string& data, std::size_t send_bytes) {
  const std::uint64_t a = r.range ? r.range->first : 0;
  const std::uint64_t b =
      r.range ? std::min<std::uint64_t>(r.range->second, data.size() - 1) : data.size() - 1;
  const std::string body = data.substr(a, b - a + 1);
  std::string out =
      head_of(r.range ? 206 : 200,
              "Content-Length: " + std::to_string(body.size()) + "\r\n" +
                  (r.range ? "Content-Range: bytes " + std::to_string(a) + "-" + std::to_string(b) +
                                 "/" + std::to_string(data.size()) + "\r\n"
                           : ""));
  if (!r.head) out += body.substr(0, std::min(send_bytes, body.size()));
  return out;
}

class HttpHostile : public XferTest {
 protected:
  // xfer cp URL → a local file, with few retries: the answer is the same
  // every time.
  RunResult fetch(const std::string& url, const fs::path& dst) {
    return run_xfer({"cp", "--no-checkpoint", "--chunk-size", "2M", url, S(dst)}, 60s);
  }
  void expect_refused(const RunResult& r, const fs::path& dst, std::string_view words) {
    EXPECT_EQ(r.exit_code, 1) << r.describe();
    EXPECT_TRUE(icontains(r.err, std::string(words))) << r.err;
    EXPECT_FALSE(fs::exists(dst)) << "something under the final name";
    for (const auto& e : fs::directory_iterator(dst.parent_path())) {
      EXPECT_EQ(e.path().filename().string().find("xfer-part"), std::string::npos)
          << "a partial was left without checkpoints: " << e.path();
    }
  }
  const std::string data_ = random_bytes(kHostileSize, 10);
};

TEST_F(HttpHostile, ABodyCutShortIsAnErrorNeverAShortFile) {
  // Every range answer stops after half its bytes and closes.
  HostileHttp server([&](const Request& r) {
    const std::uint64_t len = r.range ? r.range->second - r.range->first + 1 : data_.size();
    return ranged(r, data_, static_cast<std::size_t>(len / 2));
  });
  const fs::path dst = tmp() / "out" / "f.bin";
  fs::create_directories(dst.parent_path());
  auto r = fetch(server.url("/f.bin"), dst);
  expect_refused(r, dst, "before its Content-Length");
}

TEST_F(HttpHostile, ALyingContentLengthIsAnError) {
  // Says the file is 8 MiB, sends 1 MiB of it and closes: with no ranges.
  HostileHttp server([&](const Request& r) {
    std::string out = head_of(200, "Content-Length: " + std::to_string(data_.size()) + "\r\n");
    if (!r.head) out += data_.substr(0, 1 << 20);
    return out;
  });
  const fs::path dst = tmp() / "out" / "f.bin";
  fs::create_directories(dst.parent_path());
  auto r = fetch(server.url("/f.bin"), dst);
  expect_refused(r, dst, "Content-Length");
}

TEST_F(HttpHostile, AContentRangeOtherThanAskedIsAnError) {
  // The first answer is right; later ones claim another range.
  HostileHttp server([&](const Request& r) {
    if (!r.range || r.range->first == 0) return ranged(r, data_, SIZE_MAX);
    Request shifted = r;
    shifted.range = {{r.range->first + 1, r.range->second}};
    return ranged(shifted, data_, SIZE_MAX);
  });
  const fs::path dst = tmp() / "out" / "f.bin";
  fs::create_directories(dst.parent_path());
  auto r = fetch(server.url("/f.bin"), dst);
  expect_refused(r, dst, "answered");
}

TEST_F(HttpHostile, A416ToEveryRangeIsAnError) {
  HostileHttp server([&](const Request&) {
    return head_of(416, "Content-Range: bytes */" + std::to_string(data_.size()) +
                            "\r\nContent-Length: 0\r\n");
  });
  const fs::path dst = tmp() / "out" / "f.bin";
  fs::create_directories(dst.parent_path());
  auto r = fetch(server.url("/f.bin"), dst);
  expect_refused(r, dst, "416");
}

// A file whose size changes between the first answer and the next ranges
// (another version) is restarted and, when it keeps changing, fails; it is
// never stitched together.
TEST_F(HttpHostile, AFileThatKeepsChangingIsNeverStitched) {
  std::atomic<int> version{0};
  HostileHttp server([&](const Request& r) {
    const int v = version.fetch_add(1);
    const std::string other = random_bytes(kHostileSize + static_cast<std::size_t>(v), 20 + v);
    return ranged(r, other, SIZE_MAX);
  });
  const fs::path dst = tmp() / "out" / "f.bin";
  fs::create_directories(dst.parent_path());
  auto r = fetch(server.url("/f.bin"), dst);
  expect_refused(r, dst, "changed on the server");
}

// The first answer claims a range far larger than asked (16 TiB "in one
// answer"): refused, never read into memory.
TEST_F(HttpHostile, AnOpenAnswerLargerThanAskedIsRefused) {
  HostileHttp server([&](const Request& r) {
    const std::uint64_t huge = (16ull << 40) - 1;
    std::string out =
        head_of(206, "Content-Length: " + std::to_string(huge) + "\r\nContent-Range: bytes 0-" +
                         std::to_string(huge - 1) + "/" + std::to_string(huge) + "\r\n");
    if (!r.head) out += data_.substr(0, 1 << 20);
    return out;
  });
  const fs::path dst = tmp() / "out" / "f.bin";
  fs::create_directories(dst.parent_path());
  auto r = fetch(server.url("/f.bin"), dst);
  expect_refused(r, dst, "answered");
  EXPECT_LT(r.peak_rss_kib, 512 * 1024) << "the answer was read into memory";
}

// A server that cuts every range to 64 KiB (allowed): the copy takes the
// rest range by range, whatever --io-size the reads use.
TEST_F(HttpHostile, RangesShorterThanAskedAreFollowedByTheNext) {
  HostileHttp server([&](const Request& r) {
    Request cut = r;
    if (r.range) cut.range = {{r.range->first, std::min(r.range->second, r.range->first + 65535)}};
    return ranged(cut, data_, SIZE_MAX);
  });
  for (const std::string io : {"1M", "2M"}) {
    const fs::path dst = tmp() / ("out-" + io) / "f.bin";
    fs::create_directories(dst.parent_path());
    auto r = run_xfer({"cp", "--io-size", io, server.url("/f.bin"), S(dst)}, 120s);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_TRUE(read_file(dst) == data_);
  }
}

// A tree that loops (every folder lists two more, for ever): the walk
// stops with an error naming the likely cause, in bounded time and memory.
TEST_F(HttpHostile, AListingLoopEndsWithAnError) {
  HostileHttp server([&](const Request& r) {
    if (r.path.empty() || r.path.back() != '/') {  // a folder without its '/', as nginx does
      return head_of(301, "Location: " + r.path + "/\r\nContent-Length: 0\r\n");
    }
    const std::string page = "<a href=\"a/\">a/</a><a href=\"b/\">b/</a>";
    return head_of(200, "Content-Type: text/html\r\nContent-Length: " +
                            std::to_string(page.size()) + "\r\n") +
           (r.head ? "" : page);
  });
  const fs::path dst = tmp() / "loop";
  auto r = run_xfer({"cp", "-r", "--dry-run", server.url("/top/"), S(dst) + "/"}, 120s);
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_TRUE(icontains(r.err, "a loop on the server")) << r.err.substr(0, 2000);
  EXPECT_LE(split_lines(r.err).size(), 3u) << "one error, not one per folder left";
}

// Redirects are followed to a bound, and never from https to http or to
// another scheme.
TEST_F(HttpHostile, RedirectsAreBounded) {
  HostileHttp server([&](const Request& r) {
    if (r.path == "/loop") return head_of(302, "Location: /loop\r\nContent-Length: 0\r\n");
    if (r.path == "/file")
      return head_of(302, "Location: file:///etc/passwd\r\nContent-Length: 0\r\n");
    return head_of(404, "Content-Length: 0\r\n");
  });
  const fs::path dst = tmp() / "out" / "f.bin";
  fs::create_directories(dst.parent_path());
  auto loop = fetch(server.url("/loop"), dst);
  expect_refused(loop, dst, "redirects");
  EXPECT_LE(server.requests(), 5 * 12) << "the redirect bound did not hold";
  auto file = fetch(server.url("/file"), dst);
  expect_refused(file, dst, "refused");
}

}  // namespace
}  // namespace xfer_it
