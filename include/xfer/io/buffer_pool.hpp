#pragma once
// Aligned I/O buffers recycled through a pool. A Buffer is a move-only handle:
// when it is destroyed its memory goes back to the pool (and its bytes back to
// the MemoryGovernor budget). Buffers are aligned to 4096 bytes so they can be
// used with O_DIRECT.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "xfer/io/memory_governor.hpp"

namespace xfer {

class BufferPool;

class Buffer {
 public:
  Buffer() = default;
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  std::size_t capacity() const { return capacity_; }
  // Number of valid bytes (set by whoever filled the buffer).
  std::size_t size() const { return size_; }
  void set_size(std::size_t n) { size_ = n; }
  std::span<std::byte> writable() { return {data_, capacity_}; }
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  explicit operator bool() const { return data_ != nullptr; }

 private:
  friend class BufferPool;
  Buffer(BufferPool* pool, std::byte* data, std::size_t capacity)
      : pool_(pool), data_(data), capacity_(capacity) {}
  void release();

  BufferPool* pool_ = nullptr;
  std::byte* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t size_ = 0;
};

// Thread-safe. Must outlive every Buffer it hands out.
class BufferPool {
 public:
  static constexpr std::size_t kAlignment = 4096;

  BufferPool(MemoryGovernor& governor, std::size_t buffer_size);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // Blocks while the governor's hard limit is reached.
  Buffer acquire();
  std::size_t buffer_size() const { return buffer_size_; }
  std::size_t free_count() const;

 private:
  friend class Buffer;
  void give_back(std::byte* data);

  MemoryGovernor& governor_;
  const std::size_t buffer_size_;
  mutable std::mutex mu_;
  std::vector<std::byte*> free_;
};

}  // namespace xfer
