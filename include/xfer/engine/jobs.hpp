#pragma once
// Transfer jobs: each transfer with checkpointing on has an id (derived from
// its sources, destination and options, or given with --job) and a state
// folder <state root>/jobs/<id>/ holding job.json (the request and its last
// known progress), a lock file, and the checkpoint files
// (docs/journal-format.md). Re-running the same request resumes it.

#include <cstdint>
#include <string>
#include <vector>

#include "xfer/core/result.hpp"
#include "xfer/engine/options.hpp"
#include "xfer/engine/outcome.hpp"

namespace xfer {

struct JobInfo {
  std::string id;
  // job.json's "status": the one job model of outcome.hpp, shared with
  // xferd's jobs.
  JobState state = JobState::kRunning;
  TransferRequest request;
  int pid = 0;
  std::int64_t created_s = 0;
  std::int64_t updated_s = 0;
  std::uint64_t files_total = 0;
  std::uint64_t files_done = 0;
  std::uint64_t bytes_total = 0;
  std::uint64_t bytes_done = 0;
  // How the destination was resolved on the first run (1: copy into it as a
  // directory, 0: it is the target itself, -1: unknown). A resumed run must
  // not change its mind because the first run created the directory.
  int into_dir = -1;
  std::string dir;  // filled by read/list
  // A "running" job whose pid no longer exists was killed: it can be resumed.
  bool alive() const;
};

// $XFER_STATE_DIR, else $XDG_STATE_HOME/xfer, else ~/.local/state/xfer.
std::string default_state_root();
std::string job_dir(const std::string& state_root, const std::string& id);
// Stable id of a request: XXH3 of the absolute sources, the destination and
// the options that change what lands there (recursive, chunk size).
std::string derive_job_id(const TransferRequest& request);

Status write_job(const std::string& state_root, const JobInfo& job);
Result<JobInfo> read_job(const std::string& state_root, const std::string& id);
// Every job under the state root, newest first. Unreadable entries are skipped.
std::vector<JobInfo> list_jobs(const std::string& state_root);
// Removes a job's state folder.
Status remove_job(const std::string& state_root, const std::string& id);

}  // namespace xfer
