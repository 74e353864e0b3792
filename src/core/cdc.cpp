// Content-defined chunking and delta plans (cdc.hpp). The chunker belongs
// to the thread feeding it; everything else is pure.

#include "xfer/core/cdc.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <unordered_map>

namespace xfer {
namespace {

// splitmix64: the gear table's generator (part of the wire contract).
constexpr std::array<std::uint64_t, 256> make_gear() {
  std::array<std::uint64_t, 256> gear{};
  std::uint64_t state = 0x7866657263646321ull;
  for (auto& g : gear) {
    state += 0x9e3779b97f4a7c15ull;
    std::uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    g = z ^ (z >> 31);
  }
  return gear;
}
constexpr std::array<std::uint64_t, 256> kGear = make_gear();

// `bits` one-bits at the top of the word: the gear hash's high bits depend
// on its last 64 bytes, its low bits on the last few only.
constexpr std::uint64_t top_mask(unsigned bits) {
  return bits == 0 ? 0 : ~std::uint64_t{0} << (64 - bits);
}

constexpr std::uint32_t kMinBlockFloor = 4u << 10;
constexpr std::uint32_t kMaxBlockCeiling = 256u << 20;

}  // namespace

CdcParams cdc_params_for(std::uint64_t size) {
  std::uint64_t avg = 64u << 10;
  while (avg < (64u << 20) && size / avg > 65536) avg <<= 1;
  CdcParams p;
  p.avg = static_cast<std::uint32_t>(avg);
  p.min = p.avg / 4;
  p.max = p.avg * 4;
  return p;
}

Status validate_cdc_params(const CdcParams& p) {
  if (!std::has_single_bit(p.avg) || p.min < kMinBlockFloor || p.min > p.avg ||
      p.max > kMaxBlockCeiling || p.max < 2ull * p.avg) {
    return make_error(ErrorCode::kInvalidArgument, "signature", "",
                      fmt::format("block sizes {}/{}/{} are not allowed (avg a power of two, "
                                  "4 KiB <= min <= avg, 2 * avg <= max <= 256 MiB)",
                                  p.min, p.avg, p.max));
  }
  return ok_status();
}

CdcChunker::CdcChunker(CdcParams params, OnBlock on_block)
    : params_(params), on_block_(std::move(on_block)) {
  const unsigned bits = static_cast<unsigned>(std::countr_zero(params_.avg));
  mask_small_ = top_mask(std::min(bits + 2, 63u));
  mask_large_ = top_mask(bits > 2 ? bits - 2 : 1);
}

void CdcChunker::update(std::span<const std::byte> data) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  const std::size_t n = data.size();
  std::size_t i = 0;
  while (i < n) {
    const std::size_t start = i;
    bool cut_here = false;
    if (length_ < params_.min) {
      // No cut this early: the bytes are only hashed into the block.
      const std::size_t take = std::min<std::size_t>(n - i, params_.min - length_);
      i += take;
      length_ += static_cast<std::uint32_t>(take);
    }
    // Rolls the hash up to the block's length `until`, or to a cut where
    // the top bits of `mask` are zero.
    auto roll = [&](std::uint32_t until, std::uint64_t mask) {
      const std::size_t end = std::min<std::size_t>(n, i + (until - length_));
      const std::size_t from = i;
      std::uint64_t h = hash_;
      while (i < end) {
        h = (h << 1) + kGear[p[i++]];
        if ((h & mask) == 0) {
          cut_here = true;
          break;
        }
      }
      hash_ = h;
      length_ += static_cast<std::uint32_t>(i - from);
    };
    if (length_ >= params_.min && length_ < params_.avg) roll(params_.avg, mask_small_);
    if (!cut_here && length_ >= params_.avg) {
      roll(params_.max, mask_large_);
      if (length_ >= params_.max) cut_here = true;
    }
    block_hash_.update(data.subspan(start, i - start));
    if (cut_here) cut();
  }
}

void CdcChunker::finish() {
  if (length_ > 0) cut();
}

void CdcChunker::cut() {
  BlockSig b;
  b.length = length_;
  std::tie(b.high, b.low) = block_hash_.digest();
  on_block_(b);
  block_hash_.reset();
  length_ = 0;
  hash_ = 0;
}

Status validate_signature(const Signature& sig, const CdcParams& asked) {
  auto bad = [](std::string why) {
    return make_error(ErrorCode::kCorrupt, "signature", "", "peer sent a bad signature: " + why);
  };
  if (sig.params != asked) return bad("other block sizes than asked for");
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < sig.blocks.size(); ++i) {
    const std::uint32_t len = sig.blocks[i].length;
    if (len == 0 || len > asked.max) return bad(fmt::format("block {} of {} bytes", i, len));
    if (len < asked.min && i + 1 != sig.blocks.size()) {
      return bad(fmt::format("block {} of {} bytes before the last", i, len));
    }
    sum += len;
    if (sum > sig.size) return bad("blocks longer than the file");
  }
  if (sum != sig.size) return bad("blocks shorter than the file");
  return ok_status();
}

DeltaPlan plan_delta(const Signature& source, const Signature& basis) {
  // The old file's blocks by hash (the first of equal blocks wins).
  std::unordered_map<std::uint64_t, std::size_t> by_low;
  by_low.reserve(basis.blocks.size());
  std::vector<std::uint64_t> basis_offset(basis.blocks.size());
  std::uint64_t off = 0;
  for (std::size_t i = 0; i < basis.blocks.size(); ++i) {
    basis_offset[i] = off;
    off += basis.blocks[i].length;
    by_low.emplace(basis.blocks[i].low, i);
  }
  DeltaPlan plan;
  auto add = [&plan](DeltaOp op) {
    if (!plan.ops.empty()) {
      DeltaOp& last = plan.ops.back();
      if (last.from_basis == op.from_basis &&
          (!op.from_basis || last.basis_offset + last.length == op.basis_offset)) {
        last.length += op.length;
        return;
      }
    }
    plan.ops.push_back(op);
  };
  std::uint64_t pos = 0;
  for (const BlockSig& b : source.blocks) {
    DeltaOp op{pos, b.length, false, 0};
    auto it = by_low.find(b.low);
    if (it != by_low.end()) {
      const BlockSig& old = basis.blocks[it->second];
      if (old.high == b.high && old.length == b.length) {
        op.from_basis = true;
        op.basis_offset = basis_offset[it->second];
      }
    }
    (op.from_basis ? plan.matched_bytes : plan.literal_bytes) += b.length;
    add(op);
    pos += b.length;
  }
  return plan;
}

}  // namespace xfer
