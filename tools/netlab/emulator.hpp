#pragma once
// The emulator: one LinkEmulator per link forwards Ethernet frames between
// the link's two veth ends in the switch namespace ("l<i>a" faces hosts[0],
// "l<i>b" hosts[1]) through AF_PACKET sockets, each direction through its
// DirectionModel: frames wait in a FIFO until their delivery time (times are
// monotone for in-order frames, so the FIFO is exact) and held-back
// (reordered) frames in a heap. Frame buffers come from a pool bounded per
// link (kMaxInflightBytes); a frame that finds it full is dropped and counted.
//
// Threading: each LinkEmulator runs one thread of its own (start()/stop());
// set() and stats() are called from the control thread and take the link's
// mutex; the forwarding loop takes it only to pick up new settings (signalled
// by an eventfd) and to publish counters every 50 ms.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "model.hpp"
#include "topology.hpp"
#include "xfer/core/result.hpp"

namespace netlab {

// Frames buffered per link, both directions together: enough for 1 Gbit/s
// over a 1 s one-way delay plus its queue.
inline constexpr std::uint64_t kMaxInflightBytes = std::uint64_t{256} << 20;

// The switch-side interface names of link `index`.
std::string switch_ifname(int index, int side);

struct DirectionStats {
  DirectionCounters model;
  std::uint64_t delivered = 0;
  std::uint64_t bytes_delivered = 0;
  std::uint64_t overflow = 0;        // no buffer left (kMaxInflightBytes)
  std::uint64_t oversize = 0;        // longer than the link's MTU allows
  std::uint64_t send_errors = 0;     // the far veth refused the frame
  std::uint64_t flushed_by_cut = 0;  // in flight when the link was cut
};

class LinkEmulator {
 public:
  // Opens the two packet sockets (in the calling thread's namespace).
  static xfer::Result<std::unique_ptr<LinkEmulator>> open(const Link& link, int index,
                                                          std::uint64_t seed);
  ~LinkEmulator();
  LinkEmulator(const LinkEmulator&) = delete;
  LinkEmulator& operator=(const LinkEmulator&) = delete;

  void start();
  void stop();

  // Applies key=value settings to the direction leaving host `from` (both
  // when nullopt). All or nothing: a bad pair changes nothing.
  xfer::Status set(std::optional<int> side,
                   const std::vector<std::pair<std::string, std::string>>& settings);

  nlohmann::json stats();
  const Link& link() const { return link_; }

 private:
  struct Impl;
  LinkEmulator(Link link, std::unique_ptr<Impl> impl);

  Link link_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace netlab
