// Content-defined chunking and delta plans (core/cdc.hpp): cuts follow the
// content, so an insertion costs the blocks around it and nothing more, and
// a plan rebuilds the new file exactly.

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "xfer/core/cdc.hpp"

namespace xfer {
namespace {

std::vector<std::byte> random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; i += 8) {
    const std::uint64_t x = rng();
    std::memcpy(v.data() + i, &x, std::min<std::size_t>(8, n - i));
  }
  return v;
}

// Fed in pieces of `piece` bytes, as a reader would.
Signature sign(std::span<const std::byte> data, CdcParams p, std::size_t piece = 1u << 20) {
  Signature sig;
  sig.params = p;
  sig.size = data.size();
  CdcChunker chunker(p, [&](const BlockSig& b) { sig.blocks.push_back(b); });
  for (std::size_t i = 0; i < data.size(); i += piece) {
    chunker.update(data.subspan(i, std::min(piece, data.size() - i)));
  }
  chunker.finish();
  return sig;
}

// Rebuilds the new file from the plan: old blocks from `basis`, literals from `now`.
std::vector<std::byte> rebuild(const DeltaPlan& plan, std::span<const std::byte> basis,
                               std::span<const std::byte> now) {
  std::vector<std::byte> out;
  for (const DeltaOp& op : plan.ops) {
    EXPECT_EQ(op.offset, out.size());
    auto from = op.from_basis ? basis.subspan(op.basis_offset, op.length)
                              : now.subspan(op.offset, op.length);
    out.insert(out.end(), from.begin(), from.end());
  }
  return out;
}

TEST(Cdc, CutsDependOnContentNotOnHowItIsFed) {
  const CdcParams p = cdc_params_for(8u << 20);
  auto data = random_bytes(8u << 20, 1);
  Signature whole = sign(data, p, data.size());
  Signature small = sign(data, p, 4093);  // pieces that straddle every boundary
  ASSERT_EQ(whole.blocks.size(), small.blocks.size());
  for (std::size_t i = 0; i < whole.blocks.size(); ++i) {
    EXPECT_EQ(whole.blocks[i].length, small.blocks[i].length) << i;
    EXPECT_EQ(whole.blocks[i].low, small.blocks[i].low) << i;
  }
  EXPECT_TRUE(validate_signature(whole, p).ok());
  // Blocks average near the target and keep their bounds.
  const double mean = static_cast<double>(data.size()) / static_cast<double>(whole.blocks.size());
  EXPECT_GT(mean, p.avg * 0.6);
  EXPECT_LT(mean, p.avg * 1.6);
}

TEST(Cdc, AnInsertedByteCostsOneOrTwoBlocks) {
  const CdcParams p = cdc_params_for(16u << 20);
  auto old_data = random_bytes(16u << 20, 2);
  auto new_data = old_data;
  new_data.insert(new_data.begin(), std::byte{0x42});
  DeltaPlan plan = plan_delta(sign(new_data, p), sign(old_data, p));
  EXPECT_EQ(plan.literal_bytes + plan.matched_bytes, new_data.size());
  EXPECT_LE(plan.literal_bytes, 2ull * p.max);
  EXPECT_EQ(rebuild(plan, old_data, new_data), new_data);
}

TEST(Cdc, AChangedMiddleCostsAboutItsOwnSize) {
  const CdcParams p = cdc_params_for(32u << 20);
  auto old_data = random_bytes(32u << 20, 3);
  auto new_data = old_data;
  auto fresh = random_bytes(1u << 20, 4);
  std::memcpy(new_data.data() + (16u << 20), fresh.data(), fresh.size());
  DeltaPlan plan = plan_delta(sign(new_data, p), sign(old_data, p));
  EXPECT_GE(plan.literal_bytes, 1u << 20);
  EXPECT_LE(plan.literal_bytes, (1u << 20) + 2ull * p.max);
  EXPECT_EQ(rebuild(plan, old_data, new_data), new_data);
  // Neighbouring ops merge: one copy, one literal, one copy.
  EXPECT_LE(plan.ops.size(), 3u);
}

TEST(Cdc, MovedAndRepeatedContentIsFoundAnywhere) {
  const CdcParams p = cdc_params_for(4u << 20);
  auto a = random_bytes(2u << 20, 5);
  auto b = random_bytes(2u << 20, 6);
  std::vector<std::byte> old_data = a;
  old_data.insert(old_data.end(), b.begin(), b.end());
  std::vector<std::byte> new_data = b;  // the halves swapped, and b twice
  new_data.insert(new_data.end(), a.begin(), a.end());
  new_data.insert(new_data.end(), b.begin(), b.end());
  DeltaPlan plan = plan_delta(sign(new_data, p), sign(old_data, p));
  EXPECT_LE(plan.literal_bytes, 6ull * p.max);
  EXPECT_EQ(rebuild(plan, old_data, new_data), new_data);
}

TEST(Cdc, EmptyAndTinyFiles) {
  const CdcParams p = cdc_params_for(0);
  EXPECT_TRUE(sign({}, p).blocks.empty());
  auto tiny = random_bytes(100, 7);
  Signature s = sign(tiny, p);
  ASSERT_EQ(s.blocks.size(), 1u);
  EXPECT_EQ(s.blocks[0].length, 100u);
  EXPECT_TRUE(validate_signature(s, p).ok());
  DeltaPlan plan = plan_delta(s, sign({}, p));
  EXPECT_EQ(plan.literal_bytes, 100u);
  EXPECT_EQ(rebuild(plan, {}, tiny), tiny);
}

TEST(Cdc, ParamsScaleWithTheFileAndPeersParamsAreChecked) {
  EXPECT_EQ(cdc_params_for(1u << 30).avg, 64u << 10);
  EXPECT_EQ(cdc_params_for(16ull << 40).avg, 64u << 20);
  EXPECT_LE((16ull << 40) / cdc_params_for(16ull << 40).avg, 262144u);
  for (std::uint64_t size : {0ull, 1ull << 20, 1ull << 30, 1ull << 40, 16ull << 40}) {
    EXPECT_TRUE(validate_cdc_params(cdc_params_for(size)).ok()) << size;
  }
  EXPECT_FALSE(validate_cdc_params({16u << 10, 60000, 256u << 10}).ok());     // not a power of two
  EXPECT_FALSE(validate_cdc_params({1, 64u << 10, 256u << 10}).ok());         // min too small
  EXPECT_FALSE(validate_cdc_params({16u << 10, 64u << 10, 64u << 10}).ok());  // max < 2 avg
  EXPECT_FALSE(validate_cdc_params({1u << 30, 1u << 30, 2u << 30}).ok());     // too large
}

TEST(Cdc, APeersBadSignatureIsRefused) {
  const CdcParams p = cdc_params_for(1u << 20);
  Signature s;
  s.params = p;
  s.size = 100u << 10;
  s.blocks = {{p.min, 1, 1}, {static_cast<std::uint32_t>((100u << 10) - p.min), 2, 2}};
  EXPECT_TRUE(validate_signature(s, p).ok());
  Signature other = s;
  other.params.avg *= 2;
  EXPECT_FALSE(validate_signature(other, p).ok());  // not what was asked
  Signature zero = s;
  zero.blocks.insert(zero.blocks.begin(), BlockSig{0, 0, 0});
  EXPECT_FALSE(validate_signature(zero, p).ok());
  Signature short_first = s;
  short_first.blocks[0].length = 10;
  short_first.blocks[1].length += p.min - 10;
  EXPECT_FALSE(validate_signature(short_first, p).ok());  // under min before the last
  Signature big = s;
  big.blocks = {{p.max + 1, 0, 0}};
  big.size = p.max + 1;
  EXPECT_FALSE(validate_signature(big, p).ok());
  Signature longer = s;
  longer.size -= 1;
  EXPECT_FALSE(validate_signature(longer, p).ok());
  Signature shorter = s;
  shorter.size += 1;
  EXPECT_FALSE(validate_signature(shorter, p).ok());
}

}  // namespace
}  // namespace xfer
