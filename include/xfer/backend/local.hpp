#pragma once
// The local file system backend: pread/pwrite, fallocate preallocation,
// O_TMPFILE (or a hidden temp name) + atomic publish on commit, mtime and mode
// preserved, symlinks as symlinks, copy_file_range between local files,
// optional O_DIRECT.

#include <memory>

#include "xfer/backend/backend.hpp"

namespace xfer {

std::unique_ptr<Backend> make_local_backend();

// Prefix of the hidden temporary names a local Sink writes to before commit
// (used when O_TMPFILE is unavailable): ".<name>.xfer-part-<random>".
inline constexpr std::string_view kLocalTempInfix = ".xfer-part-";

// Where a resumable local sink keeps its partial: ".<name>.xfer-part-<token>"
// beside the final path (a hashed name when that would be too long).
std::string local_partial_path(const std::string& final_path, const std::string& token);

}  // namespace xfer
