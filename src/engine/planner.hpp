#pragma once
// Per-file strategy: a file at or under the small threshold is moved whole by
// one worker (many such files are in flight at once); a larger file is split
// into chunks that several workers move in parallel, out of order.
//
// A pure function: any thread.

#include <cstdint>

#include "xfer/backend/backend.hpp"
#include "xfer/core/limits.hpp"
#include "xfer/engine/options.hpp"

namespace xfer {

enum class Strategy { kWhole, kChunked };

struct FilePlan {
  Strategy strategy = Strategy::kWhole;
  std::uint64_t chunk_size = 0;  // kChunked only
  std::uint64_t chunks = 1;
  unsigned parallelism = 1;  // chunks of this file in flight at once
};

// The chunks of one file in flight when chunk_parallelism is auto (0): as
// many io_size calls as keep a window of 2 × RTT × kWindowRate in flight,
// within 4..64 and half the memory budget. Each chunk worker has one call
// outstanding at a time, so a file moves at most window / RTT: four calls of
// 1 MiB carry 80 MiB/s over 50 ms, 27 MiB/s over 150 ms.
unsigned auto_parallelism(double rtt_ms, const TransferOptions& options);

// The largest auto chunk the link allows (0: no cap, nothing measured). A
// chunk is moved by one worker with one io_size call in flight at a time,
// so it takes at least chunk / io_size round trips: the cap keeps that, and
// the chunk's share of the measured goodput, near kChunkSeconds, so the
// last chunks of a file do not hold it long after the others are done and
// an interrupted chunk costs little to re-send. At least 1 MiB, in whole
// io_size pieces. With io_size 1 MiB: 20 MiB at 50 ms, 6 MiB at 150 ms,
// 1 MiB at 600 ms (the seed's table: 8, 4, 1 MB).
inline constexpr double kChunkSeconds = 1.0;
// The most chunks an auto layout gives one file (64 MiB chunks of 1 TiB,
// as before the cap): the cap gives way above it.
inline constexpr std::uint64_t kMaxAutoChunks = 16384;
std::uint64_t link_chunk_cap(const LinkEstimate& link, std::uint64_t io_size);

// `link`: what the two endpoints measured of the path (the larger round
// trip, the smaller goodput). How many chunks are in flight follows the
// round trip; with chunk_size auto the layout also follows the link
// (link_chunk_cap), so a resumed file must keep the layout its checkpoint
// recorded (the engine passes it as `recorded_chunk`, 0: none).
FilePlan plan_file(std::uint64_t size, const Capabilities& source, const Capabilities& sink,
                   const TransferOptions& options, const LinkEstimate& link = {},
                   std::uint64_t recorded_chunk = 0);

}  // namespace xfer
