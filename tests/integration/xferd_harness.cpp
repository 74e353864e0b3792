#include "xferd_harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

namespace xfer_it {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

XferdExit exit_from_status(int status) {
  XferdExit e;
  e.was_running = true;
  if (WIFEXITED(status)) {
    e.exited = true;
    e.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    e.signal = WTERMSIG(status);
  }
  return e;
}

// "host:port" -> port, 0 if malformed.
int port_of(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) return 0;
  return std::atoi(address.c_str() + colon + 1);
}

std::string toml_string(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') r += '\\';
    r += c;
  }
  return r + "\"";
}

}  // namespace

std::string xferd_bin() {
  const char* b = std::getenv("XFERD_BIN");
  return b ? std::string(b) : std::string();
}

std::string XferdExit::describe() const {
  std::ostringstream o;
  if (!was_running) return "no xferd process was running";
  if (exited)
    o << "xferd exited with status " << code;
  else
    o << "xferd was killed by signal " << signal;
  if (escalated) o << " (did not stop after SIGTERM: SIGKILLed by the test harness)";
  o << " " << seconds << " s after the signal";
  return o.str();
}

XferdProcess::XferdProcess(std::filesystem::path dir, XferdOptions opt)
    : dir_(std::move(dir)), opt_(std::move(opt)) {
  std::filesystem::create_directories(dir_);
  root_ = dir_ / "root";
  state_ = dir_ / "state";  // beside root, never inside it
  config_ = dir_ / "xferd.toml";
  std::filesystem::create_directories(root_);
  std::filesystem::create_directories(state_);
  ::chmod(root_.c_str(), 0755);
}

XferdProcess::~XferdProcess() {
  try {
    if (pid_ > 0) stop(std::chrono::seconds(10));
  } catch (...) {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
}

void XferdProcess::write_config() const {
  std::ofstream out(config_, std::ios::trunc);
  out << "[server]\n";
  out << "listen = " << toml_string(opt_.host + ":" + std::to_string(control_port_)) << "\n";
  out << "data_listen = [";
  for (std::size_t i = 0; i <= opt_.more_data_hosts.size(); ++i) {
    const std::string& host = i == 0 ? opt_.host : opt_.more_data_hosts[i - 1];
    const int port = i < data_ports_.size() ? data_ports_[i] : 0;
    out << (i ? ", " : "") << toml_string(host + ":" + std::to_string(port));
  }
  out << "]\n";
  out << "root = " << toml_string(root_.string()) << "\n";
  out << "state_dir = " << toml_string(state_.string()) << "\n";
  out << opt_.server_extra;
  out << "\n[auth]\n";
  if (!opt_.secret.empty()) out << "secret = " << toml_string(opt_.secret) << "\n";
  out << "required = " << (opt_.auth_required ? "true" : "false") << "\n";
  if (!opt_.extra_toml.empty()) out << "\n" << opt_.extra_toml << "\n";
  out.close();
  if (!out) throw std::runtime_error("cannot write " + config_.string());
}

bool XferdProcess::reap_nonblocking(int* status) {
  if (pid_ <= 0) return true;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    if (status) *status = st;
    pid_ = -1;
    return true;
  }
  return false;
}

bool XferdProcess::alive() {
  if (pid_ <= 0) return false;
  int st = 0;
  if (reap_nonblocking(&st)) {
    // Keep what happened for a later stop(): it reports this exit.
    reaped_ = exit_from_status(st);
    return false;
  }
  return true;
}

std::string XferdProcess::log() const {
  if (log_path_.empty()) return {};
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

::testing::AssertionResult XferdProcess::start(std::chrono::seconds timeout) {
  if (alive())
    return ::testing::AssertionFailure() << "xferd is already running (pid " << pid_ << ")";
  const std::string bin = xferd_bin();
  if (bin.empty())
    return ::testing::AssertionFailure()
           << "environment variable XFERD_BIN is not set: it must point to the xferd binary "
              "(CTest sets it; by hand: XFERD_BIN=build/apps/xferd/xferd)";
  if (::access(bin.c_str(), X_OK) != 0)
    return ::testing::AssertionFailure()
           << "XFERD_BIN=" << bin << " is not executable: " << std::strerror(errno);
  write_config();
  reaped_ = XferdExit{};
  ++runs_;
  log_path_ = dir_ / ("xferd." + std::to_string(runs_) + ".log");
  int logfd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  if (logfd < 0)
    return ::testing::AssertionFailure() << "open " << log_path_ << ": " << std::strerror(errno);

  std::vector<std::string> args = opt_.command_prefix;
  for (std::string a : {bin, std::string("--config"), config_.string()}) args.push_back(a);
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  // The environment, prepared before fork (the child may only exec).
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    bool replaced = false;
    for (const auto& [k, v] : opt_.env) replaced |= kv.substr(0, kv.find('=')) == k;
    if (!replaced) env_strings.emplace_back(kv);
  }
  for (const auto& [k, v] : opt_.env) env_strings.push_back(k + "=" + v);
  std::vector<char*> cenv;
  for (auto& e : env_strings) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  const rlimit nofile{opt_.rlimit_nofile, opt_.rlimit_nofile};
  const pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(logfd);
    return ::testing::AssertionFailure() << "fork: " << std::strerror(e);
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only. Own process group; dies with the
    // test runner (PDEATHSIG fires when the forking thread exits: start()
    // runs on the test's main thread).
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(logfd, 1);
    ::dup2(logfd, 2);
    if (nofile.rlim_cur > 0) ::setrlimit(RLIMIT_NOFILE, &nofile);
    ::execve(cargv[0], cargv.data(), cenv.data());
    const char msg[] = "harness: execv xferd failed\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ::close(logfd);
  pid_ = pid;

  // Wait for "xferd: listening control=HOST:PORT data=HOST:PORT\n".
  const auto deadline = Clock::now() + timeout;
  const std::string marker = "xferd: listening control=";
  while (true) {
    std::string text = log();
    auto pos = text.find(marker);
    if (pos != std::string::npos) {
      auto eol = text.find('\n', pos);
      if (eol != std::string::npos) {
        std::string line = text.substr(pos, eol - pos);
        auto c0 = pos + marker.size();
        auto sp = text.find(' ', c0);
        auto d = line.find(" data=");
        if (sp == std::string::npos || d == std::string::npos) {
          kill9();
          return ::testing::AssertionFailure() << "cannot parse xferd's ready line: " << line;
        }
        control_ = text.substr(c0, sp - c0);
        std::vector<std::string> data;
        std::vector<int> ports;
        for (std::string_view rest = std::string_view(line).substr(d + 6); !rest.empty();) {
          const auto comma = rest.find(',');
          data.emplace_back(rest.substr(0, comma));
          ports.push_back(port_of(data.back()));
          rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        }
        const int cp = port_of(control_);
        if (cp <= 0 || data.size() != opt_.more_data_hosts.size() + 1 ||
            std::any_of(ports.begin(), ports.end(), [](int p) { return p <= 0; })) {
          kill9();
          return ::testing::AssertionFailure() << "bad ports in xferd's ready line: " << line;
        }
        if ((control_port_ != 0 && cp != control_port_) ||
            (!data_ports_.empty() && ports != data_ports_)) {
          kill9();
          return ::testing::AssertionFailure()
                 << "xferd came up on other ports than configured: " << line;
        }
        control_port_ = cp;
        data_ports_ = std::move(ports);
        data_ = std::move(data);
        write_config();  // from now on, the ports it got
        return ::testing::AssertionSuccess() << line;
      }
    }
    int st = 0;
    if (reap_nonblocking(&st)) {
      reaped_ = exit_from_status(st);
      return ::testing::AssertionFailure()
             << "xferd " << describe_status(st) << " before it was ready; its output:\n"
             << log();
    }
    if (Clock::now() >= deadline) {
      kill9();
      return ::testing::AssertionFailure() << "xferd did not print its ready line within "
                                           << timeout.count() << " s; its output:\n"
                                           << log();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

::testing::AssertionResult XferdProcess::restart() {
  stop();
  // The old listeners may take a moment to be released.
  ::testing::AssertionResult r = ::testing::AssertionFailure();
  for (int attempt = 0; attempt < 20; ++attempt) {
    r = start();
    if (r) return r;
    if (log().find("in use") == std::string::npos) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return r;
}

XferdExit XferdProcess::stop(std::chrono::seconds grace) {
  if (pid_ <= 0) return reaped_;
  const auto t0 = Clock::now();
  ::kill(pid_, SIGTERM);
  const auto deadline = t0 + grace;
  int st = 0;
  while (Clock::now() < deadline) {
    if (reap_nonblocking(&st)) {
      XferdExit e = exit_from_status(st);
      e.seconds = seconds_since(t0);
      reaped_ = e;
      return e;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, &st, 0);
  pid_ = -1;
  XferdExit e = exit_from_status(st);
  e.escalated = true;
  e.seconds = seconds_since(t0);
  reaped_ = e;
  return e;
}

XferdExit XferdProcess::kill9() {
  if (pid_ <= 0) return reaped_;
  const auto t0 = Clock::now();
  ::kill(pid_, SIGKILL);
  int st = 0;
  ::waitpid(pid_, &st, 0);
  pid_ = -1;
  XferdExit e = exit_from_status(st);
  e.seconds = seconds_since(t0);
  reaped_ = e;
  return e;
}

std::string XferdProcess::url(std::string_view path) const {
  std::string p(path);
  if (p.empty() || p.front() != '/') p.insert(p.begin(), '/');
  return "xfer://" + control_ + p;
}

std::string XferdProcess::token(const std::string& prefix, bool write, long ttl,
                                const std::string& subject) const {
  std::vector<std::string> args = {xferd_bin(), "token", "--config", config_.string(),
                                   "--prefix",  prefix,  "--ttl",    std::to_string(ttl),
                                   "--subject", subject};
  if (write) args.push_back("--write");
  RunResult r = run(args, std::chrono::seconds(30));
  if (r.exit_code != 0) {
    ADD_FAILURE() << "xferd token failed:\n" << r.describe();
    return {};
  }
  std::string t = r.out;
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  return t;
}

std::vector<std::string> xfer_hidden_files(const std::filesystem::path& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           dir, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.find(".xfer-") != std::string::npos)
      found.push_back(it->path().lexically_relative(dir).string());
  }
  return found;
}

}  // namespace xfer_it
