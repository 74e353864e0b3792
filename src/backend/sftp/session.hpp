#pragma once
// SSH connections of the sftp:// backend (docs/sftp.md): one Connection is
// a libssh session with one channel running the server's sftp subsystem,
// on which xfer speaks SFTP v3 itself (protocol.hpp); a Pool keeps up to N
// of them per endpoint and lends each to one thread at a time.
//
// Opening a connection does what ssh does: ~/.ssh/config (through libssh's
// own parser, so Host aliases, HostName, Port, User, IdentityFile and
// ProxyJump apply as ssh applies them), the server's host key checked
// against known_hosts (a changed key is always refused; an unknown one
// only with accept_new, which records it), then the user's credentials in
// ssh's order: ssh-agent and the default keys, a key file (with its
// passphrase), a password (also through keyboard-interactive).
//
// Threading: a Connection is used by the one thread holding its Lease;
// Pool is thread-safe; Pool::cancel() and Connection::shut() any thread.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "backend/sftp/protocol.hpp"
#include "xfer/core/result.hpp"

struct ssh_session_struct;
struct ssh_channel_struct;

namespace xfer::sftp {

// Where and as whom to log in, from the endpoint's profile.
struct Target {
  std::string alias;  // the host as the user wrote it (looked up in ~/.ssh/config)
  std::string host;   // a host a remote named instead ("" : the alias, through the config)
  int port = 0;       // 0: the config's, else 22
  std::string user;   // "" : the config's, else the local user
  std::string key_file;
  std::string key_passphrase;
  std::string password;
  std::string known_hosts;  // "" : ~/.ssh/known_hosts
  std::string home;         // for ~/.ssh; "" : none (no config, no default keys)
  std::string agent;        // $SSH_AUTH_SOCK ("" : no agent)
  bool ambient = true;      // false: only key_file and password (xferd's jobs)
  bool accept_new = false;  // record an unknown host key instead of refusing it
};

// What the server said of itself when the subsystem started.
struct ServerInfo {
  bool posix_rename = false;
  bool fsync = false;
  bool lsetstat = false;
  std::uint32_t max_read = 32768;  // the draft's guaranteed minimum until limits@ says more
  std::uint32_t max_write = 32768;
  std::string home;  // REALPATH "." : the login folder
};

class Connection {
 public:
  // Connects, checks the host key, logs in, starts SFTP. Errors read like
  // ssh's (docs/sftp.md, "Errors"): kPermission for a refused login or a
  // host key that does not match, kUnavailable (retryable) when nothing
  // answers.
  static Result<std::unique_ptr<Connection>> open(const Target& target, std::uint64_t serial);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  std::uint64_t serial() const { return serial_; }
  const ServerInfo& info() const { return info_; }
  const std::string& shown() const { return shown_; }  // "user@host:port"
  double handshake_ms() const { return handshake_ms_; }
  bool broken() const { return broken_.load(); }

  std::uint32_t next_id() { return ++last_id_; }
  // Sends one request packet whole; a transport failure breaks the
  // connection (kUnavailable, retryable).
  xfer::Status send(std::string_view packet);
  // The next reply, whatever its id. A malformed stream breaks the
  // connection (kCorrupt); a silent server too, after kStallSeconds.
  Result<Reply> receive();
  // One request and its reply (nothing else may be in flight).
  Result<Reply> call(const std::string& packet, std::uint32_t id);
  // Marks the connection unusable (the pool drops it on release).
  void mark_broken() { broken_.store(true); }
  // Wakes a blocked send or receive with an error: shuts the socket down.
  // Any thread.
  void shut();

  static constexpr int kStallSeconds = 120;

 private:
  Connection() = default;
  Error transport_error(std::string_view op);
  xfer::Status start_sftp();

  ssh_session_struct* session_ = nullptr;
  ssh_channel_struct* channel_ = nullptr;
  std::uint64_t serial_ = 0;
  std::uint32_t last_id_ = 0;
  Framer framer_;
  std::vector<std::byte> buf_;
  ServerInfo info_;
  std::string shown_;
  double handshake_ms_ = 0;
  std::atomic<bool> broken_{false};
  std::atomic<int> fd_{-1};
};

// Up to `max` connections to one endpoint, opened as they are needed.
class Pool {
 public:
  Pool(Target target, unsigned max);
  ~Pool();

  // Exclusive use of one connection until destroyed; then it goes back to
  // the pool (or is closed, when broken).
  class Lease {
   public:
    Lease() = default;
    Lease(Pool* pool, Connection* conn) : pool_(pool), conn_(conn) {}
    Lease(Lease&& o) noexcept : pool_(o.pool_), conn_(o.conn_) { o.conn_ = nullptr; }
    Lease& operator=(Lease&& o) noexcept;
    ~Lease() { release(); }
    Connection* operator->() const { return conn_; }
    Connection& operator*() const { return *conn_; }
    void release();

   private:
    Pool* pool_ = nullptr;
    Connection* conn_ = nullptr;
  };

  // A free connection, preferring one `prefer` says yes to; a new one when
  // none is free and fewer than max are open; else waits for one.
  template <typename Prefer>
  Result<Lease> acquire(Prefer prefer);
  Result<Lease> acquire() {
    return acquire([](const Connection&) { return false; });
  }
  // The connection with this serial: kUnavailable (retryable) once it is
  // gone (a handle opened on it is gone with it).
  Result<Lease> acquire_serial(std::uint64_t serial);
  // Opens the first connection now, so that a wrong host, key or password
  // is reported before any work starts.
  xfer::Status connect_first();
  // Every connection's shortest handshake, for the planner.
  double rtt_ms() const { return rtt_ms_.load(); }
  // Of the first connection: set once, before connect_first() returns,
  // and never changed after (so read without the lock).
  const ServerInfo& info() const { return info_; }
  unsigned max() const { return max_.load(); }
  // Wakes every blocked call with an error; opens nothing more.
  void cancel();

 private:
  friend class Lease;
  struct Slot {
    std::unique_ptr<Connection> conn;
    bool busy = false;
  };
  Result<Lease> acquire_with(const std::function<bool(const Connection&)>& prefer);
  Result<Lease> open_new(std::unique_lock<std::mutex>& lock);
  void give_back(Connection* conn);

  Target target_;
  std::atomic<unsigned> max_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Slot> slots_;
  unsigned opening_ = 0;
  std::uint64_t next_serial_ = 0;
  bool cancelled_ = false;
  ServerInfo info_;
  bool info_set_ = false;
  std::atomic<double> rtt_ms_{0};
  std::optional<Error> last_open_error_;
};

template <typename Prefer>
Result<Pool::Lease> Pool::acquire(Prefer prefer) {
  return acquire_with(std::function<bool(const Connection&)>(std::move(prefer)));
}

}  // namespace xfer::sftp
