// xfer: the command line. Parses flags, calls libxfer, maps results to exit
// codes (see common.hpp and docs/cli.md).
//
// Main thread; a signal handler only sets the cancel flag.

#include <fmt/format.h>

#include "common.hpp"
#include "xfer/core/log.hpp"

int main(int argc, char** argv) {
  using namespace xfer::cli;
  using xfer::kExitInterrupted;
  using xfer::kExitOk;
  using xfer::kExitUsage;
  CLI::App app{"xfer: fast, verifiable file transfer"};
  app.set_version_flag("--version", "xfer " XFER_VERSION);
  app.require_subcommand(1);
  app.footer(kExitCodesHelp);
  std::string config_path = xfer::default_config_path();
  std::string log_level;
  CLI::Option* config_flag =
      app.add_option("--config", config_path,
                     "Config file (TOML; default $XFER_CONFIG, then ~/.config/xfer/config.toml)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off");
  // Remote endpoints (xfer://). Accepted before or after the command.
  app.fallthrough();
  xfer::EndpointOptions& ep = context().endpoint;
  ep.stats_board = context().stats;
  app.add_option("--token", ep.token,
                 "Bearer token for xfer:// servers (default: $XFER_TOKEN, credentials.toml)");
  add_option_flags(app, context().global_flags, xfer::kGlobal);
  app.add_option("--passphrase-file", context().passphrase_file,
                 "Passphrase of sealed credentials (default: $XFER_PASSPHRASE, the terminal)");
  context().passphrase_source = []() -> xfer::Result<std::string> {
    if (!context().passphrase_file.empty()) {
      return xfer::read_passphrase_file(context().passphrase_file);
    }
    if (std::getenv("XFER_PASSPHRASE") != nullptr) {
      return xfer::make_error(xfer::ErrorCode::kUnavailable, "passphrase", "", "");
    }
    return xfer::prompt_passphrase("Passphrase for credentials.toml: ");
  };
  context().credentials = std::make_shared<xfer::Credentials>(xfer::CredentialStore::default_path(),
                                                              context().passphrase_source);
  context().backends->set_credentials(context().credentials);
  app.add_flag("--tls", ep.tls, "TLS on the control channel (system CA bundle)");
  app.add_option("--tls-ca", ep.tls_ca, "CA bundle for the control channel's TLS (implies --tls)");
  app.add_option("--ca", ep.ca,
                 "https: CA bundle that signs the server's certificate (default: the system's)");
  app.add_flag("--insecure", ep.insecure,
               "https: do not verify the server's certificate (never by default)");
  app.add_flag("--ssh-accept-new", ep.ssh_accept_new,
               "sftp: add an unknown host key to known_hosts (a changed one is always refused)");

  register_transfer(app);
  register_sync(app);
  register_list(app);
  register_stat(app);
  register_mkdir(app);
  register_touch(app);
  register_rename(app);
  register_move(app);
  register_rm(app);
  register_jobs(app);
  register_resume(app);
  register_serve(app);
  register_remote(app);
  register_completion(app);

  // Load the config before subcommand callbacks run.
  app.parse_complete_callback([&] {
    // A file named on the command line must exist; the default place (or
    // $XFER_CONFIG) may hold none.
    auto cfg = xfer::load_config(config_path, config_flag->count() > 0);
    if (!cfg) throw CLI::ValidationError("--config", cfg.error().message());
    xfer::TransferOptions checked;  // a bad value stops every command, not only cp
    if (xfer::Status s = xfer::apply_config(*cfg, checked); !s.ok()) {
      throw CLI::ValidationError("--config", s.error().message());
    }
    context().config = *cfg;
    xfer::init_logging(log_level.empty() ? context().config.log_level : log_level);
  });

  install_signal_handlers();
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (explain_usage_error(app, argc, argv)) return kExitUsage;
    app.exit(e);
    return kExitUsage;
  }
  if (context().cancel.load() && context().exit_code == kExitOk && !context().signal_ends) {
    return kExitInterrupted;
  }
  return context().exit_code;
}
