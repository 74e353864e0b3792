#pragma once
// User configuration from TOML (~/.config/xfer/config.toml, or $XFER_CONFIG).
// Every option lives in one table here; the CLI overrides what it is given.
//
//   [transfer]
//   workers = 16           # worker threads for data movement
//   chunk_size = "16M"     # chunk size for large files
//   small_file_threshold = "1M"
//   memory = "256M"        # buffer budget
//   bwlimit = "0"          # bytes per second, 0 = unlimited
//   verify = false
//   fsync = false
//   [log]
//   level = "warn"

#include <cstdint>
#include <optional>
#include <string>

#include "xfer/core/result.hpp"

namespace xfer {

struct Config {
  std::optional<unsigned> workers;
  std::optional<std::uint64_t> chunk_size;
  std::optional<std::uint64_t> small_file_threshold;
  std::optional<std::uint64_t> memory;
  std::optional<std::uint64_t> bwlimit;
  std::optional<bool> verify;
  std::optional<bool> fsync;
  std::string log_level = "warn";
};

// Default location: $XFER_CONFIG, else $XDG_CONFIG_HOME/xfer/config.toml,
// else ~/.config/xfer/config.toml.
std::string default_config_path();
// A missing file yields the defaults; a malformed one is a kInvalidArgument
// error naming the line.
Result<Config> load_config(const std::string& path);
Result<Config> parse_config(std::string_view toml_text, const std::string& origin);

}  // namespace xfer
