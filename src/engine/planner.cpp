// plan_file (planner.hpp): a pure function of a file's size, the two
// backends' capabilities and the options. Any thread.

#include "planner.hpp"

#include <algorithm>
#include <cmath>

namespace xfer {

unsigned auto_parallelism(double rtt_ms, const TransferOptions& options) {
  constexpr unsigned kFloor = 4;  // what a LAN or a local copy needs
  constexpr unsigned kCeiling = 64;
  const double io = static_cast<double>(std::max<std::uint64_t>(options.io_size, 1));
  const double window = 2.0 * rtt_ms / 1000.0 * kWindowRate;
  const auto by_memory = static_cast<unsigned>(
      std::max<std::uint64_t>(kFloor, options.memory / 2 / static_cast<std::uint64_t>(io)));
  const double calls = std::ceil(window / io);
  const unsigned want = calls >= kCeiling ? kCeiling : static_cast<unsigned>(calls);
  return std::clamp(want, kFloor, std::min(kCeiling, by_memory));
}

std::uint64_t link_chunk_cap(const LinkEstimate& link, std::uint64_t io_size) {
  double cap = 0;
  if (link.rtt_ms > 0) {
    cap = static_cast<double>(io_size) * kChunkSeconds * 1000.0 / link.rtt_ms;
  }
  if (link.goodput_bps > 0) {
    const double by_rate = link.goodput_bps * kChunkSeconds;
    cap = cap > 0 ? std::min(cap, by_rate) : by_rate;
  }
  if (cap <= 0) return 0;
  // Past 64 GiB the figure means "no cap" anyway; keep the cast defined.
  const auto bytes = static_cast<std::uint64_t>(std::min(cap, 64.0 * 1024 * 1024 * 1024));
  const std::uint64_t io = std::max<std::uint64_t>(io_size, 1);
  const std::uint64_t floor = (kMiB + io - 1) / io * io;
  return std::max(floor, bytes / io * io);
}

FilePlan plan_file(std::uint64_t size, const Capabilities& source, const Capabilities& sink,
                   const TransferOptions& options, const LinkEstimate& link,
                   std::uint64_t recorded_chunk) {
  const double rtt_ms = link.rtt_ms;
  FilePlan plan;
  const bool can_split = (sink.random_writes || sink.whole_parts) && sink.parallel_writers;
  if (size <= options.small_file_threshold || !can_split) return plan;

  // Auto lays out for 16 in flight (64 chunks of 8-64 MiB), so a long path
  // can keep up to 64 calls of one file outstanding: a chunk has one call
  // in flight at a time. The link may make chunks smaller (link_chunk_cap).
  const unsigned layout = options.chunk_parallelism != 0 ? options.chunk_parallelism : 16;
  const unsigned parallelism = options.chunk_parallelism != 0 ? options.chunk_parallelism
                                                              : auto_parallelism(rtt_ms, options);
  std::uint64_t chunk = options.chunk_size;
  if (chunk == 0) {
    // Enough chunks to keep `layout` workers busy with room to balance,
    // within 8..64 MiB (seed table: 4-64 MiB), rounded to 1 MiB.
    chunk = size / (static_cast<std::uint64_t>(layout) * 4);
    chunk = std::clamp<std::uint64_t>(chunk, 8ull << 20, 64ull << 20);
    chunk = std::max<std::uint64_t>(
        chunk, std::min(source.preferred_chunk_size, sink.preferred_chunk_size) / 2);
    chunk = (chunk + (1ull << 20) - 1) & ~((1ull << 20) - 1);
    // Whole io_size pieces per chunk: --verify keeps one hash per piece.
    const std::uint64_t io = std::max<std::uint64_t>(options.io_size, 1);
    chunk = (chunk + io - 1) / io * io;
    if (const std::uint64_t cap = link_chunk_cap(link, options.io_size); cap != 0) {
      chunk = std::min(chunk, cap);
    }
    // Never more chunks than kMaxAutoChunks (each costs a journal record
    // and a bit and a hash in every snapshot of the file's progress).
    const std::uint64_t fewest = (size + kMaxAutoChunks - 1) / kMaxAutoChunks;
    chunk = std::max(chunk, (fewest + io - 1) / io * io);
    // A file a checkpoint has progress for keeps the layout it was begun
    // with, whatever the link measures now.
    if (recorded_chunk != 0) chunk = recorded_chunk;
  }
  chunk = std::max<std::uint64_t>(chunk, std::max<std::uint64_t>(sink.min_part_size, 4096));
  std::uint64_t chunks = (size + chunk - 1) / chunk;
  if (sink.max_parts != 0 && chunks > sink.max_parts) {
    chunk = (size + sink.max_parts - 1) / sink.max_parts;
    chunks = (size + chunk - 1) / chunk;
  }
  plan.strategy = chunks > 1 ? Strategy::kChunked : Strategy::kWhole;
  plan.chunk_size = chunk;
  plan.chunks = chunks;
  plan.parallelism = std::max(
      1u, std::min<unsigned>(parallelism, std::min(source.max_concurrency, sink.max_concurrency)));
  return plan;
}

}  // namespace xfer
