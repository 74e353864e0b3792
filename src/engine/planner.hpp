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

// `rtt_ms`: the larger of the two endpoints' link estimates. The chunk
// layout never depends on it (a resumed job must find the same chunks); only
// how many of them are in flight does.
FilePlan plan_file(std::uint64_t size, const Capabilities& source, const Capabilities& sink,
                   const TransferOptions& options, double rtt_ms = 0);

}  // namespace xfer
