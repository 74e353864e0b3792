#pragma once
// How a transfer, or any batch of operations, ended, as a process exit code:
// the one mapping the CLI, xferd's server-run jobs and third-party transfers
// share (docs/cli.md, "Exit codes"). A job's exit code travels in
// JobProgress, so the client of a third-party transfer exits as the job did.

#include <cstdint>
#include <optional>
#include <string_view>

namespace xfer {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  // nothing (or the only thing asked) could be done
  kExitUsage = 2,    // bad flags or arguments
  kExitPartial = 3,  // some items failed, others were done
  kExitInterrupted = 130,
  kExitBrokenPipe = 141,  // standard output's reader went away (128 + SIGPIPE)
};

// Cancelled wins; else no failure is success; else partial when anything
// was done, failure when nothing was.
constexpr ExitCode outcome_exit_code(bool cancelled, std::uint64_t failed, std::uint64_t done) {
  if (cancelled) return kExitInterrupted;
  if (failed == 0) return kExitOk;
  return done > 0 ? kExitPartial : kExitFailure;
}

// The states of a job: one model for the CLI's job records (job.json,
// `xfer jobs`) and xferd's server-run jobs (WatchJob's JobProgress.state).
enum class JobState { kRunning, kDone, kPartial, kFailed, kCancelled };

constexpr std::string_view to_string(JobState state) {
  switch (state) {
    case JobState::kRunning:
      return "running";
    case JobState::kDone:
      return "done";
    case JobState::kPartial:
      return "partial";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "failed";
}

// A state read back from a job record or the wire; "interrupted" is what
// job records said before there was one model. nullopt when unknown.
constexpr std::optional<JobState> parse_job_state(std::string_view text) {
  for (JobState s : {JobState::kRunning, JobState::kDone, JobState::kPartial, JobState::kFailed,
                     JobState::kCancelled}) {
    if (text == to_string(s)) return s;
  }
  if (text == "interrupted") return JobState::kCancelled;
  return std::nullopt;
}

// How a finished job ended: the same rule as its exit code.
constexpr JobState job_state_of(ExitCode code) {
  switch (code) {
    case kExitOk:
      return JobState::kDone;
    case kExitPartial:
      return JobState::kPartial;
    case kExitInterrupted:
      return JobState::kCancelled;
    default:
      return JobState::kFailed;
  }
}

}  // namespace xfer
