#include "xfer/core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace xfer {

namespace {
std::once_flag g_once;
std::shared_ptr<spdlog::logger> g_logger;

void create() {
  g_logger = spdlog::stderr_color_mt("xfer");
  g_logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%t] %v");
  g_logger->set_level(spdlog::level::warn);
}
}  // namespace

void init_logging(std::string_view level) {
  std::call_once(g_once, create);
  g_logger->set_level(spdlog::level::from_str(std::string(level)));
}

spdlog::logger& log() {
  std::call_once(g_once, create);
  return *g_logger;
}

}  // namespace xfer
