#pragma once
// The data-channel server of xferd (docs/protocol.md): accepts TCP
// connections, authenticates each with a session's data token (Hello),
// optionally seals, then serves frames: writes at offsets into the
// session's open sinks, small files whole (kPutFile), reads for downloads.
//
// Every resource a peer can make it hold is bounded (docs/server.md,
// "Threat model"): connections in total, per address and still
// handshaking; the whole handshake's time; handles per session; the bytes
// one connection buffers; descriptors (a share of RLIMIT_NOFILE).
//
// Threading: one acceptor thread per listener, one watchdog thread (handshake deadlines,
// sessions whose token expired, reaping), one thread per connection (frames
// of one connection are handled in order; connections run in parallel). A
// session's handle table is shared by its connections (chunks of one file
// stripe across them) and guarded by the session's mutex.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "server/audit.hpp"
#include "xfer/backend/backend.hpp"
#include "xfer/io/unique_fd.hpp"
#include "xfer/server/auth.hpp"

namespace xfer::protocol {
class FrameConn;
}

namespace xfer::server {

// Descriptors the data channel may hold (connections and open files): a
// share of the process's limit, so a flood of data connections can never
// push the gRPC listener into EMFILE.
class FdBudget {
 public:
  explicit FdBudget(std::size_t capacity) : capacity_(capacity) {}
  bool try_acquire(std::size_t n);
  void release(std::size_t n);
  std::size_t used() const { return used_.load(); }
  std::size_t capacity() const { return capacity_; }

 private:
  std::size_t capacity_;
  std::atomic<std::size_t> used_{0};
};

// What token subjects hold, counted and bounded per subject and in total:
// open files (limits.max_open_files_per_subject, across all of a subject's
// sessions) and WatchJob streams (max_watches, max_watches_per_subject).
// Thread-safe.
class SubjectQuota {
 public:
  enum class Verdict { kGranted, kServerFull, kSubjectFull };
  explicit SubjectQuota(unsigned per_subject, unsigned total = ~0u)
      : per_subject_(per_subject), total_(total) {}
  Verdict try_acquire(const std::string& subject);
  void release(const std::string& subject);

 private:
  unsigned per_subject_;
  unsigned total_;
  std::mutex mu_;
  unsigned used_ = 0;
  std::map<std::string, unsigned> by_subject_;
};

// One open file of a session. Its connections read or write it in parallel
// (shared `use`); COMMIT/ABORT/SUSPEND/CLOSE first take it out of the
// session's table, then hold `use` exclusively and set `finished`, so no
// write or read is in flight on a descriptor that is being closed (and
// maybe reused by another open), and none starts after.
struct Handle {
  std::string server_path;
  std::uint64_t size = 0;  // a sink's declared size: DATA stays within it
  // Bytes COPY_BASIS copied so far: at most `size` (each byte of the new
  // file once), so a few small frames cannot make the server write more
  // than the file it declared.
  std::atomic<std::uint64_t> basis_copied{0};
  std::unique_ptr<Sink> sink;      // open for writing
  std::unique_ptr<Source> source;  // open for reading
  std::size_t fds = 0;             // descriptors held against the FdBudget
  FdBudget* budget = nullptr;
  SubjectQuota* subject_files = nullptr;  // counts this file against `subject`
  std::string subject;
  std::shared_mutex use;
  bool finished = false;  // guarded by `use`
  ~Handle() {
    sink.reset();
    source.reset();
    if (budget != nullptr) budget->release(fds);
    if (subject_files != nullptr) subject_files->release(subject);
  }
};

struct DataSession {
  std::string id;
  std::string data_token;
  TokenScope scope;
  bool encrypt = false;
  unsigned streams = 0;
  // The token's own expiry (system clock, seconds): the session and its
  // connections end with it. 0 = no expiry (auth.required = false).
  std::int64_t token_expires_at = 0;
  std::chrono::steady_clock::time_point idle_expires;
  // The session's view of the root: confined to the token's scope.
  std::shared_ptr<Backend> fs;

  std::mutex mu;
  std::unordered_map<std::uint64_t, std::shared_ptr<Handle>> handles;
  unsigned connections = 0;
  // Set once the registry dropped the session (CloseSession, its last
  // connection gone, idle or token expiry): no connection joins it any more,
  // no handle is added, and the watchdog shuts the connections still on it.
  std::atomic<bool> closed{false};
  // Client nonces of the Hellos accepted so far: a Hello seen on the wire
  // cannot be replayed to join the session (bounded, see kMaxHellos).
  std::set<std::string> hello_nonces;

  bool token_expired(std::int64_t now_s) const {
    return token_expires_at > 0 && now_s >= token_expires_at;
  }
};

class SessionRegistry {
 public:
  SessionRegistry(unsigned max_sessions, unsigned max_per_subject)
      : max_sessions_(max_sessions), max_per_subject_(max_per_subject) {}
  Result<std::shared_ptr<DataSession>> create(TokenScope scope, unsigned streams, bool encrypt,
                                              std::chrono::seconds idle_lifetime,
                                              std::shared_ptr<Backend> fs);
  // The live session with this id, or null (unknown, idle-expired, or its
  // token expired).
  std::shared_ptr<DataSession> find_by_id(const std::string& id);
  // Drops the session: its open sinks are aborted (resumable ones suspended).
  void close(const std::string& id);
  // Closes sessions whose token expired or which sat idle past their time.
  void expire();
  std::size_t size();

 private:
  void expire_locked(std::vector<std::shared_ptr<DataSession>>& dropped);
  unsigned max_sessions_;
  unsigned max_per_subject_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<DataSession>> by_id_;
};

struct DataLimits {
  unsigned max_connections = 1024;
  unsigned max_connections_per_address = 128;
  unsigned max_unauthenticated = 64;
  unsigned max_unauthenticated_per_address = 16;
  std::chrono::seconds handshake{5};
  std::chrono::seconds idle{600};       // a connection without a frame is closed
  std::size_t buffer_bytes = 4u << 20;  // largest frame buffered whole
  // Kernel socket buffers of a data connection, each way: set on the
  // listener (accepted connections inherit it) where xferd may force it;
  // loopback connections get 4 MiB.
  std::size_t socket_buffer_bytes = 16u << 20;
  unsigned max_handles_per_session = 256;
  unsigned max_open_files_per_subject = 1024;
};

class DataServer {
 public:
  DataServer(SessionRegistry& sessions, DataLimits limits, FdBudget& fds, Audit& audit);
  ~DataServer();
  // Listens on every address (one per NIC the server offers as a path;
  // port 0 picks a free one) with one acceptor thread each.
  Status start(const std::vector<std::string>& listen_addresses);
  // The addresses listened on, in the order given ("host:port").
  const std::vector<std::string>& addresses() const { return addresses_; }
  // Stops accepting, unblocks every connection (their open sinks are
  // aborted or suspended) and joins the threads.
  void stop();
  std::size_t connections() const { return live_.load(); }

 private:
  struct Conn;
  void accept_loop(int listen_fd, UniqueFd& reserve);
  void watchdog_loop();
  // Admission under conns_mu_: null when the connection is refused.
  std::shared_ptr<Conn> admit_locked(UniqueFd fd, const std::string& address);
  void reap_locked();
  void serve(const std::shared_ptr<Conn>& conn);
  Status handshake(Conn& conn, std::shared_ptr<DataSession>& session);
  Status serve_frames(protocol::FrameConn& fc, DataSession& session);

  SessionRegistry& sessions_;
  DataLimits limits_;
  FdBudget& fds_;
  Audit& audit_;
  SubjectQuota subject_files_;
  std::vector<int> listen_fds_;
  // One per acceptor, given up to accept-and-close when out of descriptors.
  std::vector<UniqueFd> reserves_;
  std::vector<std::string> addresses_;
  std::vector<std::thread> acceptors_;
  std::thread watchdog_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> live_{0};
  std::mutex conns_mu_;
  std::condition_variable watchdog_cv_;
  std::list<std::shared_ptr<Conn>> conns_;
  std::map<std::string, unsigned> per_address_;
  std::map<std::string, unsigned> unauth_per_address_;
  unsigned unauthenticated_ = 0;
};

}  // namespace xfer::server
