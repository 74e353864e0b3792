#pragma once
// The link model of one direction of an emulated link, with no I/O: given a
// frame's arrival time and size it says whether the frame is lost (random or
// Gilbert–Elliott loss), dropped at a full drop-tail queue, or cut, and
// otherwise when it leaves the far end (serialised at the link rate behind
// the frames before it, then the one-way delay plus jitter; a reordered frame
// is held back by an extra gap). Pure and seeded: the same seed and the same
// arrivals give the same verdicts, so a run can be repeated and unit-tested.
//
// Threading: a DirectionModel belongs to one link thread; not thread-safe.

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "xfer/core/result.hpp"

namespace netlab {

// One direction's settings. Rates are in bit/s, times in nanoseconds, sizes
// in bytes, probabilities in [0, 1].
struct DirectionParams {
  std::uint64_t rate_bps = 0;  // 0: unlimited (no serialisation, no queue)
  std::int64_t delay_ns = 0;   // one-way propagation delay
  std::int64_t jitter_ns = 0;  // delay varies uniformly in ±jitter (order kept)
  double loss = 0;             // independent random loss
  // Gilbert–Elliott bursty loss: the chain moves good→bad with ge_p and
  // bad→good with ge_r per frame; a frame is lost with ge_loss_bad in the bad
  // state and ge_loss_good in the good one. Off while ge_p == 0.
  double ge_p = 0;
  double ge_r = 1;
  double ge_loss_bad = 1;
  double ge_loss_good = 0;
  double reorder = 0;                       // share of frames held back...
  std::int64_t reorder_gap_ns = 1'000'000;  // ...by this much more delay
  double duplicate = 0;                     // share of frames delivered twice
  std::uint64_t queue_bytes = 0;            // drop-tail limit; 0: default_queue_bytes()
  bool up = true;                           // false: the link is cut, all frames lost

  // The queue used when queue_bytes is 0: one bandwidth-delay product of the
  // link's round trip (rate × 2 × delay), at least 64 KiB (a router sized by
  // the classic rule of thumb).
  std::uint64_t default_queue_bytes() const;
  std::uint64_t effective_queue_bytes() const {
    return queue_bytes != 0 ? queue_bytes : default_queue_bytes();
  }
};

// Sets one key of `p` from text in tc's units: rate=1gbit|100mbit|500kbit|
// 12mbps (bytes), delay=25ms|300us|1s, jitter=…, loss=0.1%, ge_p=…, ge_r=…,
// ge_loss_bad=…, ge_loss_good=…, reorder=1%, reorder_gap=2ms, duplicate=…,
// queue=256kb|1mb|4000b (1024-based as in tc), up=0|1. An unknown key or a
// value out of range is an error naming both.
xfer::Status set_param(DirectionParams& p, std::string_view key, std::string_view value);

// Unit parsers, also used by the topology loader.
xfer::Result<std::uint64_t> parse_rate(std::string_view text);   // bit/s
xfer::Result<std::int64_t> parse_time(std::string_view text);    // ns
xfer::Result<std::uint64_t> parse_bytes(std::string_view text);  // bytes
xfer::Result<double> parse_probability(std::string_view text);   // "1%" or "0.01"

enum class Fate { kDeliver, kLost, kQueueFull, kCut };

struct Verdict {
  Fate fate = Fate::kDeliver;
  std::int64_t deliver_at_ns = 0;  // when kDeliver
  bool in_order = true;            // false: held back, may be overtaken
  bool duplicate = false;          // deliver a second copy right after
};

struct DirectionCounters {
  std::uint64_t frames_in = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t lost = 0;        // random or Gilbert–Elliott loss
  std::uint64_t queue_full = 0;  // drop-tail
  std::uint64_t cut = 0;         // the link was down
  std::uint64_t reordered = 0;
  std::uint64_t duplicated = 0;
};

class DirectionModel {
 public:
  explicit DirectionModel(std::uint64_t seed) : rng_(seed) {}

  // New settings take effect for frames arriving from now on; frames already
  // admitted keep their times. Going down does not clear what is in flight
  // (the caller drops it: a cut cable loses what was on it).
  void set(const DirectionParams& params) { params_ = params; }
  const DirectionParams& params() const { return params_; }

  // A frame of `frame_bytes` (its layer-2 length, as tc counts it) arrives
  // at `now_ns` (monotonic, non-decreasing between calls).
  Verdict admit(std::int64_t now_ns, std::uint32_t frame_bytes);

  // Bytes waiting to be serialised at `now_ns` (the drop-tail queue).
  std::uint64_t backlog_bytes(std::int64_t now_ns) const;

  const DirectionCounters& counters() const { return counters_; }

 private:
  bool chance(double p) { return p > 0 && (p >= 1 || uniform_(rng_) < p); }

  DirectionParams params_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  bool ge_bad_ = false;
  std::int64_t link_free_at_ns_ = 0;   // the end of the last frame's serialisation
  std::int64_t last_in_order_ns_ = 0;  // the last in-order delivery time (FIFO)
  DirectionCounters counters_;
};

}  // namespace netlab
