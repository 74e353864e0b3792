// The scheduler's queues (scheduler.hpp): the scanner's bounded file queue
// and the chunks of open files, under one mutex with condition variables.
// The scanner thread produces files; worker threads take files and chunks.

#include "scheduler.hpp"

#include <chrono>
#include <thread>

namespace xfer {

bool Scheduler::push_file(FileTask task) {
  std::unique_lock lock(mu_);
  space_cv_.wait(lock, [&] { return cancelled_ || files_.size() < capacity_; });
  if (cancelled_) return false;
  files_.push_back(std::move(task));
  work_cv_.notify_one();
  return true;
}

void Scheduler::close_input() {
  std::lock_guard lock(mu_);
  input_closed_ = true;
  work_cv_.notify_all();
}

void Scheduler::cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  files_.clear();
  // Hand out nothing more. Files with chunks in flight are finalized (aborted)
  // by the worker that ends the last one; the others are dropped here, and a
  // Sink aborts itself when destroyed.
  for (auto& f : chunked_) f->next_chunk = f->chunks;
  chunked_.remove_if([](const std::shared_ptr<ChunkedFile>& f) { return f->in_flight == 0; });
  work_cv_.notify_all();
  space_cv_.notify_all();
}

WorkItem Scheduler::next() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (cancelled_) return WorkItem{};
    for (auto& f : chunked_) {
      if (!f->failure && f->next_chunk < f->chunks && f->in_flight < f->parallelism) {
        WorkItem item;
        item.kind = WorkItem::Kind::kChunk;
        item.chunked = f;
        item.chunk = f->next_chunk++;
        ++f->in_flight;
        return item;
      }
    }
    // Under memory pressure a new file waits while anything else is in
    // flight (whose buffers will come back); with nothing in flight it goes,
    // so the transfer always progresses.
    bool in_flight = classifying_ > 0;
    for (const auto& f : chunked_) in_flight = in_flight || f->in_flight > 0;
    if (!files_.empty() && pressure_ && in_flight && pressure_()) {
      work_cv_.wait_for(lock, std::chrono::milliseconds(20));
      continue;
    }
    if (!files_.empty() && !cancelled_) {
      WorkItem item;
      item.kind = WorkItem::Kind::kFile;
      item.file = std::move(files_.front());
      files_.pop_front();
      ++classifying_;
      space_cv_.notify_one();
      return item;
    }
    bool drained = files_.empty() && (input_closed_ || cancelled_);
    if (drained && chunked_.empty() && classifying_ == 0) return WorkItem{};
    work_cv_.wait(lock);
  }
}

void Scheduler::file_classified() {
  std::lock_guard lock(mu_);
  --classifying_;
  work_cv_.notify_all();
}

std::optional<WorkItem> Scheduler::add_chunked(std::shared_ptr<ChunkedFile> file) {
  std::lock_guard lock(mu_);
  if (cancelled_) return std::nullopt;
  WorkItem item;
  item.kind = WorkItem::Kind::kChunk;
  item.chunked = file;
  item.chunk = file->next_chunk++;
  ++file->in_flight;
  chunked_.push_back(std::move(file));
  work_cv_.notify_all();
  return item;
}

bool Scheduler::chunk_finished(const std::shared_ptr<ChunkedFile>& file,
                               std::optional<Error> error) {
  std::lock_guard lock(mu_);
  --file->in_flight;
  ++file->chunks_finished;
  if (error && !file->failure) {
    file->failure = std::move(error);
  }
  bool no_more = file->failure || file->next_chunk >= file->chunks;
  bool last = no_more && file->in_flight == 0;
  if (last) chunked_.remove(file);
  work_cv_.notify_all();  // a parallelism slot freed, or the end may be reached
  return last;
}

std::optional<WorkItem> Scheduler::requeue_chunked(std::shared_ptr<ChunkedFile> file) {
  {
    std::lock_guard lock(mu_);
    file->next_chunk = 0;
    file->chunks_finished = 0;
    file->in_flight = 0;
    file->failure.reset();
  }
  return add_chunked(std::move(file));
}

std::size_t Scheduler::queued() const {
  std::lock_guard lock(mu_);
  return files_.size();
}

void Scheduler::set_retry(RetryPolicy policy, std::atomic<std::uint64_t>* retries,
                          const std::atomic<bool>* cancel) {
  retry_policy_.emplace(policy);
  retries_ = retries;
  cancel_ = cancel;
}

bool Scheduler::retry(const Error& error, unsigned attempt, RetryScope scope) {
  auto cancelled = [&] { return cancel_ != nullptr && cancel_->load(std::memory_order_relaxed); };
  if (!retry_policy_ || error.code == ErrorCode::kCancelled || cancelled()) return false;
  const bool again = scope == RetryScope::kCall ? retry_policy_->retry_call(error, attempt)
                                                : retry_policy_->retry_file(error, attempt);
  if (!again) return false;
  if (retries_ != nullptr) retries_->fetch_add(1, std::memory_order_relaxed);
  // Slept in short steps: a cancel during a long backoff is seen at once.
  using Clock = std::chrono::steady_clock;
  // A server that said when to come back (Retry-After) is believed up to a
  // minute; the backoff is the least wait.
  const auto after =
      std::chrono::milliseconds(std::clamp<std::int64_t>(error.retry_after_ms, 0, 60'000));
  const auto until = Clock::now() + std::max(retry_policy_->backoff(attempt), after);
  while (Clock::now() < until && !cancelled()) {
    std::this_thread::sleep_for(
        std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(20)));
  }
  return true;
}

}  // namespace xfer
