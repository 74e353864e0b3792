#pragma once
// One data-channel connection carrying frames (docs/protocol.md): buffered
// frame reading, sealing/opening when the session is encrypted, combining
// of small frames, a file payload handed to the transport's zero-copy path.
// The bytes move through a Transport (transport.hpp: TCP today), which also
// owns the connection's statistics.
//
// Threading: send_*() are thread-safe (one send mutex: a frame is written
// whole, never interleaved). recv_*() belong to one reader thread.

#include <sys/uio.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "protocol/transport.hpp"
#include "xfer/core/result.hpp"
#include "xfer/io/unique_fd.hpp"
#include "xfer/protocol/crypto.hpp"
#include "xfer/protocol/frame.hpp"

namespace xfer::protocol {

class FrameConn {
 public:
  // Over TCP on a connected socket.
  explicit FrameConn(UniqueFd fd);
  explicit FrameConn(std::unique_ptr<Transport> transport);
  FrameConn(const FrameConn&) = delete;
  FrameConn& operator=(const FrameConn&) = delete;

  Transport& transport() { return *transport_; }
  const Transport& transport() const { return *transport_; }
  // From now on every frame is sealed in both directions. Called once,
  // before the connection is shared between threads.
  void enable_sealing(FrameCipher send, FrameCipher recv);
  bool sealed() const { return send_cipher_.has_value(); }

  // Sends one frame whose payload is the concatenation of `a` and `b` (b may
  // be empty). Fills length, flags and payload_hash.
  Status send(FrameHeader h, std::span<const std::byte> a, std::span<const std::byte> b = {});
  // Sends a kData-like frame whose payload is [offset, offset+length) of
  // `file_fd`: plaintext connections hash the range as pread() returns it
  // (never through a mapping: a truncated file would be SIGBUS) and send it
  // with sendfile; sealed connections read, seal and send it.
  // Returns kChanged when the file is shorter than the range.
  Status send_file(FrameHeader h, int file_fd, std::uint64_t offset, std::uint32_t length);
  // Raw bytes before the first frame (the magic).
  Status send_raw(std::span<const std::byte> bytes);

  // Reads and validates the next header. kUnavailable on a clean EOF at a
  // frame boundary, kCorrupt on garbage, kIo on socket errors.
  Result<FrameHeader> recv_header();
  // Bytes of plaintext the frame carries (length minus the tag when sealed).
  std::uint32_t plain_length(const FrameHeader& h) const;
  // Reads the payload of `h` into `out` (exactly plain_length(h) bytes),
  // opens it when sealed and checks payload_hash when not. A checksum
  // mismatch is kCorrupt/kRetryCall and leaves the stream in sync; a failed
  // tag is kCorrupt/kFatal (the connection cannot be trusted).
  Status recv_payload(const FrameHeader& h, std::span<std::byte> out);
  Status recv_payload(const FrameHeader& h, std::vector<std::byte>& out);
  Status skip_payload(const FrameHeader& h);
  // Reads the payload of `h` in pieces of at most scratch.size() bytes and
  // hands each to `consume(piece, position_in_payload)`, so a large frame
  // never needs a buffer of its own size (plaintext; a sealed frame is read
  // whole into `whole` first, since its tag covers all of it). The stream
  // stays in sync whatever happens: after a failed consume the rest is
  // drained and that error returned; a checksum mismatch is reported after
  // the last piece (kCorrupt/kRetryCall).
  Status recv_payload_pieces(
      const FrameHeader& h, std::span<std::byte> scratch, std::vector<std::byte>& whole,
      const std::function<Status(std::span<const std::byte>, std::uint64_t)>& consume);
  Status recv_raw(std::span<std::byte> out);

  // Deferred mode (the server's replies): small frames are queued and go out
  // together on flush(), so a burst of requests costs one send for all its
  // replies. Large frames flush the queue and go out at once.
  void set_deferred(bool on) { deferred_ = on; }
  Status flush();
  // Bytes already received and not yet parsed.
  std::size_t buffered_input() const { return rend_ - rpos_; }

  // Unblocks a reader blocked in recv (shutdown(SHUT_RDWR)).
  void shutdown();
  TransportStats transport_stats() const { return transport_->stats(); }

 private:
  Status write_all(std::span<const std::byte> a, std::span<const std::byte> b,
                   std::span<const std::byte> c);
  Status send_sealed_pieces(std::span<const std::byte, kHeaderSize> hdr,
                            std::span<const std::byte> a, std::span<const std::byte> b);
  // read(2), not recv(2): the bytes then show in /proc/PID/io (rchar).
  Status read_exact(std::span<std::byte> out);
  Status flush_locked();
  Status send_combined(const std::array<std::byte, kHeaderSize>& hdr, std::span<const std::byte> a,
                       std::span<const std::byte> b);

  std::unique_ptr<Transport> transport_;
  std::mutex send_mu_;  // held while writing to the socket
  // Flat combining of plaintext frames (send_combined).
  struct Outgoing {
    const std::array<std::byte, kHeaderSize>* hdr;
    std::span<const std::byte> a, b;
    bool done = false;
    Status status = ok_status();
  };
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::vector<Outgoing*> queue_;
  bool leader_ = false;
  std::optional<FrameCipher> send_cipher_;
  std::optional<FrameCipher> recv_cipher_;
  std::vector<std::byte> seal_scratch_;  // guarded by send_mu_
  bool deferred_ = false;
  std::vector<std::byte> out_;  // queued frames (deferred mode), guarded by send_mu_
  // Receive buffer: small frames are parsed from it, large payloads bypass it.
  std::vector<std::byte> rbuf_;
  std::size_t rpos_ = 0, rend_ = 0;
};

// Socket helpers shared by the client and the server.
// Parses "host:port" / "[v6]:port"; kInvalidArgument otherwise.
Result<std::pair<std::string, std::uint16_t>> split_host_port(std::string_view text);
// Connects with TCP_NODELAY.
// `buffer_bytes`: set_socket_buffers before connecting (0: leave them).
// `local`: an address of this host to leave from ("" = the routes' choice).
// A connection not established within kConnectTimeout fails (kUnavailable)
// rather than waiting out the kernel's two minutes of SYN retries: a dead
// path is given up on, and another tried.
inline constexpr std::chrono::milliseconds kConnectTimeout{20000};
// The congestion control data connections use unless told otherwise (where
// the kernel has it and lets the process pick it; docs/network-path.md has
// the measurements).
inline constexpr const char* kPreferredCongestionControl = "bbr";
Result<UniqueFd> tcp_connect(const std::string& host, std::uint16_t port,
                             std::size_t buffer_bytes = 0, const std::string& local = {},
                             std::chrono::milliseconds timeout = kConnectTimeout);
// Listens (SO_REUSEADDR); port 0 picks a free one.
// `buffer_bytes`: set on the listening socket, so accepted connections
// inherit it (and the window scale they offer allows it).
Result<UniqueFd> tcp_listen(const std::string& host, std::uint16_t port, int backlog = 256,
                            std::size_t buffer_bytes = 0);
// "host:port" of a bound socket.
std::string local_address(int fd);
// True when the connected peer's address is a loopback address.
bool peer_is_loopback(int fd);
// Whether plaintext file data should go out with sendfile: it saves the
// sender a copy on a real network, but over loopback the receiver copies
// anyway and page-cache skbs cost more than they save (2 GiB /dev/shm to
// xferd on 127.0.0.1: sendfile 1.93-2.10 s, buffered 1.73-1.90 s;
// bench/RESULTS.md). XFER_LOOPBACK_SENDFILE=1 forces it on loopback too
// (tests). The one rule for the client and the server.
bool sendfile_pays(bool peer_loopback);
// Tuning applied to every data socket (TCP_NODELAY).
void tune_data_socket(int fd);

// Socket buffers. On loopback 4 MiB each way (measured best there). On a
// path with a round trip, each of `streams` connections gets its share of
// the window, 2 × RTT × kWindowRate / streams, within 4 MiB..`cap`; 0 when
// the round trip is not known (the kernel's autotuning then decides).
inline constexpr std::size_t kLoopbackSocketBuffer = std::size_t{4} << 20;
std::size_t path_socket_buffer(double rtt_ms, unsigned streams, std::size_t cap);
// Sets SO_SNDBUF and SO_RCVBUF to `bytes`, past net.core.{w,r}mem_max when
// the process may (CAP_NET_ADMIN: SO_*BUFFORCE). Without that privilege a
// size above the system's maximum is not set at all: a fixed buffer turns
// autotuning off, and a cap below what the path needs would only slow it.
// Returns the size set, 0 when none. Before connect/listen, so that the
// window scale negotiated in the handshake can use it.
std::size_t set_socket_buffers(int fd, std::size_t bytes);
// TCP_CONGESTION on a data socket ("bbr", "cubic"). An algorithm this
// kernel lacks, or may not give an unprivileged process, is an error that
// lists the ones it has (net.ipv4.tcp_available_congestion_control).
Status set_congestion_control(int fd, const std::string& name);

}  // namespace xfer::protocol
