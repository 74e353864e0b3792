// The job's record and checkpoint (engine.hpp): the lock that keeps two
// processes off one job, job.json, and the checkpoint that makes a re-run
// resume. lock_job/open_job/close_job run on the thread that calls run();
// fill_job_progress on the progress loop of run().

#include "engine/engine.hpp"

namespace xfer::detail {
namespace {

// Drops a job's checkpoint files (journal, done-index, snapshots); job.json
// and the lock stay.
void clear_checkpoint_files(const std::string& dir) {
  std::error_code ec;
  for (const char* f : {"journal", "done.idx"}) std::filesystem::remove(dir + "/" + f, ec);
  std::filesystem::remove_all(dir + "/snapshots", ec);
}

}  // namespace

// Finds (or creates) the job's folder, takes its lock and reads what an
// earlier run left in job.json. Runs before the roots are resolved: a
// resumed job resolves its destination the way the interrupted run did.
Status Engine::lock_job() {
  state_root_ = opt_.state_root.empty() ? default_state_root() : opt_.state_root;
  job_.id = opt_.job_id.empty() ? derive_job_id(req_) : opt_.job_id;
  // The id becomes a folder name (and, on xferd, arrives from a client).
  XFER_TRY(validate_id(job_.id, "job id"));
  const std::string dir = job_dir(state_root_, job_.id);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return errno_error(ec.value(), "mkdir", dir);
  lock_fd_ = ::open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return errno_error(errno, "open", dir + "/lock");
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return make_error(ErrorCode::kUnavailable, "start job", job_.id,
                      "another xfer process is running this job");
  }
  if (auto previous = read_job(state_root_, job_.id)) {
    previous_job_ = std::move(previous).value();
    resuming_ = previous_job_->state != JobState::kDone;
    // Run again, resumed or not, the job copies to where its first run did:
    // `xfer cp -r s d` made d a copy of s, and its re-run must not nest d/s.
    if (previous_job_->into_dir >= 0) forced_into_dir_ = previous_job_->into_dir == 1;
  }
  return ok_status();
}

// Records the job as running and opens its checkpoint, recovering whatever
// an earlier run left.
Status Engine::open_job() {
  const std::string dir = job_dir(state_root_, job_.id);
  job_.created_s = static_cast<std::int64_t>(std::time(nullptr));
  if (previous_job_) {
    job_.created_s = previous_job_->created_s;
    // A finished job run again is a new copy: start from empty state.
    if (!resuming_) clear_checkpoint_files(dir);
  }
  job_.request = req_;
  job_.request.options.job_id.clear();
  job_.state = JobState::kRunning;
  job_.into_dir = into_dir_ ? 1 : 0;
  job_.pid = static_cast<int>(::getpid());
  job_.updated_s = static_cast<std::int64_t>(std::time(nullptr));
  XFER_TRY(write_job(state_root_, job_));
  checkpoint::Options co;
  co.dir = dir;
  XFER_ASSIGN_OR_RETURN(ckpt_, checkpoint::Checkpoint::open(co));
  for (const auto& begun : ckpt_->active_files()) begun_keys_.insert(begun.file_key);
  return ok_status();
}

void Engine::fill_job_progress(std::uint64_t files_done, std::uint64_t bytes_done) {
  job_.updated_s = static_cast<std::int64_t>(std::time(nullptr));
  job_.files_total = counters_.files_total.load();
  job_.files_done = files_done;
  job_.bytes_total = counters_.bytes_total.load();
  job_.bytes_done = bytes_done;
}

void Engine::close_job(TransferResult& result) {
  Status flushed = ckpt_->flush();
  if (!flushed.ok()) report(flushed.error());
  const auto& st = ckpt_->stats();
  result.job_id = job_.id;
  result.journal_records = st.records.load();
  result.journal_fsyncs = st.fsyncs.load();
  result.journal_bytes = st.journal_bytes_total.load();
  result.done_index_bytes = st.done_bytes_total.load();
  result.compactions = st.compactions.load();
  result.snapshots = st.snapshots.load();
  result.checkpoint_max_queue = st.max_queue_depth.load();
  result.checkpoint_max_lag_us = st.max_flush_lag_us.load();
  result.checkpoint_backpressure = st.backpressure_waits.load();
  ckpt_.reset();  // stops the flusher
  const std::uint64_t errors = counters_.errors.load();
  job_.state = job_state_of(outcome_exit_code(result.cancelled, errors, result.files_done));
  fill_job_progress(result.files_done, result.bytes_done + result.bytes_resumed);
  // Nothing left to resume: keep only job.json (for `xfer jobs --all`).
  if (job_.state == JobState::kDone) clear_checkpoint_files(job_dir(state_root_, job_.id));
  Status w = write_job(state_root_, job_);
  if (!w.ok()) report(w.error());
  ::close(lock_fd_);
  lock_fd_ = -1;
}

}  // namespace xfer::detail
