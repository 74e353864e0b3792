// The tests' sshd (sshd.hpp): keys, config, process. One test thread.

#include "sshd.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "common.hpp"

namespace xfer::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

}  // namespace

SshdServer::SshdServer(fs::path dir) : dir_(std::move(dir)) {
  fs::create_directories(dir_);
}

SshdServer::~SshdServer() {
  stop();
}

std::string SshdServer::user() const {
  const passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr ? pw->pw_name : "root";
}

std::string SshdServer::log() const {
  std::ifstream f(dir_ / "sshd.log");
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool SshdServer::start() {
  if (::access("/usr/sbin/sshd", X_OK) != 0) {
    error_ = "sshd is not installed (scripts/setup.sh installs openssh-server)";
    return false;
  }
  const std::string d = dir_.string();
  for (const char* key : {"host_ed25519", "client_ed25519"}) {
    if (fs::exists(dir_ / key)) continue;
    const std::string cmd =
        "ssh-keygen -q -t ed25519 -N '' -f '" + (dir_ / key).string() + "' > /dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      error_ = "ssh-keygen failed";
      return false;
    }
  }
  if (!fs::exists(dir_ / "authorized_keys")) {
    fs::copy_file(dir_ / "client_ed25519.pub", dir_ / "authorized_keys");
  }
  fs::permissions(dir_ / "authorized_keys", fs::perms::owner_read | fs::perms::owner_write);
  // sshd's privilege separation folder; only root can make it, and only
  // root's sshd needs it.
  std::error_code ec;
  fs::create_directories("/run/sshd", ec);
  const bool same_port = port_ != 0;  // restart()
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (!same_port) port_ = free_port();
    {
      std::ofstream f(dir_ / "sshd_config");
      f << "Port " << port_ << "\nListenAddress 127.0.0.1\nHostKey " << d
        << "/host_ed25519\nAuthorizedKeysFile " << d << "/authorized_keys\n"
        << "PidFile " << d << "/sshd.pid\nPermitRootLogin prohibit-password\n"
        << "PasswordAuthentication " << (passwords_ ? "yes" : "no")
        << "\nKbdInteractiveAuthentication no\nUsePAM no\n"
        << "StrictModes no\nSubsystem sftp " << subsystem_ << "\n";
    }
    const std::string config = (dir_ / "sshd_config").string();
    const std::string logfile = (dir_ / "sshd.log").string();
    pid_ = spawn({"/usr/sbin/sshd", "-D", "-f", config, "-E", logfile});
    if (pid_ < 0) {
      error_ = "fork failed";
      return false;
    }
    if (wait_ready(pid_, [&] { return answers(port_); })) {
      std::ifstream pub(host_public_key());
      std::string type, key;
      pub >> type >> key;
      std::ofstream known(known_hosts());
      known << "[127.0.0.1]:" << port_ << " " << type << " " << key << "\n";
      return true;
    }
    stop();
  }
  error_ = "sshd did not start: " + log();
  return false;
}

void SshdServer::stop() {
  stop_child(pid_);
}

void SshdServer::authorize(const fs::path& pub) {
  std::ifstream in(pub);
  std::stringstream key;
  key << in.rdbuf();
  std::ofstream(dir_ / "authorized_keys", std::ios::app) << key.str();
}

void SshdServer::kill9() {
  if (pid_ <= 0) return;
  // The processes below sshd, found by their parent in /proc, deepest
  // last: each session process is sshd's child, its SFTP server the
  // session's.
  std::vector<pid_t> tree{pid_};
  for (std::size_t i = 0; i < tree.size(); ++i) {
    for (const auto& e : fs::directory_iterator("/proc")) {
      const std::string name = e.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream stat(e.path() / "stat");
      std::string line;
      std::getline(stat, line);
      const auto close = line.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 2));
      char state = 0;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid == tree[i]) tree.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  for (const pid_t p : tree) ::kill(p, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

bool SshdServer::restart() {
  stop();
  return start();
}

}  // namespace xfer::testing
