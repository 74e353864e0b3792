// xfer's SFTP v3 codec (src/backend/sftp/protocol.hpp) against a real
// OpenSSH sshd started here: a libssh session opens the sftp subsystem on
// a channel, and everything on it is the codec's own bytes. This is the
// ground the sftp:// backend stands on (docs/dependencies.md, "The SFTP
// library"): many writes in flight at offsets in any order (which
// libssh 0.10's own SFTP layer cannot do), reads the same way, and the
// namespace calls with OpenSSH's extensions.

#include <gtest/gtest.h>
#include <libssh/libssh.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "../servers/sshd.hpp"
#include "backend/sftp/protocol.hpp"

namespace xfer::sftp {
namespace {

namespace fs = std::filesystem;

class Wire {
 public:
  ~Wire() {
    if (channel_ != nullptr) {
      ssh_channel_close(channel_);
      ssh_channel_free(channel_);
    }
    if (session_ != nullptr) {
      ssh_disconnect(session_);
      ssh_free(session_);
    }
  }
  // Connects with the server's client key and opens the sftp subsystem.
  ::testing::AssertionResult open(const xfer::testing::SshdServer& sshd) {
    session_ = ssh_new();
    const int port = sshd.port();
    const int yes = 1;
    const int no = 0;
    const std::string user = sshd.user();
    ssh_options_set(session_, SSH_OPTIONS_HOST, "127.0.0.1");
    ssh_options_set(session_, SSH_OPTIONS_PORT, &port);
    ssh_options_set(session_, SSH_OPTIONS_USER, user.c_str());
    ssh_options_set(session_, SSH_OPTIONS_NODELAY, &yes);
    ssh_options_set(session_, SSH_OPTIONS_STRICTHOSTKEYCHECK, &no);
    ssh_options_set(session_, SSH_OPTIONS_KNOWNHOSTS, "/dev/null");
    ssh_options_set(session_, SSH_OPTIONS_PROCESS_CONFIG, &no);
    if (ssh_connect(session_) != SSH_OK) {
      return ::testing::AssertionFailure() << "connect: " << ssh_get_error(session_);
    }
    ssh_key key = nullptr;
    if (ssh_pki_import_privkey_file(sshd.client_key().c_str(), nullptr, nullptr, nullptr, &key) !=
        SSH_OK) {
      return ::testing::AssertionFailure() << "client key";
    }
    const int auth = ssh_userauth_publickey(session_, nullptr, key);
    ssh_key_free(key);
    if (auth != SSH_AUTH_SUCCESS) {
      return ::testing::AssertionFailure() << "auth: " << ssh_get_error(session_);
    }
    channel_ = ssh_channel_new(session_);
    if (ssh_channel_open_session(channel_) != SSH_OK ||
        ssh_channel_request_subsystem(channel_, "sftp") != SSH_OK) {
      return ::testing::AssertionFailure() << "sftp subsystem: " << ssh_get_error(session_);
    }
    return ::testing::AssertionSuccess();
  }
  void send(const std::string& packet) {
    std::size_t sent = 0;
    while (sent < packet.size()) {
      const int n = ssh_channel_write(channel_, packet.data() + sent,
                                      static_cast<std::uint32_t>(packet.size() - sent));
      ASSERT_GT(n, 0) << ssh_get_error(session_);
      sent += static_cast<std::size_t>(n);
    }
  }
  Result<Reply> receive() {
    for (;;) {
      if (auto p = framer_.next()) {
        if (!p->ok()) return p->error();
        return parse_reply(p->value());
      }
      std::array<std::byte, 64 << 10> buf{};
      const int n = ssh_channel_read(channel_, buf.data(), buf.size(), 0);
      if (n <= 0) return make_error(ErrorCode::kIo, "read", "", ssh_get_error(session_));
      framer_.feed(std::span(buf.data(), static_cast<std::size_t>(n)));
    }
  }
  // One request, its reply.
  Reply call(const std::string& packet) {
    send(packet);
    auto r = receive();
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message());
    return r.ok() ? std::move(r).value() : Reply{};
  }

 private:
  ssh_session session_ = nullptr;
  ssh_channel channel_ = nullptr;
  Framer framer_;
};

class SftpWire : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("xfer_sftpwire_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    sshd_ = std::make_unique<xfer::testing::SshdServer>(dir_ / "sshd");
    ASSERT_TRUE(sshd_->start()) << sshd_->error();
    root_ = dir_ / "files";
    fs::create_directories(root_);
    ASSERT_TRUE(wire_.open(*sshd_));
    wire_.send(init_request());
    auto version = wire_.receive();
    ASSERT_TRUE(version.ok()) << version.error().message();
    ASSERT_EQ(version->type, Type::kVersion);
    EXPECT_EQ(version->version, 3u);
    for (const auto& [name, data] : version->extensions) extensions_.insert(name);
  }
  void TearDown() override {
    sshd_.reset();
    fs::remove_all(dir_);
  }
  std::string path(const std::string& rel) const { return (root_ / rel).string(); }

  fs::path dir_;
  fs::path root_;
  std::unique_ptr<xfer::testing::SshdServer> sshd_;
  Wire wire_;
  std::set<std::string> extensions_;
};

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

// 64 writes of 32 KiB sent before any reply is read, in shuffled order,
// then 64 reads the same way: the file is exactly what was written.
TEST_F(SftpWire, PipelinedWritesAndReadsAtAnyOffset) {
  EXPECT_TRUE(extensions_.count("posix-rename@openssh.com"));
  EXPECT_TRUE(extensions_.count("fsync@openssh.com"));
  constexpr std::size_t kPiece = 32 << 10;
  constexpr std::size_t kPieces = 64;
  const auto data = pattern(kPiece * kPieces + 123, 1);
  Attrs mode;
  mode.permissions = 0640;
  Reply h =
      wire_.call(open_request(1, path("f.bin"), kOpenWrite | kOpenCreate | kOpenTruncate, mode));
  ASSERT_EQ(h.type, Type::kHandle) << static_cast<int>(h.type) << " " << h.message;
  const std::string handle = h.bytes;
  std::vector<std::size_t> order(kPieces + 1);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937(7));
  std::uint32_t id = 100;
  std::set<std::uint32_t> waiting;
  for (const std::size_t piece : order) {
    const std::size_t at = piece * kPiece;
    const std::size_t n = std::min(kPiece, data.size() - at);
    wire_.send(write_request(id, handle, at, std::span(data).subspan(at, n)));
    waiting.insert(id++);
  }
  while (!waiting.empty()) {
    auto r = wire_.receive();
    ASSERT_TRUE(r.ok()) << r.error().message();
    ASSERT_EQ(r->type, Type::kStatus);
    EXPECT_EQ(r->status, Status::kOk) << r->message;
    EXPECT_EQ(waiting.erase(r->id), 1u) << "a reply to no request in flight";
  }
  EXPECT_EQ(wire_.call(fsync_request(id++, handle)).status, Status::kOk);
  EXPECT_EQ(wire_.call(close_request(id++, handle)).status, Status::kOk);
  {
    std::ifstream f(root_ / "f.bin", std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    const std::string got = s.str();
    ASSERT_EQ(got.size(), data.size());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), reinterpret_cast<const char*>(data.data())));
  }
  EXPECT_EQ(fs::status(root_ / "f.bin").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);

  Reply rh = wire_.call(open_request(id++, path("f.bin"), kOpenRead, {}));
  ASSERT_EQ(rh.type, Type::kHandle);
  std::map<std::uint32_t, std::size_t> reads;  // id -> offset
  for (const std::size_t piece : order) {
    wire_.send(read_request(id, rh.bytes, piece * kPiece, kPiece));
    reads[id++] = piece * kPiece;
  }
  std::vector<std::byte> back(data.size());
  while (!reads.empty()) {
    auto r = wire_.receive();
    ASSERT_TRUE(r.ok()) << r.error().message();
    auto it = reads.find(r->id);
    ASSERT_NE(it, reads.end());
    ASSERT_EQ(r->type, Type::kData) << r->message;
    ASSERT_LE(it->second + r->bytes.size(), back.size());
    std::memcpy(back.data() + it->second, r->bytes.data(), r->bytes.size());
    reads.erase(it);
  }
  EXPECT_TRUE(back == data);
  // Past the end: EOF.
  Reply eof = wire_.call(read_request(id++, rh.bytes, data.size() + 10, 10));
  EXPECT_EQ(eof.type, Type::kStatus);
  EXPECT_EQ(eof.status, Status::kEof);
  EXPECT_EQ(wire_.call(close_request(id++, rh.bytes)).status, Status::kOk);
}

// The namespace calls the backend needs, with OpenSSH's extensions.
TEST_F(SftpWire, NamespaceCalls) {
  std::uint32_t id = 1;
  Attrs dir_mode;
  dir_mode.permissions = 0750;
  EXPECT_EQ(wire_.call(mkdir_request(id++, path("d"), dir_mode)).status, Status::kOk);
  { std::ofstream(root_ / "d" / "a.txt") << "alpha"; }
  { std::ofstream(root_ / "d" / "b.txt") << "b"; }
  // STAT / LSTAT with times set by SETSTAT.
  Attrs times;
  times.atime = 1'600'000'000;
  times.mtime = 1'600'000'123;
  times.permissions = 0600;
  EXPECT_EQ(wire_.call(setstat_request(id++, path("d/a.txt"), times)).status, Status::kOk);
  Reply st = wire_.call(path_request(Type::kLstat, id++, path("d/a.txt")));
  ASSERT_EQ(st.type, Type::kAttrs);
  EXPECT_EQ(st.attrs.size, 5u);
  EXPECT_EQ(st.attrs.mtime, 1'600'000'123u);
  EXPECT_EQ(*st.attrs.permissions & 07777u, 0600u);
  // A missing file: NO_SUCH_FILE, which the backend reads as kNotFound.
  Reply missing = wire_.call(path_request(Type::kStat, id++, path("d/nope")));
  ASSERT_EQ(missing.type, Type::kStatus);
  EXPECT_EQ(status_error(missing, "stat", "d/nope").code, ErrorCode::kNotFound);
  // READDIR until EOF.
  Reply dh = wire_.call(path_request(Type::kOpendir, id++, path("d")));
  ASSERT_EQ(dh.type, Type::kHandle);
  std::set<std::string> names;
  for (;;) {
    Reply r = wire_.call(handle_request(Type::kReaddir, id++, dh.bytes));
    if (r.type == Type::kStatus) {
      EXPECT_EQ(r.status, Status::kEof);
      break;
    }
    ASSERT_EQ(r.type, Type::kName);
    for (auto& e : r.names) names.insert(e.name);
  }
  EXPECT_EQ(names, (std::set<std::string>{".", "..", "a.txt", "b.txt"}));
  EXPECT_EQ(wire_.call(close_request(id++, dh.bytes)).status, Status::kOk);
  // Plain RENAME refuses an existing target; posix-rename replaces it.
  Reply plain = wire_.call(rename_request(id++, path("d/b.txt"), path("d/a.txt")));
  EXPECT_NE(plain.status, Status::kOk);
  EXPECT_EQ(wire_.call(posix_rename_request(id++, path("d/b.txt"), path("d/a.txt"))).status,
            Status::kOk);
  std::ifstream a(root_ / "d" / "a.txt");
  std::string content;
  a >> content;
  EXPECT_EQ(content, "b");
  // A symlink, read back.
  EXPECT_EQ(wire_.call(symlink_request(id++, path("d/link"), "a.txt")).status, Status::kOk);
  EXPECT_EQ(fs::read_symlink(root_ / "d" / "link"), "a.txt");
  Reply rl = wire_.call(path_request(Type::kReadlink, id++, path("d/link")));
  ASSERT_EQ(rl.type, Type::kName);
  ASSERT_EQ(rl.names.size(), 1u);
  EXPECT_EQ(rl.names[0].name, "a.txt");
  // Remove and rmdir.
  EXPECT_EQ(wire_.call(path_request(Type::kRemove, id++, path("d/link"))).status, Status::kOk);
  EXPECT_EQ(wire_.call(path_request(Type::kRemove, id++, path("d/a.txt"))).status, Status::kOk);
  EXPECT_EQ(wire_.call(path_request(Type::kRmdir, id++, path("d"))).status, Status::kOk);
  EXPECT_FALSE(fs::exists(root_ / "d"));
}

}  // namespace
}  // namespace xfer::sftp
