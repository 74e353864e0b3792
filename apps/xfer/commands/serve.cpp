// xfer serve: runs xferd in the foreground from the xfer binary.
//
// Main thread; the server starts its own threads (docs/threading.md).

#include "../common.hpp"
#include "xfer/server/server.hpp"

namespace xfer::cli {

void register_serve(CLI::App& app) {
  auto config_path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve a folder (xferd in the foreground)");
  cmd->add_option("-c,--config", *config_path, "xferd TOML configuration (docs/server.md)")
      ->required();
  cmd->callback([config_path] {
    context().exit_code = xfer::server::run_foreground(*config_path, "xfer serve");
  });
}

}  // namespace xfer::cli
