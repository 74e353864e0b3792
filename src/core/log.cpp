// The process logger (log.hpp): spdlog to stderr, text or one JSON object
// per line. Created once (call_once); spdlog's logger is thread-safe.

#include "xfer/core/log.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdio>
#include <ctime>
#include <mutex>
#include <nlohmann/json.hpp>

namespace xfer {

namespace {
std::once_flag g_once;
std::shared_ptr<spdlog::logger> g_logger;

// One JSON object per line on stderr: {"ts","level","thread","msg"}. The
// message is escaped properly (paths may hold quotes or newlines).
class JsonSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const auto t = std::chrono::system_clock::to_time_t(msg.time);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() %
        1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    const std::string ts =
        fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    nlohmann::json line = {{"ts", ts},
                           {"level", std::string(spdlog::level::to_string_view(msg.level).data(),
                                                 spdlog::level::to_string_view(msg.level).size())},
                           {"thread", msg.thread_id},
                           {"msg", std::string(msg.payload.data(), msg.payload.size())}};
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text += '\n';
    std::fwrite(text.data(), 1, text.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }
};

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

void use_json_logs() {
  std::call_once(g_once, create);
  g_logger->sinks().clear();
  g_logger->sinks().push_back(std::make_shared<JsonSink>());
}

spdlog::logger& log() {
  std::call_once(g_once, create);
  return *g_logger;
}

}  // namespace xfer
