#pragma once
// The local file system backend: pread/pwrite, fallocate preallocation,
// O_TMPFILE (or a hidden temp name) + atomic publish on commit, mtime and mode
// preserved, symlinks as symlinks, copy_file_range between local files,
// optional O_DIRECT.

#include <memory>
#include <string>
#include <string_view>

#include "xfer/backend/backend.hpp"

namespace xfer {

std::unique_ptr<Backend> make_local_backend();

// Hidden names beside a destination: ".<name>.xfer-part-<token>" for a
// resumable partial; ".<name>.xfer-tmp-{file,swap,link}" for the brief
// temporaries of an atomic publish (deterministic, so a killed run's stray is
// replaced by the next run).
inline constexpr std::string_view kLocalTempInfix = ".xfer-part-";
inline constexpr std::string_view kLocalTmpInfix = ".xfer-tmp-";

// The resumable partial of the destination `path` for a job's resume token
// (what a local Sink opened with SinkOptions::resume_name writes to).
std::string local_partial_path(const std::string& path, const std::string& resume_name);

// Is `name` (one component) one of those hidden names?
inline bool is_local_temporary(std::string_view name) {
  return !name.empty() && name.front() == '.' &&
         (name.find(kLocalTempInfix) != std::string_view::npos ||
          name.find(kLocalTmpInfix) != std::string_view::npos);
}

}  // namespace xfer
