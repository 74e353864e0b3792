#pragma once
// Small file-system helpers every layer needs: reading a small file whole
// (configs, keys, certificates, job records) with a size bound, and the XDG
// base folders of the user.

#include <cstddef>
#include <string>
#include <string_view>

#include "xfer/core/result.hpp"

namespace xfer {

// The whole content of `path`, refused (kInvalidArgument "larger than N
// bytes") once it passes `limit`: a file that should be small cannot make
// the reader allocate without bound. Errors name `path`.
Result<std::string> read_small_file(const std::string& path, std::size_t limit);

// Replaces `path` with `data` atomically: written to "<path>.tmp" (mode
// 0600), fdatasync'ed, renamed over `path`. A reader sees the old content
// or the new, never a mix; after a crash, the old or the new survives.
Status write_file_atomically(const std::string& path, std::string_view data);

// $XDG_CONFIG_HOME, else $HOME/.config; "" when neither is an absolute path
// (the XDG spec ignores relative ones).
std::string xdg_config_home();
// $XDG_STATE_HOME, else $HOME/.local/state; "" likewise.
std::string xdg_state_home();

}  // namespace xfer
