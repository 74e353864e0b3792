#pragma once
// Every transfer option, declared once. The CLI flags, the config file and
// (later) the gRPC request all fill this struct.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xfer/backend/registry.hpp"

namespace xfer {

struct TransferOptions {
  bool recursive = false;
  bool dry_run = false;
  bool verify = false;             // read back every written piece and compare XXH3 before commit
  bool fsync = false;              // fdatasync each file before publishing it
  bool direct = false;             // O_DIRECT on the destination
  bool zero_copy = true;           // allow copy_file_range/sendfile fast paths
  unsigned workers = 0;            // 0: chosen from the endpoints (local: 64)
  unsigned chunk_parallelism = 0;  // chunks of one file in flight; 0: auto (4)
  std::uint64_t chunk_size = 0;    // 0: chosen per file by the planner
  std::uint64_t small_file_threshold = 8ull << 20;  // at or below: one worker, whole file
  std::uint64_t io_size = 1ull << 20;               // bytes per read/write call and per buffer
  std::uint64_t memory_limit = 256ull << 20;        // buffer budget (hard limit)
  std::uint64_t bwlimit = 0;                        // bytes per second, 0 = unlimited
  // Checkpoints (docs/journal-format.md): progress is journaled so a re-run
  // of the same request (same job id) resumes without re-sending.
  bool checkpoint = true;
  std::string job_id;         // empty: derived from the request
  std::string state_root;     // empty: default_state_root()
  unsigned max_attempts = 4;  // per call and per file, first try included
  std::chrono::milliseconds retry_base{50};
  std::chrono::milliseconds retry_cap{5000};
  // Credentials and connection choices for remote endpoints (xfer://, ...).
  EndpointOptions source_endpoint;
  EndpointOptions destination_endpoint;
};

struct TransferRequest {
  std::vector<std::string> sources;  // URLs or bare paths
  std::string destination;
  TransferOptions options;
  // The backends the URLs may name; null: the built-in ones
  // (BackendRegistry::with_builtins()).
  std::shared_ptr<const BackendRegistry> backends;
};

}  // namespace xfer
