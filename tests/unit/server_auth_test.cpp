// xfer_server: tokens, path normalisation, root confinement, configuration.

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "xfer/server/auth.hpp"
#include "xfer/server/config.hpp"
#include "xfer/server/root.hpp"

namespace xfer::server {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;
using std::chrono::system_clock;

constexpr std::string_view kSecret = "0123456789abcdef0123456789abcdef";

// An independent base64url (no padding) for building hostile tokens.
std::string b64url(std::string_view in) {
  static constexpr char kAlpha[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlpha[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kAlpha[(acc << (6 - bits)) & 63];
  return out;
}

std::string unb64url(std::string_view in) {
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '-'             ? 62
                                   : 63;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

// header.payload signed with HS256 under `secret`, whatever the header says.
std::string sign(std::string_view header_json, std::string_view payload_json,
                 std::string_view secret = kSecret) {
  std::string input = b64url(header_json) + "." + b64url(payload_json);
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return input + "." + b64url(std::string_view(reinterpret_cast<const char*>(mac), len));
}

constexpr std::string_view kGoodHeader = R"({"alg":"HS256","typ":"JWT"})";
constexpr std::string_view kGoodClaims =
    R"({"sub":"ci","prefix":"/p","write":true,"iat":1000,"exp":5000000000,"jti":"abc"})";

TokenScope scope_for(std::string prefix, bool write) {
  TokenScope s;
  s.subject = "alice";
  s.prefix = std::move(prefix);
  s.write = write;
  s.expires_at =
      std::chrono::duration_cast<seconds>(system_clock::now().time_since_epoch()).count() + 3600;
  return s;
}

std::string issue(TokenScope s, std::string_view secret = kSecret) {
  auto t = issue_token(secret, std::move(s));
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message());
  return t.ok() ? *t : std::string();
}

void expect_refused(const Result<TokenScope>& r, std::string_view detail) {
  ASSERT_FALSE(r.ok()) << "accepted, subject " << r->subject;
  EXPECT_EQ(r.error().code, ErrorCode::kPermission);
  EXPECT_EQ(r.error().detail, detail);
}

TEST(Token, RoundTrip) {
  std::string token = issue(scope_for("/data/in", true));
  // Header exactly {"alg":"HS256","typ":"JWT"}.
  EXPECT_EQ(token.substr(0, token.find('.')), "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
  auto v = verify_token(kSecret, token);
  ASSERT_TRUE(v.ok()) << v.error().message();
  EXPECT_EQ(v->subject, "alice");
  EXPECT_EQ(v->prefix, "/data/in");
  EXPECT_TRUE(v->write);
  EXPECT_EQ(v->id.size(), 32u);  // 16 random bytes, hex
  auto now = std::chrono::duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
  EXPECT_LE(v->issued_at, now);
  EXPECT_GT(v->issued_at, now - 60);
  EXPECT_NEAR(v->expires_at - v->issued_at, 3600, 2);

  // Read-only, explicit fields, a prefix that needs normalising.
  TokenScope s = scope_for("x//y/", false);
  s.issued_at = 1000;
  s.expires_at = 2000;
  s.id = "my-id";
  auto r = verify_token(kSecret, issue(s), system_clock::time_point(seconds(1500)));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->prefix, "/x/y");
  EXPECT_FALSE(r->write);
  EXPECT_EQ(r->issued_at, 1000);
  EXPECT_EQ(r->expires_at, 2000);
  EXPECT_EQ(r->id, "my-id");
  // Two tokens for the same scope get different ids.
  EXPECT_NE(verify_token(kSecret, issue(scope_for("/", false)))->id,
            verify_token(kSecret, issue(scope_for("/", false)))->id);
}

TEST(Token, Expired) {
  TokenScope s = scope_for("/", false);
  s.issued_at = 1000;
  s.expires_at = 2000;
  std::string token = issue(s);
  EXPECT_TRUE(verify_token(kSecret, token, system_clock::time_point(seconds(1999))).ok());
  expect_refused(verify_token(kSecret, token, system_clock::time_point(seconds(2000))),
                 "token expired");
  expect_refused(verify_token(kSecret, token), "token expired");  // now
}

TEST(Token, TamperedPayloadIsRefused) {
  std::string token = issue(scope_for("/ro", false));
  std::size_t d1 = token.find('.');
  std::size_t d2 = token.rfind('.');
  std::string claims = unb64url(token.substr(d1 + 1, d2 - d1 - 1));
  // Grant ourselves write access and the whole root, keep the signature.
  for (auto [from, to] : {std::pair{R"("write":false)", R"("write":true)"},
                          std::pair{R"("prefix":"/ro")", R"("prefix":"/")"}}) {
    std::string forged = claims;
    std::size_t at = forged.find(from);
    ASSERT_NE(at, std::string::npos) << claims;
    forged.replace(at, std::string_view(from).size(), to);
    std::string t = token.substr(0, d1 + 1) + b64url(forged) + token.substr(d2);
    expect_refused(verify_token(kSecret, t), "bad token signature");
  }
}

TEST(Token, TamperedSignatureIsRefused) {
  std::string token = issue(scope_for("/", true));
  std::size_t sig = token.rfind('.') + 1;
  ASSERT_EQ(token.size() - sig, 43u);  // 32 bytes
  for (std::size_t i = sig; i < token.size(); ++i) {
    std::string t = token;
    t[i] = t[i] == 'A' ? 'B' : 'A';
    auto r = verify_token(kSecret, t);
    ASSERT_FALSE(r.ok()) << "position " << i;
    EXPECT_EQ(r.error().code, ErrorCode::kPermission);
    // The last character carries 4 unused bits: a change there is either a
    // different MAC or a non-canonical encoding.
    if (i + 1 < token.size()) {
      EXPECT_EQ(r.error().detail, "bad token signature");
    }
  }
  // Every other value of the last character is refused: it carries 2 bits
  // of the MAC and 4 unused bits that must be zero, so the 3 characters
  // that differ only in the unused bits must not decode to the same MAC.
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  int non_canonical = 0;
  for (char c : alphabet) {
    if (c == token.back()) continue;
    std::string t = token;
    t.back() = c;
    auto r = verify_token(kSecret, t);
    ASSERT_FALSE(r.ok()) << "last character " << c;
    if (r.error().detail == "malformed token") ++non_canonical;
  }
  EXPECT_EQ(non_canonical, 48);  // 64 - 16 canonical values (one is the original)
  // Truncated or extended signatures are malformed.
  expect_refused(verify_token(kSecret, token.substr(0, token.size() - 1)), "malformed token");
  expect_refused(verify_token(kSecret, token + "AAAA"), "malformed token");
  expect_refused(verify_token(kSecret, token.substr(0, sig)), "malformed token");
}

TEST(Token, WrongSecretIsRefused) {
  std::string token = issue(scope_for("/", true));
  expect_refused(verify_token("another secret", token), "bad token signature");
  std::string other = issue(scope_for("/", true), "another secret");
  expect_refused(verify_token(kSecret, other), "bad token signature");
  EXPECT_EQ(verify_token("", token).error().code, ErrorCode::kInvalidArgument);
}

TEST(Token, OnlyHs256HeaderIsAccepted) {
  // The classic attack: alg "none" and no signature.
  std::string none = b64url(R"({"alg":"none","typ":"JWT"})") + "." + b64url(kGoodClaims) + ".";
  expect_refused(verify_token(kSecret, none), "malformed token");
  // Even when signed correctly, any header other than HS256/JWT is refused.
  expect_refused(verify_token(kSecret, sign(R"({"alg":"none","typ":"JWT"})", kGoodClaims)),
                 "malformed token");
  expect_refused(verify_token(kSecret, sign(R"({"alg":"HS512","typ":"JWT"})", kGoodClaims)),
                 "malformed token");
  expect_refused(verify_token(kSecret, sign(R"({"alg":"HS256"})", kGoodClaims)), "malformed token");
  expect_refused(
      verify_token(kSecret, sign(R"({"alg":"HS256","typ":"JWT","kid":"x"})", kGoodClaims)),
      "malformed token");
  expect_refused(verify_token(kSecret, sign("not json", kGoodClaims)), "malformed token");
  // The same claims under the right header pass (the helper signs correctly).
  auto ok = verify_token(kSecret, sign(kGoodHeader, kGoodClaims));
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(ok->subject, "ci");
  EXPECT_EQ(ok->prefix, "/p");
  // Key order and spacing do not matter.
  EXPECT_TRUE(verify_token(kSecret, sign(R"({ "typ": "JWT", "alg": "HS256" })", kGoodClaims)).ok());
}

TEST(Token, MissingOrBadClaimsAreRefused) {
  for (std::string_view claims : {
           R"({"prefix":"/p","write":true,"iat":1,"exp":5000000000,"jti":"a"})",    // no sub
           R"({"sub":"s","write":true,"iat":1,"exp":5000000000,"jti":"a"})",        // no prefix
           R"({"sub":"s","prefix":"/p","iat":1,"exp":5000000000,"jti":"a"})",       // no write
           R"({"sub":"s","prefix":"/p","write":true,"exp":5000000000,"jti":"a"})",  // no iat
           R"({"sub":"s","prefix":"/p","write":true,"iat":1,"jti":"a"})",           // no exp
           R"({"sub":"s","prefix":"/p","write":true,"iat":1,"exp":5000000000})",    // no jti
           R"({"sub":"s","prefix":"/p","write":"yes","iat":1,"exp":5000000000,"jti":"a"})",
           R"({"sub":"s","prefix":"/p","write":true,"iat":1,"exp":"5000000000","jti":"a"})",
           R"({"sub":"s","prefix":"/p","write":true,"iat":1,"exp":5e9,"jti":"a"})",
           R"({"sub":"s","prefix":"/p","write":true,"iat":1,"exp":18446744073709551615,"jti":"a"})",
           R"({"sub":"s","prefix":"p","write":true,"iat":1,"exp":5000000000,"jti":"a"})",
           R"({"sub":"s","prefix":"/p/","write":true,"iat":1,"exp":5000000000,"jti":"a"})",
           R"({"sub":"s","prefix":"/../x","write":true,"iat":1,"exp":5000000000,"jti":"a"})",
           R"({"sub":"s","prefix":"","write":true,"iat":1,"exp":5000000000,"jti":"a"})",
           R"([1,2,3])",
           R"("string")",
           R"({"sub":"s")",
       }) {
    SCOPED_TRACE(claims);
    expect_refused(verify_token(kSecret, sign(kGoodHeader, claims)), "malformed token");
  }
}

TEST(Token, GarbageIsRefused) {
  std::string good = issue(scope_for("/", true));
  for (std::string t : {
           std::string(""),
           std::string("."),
           std::string(".."),
           std::string("..."),
           std::string("a.b"),
           std::string("a.b.c"),
           std::string("a.b.c.d"),
           std::string("!!!!.####.$$$$"),
           std::string("eyJh bGciOiJIUzI1NiJ9.e30.AAAA"),
           good + "=",
           good + ".",
           "." + good,
           good + " ",
           "Bearer " + good,
           std::string(100000, 'A') + "." + std::string(100000, 'A') + "." + std::string(43, 'A'),
           std::string(1 << 20, '.'),
           std::string("\0\0\0", 3),
       }) {
    SCOPED_TRACE(t.substr(0, 40));
    expect_refused(verify_token(kSecret, t), "malformed token");
  }
  // Standard base64 (+ / =) instead of base64url is malformed too.
  std::string std64 = good;
  std64.replace(std64.rfind('.') + 1, 1, "+");
  expect_refused(verify_token(kSecret, std64), "malformed token");
}

TEST(Token, IssueValidatesItsInput) {
  EXPECT_EQ(issue_token("", scope_for("/", false)).error().code, ErrorCode::kInvalidArgument);
  TokenScope past = scope_for("/", false);
  past.issued_at = 2000;
  past.expires_at = 2000;
  EXPECT_EQ(issue_token(kSecret, past).error().code, ErrorCode::kInvalidArgument);
  TokenScope no_expiry = scope_for("/", false);
  no_expiry.expires_at = 0;
  EXPECT_EQ(issue_token(kSecret, no_expiry).error().code, ErrorCode::kInvalidArgument);
  auto escape = issue_token(kSecret, scope_for("/a/../..", false));
  ASSERT_FALSE(escape.ok());
  EXPECT_EQ(escape.error().code, ErrorCode::kPermission);
  TokenScope bad_utf8 = scope_for("/", false);
  bad_utf8.subject = "\xff\xfe";
  EXPECT_EQ(issue_token(kSecret, bad_utf8).error().code, ErrorCode::kInvalidArgument);
}

TEST(Token, CoversAtComponentBoundaries) {
  TokenScope a;
  a.prefix = "/a";
  EXPECT_TRUE(a.covers("/a"));
  EXPECT_TRUE(a.covers("/a/b"));
  EXPECT_TRUE(a.covers("/a/b/c"));
  EXPECT_FALSE(a.covers("/ab"));
  EXPECT_FALSE(a.covers("/ab/c"));
  EXPECT_FALSE(a.covers("/"));
  EXPECT_FALSE(a.covers(""));
  EXPECT_FALSE(a.covers("/b"));
  EXPECT_FALSE(a.covers("/b/a"));

  TokenScope ab;
  ab.prefix = "/a/b";
  EXPECT_FALSE(ab.covers("/a"));
  EXPECT_TRUE(ab.covers("/a/b/x"));
  EXPECT_FALSE(ab.covers("/a/bx"));

  TokenScope root;  // default prefix "/"
  EXPECT_TRUE(root.covers("/"));
  EXPECT_TRUE(root.covers(""));
  EXPECT_TRUE(root.covers("/a"));
  EXPECT_TRUE(root.covers("/a/b/c"));

  TokenScope empty;
  empty.prefix = "";  // invalid: covers nothing
  EXPECT_FALSE(empty.covers("/"));
  EXPECT_FALSE(empty.covers("/a"));
}

TEST(NormalizePath, CollapsesSeparatorsAndDots) {
  auto n = [](std::string_view p) {
    auto r = normalize_server_path(p);
    EXPECT_TRUE(r.ok()) << p << ": " << r.error().message();
    return r.ok() ? *r : std::string("<error>");
  };
  EXPECT_EQ(n(""), "/");
  EXPECT_EQ(n("/"), "/");
  EXPECT_EQ(n("//"), "/");
  EXPECT_EQ(n("."), "/");
  EXPECT_EQ(n("./"), "/");
  EXPECT_EQ(n("a"), "/a");
  EXPECT_EQ(n("/a"), "/a");
  EXPECT_EQ(n("a//b/./c/"), "/a/b/c");
  EXPECT_EQ(n("///a///b///"), "/a/b");
  EXPECT_EQ(n("..."), "/...");
  EXPECT_EQ(n("a..b/..c/d.."), "/a..b/..c/d..");
  EXPECT_EQ(n(".hidden/x"), "/.hidden/x");
  EXPECT_EQ(n("with space/\xc3\xa9"), "/with space/\xc3\xa9");
}

TEST(NormalizePath, RefusesDotDotAndNul) {
  for (std::string_view p : {"..", "/..", "../x", "a/../b", "/a/..", "a/b/../../..", "./.."}) {
    auto r = normalize_server_path(p);
    ASSERT_FALSE(r.ok()) << p;
    EXPECT_EQ(r.error().code, ErrorCode::kPermission);
    EXPECT_EQ(r.error().detail, "path escapes the root");
  }
  auto nul = normalize_server_path(std::string_view("a\0b", 3));
  ASSERT_FALSE(nul.ok());
  EXPECT_EQ(nul.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(nul.error().message(), "resolve a\\0b: path contains a NUL byte");
  auto nul_end = normalize_server_path(std::string_view("/a\0", 3));
  EXPECT_FALSE(nul_end.ok());
  auto longp = normalize_server_path(std::string(5000, 'a'));
  ASSERT_FALSE(longp.ok());
  EXPECT_EQ(longp.error().code, ErrorCode::kInvalidArgument);
}

// A temp folder with root/ (served) and outside/ (a neighbour that must stay
// unreachable).
class ServerRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("xfer_srvroot_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    fs::create_directories(base_ / "root" / "sub" / "deeper");
    fs::create_directories(base_ / "outside");
    std::ofstream(base_ / "root" / "file") << "in";
    std::ofstream(base_ / "outside" / "secret") << "out";
    root_ = fs::canonical(base_ / "root").string();
    auto r = ServerRoot::open(root_);
    ASSERT_TRUE(r.ok()) << r.error().message();
    sr_.emplace(std::move(r).value());
  }
  void TearDown() override { fs::remove_all(base_); }

  std::string local(std::string_view client) {
    auto r = sr_->resolve(client);
    EXPECT_TRUE(r.ok()) << client << ": " << r.error().message();
    return r.ok() ? r->local_path : std::string("<error>");
  }
  void expect_escape(std::string_view client) {
    auto r = sr_->resolve(client);
    ASSERT_FALSE(r.ok()) << client << " resolved to " << r->local_path;
    EXPECT_EQ(r.error().code, ErrorCode::kPermission) << r.error().message();
    EXPECT_EQ(r.error().detail, "path escapes the root");
    // The message names the client's view of the path, not the local one.
    EXPECT_EQ(r.error().message().find(root_), std::string::npos) << r.error().message();
  }

  fs::path base_;
  std::string root_;
  std::optional<ServerRoot> sr_;
};

TEST_F(ServerRootTest, MapsPathsBelowTheRoot) {
  EXPECT_EQ(sr_->path(), root_);
  auto r = sr_->resolve("file");
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->server_path, "/file");
  EXPECT_EQ(r->local_path, root_ + "/file");
  EXPECT_EQ(local("/file"), root_ + "/file");  // absolute client paths are root-relative
  EXPECT_EQ(local("/sub//deeper/./x"), root_ + "/sub/deeper/x");
  EXPECT_EQ(local(""), root_);
  EXPECT_EQ(local("/"), root_);
  EXPECT_EQ(local("/etc/passwd"), root_ + "/etc/passwd");
}

TEST_F(ServerRootTest, NewNestedPathsResolve) {
  // Parents that do not exist yet: the caller's mkdir/open reports ENOENT.
  EXPECT_EQ(local("new/deep/file"), root_ + "/new/deep/file");
  EXPECT_EQ(local("sub/new/x"), root_ + "/sub/new/x");
  // A regular file used as a folder: the caller gets ENOTDIR.
  EXPECT_EQ(local("file/x/y"), root_ + "/file/x/y");
}

TEST_F(ServerRootTest, DotDotIsRefused) {
  expect_escape("../x");
  expect_escape("../outside/secret");
  expect_escape("sub/../../outside");
  expect_escape("/..");
}

TEST_F(ServerRootTest, SymlinkOutsideIsRefusedAsParent) {
  fs::create_directory_symlink("/etc", base_ / "root" / "link");
  expect_escape("link/passwd");
  expect_escape("/link/new/file");
  // The link itself is an entry of the root (stat/list/remove act on it).
  EXPECT_EQ(local("link"), root_ + "/link");

  fs::create_directory_symlink("../outside", base_ / "root" / "rel");
  expect_escape("rel/secret");
  fs::create_directory_symlink("..", base_ / "root" / "up");
  expect_escape("up/outside/secret");
  expect_escape("up/root/file");  // leaves the root even though it comes back
  // A dangling escaping link is refused too: it could be created later.
  fs::create_directory_symlink("/nonexistent-xfer-test/a", base_ / "root" / "dangling");
  expect_escape("dangling/x");
  fs::create_directory_symlink("../../../../../../nonexistent", base_ / "root" / "dangling2");
  expect_escape("dangling2/x");
}

TEST_F(ServerRootTest, SymlinkInsideIsAllowed) {
  fs::create_directory_symlink("sub", base_ / "root" / "alias");
  EXPECT_EQ(local("alias/deeper/f"), root_ + "/alias/deeper/f");
  fs::create_directory_symlink("../sub", base_ / "root" / "sub" / "deeper" / "back");
  EXPECT_EQ(local("sub/deeper/back/x"), root_ + "/sub/deeper/back/x");
  // A dangling link inside the root behaves like a missing folder.
  fs::create_directory_symlink("missing", base_ / "root" / "later");
  EXPECT_EQ(local("later/x"), root_ + "/later/x");
}

TEST_F(ServerRootTest, AbsoluteSymlinkIsRefusedEvenIntoTheRoot) {
  // RESOLVE_BENEATH refuses every absolute symlink target (documented).
  fs::create_directory_symlink(root_ + "/sub", base_ / "root" / "abs");
  expect_escape("abs/x");
}

TEST_F(ServerRootTest, SymlinkChainEscapingIsRefused) {
  // c1 -> c2 -> sub/c3 -> ../../outside: every hop but the last is inside.
  fs::create_directory_symlink("c2", base_ / "root" / "c1");
  fs::create_directory_symlink("sub/c3", base_ / "root" / "c2");
  fs::create_directory_symlink("../../outside", base_ / "root" / "sub" / "c3");
  expect_escape("c1/secret");
  expect_escape("c2/secret");
  expect_escape("sub/c3/secret");
  expect_escape("c1/new/file");
  // A chain that stays inside works.
  fs::create_directory_symlink("c5", base_ / "root" / "c4");
  fs::create_directory_symlink("sub/deeper", base_ / "root" / "c5");
  EXPECT_EQ(local("c4/f"), root_ + "/c4/f");
  // A loop is an error, not an escape and not a success.
  fs::create_directory_symlink("loop2", base_ / "root" / "loop1");
  fs::create_directory_symlink("loop1", base_ / "root" / "loop2");
  auto loop = sr_->resolve("loop1/x");
  ASSERT_FALSE(loop.ok());
  EXPECT_EQ(loop.error().sys_errno, ELOOP);
}

TEST_F(ServerRootTest, ProcLinksAreRefused) {
  // An absolute link into /proc (a magic link besides) must not open a door.
  fs::create_directory_symlink("/proc/self/root", base_ / "root" / "magic");
  auto r = sr_->resolve("magic/etc/passwd");
  EXPECT_FALSE(r.ok());
}

TEST_F(ServerRootTest, OpenChecksTheRoot) {
  auto missing = ServerRoot::open((base_ / "nope").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto file = ServerRoot::open((base_ / "root" / "file").string());
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.error().code, ErrorCode::kNotDirectory);
  EXPECT_FALSE(ServerRoot::open("").ok());
  // Relative, trailing slash, through a symlink: kept canonical.
  fs::create_directory_symlink(base_ / "root", base_ / "rootlink");
  auto via = ServerRoot::open((base_ / "rootlink").string() + "/sub/..//");
  ASSERT_TRUE(via.ok()) << via.error().message();
  EXPECT_EQ(via->path(), root_);
  auto r = via->resolve("sub/x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->local_path, root_ + "/sub/x");
}

// Configuration: files in a temp folder, the root at <tmp>/root.
class ServerConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::temp_directory_path() /
            ("xfer_srvcfg_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    fs::create_directories(base_ / "root");
    root_ = fs::canonical(base_ / "root").string();
  }
  void TearDown() override { fs::remove_all(base_); }

  std::string write(const std::string& name, std::string_view text) {
    std::ofstream(base_ / name) << text;
    return (base_ / name).string();
  }
  // A config with root and secret set, plus `extra` TOML.
  std::string with_root(std::string_view server_extra = "", std::string_view rest = "") {
    return "[server]\nroot = \"" + root_ + "\"\n" + std::string(server_extra) +
           "\n[auth]\nsecret = \"s3cret-s3cret-s3cret-s3cret-s3cret\"\n" + std::string(rest);
  }
  Result<ServerConfig> parse(std::string_view text) {
    return parse_server_config(text, "test.toml");
  }
  // Parses, expects kInvalidArgument and returns the message.
  std::string error_of(std::string_view text) {
    auto r = parse(text);
    EXPECT_FALSE(r.ok()) << text;
    if (r.ok()) return "";
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << r.error().message();
    return r.error().message();
  }

  fs::path base_;
  std::string root_;
};

TEST_F(ServerConfigTest, FullValidExample) {
  std::string cert = write("cert.pem", "CERT");
  std::string key = write("key.pem", "KEY");
  std::string state = (base_ / "state").string();
  std::string text = R"(
# xferd configuration
[server]
listen = "[::1]:7401"
data_listen = "0.0.0.0:7402"
root = ")" + root_ + R"("
state_dir = ")" + state +
                     R"("

[tls]
cert = ")" + cert + R"("
key = ")" + key + R"("

[auth]
secret = "a long random secret, long enough to sign"
required = true

[limits]
max_sessions = 10
max_streams_per_session = 4
session_idle_seconds = 30
max_jobs = 2

[data]
encrypt = "always"
)";
  auto r = parse(text);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->listen, "[::1]:7401");
  EXPECT_EQ(r->data_listen, std::vector<std::string>{"0.0.0.0:7402"});
  EXPECT_EQ(r->root, root_);
  EXPECT_EQ(r->state_dir, state);
  EXPECT_EQ(r->tls_cert, cert);
  EXPECT_EQ(r->tls_key, key);
  EXPECT_EQ(r->secret, "a long random secret, long enough to sign");
  EXPECT_TRUE(r->auth_required);
  EXPECT_EQ(r->max_sessions, 10u);
  EXPECT_EQ(r->max_streams_per_session, 4u);
  EXPECT_EQ(r->session_idle_seconds, 30u);
  EXPECT_EQ(r->max_jobs, 2u);
  EXPECT_EQ(r->encrypt, EncryptPolicy::kAlways);

  // The same from a file.
  auto f = load_server_config(write("xferd.toml", text));
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(f->max_jobs, 2u);
  auto missing = load_server_config((base_ / "nope.toml").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_NE(missing.error().message().find("nope.toml"), std::string::npos);
}

TEST_F(ServerConfigTest, Defaults) {
  const char* old = std::getenv("XDG_STATE_HOME");
  std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
  ::setenv("XDG_STATE_HOME", (base_ / "xdg").c_str(), 1);
  auto r = parse(with_root());
  if (saved) {
    ::setenv("XDG_STATE_HOME", saved->c_str(), 1);
  } else {
    ::unsetenv("XDG_STATE_HOME");
  }
  ASSERT_TRUE(r.ok()) << r.error().message();
  ServerConfig d;
  EXPECT_EQ(r->listen, "127.0.0.1:7400");
  EXPECT_EQ(r->data_listen, std::vector<std::string>{"127.0.0.1:0"});
  EXPECT_EQ(r->state_dir, fs::weakly_canonical(base_ / "xdg" / "xferd").string());
  EXPECT_TRUE(r->tls_cert.empty());
  EXPECT_TRUE(r->auth_required);
  EXPECT_EQ(r->max_sessions, d.max_sessions);
  EXPECT_EQ(r->max_streams_per_session, d.max_streams_per_session);
  EXPECT_EQ(r->session_idle_seconds, d.session_idle_seconds);
  EXPECT_EQ(r->max_jobs, d.max_jobs);
  EXPECT_EQ(r->encrypt, EncryptPolicy::kAuto);
  // A default that would land inside the root is refused too.
  ::setenv("XDG_STATE_HOME", root_.c_str(), 1);
  std::string m = error_of(with_root());
  if (saved) {
    ::setenv("XDG_STATE_HOME", saved->c_str(), 1);
  } else {
    ::unsetenv("XDG_STATE_HOME");
  }
  EXPECT_NE(m.find("server.state_dir " + root_ + "/xferd (the default) is inside server.root"),
            std::string::npos)
      << m;
  auto never = parse(with_root("", "[data]\nencrypt = \"never\"\n"));
  ASSERT_TRUE(never.ok()) << never.error().message();
  EXPECT_EQ(never->encrypt, EncryptPolicy::kNever);
}

TEST_F(ServerConfigTest, UnknownKeysAreNamed) {
  std::string m = error_of(with_root("lisen = \"127.0.0.1:1\""));
  EXPECT_NE(m.find("unknown key server.lisen"), std::string::npos) << m;
  EXPECT_NE(m.find("test.toml"), std::string::npos) << m;
  EXPECT_NE(m.find("line 3"), std::string::npos) << m;
  m = error_of(with_root("", "requried = false\n"));
  EXPECT_NE(m.find("auth.requried"), std::string::npos) << m;
  m = error_of(with_root("", "[limits]\nmax_job = 3\n"));
  EXPECT_NE(m.find("limits.max_job"), std::string::npos) << m;
  m = error_of(with_root("", "[logging]\nlevel = \"info\"\n"));
  EXPECT_NE(m.find("unknown table [logging]"), std::string::npos) << m;
  m = error_of("verbose = true\n" + with_root());
  EXPECT_NE(m.find("unknown key verbose"), std::string::npos) << m;
  m = error_of(with_root("", "data = 5\n"));  // inside [auth]: auth.data
  EXPECT_NE(m.find("auth.data"), std::string::npos) << m;
  m = error_of("server = 1\n");
  EXPECT_NE(m.find("server must be a table"), std::string::npos) << m;
}

TEST_F(ServerConfigTest, RootMustExistAndBeAFolder) {
  std::string m = error_of("[auth]\nsecret = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n");
  EXPECT_NE(m.find("server.root is required"), std::string::npos) << m;
  m = error_of("[server]\nroot = \"" + (base_ / "nope").string() +
               "\"\n[auth]\nsecret = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n");
  EXPECT_NE(m.find("server.root"), std::string::npos) << m;
  EXPECT_NE(m.find("No such file or directory"), std::string::npos) << m;
  std::string file = write("plain", "x");
  m = error_of("[server]\nroot = \"" + file +
               "\"\n[auth]\nsecret = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n");
  EXPECT_NE(m.find("not a directory"), std::string::npos) << m;
  // A root given through a symlink and with slashes is made canonical.
  fs::create_directory_symlink(base_ / "root", base_ / "rl");
  auto r = parse("[server]\nroot = \"" + (base_ / "rl").string() +
                 "//\"\n[auth]\nsecret = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n");
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->root, root_);
  // The state folder may not be inside the served root.
  m = error_of(with_root("state_dir = \"" + root_ + "/.state\""));
  EXPECT_NE(m.find("server.state_dir"), std::string::npos) << m;
}

TEST_F(ServerConfigTest, AuthRequiresASecret) {
  std::string base = "[server]\nroot = \"" + root_ + "\"\n";
  std::string m = error_of(base);
  EXPECT_NE(m.find("auth.required"), std::string::npos) << m;
  m = error_of(base + "[auth]\nrequired = true\n");
  EXPECT_NE(m.find("auth.secret"), std::string::npos) << m;
  auto open = parse(base + "[auth]\nrequired = false\n");
  ASSERT_TRUE(open.ok()) << open.error().message();
  EXPECT_FALSE(open->auth_required);
  EXPECT_TRUE(open->secret.empty());
  m = error_of(base +
               "[auth]\nrequired = \"yes\"\nsecret = \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n");
  EXPECT_NE(m.find("auth.required must be true or false"), std::string::npos) << m;
  m = error_of(base + "[auth]\nsecret = \"\"\n");
  EXPECT_NE(m.find("auth.secret must not be empty"), std::string::npos) << m;
}

TEST_F(ServerConfigTest, SecretFileIsReadAndTrimmed) {
  std::string sf = write("secret", "  \tsecret with inner space, thirty-two bytes or more\n\n");
  std::string base = "[server]\nroot = \"" + root_ + "\"\n[auth]\nsecret_file = \"" + sf + "\"\n";
  auto r = parse(base);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->secret, "secret with inner space, thirty-two bytes or more");

  std::string m = error_of(base + "secret = \"also\"\n");
  EXPECT_NE(m.find("auth.secret and auth.secret_file"), std::string::npos) << m;
  std::string empty = write("empty", " \n\t\n");
  m = error_of("[server]\nroot = \"" + root_ + "\"\n[auth]\nsecret_file = \"" + empty + "\"\n");
  EXPECT_NE(m.find("is empty"), std::string::npos) << m;
  m = error_of("[server]\nroot = \"" + root_ + "\"\n[auth]\nsecret_file = \"" +
               (base_ / "nope").string() + "\"\n");
  EXPECT_NE(m.find("auth.secret_file"), std::string::npos) << m;
  EXPECT_NE(m.find("No such file or directory"), std::string::npos) << m;
}

TEST_F(ServerConfigTest, ListenAddressesAreChecked) {
  for (std::string_view bad : {"localhost", "127.0.0.1", "::1:7400", "[::1]7400", "[::1]",
                               "[zz]:7400", "1.2.3.4:99999", "1.2.3.4:", "host:abc", ":7400",
                               "1.2.3:7400", "300.1.1.1:1", "bad host:1", "*:7400", "1.2.3.4:-1"}) {
    SCOPED_TRACE(bad);
    std::string m = error_of(with_root("listen = \"" + std::string(bad) + "\""));
    EXPECT_NE(m.find("server.listen \"" + std::string(bad) + "\""), std::string::npos) << m;
    m = error_of(with_root("data_listen = \"" + std::string(bad) + "\""));
    EXPECT_NE(m.find("server.data_listen"), std::string::npos) << m;
  }
  for (std::string_view good : {"127.0.0.1:7400", "0.0.0.0:0", "[::]:7400", "[::1]:1",
                                "localhost:65535", "xfer-1.example.com:7400"}) {
    SCOPED_TRACE(good);
    auto r = parse(with_root("listen = \"" + std::string(good) + "\""));
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->listen, good);
  }
}

// One data listener per NIC: a list, each entry checked as one address.
TEST_F(ServerConfigTest, DataListenTakesAListOfAddresses) {
  auto r = parse(with_root("data_listen = [\"10.0.1.2:7401\", \"[fd00::2]:0\"]"));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->data_listen, (std::vector<std::string>{"10.0.1.2:7401", "[fd00::2]:0"}));
  std::string seventeen;
  for (int i = 0; i < 17; ++i)
    seventeen += (i ? ", " : "") + ("\"10.0.0.1:" + std::to_string(i + 1) + "\"");
  for (const std::string& bad :
       {std::string("[]"), "[" + seventeen + "]", std::string("[7401]"), std::string("7401"),
        std::string("[\"10.0.0.1:1\", [\"10.0.0.1:2\"]]")}) {
    SCOPED_TRACE(bad);
    std::string m = error_of(with_root("data_listen = " + bad));
    EXPECT_NE(m.find("server.data_listen must be \"host:port\" or a list of 1 to 16 of them"),
              std::string::npos)
        << m;
  }
  std::string m = error_of(with_root("data_listen = [\"10.0.0.1:1\", \"10.0.0.1:7400x\"]"));
  EXPECT_NE(m.find("server.data_listen \"10.0.0.1:7400x\""), std::string::npos) << m;
  m = error_of(with_root("data_listen = [\"10.0.0.1:1\", \"10.0.0.1:1\"]"));
  EXPECT_NE(m.find("listed twice"), std::string::npos) << m;
}

TEST_F(ServerConfigTest, ValuesAreTypeAndRangeChecked) {
  std::string m = error_of(with_root("listen = 7400"));
  EXPECT_NE(m.find("server.listen must be a string"), std::string::npos) << m;
  m = error_of(with_root("", "[limits]\nmax_jobs = 0\n"));
  EXPECT_NE(m.find("limits.max_jobs must be an integer in 1..1024"), std::string::npos) << m;
  m = error_of(with_root("", "[limits]\nmax_sessions = \"10\"\n"));
  EXPECT_NE(m.find("limits.max_sessions"), std::string::npos) << m;
  m = error_of(with_root("", "[limits]\nsession_idle_seconds = -1\n"));
  EXPECT_NE(m.find("limits.session_idle_seconds"), std::string::npos) << m;
  m = error_of(with_root("", "[data]\nencrypt = \"sometimes\"\n"));
  EXPECT_NE(m.find("data.encrypt"), std::string::npos) << m;
  m = error_of(with_root("", "[tls]\ncert = \"" + write("c.pem", "C") + "\"\n"));
  EXPECT_NE(m.find("tls.cert and tls.key"), std::string::npos) << m;
  m = error_of(with_root("", "[tls]\ncert = \"" + write("c.pem", "C") + "\"\nkey = \"" +
                                 (base_ / "nokey").string() + "\"\n"));
  EXPECT_NE(m.find("tls.key"), std::string::npos) << m;
  m = error_of("[server\nroot = 1\n");
  EXPECT_NE(m.find("line 1"), std::string::npos) << m;
}

TEST_F(ServerConfigTest, ShortSecretsAreRefused) {
  const std::string base = "[server]\nroot = \"" + root_ + "\"\n";
  std::string m = error_of(base + "[auth]\nsecret = \"0123456789abcdef0123456789abcde\"\n");
  EXPECT_NE(m.find("the auth secret is 31 bytes; at least 32 are required"), std::string::npos)
      << m;
  std::string sf = write("short", "x\n");
  m = error_of(base + "[auth]\nsecret_file = \"" + sf + "\"\n");
  EXPECT_NE(m.find("the auth secret is 1 bytes"), std::string::npos) << m;
  EXPECT_TRUE(parse(base + "[auth]\nsecret = \"0123456789abcdef0123456789abcdef\"\n").ok());
}

// Every [limits] key of the table is accepted, range-checked and lands in
// its member; the defaults are the documented ones.
TEST_F(ServerConfigTest, EveryLimitKeyIsReadAndRangeChecked) {
  for (std::size_t i = 0; i < kLimitKeyCount; ++i) {
    const LimitKey& k = kLimitKeys[i];
    SCOPED_TRACE(k.name);
    const unsigned v = k.lo + (k.hi > k.lo ? 1 : 0);
    auto r = parse(with_root("", fmt::format("[limits]\n{} = {}\n", k.name, v)));
    ASSERT_TRUE(r.ok()) << r.error().message();
    if (std::string_view(k.name) != "max_sessions_per_subject" &&
        std::string_view(k.name) != "max_jobs_per_subject" &&
        std::string_view(k.name) != "max_watches_per_subject") {
      EXPECT_EQ((*r).*k.member, v);
    }
    if (k.hi < (1u << 30)) {
      std::string m = error_of(
          with_root("", fmt::format("[limits]\n{} = {}\n", k.name, std::uint64_t{k.hi} + 1)));
      EXPECT_NE(m.find(fmt::format("limits.{} must be an integer in {}..{}", k.name, k.lo, k.hi)),
                std::string::npos)
          << m;
    }
  }
  ServerConfig d;
  EXPECT_EQ(d.max_sessions_per_subject, 16u);
  EXPECT_EQ(d.max_handles_per_session, 256u);
  EXPECT_EQ(d.max_connections, 1024u);
  EXPECT_EQ(d.max_unauthenticated, 64u);
  EXPECT_EQ(d.handshake_seconds, 5u);
  EXPECT_EQ(d.connection_buffer_kib, 4096u);
  EXPECT_EQ(d.socket_buffer_kib, 16384u);
  EXPECT_EQ(d.max_jobs_per_subject, 2u);
  EXPECT_EQ(d.max_watches, 32u);
  EXPECT_EQ(d.max_watches_per_subject, 4u);
  EXPECT_EQ(d.max_open_files_per_subject, 1024u);
  EXPECT_EQ(d.job_retention_seconds, 3600u);
  EXPECT_FALSE(d.allow_special_bits);
  EXPECT_TRUE(d.job_peers.empty());
}

TEST_F(ServerConfigTest, JobPeersAndServerUserAreChecked) {
  auto r = parse(with_root("user = \"nobody\"\nallow_special_bits = true",
                           "[jobs]\npeers = [\"127.0.0.1:7400\", \"[::1]:7401\"]\n"));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->user, "nobody");
  EXPECT_TRUE(r->allow_special_bits);
  EXPECT_EQ(r->job_peers, (std::vector<std::string>{"127.0.0.1:7400", "[::1]:7401"}));
  std::string m = error_of(with_root("", "[jobs]\npeers = \"127.0.0.1:7400\"\n"));
  EXPECT_NE(m.find("jobs.peers must be an array"), std::string::npos) << m;
  m = error_of(with_root("", "[jobs]\npeers = [\"nohost\"]\n"));
  EXPECT_NE(m.find("jobs.peers \"nohost\""), std::string::npos) << m;
  m = error_of(with_root("", "[jobs]\ntls_ca = \"" + (base_ / "none.pem").string() + "\"\n"));
  EXPECT_NE(m.find("jobs.tls_ca"), std::string::npos) << m;
  m = error_of(with_root("", "[limits]\nmax_sesions = 3\n"));
  EXPECT_NE(m.find("unknown key limits.max_sesions"), std::string::npos) << m;
}

}  // namespace
}  // namespace xfer::server
