// The in-process xferd of the server fuzzers (fuzz_server.hpp): its temp
// folder, the seed tree, the snapshots of what lies outside the served root
// and the checks every input ends with.

#include "fuzz_server.hpp"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <set>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "xfer/core/log.hpp"
#include "xfer/server/auth.hpp"
#include "xfer/server/config.hpp"

namespace xfer_fuzz {

namespace {

constexpr const char* kSecret = "xfer-fuzz-secret-0123456789abcdef-0123456789";

FuzzServer* g_server = nullptr;

void write_file(const fs::path& p, std::string_view content, fs::perms mode) {
  {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    if (!out) fail("cannot write " + p.string());
  }
  fs::permissions(p, mode);
}

void make_fifo(const fs::path& p) {
  if (::mkfifo(p.c_str(), 0644) != 0) fail("mkfifo " + p.string());
}

// 200 kB of xorshift bytes: more than one read, less than the inline limit.
const std::string& big_content() {
  static const std::string s = [] {
    std::string out(200'000, '\0');
    std::uint32_t x = 2463534242u;
    for (auto& c : out) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      c = static_cast<char>(x);
    }
    return out;
  }();
  return s;
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// One entry as the snapshots compare it (atime and ctime left out: reads
// and link counts may change them).
std::string describe(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) return "missing";
  std::string out =
      fmt::format("mode={:o} size={} mtime={}.{:09}", st.st_mode, st.st_size,
                  static_cast<long long>(st.st_mtim.tv_sec), static_cast<long>(st.st_mtim.tv_nsec));
  if (S_ISLNK(st.st_mode)) {
    std::error_code ec;
    out += " -> " + fs::read_symlink(p, ec).string();
  } else if (S_ISREG(st.st_mode)) {
    out += " content=" + std::to_string(std::hash<std::string>{}(read_all(p)));
  }
  return out;
}

Snapshot outside_snapshot(const FuzzServer& fz) {
  Snapshot s = snapshot(fz.outside);
  s["."] = describe(fz.outside);
  return s;
}

void cleanup_at_exit() {
  if (g_server == nullptr) return;
  if (g_server->server) g_server->server->shutdown(0);
  g_server->stub.reset();
  g_server->server.reset();
  std::error_code ec;
  fs::remove_all(g_server->base, ec);
}

}  // namespace

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "\n==== server fuzz failure: %s\n", what.c_str());
  if (g_server != nullptr) {
    std::fprintf(stderr, "==== temp folder kept for a look: %s\n", g_server->base.c_str());
  }
  std::fflush(stderr);
  std::abort();
}

FuzzServer& fuzz_server(const char* name) {
  if (g_server != nullptr) return *g_server;
  // The server writes to sockets the fuzzer closes; in xferd main() ignores it.
  std::signal(SIGPIPE, SIG_IGN);
  xfer::init_logging("error");  // refusals are expected by the thousand
  std::string tmpl = fs::temp_directory_path() / (std::string(name) + ".XXXXXX");
  if (::mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp " + tmpl);
  auto* fz = new FuzzServer;
  g_server = fz;
  fz->base = fs::canonical(tmpl);
  fz->root = fz->base / "root";
  fz->state = fz->base / "state";
  fz->outside = fz->base / "outside";
  fs::create_directories(fz->root);
  fs::create_directories(fz->state);
  fs::create_directories(fz->outside / "sub");
  write_file(fz->outside / "secret.txt", "sentinel: must never change\n", fs::perms(0600));
  write_file(fz->outside / "sub" / "inner.txt", "sentinel too\n", fs::perms(0644));
  make_fifo(fz->outside / "fifo");
  fz->outside_want = outside_snapshot(*fz);

  // libFuzzer's -timeout alarm (SIGALRM) must interrupt only the fuzzing
  // thread: the server's threads, created now, inherit it blocked.
  sigset_t alarm, saved;
  sigemptyset(&alarm);
  sigaddset(&alarm, SIGALRM);
  pthread_sigmask(SIG_BLOCK, &alarm, &saved);
  xfer::server::ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.data_listen = {"127.0.0.1:0"};
  config.root = fz->root.string();
  config.state_dir = fz->state.string();
  config.secret = kSecret;
  config.auth_required = true;
  auto started = xfer::server::Server::start(config);
  if (!started) fail("cannot start xferd: " + started.error().message());
  fz->server = std::move(*started);
  fz->stub = ::xfer::v1::Xfer::NewStub(
      grpc::CreateChannel(fz->server->control_address(), grpc::InsecureChannelCredentials()));
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  std::atexit(cleanup_at_exit);
  return *fz;
}

std::string make_token(std::string_view subject, std::string_view prefix, bool write) {
  xfer::server::TokenScope scope;
  scope.subject = std::string(subject);
  scope.prefix = std::string(prefix);
  scope.write = write;
  scope.expires_at = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count() +
                     3600;
  auto t = xfer::server::issue_token(kSecret, scope);
  if (!t) fail("issue_token: " + t.error().message());
  return *t;
}

void seed_tree(const fs::path& dir, bool hardlink) {
  if (g_server == nullptr) fail("seed_tree before fuzz_server");
  const fs::path& outside = g_server->outside;
  fs::create_directories(dir / "dir" / "sub");
  write_file(dir / "a.txt", "hello, xfer\n", fs::perms(0644));
  write_file(dir / "empty", "", fs::perms(0644));
  write_file(dir / "big.bin", big_content(), fs::perms(0640));
  write_file(dir / "dir" / "b.txt", "in a folder\n", fs::perms(0644));
  // A resumable partial of dir/b.txt (resume name "job3").
  write_file(dir / "dir" / ".b.txt.xfer-part-job3", "in a", fs::perms(0644));
  make_fifo(dir / "fifo");
  fs::create_symlink(outside, dir / "link");
  fs::create_symlink(fs::relative(outside, dir), dir / "rel");
  fs::create_symlink(outside / "secret.txt", dir / "link_file");
  fs::create_symlink("..", dir / "up");
  fs::create_symlink("../..", dir / "dir" / "up2");
  // Planted partials: resuming a.txt as "job1" must not write through the
  // symlink, resuming "empty" as "job2" not through the hard link.
  fs::create_symlink(outside / "secret.txt", dir / ".a.txt.xfer-part-job1");
  if (hardlink) fs::create_hard_link(outside / "secret.txt", dir / ".empty.xfer-part-job2");
}

void clear_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::symlink_status(dir, ec).type() != fs::file_type::directory) {
    fail("not a folder any more: " + dir.string());
  }
  std::vector<fs::path> children;
  for (const auto& e : fs::directory_iterator(dir)) children.push_back(e.path());
  for (const auto& c : children) {
    fs::remove_all(c, ec);  // never follows symlinks
    if (ec) fail("cannot remove " + c.string() + ": " + ec.message());
  }
}

Snapshot snapshot(const fs::path& dir, const fs::path& skip) {
  Snapshot out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (!skip.empty() && it->path() == skip) {
      it.disable_recursion_pending();
      continue;
    }
    out[fs::relative(it->path(), dir).string()] = describe(it->path());
  }
  if (ec) out["<error>"] = ec.message();
  return out;
}

std::string diff(const Snapshot& want, const Snapshot& got) {
  for (const auto& [name, what] : want) {
    auto it = got.find(name);
    if (it == got.end()) return fmt::format("'{}' disappeared (was {})", name, what);
    if (it->second != what) return fmt::format("'{}' changed: {} -> {}", name, what, it->second);
  }
  for (const auto& [name, what] : got) {
    if (want.count(name) == 0) return fmt::format("'{}' appeared ({})", name, what);
  }
  return {};
}

void check_outside(FuzzServer& fz) {
  if (auto d = diff(fz.outside_want, outside_snapshot(fz)); !d.empty()) {
    fail("the sentinel folder beside the root: " + d);
  }
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(fz.base)) names.insert(e.path().filename());
  if (names != std::set<std::string>{"outside", "root", "state"}) {
    std::string list;
    for (const auto& n : names) list += " '" + n + "'";
    fail("the temp folder holding the root now has:" + list);
  }
}

void check_no_special_bits(const fs::path& dir) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0 || S_ISLNK(st.st_mode)) continue;
    if ((st.st_mode & 07000) != 0) {
      fail(fmt::format("{} has mode {:o} (setuid/setgid/sticky not allowed)", it->path().string(),
                       st.st_mode));
    }
  }
}

bool names_temporaries(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  return in.find("xfer-tmp") != std::string_view::npos;
}

void check_root_released(const fs::path& root, bool temporaries) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec);
       temporaries && !ec && it != fs::end(it); it.increment(ec)) {
    if (it->path().filename().string().find(".xfer-tmp-") != std::string::npos) {
      fail("temporary left behind after the input: " + it->path().string());
    }
  }
  // The server keeps a descriptor of the root itself; nothing below it.
  const std::string prefix = root.string() + "/";
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    auto target = fs::read_symlink(e.path(), ec);
    if (!ec && target.string().rfind(prefix, 0) == 0) {
      fail("descriptor still open after the input: " + target.string());
    }
  }
}

void check_server_alive(FuzzServer& fz) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  ::xfer::v1::Empty req;
  ::xfer::v1::ServerInfoReply reply;
  grpc::Status st = fz.stub->ServerInfo(&ctx, req, &reply);
  if (!st.ok()) fail("ServerInfo failed after the input: " + st.error_message());
}

}  // namespace xfer_fuzz
