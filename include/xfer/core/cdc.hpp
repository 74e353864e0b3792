#pragma once
// Content-defined chunking and the delta between two versions of a file
// (xfer sync's delta transfer, docs/sync.md "Delta").
//
// A file is cut into blocks where a rolling gear hash of its last bytes
// meets a mask (FastCDC with normalised chunking): the cut points depend on
// the content only, so an insertion moves the cuts near it and every later
// block is found again at its new offset. Each block is named by its length
// and XXH3-128. Both ends cut their version with the same parameters (they
// travel in the Signature RPC), the client matches the blocks, and the
// destination is rebuilt from its old blocks plus the new bytes.
//
// The gear table is part of the wire contract (docs/protocol.md): 256 values
// of splitmix64 seeded with 0x7866657263646321, in order.
//
// Threading: pure functions and a chunker that one thread feeds in order.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "xfer/core/checksum.hpp"
#include "xfer/core/result.hpp"

namespace xfer {

// Block sizes in bytes: no cut before `min`, one at `max` at the latest,
// `avg` (a power of two) on average.
struct CdcParams {
  std::uint32_t min = 16u << 10;
  std::uint32_t avg = 64u << 10;
  std::uint32_t max = 256u << 10;
  bool operator==(const CdcParams&) const = default;
};

// The parameters for a file of `size` bytes: 64 KiB blocks on average up to
// 4 GiB, larger above so that a file up to 4 TiB has about 65,536 of them
// (blocks of 64 MiB on average above: 262,144 at 16 TiB, a 5 MiB
// signature); min = avg / 4 and max = avg * 4.
CdcParams cdc_params_for(std::uint64_t size);
// Parameters from a peer: avg a power of two, 4 KiB <= min <= avg <= max
// <= 256 MiB, max >= 2 * avg. kInvalidArgument otherwise.
Status validate_cdc_params(const CdcParams& p);

struct BlockSig {
  std::uint32_t length = 0;
  std::uint64_t high = 0;  // XXH3-128 of the block's bytes
  std::uint64_t low = 0;
};

// A file's blocks, in order, with what it was when it was read.
struct Signature {
  CdcParams params;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  FileDigest digest;  // the whole file's XXH3-128
  std::vector<BlockSig> blocks;
};

// Cuts a byte stream into blocks. Feed it in order; each finished block is
// passed to the callback; finish() ends the last one.
class CdcChunker {
 public:
  using OnBlock = std::function<void(const BlockSig&)>;
  CdcChunker(CdcParams params, OnBlock on_block);
  void update(std::span<const std::byte> data);
  void finish();

 private:
  void cut();
  CdcParams params_;
  OnBlock on_block_;
  std::uint64_t mask_small_;  // before avg: harder to meet (longer blocks)
  std::uint64_t mask_large_;  // after avg: easier (blocks end soon)
  std::uint64_t hash_ = 0;
  std::uint32_t length_ = 0;  // bytes in the current block
  Xxh3Stream128 block_hash_;
};

// Checks a signature that came from a peer against the parameters asked
// for: each block 1..max bytes, at least min except the last, the lengths
// adding up to `size`. kCorrupt otherwise.
Status validate_signature(const Signature& sig, const CdcParams& asked);

// One step of rebuilding the new version: `length` bytes at `offset` in the
// new file, either taken from the old file at `basis_offset` or read from
// the new one (a literal, what crosses the network).
struct DeltaOp {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  bool from_basis = false;
  std::uint64_t basis_offset = 0;
};

struct DeltaPlan {
  std::vector<DeltaOp> ops;  // in order, covering [0, new size); neighbours merged
  std::uint64_t literal_bytes = 0;
  std::uint64_t matched_bytes = 0;
};

// The new file (`source`) as blocks of the old one (`basis`) where they
// match by length and XXH3-128, and literals elsewhere.
DeltaPlan plan_delta(const Signature& source, const Signature& basis);

}  // namespace xfer
