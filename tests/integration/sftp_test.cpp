// xfer cp to and from a real OpenSSH sshd (tests/servers/sshd.hpp) as a
// user runs it: $HOME points at a folder of the test's with its own
// ~/.ssh (the client key, known_hosts, config), so everything ssh-like is
// read from where a user keeps it. Trees both ways with modes, mtimes and
// symlinks; ~/.ssh/config aliases; host keys changed or unknown; wrong
// keys, passphrases and passwords; sshd killed mid-upload and the re-run
// resuming; and what xfer writes, rclone reads back (and the other way).

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "../servers/common.hpp"
#include "../servers/sshd.hpp"
#include "harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;
using xfer::testing::SshdServer;

std::string S(const fs::path& p) {
  return p.string();
}

std::string seeded(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  return random_bytes(rng, n);
}

void put(const fs::path& p, const std::string& data, std::int64_t mtime, mode_t mode) {
  fs::create_directories(p.parent_path());
  write_file(p, data);
  ::chmod(p.c_str(), mode);
  timespec t[2] = {{mtime, 0}, {mtime, 0}};
  ::utimensat(AT_FDCWD, p.c_str(), t, 0);
}

struct stat lstat_of(const fs::path& p) {
  struct stat st {};
  ::lstat(p.c_str(), &st);
  return st;
}

nlohmann::json summary_of(const RunResult& r) {
  for (const auto& line : split_lines(r.out)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("event", "") == "summary") return j;
  }
  return {};
}

// Every entry below `a` is in `b` with the same type, bytes, link target,
// mode bits (`modes`) and mtime in whole seconds (files only: a folder's
// changes as its entries are written), and nothing else is in `b`.
void expect_same_tree(const fs::path& a, const fs::path& b, bool modes) {
  std::vector<std::string> in_a;
  std::vector<std::string> in_b;
  for (const auto& e : fs::recursive_directory_iterator(a)) {
    in_a.push_back(fs::relative(e.path(), a).string());
  }
  for (const auto& e : fs::recursive_directory_iterator(b)) {
    in_b.push_back(fs::relative(e.path(), b).string());
  }
  std::sort(in_a.begin(), in_a.end());
  std::sort(in_b.begin(), in_b.end());
  ASSERT_EQ(in_a, in_b);
  for (const auto& rel : in_a) {
    SCOPED_TRACE(rel);
    const struct stat sa = lstat_of(a / rel);
    const struct stat sb = lstat_of(b / rel);
    ASSERT_EQ(sa.st_mode & S_IFMT, sb.st_mode & S_IFMT);
    if (S_ISLNK(sa.st_mode)) {
      EXPECT_EQ(fs::read_symlink(a / rel), fs::read_symlink(b / rel));
      continue;
    }
    if (modes) EXPECT_EQ(sa.st_mode & 07777, sb.st_mode & 07777);
    if (S_ISREG(sa.st_mode)) {
      EXPECT_TRUE(files_equal(a / rel, b / rel));
      EXPECT_EQ(sa.st_mtim.tv_sec, sb.st_mtim.tv_sec);
    }
  }
}

class Sftp : public XferTest {
 protected:
  void SetUp() override {
    XferTest::SetUp();
    sshd_ = std::make_unique<SshdServer>(tmp() / "sshd");
    sshd_->allow_passwords(true);
    configure(*sshd_);
    ASSERT_TRUE(sshd_->start()) << sshd_->error();
    home_ = tmp() / "home";
    fs::create_directories(home_ / ".ssh");
    fs::copy_file(sshd_->client_key(), home_ / ".ssh" / "id_ed25519");
    fs::copy_file(sshd_->known_hosts(), home_ / ".ssh" / "known_hosts");
    if (const char* h = std::getenv("HOME")) saved_home_ = h;
    if (const char* a = std::getenv("SSH_AUTH_SOCK")) saved_agent_ = a;
    ::setenv("HOME", home_.c_str(), 1);
    ::unsetenv("SSH_AUTH_SOCK");
    srv_ = tmp() / "srv";
    fs::create_directories(srv_);
  }
  void TearDown() override {
    sshd_.reset();
    if (saved_home_) ::setenv("HOME", saved_home_->c_str(), 1);
    if (saved_agent_) ::setenv("SSH_AUTH_SOCK", saved_agent_->c_str(), 1);
    XferTest::TearDown();
  }
  // Before sshd starts.
  virtual void configure(SshdServer& sshd) { (void)sshd; }
  // sftp://user@127.0.0.1:port/<absolute path on the server>
  std::string url(const fs::path& p) const {
    return "sftp://" + sshd_->user() + "@127.0.0.1:" + std::to_string(sshd_->port()) + S(p);
  }
  std::string known_hosts() const { return read_file(home_ / ".ssh" / "known_hosts"); }
  void kill_mid_copy_then_resume(const std::string& from, const std::string& to,
                                 const fs::path& folder, const std::string& data);

  std::unique_ptr<SshdServer> sshd_;
  fs::path home_;
  fs::path srv_;
  std::optional<std::string> saved_home_;
  std::optional<std::string> saved_agent_;
};

// A tree of small and large files (a 9 MiB one goes in chunks over several
// connections), modes, mtimes, a symlink and an empty folder: up to the
// server and back, the same everywhere.
TEST_F(Sftp, ATreeGoesUpAndComesBackWithModesMtimesAndSymlinks) {
  const fs::path src = tmp() / "src";
  put(src / "empty", "", 1'500'000'000, 0600);
  put(src / "small.txt", "hello\n", 1'500'000'001, 0640);
  put(src / "with space" / "exec.sh", "#!/bin/sh\n", 1'500'000'002, 0755);
  put(src / "big.bin", seeded(9u << 20, 1), 1'500'000'003, 0644);
  put(src / "deep" / "a" / "b" / "c.bin", seeded(300'000, 2), 1'500'000'004, 0600);
  fs::create_directories(src / "hollow");
  fs::create_symlink("small.txt", src / "link");
  auto up = run_xfer({"cp", "-r", S(src), url(srv_ / "tree")});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  expect_same_tree(src, srv_ / "tree", true);

  auto down = run_xfer({"cp", "-r", url(srv_ / "tree"), S(tmp() / "back")});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  expect_same_tree(src, tmp() / "back", true);

  // The namespace commands on the server.
  auto ls = run_xfer({"ls", url(srv_ / "tree")});
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
  EXPECT_NE(ls.out.find("big.bin"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("with space"), std::string::npos) << ls.out;
  EXPECT_EQ(run_xfer({"mkdir", url(srv_ / "tree" / "new" / "dir")}).exit_code, 1)
      << "no parents without -p";
  ASSERT_EQ(run_xfer({"mkdir", "-p", url(srv_ / "tree" / "new" / "dir")}).exit_code, 0);
  EXPECT_TRUE(fs::is_directory(srv_ / "tree" / "new" / "dir"));
  auto mv = run_xfer({"rename", url(srv_ / "tree" / "small.txt"), url(srv_ / "tree" / "s.txt")});
  ASSERT_EQ(mv.exit_code, 0) << mv.describe();
  EXPECT_EQ(read_file(srv_ / "tree" / "s.txt"), "hello\n");
  auto rm = run_xfer({"rm", "-r", url(srv_ / "tree" / "deep")});
  ASSERT_EQ(rm.exit_code, 0) << rm.describe();
  EXPECT_FALSE(fs::exists(srv_ / "tree" / "deep"));
  // No partial or temporary name is left anywhere.
  for (const auto& e : fs::recursive_directory_iterator(srv_)) {
    EXPECT_EQ(e.path().filename().string().find(".xfer-"), std::string::npos) << e.path();
  }
}

// A Host alias of ~/.ssh/config names the address, port, user and key, as
// for ssh; "~" in a URL is the login folder.
TEST_F(Sftp, SshConfigAliasesWorkAsForSsh) {
  fs::rename(home_ / ".ssh" / "id_ed25519", home_ / ".ssh" / "lab_key");
  {
    std::ofstream config(home_ / ".ssh" / "config");
    config << "Host lab\n  HostName 127.0.0.1\n  Port " << sshd_->port() << "\n  User "
           << sshd_->user() << "\n  IdentityFile ~/.ssh/lab_key\n";
  }
  put(tmp() / "f.txt", "via alias\n", 1'600'000'000, 0644);
  auto up = run_xfer({"cp", S(tmp() / "f.txt"), "sftp://lab" + S(srv_ / "f.txt")});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_EQ(read_file(srv_ / "f.txt"), "via alias\n");
  // The login folder of the test's user is its real home, not $HOME:
  // stat it through "~" and compare with what the server says it is.
  auto st = run_xfer({"stat", "--json", "sftp://lab/~/"});
  EXPECT_EQ(st.exit_code, 0) << st.describe();
}

// A server whose host key is not the one known_hosts holds is refused
// before anything is sent, even with --ssh-accept-new, in ssh's words.
TEST_F(Sftp, AChangedHostKeyIsRefused) {
  const fs::path other = tmp() / "other";
  ASSERT_EQ(std::system(("ssh-keygen -q -t ed25519 -N '' -f " + S(other) + " >/dev/null").c_str()),
            0);
  std::string type;
  std::string key;
  std::ifstream(S(other) + ".pub") >> type >> key;
  write_file(home_ / ".ssh" / "known_hosts",
             "[127.0.0.1]:" + std::to_string(sshd_->port()) + " " + type + " " + key + "\n");
  put(tmp() / "f.txt", "x\n", 1'600'000'000, 0644);
  for (const bool accept_new : {false, true}) {
    std::vector<std::string> args = {"cp", S(tmp() / "f.txt"), url(srv_ / "f.txt")};
    if (accept_new) args.insert(args.begin(), "--ssh-accept-new");
    auto r = run_xfer(args);
    EXPECT_EQ(r.exit_code, 1) << r.describe();
    EXPECT_NE(r.err.find("REMOTE HOST IDENTIFICATION HAS CHANGED"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("ssh-keygen -R"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(srv_ / "f.txt"));
  }
  EXPECT_EQ(known_hosts().find(read_file(sshd_->host_public_key()).substr(12, 40)),
            std::string::npos)
      << "the server's key was not recorded";
}

// An unknown server: refused with its fingerprint and what to do; with
// --ssh-accept-new it is recorded, and the next run needs no flag.
TEST_F(Sftp, AnUnknownHostNeedsAcceptNew) {
  write_file(home_ / ".ssh" / "known_hosts", "");
  put(tmp() / "f.txt", "x\n", 1'600'000'000, 0644);
  auto refused = run_xfer({"cp", S(tmp() / "f.txt"), url(srv_ / "f.txt")});
  EXPECT_EQ(refused.exit_code, 1) << refused.describe();
  EXPECT_NE(refused.err.find("authenticity of host"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("SHA256:"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--ssh-accept-new"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(srv_ / "f.txt"));
  auto accepted = run_xfer({"--ssh-accept-new", "cp", S(tmp() / "f.txt"), url(srv_ / "f.txt")});
  ASSERT_EQ(accepted.exit_code, 0) << accepted.describe();
  EXPECT_NE(known_hosts().find("[127.0.0.1]:" + std::to_string(sshd_->port())), std::string::npos)
      << known_hosts();
  fs::remove(srv_ / "f.txt");
  auto again = run_xfer({"cp", S(tmp() / "f.txt"), url(srv_ / "f.txt")});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(read_file(srv_ / "f.txt"), "x\n");
}

// Wrong credentials: a key the server does not know, a wrong password, a
// key file without its passphrase. Each: exit 1, one clear line, nothing
// written. The right passphrase from a remote logs in.
TEST_F(Sftp, WrongKeysPasswordsAndPassphrasesAreClearErrors) {
  put(tmp() / "f.txt", "x\n", 1'600'000'000, 0644);
  const fs::path stranger = home_ / ".ssh" / "id_ed25519";
  fs::remove(stranger);
  fs::remove(S(stranger) + ".pub");
  ASSERT_EQ(
      std::system(("ssh-keygen -q -t ed25519 -N '' -f " + S(stranger) + " >/dev/null").c_str()), 0);
  auto wrong_key = run_xfer({"cp", S(tmp() / "f.txt"), url(srv_ / "f.txt")});
  EXPECT_EQ(wrong_key.exit_code, 1) << wrong_key.describe();
  EXPECT_NE(wrong_key.err.find("permission denied"), std::string::npos) << wrong_key.err;
  EXPECT_EQ(split_lines(wrong_key.err).size(), 1u) << wrong_key.err;

  const std::string port = std::to_string(sshd_->port());
  auto add = run_xfer({"remote", "add", "pw", "sftp", "host=127.0.0.1", "port=" + port,
                       "user=" + sshd_->user(), "password=not-the-password"});
  ASSERT_EQ(add.exit_code, 0) << add.describe();
  auto wrong_password = run_xfer({"cp", S(tmp() / "f.txt"), "pw:" + S(srv_ / "f.txt")});
  EXPECT_EQ(wrong_password.exit_code, 1) << wrong_password.describe();
  EXPECT_NE(wrong_password.err.find("permission denied"), std::string::npos) << wrong_password.err;
  EXPECT_NE(wrong_password.err.find("password"), std::string::npos) << wrong_password.err;

  const fs::path locked = tmp() / "locked_key";
  ASSERT_EQ(
      std::system(
          ("ssh-keygen -q -t ed25519 -N 'open sesame' -f " + S(locked) + " >/dev/null").c_str()),
      0);
  sshd_->authorize(S(locked) + ".pub");
  auto add_locked = run_xfer({"remote", "add", "locked", "sftp", "host=127.0.0.1", "port=" + port,
                              "user=" + sshd_->user(), "key_file=" + S(locked)});
  ASSERT_EQ(add_locked.exit_code, 0) << add_locked.describe();
  auto no_passphrase = run_xfer({"cp", S(tmp() / "f.txt"), "locked:" + S(srv_ / "f.txt")});
  EXPECT_EQ(no_passphrase.exit_code, 1) << no_passphrase.describe();
  EXPECT_NE(no_passphrase.err.find("passphrase"), std::string::npos) << no_passphrase.err;
  EXPECT_FALSE(fs::exists(srv_ / "f.txt"));

  auto add_opened =
      run_xfer({"remote", "add", "opened", "sftp", "host=127.0.0.1", "port=" + port,
                "user=" + sshd_->user(), "key_file=" + S(locked), "key_passphrase=open sesame"});
  ASSERT_EQ(add_opened.exit_code, 0) << add_opened.describe();
  auto with_passphrase = run_xfer({"cp", S(tmp() / "f.txt"), "opened:" + S(srv_ / "f.txt")});
  ASSERT_EQ(with_passphrase.exit_code, 0) << with_passphrase.describe();
  EXPECT_EQ(read_file(srv_ / "f.txt"), "x\n");
}

// The key only in ssh-agent (a real one, started here): the login goes
// through $SSH_AUTH_SOCK, as ssh's does.
TEST_F(Sftp, SshAgentLogsIn) {
  fs::remove(home_ / ".ssh" / "id_ed25519");
  const fs::path sock = tmp() / "agent.sock";
  pid_t agent = xfer::testing::spawn({"/usr/bin/ssh-agent", "-D", "-a", S(sock)});
  ASSERT_GT(agent, 0);
  ASSERT_TRUE(xfer::testing::wait_ready(agent, [&] { return fs::exists(sock); }));
  ::setenv("SSH_AUTH_SOCK", sock.c_str(), 1);
  auto add = run({"ssh-add", S(sshd_->client_key())});
  EXPECT_EQ(add.exit_code, 0) << add.describe();
  put(tmp() / "f.txt", "via the agent\n", 1'600'000'000, 0644);
  auto up = run_xfer({"cp", S(tmp() / "f.txt"), url(srv_ / "f.txt")});
  ::unsetenv("SSH_AUTH_SOCK");
  xfer::testing::stop_child(agent);
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_EQ(read_file(srv_ / "f.txt"), "via the agent\n");
  // Without the agent nothing else has the key: refused.
  auto without = run_xfer({"cp", S(tmp() / "f.txt"), url(srv_ / "g.txt")});
  EXPECT_EQ(without.exit_code, 1) << without.describe();
  EXPECT_NE(without.err.find("permission denied"), std::string::npos) << without.err;
}

// `data` copied from `from` to `to` (a file in `folder`) with sshd and its
// sessions killed once 30 MiB have reached `folder`: the run fails and
// publishes nothing; the same command once sshd is back sends only what
// is missing (at most a 4 MiB chunk per connection again, 8 at most), and
// leaves no partial behind.
void Sftp::kill_mid_copy_then_resume(const std::string& from, const std::string& to,
                                     const fs::path& folder, const std::string& data) {
  const fs::path dst = folder / "big.bin";
  const std::vector<std::string> args = {"cp",           "--json", "--bwlimit", "24M",
                                         "--chunk-size", "4M",     from,        to};
  std::atomic<bool> killed{false};
  auto first = run_xfer_signal_when(
      args, 0,
      [&](pid_t) {
        std::uint64_t partial = 0;
        for (const auto& e : fs::directory_iterator(folder)) partial += allocated_bytes(e.path());
        if (!killed.load() && partial > (30u << 20)) {
          sshd_->kill9();
          killed.store(true);
        }
        return false;
      },
      nullptr, 120s);
  ASSERT_TRUE(killed.load()) << first.result.describe();
  EXPECT_NE(first.result.exit_code, 0) << first.result.describe();
  EXPECT_FALSE(fs::exists(dst));
  ASSERT_TRUE(sshd_->restart()) << sshd_->error();
  auto again = run_xfer(args);
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_TRUE(read_file(dst) == data);
  const auto s = summary_of(again);
  const std::uint64_t resumed = s.value("bytes_resumed", 0ull);
  const std::uint64_t moved = s.value("bytes", 0ull);
  std::cerr << "resumed " << resumed << " of " << data.size() << ", sent " << moved << "\n";
  EXPECT_GE(resumed, 24ull << 20) << again.out;
  EXPECT_LE(moved, data.size() - resumed + (32ull << 20)) << again.out;
  for (const auto& e : fs::directory_iterator(folder)) {
    EXPECT_EQ(e.path().filename(), "big.bin") << "a partial was left: " << e.path();
  }
}

// The partial is on the server.
TEST_F(Sftp, AServerKilledMidUploadIsResumedByTheRerun) {
  const std::string data = seeded(96u << 20, 6);
  fs::create_directories(tmp() / "src");
  put(tmp() / "src" / "big.bin", data, 1'600'000'000, 0644);
  kill_mid_copy_then_resume(S(tmp() / "src" / "big.bin"), url(srv_ / "big.bin"), srv_, data);
}

// The partial is local, and the re-run reads only the rest from the
// server.
TEST_F(Sftp, AServerKilledMidDownloadIsResumedByTheRerun) {
  const std::string data = seeded(96u << 20, 7);
  put(srv_ / "big.bin", data, 1'600'000'000, 0644);
  fs::create_directories(tmp() / "dst");
  kill_mid_copy_then_resume(url(srv_ / "big.bin"), S(tmp() / "dst" / "big.bin"), tmp() / "dst",
                            data);
}

// What xfer uploads, rclone downloads the same (bytes and mtimes), and
// what rclone uploads, xfer downloads the same. rclone keeps no modes over
// SFTP, so modes are compared on xfer's side only.
TEST_F(Sftp, RcloneReadsWhatXferWritesAndTheOtherWay) {
  if (::access("/usr/bin/rclone", X_OK) != 0) {
    FAIL() << "rclone is not installed (scripts/setup.sh installs it)";
  }
  const fs::path src = tmp() / "src";
  put(src / "a.txt", "alpha\n", 1'500'000'000, 0644);
  put(src / "sub" / "b.bin", seeded(5u << 20, 3), 1'500'000'100, 0644);
  put(src / "sub" / "deeper" / "c.bin", seeded(70'000, 4), 1'500'000'200, 0644);
  auto up = run_xfer({"cp", "-r", S(src), url(srv_ / "by-xfer")});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  const std::vector<std::string> rclone_flags = {"--config",
                                                 "/dev/null",
                                                 "--sftp-host",
                                                 "127.0.0.1",
                                                 "--sftp-port",
                                                 std::to_string(sshd_->port()),
                                                 "--sftp-user",
                                                 sshd_->user(),
                                                 "--sftp-key-file",
                                                 S(sshd_->client_key()),
                                                 "--sftp-known-hosts-file",
                                                 S(sshd_->known_hosts())};
  auto rclone = [&](const std::string& from, const std::string& to) {
    std::vector<std::string> argv = {"rclone", "copy", from, to};
    argv.insert(argv.end(), rclone_flags.begin(), rclone_flags.end());
    return run(argv);
  };
  auto down = rclone(":sftp:" + S(srv_ / "by-xfer"), S(tmp() / "by-rclone"));
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  expect_same_tree(src, tmp() / "by-rclone", false);

  auto rup = rclone(S(src), ":sftp:" + S(srv_ / "by-rclone"));
  ASSERT_EQ(rup.exit_code, 0) << rup.describe();
  auto xdown = run_xfer({"cp", "-r", url(srv_ / "by-rclone"), S(tmp() / "back")});
  ASSERT_EQ(xdown.exit_code, 0) << xdown.describe();
  expect_same_tree(src, tmp() / "back", false);
  expect_same_tree(srv_ / "by-rclone", tmp() / "back", true);
}

// A hostile SFTP server behind a real SSH login: sshd runs
// tests/servers/hostile_sftp.py as its sftp subsystem, and what it does
// wrong depends on the path. Each: a clear error (or a right copy, for
// the stderr flood), in bounded time, nothing under the final name.
class HostileSftp : public Sftp {
 protected:
  void configure(SshdServer& sshd) override {
    sshd.set_sftp_subsystem(std::string("/usr/bin/python3 ") + XFER_SOURCE_DIR +
                            "/tests/servers/hostile_sftp.py");
  }
  // Runs xfer with `args`; it must fail with exit 1 within 60 s, saying
  // `says`.
  void expect_refused(const std::vector<std::string>& args, const std::string& says) {
    auto r = run_xfer(args, 60s);
    EXPECT_FALSE(r.timed_out) << r.describe();
    EXPECT_EQ(r.exit_code, 1) << r.describe();
    EXPECT_NE(r.err.find(says), std::string::npos) << r.describe();
  }
};

TEST_F(HostileSftp, ListingsThatNeverEndOrNameEscapesAreRefused) {
  expect_refused({"ls", url("/loopdir")}, "never ends");
  expect_refused({"ls", url("/dotsdir")}, "never ends");
  expect_refused({"ls", url("/badname")}, "invalid name listed by the server");
  expect_refused({"cp", "-r", url("/badname"), S(tmp() / "got")}, "invalid name");
  EXPECT_FALSE(fs::exists(tmp() / "escaped"));
  expect_refused({"rm", "-r", url("/deep")}, "more than 256 folders deep");
}

TEST_F(HostileSftp, BadReadRepliesFailTheFileAndPublishNothing) {
  expect_refused({"cp", url("/short.bin"), S(tmp() / "short.bin")}, "a few bytes at a time");
  expect_refused({"cp", url("/long.bin"), S(tmp() / "long.bin")}, "bytes for a read of");
  expect_refused({"cp", url("/wrongid.bin"), S(tmp() / "wrongid.bin")}, "not in flight");
  for (const char* name : {"short.bin", "long.bin", "wrongid.bin"}) {
    EXPECT_FALSE(fs::exists(tmp() / name)) << name;
  }
  for (const auto& e : fs::directory_iterator(tmp())) {
    EXPECT_EQ(e.path().filename().string().find(".xfer-"), std::string::npos) << e.path();
  }
}

// Writes acknowledged twice under one id (and the others never): the
// upload fails; it never reports a write the server did not confirm.
TEST_F(HostileSftp, WritesAcknowledgedTwiceFailTheUpload) {
  write_file(tmp() / "up.bin", seeded(1u << 20, 9));
  expect_refused({"cp", S(tmp() / "up.bin"), url("/up/up.bin")}, "not in flight");
}

// 64 MiB on the channel's stderr before the data: thrown away as it
// comes, so the copy is right and xfer stays small.
TEST_F(HostileSftp, AStderrFloodIsDrained) {
  auto r = run_xfer({"cp", url("/noisy.bin"), S(tmp() / "noisy.bin")}, 60s);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(read_file(tmp() / "noisy.bin"), std::string(64u << 10, 'x'));
  EXPECT_LT(r.peak_rss_kib, 48 * 1024) << "peak RSS " << r.peak_rss_kib << " KiB";
}

}  // namespace
}  // namespace xfer_it
