// Integration tests of the xfer server: the real `xferd` ($XFERD_BIN, started
// by XferdProcess) and the real `xfer` client ($XFER_BIN) over loopback. Each
// test checks what a user would: the bytes, modes and mtimes that arrive,
// exit codes, the error text, and what is left (or not) on the server's disk.
// See docs/server.md and docs/protocol.md.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "xferd_harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

#define EXPECT_EXIT_CODE(res, code) EXPECT_EQ((res).exit_code, (code)) << (res).describe()
#define ASSERT_EXIT_CODE(res, code) ASSERT_EQ((res).exit_code, (code)) << (res).describe()
#define EXPECT_FAILED(res)                                                       \
  EXPECT_TRUE((res).exit_code > 0 && !(res).timed_out && (res).term_signal == 0) \
      << "expected a clean failure (non-zero exit)\n"                            \
      << (res).describe()

std::string S(const fs::path& p) {
  return p.string();
}

double secs(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// The `{"event":"summary",...}` line of a --json run ("" if none).
std::string summary_line(const RunResult& r) {
  for (const auto& l : split_lines(r.out))
    if (l.find("\"event\":\"summary\"") != std::string::npos) return l;
  return {};
}

// The integer after "key": in a JSON line (0 if absent).
std::uint64_t json_number(const std::string& line, const std::string& key) {
  auto pos = line.find("\"" + key + "\":");
  if (pos == std::string::npos) return 0;
  return std::strtoull(line.c_str() + pos + key.size() + 3, nullptr, 10);
}

// The endpoint of each data stream a --json summary line lists.
std::vector<std::string> stream_endpoints(const std::string& line) {
  std::vector<std::string> out;
  const auto sum = nlohmann::json::parse(line, nullptr, false);
  if (!sum.is_object() || !sum.contains("streams")) return out;
  for (const auto& st : sum["streams"]) out.push_back(st.value("endpoint", std::string()));
  return out;
}

// A tree with everything an upload must carry: nested folders, empty files
// and folders, relative symlinks, a mix of modes, nanosecond mtimes.
void make_rich_tree(const fs::path& root, std::uint64_t seed, int files = 60) {
  TreeSpec spec;
  spec.seed = seed;
  spec.dirs = 8;
  spec.max_depth = 3;
  spec.files = files;
  spec.min_size = 0;
  spec.max_size = 150000;
  spec.symlinks = 5;
  spec.empty_dirs = 3;
  generate_tree(root, spec);
  write_file(root / "empty.bin", "");
  fs::create_directories(root / "deep/a/b/c/d");
  write_file(root / "deep/a/b/c/d/leaf.txt", "leaf\n");
  ::chmod((root / "deep/a/b/c/d/leaf.txt").c_str(), 0600);
  stamp_mtimes(root, seed);
}

// Reads rchar/wchar of a process from /proc/<pid>/io.
bool proc_io(pid_t pid, std::uint64_t& rchar, std::uint64_t& wchar) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/io");
  if (!in) return false;
  std::string key;
  std::uint64_t v = 0;
  bool any = false;
  while (in >> key >> v) {
    if (key == "rchar:") rchar = v, any = true;
    if (key == "wchar:") wchar = v;
  }
  return any;
}

// File descriptors of `pid` that point below `dir` (e.g. O_TMPFILEs kept open
// by the server: "/root/#1234 (deleted)").
std::vector<std::string> fds_below(pid_t pid, const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  const std::string prefix = dir.string() + "/";
  for (auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code ec2;
    auto target = fs::read_symlink(e.path(), ec2);
    if (!ec2 && target.string().rfind(prefix, 0) == 0) out.push_back(target.string());
  }
  return out;
}

// ------------------------------------------------------------------ fixture

class Server : public XferTest {
 protected:
  void SetUp() override {
    XferTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_FALSE(xferd_bin().empty())
        << "environment variable XFERD_BIN is not set: it must point to the xferd binary "
           "(CTest sets it; by hand: XFERD_BIN=build/apps/xferd/xferd)";
    // Only the token a test passes counts: no $XFER_TOKEN, no credentials file.
    ::unsetenv("XFER_TOKEN");
    ::setenv("XFER_CREDENTIALS", (tmp() / "no-credentials.toml").c_str(), 1);
  }

  void TearDown() override {
    for (auto& s : servers_) {
      const pid_t pid = s->pid();
      s->stop();
      if (pid > 0) {
        EXPECT_NE(::kill(pid, 0), 0) << "xferd pid " << pid << " survived its stop()";
      }
    }
    servers_.clear();
    XferTest::TearDown();
  }

  // Starts an xferd with its own folder tmp()/name; nullptr (and a test
  // failure) if it did not come up.
  XferdProcess* start_server(const std::string& name = "srv", XferdOptions opt = {}) {
    servers_.push_back(std::make_unique<XferdProcess>(tmp() / name, std::move(opt)));
    XferdProcess* s = servers_.back().get();
    auto r = s->start();
    if (!r) {
      ADD_FAILURE() << r.message();
      return nullptr;
    }
    return s;
  }

  // xfer --token TOKEN ARGS... (no --token when `token` is empty).
  static RunResult xfer(const std::string& token, std::vector<std::string> args,
                        std::chrono::seconds timeout = 120s) {
    if (!token.empty()) args.insert(args.begin(), {"--token", token});
    return run_xfer(args, timeout);
  }

  std::vector<std::unique_ptr<XferdProcess>> servers_;
};

// ----------------------------------------------------- 1. upload / download

struct RoundTripCase {
  const char* name;
  std::vector<std::string> flags;  // global client flags
  unsigned max_streams;            // 0: do not check
};

void PrintTo(const RoundTripCase& c, std::ostream* os) {
  *os << c.name;
}

class ServerRoundTrip : public Server, public ::testing::WithParamInterface<RoundTripCase> {};

TEST_P(ServerRoundTrip, UploadAndDownloadFileAndTree) {
  const RoundTripCase& c = GetParam();
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token("/", true);
  auto with_flags = [&](std::vector<std::string> args) {
    args.insert(args.begin(), c.flags.begin(), c.flags.end());
    return args;
  };

  constexpr std::uint64_t kSize = 64ull << 20;
  fs::path big = tmp() / "big.bin";
  ASSERT_NO_FATAL_FAILURE(write_random_file(big, 64, kSize));
  ::chmod(big.c_str(), 0640);
  set_mtime(big, 1600000000, 123456789);
  fs::path tree = tmp() / "tree";
  make_rich_tree(tree, 101);

  // Upload.
  auto up = xfer(token, with_flags({"transfer", "--json", S(big), srv->url("/big.bin")}));
  ASSERT_EXIT_CODE(up, 0);
  EXPECT_TRUE(compare_trees(big, srv->root() / "big.bin"));
  const std::string sum = summary_line(up);
  ASSERT_FALSE(sum.empty()) << up.describe();
  EXPECT_EQ(json_number(sum, "bytes"), kSize) << sum;
  if (c.max_streams > 0) {
    auto eps = stream_endpoints(sum);
    EXPECT_GE(eps.size(), 1u) << sum;
    EXPECT_LE(eps.size(), c.max_streams) << "more data connections than --streams allows\n" << sum;
  }

  auto up_tree = xfer(token, with_flags({"transfer", "-r", S(tree), srv->url("/tree")}));
  ASSERT_EXIT_CODE(up_tree, 0);
  EXPECT_TRUE(compare_trees(tree, srv->root() / "tree"));

  // Download both back.
  auto down = xfer(token, with_flags({"transfer", srv->url("/big.bin"), S(tmp() / "down.bin")}));
  ASSERT_EXIT_CODE(down, 0);
  EXPECT_TRUE(compare_trees(big, tmp() / "down.bin"));

  auto down_tree =
      xfer(token, with_flags({"transfer", "-r", srv->url("/tree"), S(tmp() / "down-tree")}));
  ASSERT_EXIT_CODE(down_tree, 0);
  EXPECT_TRUE(compare_trees(tree, tmp() / "down-tree"));

  EXPECT_EQ(xfer_hidden_files(srv->root()), std::vector<std::string>{})
      << "temporaries left in the server root";
  EXPECT_EQ(xfer_hidden_files(tmp() / "down-tree"), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(Variants, ServerRoundTrip,
                         ::testing::Values(RoundTripCase{"Default", {}, 0},
                                           RoundTripCase{"Streams1", {"--streams", "1"}, 1},
                                           RoundTripCase{"Streams8", {"--streams", "8"}, 8},
                                           RoundTripCase{"Encrypt", {"--encrypt"}, 0}),
                         [](const ::testing::TestParamInfo<RoundTripCase>& i) {
                           return std::string(i.param.name);
                         });

// A sealed session refuses plaintext and the reverse is checked in unit
// tests; here: --encrypt and --no-encrypt both deliver the same bytes.
// A named remote (xfer remote add) carries transfers as NAME:path; its
// token is kept in a private credentials file and can be sealed with a
// passphrase: without it nothing reaches the server, with it all works.
TEST_F(Server, NamedRemoteWithASealedTokenCarriesTransfers) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token("/", true);
  const std::string port = srv->control_address().substr(srv->control_address().rfind(':') + 1);
  const fs::path creds = tmp() / "no-credentials.toml";  // $XFER_CREDENTIALS of this fixture
  auto add = run_xfer(
      {"remote", "add", "lab", "xfer", "host=127.0.0.1", "port=" + port, "token=" + token});
  ASSERT_EXIT_CODE(add, 0);
  struct stat st {};
  ASSERT_EQ(::stat(creds.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto show = run_xfer({"remote", "show", "lab"});
  ASSERT_EXIT_CODE(show, 0);
  EXPECT_EQ(show.out.find(token), std::string::npos) << "show prints no secret";
  EXPECT_NE(show.out.find("127.0.0.1"), std::string::npos) << show.describe();

  fs::path f = tmp() / "f.bin";
  std::mt19937_64 rng(31);
  write_file(f, random_bytes(rng, 3u << 20));
  auto up = run_xfer({"cp", S(f), "lab:/up.bin"});
  ASSERT_EXIT_CODE(up, 0);
  EXPECT_TRUE(files_equal(f, srv->root() / "up.bin"));
  auto ls = run_xfer({"ls", "lab:/"});
  ASSERT_EXIT_CODE(ls, 0);
  EXPECT_NE(ls.out.find("up.bin"), std::string::npos) << ls.describe();

  // Sealed: the file no longer holds the token.
  ::setenv("XFER_PASSPHRASE", "correct horse", 1);
  auto seal = run_xfer({"credentials", "seal"});
  ASSERT_EXIT_CODE(seal, 0);
  EXPECT_EQ(read_file(creds).find(token), std::string::npos) << read_file(creds);
  auto sealed_up = run_xfer({"cp", S(f), "lab:/sealed.bin"});
  ASSERT_EXIT_CODE(sealed_up, 0);
  EXPECT_TRUE(files_equal(f, srv->root() / "sealed.bin"));
  ::unsetenv("XFER_PASSPHRASE");
  write_file(tmp() / "wrong.txt", std::string("wrong horse\n"));
  auto wrong =
      run_xfer({"--passphrase-file", S(tmp() / "wrong.txt"), "cp", S(f), "lab:/wrong.bin"});
  EXPECT_EXIT_CODE(wrong, 1);
  EXPECT_NE(wrong.err.find("wrong passphrase"), std::string::npos) << wrong.describe();
  EXPECT_FALSE(lexists(srv->root() / "wrong.bin"));

  // Readable by others: refused, as ssh refuses such a key.
  ::chmod(creds.c_str(), 0644);
  auto open_file = run_xfer({"cp", S(f), "lab:/open.bin"});
  EXPECT_EXIT_CODE(open_file, 1);
  EXPECT_NE(open_file.err.find("chmod 600"), std::string::npos) << open_file.describe();
  EXPECT_FALSE(lexists(srv->root() / "open.bin"));
  EXPECT_FALSE(lexists(fs::current_path() / "lab:")) << "lab:/... never became a local path";
  ::chmod(creds.c_str(), 0600);

  auto rm = run_xfer({"remote", "remove", "lab"});
  ASSERT_EXIT_CODE(rm, 0);
  auto list = run_xfer({"remote", "list"});
  ASSERT_EXIT_CODE(list, 0);
  EXPECT_EQ(list.out.find("lab"), std::string::npos) << list.describe();
}

TEST_F(Server, NoEncryptFlagDeliversTheSameBytes) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token();
  fs::path f = tmp() / "f.bin";
  ASSERT_NO_FATAL_FAILURE(write_random_file(f, 3, 5u << 20));
  auto r = xfer(token, {"--no-encrypt", "transfer", S(f), srv->url("/f.bin")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(f, srv->root() / "f.bin"));
  auto both = xfer(token, {"--encrypt", "--no-encrypt", "transfer", S(f), srv->url("/g.bin")});
  EXPECT_FAILED(both);
  EXPECT_FALSE(lexists(srv->root() / "g.bin"));
}

// --cc picks the data connections' congestion control; one the kernel lacks
// fails the copy with the kernel's list, and nothing is left.
TEST_F(Server, CongestionControlIsChosenOrRefusedByName) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token();
  fs::path f = tmp() / "f.bin";
  ASSERT_NO_FATAL_FAILURE(write_random_file(f, 4, 9u << 20));
  auto reno = xfer(token, {"--cc", "reno", "cp", S(f), srv->url("/reno.bin")});
  ASSERT_EXIT_CODE(reno, 0);
  EXPECT_TRUE(files_equal(f, srv->root() / "reno.bin"));
  auto bad = xfer(token, {"--cc", "nosuch", "cp", S(f), srv->url("/bad.bin")});
  EXPECT_FAILED(bad);
  EXPECT_NE(bad.err.find("this kernel has: "), std::string::npos) << bad.describe();
  EXPECT_FALSE(lexists(srv->root() / "bad.bin"));
  EXPECT_TRUE(xfer_hidden_files(srv->root()).empty());
}

// A server that takes fewer data connections than the client asks for
// (its handshake and per-address limits) still serves it, with the
// connections it takes, and a refused open leaves no session behind: five
// runs in a row under a limit of two sessions per token all succeed. (A
// client that failed the whole session on the first refusal, and left it
// open on the server, ran out of sessions on the third run; fifty clients
// at once did so under the default limits.)
TEST_F(Server, ConnectionsTheServerRefusesCostNeitherTheCopyNorASession) {
  XferdOptions o;
  o.extra_toml =
      "[limits]\nmax_unauthenticated_per_address = 2\nmax_connections_per_address = 3\n"
      "max_sessions_per_subject = 2\n";
  XferdProcess* srv = start_server("srv", o);
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token();
  fs::path f = tmp() / "f.bin";
  ASSERT_NO_FATAL_FAILURE(write_random_file(f, 6, 6u << 20));
  for (int i = 0; i < 5; ++i) {
    const std::string name = "/run" + std::to_string(i) + ".bin";
    auto r = xfer(token, {"--streams", "8", "cp", S(f), srv->url(name)});
    ASSERT_EXIT_CODE(r, 0);
    EXPECT_TRUE(files_equal(f, srv->root() / name.substr(1))) << name;
  }
  EXPECT_TRUE(xfer_hidden_files(srv->root()).empty());
  // The refusals were the server's limits, and it said so.
  EXPECT_NE(srv->log().find("in progress already"), std::string::npos) << srv->log();
}

// Over loopback the client sends buffered by default; sendfile (the path a
// real network uses) is forced here so it stays tested: same bytes, and the
// summary counts them as zero-copy.
TEST_F(Server, SendfilePathDeliversTheSameBytes) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token();
  fs::path f = tmp() / "f.bin";
  ASSERT_NO_FATAL_FAILURE(write_random_file(f, 4, (24u << 20) + 12345));
  ::setenv("XFER_LOOPBACK_SENDFILE", "1", 1);
  auto r = xfer(token, {"--no-encrypt", "transfer", "--json", S(f), srv->url("/f.bin")});
  ::unsetenv("XFER_LOOPBACK_SENDFILE");
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(files_equal(f, srv->root() / "f.bin"));
  EXPECT_NE(r.out.find("\"bytes_zero_copy\":" + std::to_string((24u << 20) + 12345)),
            std::string::npos)
      << r.out;
}

// A small sparse file travels whole in one frame; its holes (never written
// by the engine) must arrive as zeros.
TEST_F(Server, SmallSparseFileArrivesWithZeroHoles) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token();
  fs::path f = tmp() / "holey";
  {
    int fd = ::open(f.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 900 * 1024), 0);
    ASSERT_EQ(::pwrite(fd, "abc", 3, 500000), 3);
    ::close(fd);
  }
  auto r = xfer(token, {"transfer", S(f), srv->url("/holey")});
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(files_equal(f, srv->root() / "holey"));
}

// A 200 MiB file with 8 KiB of data and 1 MiB of written zeros keeps its
// holes both ways: uploaded (the client reads only data extents and sends
// only non-zero blocks) and downloaded (the zeros cross the wire, the
// client leaves zero blocks unwritten): at most 64 KiB allocated.
TEST_F(Server, SparseFileKeepsItsHolesUpAndDown) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token();
  const fs::path f = tmp() / "holes.img";
  ASSERT_NO_FATAL_FAILURE(write_sparse_file(f, 200ull << 20, {(5ull << 20) - 2048, 150ull << 20},
                                            4096, 80ull << 20, 1 << 20));
  auto up = xfer(token, {"cp", S(f), srv->url("/holes.img")});
  ASSERT_EXIT_CODE(up, 0);
  EXPECT_TRUE(files_equal(f, srv->root() / "holes.img"));
  EXPECT_LE(allocated_bytes(srv->root() / "holes.img"), 64u << 10);
  ASSERT_NO_FATAL_FAILURE(write_sparse_file(srv->root() / "served.img", 200ull << 20,
                                            {(5ull << 20) - 2048, 150ull << 20}, 4096, 80ull << 20,
                                            1 << 20));
  auto down = xfer(token, {"cp", srv->url("/served.img"), S(tmp() / "down.img")});
  ASSERT_EXIT_CODE(down, 0);
  EXPECT_TRUE(files_equal(srv->root() / "served.img", tmp() / "down.img"));
  EXPECT_LE(allocated_bytes(tmp() / "down.img"), 64u << 10);
}

// ------------------------------------------------------ 2. namespace commands

TEST_F(Server, ListShowsAllOf3000Entries) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token("/", false);
  fs::path many = srv->root() / "many";
  fs::create_directory(many);
  std::set<std::string> expected;
  for (int i = 0; i < 3000; ++i) {
    char name[32];
    if (i % 100 == 7) {
      std::snprintf(name, sizeof name, "dir-%05d", i);
      fs::create_directory(many / name);
      expected.insert(std::string(name) + "/");
    } else {
      std::snprintf(name, sizeof name, "entry-%05d.txt", i);
      write_file(many / name, std::to_string(i));
      expected.insert(name);
    }
  }

  auto r = xfer(token, {"ls", srv->url("/many")});
  ASSERT_EXIT_CODE(r, 0);
  auto lines = split_lines(r.out);
  std::set<std::string> got(lines.begin(), lines.end());
  EXPECT_EQ(lines.size(), 3000u) << "duplicates or missing lines";
  EXPECT_EQ(got, expected);

  auto j = xfer(token, {"ls", "--json", srv->url("/many/")});
  ASSERT_EXIT_CODE(j, 0);
  auto jl = split_lines(j.out);
  EXPECT_EQ(jl.size(), 3000u);
  for (const auto& l : jl) {
    std::string why;
    ASSERT_TRUE(is_json_object(l, &why)) << why << ": " << l;
  }

  auto l = xfer(token, {"ls", "-l", srv->url("/many")});
  ASSERT_EXIT_CODE(l, 0);
  EXPECT_EQ(split_lines(l.out).size(), 3000u);
}

TEST_F(Server, StatShowsTypeSizeModeMtime) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token("/", false);
  write_file(srv->root() / "file.txt", std::string(12345, 'x'));
  ::chmod((srv->root() / "file.txt").c_str(), 0640);
  set_mtime(srv->root() / "file.txt", 1500000000, 987654321);
  fs::create_directory(srv->root() / "dir");
  ::symlink("file.txt", (srv->root() / "link").c_str());

  auto f = xfer(token, {"stat", srv->url("/file.txt")});
  ASSERT_EXIT_CODE(f, 0);
  EXPECT_NE(f.out.find("type: file"), std::string::npos) << f.out;
  EXPECT_NE(f.out.find("size: 12345"), std::string::npos) << f.out;
  EXPECT_NE(f.out.find("mode: 0640"), std::string::npos) << f.out;
  EXPECT_NE(f.out.find("1500000000987654321"), std::string::npos) << f.out;

  auto d = xfer(token, {"stat", srv->url("/dir")});
  ASSERT_EXIT_CODE(d, 0);
  EXPECT_NE(d.out.find("type: dir"), std::string::npos) << d.out;

  auto l = xfer(token, {"stat", srv->url("/link")});
  ASSERT_EXIT_CODE(l, 0);
  EXPECT_NE(l.out.find("symlink"), std::string::npos) << l.out;
  EXPECT_NE(l.out.find("target: file.txt"), std::string::npos) << l.out;

  auto m = xfer(token, {"stat", srv->url("/missing")});
  EXPECT_FAILED(m);
  EXPECT_TRUE(icontains(m.err, "not found") || icontains(m.err, "no such")) << m.describe();
}

TEST_F(Server, MkdirTouchRenameMoveRm) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token();
  const fs::path root = srv->root();

  // mkdir -p, twice; mkdir without -p of an existing one fails.
  auto mk = xfer(token, {"mkdir", "-p", srv->url("/a/b/c")});
  ASSERT_EXIT_CODE(mk, 0);
  EXPECT_TRUE(fs::is_directory(root / "a/b/c"));
  EXPECT_EXIT_CODE(xfer(token, {"mkdir", "-p", srv->url("/a/b/c")}), 0);
  auto mk2 = xfer(token, {"mkdir", srv->url("/a/b/c")});
  EXPECT_FAILED(mk2);
  auto mk3 = xfer(token, {"mkdir", srv->url("/x/y")});  // no -p, missing parent
  EXPECT_FAILED(mk3);
  EXPECT_FALSE(lexists(root / "x"));

  // touch: creates an empty file; on an existing one only the mtime moves.
  auto t = xfer(token, {"touch", srv->url("/a/b/c/new.txt")});
  ASSERT_EXIT_CODE(t, 0);
  ASSERT_TRUE(fs::is_regular_file(root / "a/b/c/new.txt"));
  EXPECT_EQ(lsize(root / "a/b/c/new.txt"), 0u);
  write_file(root / "a/old.txt", "keep me");
  set_mtime(root / "a/old.txt", 1000000000, 0);
  ASSERT_EXIT_CODE(xfer(token, {"touch", srv->url("/a/old.txt")}), 0);
  EXPECT_EQ(read_file(root / "a/old.txt"), "keep me");
  EXPECT_GT(get_mtime(root / "a/old.txt").tv_sec, ::time(nullptr) - 120);

  // rename inside the server.
  auto rn = xfer(token, {"rename", srv->url("/a/b/c/new.txt"), srv->url("/a/renamed.txt")});
  ASSERT_EXIT_CODE(rn, 0);
  EXPECT_FALSE(lexists(root / "a/b/c/new.txt"));
  EXPECT_TRUE(fs::is_regular_file(root / "a/renamed.txt"));
  auto rn_missing = xfer(token, {"rename", srv->url("/nope"), srv->url("/nope2")});
  EXPECT_FAILED(rn_missing);

  // mv into a folder on the same server.
  auto mv = xfer(token, {"mv", srv->url("/a/renamed.txt"), srv->url("/a/b/")});
  ASSERT_EXIT_CODE(mv, 0);
  EXPECT_TRUE(fs::is_regular_file(root / "a/b/renamed.txt"));
  EXPECT_FALSE(lexists(root / "a/renamed.txt"));

  // mv from the server to a local folder: a copy, then the source goes.
  fs::create_directory(tmp() / "local");
  auto mv2 = xfer(token, {"mv", srv->url("/a/old.txt"), S(tmp() / "local")});
  EXPECT_EXIT_CODE(mv2, 0);
  EXPECT_EQ(lexists(tmp() / "local/old.txt") ? read_file(tmp() / "local/old.txt") : "", "keep me");
  EXPECT_FALSE(lexists(root / "a/old.txt"));

  // rm: a folder needs -r; -f ignores missing paths.
  auto rm_dir = xfer(token, {"rm", srv->url("/a")});
  EXPECT_FAILED(rm_dir);
  EXPECT_TRUE(fs::is_directory(root / "a"));
  auto rm_missing = xfer(token, {"rm", srv->url("/missing")});
  EXPECT_FAILED(rm_missing);
  EXPECT_EXIT_CODE(xfer(token, {"rm", "-f", srv->url("/missing")}), 0);
  auto rm = xfer(token, {"rm", "-r", srv->url("/a")});
  ASSERT_EXIT_CODE(rm, 0);
  EXPECT_FALSE(lexists(root / "a"));
  EXPECT_EQ(list_relative(root), std::vector<std::string>{});
}

// ------------------------------------------------------------------ 3. tokens

TEST_F(Server, MissingGarbageAndWrongTokensAreRefused) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  write_file(srv->root() / "secret.txt", "secret");
  fs::path up = tmp() / "up.txt";
  write_file(up, "data");

  auto none = xfer("", {"ls", srv->url("/")});
  EXPECT_FAILED(none);
  EXPECT_TRUE(icontains(none.err, "token")) << none.describe();
  EXPECT_EQ(none.out.find("secret.txt"), std::string::npos);

  auto none_up = xfer("", {"transfer", S(up), srv->url("/up.txt")});
  EXPECT_FAILED(none_up);
  EXPECT_TRUE(icontains(none_up.err, "token")) << none_up.describe();

  auto garbage = xfer("garbage", {"ls", srv->url("/")});
  EXPECT_FAILED(garbage);
  EXPECT_TRUE(icontains(garbage.err, "malformed token")) << garbage.describe();

  auto dots = xfer("a.b.c", {"stat", srv->url("/secret.txt")});
  EXPECT_FAILED(dots);
  EXPECT_TRUE(icontains(dots.err, "token")) << dots.describe();

  // Signed with another secret.
  XferdOptions other;
  other.secret = "fedcba9876543210fedcba9876543210";
  XferdProcess* srv2 = start_server("other", other);
  ASSERT_NE(srv2, nullptr);
  auto foreign = xfer(srv2->token(), {"ls", srv->url("/")});
  EXPECT_FAILED(foreign);
  EXPECT_TRUE(icontains(foreign.err, "signature")) << foreign.describe();

  // The same token through $XFER_TOKEN works.
  ::setenv("XFER_TOKEN", srv->token("/", false).c_str(), 1);
  auto env = xfer("", {"ls", srv->url("/")});
  ::unsetenv("XFER_TOKEN");
  EXPECT_EXIT_CODE(env, 0);
  EXPECT_NE(env.out.find("secret.txt"), std::string::npos) << env.describe();

  EXPECT_FALSE(lexists(srv->root() / "up.txt"));
  EXPECT_EQ(list_relative(srv->root()), std::vector<std::string>{"secret.txt"});
}

TEST_F(Server, ExpiredTokenIsRefused) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string token = srv->token("/", true, 1);
  // A one-second token: refused as expired once its second has passed.
  RunResult r;
  EXPECT_TRUE(wait_until([&] {
    r = xfer(token, {"ls", srv->url("/")});
    return r.exit_code != 0;
  }));
  EXPECT_FAILED(r);
  EXPECT_TRUE(icontains(r.err, "expired")) << r.describe();
  fs::path up = tmp() / "up.txt";
  write_file(up, "data");
  auto w = xfer(token, {"transfer", S(up), srv->url("/up.txt")});
  EXPECT_FAILED(w);
  EXPECT_TRUE(icontains(w.err, "expired")) << w.describe();
  EXPECT_FALSE(lexists(srv->root() / "up.txt"));
}

TEST_F(Server, ReadOnlyTokenCanReadButNotWrite) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string ro = srv->token("/", false);
  const fs::path root = srv->root();
  write_file(root / "existing.txt", "old");
  fs::create_directory(root / "dir");

  fs::path small = tmp() / "small.txt";
  write_file(small, "small");
  fs::path big = tmp() / "big.bin";
  ASSERT_NO_FATAL_FAILURE(write_random_file(big, 5, 24u << 20));  // not a whole-file frame
  fs::path tree = tmp() / "tree";
  make_rich_tree(tree, 5, 20);

  for (const auto& [src, dst, rec] :
       std::vector<std::tuple<fs::path, std::string, bool>>{{small, "/small.txt", false},
                                                            {big, "/big.bin", false},
                                                            {small, "/existing.txt", false},
                                                            {tree, "/tree", true}}) {
    std::vector<std::string> args = {"transfer"};
    if (rec) args.push_back("-r");
    args.push_back(S(src));
    args.push_back(srv->url(dst));
    auto r = xfer(ro, args);
    EXPECT_FAILED(r);
    EXPECT_TRUE(icontains(r.err, "read-only") || icontains(r.err, "not allow writing"))
        << r.describe();
  }
  EXPECT_EQ(read_file(root / "existing.txt"), "old");
  auto mk = xfer(ro, {"mkdir", srv->url("/newdir")});
  EXPECT_FAILED(mk);
  auto touch = xfer(ro, {"touch", srv->url("/t.txt")});
  EXPECT_FAILED(touch);
  auto rn = xfer(ro, {"rename", srv->url("/existing.txt"), srv->url("/moved.txt")});
  EXPECT_FAILED(rn);
  auto rm = xfer(ro, {"rm", srv->url("/existing.txt")});
  EXPECT_FAILED(rm);
  auto rmd = xfer(ro, {"rm", "-r", srv->url("/dir")});
  EXPECT_FAILED(rmd);
  // Nothing changed, nothing left behind (no temporaries, no partials).
  EXPECT_EQ(list_relative(root), (std::vector<std::string>{"dir", "existing.txt"}));

  // Reading is fine.
  EXPECT_EXIT_CODE(xfer(ro, {"ls", srv->url("/")}), 0);
  EXPECT_EXIT_CODE(xfer(ro, {"stat", srv->url("/existing.txt")}), 0);
  auto down = xfer(ro, {"transfer", srv->url("/existing.txt"), S(tmp() / "got.txt")});
  EXPECT_EXIT_CODE(down, 0);
  EXPECT_EQ(read_file(tmp() / "got.txt"), "old");
}

TEST_F(Server, PrefixTokenStaysInsideItsPrefix) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const fs::path root = srv->root();
  fs::create_directories(root / "a");
  fs::create_directories(root / "b");
  fs::create_directories(root / "ab");
  write_file(root / "b/secret.txt", "secret-b");
  write_file(root / "ab/secret.txt", "secret-ab");
  const std::string tok = srv->token("/a", true);
  fs::path up = tmp() / "up.txt";
  write_file(up, "upload");

  auto in = xfer(tok, {"touch", srv->url("/a/ok.txt")});
  EXPECT_EXIT_CODE(in, 0);
  EXPECT_TRUE(lexists(root / "a/ok.txt"));
  EXPECT_EXIT_CODE(xfer(tok, {"transfer", S(up), srv->url("/a/up.txt")}), 0);
  EXPECT_EQ(lexists(root / "a/up.txt") ? read_file(root / "a/up.txt") : "", "upload");

  for (const std::string p : {"/b/x.txt", "/ab/x.txt", "/x.txt"}) {
    auto t = xfer(tok, {"touch", srv->url(p)});
    EXPECT_FAILED(t);
    EXPECT_TRUE(icontains(t.err, "scope")) << t.describe();
    EXPECT_FALSE(lexists(root / p.substr(1)));
    auto u = xfer(tok, {"transfer", S(up), srv->url(p)});
    EXPECT_FAILED(u);
    EXPECT_FALSE(lexists(root / p.substr(1)));
  }
  for (const std::string p : {"/b", "/ab", "/"}) {
    auto l = xfer(tok, {"ls", srv->url(p)});
    EXPECT_FAILED(l);
    EXPECT_EQ(l.out.find("secret"), std::string::npos) << l.describe();
  }
  auto d = xfer(tok, {"transfer", srv->url("/b/secret.txt"), S(tmp() / "stolen.txt")});
  EXPECT_FAILED(d);
  EXPECT_FALSE(lexists(tmp() / "stolen.txt"));
  auto rn = xfer(tok, {"rename", srv->url("/a/ok.txt"), srv->url("/b/ok.txt")});
  EXPECT_FAILED(rn);
  EXPECT_TRUE(lexists(root / "a/ok.txt"));
  EXPECT_FALSE(lexists(root / "b/ok.txt"));
  auto rm = xfer(tok, {"rm", "-r", srv->url("/b")});
  EXPECT_FAILED(rm);
  EXPECT_TRUE(lexists(root / "b/secret.txt"));
}

// The token's prefix is a promise about the files it reaches, not only about
// the path it names: a relative symlink inside /a that points to ../b (here
// uploaded by the prefix-/a token holder itself, as part of a tree) must not
// open /b to that token.
TEST_F(Server, PrefixTokenCannotReachOutsideThroughASymlink) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const fs::path root = srv->root();
  fs::create_directories(root / "a");
  fs::create_directories(root / "b");
  write_file(root / "b/secret.txt", "secret-b");
  const std::string tok = srv->token("/a", true);

  fs::path tree = tmp() / "tree";
  fs::create_directories(tree);
  write_file(tree / "plain.txt", "plain");
  ASSERT_EQ(::symlink("../../b", (tree / "tob").c_str()), 0);
  auto up = xfer(tok, {"transfer", "-r", S(tree), srv->url("/a/t")});
  // Uploading the link itself is allowed (it is just an entry of /a/t)...
  ASSERT_EXIT_CODE(up, 0);
  ASSERT_TRUE(fs::is_symlink(root / "a/t/tob"));

  // ... following it is not.
  auto ls = xfer(tok, {"ls", srv->url("/a/t/tob/")});
  EXPECT_NE(ls.exit_code, 0) << ls.describe();
  EXPECT_EQ(ls.out.find("secret"), std::string::npos) << "listed /b with a /a token\n"
                                                      << ls.describe();
  auto down = xfer(tok, {"transfer", srv->url("/a/t/tob/secret.txt"), S(tmp() / "stolen.txt")});
  EXPECT_NE(down.exit_code, 0) << down.describe();
  EXPECT_FALSE(lexists(tmp() / "stolen.txt")) << "read /b/secret.txt with a /a token";
  fs::path evil = tmp() / "evil.txt";
  write_file(evil, "evil");
  auto w = xfer(tok, {"transfer", S(evil), srv->url("/a/t/tob/evil.txt")});
  EXPECT_NE(w.exit_code, 0) << w.describe();
  EXPECT_FALSE(lexists(root / "b/evil.txt")) << "wrote into /b with a /a token";
  auto rm = xfer(tok, {"rm", srv->url("/a/t/tob/secret.txt")});
  EXPECT_NE(rm.exit_code, 0) << rm.describe();
  EXPECT_TRUE(lexists(root / "b/secret.txt")) << "removed /b/secret.txt with a /a token";
}

TEST_F(Server, DotDotPathsAreRefused) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string tok = srv->token();
  // Beside the root, i.e. one level up from it.
  write_file(srv->dir() / "outside-secret.txt", "outside");
  fs::create_directories(srv->root() / "sub");
  fs::path up = tmp() / "up.txt";
  write_file(up, "data");

  for (const std::string p : {"/../", "/sub/../..", "/sub/../../outside-secret.txt", "/.."}) {
    auto l = xfer(tok, {"ls", srv->url(p)});
    EXPECT_NE(l.exit_code, 0) << l.describe();
    EXPECT_EQ(l.out.find("outside-secret"), std::string::npos) << l.describe();
    EXPECT_EQ(l.out.find("xferd.toml"), std::string::npos) << l.describe();
  }
  auto d = xfer(tok, {"transfer", srv->url("/../outside-secret.txt"), S(tmp() / "got.txt")});
  EXPECT_FAILED(d);
  EXPECT_TRUE(icontains(d.err, "escapes the root") || icontains(d.err, "..")) << d.describe();
  EXPECT_FALSE(lexists(tmp() / "got.txt"));
  auto d2 = xfer(tok, {"transfer", srv->url("/sub/../../xferd.toml"), S(tmp() / "cfg.toml")});
  EXPECT_FAILED(d2);
  EXPECT_FALSE(lexists(tmp() / "cfg.toml"));
  auto u = xfer(tok, {"transfer", S(up), srv->url("/../planted.txt")});
  EXPECT_FAILED(u);
  EXPECT_FALSE(lexists(srv->dir() / "planted.txt"));
  auto t = xfer(tok, {"touch", srv->url("/sub/../../planted2.txt")});
  EXPECT_FAILED(t);
  EXPECT_FALSE(lexists(srv->dir() / "planted2.txt"));
  auto rm = xfer(tok, {"rm", srv->url("/../outside-secret.txt")});
  EXPECT_FAILED(rm);
  EXPECT_TRUE(lexists(srv->dir() / "outside-secret.txt"));
}

TEST_F(Server, SymlinkOutOfTheRootIsNotFollowed) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string tok = srv->token();
  const fs::path root = srv->root();
  ASSERT_EQ(::symlink("/etc", (root / "link").c_str()), 0);
  fs::path outside = tmp() / "outside";
  fs::create_directories(outside);
  write_file(outside / "private.txt", "private");
  ASSERT_EQ(::symlink(outside.c_str(), (root / "outlink").c_str()), 0);
  ASSERT_EQ(::symlink("../outside", (root / "rel").c_str()), 0);  // climbs out too

  // Whatever `ls link/` prints (see ListThroughAnEscapingSymlinkIsRefused),
  // nothing of /etc.
  auto l = xfer(tok, {"ls", srv->url("/link/")});
  EXPECT_EQ(l.out.find("passwd"), std::string::npos) << l.describe();
  auto ll = xfer(tok, {"ls", "-R", srv->url("/")});
  EXPECT_EQ(ll.out.find("passwd"), std::string::npos) << ll.describe();
  auto d = xfer(tok, {"transfer", srv->url("/link/passwd"), S(tmp() / "passwd")});
  EXPECT_FAILED(d);
  EXPECT_TRUE(icontains(d.err, "escapes the root") || icontains(d.err, "symlink")) << d.describe();
  EXPECT_FALSE(lexists(tmp() / "passwd"));
  // Copying the link copies the link (etc-copy -> /etc), never /etc's files.
  auto dr = xfer(tok, {"transfer", "-r", srv->url("/link/"), S(tmp() / "etc-copy")});
  EXPECT_FALSE(fs::is_directory(fs::symlink_status(tmp() / "etc-copy")))
      << "/etc was copied through the server\n"
      << dr.describe();
  EXPECT_EXIT_CODE(dr, 0);
  ASSERT_TRUE(fs::is_symlink(tmp() / "etc-copy")) << dr.describe();
  EXPECT_EQ(fs::read_symlink(tmp() / "etc-copy"), fs::path("/etc"));

  for (const std::string link : {"/outlink", "/rel"}) {
    auto lo = xfer(tok, {"ls", srv->url(link + "/")});
    EXPECT_EQ(lo.out.find("private"), std::string::npos) << lo.describe();
    auto r = xfer(tok, {"transfer", srv->url(link + "/private.txt"), S(tmp() / "private.txt")});
    EXPECT_FAILED(r);
    EXPECT_FALSE(lexists(tmp() / "private.txt"));
    fs::path evil = tmp() / "evil.txt";
    write_file(evil, "evil");
    auto w = xfer(tok, {"transfer", S(evil), srv->url(link + "/evil.txt")});
    EXPECT_FAILED(w);
    EXPECT_FALSE(lexists(outside / "evil.txt"));
    auto t = xfer(tok, {"touch", srv->url(link + "/touched.txt")});
    EXPECT_FAILED(t);
    EXPECT_FALSE(lexists(outside / "touched.txt"));
    auto rm = xfer(tok, {"rm", srv->url(link + "/private.txt")});
    EXPECT_FAILED(rm);
    EXPECT_TRUE(lexists(outside / "private.txt"));
  }
  // The links themselves are ordinary entries: stat shows them as symlinks.
  auto st = xfer(tok, {"stat", srv->url("/link")});
  EXPECT_EXIT_CODE(st, 0);
  EXPECT_NE(st.out.find("symlink"), std::string::npos) << st.describe();
  EXPECT_EQ(list_relative(outside), std::vector<std::string>{"private.txt"});
}

// `ls link/` asks for the folder the link points to (a local `xfer ls` lists
// the target). The server must not follow a link out of the root, so this is
// an error; printing the link itself as if it were a plain entry, with exit
// status 0, hides the refusal.
TEST_F(Server, ListThroughAnEscapingSymlinkIsRefused) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string tok = srv->token();
  ASSERT_EQ(::symlink("/etc", (srv->root() / "link").c_str()), 0);
  auto l = xfer(tok, {"ls", srv->url("/link/")});
  EXPECT_FAILED(l);
  EXPECT_EQ(l.out.find("passwd"), std::string::npos) << l.describe();
  EXPECT_TRUE(icontains(l.err, "symlink") || icontains(l.err, "escapes the root")) << l.describe();
}

// ---------------------------------------------------------------- 4. third-party

TEST_F(Server, ThirdPartyFileAndTreeGoFromAToB) {
  XferdProcess* b = start_server("B");
  ASSERT_NE(b, nullptr);
  XferdOptions ao;
  ao.extra_toml = "[jobs]\npeers = [\"" + b->control_address() + "\"]\n";
  XferdProcess* a = start_server("A", ao);
  ASSERT_NE(a, nullptr);
  const std::string tok = a->token();  // same secret: valid on both

  constexpr std::uint64_t kSize = 32ull << 20;
  ASSERT_NO_FATAL_FAILURE(write_random_file(a->root() / "big.bin", 32, kSize));
  ::chmod((a->root() / "big.bin").c_str(), 0600);
  set_mtime(a->root() / "big.bin", 1400000000, 5);
  make_rich_tree(a->root() / "tree", 44);

  // Sample the client's read bytes while it runs: the data must not pass
  // through it. --bwlimit stretches the run so the sampler sees it.
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> max_rchar{0};
  std::thread sampler;
  auto r = run_xfer({"--token", tok, "transfer", "--json", "--bwlimit", "48M", a->url("/big.bin"),
                     b->url("/big.bin")},
                    120s, [&](pid_t pid) {
                      sampler = std::thread([&, pid] {
                        while (!done.load()) {
                          std::uint64_t rc = 0, wc = 0;
                          if (proc_io(pid, rc, wc) && rc > max_rchar.load()) max_rchar.store(rc);
                          std::this_thread::sleep_for(10ms);
                        }
                      });
                    });
  done.store(true);
  if (sampler.joinable()) sampler.join();
  ASSERT_EXIT_CODE(r, 0);
  EXPECT_TRUE(compare_trees(a->root() / "big.bin", b->root() / "big.bin"));
  const std::string sum = summary_line(r);
  ASSERT_FALSE(sum.empty()) << r.describe();
  EXPECT_EQ(json_number(sum, "bytes"), kSize) << sum;
  auto eps = stream_endpoints(sum);
  for (const auto& e : eps) {
    EXPECT_NE(e.find(a->control_address()), std::string::npos) << sum;
    EXPECT_NE(e.find(" -> "), std::string::npos) << sum;
    EXPECT_NE(e.find(b->control_address()), std::string::npos) << sum;
  }
  if (std::getenv("XFER_TEST_VERBOSE")) {
    std::printf("[third-party] %.2f s, client rchar up to %llu bytes\n", r.seconds,
                static_cast<unsigned long long>(max_rchar.load()));
  }
  EXPECT_GT(max_rchar.load(), 0u) << "the sampler never read /proc/<pid>/io";
  EXPECT_LT(max_rchar.load(), kSize / 4)
      << "the client read " << max_rchar.load() << " bytes: the data went through it";

  auto t = xfer(tok, {"transfer", "-r", a->url("/tree"), b->url("/tree")});
  ASSERT_EXIT_CODE(t, 0);
  EXPECT_TRUE(compare_trees(a->root() / "tree", b->root() / "tree"));

  EXPECT_EQ(xfer_hidden_files(b->root()), std::vector<std::string>{});
  EXPECT_EQ(xfer_hidden_files(a->root()), std::vector<std::string>{});
}

// ------------------------------------------------------ 5. garbage on data port

TEST_F(Server, GarbageOnTheDataPortIsDroppedAndServerStaysHealthy) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string tok = srv->token();
  std::mt19937_64 rng(55);

  // Silent connections: the server drops them after its handshake timeout.
  const auto t_silent = Clock::now();
  int silent = tcp_connect(srv->data_address());
  ASSERT_GE(silent, 0) << "connect " << srv->data_address() << ": " << std::strerror(errno);
  int magic_only = tcp_connect(srv->data_address());
  ASSERT_GE(magic_only, 0);
  send_some(magic_only, "XFERDATA");

  // 64 KiB of random bytes.
  {
    int fd = tcp_connect(srv->data_address());
    ASSERT_GE(fd, 0);
    send_some(fd, random_bytes(rng, 64 << 10));
    EXPECT_TRUE(closed_by_peer(fd, Clock::now() + 3s)) << "random bytes: connection kept open";
    ::close(fd);
  }
  // The right magic, then garbage where the Hello header should be.
  {
    int fd = tcp_connect(srv->data_address());
    ASSERT_GE(fd, 0);
    send_some(fd, "XFERDATA" + random_bytes(rng, 64 << 10));
    EXPECT_TRUE(closed_by_peer(fd, Clock::now() + 3s)) << "magic + garbage: connection kept open";
    ::close(fd);
  }
  // The right magic and a header of zeros (fails its check value).
  {
    int fd = tcp_connect(srv->data_address());
    ASSERT_GE(fd, 0);
    send_some(fd, "XFERDATA" + std::string(40, '\0') + std::string(1000, '\xff'));
    EXPECT_TRUE(closed_by_peer(fd, Clock::now() + 3s)) << "zero header: connection kept open";
    ::close(fd);
  }
  // An HTTP request, as a port scanner would send.
  {
    int fd = tcp_connect(srv->data_address());
    ASSERT_GE(fd, 0);
    send_some(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(closed_by_peer(fd, Clock::now() + 3s)) << "HTTP: connection kept open";
    ::close(fd);
  }
  // A burst of 100 garbage connections at once.
  {
    std::vector<int> fds;
    for (int i = 0; i < 100; ++i) {
      int fd = tcp_connect(srv->data_address());
      ASSERT_GE(fd, 0) << "connection " << i << ": " << std::strerror(errno);
      send_some(fd, (i % 2 ? "XFERDATA" : "") + random_bytes(rng, 4096));
      fds.push_back(fd);
    }
    int closed = 0;
    const auto deadline = Clock::now() + 5s;
    for (int fd : fds) {
      closed += closed_by_peer(fd, deadline) ? 1 : 0;
      ::close(fd);
    }
    EXPECT_EQ(closed, 100);
  }
  ASSERT_TRUE(srv->alive()) << srv->log();

  // A normal upload right after: fine.
  fs::path f = tmp() / "after.bin";
  ASSERT_NO_FATAL_FAILURE(write_random_file(f, 56, 6u << 20));
  auto up = xfer(tok, {"transfer", S(f), srv->url("/after.bin")});
  ASSERT_EXIT_CODE(up, 0);
  EXPECT_TRUE(compare_trees(f, srv->root() / "after.bin"));

  EXPECT_TRUE(closed_by_peer(silent, t_silent + 20s))
      << "a connection that never sent anything was kept for 20 s";
  EXPECT_TRUE(closed_by_peer(magic_only, t_silent + 20s))
      << "a connection that sent only the magic was kept for 20 s";
  ::close(silent);
  ::close(magic_only);
  EXPECT_TRUE(srv->alive()) << srv->log();
}

// ------------------------------------------------- 6. server killed mid-upload

TEST_F(Server, ServerKilledMidUploadThenRestartedAndRerun) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string tok = srv->token();
  constexpr std::uint64_t kSize = 512ull << 20;
  fs::path big = tmp() / "big.bin";
  ASSERT_NO_FATAL_FAILURE(write_random_file(big, 512, kSize));
  const fs::path dst = srv->root() / "big.bin";
  const std::vector<std::string> args = {"--token", tok,    "transfer",          "--bwlimit",
                                         "64M",     S(big), srv->url("/big.bin")};

  RunResult first;
  std::atomic<bool> first_done{false};
  std::thread client([&] {
    first = run_xfer(args, 120s);
    first_done.store(true);
  });
  // Killed once the server's partial reaches 64 MiB (of 512), watching for
  // a file under the final name meanwhile.
  bool early_final = false;
  wait_until([&] {
    early_final = early_final || lexists(dst);
    for (const auto& h : xfer_hidden_files(srv->root())) {
      if (lsize(srv->root() / h) >= (64u << 20)) return true;
    }
    return first_done.load();
  });
  ASSERT_FALSE(first_done.load()) << "finished before the kill: " << first.describe();
  const auto t_kill = Clock::now();
  XferdExit killed = srv->kill9();
  EXPECT_EQ(killed.signal, SIGKILL) << killed.describe();
  client.join();
  const double after_kill = secs(Clock::now() - t_kill);
  EXPECT_FALSE(early_final) << "a file appeared under the final name during the upload";
  if (std::getenv("XFER_TEST_VERBOSE")) {
    std::printf("[server killed] client exited %.2f s after the kill with %d: %s\n", after_kill,
                first.exit_code, first.err.c_str());
  }

  EXPECT_FALSE(first.timed_out) << first.describe();
  EXPECT_NE(first.exit_code, 0) << first.describe();
  EXPECT_LE(after_kill, 60.0) << "the client needed " << after_kill << " s to give up\n"
                              << first.describe();
  EXPECT_TRUE(icontains(first.err, "connect") || icontains(first.err, "server") ||
              icontains(first.err, "unavailable") || icontains(first.err, "reset") ||
              icontains(first.err, "closed"))
      << first.describe();
  EXPECT_FALSE(lexists(dst)) << "partial file under the final name after the kill";

  auto rs = srv->restart();
  ASSERT_TRUE(rs) << rs.message();

  // The same command again: completes; anything under the final name while
  // it runs is the whole file.
  RunResult second;
  std::atomic<bool> second_done{false};
  std::thread client2([&] {
    second = run_xfer(args, 120s);
    second_done.store(true);
  });
  std::uint64_t bad_size = 0;
  while (!second_done.load()) {
    if (lexists(dst) && lsize(dst) != kSize) bad_size = lsize(dst);
    std::this_thread::sleep_for(20ms);
  }
  client2.join();
  if (std::getenv("XFER_TEST_VERBOSE")) {
    std::printf("[rerun] %.2f s: %s\n", second.seconds, second.err.c_str());
  }
  ASSERT_EXIT_CODE(second, 0);
  EXPECT_EQ(bad_size, 0u) << "a partial file (" << bad_size << " bytes) was under the final name";
  EXPECT_TRUE(compare_trees(big, dst));
  EXPECT_EQ(xfer_hidden_files(srv->root()), std::vector<std::string>{})
      << "temporaries or partials left behind after the completed rerun";
}

// ------------------------------------------------- 7. client killed mid-upload

TEST_F(Server, ClientKilledMidUploadLeavesNothingBehind) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string tok = srv->token();
  constexpr std::uint64_t kSize = 256ull << 20;
  fs::path big = tmp() / "big.bin";
  ASSERT_NO_FATAL_FAILURE(write_random_file(big, 7, kSize));
  fs::path tree = tmp() / "tree";
  make_rich_tree(tree, 77, 40);

  // A big file and, in another run, a tree; both killed part-way.
  struct Case {
    std::vector<std::string> args;
    fs::path dst;
  };
  const std::vector<Case> cases = {
      {{"--token", tok, "transfer", "--no-checkpoint", "--bwlimit", "32M", S(big),
        srv->url("/big.bin")},
       srv->root() / "big.bin"},
      {{"--token", tok, "transfer", "-r", "--no-checkpoint", "--bwlimit", "1M", S(tree),
        srv->url("/tree")},
       srv->root() / "tree"},
  };
  for (const auto& c : cases) {
    // Killed once it has sent 1 MiB (the server's temporaries are
    // O_TMPFILE here: nothing to see in the root).
    auto run = run_xfer_signal_when(c.args, SIGKILL,
                                    [&](pid_t pid) { return process_wchar(pid) >= (1u << 20); });
    const RunResult& r = run.result;
    ASSERT_TRUE(run.signalled && r.term_signal == SIGKILL)
        << "the client was not killed mid-transfer\n"
        << r.describe();
  }
  EXPECT_FALSE(lexists(srv->root() / "big.bin")) << "partial file under the final name";

  // The server is fine: another client uploads right away.
  ASSERT_TRUE(srv->alive()) << srv->log();
  fs::path f = tmp() / "next.bin";
  ASSERT_NO_FATAL_FAILURE(write_random_file(f, 8, 8u << 20));
  auto next = xfer(tok, {"transfer", S(f), srv->url("/next.bin")});
  ASSERT_EXIT_CODE(next, 0);
  EXPECT_TRUE(compare_trees(f, srv->root() / "next.bin"));

  // Within a few seconds: no hidden temporaries or partials on disk, and no
  // open (O_TMPFILE) files in the root held by the server.
  std::vector<std::string> hidden, open_fds;
  const auto deadline = Clock::now() + 15s;
  do {
    hidden = xfer_hidden_files(srv->root());
    open_fds = fds_below(srv->pid(), srv->root());
    if (hidden.empty() && open_fds.empty()) break;
    std::this_thread::sleep_for(200ms);
  } while (Clock::now() < deadline);
  EXPECT_EQ(hidden, std::vector<std::string>{}) << "left in the server root";
  EXPECT_EQ(open_fds, std::vector<std::string>{}) << "files the server still holds open";
  EXPECT_FALSE(lexists(srv->root() / "big.bin"));
}

// ------------------------------------------------------ 8. 50 concurrent clients

TEST_F(Server, FiftyConcurrentClients) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  constexpr int kClients = 50;
  // Fifty users, each with a token of their own (limits are per subject).
  std::vector<std::string> toks;
  for (int i = 0; i < kClients; ++i) {
    toks.push_back(srv->token("/", true, 3600, "client-" + std::to_string(i)));
  }
  for (int i = 0; i < kClients; ++i) {
    fs::path src = tmp() / "src" / ("c" + std::to_string(i));
    TreeSpec spec;
    spec.seed = 1000 + static_cast<std::uint64_t>(i);
    spec.dirs = 3;
    spec.files = 20;
    spec.max_size = 32768;
    generate_tree(src / "tree", spec);
    ASSERT_NO_FATAL_FAILURE(write_random_file(src / "big.bin", spec.seed, 4u << 20));
    stamp_mtimes(src, spec.seed);
  }

  std::vector<RunResult> results(kClients);
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      const std::string name = "c" + std::to_string(i);
      results[static_cast<std::size_t>(i)] =
          run_xfer({"--token", toks[static_cast<std::size_t>(i)], "transfer", "-r", "--no-progress",
                    S(tmp() / "src" / name), srv->url("/" + name)},
                   180s);
    });
  }
  for (auto& t : threads) t.join();
  const double took = secs(Clock::now() - t0);
  RecordProperty("seconds", std::to_string(took));
  EXPECT_LT(took, 180.0);
  for (int i = 0; i < kClients; ++i) {
    const std::string name = "c" + std::to_string(i);
    const auto& r = results[static_cast<std::size_t>(i)];
    EXPECT_EXIT_CODE(r, 0);
    EXPECT_TRUE(compare_trees(tmp() / "src" / name, srv->root() / name)) << "client " << i;
  }
  EXPECT_EQ(xfer_hidden_files(srv->root()), std::vector<std::string>{});
  EXPECT_TRUE(srv->alive()) << srv->log();
}

// ------------------------------------------------------ 9. SIGTERM mid-upload

TEST_F(Server, SigtermDuringUploadStopsCleanly) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const std::string tok = srv->token();
  constexpr std::uint64_t kSize = 256ull << 20;
  fs::path big = tmp() / "big.bin";
  ASSERT_NO_FATAL_FAILURE(write_random_file(big, 9, kSize));
  const fs::path dst = srv->root() / "big.bin";

  RunResult r;
  std::atomic<bool> done{false};
  std::thread client([&] {
    r = run_xfer({"--token", tok, "transfer", "--bwlimit", "32M", S(big), srv->url("/big.bin")},
                 120s);
    done.store(true);
  });
  // SIGTERM once the server holds 16 MiB of the upload.
  ASSERT_TRUE(wait_until([&] {
    for (const auto& h : xfer_hidden_files(srv->root())) {
      struct stat st {};
      if (::stat((srv->root() / h).c_str(), &st) == 0 && st.st_blocks * 512 >= (16 << 20))
        return true;
    }
    return done.load();
  }));
  ASSERT_FALSE(done.load()) << "finished before SIGTERM: " << r.describe();
  XferdExit e = srv->stop(std::chrono::seconds(20));
  client.join();
  EXPECT_TRUE(e.exited && e.code == 0) << e.describe() << "\n" << srv->log();
  EXPECT_FALSE(e.escalated) << "xferd needed SIGKILL after 20 s\n" << e.describe();
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_FALSE(r.timed_out) << r.describe();
  EXPECT_FALSE(lexists(dst)) << "a file under the final name after SIGTERM mid-upload";
  // Temporaries are removed; the resumable partial stays, and the same
  // command resumes it once the server is back.
  const auto hidden = xfer_hidden_files(srv->root());
  ASSERT_EQ(hidden.size(), 1u) << ::testing::PrintToString(hidden);
  EXPECT_NE(hidden[0].find(".xfer-part-"), std::string::npos) << hidden[0];
  ASSERT_TRUE(srv->start());
  auto again = run_xfer({"--token", tok, "cp", "--json", S(big), srv->url("/big.bin")}, 120s);
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_TRUE(files_equal(big, dst));
  EXPECT_EQ(again.out.find("\"bytes_resumed\":0,"), std::string::npos)
      << "the partial was not resumed\n"
      << again.out;
}

TEST_F(Server, SigtermWhenIdleExitsZeroAtOnce) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  XferdExit e = srv->stop(std::chrono::seconds(15));
  EXPECT_TRUE(e.exited && e.code == 0) << e.describe() << "\n" << srv->log();
  EXPECT_FALSE(e.escalated) << e.describe();
}

// Runs xfer with `args`, freezes `server_pid` (SIGSTOP) once
// `freeze_when(client pid)` holds (at once when it is null), sends xfer
// SIGINT once the client has stopped reading and writing for 50 ms (its
// workers wait for replies that will not come), and lets the server go on
// afterwards. Returns the run and the seconds from SIGINT to xfer's exit.
// The process has its SIGINT handler installed (/proc/PID/status SigCgt):
// before that, a SIGINT kills it outright, which tests nothing of ours.
bool catches_sigint(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("SigCgt:", 0) == 0) {
      const unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
      return (mask >> (SIGINT - 1)) & 1u;
    }
  }
  return false;
}

std::pair<RunResult, double> interrupt_with_frozen_server(
    const std::vector<std::string>& args, pid_t server_pid,
    const std::function<bool(pid_t)>& freeze_when) {
  bool frozen = false;
  if (!freeze_when) frozen = ::kill(server_pid, SIGSTOP) == 0;
  std::uint64_t last_io = 0;
  int quiet_polls = 0;
  std::chrono::steady_clock::time_point signalled;
  auto run = run_xfer_signal_when(
      args, SIGINT,
      [&](pid_t pid) {
        if (!frozen) {
          if (freeze_when(pid)) frozen = ::kill(server_pid, SIGSTOP) == 0;
          return false;
        }
        if (!catches_sigint(pid)) return false;
        std::uint64_t rchar = 0, wchar = 0;
        proc_io(pid, rchar, wchar);
        quiet_polls = rchar + wchar == last_io ? quiet_polls + 1 : 0;
        last_io = rchar + wchar;
        return quiet_polls >= 10;
      },
      [&] { signalled = std::chrono::steady_clock::now(); }, 60s);
  const auto ended = std::chrono::steady_clock::now();
  ::kill(server_pid, SIGCONT);
  EXPECT_TRUE(run.signalled) << "the run ended before it was interrupted\n"
                             << run.result.describe();
  return {run.result, std::chrono::duration<double>(ended - signalled).count()};
}

// The calls a frozen server leaves waiting time out after 30 s (the first
// Stat) or 120 s (data replies): a client that ends within 20 s of Ctrl-C
// was cancelled, not timed out. (A deadline that bounds the wait, not a
// speed claim: it ends within a second here.)
constexpr double kCancelledWithin = 20.0;

// Ctrl-C reaches the network: with the server frozen mid-upload, every
// worker waits for a reply that will not come; SIGINT must end the client
// within seconds (exit 130), not after the 120 s call timeout.
TEST_F(Server, InterruptReachesCallsWaitingOnAFrozenServer) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  const fs::path src = tmp() / "big.bin";
  write_random_file(src, 21, 256u << 20);
  auto [r, after] =
      interrupt_with_frozen_server({"--token", srv->token(), "cp", "--no-progress", "--bwlimit",
                                    "64M", src.string(), srv->url("/big.bin")},
                                   srv->pid(), [](pid_t pid) {
                                     std::uint64_t rchar = 0, wchar = 0;
                                     proc_io(pid, rchar, wchar);
                                     return rchar >= (16u << 20);  // mid-upload
                                   });
  EXPECT_EXIT_CODE(r, 130);
  EXPECT_LT(after, kCancelledWithin) << "the client waited " << after << " s after Ctrl-C\n"
                                     << r.describe();
  EXPECT_FALSE(fs::exists(srv->root() / "big.bin"));
}

// The same for a download of many files, where workers also wait on gRPC
// calls (each file's final Stat): they are cancelled too.
TEST_F(Server, InterruptReachesGrpcCallsOnAFrozenServer) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  fs::create_directories(srv->root() / "tree");
  for (int i = 0; i < 400; ++i) {
    write_file(srv->root() / "tree" / ("f" + std::to_string(i)), std::string(256 << 10, 'x'));
  }
  auto [r, after] = interrupt_with_frozen_server(
      {"--token", srv->token(), "cp", "-r", "--no-progress", "--bwlimit", "32M", srv->url("/tree"),
       (tmp() / "dst").string()},
      srv->pid(), [&](pid_t) {
        return fs::exists(tmp() / "dst") && count_entries(tmp() / "dst") >= 10;
      });  // mid-download
  EXPECT_EXIT_CODE(r, 130);
  EXPECT_LT(after, kCancelledWithin) << "the client waited " << after << " s after Ctrl-C\n"
                                     << r.describe();
}

// And before anything started: the engine's first Stat of its roots, sent
// to a server that is already frozen, is cancelled too (it used to wait for
// its 30 s deadline).
TEST_F(Server, InterruptReachesTheFirstCallToAFrozenServer) {
  XferdProcess* srv = start_server();
  ASSERT_NE(srv, nullptr);
  write_file(srv->root() / "a.txt", "a");
  const std::string tok = srv->token();
  auto [r, after] = interrupt_with_frozen_server(
      {"--token", tok, "cp", "--no-progress", srv->url("/a.txt"), (tmp() / "a.txt").string()},
      srv->pid(), nullptr);
  EXPECT_EXIT_CODE(r, 130);
  EXPECT_LT(after, kCancelledWithin) << "the client waited " << after << " s after Ctrl-C\n"
                                     << r.describe();
  EXPECT_FALSE(fs::exists(tmp() / "a.txt"));
}

}  // namespace
}  // namespace xfer_it
