// The change feed (changes.hpp): a bounded queue of change events between
// a producer and the engine's scanner thread, under one mutex.

#include "xfer/engine/changes.hpp"

namespace xfer {

bool ChangeFeed::push(ChangeEvent event) {
  std::unique_lock lock(mu_);
  space_cv_.wait(lock, [&] { return closed_ || events_.size() < capacity_; });
  if (closed_) return false;
  events_.push_back(std::move(event));
  ready_cv_.notify_one();
  return true;
}

void ChangeFeed::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  ready_cv_.notify_all();
  space_cv_.notify_all();
}

std::optional<ChangeEvent> ChangeFeed::next(std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  ready_cv_.wait_for(lock, wait, [&] { return closed_ || !events_.empty(); });
  if (events_.empty()) return std::nullopt;
  ChangeEvent e = std::move(events_.front());
  events_.pop_front();
  space_cv_.notify_one();
  return e;
}

bool ChangeFeed::drained() const {
  std::lock_guard lock(mu_);
  return closed_ && events_.empty();
}

}  // namespace xfer
