// The memory budget of a transfer (memory_governor.hpp): reservations from
// any thread under one mutex; waiters sleep on a condition variable.

#include "xfer/io/memory_governor.hpp"

#include <algorithm>

namespace xfer {

MemoryGovernor::MemoryGovernor(std::uint64_t hard_limit, double soft_fraction)
    : hard_(std::max<std::uint64_t>(hard_limit, 1)),
      soft_(static_cast<std::uint64_t>(static_cast<double>(hard_) *
                                       std::clamp(soft_fraction, 0.0, 1.0))) {}

void MemoryGovernor::reserve(std::uint64_t bytes) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return used_ + bytes <= hard_ || used_ == 0; });
  used_ += bytes;
  peak_ = std::max(peak_, used_);
}

bool MemoryGovernor::try_reserve(std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  if (used_ + bytes > hard_ && used_ != 0) return false;
  used_ += bytes;
  peak_ = std::max(peak_, used_);
  return true;
}

void MemoryGovernor::release(std::uint64_t bytes) {
  {
    std::lock_guard lock(mu_);
    used_ -= std::min(bytes, used_);
  }
  cv_.notify_all();
}

bool MemoryGovernor::pressure() const {
  std::lock_guard lock(mu_);
  return used_ > soft_;
}

std::uint64_t MemoryGovernor::used() const {
  std::lock_guard lock(mu_);
  return used_;
}

std::uint64_t MemoryGovernor::peak() const {
  std::lock_guard lock(mu_);
  return peak_;
}

}  // namespace xfer
