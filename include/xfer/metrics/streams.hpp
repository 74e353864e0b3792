#pragma once
// Per-connection statistics of data streams (TCP_INFO and byte counts). A
// board belongs to its owner, never to the process: the CLI keeps one per
// run, xferd one per job (EndpointOptions::stats_board); entries are filed
// by group within it. Thread-safe.
// Backends register a provider per live set of connections and remove it
// when they close: the last snapshot is kept, so a summary printed after
// the transfer still sees the figures.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace xfer {

struct StreamStat {
  std::string endpoint;  // "xfer://host:port"
  std::string path;      // the server data address (with "local>" when bound)
  unsigned index = 0;    // connection number within its session
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  double seconds = 0;  // connection lifetime so far
  double rtt_ms = 0;
  std::uint32_t cwnd = 0;  // segments
  std::uint64_t retransmits = 0;
  double min_rtt_ms = 0;
  double delivery_rate_bps = 0;  // TCP's latest delivery-rate sample (bytes/s)
  // Seconds with data in flight, and of those limited by the receiver's
  // window and by the sender's buffer (TCP_INFO; the rest: the network or
  // the application).
  double busy_s = 0;
  double rwnd_limited_s = 0;
  double sndbuf_limited_s = 0;
  double throughput_bps() const {
    return seconds > 0 ? static_cast<double>(bytes_sent + bytes_received) / seconds : 0;
  }
};

// One decision of a stream controller (the xfer backend's AIMD on the
// number of data connections), with the figures it was taken on.
// The engine files its chunk-size decisions here too ("chunk size").
struct ControllerEvent {
  std::string endpoint;       // "xfer://host:port"
  double seconds = 0;         // since the controller (or the transfer) started
  unsigned streams = 0;       // connections after the decision (0: not a stream decision)
  double goodput_bps = 0;     // bytes per second over the last interval
  double retransmit_pct = 0;  // retransmitted / sent segments over it
  // "start", "add", "keep", "remove", "back off", "path changed"; "moved"
  // (calls taken off slow connections, `moved` of them, since the last
  // event); "chunk size" (new files' auto chunk size, from rtt_ms and
  // goodput_bps).
  std::string action;
  unsigned moved = 0;
  double rtt_ms = 0;
  std::uint64_t chunk_size = 0;
};

// What limited a transfer, in one line, from its streams' TCP_INFO times
// (sending side only: a download's TCP state is the server's): "" when
// there were no network streams. Examples: "the network (congestion
// window; 0.4% of segments retransmitted)", "the receiver's window (62% of
// the busy time)".
std::string describe_limit(const std::vector<StreamStat>& streams);

class StreamStatsBoard {
 public:
  // Events are kept in order, at most kMaxEvents (the oldest go first).
  static constexpr std::size_t kMaxEvents = 1024;
  void record(ControllerEvent event);
  std::vector<ControllerEvent> events();

  using Provider = std::function<std::vector<StreamStat>()>;
  std::uint64_t add(std::string group, Provider provider);
  // Takes a final snapshot from the provider and keeps it.
  void remove(std::uint64_t id);
  // Keeps `final_stats` as the entry's last figures (for providers that can
  // no longer be called, e.g. from a destructor).
  void remove(std::uint64_t id, std::vector<StreamStat> final_stats);
  // Live and finished streams of `group` ("" = every group).
  std::vector<StreamStat> snapshot(const std::string& group);
  void clear(const std::string& group);

 private:
  struct Entry {
    std::string group;
    Provider provider;             // empty once removed
    std::vector<StreamStat> last;  // final figures after remove()
  };
  std::mutex mu_;
  std::uint64_t next_ = 1;
  std::map<std::uint64_t, Entry> entries_;
  std::vector<ControllerEvent> events_;
};

}  // namespace xfer
