// Pooled I/O buffers charged to the memory governor (buffer_pool.hpp).
// Any worker thread; the free list is under one mutex.

#include "xfer/io/buffer_pool.hpp"

#include <cstdlib>
#include <new>

namespace xfer {

Buffer::~Buffer() {
  release();
}

Buffer::Buffer(Buffer&& other) noexcept
    : pool_(other.pool_), data_(other.data_), capacity_(other.capacity_), size_(other.size_) {
  other.pool_ = nullptr;
  other.data_ = nullptr;
  other.capacity_ = other.size_ = 0;
}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    pool_ = other.pool_;
    data_ = other.data_;
    capacity_ = other.capacity_;
    size_ = other.size_;
    other.pool_ = nullptr;
    other.data_ = nullptr;
    other.capacity_ = other.size_ = 0;
  }
  return *this;
}

void Buffer::release() {
  if (pool_ != nullptr && data_ != nullptr) pool_->give_back(data_);
  pool_ = nullptr;
  data_ = nullptr;
  capacity_ = size_ = 0;
}

// Buffers are rounded up to the O_DIRECT alignment, so any of them can be
// handed to an O_DIRECT descriptor.
BufferPool::BufferPool(MemoryGovernor& governor, std::size_t buffer_size)
    : governor_(governor), buffer_size_((buffer_size + kAlignment - 1) / kAlignment * kAlignment) {}

BufferPool::~BufferPool() {
  for (std::byte* p : free_) std::free(p);
}

// The governor counts buffers in use, not memory allocated: a buffer from
// the free list is charged like a new one, so --memory bounds what the
// workers hold at once (reserve blocks at the hard limit).
Buffer BufferPool::acquire() {
  governor_.reserve(buffer_size_);
  {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      std::byte* p = free_.back();
      free_.pop_back();
      return Buffer(this, p, buffer_size_);
    }
  }
  void* p = std::aligned_alloc(kAlignment, buffer_size_);
  if (p == nullptr) {
    governor_.release(buffer_size_);
    throw std::bad_alloc();
  }
  return Buffer(this, static_cast<std::byte*>(p), buffer_size_);
}

void BufferPool::give_back(std::byte* data) {
  {
    std::lock_guard lock(mu_);
    free_.push_back(data);
  }
  governor_.release(buffer_size_);
}

std::size_t BufferPool::free_count() const {
  std::lock_guard lock(mu_);
  return free_.size();
}

}  // namespace xfer
