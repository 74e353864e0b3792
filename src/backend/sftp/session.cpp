// SSH connections and their pool (session.hpp): libssh for the session,
// the host key and the login; SFTP on the channel is protocol.hpp's.
// A Connection is driven by one thread at a time (its Lease holder);
// the Pool's state is under its mutex; shut()/cancel() from any thread.

#include "backend/sftp/session.hpp"

#include <fmt/format.h>
#include <libssh/libssh.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"

namespace xfer::sftp {
namespace {

using Clock = std::chrono::steady_clock;

// The channel's read size: libssh grows its receive window to the count a
// read asks for, and a larger window is what carries a long path.
constexpr std::uint32_t kReadChunk = 1u << 20;

std::string key_type_name(ssh_key key) {
  const std::string t = ssh_key_type_to_char(ssh_key_type(key));
  if (t.find("ed25519") != std::string::npos) return "ED25519";
  if (t.find("ecdsa") != std::string::npos) return "ECDSA";
  if (t.find("rsa") != std::string::npos) return "RSA";
  return t;
}

// "SHA256:..." of the server's host key, and its type in ssh's words.
std::pair<std::string, std::string> server_fingerprint(ssh_session s) {
  ssh_key key = nullptr;
  if (ssh_get_server_publickey(s, &key) != SSH_OK) return {"?", "?"};
  unsigned char* hash = nullptr;
  std::size_t len = 0;
  std::string fp = "?";
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &len) == SSH_OK) {
    if (char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, len)) {
      fp = text;
      ssh_string_free_char(text);
    }
    ssh_clean_pubkey_hash(&hash);
  }
  std::string type = key_type_name(key);
  ssh_key_free(key);
  return {type, fp};
}

// ssh's name for the host in known_hosts: "host", or "[host]:port".
std::string known_hosts_name(const std::string& host, int port) {
  return port == 22 ? host : fmt::format("[{}]:{}", host, port);
}

std::string shorten_home(const std::string& path, const std::string& home) {
  if (!home.empty() && path.rfind(home + "/", 0) == 0) return "~" + path.substr(home.size());
  return path;
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return !path.empty() && std::filesystem::exists(path, ec);
}

}  // namespace

// ---- Connection

Connection::~Connection() {
  if (channel_ != nullptr) {
    if (!broken_.load()) ssh_channel_close(channel_);
    ssh_channel_free(channel_);
  }
  if (session_ != nullptr) {
    if (!broken_.load()) ssh_disconnect(session_);
    ssh_free(session_);
  }
}

void Connection::shut() {
  broken_.store(true);
  const int fd = fd_.load();
  if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
}

Error Connection::transport_error(std::string_view op) {
  broken_.store(true);
  return make_error(
      ErrorCode::kUnavailable, op, shown_,
      fmt::format("the SSH connection failed: {}", printable_name(ssh_get_error(session_), 200)),
      RetryClass::kRetryCall);
}

Result<std::unique_ptr<Connection>> Connection::open(const Target& t, std::uint64_t serial) {
  std::unique_ptr<Connection> c(new Connection());
  c->serial_ = serial;
  c->buf_.resize(kReadChunk);
  ssh_session s = ssh_new();
  if (s == nullptr) return make_error(ErrorCode::kInternal, "ssh", t.alias, "ssh_new failed");
  c->session_ = s;
  const int no = 0;
  const int yes = 1;
  const std::string ssh_dir = t.home.empty() ? std::string() : t.home + "/.ssh";
  ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &no);  // parsed below, from `home`
  ssh_options_set(s, SSH_OPTIONS_HOST, t.alias.c_str());
  if (t.port != 0) ssh_options_set(s, SSH_OPTIONS_PORT, &t.port);
  if (!t.user.empty()) ssh_options_set(s, SSH_OPTIONS_USER, t.user.c_str());
  if (!ssh_dir.empty()) ssh_options_set(s, SSH_OPTIONS_SSH_DIR, ssh_dir.c_str());
  const std::string known = !t.known_hosts.empty()
                                ? t.known_hosts
                                : (ssh_dir.empty() ? "/dev/null" : ssh_dir + "/known_hosts");
  ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, known.c_str());
  ssh_options_set(s, SSH_OPTIONS_IDENTITY_AGENT, t.agent.c_str());
  // AES-GCM first: with AES instructions (every x86 and ARM server CPU of
  // the last decade) it costs both ends a fraction of chacha20-poly1305,
  // OpenSSH's first choice, and a loopback or LAN copy is bound by that
  // cost (docs/sftp.md, "Connections and speed"). A Ciphers line of the
  // user's config replaces this list.
  const char* ciphers =
      "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
      "aes128-ctr,aes256-ctr";
  ssh_options_set(s, SSH_OPTIONS_CIPHERS_C_S, ciphers);
  ssh_options_set(s, SSH_OPTIONS_CIPHERS_S_C, ciphers);
  if (t.ambient) {
    // ssh's own reading of the config: the user's first, then the system's
    // (the first value of each setting wins, as in ssh).
    if (file_exists(ssh_dir + "/config")) {
      ssh_options_parse_config(s, (ssh_dir + "/config").c_str());
    }
    if (file_exists("/etc/ssh/ssh_config")) ssh_options_parse_config(s, "/etc/ssh/ssh_config");
  }
  // What the URL or the remote said wins over the config (as ssh's -p and
  // -l do).
  if (t.port != 0) ssh_options_set(s, SSH_OPTIONS_PORT, &t.port);
  if (!t.user.empty()) ssh_options_set(s, SSH_OPTIONS_USER, t.user.c_str());
  // A remote that names its host overrides what the alias resolves to.
  if (!t.host.empty() && t.host != t.alias) ssh_options_set(s, SSH_OPTIONS_HOST, t.host.c_str());
  ssh_options_set(s, SSH_OPTIONS_NODELAY, &yes);
  const long connect_timeout = 30;
  ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &connect_timeout);

  char* host_c = nullptr;
  std::string host = t.alias;
  if (ssh_options_get(s, SSH_OPTIONS_HOST, &host_c) == SSH_OK && host_c != nullptr) {
    host = host_c;
    ssh_string_free_char(host_c);
  }
  unsigned int port = 22;
  ssh_options_get_port(s, &port);
  char* user_c = nullptr;
  std::string user = t.user;
  if (ssh_options_get(s, SSH_OPTIONS_USER, &user_c) == SSH_OK && user_c != nullptr) {
    user = user_c;
    ssh_string_free_char(user_c);
  }
  const std::string where = host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                                                : fmt::format("{}:{}", host, port);
  c->shown_ = fmt::format("{}@{}", user, where);

  const auto t0 = Clock::now();
  if (ssh_connect(s) != SSH_OK) {
    const std::string said = ssh_get_error(s);
    c->broken_.store(true);
    if (said.find("resolve") != std::string::npos) {
      return make_error(ErrorCode::kUnavailable, "connect", c->shown_,
                        fmt::format("cannot resolve the host name '{}' (is it spelt right?)",
                                    printable_name(host, 100)),
                        RetryClass::kRetryCall);
    }
    if (said.find("refused") != std::string::npos) {
      return make_error(ErrorCode::kUnavailable, "connect", c->shown_,
                        fmt::format("nothing listens on {} (is the SSH server running there, on "
                                    "that port?)",
                                    where),
                        RetryClass::kRetryCall);
    }
    return make_error(ErrorCode::kUnavailable, "connect", c->shown_,
                      fmt::format("cannot connect: {}", printable_name(said, 200)),
                      RetryClass::kRetryCall);
  }
  c->handshake_ms_ = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  c->fd_.store(ssh_get_fd(s));

  // The host key, as ssh checks it.
  const std::string named = known_hosts_name(host, static_cast<int>(port));
  const std::string known_shown = shorten_home(known, t.home);
  switch (ssh_session_is_known_server(s)) {
    case SSH_KNOWN_HOSTS_OK:
      break;
    case SSH_KNOWN_HOSTS_CHANGED: {
      const auto [type, fp] = server_fingerprint(s);
      c->broken_.store(true);
      return make_error(
          ErrorCode::kPermission, "connect", c->shown_,
          fmt::format("WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! The {} key {} sent is "
                      "{}, not the one {} holds for it: someone could be eavesdropping on you "
                      "right now (man-in-the-middle attack), or the host key has just been "
                      "changed. Host key verification failed; nothing was sent. If the new key "
                      "is right, remove the old one (ssh-keygen -R '{}') and connect again.",
                      type, named, fp, known_shown, named));
    }
    case SSH_KNOWN_HOSTS_OTHER: {
      const auto [type, fp] = server_fingerprint(s);
      c->broken_.store(true);
      return make_error(
          ErrorCode::kPermission, "connect", c->shown_,
          fmt::format("WARNING: the {} host key {} sent ({}) is of another type than the one "
                      "{} holds for it; an attacker could be using this to get around the "
                      "check. Host key verification failed; nothing was sent.",
                      type, named, fp, known_shown));
    }
    case SSH_KNOWN_HOSTS_NOT_FOUND:
    case SSH_KNOWN_HOSTS_UNKNOWN: {
      const auto [type, fp] = server_fingerprint(s);
      if (!t.accept_new || known == "/dev/null") {
        c->broken_.store(true);
        return make_error(
            ErrorCode::kPermission, "connect", c->shown_,
            fmt::format("the authenticity of host '{}' can't be established: {} is not in {} "
                        "({} key fingerprint is {}). {} Host key verification failed.",
                        named, named, known_shown, type, fp,
                        known == "/dev/null"
                            ? "There is no known_hosts file to check it against or record it "
                              "in: set $HOME, or known_hosts in the remote."
                            : "Check the fingerprint with the server's owner, then add it (ssh "
                              "once, or xfer --ssh-accept-new)."));
      }
      if (ssh_session_update_known_hosts(s) != SSH_OK) {
        c->broken_.store(true);
        return make_error(ErrorCode::kIo, "connect", c->shown_,
                          fmt::format("cannot add {} to {}: {}", named, known_shown,
                                      printable_name(ssh_get_error(s), 200)));
      }
      log().warn("permanently added '{}' ({}, {}) to the list of known hosts ({})", named, type, fp,
                 known_shown);
      break;
    }
    default:
      c->broken_.store(true);
      return make_error(ErrorCode::kIo, "connect", c->shown_,
                        fmt::format("cannot check the host key against {}: {}", known_shown,
                                    printable_name(ssh_get_error(s), 200)));
  }

  // The login, in ssh's order: none, public keys, password.
  int rc = ssh_userauth_none(s, nullptr);
  std::vector<std::string> tried;
  if (rc != SSH_AUTH_SUCCESS && rc != SSH_AUTH_ERROR) {
    const int methods = ssh_userauth_list(s, nullptr);
    if ((methods & SSH_AUTH_METHOD_PUBLICKEY) != 0 && !t.key_file.empty()) {
      ssh_key key = nullptr;
      const char* pass = t.key_passphrase.empty() ? nullptr : t.key_passphrase.c_str();
      if (ssh_pki_import_privkey_file(t.key_file.c_str(), pass, nullptr, nullptr, &key) != SSH_OK) {
        c->broken_.store(true);
        const std::string shown = shorten_home(t.key_file, t.home);
        if (!file_exists(t.key_file)) {
          return make_error(ErrorCode::kNotFound, "login", c->shown_,
                            fmt::format("the key file {} does not exist", shown));
        }
        return make_error(
            ErrorCode::kPermission, "login", c->shown_,
            pass == nullptr
                ? fmt::format("cannot load the key file {}: it needs its passphrase "
                              "(key_passphrase in the remote: xfer remote add), or it is not a "
                              "private key",
                              shown)
                : fmt::format("cannot load the key file {}: wrong passphrase, or not a private "
                              "key",
                              shown));
      }
      rc = ssh_userauth_publickey(s, nullptr, key);
      ssh_key_free(key);
      tried.push_back("key " + shorten_home(t.key_file, t.home));
    }
    if (rc != SSH_AUTH_SUCCESS && (methods & SSH_AUTH_METHOD_PUBLICKEY) != 0 && t.ambient) {
      const char* pass = t.key_passphrase.empty() ? nullptr : t.key_passphrase.c_str();
      rc = ssh_userauth_publickey_auto(s, nullptr, pass);
      tried.push_back(t.agent.empty() ? "~/.ssh/id_*" : "ssh-agent and ~/.ssh/id_*");
    }
    if (rc != SSH_AUTH_SUCCESS && rc != SSH_AUTH_ERROR && !t.password.empty()) {
      if ((methods & SSH_AUTH_METHOD_PASSWORD) != 0) {
        rc = ssh_userauth_password(s, nullptr, t.password.c_str());
        tried.push_back("password");
      } else if ((methods & SSH_AUTH_METHOD_INTERACTIVE) != 0) {
        // A server that asks for the password through keyboard-interactive
        // (PAM): every prompt that does not echo gets the password, at
        // most a few rounds.
        // (PAM): the password goes only to one hidden prompt that asks
        // for a password; any other question (a one-time code) ends it.
        rc = ssh_userauth_kbdint(s, nullptr, nullptr);
        bool answered = false;
        for (int round = 0; rc == SSH_AUTH_INFO && round < 4; ++round) {
          const int n = ssh_userauth_kbdint_getnprompts(s);
          if (n == 0) {  // an informational round
            rc = ssh_userauth_kbdint(s, nullptr, nullptr);
            continue;
          }
          char echo = 0;
          const char* prompt = ssh_userauth_kbdint_getprompt(s, 0, &echo);
          const std::string asked = prompt != nullptr ? prompt : "";
          if (answered || n != 1 || echo != 0 ||
              (asked.find("assword") == std::string::npos &&
               asked.find("ASSWORD") == std::string::npos)) {
            rc = SSH_AUTH_DENIED;
            break;
          }
          ssh_userauth_kbdint_setanswer(s, 0, t.password.c_str());
          answered = true;
          rc = ssh_userauth_kbdint(s, nullptr, nullptr);
        }
        tried.push_back("password (keyboard-interactive)");
      }
    }
    if (rc != SSH_AUTH_SUCCESS) {
      c->broken_.store(true);
      std::vector<std::string> offered;
      if ((methods & SSH_AUTH_METHOD_PUBLICKEY) != 0) offered.push_back("publickey");
      if ((methods & SSH_AUTH_METHOD_PASSWORD) != 0) offered.push_back("password");
      if ((methods & SSH_AUTH_METHOD_INTERACTIVE) != 0) offered.push_back("keyboard-interactive");
      if (rc == SSH_AUTH_ERROR) {
        return make_error(ErrorCode::kUnavailable, "login", c->shown_,
                          fmt::format("the SSH connection failed during the login: {}",
                                      printable_name(ssh_get_error(s), 200)),
                          RetryClass::kRetryCall);
      }
      return make_error(
          ErrorCode::kPermission, "login", c->shown_,
          fmt::format(
              "permission denied ({}); tried: {}. Give a key (key_file) or a password "
              "in a remote (xfer remote add), load the key into ssh-agent, or check the "
              "user name.",
              offered.empty() ? "no method offered" : fmt::format("{}", fmt::join(offered, ",")),
              tried.empty() ? "nothing (no key, agent or password)"
                            : fmt::format("{}", fmt::join(tried, ", "))));
    }
  } else if (rc == SSH_AUTH_ERROR) {
    return c->transport_error("login");
  }

  c->channel_ = ssh_channel_new(s);
  if (c->channel_ == nullptr || ssh_channel_open_session(c->channel_) != SSH_OK ||
      ssh_channel_request_subsystem(c->channel_, "sftp") != SSH_OK) {
    c->broken_.store(true);
    return make_error(ErrorCode::kUnsupported, "connect", c->shown_,
                      fmt::format("the server offers no SFTP subsystem: {}",
                                  printable_name(ssh_get_error(s), 200)));
  }
  XFER_TRY(c->start_sftp());
  return c;
}

xfer::Status Connection::start_sftp() {
  XFER_TRY(send(init_request()));
  XFER_ASSIGN_OR_RETURN(Reply version, receive());
  if (version.type != Type::kVersion || version.version < kProtocolVersion) {
    broken_.store(true);
    return make_error(
        ErrorCode::kUnsupported, "connect", shown_,
        fmt::format("the server speaks SFTP version {}; xfer needs 3", version.version));
  }
  bool limits = false;
  for (const auto& [name, data] : version.extensions) {
    if (name == "posix-rename@openssh.com") info_.posix_rename = true;
    if (name == "fsync@openssh.com") info_.fsync = true;
    if (name == "lsetstat@openssh.com") info_.lsetstat = true;
    if (name == "limits@openssh.com") limits = true;
  }
  if (limits) {
    const std::uint32_t id = next_id();
    XFER_ASSIGN_OR_RETURN(Reply r, call(limits_request(id), id));
    if (r.type == Type::kExtendedReply) {
      XFER_ASSIGN_OR_RETURN(Limits l, parse_limits(r.bytes));
      // Within what a reply can carry here (kMaxData), and never below
      // the draft's minimum.
      auto fit = [](std::uint64_t v) {
        return static_cast<std::uint32_t>(std::clamp<std::uint64_t>(v, 32768, kMaxData));
      };
      if (l.max_read != 0) info_.max_read = fit(l.max_read);
      if (l.max_write != 0) info_.max_write = fit(l.max_write);
    }
  }
  const std::uint32_t id = next_id();
  XFER_ASSIGN_OR_RETURN(Reply home, call(path_request(Type::kRealpath, id, "."), id));
  if (home.type == Type::kName && home.names.size() == 1 && !home.names[0].name.empty() &&
      home.names[0].name[0] == '/' && home.names[0].name.find('\0') == std::string::npos) {
    info_.home = home.names[0].name;
  }
  return ok_status();
}

xfer::Status Connection::send(std::string_view packet) {
  if (broken_.load()) {
    return make_error(ErrorCode::kUnavailable, "send", shown_, "the SSH connection is closed",
                      RetryClass::kRetryCall);
  }
  // One packet must go out within kStallSeconds: a server that opens its
  // window a byte at a time cannot hold a call for ever.
  const auto deadline = Clock::now() + std::chrono::seconds(kStallSeconds);
  std::size_t sent = 0;
  while (sent < packet.size()) {
    const int n = ssh_channel_write(channel_, packet.data() + sent,
                                    static_cast<std::uint32_t>(packet.size() - sent));
    if (n <= 0) return transport_error("send");
    sent += static_cast<std::size_t>(n);
    if (sent < packet.size() && Clock::now() > deadline) {
      broken_.store(true);
      return make_error(
          ErrorCode::kUnavailable, "send", shown_,
          fmt::format("the server took more than {} s to take one request", kStallSeconds),
          RetryClass::kRetryCall);
    }
  }
  return ok_status();
}

Result<Reply> Connection::receive() {
  if (broken_.load()) {
    return make_error(ErrorCode::kUnavailable, "receive", shown_, "the SSH connection is closed",
                      RetryClass::kRetryCall);
  }
  // One reply (at most kMaxPacket bytes) must arrive within kStallSeconds
  // of being awaited: a server trickling a byte at a time is dropped.
  const auto deadline = Clock::now() + std::chrono::seconds(kStallSeconds);
  for (;;) {
    if (auto p = framer_.next()) {
      if (!p->ok()) {
        broken_.store(true);
        return p->error();
      }
      auto reply = parse_reply(p->value());
      if (!reply.ok()) broken_.store(true);
      return reply;
    }
    // The channel's stderr is never read by SFTP; a server that fills it
    // must not grow libssh's buffer (or hide the end of the channel).
    while (ssh_channel_poll(channel_, 1) > 0) {
      if (ssh_channel_read_nonblocking(channel_, buf_.data(), 64u << 10, 1) <= 0) break;
    }
    const int n = ssh_channel_read_timeout(channel_, buf_.data(),
                                           static_cast<std::uint32_t>(buf_.size()), 0, 1000);
    if (n == SSH_ERROR || (n == 0 && ssh_channel_is_eof(channel_) != 0) || broken_.load()) {
      if (n == 0 && !broken_.load()) {
        broken_.store(true);
        return make_error(ErrorCode::kUnavailable, "receive", shown_,
                          "the server closed the SFTP session", RetryClass::kRetryCall);
      }
      return transport_error("receive");
    }
    if (Clock::now() > deadline) {
      broken_.store(true);
      return make_error(ErrorCode::kUnavailable, "receive", shown_,
                        fmt::format("the server did not complete a reply in {} s", kStallSeconds),
                        RetryClass::kRetryCall);
    }
    if (n == 0) continue;
    framer_.feed(std::span(buf_.data(), static_cast<std::size_t>(n)));
  }
}

Result<Reply> Connection::call(const std::string& packet, std::uint32_t id) {
  XFER_TRY(send(packet));
  XFER_ASSIGN_OR_RETURN(Reply r, receive());
  if (r.id != id) {
    broken_.store(true);
    return make_error(ErrorCode::kCorrupt, "receive", shown_,
                      fmt::format("the server answered request {} when {} was asked", r.id, id));
  }
  return r;
}

// ---- Pool

Pool::Pool(Target target, unsigned max) : target_(std::move(target)), max_(std::max(1u, max)) {}

Pool::~Pool() {
  std::lock_guard lock(mu_);
  slots_.clear();
}

Pool::Lease& Pool::Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    release();
    pool_ = o.pool_;
    conn_ = o.conn_;
    o.conn_ = nullptr;
  }
  return *this;
}

void Pool::Lease::release() {
  if (conn_ != nullptr && pool_ != nullptr) pool_->give_back(conn_);
  conn_ = nullptr;
}

void Pool::give_back(Connection* conn) {
  std::unique_ptr<Connection> dropped;
  {
    std::lock_guard lock(mu_);
    for (auto it = slots_.begin(); it != slots_.end(); ++it) {
      if (it->conn.get() != conn) continue;
      it->busy = false;
      if (conn->broken()) {
        dropped = std::move(it->conn);
        slots_.erase(it);
      }
      break;
    }
  }
  cv_.notify_all();
  // `dropped` closes here, outside the lock.
}

Result<Pool::Lease> Pool::open_new(std::unique_lock<std::mutex>& lock) {
  ++opening_;
  const std::uint64_t serial = ++next_serial_;
  lock.unlock();
  auto opened = Connection::open(target_, serial);
  lock.lock();
  --opening_;
  if (!opened.ok()) {
    cv_.notify_all();
    return std::move(opened).error();
  }
  if (cancelled_) {
    (*opened)->shut();
    return make_error(ErrorCode::kCancelled, "connect", (*opened)->shown());
  }
  Connection* conn = opened->get();
  const double rtt = conn->handshake_ms();
  double seen = rtt_ms_.load();
  // The handshake is several round trips; a third of it bounds one from
  // above.
  const double one = rtt / 3;
  if (seen == 0 || one < seen) rtt_ms_.store(one);
  if (!info_set_) {
    info_ = conn->info();
    info_set_ = true;
  }
  slots_.push_back(Slot{std::move(*opened), true});
  return Lease(this, conn);
}

xfer::Status Pool::connect_first() {
  std::unique_lock lock(mu_);
  if (!slots_.empty()) return ok_status();
  XFER_ASSIGN_OR_RETURN(Lease lease, open_new(lock));
  lock.unlock();
  return ok_status();
}

Result<Pool::Lease> Pool::acquire_with(const std::function<bool(const Connection&)>& prefer) {
  std::unique_lock lock(mu_);
  for (;;) {
    if (cancelled_) return make_error(ErrorCode::kCancelled, "sftp", target_.alias);
    // A free connection the caller prefers, else any free one: the count
    // grows only with the calls made at once (docs/sftp.md, "Connections").
    Slot* free = nullptr;
    for (Slot& s : slots_) {
      if (s.busy || s.conn->broken()) continue;
      if (prefer(*s.conn)) {
        free = &s;
        break;
      }
      if (free == nullptr) free = &s;
    }
    if (free != nullptr) {
      free->busy = true;
      return Lease(this, free->conn.get());
    }
    if (slots_.size() + opening_ < max_) {
      auto lease = open_new(lock);
      if (lease.ok() || slots_.empty()) return lease;
      // A host key that changed since the first connection, or a login
      // refused: never worked around.
      if (lease.error().code != ErrorCode::kUnavailable) return lease;
      // The server refuses more connections (MaxStartups, MaxSessions):
      // work with those open.
      log().debug("sftp: one more connection to {} failed: {}", target_.alias,
                  lease.error().message());
      max_.store(static_cast<unsigned>(std::max<std::size_t>(1, slots_.size())));
      continue;
    }
    cv_.wait(lock);
  }
}

Result<Pool::Lease> Pool::acquire_serial(std::uint64_t serial) {
  std::unique_lock lock(mu_);
  for (;;) {
    if (cancelled_) return make_error(ErrorCode::kCancelled, "sftp", target_.alias);
    Slot* found = nullptr;
    for (Slot& s : slots_) {
      if (s.conn->serial() == serial) found = &s;
    }
    if (found == nullptr || found->conn->broken()) {
      return make_error(ErrorCode::kUnavailable, "sftp", target_.alias,
                        "the SSH connection was lost", RetryClass::kRetryCall);
    }
    if (!found->busy) {
      found->busy = true;
      return Lease(this, found->conn.get());
    }
    cv_.wait(lock);
  }
}

void Pool::cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  for (Slot& s : slots_) s.conn->shut();
  cv_.notify_all();
}

}  // namespace xfer::sftp
