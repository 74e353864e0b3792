#pragma once
// The byte transport under the data channel. FrameConn (conn.hpp) turns
// requests and replies into frames, seals them and combines small ones; a
// Transport only moves the bytes, in order and reliably, and knows its own
// statistics. TCP is the one transport today (make_tcp_transport); the UDP
// transport of a later issue implements the same interface, and nothing
// above FrameConn changes.
//
// Threading: write_all and send_file are called by one thread at a time
// (FrameConn's send lock), read_some by the connection's one reader;
// shutdown, stats and the rest by any thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "xfer/core/result.hpp"
#include "xfer/io/unique_fd.hpp"

namespace xfer::protocol {

// What the transport knows of the path, for --json and the metrics.
struct TransportStats {
  double rtt_ms = 0;
  double min_rtt_ms = 0;   // the smallest round trip TCP has seen on it
  std::uint32_t cwnd = 0;  // segments (TCP)
  std::uint64_t retransmits = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  // TCP_INFO's view (0 elsewhere): what the peer acknowledged, the latest
  // delivery-rate sample, data segments sent, and how long the connection
  // had data in flight (busy) and of that time how long the receiver's
  // window or our send buffer was the limit.
  std::uint64_t bytes_acked = 0;
  std::uint32_t unacked = 0;        // segments sent and not yet acknowledged
  std::uint64_t delivery_rate = 0;  // bytes per second
  std::uint64_t data_segs_out = 0;
  std::uint64_t busy_us = 0;
  std::uint64_t rwnd_limited_us = 0;
  std::uint64_t sndbuf_limited_us = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Every byte of `pieces`, in order. A broken connection is
  // kUnavailable/kRetryCall (the client reconnects).
  virtual Status write_all(std::span<const std::span<const std::byte>> pieces) = 0;
  // `length` bytes of `file_fd` from `offset`, from the page cache without
  // a copy through user space. kChanged when the file ends first;
  // kUnsupported when this transport cannot (the caller copies instead).
  virtual Status send_file(int file_fd, std::uint64_t offset, std::uint64_t length) = 0;
  // At most out.size() bytes as they arrive; 0 at the peer's orderly end.
  virtual Result<std::size_t> read_some(std::span<std::byte> out) = 0;
  // Unblocks a reader and a writer blocked in the transport.
  virtual void shutdown() = 0;
  virtual TransportStats stats() const = 0;
  virtual bool peer_is_loopback() const = 0;
  // A read or a write that waits longer than this fails (a peer that stops
  // reading or sending cannot hold a thread forever); zero: no limit.
  virtual void set_timeouts(std::chrono::milliseconds recv, std::chrono::milliseconds send) = 0;
  // The descriptor a poll() may wait on; -1 when there is none.
  virtual int native_handle() const = 0;
};

// errno of a socket call as an Error: a broken connection (reset, closed,
// timed out, refused) is kUnavailable/kRetryCall, since the client
// reconnects; anything else stays as errno_error makes it.
Error connection_error(int err, std::string_view op);

// TCP: writev, sendfile, read(2) (so the bytes show in /proc/PID/io),
// TCP_INFO for the statistics. Applies the data-socket tuning
// (tune_data_socket) to `fd`.
std::unique_ptr<Transport> make_tcp_transport(UniqueFd fd);

}  // namespace xfer::protocol
