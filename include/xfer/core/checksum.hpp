#pragma once
// XXH3-64 checksums (libxxhash). One-shot for chunks, streaming for whole files.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace xfer {

std::uint64_t xxh3_64(std::span<const std::byte> data);

// Streaming XXH3-64. Not thread-safe; feed bytes in order.
class Xxh3Stream {
 public:
  Xxh3Stream();
  ~Xxh3Stream();
  Xxh3Stream(Xxh3Stream&&) noexcept;
  Xxh3Stream& operator=(Xxh3Stream&&) noexcept;
  void update(std::span<const std::byte> data);
  std::uint64_t digest() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace xfer
