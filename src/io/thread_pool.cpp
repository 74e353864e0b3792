// A fixed pool of threads draining one bounded task queue (thread_pool.hpp).

#include "xfer/io/thread_pool.hpp"

namespace xfer {

ThreadPool::ThreadPool(std::size_t threads, std::size_t queue_capacity) : queue_(queue_capacity) {
  if (threads == 0) threads = 1;
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

ThreadPool::~ThreadPool() {
  shutdown();
}

bool ThreadPool::submit(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    ++pending_;
  }
  if (!queue_.push(std::move(task))) {
    std::lock_guard lock(mu_);
    --pending_;
    idle_cv_.notify_all();
    return false;
  }
  return true;
}

void ThreadPool::wait_idle() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return pending_ == 0; });
}

void ThreadPool::shutdown() {
  queue_.close();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void ThreadPool::run() {
  while (auto task = queue_.pop()) {
    (*task)();
    std::lock_guard lock(mu_);
    if (--pending_ == 0) idle_cv_.notify_all();
  }
}

}  // namespace xfer
