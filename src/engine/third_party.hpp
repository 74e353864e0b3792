#pragma once
// Third-party transfers (xfer://A -> xfer://B): the client only gives the
// order. B issues a write token limited to the destination, A runs the copy
// as a server-side job with it (the data goes A -> B, never through this
// process), and this process follows the job's progress stream into its
// counters; a cancel here cancels the job there. run_transfer takes this
// route by itself when every source and the destination are xfer:// URLs.
//
// Threading: runs on the caller's thread, plus one thread that watches the
// cancel flag while the job runs.

#include <atomic>

#include "xfer/engine/transfer.hpp"

namespace xfer {

// Every source and the destination are xfer:// URLs.
bool is_third_party(const TransferRequest& request);

// The job's final figures as a TransferResult; its failure is reported
// through `observer` (and counted in counters.errors), a cancelled job comes
// back with `cancelled` set.
Result<TransferResult> run_third_party(const TransferRequest& request, TransferCounters& counters,
                                       TransferObserver* observer, const std::atomic<bool>* cancel);

}  // namespace xfer
