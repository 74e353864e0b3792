#pragma once
// A fixed-size thread pool with a bounded task queue: submit() blocks when
// the queue is full, so a fast producer cannot grow memory without bound.
// wait_idle() returns once every submitted task has finished.

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "xfer/io/bounded_queue.hpp"

namespace xfer {

class ThreadPool {
 public:
  ThreadPool(std::size_t threads, std::size_t queue_capacity);
  ~ThreadPool();  // closes the queue, runs what is queued, joins
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Blocks while the queue is full. False after shutdown().
  bool submit(std::function<void()> task);
  void wait_idle();
  void shutdown();
  std::size_t size() const { return threads_.size(); }

 private:
  void run();

  BoundedQueue<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable idle_cv_;
  std::size_t pending_ = 0;
};

}  // namespace xfer
