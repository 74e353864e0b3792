#pragma once
// Per-file strategy: a file at or under the small threshold is moved whole by
// one worker (many such files are in flight at once); a larger file is split
// into chunks that several workers move in parallel, out of order.
//
// A pure function: any thread.

#include <cstdint>

#include "xfer/backend/backend.hpp"
#include "xfer/engine/options.hpp"

namespace xfer {

enum class Strategy { kWhole, kChunked };

struct FilePlan {
  Strategy strategy = Strategy::kWhole;
  std::uint64_t chunk_size = 0;  // kChunked only
  std::uint64_t chunks = 1;
  unsigned parallelism = 1;  // chunks of this file in flight at once
};

FilePlan plan_file(std::uint64_t size, const Capabilities& source, const Capabilities& sink,
                   const TransferOptions& options);

}  // namespace xfer
