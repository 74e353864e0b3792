// xferd: serves one folder over the xfer protocol (docs/server.md).
//
//   xferd --config FILE            run in the foreground until SIGTERM/SIGINT
//   xferd token --config FILE ...  print a bearer token signed with the secret
//
// Main thread; the server starts its own threads (docs/threading.md).

#include <chrono>
#include <cstdio>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "man_page.hpp"
#include "xfer/core/log.hpp"
#include "xfer/server/auth.hpp"
#include "xfer/server/config.hpp"
#include "xfer/server/server.hpp"

namespace {

int print_token(const std::string& config_path, const std::string& prefix, bool write,
                std::int64_t ttl, const std::string& subject) {
  auto config = xfer::server::load_server_config(config_path);
  if (!config) {
    fmt::print(stderr, "xferd: error: {}\n", config.error().message());
    return 2;
  }
  if (config->secret.empty()) {
    fmt::print(stderr, "xferd: error: {} has no auth.secret to sign tokens with\n", config_path);
    return 2;
  }
  auto norm = xfer::server::normalize_server_path(prefix);
  if (!norm) {
    fmt::print(stderr, "xferd: error: {}\n", norm.error().message());
    return 2;
  }
  xfer::server::TokenScope scope;
  scope.subject = subject;
  scope.prefix = *norm;
  scope.write = write;
  scope.expires_at = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count() +
                     ttl;
  auto token = xfer::server::issue_token(config->secret, scope);
  if (!token) {
    fmt::print(stderr, "xferd: error: {}\n", token.error().message());
    return 1;
  }
  fmt::print("{}\n", *token);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xferd: the xfer server. Serves one folder over gRPC (control) and TCP (data)."};
  app.set_version_flag("--version", "xferd " XFER_VERSION);
  std::string config_path;
  app.add_option("-c,--config", config_path, "TOML configuration file (docs/server.md)");
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  std::string log_format = "text";
  app.add_option("--log-format", log_format, "text or json (one JSON object per line)")
      ->check(CLI::IsMember({"text", "json"}));

  auto* token = app.add_subcommand("token", "Print a bearer token signed with the server's secret");
  std::string prefix = "/";
  bool write = false;
  std::int64_t ttl = 86400;
  std::string subject = "xferd token";
  token->add_option("-c,--config", config_path, "TOML configuration file")->required();
  token->add_option("--prefix", prefix, "Path prefix the token may touch")->capture_default_str();
  token->add_flag("--write", write, "Allow writing (default: read-only)");
  token->add_option("--ttl", ttl, "Lifetime in seconds")->capture_default_str();
  token->add_option("--subject", subject, "Who the token is for (logged)");

  xfer::cli::add_man_flag(app, xfer::server::xferd_man_info());

  CLI11_PARSE(app, argc, argv);
  xfer::init_logging(log_level);
  if (log_format == "json") xfer::use_json_logs();
  if (*token) return print_token(config_path, prefix, write, ttl, subject);
  if (config_path.empty()) {
    fmt::print(stderr, "xferd: error: --config FILE is required\n");
    return 2;
  }
  return xfer::server::run_foreground(config_path, "xferd");
}
