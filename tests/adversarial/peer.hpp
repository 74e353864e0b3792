// A hostile peer of a real xferd, for the adversarial tests: raw gRPC calls
// (any request, any token) and raw data-channel connections (any bytes, any
// frame, from any 127.x source address), with the helpers to get past the
// handshake when a test needs an authenticated connection.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "harness.hpp"
#include "protocol/conn.hpp"
#include "xfer/protocol/frame.hpp"
#include "xfer/v1/xfer.grpc.pb.h"

namespace xfer_adv {

namespace v1 = ::xfer::v1;
using xfer::protocol::FrameConn;
using xfer::protocol::FrameHeader;
using xfer::protocol::FrameType;

struct Frame {
  FrameHeader h;
  std::vector<std::byte> body;
};

std::vector<std::byte> bytes_of(std::string_view s);

// A job request's option `name` (JobOptions.values: the option table's
// canonical text) set from a string, a bool or a number.
inline void set_job_option(v1::JobRequest& req, const std::string& name, const std::string& v) {
  (*req.mutable_options()->mutable_values())[name] = v;
}
inline void set_job_option(v1::JobRequest& req, const std::string& name, const char* v) {
  set_job_option(req, name, std::string(v));
}
inline void set_job_option(v1::JobRequest& req, const std::string& name, bool v) {
  set_job_option(req, name, std::string(v ? "true" : "false"));
}
template <typename N>
requires std::is_integral_v<N>
inline void set_job_option(v1::JobRequest& req, const std::string& name, N v) {
  set_job_option(req, name, std::to_string(v));
}

xfer::protocol::FrameHeader header(FrameType type, std::uint64_t id = 0, std::uint64_t offset = 0,
                                   std::uint32_t aux = 0);
std::vector<std::byte> open_write(const std::string& path, std::uint64_t size,
                                  const std::string& resume_name = {}, std::uint32_t flags = 0,
                                  std::uint32_t mode = 0644);
std::vector<std::byte> open_read(const std::string& path, std::uint32_t inline_limit = 0);
std::vector<std::byte> put_file(const std::string& path, std::string_view data,
                                std::uint32_t mode = 0644);
// The error text of an ERROR frame ("" when `f` is not one).
std::string error_text(const Frame& f);

using xfer_it::closed_by_peer;
using xfer_it::tcp_connect;

class Peer {
 public:
  Peer(std::string control_address, std::string data_address);

  // OpenSession with `token`; the status is returned through `status`.
  v1::Session open_session(const std::string& token, bool encrypt, grpc::Status* status,
                           unsigned streams = 2);
  // A unary or streaming call's context with the bearer token and a 10 s deadline.
  static void prepare(grpc::ClientContext& ctx, const std::string& token);
  v1::Xfer::Stub& stub() { return *stub_; }

  // A FrameConn on a new data connection; reads time out after 5 s.
  std::unique_ptr<FrameConn> dial(const std::string& source_ip = "");
  // Magic + a plain Hello for `session` (with `nonce` when given, so a
  // test can replay one); returns the reply.
  xfer::Result<Frame> plain_hello(FrameConn& fc, const v1::Session& session,
                                  const std::array<std::uint8_t, 16>* nonce = nullptr);
  // Magic + a sealed Hello; on HelloOk the connection seals from then on.
  xfer::Result<Frame> sealed_hello(FrameConn& fc, const v1::Session& session);
  // A data connection past a successful handshake (null + test failure otherwise).
  std::unique_ptr<FrameConn> connected(const v1::Session& session, bool sealed = false);
  // A new session for `token` (into *session) and one connection on it.
  std::unique_ptr<FrameConn> session_connection(const std::string& token, v1::Session* session,
                                                bool sealed = false);

  static xfer::Result<Frame> recv_frame(FrameConn& fc);
  // Sends one frame (payload a + b) and returns the reply.
  static xfer::Result<Frame> call(FrameConn& fc, const FrameHeader& h,
                                  std::span<const std::byte> a = {},
                                  std::span<const std::byte> b = {});

  const std::string& data_address() const { return data_; }

 private:
  std::string control_;
  std::string data_;
  std::unique_ptr<v1::Xfer::Stub> stub_;
};

// Resource figures of a running process, from /proc/PID.
struct ProcFigures {
  std::size_t fds = 0;
  std::size_t threads = 0;
  std::size_t rss_kib = 0;
  std::size_t hwm_kib = 0;  // peak RSS
};
ProcFigures proc_figures(pid_t pid);
// proc_figures once the process's descriptors and threads have not changed
// for `quiet` (it has taken in what was thrown at it), or at `deadline`.
ProcFigures settled_figures(pid_t pid,
                            std::chrono::milliseconds quiet = std::chrono::milliseconds(200),
                            std::chrono::seconds deadline = std::chrono::seconds(10));

}  // namespace xfer_adv
