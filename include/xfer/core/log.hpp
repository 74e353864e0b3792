#pragma once
// Logging through spdlog. The library logs at debug/info for diagnostics; it
// never prints user-facing output (the front ends do).

#include <spdlog/spdlog.h>

#include <string_view>

namespace xfer {

// Sets up the "xfer" logger writing to stderr at the given level
// ("trace".."off"). Safe to call more than once.
void init_logging(std::string_view level);
// Switches the logger to one JSON object per line on stderr
// ({"ts","level","thread","msg"}): structured logs for xferd.
void use_json_logs();
spdlog::logger& log();

}  // namespace xfer
