// Reads and checks xferd's TOML configuration (config.hpp) and owns the
// [limits] table kLimitKeys. Called once at start-up (and by `xferd token`);
// no shared state.

#include "xfer/server/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string_view>

#include "xfer/core/files.hpp"
#include "xfer/core/url.hpp"

namespace xfer::server {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kOp = "config";

// Every table and key the file may contain; anything else is an error.
struct Section {
  std::string_view name;
  std::initializer_list<std::string_view> keys;
};
const Section kSections[] = {
    {"server", {"listen", "data_listen", "root", "state_dir", "user", "allow_special_bits"}},
    {"tls", {"cert", "key"}},
    {"auth", {"secret", "secret_file", "required"}},
    {"limits", {}},  // kLimitKeys
    {"data", {"encrypt"}},
    {"jobs", {"peers", "tls_ca"}},
};

// A secret file holds one line; anything bigger is not a secret file.
constexpr std::size_t kMaxSecretFileSize = 64 * 1024;

// Reports errors as "config <origin>: [line N: ]<detail>".
class Reader {
 public:
  explicit Reader(const std::string& origin) : origin_(origin) {}

  Error error(std::string detail, const toml::node* at = nullptr) const {
    if (at != nullptr && at->source().begin.line > 0) {
      detail = fmt::format("line {}: {}", at->source().begin.line, detail);
    }
    return make_error(ErrorCode::kInvalidArgument, kOp, origin_, detail);
  }

  Result<std::optional<std::string>> string(const toml::table* t, std::string_view section,
                                            std::string_view key) const {
    const toml::node* n = t ? t->get(key) : nullptr;
    if (n == nullptr) return std::optional<std::string>{};
    if (!n->is_string()) return error(fmt::format("{}.{} must be a string", section, key), n);
    std::string v = *n->value<std::string>();
    if (v.empty()) return error(fmt::format("{}.{} must not be empty", section, key), n);
    return std::optional<std::string>{std::move(v)};
  }

  Result<std::optional<bool>> boolean(const toml::table* t, std::string_view section,
                                      std::string_view key) const {
    const toml::node* n = t ? t->get(key) : nullptr;
    if (n == nullptr) return std::optional<bool>{};
    if (!n->is_boolean()) {
      return error(fmt::format("{}.{} must be true or false", section, key), n);
    }
    return std::optional<bool>{*n->value<bool>()};
  }

  // An integer in [lo, hi] into `out`; `out` keeps its default when absent.
  Status uint(const toml::table* t, std::string_view section, std::string_view key, unsigned lo,
              unsigned hi, unsigned& out) const {
    const toml::node* n = t ? t->get(key) : nullptr;
    if (n == nullptr) return ok_status();
    auto v = n->value<std::int64_t>();
    if (!n->is_integer() || !v || *v < static_cast<std::int64_t>(lo) ||
        *v > static_cast<std::int64_t>(hi)) {
      return error(fmt::format("{}.{} must be an integer in {}..{}", section, key, lo, hi), n);
    }
    out = static_cast<unsigned>(*v);
    return ok_status();
  }

 private:
  const std::string& origin_;
};

std::string errno_text(int err) {
  return std::strerror(err);
}

// Whole file into memory, at most `limit` bytes (errno-style failures).
bool is_hostname(std::string_view host) {
  if (host.empty() || host.size() > 253 || host.front() == '-' || host.front() == '.') {
    return false;
  }
  return std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
  });
}

// "host:port", "1.2.3.4:port" or "[v6]:port", port 0..65535 (0 = any free
// port). Returns the reason when the address is not acceptable.
std::optional<std::string> check_listen_address(std::string_view addr) {
  std::string_view host;
  std::string_view port;
  if (addr.starts_with('[')) {
    std::size_t close = addr.find(']');
    if (close == std::string_view::npos || close + 1 >= addr.size() || addr[close + 1] != ':') {
      return "expected [v6-address]:port";
    }
    host = addr.substr(1, close - 1);
    port = addr.substr(close + 2);
    in6_addr a6{};
    if (::inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1) {
      return fmt::format("\"{}\" is not an IPv6 address", host);
    }
  } else {
    std::size_t colon = addr.rfind(':');
    if (colon == std::string_view::npos) return "expected host:port";
    host = addr.substr(0, colon);
    port = addr.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return "IPv6 addresses need brackets, as in [::1]:7400";
    }
    if (host.empty()) return "the host is missing (use 0.0.0.0 or [::] for all addresses)";
    bool numeric = std::all_of(host.begin(), host.end(),
                               [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
    in_addr a4{};
    if (numeric ? ::inet_pton(AF_INET, std::string(host).c_str(), &a4) != 1 : !is_hostname(host)) {
      return fmt::format("\"{}\" is not a host name or IPv4 address", host);
    }
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoul(std::string(port)) > 65535) {
    return fmt::format("\"{}\" is not a port number (0..65535)", port);
  }
  return std::nullopt;
}

// $XDG_STATE_HOME/xferd, else ~/.local/state/xferd, else /var/lib/xferd (no
// home at all: a system service). Deliberately outside the served root:
// clients must not read or change checkpoints.
std::string default_state_dir() {
  const std::string home = xdg_state_home();
  return home.empty() ? "/var/lib/xferd" : home + "/xferd";
}

}  // namespace

Result<ServerConfig> parse_server_config(std::string_view toml_text, const std::string& origin) {
  Reader rd(origin);
  toml::table doc;
  try {
    doc = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    return make_error(ErrorCode::kInvalidArgument, kOp, origin,
                      fmt::format("line {}: {}", e.source().begin.line, e.description()));
  }

  // Unknown tables and keys first: a typo must not silently fall back to a
  // default (say "requried = true").
  for (auto&& [name, node] : doc) {
    const Section* sec = nullptr;
    for (const Section& s : kSections) {
      if (s.name == name.str()) sec = &s;
    }
    if (sec == nullptr) {
      return rd.error(node.is_table() ? fmt::format("unknown table [{}]", name.str())
                                      : fmt::format("unknown key {}", name.str()),
                      &node);
    }
    const toml::table* t = node.as_table();
    if (t == nullptr)
      return rd.error(fmt::format("{} must be a table ([{}])", sec->name, sec->name), &node);
    for (auto&& [key, value] : *t) {
      bool known = std::find(sec->keys.begin(), sec->keys.end(), key.str()) != sec->keys.end();
      if (sec->name == "limits") {
        for (std::size_t i = 0; i < kLimitKeyCount; ++i) known |= key.str() == kLimitKeys[i].name;
      }
      if (!known) {
        return rd.error(fmt::format("unknown key {}.{}", sec->name, key.str()), &value);
      }
    }
  }
  const toml::table* server = doc["server"].as_table();
  const toml::table* tls = doc["tls"].as_table();
  const toml::table* auth = doc["auth"].as_table();
  const toml::table* limits = doc["limits"].as_table();
  const toml::table* data = doc["data"].as_table();

  ServerConfig cfg;

  // [server]
  XFER_ASSIGN_OR_RETURN(auto listen, rd.string(server, "server", "listen"));
  if (listen) cfg.listen = *listen;
  if (auto why = check_listen_address(cfg.listen)) {
    return rd.error(fmt::format("server.listen \"{}\": {}", cfg.listen, *why),
                    server ? server->get("listen") : nullptr);
  }
  // data_listen: one "host:port" or a list of them (one per NIC).
  if (const toml::node* dl = server ? server->get("data_listen") : nullptr) {
    constexpr const char* kWant =
        "server.data_listen must be \"host:port\" or a list of 1 to 16 of them";
    cfg.data_listen.clear();
    if (auto one = dl->value<std::string>(); dl->is_string() && one) {
      cfg.data_listen.push_back(*one);
    } else if (const toml::array* list = dl->as_array()) {
      if (list->empty() || list->size() > kMaxDataListeners) return rd.error(kWant, dl);
      for (const auto& item : *list) {
        auto v = item.value<std::string>();
        if (!item.is_string() || !v) return rd.error(kWant, &item);
        cfg.data_listen.push_back(*v);
      }
    } else {
      return rd.error(kWant, dl);
    }
  }
  for (std::size_t i = 0; i < cfg.data_listen.size(); ++i) {
    const std::string& a = cfg.data_listen[i];
    if (auto why = check_listen_address(a)) {
      return rd.error(fmt::format("server.data_listen \"{}\": {}", a, *why),
                      server ? server->get("data_listen") : nullptr);
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (cfg.data_listen[j] == a && !a.ends_with(":0")) {
        return rd.error(fmt::format("server.data_listen \"{}\" is listed twice", a),
                        server->get("data_listen"));
      }
    }
  }
  XFER_ASSIGN_OR_RETURN(auto root, rd.string(server, "server", "root"));
  if (!root) return rd.error("server.root is required");
  {
    std::unique_ptr<char, decltype(&std::free)> real(::realpath(root->c_str(), nullptr),
                                                     &std::free);
    if (!real) {
      return rd.error(fmt::format("server.root {}: {}", *root, errno_text(errno)),
                      server->get("root"));
    }
    struct stat st {};
    if (::stat(real.get(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return rd.error(fmt::format("server.root {}: not a directory", *root), server->get("root"));
    }
    cfg.root = real.get();
  }
  XFER_ASSIGN_OR_RETURN(auto state_dir, rd.string(server, "server", "state_dir"));
  cfg.state_dir = state_dir ? *state_dir : default_state_dir();
  {
    // It may not exist yet (xferd creates it); compare what it would be.
    std::error_code ec;
    fs::path p = fs::weakly_canonical(fs::absolute(cfg.state_dir), ec);
    if (!ec) cfg.state_dir = p.string();
    if (cfg.root != "/" && path_within(cfg.state_dir, cfg.root)) {
      return rd.error(
          fmt::format("server.state_dir {}{} is inside server.root: clients could read it",
                      cfg.state_dir, state_dir ? "" : " (the default)"),
          server ? server->get("state_dir") : nullptr);
    }
  }

  // [tls]
  XFER_ASSIGN_OR_RETURN(auto cert, rd.string(tls, "tls", "cert"));
  XFER_ASSIGN_OR_RETURN(auto key, rd.string(tls, "tls", "key"));
  if (cert.has_value() != key.has_value()) {
    return rd.error("tls.cert and tls.key must be given together", tls);
  }
  if (cert) {
    for (auto [name, file] : {std::pair{"tls.cert", &*cert}, std::pair{"tls.key", &*key}}) {
      int fd = ::open(file->c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return rd.error(fmt::format("{} {}: {}", name, *file, errno_text(errno)), tls);
      ::close(fd);
    }
    cfg.tls_cert = *cert;
    cfg.tls_key = *key;
  }

  // [auth]
  XFER_ASSIGN_OR_RETURN(auto secret, rd.string(auth, "auth", "secret"));
  XFER_ASSIGN_OR_RETURN(auto secret_file, rd.string(auth, "auth", "secret_file"));
  XFER_ASSIGN_OR_RETURN(auto required, rd.boolean(auth, "auth", "required"));
  if (secret && secret_file) {
    return rd.error("auth.secret and auth.secret_file are mutually exclusive", auth);
  }
  if (secret) cfg.secret = *secret;
  if (secret_file) {
    auto text = read_small_file(*secret_file, kMaxSecretFileSize);
    if (!text.ok()) {
      return rd.error(fmt::format("auth.secret_file: {}", text.error().message()),
                      auth->get("secret_file"));
    }
    std::string_view s = *text;
    constexpr std::string_view kSpace = " \t\r\n\f\v";
    std::size_t b = s.find_first_not_of(kSpace);
    s = b == std::string_view::npos ? std::string_view{} : s.substr(b);
    s = s.substr(0, s.find_last_not_of(kSpace) + 1);
    if (s.empty()) {
      return rd.error(fmt::format("auth.secret_file {} is empty", *secret_file),
                      auth->get("secret_file"));
    }
    cfg.secret = std::string(s);
  }
  if (required) cfg.auth_required = *required;
  if (cfg.auth_required && cfg.secret.empty()) {
    return rd.error(
        "auth.required is true (the default) but neither auth.secret nor "
        "auth.secret_file is set",
        auth);
  }

  if (!cfg.secret.empty() && cfg.secret.size() < kMinSecretBytes) {
    return rd.error(fmt::format("the auth secret is {} bytes; at least {} are required "
                                "(openssl rand -hex 32)",
                                cfg.secret.size(), kMinSecretBytes),
                    auth);
  }

  // [limits]
  for (std::size_t i = 0; i < kLimitKeyCount; ++i) {
    const LimitKey& k = kLimitKeys[i];
    XFER_TRY(rd.uint(limits, "limits", k.name, k.lo, k.hi, cfg.*k.member));
  }
  if (cfg.max_sessions_per_subject > cfg.max_sessions) {
    cfg.max_sessions_per_subject = cfg.max_sessions;
  }
  if (cfg.max_jobs_per_subject > cfg.max_jobs) cfg.max_jobs_per_subject = cfg.max_jobs;
  if (cfg.max_watches_per_subject > cfg.max_watches) {
    cfg.max_watches_per_subject = cfg.max_watches;
  }
  if (cfg.max_change_watches_per_subject > cfg.max_change_watches) {
    cfg.max_change_watches_per_subject = cfg.max_change_watches;
  }
  if (cfg.max_checksums_per_subject > cfg.max_checksums) {
    cfg.max_checksums_per_subject = cfg.max_checksums;
  }

  // [server] user, allow_special_bits
  XFER_ASSIGN_OR_RETURN(auto user, rd.string(server, "server", "user"));
  if (user) cfg.user = *user;
  XFER_ASSIGN_OR_RETURN(auto special, rd.boolean(server, "server", "allow_special_bits"));
  if (special) cfg.allow_special_bits = *special;

  // [jobs]
  const toml::table* jobs = doc["jobs"].as_table();
  if (const toml::node* peers = jobs ? jobs->get("peers") : nullptr) {
    const toml::array* list = peers->as_array();
    if (list == nullptr) return rd.error("jobs.peers must be an array of \"host:port\"", peers);
    for (const auto& item : *list) {
      auto v = item.value<std::string>();
      if (!item.is_string() || !v || v->empty()) {
        return rd.error("jobs.peers must be an array of \"host:port\"", &item);
      }
      if (auto why = check_listen_address(*v)) {
        return rd.error(fmt::format("jobs.peers \"{}\": {}", *v, *why), &item);
      }
      cfg.job_peers.push_back(*v);
    }
  }
  XFER_ASSIGN_OR_RETURN(auto tls_ca, rd.string(jobs, "jobs", "tls_ca"));
  if (tls_ca) {
    int fd = ::open(tls_ca->c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return rd.error(fmt::format("jobs.tls_ca {}: {}", *tls_ca, errno_text(errno)),
                      jobs->get("tls_ca"));
    }
    ::close(fd);
    cfg.job_tls_ca = *tls_ca;
  }

  // [data]
  XFER_ASSIGN_OR_RETURN(auto encrypt, rd.string(data, "data", "encrypt"));
  if (encrypt) {
    if (*encrypt == "auto") {
      cfg.encrypt = EncryptPolicy::kAuto;
    } else if (*encrypt == "always") {
      cfg.encrypt = EncryptPolicy::kAlways;
    } else if (*encrypt == "never") {
      cfg.encrypt = EncryptPolicy::kNever;
    } else {
      return rd.error(
          fmt::format("data.encrypt must be \"auto\", \"always\" or \"never\", not \"{}\"",
                      *encrypt),
          data->get("encrypt"));
    }
  }
  return cfg;
}

Result<ServerConfig> load_server_config(const std::string& path) {
  auto text = read_small_file(path, 1024 * 1024);
  if (!text.ok()) {
    Error e = std::move(text).error();
    e.operation = std::string(kOp);
    return e;
  }
  return parse_server_config(*text, path);
}

const LimitKey kLimitKeys[] = {
    {"max_sessions", &ServerConfig::max_sessions, 1, 65536, "data sessions in total"},
    {"max_sessions_per_subject", &ServerConfig::max_sessions_per_subject, 1, 65536,
     "data sessions of one token subject"},
    {"max_streams_per_session", &ServerConfig::max_streams_per_session, 1, 1024,
     "data connections granted to one session"},
    {"max_handles_per_session", &ServerConfig::max_handles_per_session, 1, 65536,
     "files open at once in one session"},
    {"max_open_files_per_subject", &ServerConfig::max_open_files_per_subject, 1, 1 << 20,
     "files open at once in all the sessions of one token subject"},
    {"session_idle_seconds", &ServerConfig::session_idle_seconds, 5, 7 * 24 * 3600,
     "a session without connections is closed after this"},
    {"max_connections", &ServerConfig::max_connections, 1, 1 << 20, "data connections in total"},
    {"max_connections_per_address", &ServerConfig::max_connections_per_address, 1, 1 << 20,
     "data connections from one address"},
    {"max_unauthenticated", &ServerConfig::max_unauthenticated, 1, 1 << 20,
     "data connections still in their handshake"},
    {"max_unauthenticated_per_address", &ServerConfig::max_unauthenticated_per_address, 1, 1 << 20,
     "handshaking data connections from one address"},
    {"handshake_seconds", &ServerConfig::handshake_seconds, 1, 300,
     "the whole data handshake, from accept to HelloOk"},
    {"connection_buffer_kib", &ServerConfig::connection_buffer_kib, 64, 65536,
     "largest frame a data connection buffers whole (KiB)"},
    {"socket_buffer_kib", &ServerConfig::socket_buffer_kib, 256, 262144,
     "kernel socket buffers of a data connection, each way, on long paths (KiB)"},
    {"max_jobs", &ServerConfig::max_jobs, 1, 1024, "server-run jobs running at once"},
    {"max_jobs_per_subject", &ServerConfig::max_jobs_per_subject, 1, 1024,
     "running jobs of one token subject"},
    {"max_watches", &ServerConfig::max_watches, 1, 1024,
     "WatchJob streams open at once (each holds a gRPC thread)"},
    {"max_watches_per_subject", &ServerConfig::max_watches_per_subject, 1, 1024,
     "WatchJob streams of one token subject"},
    {"max_checksums", &ServerConfig::max_checksums, 1, 1024,
     "Checksum calls hashing a file at once (each holds a gRPC thread and reads a file)"},
    {"max_checksums_per_subject", &ServerConfig::max_checksums_per_subject, 1, 1024,
     "Checksum calls of one token subject at once"},
    {"max_change_watches", &ServerConfig::max_change_watches, 1, 100,
     "WatchChanges streams open at once (each holds a gRPC thread, a watcher thread and an "
     "inotify instance)"},
    {"max_change_watches_per_subject", &ServerConfig::max_change_watches_per_subject, 1, 100,
     "WatchChanges streams of one token subject"},
    {"max_watched_folders", &ServerConfig::max_watched_folders, 1, 1 << 20,
     "folders one WatchChanges stream watches (about 1 KiB of kernel memory each); beyond, the "
     "client is told to rescan"},
    {"max_watched_folders_total", &ServerConfig::max_watched_folders_total, 1, 1 << 22,
     "folders all WatchChanges streams watch together (each an inotify watch of the server's "
     "user: keep it under fs.inotify.max_user_watches)"},
    {"job_retention_seconds", &ServerConfig::job_retention_seconds, 0, 30 * 24 * 3600,
     "a finished job is forgotten after this"},
    {"max_finished_jobs", &ServerConfig::max_finished_jobs, 0, 65536,
     "finished jobs remembered at most (the oldest go first)"},
    {"max_grpc_connections_idle_seconds", &ServerConfig::max_grpc_connections_idle_seconds, 1,
     7 * 24 * 3600, "an idle control connection is closed after this"},
    {"log_refusals_per_minute", &ServerConfig::log_refusals_per_minute, 0, 1 << 20,
     "audit lines for refused requests (the rest are counted)"},
};
const std::size_t kLimitKeyCount = sizeof(kLimitKeys) / sizeof(kLimitKeys[0]);

}  // namespace xfer::server
