// The TCP transport (transport.hpp): writev, sendfile and read(2) on one
// connected socket, TCP_INFO for its statistics. Writes come from one
// thread at a time (FrameConn's send lock), reads from one reader; the byte
// counters are atomics any thread may read.

#include "protocol/transport.hpp"

#include <linux/tcp.h>  // struct tcp_info with tcpi_min_rtt (glibc's is older)
#include <netinet/in.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <vector>

#include "protocol/conn.hpp"

namespace xfer::protocol {
namespace {

timeval to_timeval(std::chrono::milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  return tv;
}

class TcpTransport final : public Transport {
 public:
  explicit TcpTransport(UniqueFd fd) : fd_(std::move(fd)) {
    if (fd_.valid()) tune_data_socket(fd_.get());
  }

  Status write_all(std::span<const std::span<const std::byte>> pieces) override {
    std::vector<iovec> iov;
    iov.reserve(pieces.size());
    for (auto p : pieces) {
      if (!p.empty()) iov.push_back({const_cast<std::byte*>(p.data()), p.size()});
    }
    std::size_t first = 0;
    while (first < iov.size()) {
      const int count = static_cast<int>(std::min<std::size_t>(iov.size() - first, IOV_MAX));
      const ssize_t w = ::writev(fd_.get(), iov.data() + first, count);
      if (w < 0) {
        if (errno == EINTR) continue;
        return connection_error(errno, "send");
      }
      sent_.fetch_add(static_cast<std::uint64_t>(w), std::memory_order_relaxed);
      auto left = static_cast<std::size_t>(w);
      while (first < iov.size() && left >= iov[first].iov_len) {
        left -= iov[first].iov_len;
        ++first;
      }
      if (first < iov.size()) {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
      }
    }
    return ok_status();
  }

  Status send_file(int file_fd, std::uint64_t offset, std::uint64_t length) override {
    off_t pos = static_cast<off_t>(offset);
    std::uint64_t left = length;
    while (left > 0) {
      const ssize_t w = ::sendfile(fd_.get(), file_fd, &pos, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        return connection_error(errno, "sendfile");
      }
      if (w == 0) {
        return make_error(ErrorCode::kChanged, "sendfile", "", "file shrank while being sent",
                          RetryClass::kRetryFile);
      }
      left -= static_cast<std::uint64_t>(w);
      sent_.fetch_add(static_cast<std::uint64_t>(w), std::memory_order_relaxed);
    }
    return ok_status();
  }

  Result<std::size_t> read_some(std::span<std::byte> out) override {
    for (;;) {
      // read(2), not recv(2): the bytes then show in /proc/PID/io (rchar).
      const ssize_t r = ::read(fd_.get(), out.data(), out.size());
      if (r >= 0) {
        received_.fetch_add(static_cast<std::uint64_t>(r), std::memory_order_relaxed);
        return static_cast<std::size_t>(r);
      }
      if (errno == EINTR) continue;
      return connection_error(errno, "recv");
    }
  }

  void shutdown() override {
    if (fd_.valid()) ::shutdown(fd_.get(), SHUT_RDWR);
  }

  TransportStats stats() const override {
    TransportStats s;
    tcp_info info{};
    socklen_t len = sizeof(info);
    if (::getsockopt(fd_.get(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0) {
      s.rtt_ms = info.tcpi_rtt / 1000.0;
      s.min_rtt_ms = info.tcpi_min_rtt / 1000.0;
      s.cwnd = info.tcpi_snd_cwnd;
      s.retransmits = info.tcpi_total_retrans;
      s.bytes_acked = info.tcpi_bytes_acked;
      s.unacked = info.tcpi_unacked;
      s.delivery_rate = info.tcpi_delivery_rate;
      s.data_segs_out = info.tcpi_data_segs_out;
      s.busy_us = info.tcpi_busy_time;
      s.rwnd_limited_us = info.tcpi_rwnd_limited;
      s.sndbuf_limited_us = info.tcpi_sndbuf_limited;
    }
    s.bytes_sent = sent_.load(std::memory_order_relaxed);
    s.bytes_received = received_.load(std::memory_order_relaxed);
    return s;
  }

  bool peer_is_loopback() const override { return protocol::peer_is_loopback(fd_.get()); }

  void set_timeouts(std::chrono::milliseconds recv, std::chrono::milliseconds send) override {
    const timeval r = to_timeval(recv);
    const timeval s = to_timeval(send);
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &r, sizeof(r));
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &s, sizeof(s));
  }

  int native_handle() const override { return fd_.get(); }

 private:
  UniqueFd fd_;
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> received_{0};
};

}  // namespace

Error connection_error(int err, std::string_view op) {
  Error e = errno_error(err, op, "data connection");
  if (err == ECONNRESET || err == EPIPE || err == ETIMEDOUT || err == ECONNREFUSED ||
      err == ENOTCONN || err == ECONNABORTED || err == ENETUNREACH || err == EHOSTUNREACH) {
    e.code = ErrorCode::kUnavailable;
    e.retry = RetryClass::kRetryCall;
  }
  return e;
}

std::unique_ptr<Transport> make_tcp_transport(UniqueFd fd) {
  return std::make_unique<TcpTransport>(std::move(fd));
}

}  // namespace xfer::protocol
