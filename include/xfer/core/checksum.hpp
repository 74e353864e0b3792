#pragma once
// XXH3-64 checksums (libxxhash). One-shot for chunks, streaming for whole files.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

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

// Streaming XXH3-128: a whole file's fingerprint (sync --checksum). Not
// thread-safe; feed bytes in order.
class Xxh3Stream128 {
 public:
  Xxh3Stream128();
  ~Xxh3Stream128();
  Xxh3Stream128(Xxh3Stream128&&) noexcept;
  Xxh3Stream128& operator=(Xxh3Stream128&&) noexcept;
  void update(std::span<const std::byte> data);
  std::pair<std::uint64_t, std::uint64_t> digest() const;  // (high, low)
  void reset();                                            // starts over, as if new

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// A whole file's XXH3-128 with the size and mtime it had when it was read.
struct FileDigest {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t high = 0;
  std::uint64_t low = 0;
  bool same_bytes(const FileDigest& o) const {
    return size == o.size && high == o.high && low == o.low;
  }
};

}  // namespace xfer
