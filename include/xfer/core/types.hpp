#pragma once
// Strong types for the numbers that must never be mixed up: byte offsets,
// byte lengths, file ids and chunk ids. Arithmetic is explicit: an Offset
// plus a Length is an Offset; two Offsets subtract to a Length.

#include <compare>
#include <cstdint>
#include <functional>

namespace xfer {

template <typename Tag, typename Rep = std::uint64_t>
class StrongInt {
 public:
  using rep = Rep;
  constexpr StrongInt() = default;
  constexpr explicit StrongInt(Rep v) : v_(v) {}
  constexpr Rep get() const { return v_; }
  constexpr auto operator<=>(const StrongInt&) const = default;

 private:
  Rep v_{};
};

struct OffsetTag {};
struct LengthTag {};
struct FileIdTag {};
struct ChunkIdTag {};

using Offset = StrongInt<OffsetTag>;
using Length = StrongInt<LengthTag>;
using FileId = StrongInt<FileIdTag>;
using ChunkId = StrongInt<ChunkIdTag, std::uint32_t>;

constexpr Offset operator+(Offset o, Length l) {
  return Offset{o.get() + l.get()};
}
constexpr Length operator-(Offset a, Offset b) {
  return Length{a.get() - b.get()};
}
constexpr Length operator+(Length a, Length b) {
  return Length{a.get() + b.get()};
}

inline constexpr std::uint64_t kKiB = 1024;
inline constexpr std::uint64_t kMiB = 1024 * kKiB;
inline constexpr std::uint64_t kGiB = 1024 * kMiB;

}  // namespace xfer

template <typename Tag, typename Rep>
struct std::hash<xfer::StrongInt<Tag, Rep>> {
  size_t operator()(const xfer::StrongInt<Tag, Rep>& v) const noexcept {
    return std::hash<Rep>{}(v.get());
  }
};
