#pragma once
// How a transfer, or any batch of operations, ended, as a process exit code:
// the one mapping the CLI, xferd's server-run jobs and third-party transfers
// share (docs/cli.md, "Exit codes"). A job's exit code travels in
// JobProgress, so the client of a third-party transfer exits as the job did.

#include <cstdint>

namespace xfer {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  // nothing (or the only thing asked) could be done
  kExitUsage = 2,    // bad flags or arguments
  kExitPartial = 3,  // some items failed, others were done
  kExitInterrupted = 130,
};

// Cancelled wins; else no failure is success; else partial when anything
// was done, failure when nothing was.
constexpr ExitCode outcome_exit_code(bool cancelled, std::uint64_t failed, std::uint64_t done) {
  if (cancelled) return kExitInterrupted;
  if (failed == 0) return kExitOk;
  return done > 0 ? kExitPartial : kExitFailure;
}

}  // namespace xfer
