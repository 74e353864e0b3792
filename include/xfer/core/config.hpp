#pragma once
// User configuration from TOML (~/.config/xfer/config.toml, or $XFER_CONFIG).
// This reads the file; the keys of [transfer] are the transfer options of
// include/xfer/engine/options.inc, checked there (apply_config), and the
// CLI's flags override them.
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
#include <string>
#include <vector>

#include "xfer/core/result.hpp"

namespace xfer {

// One key of [transfer] as written: its value as text (integers in
// decimal, booleans as true/false, strings as they are) and its line, so
// the option table (engine/options.hpp) can check it and name the line.
struct ConfigValue {
  std::string key;
  std::string text;
  int line = 0;
};

struct Config {
  std::string origin;                 // the file it came from ("" for none)
  std::vector<ConfigValue> transfer;  // [transfer], by key
  std::string log_level = "warn";
};

// Default location: $XFER_CONFIG, else $XDG_CONFIG_HOME/xfer/config.toml,
// else ~/.config/xfer/config.toml.
std::string default_config_path();
// A missing file yields the defaults, unless `must_exist` (a file the user
// named with --config: a typo must not silently run with the defaults),
// where it is a kNotFound error; a malformed one (bad TOML, a [transfer]
// value that is not a number, string or boolean) is a kInvalidArgument
// error naming the line.
Result<Config> load_config(const std::string& path, bool must_exist = false);
Result<Config> parse_config(std::string_view toml_text, const std::string& origin);

}  // namespace xfer
