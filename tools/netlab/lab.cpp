// Lab life cycle (lab.hpp): iproute2 and ethtool run as child processes (one
// well-kept tool each instead of hand-written netlink), setns(2) for running
// inside a host, a Unix socket for the emulator's control.

#include "lab.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <queue>
#include <sstream>
#include <thread>

#include "emulator.hpp"

namespace netlab {
namespace fs = std::filesystem;
namespace {

xfer::Error lab_error(std::string_view op, std::string_view what, std::string_view why) {
  return xfer::make_error(xfer::ErrorCode::kInvalidArgument, op, what, why);
}

// Runs argv (no shell) in namespace `ns` ("" = ours), waits, and returns its
// stderr in the error when it fails.
xfer::Status run(const std::vector<std::string>& argv, const std::string& ns = {}) {
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return xfer::errno_error(errno, "pipe", argv[0]);
  const pid_t pid = fork();
  if (pid < 0) return xfer::errno_error(errno, "fork", argv[0]);
  if (pid == 0) {
    dup2(err_pipe[1], 2);
    const int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    if (!ns.empty()) {
      const int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        dprintf(2, "setns %s: %s", ns.c_str(), strerror(errno));
        _exit(126);
      }
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    dprintf(2, "exec %s: %s", args[0], strerror(errno));
    _exit(127);
  }
  close(err_pipe[1]);
  std::string err;
  char buf[4096];
  for (ssize_t n; (n = read(err_pipe[0], buf, sizeof buf)) > 0;) {
    if (err.size() < 16384) err.append(buf, static_cast<std::size_t>(n));
  }
  close(err_pipe[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  std::string cmd;
  for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  return xfer::make_error(xfer::ErrorCode::kIo, "run", cmd,
                          err.empty() ? fmt::format("exit status {}", status) : err);
}

// Writes one sysctl inside namespace `ns` (a child joins it: /proc/sys/net
// shows the namespace of whoever opens it).
xfer::Status write_sysctl(const std::string& ns, const std::string& key, const std::string& value) {
  std::string path = "/proc/sys/" + key;
  for (std::size_t i = 10; i < path.size(); ++i) {
    if (path[i] == '.') path[i] = '/';
  }
  const pid_t pid = fork();
  if (pid < 0) return xfer::errno_error(errno, "fork", key);
  if (pid == 0) {
    const int nsfd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) _exit(2);
    const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) _exit(errno == ENOENT ? 3 : 4);
    _exit(write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size()) ? 0 : 5);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return lab_error("sysctl", fmt::format("{}={} in {}", key, value, ns),
                   code == 3   ? "no such key"
                   : code == 5 ? "the kernel refused the value"
                               : "cannot write");
}

// A namespace other than the first may only choose a congestion control
// that the first namespace allows: add it there (appending, never removing).
xfer::Status allow_congestion_control(const std::string& name) {
  const std::string path = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";
  std::ifstream in(path);
  std::string allowed;
  std::getline(in, allowed);
  std::istringstream words(allowed);
  for (std::string w; words >> w;) {
    if (w == name) return {};
  }
  std::ofstream out(path);
  out << allowed << " " << name;
  out.close();
  if (!out)
    return lab_error("sysctl", "net.ipv4.tcp_allowed_congestion_control",
                     fmt::format("cannot allow '{}' (is the module there?)", name));
  return {};
}

std::vector<std::string> namespaces_with_prefix(const std::string& prefix) {
  std::vector<std::string> out;
  if (DIR* d = opendir("/run/netns")) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.rfind(prefix, 0) == 0) out.push_back(n);
    }
    closedir(d);
  }
  return out;
}

// Processes in namespace `ns`, other than us.
std::vector<pid_t> pids_in_namespace(const std::string& ns) {
  std::vector<pid_t> out;
  struct stat want {};
  if (stat(("/run/netns/" + ns).c_str(), &want) != 0) return out;
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      char* end = nullptr;
      const long pid = std::strtol(e->d_name, &end, 10);
      if (*end != '\0' || pid <= 0 || pid == getpid()) continue;
      struct stat have {};
      if (stat(fmt::format("/proc/{}/ns/net", pid).c_str(), &have) == 0 &&
          have.st_ino == want.st_ino && have.st_dev == want.st_dev) {
        out.push_back(static_cast<pid_t>(pid));
      }
    }
    closedir(d);
  }
  return out;
}

bool alive(pid_t pid) {
  return kill(pid, 0) == 0 || errno == EPERM;
}

// SIGTERM, up to `grace`, then SIGKILL, for each pid.
void stop_pids(const std::vector<pid_t>& pids, std::chrono::milliseconds grace) {
  for (pid_t p : pids) kill(p, SIGTERM);
  const auto until = std::chrono::steady_clock::now() + grace;
  for (pid_t p : pids) {
    while (alive(p) && std::chrono::steady_clock::now() < until) {
      waitpid(p, nullptr, WNOHANG);  // reaps it if it is ours
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (alive(p)) kill(p, SIGKILL);
  }
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

xfer::Status write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return xfer::errno_error(errno, "write", path);
  return {};
}

// The emulator PID of a lab's state folder, when that process is still the
// emulator of this folder (a recycled PID is never signalled).
std::optional<pid_t> emulator_pid(const std::string& dir) {
  const std::string text = read_text(dir + "/emulator.pid");
  char* end = nullptr;
  const long pid = std::strtol(text.c_str(), &end, 10);
  if (pid <= 0) return std::nullopt;
  std::string cmdline = read_text(fmt::format("/proc/{}/cmdline", pid));
  for (char& c : cmdline) {
    if (c == '\0') c = ' ';
  }
  if (cmdline.find(" emulate --state " + dir) == std::string::npos) return std::nullopt;
  return static_cast<pid_t>(pid);
}

// Routes: every host reaches every link's subnet along a shortest path of
// links (breadth first, in file order, so the first of parallel links wins).
xfer::Status add_routes(const Topology& t) {
  for (const Host& from : t.hosts) {
    // first_link[host] = index of the link leaving `from` on the way there.
    std::map<std::string, int> first_link;
    std::map<std::string, int> hops;
    std::queue<std::string> q;
    hops[from.name] = 0;
    q.push(from.name);
    while (!q.empty()) {
      const std::string h = q.front();
      q.pop();
      for (std::size_t i = 0; i < t.links.size(); ++i) {
        const Link& l = t.links[i];
        for (int k = 0; k < 2; ++k) {
          if (l.hosts[k] != h || hops.count(l.hosts[1 - k]) != 0) continue;
          const std::string next = l.hosts[1 - k];
          hops[next] = hops[h] + 1;
          first_link[next] = h == from.name ? static_cast<int>(i) : first_link[h];
          q.push(next);
        }
      }
    }
    for (const Link& l : t.links) {
      if (l.hosts[0] == from.name || l.hosts[1] == from.name) continue;  // on-link
      // Towards the nearer end of the link.
      std::string target;
      for (const auto& h : l.hosts) {
        if (hops.count(h) != 0 && (target.empty() || hops[h] < hops[target])) target = h;
      }
      if (target.empty()) continue;  // not connected
      const Link& via = t.links[static_cast<std::size_t>(first_link[target])];
      const int far = via.hosts[0] == from.name ? 1 : 0;
      XFER_TRY(run({"ip", "-n", t.host_ns(from.name), "route", "add", l.subnet_text(), "via",
                    via.address(far)}));
    }
  }
  return {};
}

xfer::Status build(const Topology& t) {
  std::vector<std::string> all = {t.switch_ns()};
  for (const Host& h : t.hosts) all.push_back(t.host_ns(h.name));
  for (const auto& ns : all) {
    XFER_TRY(run({"ip", "netns", "add", ns}));
    XFER_TRY(run({"ip", "-n", ns, "link", "set", "lo", "up"}));
    // Quiet links: no IPv6 router solicitations or MLD in the counters.
    XFER_TRY(write_sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1"));
    XFER_TRY(write_sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1"));
  }
  for (const Host& h : t.hosts)
    XFER_TRY(write_sysctl(t.host_ns(h.name), "net.ipv4.ip_forward", "1"));
  for (std::size_t i = 0; i < t.links.size(); ++i) {
    const Link& l = t.links[i];
    for (int k = 0; k < 2; ++k) {
      const std::string host_ns = t.host_ns(l.hosts[k]);
      const std::string sw_if = switch_ifname(static_cast<int>(i), k);
      XFER_TRY(run({"ip", "link", "add", l.name, "netns", host_ns, "mtu", std::to_string(l.mtu),
                    "type", "veth", "peer", "name", sw_if, "netns", t.switch_ns(), "mtu",
                    std::to_string(l.mtu)}));
      // Real frames on the wire: no segmentation offloads (a 64 KiB TSO
      // frame would cross the emulator as one), checksums computed before
      // the frame leaves the host (the emulator copies frames as bytes and
      // a partial checksum would arrive broken), no GRO at the switch.
      XFER_TRY(run({"ethtool", "-K", l.name, "tx", "off", "tso", "off", "gso", "off", "gro", "off"},
                   host_ns));
      XFER_TRY(run({"ethtool", "-K", sw_if, "tx", "off", "tso", "off", "gso", "off", "gro", "off"},
                   t.switch_ns()));
      XFER_TRY(run({"ip", "-n", host_ns, "addr", "add", l.address(k) + "/24", "dev", l.name}));
      XFER_TRY(run({"ip", "-n", host_ns, "link", "set", l.name, "up"}));
      XFER_TRY(run({"ip", "-n", t.switch_ns(), "link", "set", sw_if, "up"}));
    }
  }
  XFER_TRY(add_routes(t));
  for (const Host& h : t.hosts) {
    for (const auto& [k, v] : h.sysctl) {
      if (k == "net.ipv4.tcp_congestion_control") XFER_TRY(allow_congestion_control(v));
      XFER_TRY(write_sysctl(t.host_ns(h.name), k, v));
    }
  }
  return {};
}

std::string hosts_text(const Topology& t) {
  nlohmann::json hosts = nlohmann::json::object();
  for (const Host& h : t.hosts) {
    nlohmann::json addrs = nlohmann::json::array();
    for (const Link& l : t.links) {
      for (int k = 0; k < 2; ++k) {
        if (l.hosts[k] == h.name) addrs.push_back({{"link", l.name}, {"address", l.address(k)}});
      }
    }
    hosts[h.name] = {{"namespace", t.host_ns(h.name)}, {"addresses", addrs}};
  }
  return nlohmann::json{{"lab", t.name}, {"hosts", hosts}}.dump(2) + "\n";
}

xfer::Result<int> connect_control(const std::string& dir) {
  const std::string path = dir + "/control.sock";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return lab_error("connect", path, "path too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return xfer::errno_error(errno, "socket", path);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    close(fd);
    return xfer::errno_error(e, "connect", path);
  }
  return fd;
}

}  // namespace

std::string state_root() {
  const char* env = std::getenv("NETLAB_STATE_DIR");
  return env != nullptr && *env != '\0' ? env : "/run/netlab";
}

std::string state_dir(const std::string& lab) {
  return state_root() + "/" + lab;
}

std::vector<std::string> labs() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(state_root(), ec)) {
    if (e.is_directory()) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

xfer::Result<std::string> pick_lab(const std::string& explicit_name) {
  std::string name = explicit_name;
  if (name.empty()) {
    if (const char* env = std::getenv("NETLAB_LAB"); env != nullptr) name = env;
  }
  if (!name.empty()) {
    XFER_TRY(check_name("lab", name, 16));
    if (!fs::exists(state_dir(name))) return lab_error("lab", name, "is not up (netlab list)");
    return name;
  }
  const auto all = labs();
  if (all.size() == 1) return all[0];
  if (all.empty()) return lab_error("lab", "", "no lab is up (netlab up TOPOLOGY.toml)");
  std::string names;
  for (const auto& n : all) names += (names.empty() ? "" : ", ") + n;
  return lab_error("lab", "", fmt::format("several labs are up ({}): name one with --lab", names));
}

xfer::Status lab_up(const Topology& t, const std::string& topology_text,
                    const std::string& self_exe) {
  const std::string dir = state_dir(t.name);
  if (fs::exists(dir)) {
    if (emulator_pid(dir)) {
      return lab_error("up", t.name, "is already up (netlab down " + t.name + " first)");
    }
    XFER_TRY(lab_down(t.name));  // left behind by a crash
  }
  for (const auto& ns : namespaces_with_prefix(t.ns_prefix()))
    XFER_TRY(run({"ip", "netns", "del", ns}));
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return xfer::errno_error(ec.value(), "mkdir", dir);
  chmod(dir.c_str(), 0700);
  auto fail = [&](xfer::Error e) -> xfer::Status {
    (void)lab_down(t.name);
    return e;
  };
  if (auto st = write_text(dir + "/topology.toml", topology_text); !st.ok())
    return fail(st.error());
  if (auto st = write_text(dir + "/hosts.json", hosts_text(t)); !st.ok()) return fail(st.error());
  if (auto st = build(t); !st.ok()) return fail(st.error());

  const pid_t pid = fork();
  if (pid < 0) return fail(xfer::errno_error(errno, "fork", "emulator"));
  if (pid == 0) {
    setsid();
    const int nsfd = open(("/run/netns/" + t.switch_ns()).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) _exit(126);
    const int log = open((dir + "/emulator.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    const int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(log, 1);
    dup2(log, 2);
    // Nothing else of the caller's (a test harness's pipes) stays open.
    close_range(3, ~0U, 0);
    execl(self_exe.c_str(), "netlab", "emulate", "--state", dir.c_str(), nullptr);
    _exit(127);
  }
  if (auto st = write_text(dir + "/emulator.pid", std::to_string(pid) + "\n"); !st.ok()) {
    kill(pid, SIGKILL);
    return fail(st.error());
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    if (control_request(t.name, "ping").ok()) return {};
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      const std::string log = read_text(dir + "/emulator.log");
      return fail(lab_error("up", t.name, "the emulator exited: " + log));
    }
    if (std::chrono::steady_clock::now() > until) {
      kill(pid, SIGKILL);
      return fail(lab_error("up", t.name, "the emulator did not answer within 10 s"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

xfer::Status lab_down(const std::string& lab) {
  XFER_TRY(check_name("lab", lab, 16));
  const std::string dir = state_dir(lab);
  if (auto pid = emulator_pid(dir)) stop_pids({*pid}, std::chrono::seconds(3));
  const std::string prefix = "xnl-" + lab + "-";
  xfer::Status result;
  for (const auto& ns : namespaces_with_prefix(prefix)) {
    stop_pids(pids_in_namespace(ns), std::chrono::seconds(3));
    if (auto st = run({"ip", "netns", "del", ns}); !st.ok() && result.ok()) result = st;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return result;
}

xfer::Status lab_down_all() {
  xfer::Status result;
  for (const auto& lab : labs()) {
    if (auto st = lab_down(lab); !st.ok() && result.ok()) result = st;
  }
  for (const auto& ns : namespaces_with_prefix("xnl-")) {
    stop_pids(pids_in_namespace(ns), std::chrono::seconds(3));
    if (auto st = run({"ip", "netns", "del", ns}); !st.ok() && result.ok()) result = st;
  }
  return result;
}

xfer::Status lab_exec(const std::string& lab, const std::string& host,
                      const std::vector<std::string>& argv) {
  XFER_TRY(check_name("host", host, 12));
  if (argv.empty()) return lab_error("exec", host, "no command given (netlab exec HOST -- CMD…)");
  const std::string ns = "xnl-" + lab + "-" + host;
  const int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return lab_error("exec", host, fmt::format("no host '{}' in lab {}", host, lab));
  if (setns(fd, CLONE_NEWNET) != 0) return xfer::errno_error(errno, "setns", ns);
  close(fd);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  return xfer::errno_error(errno, "exec", argv[0]);
}

xfer::Result<std::string> control_request(const std::string& lab, const std::string& line) {
  XFER_ASSIGN_OR_RETURN(const int fd, connect_control(state_dir(lab)));
  const std::string msg = line + "\n";
  if (write(fd, msg.data(), msg.size()) != static_cast<ssize_t>(msg.size())) {
    close(fd);
    return xfer::errno_error(errno, "write", "control socket");
  }
  shutdown(fd, SHUT_WR);
  std::string reply;
  char buf[8192];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;)
    reply.append(buf, static_cast<std::size_t>(n));
  close(fd);
  if (reply.rfind("ok\n", 0) == 0) return reply.substr(3);
  if (reply.rfind("error: ", 0) == 0) {
    while (!reply.empty() && reply.back() == '\n') reply.pop_back();
    return lab_error("netlab", lab, reply.substr(7));
  }
  return lab_error("netlab", lab, "the emulator gave no answer");
}

xfer::Result<std::string> hosts_json(const std::string& lab) {
  const std::string text = read_text(state_dir(lab) + "/hosts.json");
  if (text.empty()) return lab_error("hosts", lab, "is not up");
  return text;
}

// ------------------------------------------------------------ the emulator

namespace {

// One control request: "ping", "stats", or "set LINK [from=HOST] key=value…".
std::string handle(const std::string& line, const Topology& t,
                   std::vector<std::unique_ptr<LinkEmulator>>& links) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  if (words.empty()) return "error: empty request\n";
  if (words[0] == "ping") return "ok\n";
  if (words[0] == "stats") {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                       static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    nlohmann::json out = {
        {"lab", t.name}, {"cpu_seconds", cpu}, {"links", nlohmann::json::array()}};
    for (auto& l : links) out["links"].push_back(l->stats());
    return "ok\n" + out.dump() + "\n";
  }
  if (words[0] == "set") {
    if (words.size() < 3) return "error: set LINK key=value…\n";
    const int index = t.link_index(words[1]);
    if (index < 0) return fmt::format("error: no link '{}'\n", words[1]);
    std::optional<int> side;
    std::vector<std::pair<std::string, std::string>> kv;
    for (std::size_t i = 2; i < words.size(); ++i) {
      const auto eq = words[i].find('=');
      if (eq == std::string::npos) return fmt::format("error: '{}' is not key=value\n", words[i]);
      std::string key = words[i].substr(0, eq);
      std::string value = words[i].substr(eq + 1);
      if (key == "from") {
        const Link& l = t.links[static_cast<std::size_t>(index)];
        if (value != l.hosts[0] && value != l.hosts[1]) {
          return fmt::format("error: link {} joins {} and {}, not {}\n", l.name, l.hosts[0],
                             l.hosts[1], value);
        }
        side = value == l.hosts[0] ? 0 : 1;
        continue;
      }
      kv.emplace_back(std::move(key), std::move(value));
    }
    auto st = links[static_cast<std::size_t>(index)]->set(side, kv);
    if (!st.ok()) return "error: " + st.error().message() + "\n";
    return "ok\n";
  }
  return fmt::format("error: unknown request '{}' (ping, stats, set)\n", words[0]);
}

// Reads one request line (at most 64 KiB, within 2 s) and answers it.
void serve_one(int fd, const Topology& t, std::vector<std::unique_ptr<LinkEmulator>>& links) {
  std::string line;
  char buf[4096];
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (line.find('\n') == std::string::npos && line.size() < 65536) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) return;
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    line.append(buf, static_cast<std::size_t>(n));
  }
  line = line.substr(0, line.find('\n'));
  const std::string reply = handle(line, t, links);
  (void)!write(fd, reply.data(), reply.size());
}

}  // namespace

int emulate_main(const std::string& dir) {
  auto topo = load_topology(dir + "/topology.toml");
  if (!topo.ok()) {
    fmt::print(stderr, "netlab emulate: {}\n", topo.error().message());
    return 2;
  }
  const Topology& t = *topo;
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);  // before the link threads start: they inherit it
  const int sfd = signalfd(-1, &mask, SFD_CLOEXEC);

  std::vector<std::unique_ptr<LinkEmulator>> links;
  for (std::size_t i = 0; i < t.links.size(); ++i) {
    // Each link direction has its own stream of random numbers.
    auto l = LinkEmulator::open(t.links[i], static_cast<int>(i), t.seed * 1000 + i);
    if (!l.ok()) {
      fmt::print(stderr, "netlab emulate: {}\n", l.error().message());
      return 2;
    }
    links.push_back(std::move(*l));
  }
  const std::string path = dir + "/control.sock";
  unlink(path.c_str());
  const int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  umask(077);
  if (lfd < 0 || bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(lfd, 16) != 0) {
    fmt::print(stderr, "netlab emulate: control socket {}: {}\n", path, strerror(errno));
    return 2;
  }
  for (auto& l : links) l->start();
  fmt::print(stderr, "netlab emulate: lab {} with {} links, ttl {} s\n", t.name, links.size(),
             t.ttl_ns / 1'000'000'000);

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(t.ttl_ns);
  bool expired = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      expired = true;
      break;
    }
    pollfd p[2] = {{lfd, POLLIN, 0}, {sfd, POLLIN, 0}};
    const int timeout = static_cast<int>(std::min<std::int64_t>(left.count(), 1000));
    if (poll(p, 2, timeout) < 0) continue;
    if ((p[1].revents & POLLIN) != 0) break;
    if ((p[0].revents & POLLIN) != 0) {
      const int cfd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (cfd >= 0) {
        serve_one(cfd, t, links);
        close(cfd);
      }
    }
  }
  for (auto& l : links) l->stop();
  close(lfd);
  unlink(path.c_str());
  if (expired) {
    // Bounded in time: past its ttl the lab removes itself.
    fmt::print(stderr, "netlab emulate: ttl reached, taking lab {} down\n", t.name);
    unlink((dir + "/emulator.pid").c_str());
    (void)lab_down(t.name);
  }
  return 0;
}

}  // namespace netlab
