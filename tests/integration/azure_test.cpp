// xfer and Azure Blob: a real Azurite (tests/servers/azurite.hpp), one for
// the suite, a container per test, reached as a user reaches one (the
// account, key and endpoint in $AZURE_STORAGE_CONNECTION_STRING, or a SAS
// token, $HOME a folder of the test's). What is checked is what a user
// would check: the bytes and mtimes that come back, what `ls` shows, exit
// codes and the words of the errors, and what is left on the server.

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <optional>
#include <random>

#include "../servers/azurite.hpp"
#include "../servers/fault_proxy.hpp"
#include "../servers/hostile_http.hpp"
#include "harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;
using xfer::testing::AzuriteServer;
using xfer::testing::FaultProxy;

std::string S(const fs::path& p) {
  return p.string();
}

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

// An account SAS for the blob service (version 2020-12-06), valid for an
// hour, with the permissions `sp`.
std::string account_sas(const std::string& sp) {
  std::vector<unsigned char> key(64);
  const std::string k = AzuriteServer::kKey;
  const int klen = EVP_DecodeBlock(key.data(), reinterpret_cast<const unsigned char*>(k.data()),
                                   static_cast<int>(k.size()));
  key.resize(static_cast<std::size_t>(klen - 2));
  const std::time_t t = std::time(nullptr) + 3600;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char se[32];
  std::strftime(se, sizeof se, "%Y-%m-%dT%H:%M:%SZ", &tm);
  const std::string sts = std::string(AzuriteServer::kAccount) + "\n" + sp + "\nb\nsco\n\n" + se +
                          "\n\n\n2020-12-06\n\n";
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(sts.data()), sts.size(), mac, &mac_len);
  std::string sig(4 * ((mac_len + 2) / 3) + 1, '\0');
  sig.resize(static_cast<std::size_t>(EVP_EncodeBlock(reinterpret_cast<unsigned char*>(sig.data()),
                                                      mac, static_cast<int>(mac_len))));
  std::string enc;
  for (char c : sig) {
    if (c == '+') {
      enc += "%2B";
    } else if (c == '/') {
      enc += "%2F";
    } else if (c == '=') {
      enc += "%3D";
    } else {
      enc.push_back(c);
    }
  }
  std::string when(se);
  const auto colon = [](std::string s) {
    std::string out;
    for (char c : s) out += c == ':' ? std::string("%3A") : std::string(1, c);
    return out;
  };
  return "sv=2020-12-06&ss=b&srt=sco&sp=" + sp + "&se=" + colon(when) + "&sig=" + enc;
}

class Azure : public XferTest {
 protected:
  static void SetUpTestSuite() {
    server_ = new AzuriteServer(
        fs::temp_directory_path() / ("xfer_it_azurite_" + std::to_string(::getpid())), "first");
    if (!server_->start()) {
      error_ = server_->error();
      delete server_;
      server_ = nullptr;
    }
  }
  static void TearDownTestSuite() {
    delete server_;  // stopped by its PID
    server_ = nullptr;
  }
  void SetUp() override {
    XferTest::SetUp();
    ASSERT_NE(server_, nullptr) << error_;
    container_ = "cont" + std::to_string(++containers_);
    ASSERT_TRUE(server_->make_container(container_)) << server_->error();
    home_ = tmp() / "home";
    fs::create_directories(home_);
    for (const char* name : kVars) {
      if (const char* v = std::getenv(name)) saved_.emplace_back(name, v);
      ::unsetenv(name);
    }
    ::setenv("HOME", home_.c_str(), 1);
    use_endpoint(server_->endpoint());
  }
  void TearDown() override {
    for (const char* name : kVars) ::unsetenv(name);
    for (const auto& [k, v] : saved_) ::setenv(k.c_str(), v.c_str(), 1);
    XferTest::TearDown();
  }
  // The connection string Azurite's documentation gives, for `endpoint`.
  static void use_endpoint(const std::string& endpoint) {
    const std::string conn = std::string("DefaultEndpointsProtocol=http;AccountName=") +
                             AzuriteServer::kAccount + ";AccountKey=" + AzuriteServer::kKey +
                             ";BlobEndpoint=" + endpoint + ";";
    ::setenv("AZURE_STORAGE_CONNECTION_STRING", conn.c_str(), 1);
  }
  std::string url(const std::string& path) const { return "az://" + container_ + "/" + path; }
  // The blob's uncommitted blocks, as Get Block List names them ("" when
  // none; the answer itself when it is not a block list).
  std::string uncommitted(const std::string& blob) const {
    std::string body;
    const long st = server_->request(
        "GET", "/" + container_ + "/" + blob + "?blocklisttype=uncommitted&comp=blocklist", &body);
    if (st == 404 || (st == 200 && body.find("<UncommittedBlocks/>") != std::string::npos)) {
      return "";
    }
    const auto a = body.find("<UncommittedBlocks>");
    const auto b = body.find("</UncommittedBlocks>");
    if (st != 200 || a == std::string::npos || b == std::string::npos) {
      return "HTTP " + std::to_string(st) + " " + body;
    }
    return body.substr(a + 19, b - a - 19);
  }

  static constexpr const char* kVars[] = {"HOME", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY",
                                          "AZURE_STORAGE_SAS_TOKEN",
                                          "AZURE_STORAGE_CONNECTION_STRING"};
  static AzuriteServer* server_;
  static std::string error_;
  static int containers_;
  std::string container_;
  fs::path home_;
  std::vector<std::pair<std::string, std::string>> saved_;
};
AzuriteServer* Azure::server_ = nullptr;
std::string Azure::error_;
int Azure::containers_ = 0;

// With the remote's directory_markers, an empty folder is kept as a
// zero-byte blob "folder/" (a folder with blobs in it gets none), and a
// copy down makes it again.
TEST_F(Azure, DirectoryMarkersKeepEmptyFoldersWhenAsked) {
  const fs::path src = tmp() / "src";
  fs::create_directories(src / "hollow");
  fs::create_directories(src / "a/deep/empty");
  put(src / "a/f.txt", "eff\n", 1'600'000'010, 10);
  auto up = run_xfer({"cp", "-r", S(src) + "/", url("t/") + "?directory_markers=true"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_EQ(up.err.find("skipping empty folder"), std::string::npos) << up.err;
  for (const char* marker : {"t/hollow/", "t/a/deep/empty/"}) {
    std::string body = "unread";
    EXPECT_EQ(server_->request("GET", "/" + container_ + "/" + marker, &body), 200) << marker;
    EXPECT_EQ(body, "") << marker;
  }
  for (const char* none : {"t/a/", "t/a/deep/"}) {
    std::string body;
    EXPECT_EQ(server_->request("GET", "/" + container_ + "/" + none, &body), 404) << none;
  }
  const fs::path back = tmp() / "back";
  auto down = run_xfer({"cp", "-r", url("t/"), S(back) + "/"});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  for (const char* dir : {"hollow", "a/deep/empty"}) {
    EXPECT_TRUE(fs::is_directory(back / dir) && fs::is_empty(back / dir)) << dir;
  }
  EXPECT_EQ(read_file(back / "a/f.txt"), "eff\n");
  EXPECT_EQ(mtime_ns(back / "a/f.txt"), 1'600'000'010'000'000'010LL);
}

// A tree goes up and comes back as it was: every file's bytes and its
// mtime to the nanosecond (x-ms-meta-mtime), the large one as blocks and
// parallel ranged reads; `ls` shows folders as prefixes; an empty folder
// is skipped with a notice; no uncommitted block is left.
TEST_F(Azure, ATreeGoesUpAndComesBackAsItWas) {
  const fs::path src = tmp() / "src";
  fs::create_directories(src / "hollow");
  put(src / "a.txt", "alpha\n", 1'600'000'001, 123'456'789);
  put(src / "with space.txt", bytes_of(5000, 1), 1'600'000'002, 1);
  put(src / "sub/deeper/x&y+z.bin", bytes_of(100'000, 2), 1'600'000'003, 0);
  put(src / "sub/empty.bin", "", 1'600'000'005, 5);
  put(src / "large.bin", bytes_of(40u << 20, 4), 1'600'000'006, 999'999'999);
  auto up = run_xfer({"cp", "-r", "--chunk-size", "8M", S(src) + "/", url("t/")});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_NE(up.err.find("skipping empty folder " + S(src / "hollow")), std::string::npos) << up.err;
  EXPECT_EQ(uncommitted("t/large.bin"), "");
  auto ls = run_xfer({"ls", url("t/")});
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
  for (const char* name : {"a.txt", "with space.txt", "large.bin", "sub"}) {
    EXPECT_NE(ls.out.find(name), std::string::npos) << name << "\n" << ls.out;
  }
  EXPECT_EQ(ls.out.find("hollow"), std::string::npos) << ls.out;
  const fs::path back = tmp() / "back";
  auto down = run_xfer({"cp", "-r", url("t/"), S(back) + "/"});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  for (const auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const fs::path got = back / fs::relative(e.path(), src);
    ASSERT_TRUE(fs::exists(got)) << got;
    EXPECT_TRUE(read_file(got) == read_file(e.path())) << got;
    EXPECT_EQ(mtime_ns(got), mtime_ns(e.path())) << got;
  }
  auto rm = run_xfer({"rm", "-r", url("t/sub")});
  ASSERT_EQ(rm.exit_code, 0) << rm.describe();
  auto after = run_xfer({"ls", url("t/")});
  EXPECT_EQ(after.out.find("sub"), std::string::npos) << after.out;
  EXPECT_NE(after.out.find("a.txt"), std::string::npos) << after.out;
}

// A SAS token instead of the key: it reads and writes what it allows, and
// a read-only token's refusal of a write says what to check.
TEST_F(Azure, ASasTokenIsEnoughAndItsLimitsAreClear) {
  ::unsetenv("AZURE_STORAGE_CONNECTION_STRING");
  ::setenv("AZURE_STORAGE_ACCOUNT", AzuriteServer::kAccount, 1);
  const fs::path src = tmp() / "f.txt";
  put(src, "by sas\n", 1'600'000'100, 5);
  ::setenv("AZURE_STORAGE_SAS_TOKEN", account_sas("rwdlacup").c_str(), 1);
  // The endpoint comes from a remote (a SAS names no endpoint).
  auto add = run_xfer({"remote", "add", "emu", "azure", "endpoint=" + server_->endpoint(),
                       "account=" + std::string(AzuriteServer::kAccount)});
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  auto up = run_xfer({"cp", S(src), "emu:" + container_ + "/f.txt"});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  auto down = run_xfer({"cp", "emu:" + container_ + "/f.txt", S(tmp() / "back.txt")});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  EXPECT_EQ(read_file(tmp() / "back.txt"), "by sas\n");
  EXPECT_EQ(mtime_ns(tmp() / "back.txt"), 1'600'000'100'000'000'005LL);
  ::setenv("AZURE_STORAGE_SAS_TOKEN", account_sas("rl").c_str(), 1);
  auto refused = run_xfer({"cp", S(src), "emu:" + container_ + "/g.txt"});
  EXPECT_EQ(refused.exit_code, 1) << refused.describe();
  EXPECT_TRUE(icontains(refused.err, "check the account key or SAS token")) << refused.err;
  auto ls = run_xfer({"ls", "emu:" + container_ + "/"});
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
  EXPECT_NE(ls.out.find("f.txt"), std::string::npos) << ls.out;
  EXPECT_EQ(ls.out.find("g.txt"), std::string::npos) << ls.out;
}

// Mistakes give one line each, exit 1, and write nothing.
TEST_F(Azure, MistakesAreClearErrors) {
  const fs::path dst = tmp() / "out.bin";
  auto no_container = run_xfer({"ls", "az://nosuch/"});
  EXPECT_EQ(no_container.exit_code, 1) << no_container.describe();
  EXPECT_TRUE(icontains(no_container.err, "no such container 'nosuch'")) << no_container.err;
  auto no_blob = run_xfer({"cp", url("missing.bin"), S(dst)});
  EXPECT_EQ(no_blob.exit_code, 1) << no_blob.describe();
  EXPECT_FALSE(fs::exists(dst));
  const std::string wrong_key = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXk=";
  const std::string conn = std::string("AccountName=") + AzuriteServer::kAccount +
                           ";AccountKey=" + wrong_key + ";BlobEndpoint=" + server_->endpoint();
  ::setenv("AZURE_STORAGE_CONNECTION_STRING", conn.c_str(), 1);
  auto bad = run_xfer({"ls", url("")});
  EXPECT_EQ(bad.exit_code, 1) << bad.describe();
  EXPECT_TRUE(icontains(bad.err, "check the account key or SAS token")) << bad.err;
  ::unsetenv("AZURE_STORAGE_CONNECTION_STRING");
  auto none = run_xfer({"ls", url("")});
  EXPECT_EQ(none.exit_code, 1) << none.describe();
  EXPECT_TRUE(icontains(none.err, "no Azure account")) << none.err;
}

// A hostile Azure endpoint (tests/servers/hostile_http.hpp): what it claims
// is never believed past its bounds. Each case: exit 1, the words that say
// what was wrong, nothing under the destination's name.
TEST_F(Azure, AHostileServerIsRefusedNeverBelieved) {
  using Request = xfer::testing::HostileHttp::Request;
  const std::string data = bytes_of(1u << 20, 11);
  auto head = [](int status, const std::string& extra) {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nConnection: close\r\n" + extra + "\r\n";
  };
  auto xml = [&](int status, const std::string& body) {
    return head(status, "Content-Length: " + std::to_string(body.size()) + "\r\n") + body;
  };
  const std::string good_head = "Content-Length: " + std::to_string(data.size()) +
                                "\r\nETag: \"0x1\"\r\nx-ms-meta-mtime: 2020-09-13T12:26:40Z\r\n";
  const fs::path dst = tmp() / "out.bin";
  const fs::path src = tmp() / "up.bin";
  put(src, bytes_of(3u << 20, 12), 1'600'000'000, 0);
  struct Case {
    std::string name;
    std::function<std::string(const Request&)> answer;
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"a size past a block blob's largest",
       [&](const Request&) {
         return head(200, "Content-Length: 999999999999999999\r\nETag: \"0x1\"\r\n");
       },
       {"cp", url("f.bin"), S(dst)},
       "no size, or one past"},
      {"another range than asked",
       [&](const Request& r) {
         if (r.head) return head(200, good_head);
         return head(206, "Content-Length: 65536\r\nContent-Range: bytes 1-65536/" +
                              std::to_string(data.size()) + "\r\n") +
                data.substr(0, 65536);
       },
       {"cp", url("f.bin"), S(dst)},
       "range is not the one asked for"},
      {"the blob replaced after the HEAD (If-Match fails)",
       [&](const Request& r) {
         if (r.head) return head(200, good_head);
         return xml(412, "<Error><Code>ConditionNotMet</Code><Message>no</Message></Error>");
       },
       {"cp", url("f.bin"), S(dst)},
       "replaced on the server"},
      {"ServerBusy for ever",
       [&](const Request&) {
         return head(503, "Retry-After: 1\r\nContent-Length: 0\r\nx-ms-error-code: ServerBusy\r\n");
       },
       {"ls", url("")},
       "ServerBusy"},
      {"a listing that goes on with the same marker",
       [&](const Request&) {
         return xml(200,
                    "<EnumerationResults><Blobs><Blob><Name>k</Name><Properties>"
                    "<Content-Length>1</Content-Length></Properties></Blob></Blobs>"
                    "<NextMarker>same</NextMarker></EnumerationResults>");
       },
       {"ls", url("")},
       "no way to go on"},
      {"a listing nested 40 deep",
       [&](const Request&) {
         std::string body = "<EnumerationResults>";
         for (int i = 0; i < 40; ++i) body += "<a>";
         for (int i = 0; i < 40; ++i) body += "</a>";
         return xml(200, body + "</EnumerationResults>");
       },
       {"ls", url("")},
       "nests deeper than 16"},
      {"a block taken with another MD5 than sent",
       [&](const Request&) {
         // Content-MD5 of nothing at all, for every block and blob.
         return head(201,
                     "Content-Length: 0\r\nETag: \"0x2\"\r\nContent-MD5: "
                     "1B2M2Y8AsgTpgAmY7PhCfg==\r\n");
       },
       {"cp", "--no-checkpoint", S(src), url("up.bin")},
       "stored other bytes than were sent"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    xfer::testing::HostileHttp server(c.answer);
    use_endpoint(server.url("/") + AzuriteServer::kAccount);
    std::vector<std::string> args = c.args;
    if (args[0] == "cp" && args[1] != "--no-checkpoint") {
      args.insert(args.begin() + 1, "--no-checkpoint");
    }
    auto r = run_xfer(args, 120s);
    EXPECT_EQ(r.exit_code, 1) << r.describe();
    EXPECT_TRUE(icontains(r.err, c.says)) << r.err;
    EXPECT_FALSE(fs::exists(dst));
  }
  use_endpoint(server_->endpoint());
}

// What a tree of small blobs costs, counted at a proxy: up, a HEAD of the
// destination blob and its Put Blob (only the Put Blob once the
// destination folder is listed, from a folder's 8th file); down, one
// ranged GET that holds the whole blob with its properties and metadata;
// a rerun over what is there, one HEAD each way, or nothing for a blob
// the listing showed with its mtime.
TEST_F(Azure, ASmallBlobCostsTwoRequestsUpAndOneDown) {
  const fs::path src = tmp() / "src";
  std::map<std::string, std::string> files;
  for (int i = 0; i < 20; ++i) {
    const std::string name = (i % 2 ? "sub/f" : "f") + std::to_string(i) + ".bin";
    files[name] = bytes_of(static_cast<std::size_t>(1000 + i * 9000), 60 + i);
    put(src / name, files[name], 1'600'000'200 + i, i);
  }
  FaultProxy proxy(std::string(XFER_SOURCE_DIR) + "/tests/servers/fault_proxy.py", server_->port(),
                   tmp() / "proxy", "[]");
  ASSERT_TRUE(proxy.running());
  use_endpoint(proxy.endpoint() + "/" + AzuriteServer::kAccount);
  const std::string prefix = "/" + std::string(AzuriteServer::kAccount) + "/" + container_ + "/t/";
  auto per_blob = [&](std::size_t from) {
    std::map<std::string, std::string> out;
    const auto lines = proxy.lines();
    for (std::size_t i = from; i < lines.size(); ++i) {
      const auto& l = lines[i];
      if (l.target.rfind(prefix, 0) != 0) continue;
      const auto q = l.target.find('?');
      out[l.target.substr(prefix.size(), q == std::string::npos ? q : q - prefix.size())] +=
          l.method + " ";
    }
    return out;
  };
  auto up = run_xfer({"cp", "-r", S(src) + "/", url("t/")});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  auto seen = per_blob(0);
  // The first 7 files of a folder cost a HEAD each; from the next, the
  // folder's listing at the destination (one request) says what is there.
  int listed_only = 0;
  for (const auto& [name, data] : files) {
    EXPECT_TRUE(seen[name] == "HEAD PUT " || seen[name] == "PUT ") << name << ": " << seen[name];
    listed_only += seen[name] == "PUT ";
  }
  EXPECT_EQ(listed_only, 2 * (10 - 7));
  for (const auto& [name, methods] : seen) {
    EXPECT_TRUE(files.count(name) != 0 || name == "sub") << name << ": " << methods;
  }
  std::size_t mark = proxy.lines().size();
  auto again = run_xfer({"cp", "-r", S(src) + "/", url("t/")});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  seen = per_blob(mark);
  // Azure's listing has each blob's mtime: the listed ones cost nothing.
  listed_only = 0;
  for (const auto& [name, data] : files) {
    EXPECT_TRUE(seen[name] == "HEAD " || seen[name].empty()) << name << ": " << seen[name];
    listed_only += seen[name].empty();
  }
  EXPECT_EQ(listed_only, 2 * (10 - 7));
  mark = proxy.lines().size();
  auto down = run_xfer({"cp", "-r", url("t/"), S(tmp() / "back") + "/"});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  seen = per_blob(mark);
  for (const auto& [name, data] : files) {
    EXPECT_EQ(seen[name], "GET ") << name;
    EXPECT_TRUE(read_file(tmp() / "back" / name) == data) << name;
    EXPECT_EQ(mtime_ns(tmp() / "back" / name), mtime_ns(src / name)) << name;
  }
  use_endpoint(server_->endpoint());
}

// A copy within the account is the service's own (Copy Blob): no byte of
// it passes through xfer, seen in the log of a proxy in front of Azurite,
// and the copies keep bytes and mtimes, in one container and into another.
TEST_F(Azure, CopiesWithinTheAccountStayInTheService) {
  const std::string other = container_ + "x";
  ASSERT_TRUE(server_->make_container(other)) << server_->error();
  const fs::path src = tmp() / "src";
  const std::string big = bytes_of(3u << 20, 41);
  put(src / "a.bin", big, 1'600'000'040, 40);
  put(src / "sub/b.txt", "bee\n", 1'600'000'041, 41);
  ASSERT_EQ(run_xfer({"cp", "-r", S(src) + "/", url("from/")}).exit_code, 0);
  FaultProxy proxy(std::string(XFER_SOURCE_DIR) + "/tests/servers/fault_proxy.py", server_->port(),
                   tmp() / "proxy", "[]");
  ASSERT_TRUE(proxy.running());
  use_endpoint(proxy.endpoint() + "/" + AzuriteServer::kAccount);
  auto within = run_xfer({"cp", "-r", url("from/"), url("to/")});
  ASSERT_EQ(within.exit_code, 0) << within.describe();
  auto across = run_xfer({"cp", url("from/a.bin"), "az://" + other + "/a.bin"});
  ASSERT_EQ(across.exit_code, 0) << across.describe();
  const std::string from = "/" + std::string(AzuriteServer::kAccount) + "/" + container_ + "/from/";
  std::string log;
  for (const auto& l : proxy.lines()) {
    log += l.action + " " + l.method + " " + l.target + "\n";
    EXPECT_FALSE(l.method == "GET" && l.target.rfind(from, 0) == 0 &&
                 l.target.find("comp=list") == std::string::npos)
        << "the bytes came through xfer: " << l.target;
  }
  EXPECT_NE(
      log.find("PUT /" + std::string(AzuriteServer::kAccount) + "/" + container_ + "/to/a.bin"),
      std::string::npos)
      << log;
  use_endpoint(server_->endpoint());
  auto back = run_xfer({"cp", "-r", url("to/"), S(tmp() / "back") + "/"});
  ASSERT_EQ(back.exit_code, 0) << back.describe();
  EXPECT_TRUE(read_file(tmp() / "back/a.bin") == big);
  EXPECT_EQ(read_file(tmp() / "back/sub/b.txt"), "bee\n");
  EXPECT_EQ(mtime_ns(tmp() / "back/a.bin"), 1'600'000'040'000'000'040LL);
  EXPECT_EQ(mtime_ns(tmp() / "back/sub/b.txt"), 1'600'000'041'000'000'041LL);
  auto moved = run_xfer({"cp", "az://" + other + "/a.bin", S(tmp() / "other.bin")});
  ASSERT_EQ(moved.exit_code, 0) << moved.describe();
  EXPECT_TRUE(read_file(tmp() / "other.bin") == big);
  EXPECT_EQ(mtime_ns(tmp() / "other.bin"), 1'600'000'040'000'000'040LL);
}

// Twenty SIGKILLs at random moments of block uploads, each followed by the
// same command, through a proxy that logs every request: each blob ends
// byte-identical with its mtime, no block is sent again beyond the two in
// flight at each kill, and no uncommitted block is left behind.
TEST_F(Azure, TwentyRandomKillsOfBlockUploadsEachEndWhole) {
  FaultProxy proxy(std::string(XFER_SOURCE_DIR) + "/tests/servers/fault_proxy.py", server_->port(),
                   tmp() / "proxy", "[]");
  ASSERT_TRUE(proxy.running());
  use_endpoint(proxy.endpoint() + "/" + AzuriteServer::kAccount);
  std::mt19937_64 rng(20261207);
  std::uniform_int_distribution<int> at_ms(150, 700);
  int kills = 0;
  int seen_blocks = 0;
  std::string record;
  for (int object = 0; kills < 20 && object < 10; ++object) {
    const std::string data = bytes_of(160u << 20, 200 + object);
    const fs::path src = tmp() / ("big" + std::to_string(object) + ".bin");
    put(src, data, 1'600'000'000 + object, 9);
    const std::string blob = "kills/big" + std::to_string(object) + ".bin";
    const std::vector<std::string> args = {"cp",     "--bwlimit",           "30M", "--chunk-size",
                                           "5M",     "--chunk-parallelism", "2",   S(src),
                                           url(blob)};
    int kills_here = 0;
    for (;;) {
      // The moment is counted from this run's first block request, so a
      // slow start (a loaded CI machine) does not turn every kill into one
      // before any block is sent.
      const int ms = at_ms(rng);
      const std::size_t logged = proxy.lines().size();
      std::optional<std::chrono::steady_clock::time_point> first_block;
      auto r = run_xfer_signal_when(
          args, SIGKILL,
          [&](pid_t) {
            const auto now = std::chrono::steady_clock::now();
            if (!first_block) {
              const auto lines = proxy.lines();
              for (std::size_t i = logged; i < lines.size(); ++i) {
                if (lines[i].method == "PUT" &&
                    lines[i].target.find("blockid=") != std::string::npos) {
                  first_block = now;
                  break;
                }
              }
              return false;
            }
            return now - *first_block > std::chrono::milliseconds(ms);
          },
          nullptr, 120s);
      if (!r.signalled) {
        ASSERT_EQ(r.result.exit_code, 0) << record << r.result.describe();
        break;
      }
      ++kills_here;
      record += std::to_string(ms) + " ms; ";
      // The probe of what is left sees the blocks of a killed upload.
      if (uncommitted(blob).find("<Block>") != std::string::npos) ++seen_blocks;
      if (++kills == 20) {
        auto last = run_xfer(args, 180s);
        ASSERT_EQ(last.exit_code, 0) << record << last.describe();
        break;
      }
    }
    SCOPED_TRACE(blob + " after " + std::to_string(kills_here) + " kills: " + record);
    // Each block's PUTs: one, and one more for each kill that found it in flight.
    std::map<std::string, int> puts;
    const std::string prefix =
        "/" + std::string(AzuriteServer::kAccount) + "/" + container_ + "/" + blob + "?";
    for (const auto& l : proxy.lines()) {
      if (l.method != "PUT" || l.target.find(prefix) != 0) continue;
      const auto at = l.target.find("blockid=");
      if (at != std::string::npos) ++puts[l.target.substr(at, l.target.find('&', at) - at)];
    }
    int again = 0;
    for (const auto& [block, n] : puts) again += n - 1;
    // Blocks of one upload: 32; a kill before the first block is noted
    // starts the blob's upload over under a new token.
    EXPECT_GE(puts.size(), 32u);
    EXPECT_LE(again + static_cast<int>(puts.size()) - 32, 2 * kills_here);
    EXPECT_EQ(uncommitted(blob), "");
    use_endpoint(server_->endpoint());
    const fs::path back = tmp() / "back.bin";
    auto down = run_xfer({"cp", url(blob), S(back)});
    ASSERT_EQ(down.exit_code, 0) << down.describe();
    EXPECT_TRUE(read_file(back) == data);
    EXPECT_EQ(mtime_ns(back), (1'600'000'000 + object) * 1'000'000'000LL + 9);
    fs::remove(back);
    fs::remove(src);
    use_endpoint(proxy.endpoint() + "/" + AzuriteServer::kAccount);
  }
  EXPECT_EQ(kills, 20);
  EXPECT_GT(seen_blocks, 0) << "no kill left an uncommitted block to see";
}

// Both ways with rclone (its azureblob backend, on the same Azurite): what
// xfer uploads, rclone downloads with the same bytes and mtimes (read from
// x-ms-meta-mtime, the key both use), and what rclone uploads, xfer
// downloads the same.
TEST_F(Azure, RcloneReadsWhatXferWritesAndTheOtherWay) {
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
  auto up = run_xfer({"cp", "-r", "--chunk-size", "8M", S(src) + "/", url("by-xfer/")});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  auto rclone = [&](const std::string& from, const std::string& to) {
    return run({"rclone", "copy", "--config", "/dev/null", "--azureblob-use-emulator",
                "--azureblob-account", AzuriteServer::kAccount, "--azureblob-key",
                AzuriteServer::kKey, "--azureblob-endpoint", server_->endpoint(),
                "--azureblob-chunk-size", "4M", from, to});
  };
  auto down = rclone(":azureblob:" + container_ + "/by-xfer", S(tmp() / "by-rclone"));
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  expect_same(tmp() / "by-rclone");

  auto rup = rclone(S(src), ":azureblob:" + container_ + "/by-rclone");
  ASSERT_EQ(rup.exit_code, 0) << rup.describe();
  auto xdown = run_xfer({"cp", "-r", url("by-rclone/"), S(tmp() / "back") + "/"});
  ASSERT_EQ(xdown.exit_code, 0) << xdown.describe();
  expect_same(tmp() / "back");
}

}  // namespace
}  // namespace xfer_it
