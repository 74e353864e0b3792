#pragma once
// The data-channel server of xferd (docs/protocol.md): accepts TCP
// connections, authenticates each with a session's data token (Hello),
// optionally seals, then serves frames: writes at offsets into the
// session's open sinks, small files whole (kPutFile), reads for downloads.
//
// Threading: one acceptor thread, one thread per connection (frames of one
// connection are handled in order; connections run in parallel). A
// session's handle table is shared by its connections (chunks of one file
// stripe across them) and guarded by the session's mutex.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "xfer/backend/backend.hpp"
#include "xfer/server/auth.hpp"
#include "xfer/server/root.hpp"

namespace xfer::protocol {
class FrameConn;
}

namespace xfer::server {

struct Handle {
  std::string server_path;
  std::unique_ptr<Sink> sink;      // open for writing
  std::unique_ptr<Source> source;  // open for reading
};

struct DataSession {
  std::string id;
  std::string data_token;
  TokenScope scope;
  bool encrypt = false;
  unsigned streams = 0;
  std::chrono::steady_clock::time_point expires;

  std::mutex mu;
  std::unordered_map<std::uint64_t, std::shared_ptr<Handle>> handles;
  unsigned connections = 0;
};

class SessionRegistry {
 public:
  explicit SessionRegistry(unsigned max_sessions) : max_sessions_(max_sessions) {}
  Result<std::shared_ptr<DataSession>> create(TokenScope scope, unsigned streams, bool encrypt,
                                              std::chrono::seconds lifetime);
  std::shared_ptr<DataSession> find_by_id(const std::string& id);
  // Drops the session: its open sinks are aborted (resumable ones suspended).
  void close(const std::string& id);
  std::size_t size();

 private:
  void expire_locked();
  unsigned max_sessions_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<DataSession>> by_id_;
};

class DataServer {
 public:
  DataServer(std::shared_ptr<Backend> root_backend, std::shared_ptr<const ServerRoot> root,
             SessionRegistry& sessions, std::chrono::seconds idle_timeout);
  ~DataServer();
  Status start(const std::string& listen_address);
  std::string address() const { return address_; }
  // Stops accepting, unblocks every connection (their open sinks are
  // aborted or suspended) and joins the threads.
  void stop();
  std::size_t connections() const { return live_.load(); }

 private:
  struct Conn;
  void accept_loop();
  void serve(const std::shared_ptr<Conn>& conn);
  Status handshake(protocol::FrameConn& fc, std::shared_ptr<DataSession>& session);
  Status serve_frames(protocol::FrameConn& fc, DataSession& session);

  std::shared_ptr<Backend> backend_;
  std::shared_ptr<const ServerRoot> root_;
  SessionRegistry& sessions_;
  std::chrono::seconds idle_timeout_;
  int listen_fd_ = -1;
  std::string address_;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> live_{0};
  std::mutex conns_mu_;
  std::list<std::shared_ptr<Conn>> conns_;
};

}  // namespace xfer::server
