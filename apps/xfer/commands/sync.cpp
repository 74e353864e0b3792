// xfer sync: make DST a copy of SRC (docs/sync.md). The transfer engine's
// sync walk (src/engine/sync.cpp) does the work; this file is the command:
// its flags (cp's, and sync's own: --delete, --backup-dir, -i, ...) into a
// TransferRequest with the `sync` option set. Main thread only.

#include "../common.hpp"
#include "../option_flags.hpp"

namespace xfer::cli {

void register_sync(CLI::App& app) {
  struct Args {
    std::vector<std::string> paths;
    OptionFlags flags;
    FilterFlags filters;
    RenderOptions render;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "sync", "Make DST a copy of SRC: send what differs, fix attributes, --delete the rest");
  cmd->footer(std::string(kRemoteFlagsHelp) + "\n" + kExitCodesHelp);
  cmd->add_option("paths", args->paths, "SRC... DST (paths or URLs; SRC/ syncs its contents)")
      ->required()
      ->expected(2, -1);
  // Every flag of cp but -r (a sync is always recursive), and sync's own;
  // `sync` itself is what this command is.
  add_option_flags(*cmd, args->flags, static_cast<OptionWhere>(kCli | kSync),
                   {"recursive", "sync"});
  add_filter_flags(*cmd, args->filters);
  add_render_flags(*cmd, args->render);
  cmd->add_flag("-i,--itemize-changes", args->render.itemize,
                "One line per change in rsync's format (>f.st...... path)");
  cmd->callback([args] {
    TransferRequest req;
    req.options = transfer_options(args->flags);
    apply_filter_flags(args->filters, req.options);
    req.options.sync = true;
    req.options.recursive = true;
    if (req.options.delete_before) req.options.delete_extraneous = true;
    req.sources.assign(args->paths.begin(), args->paths.end() - 1);
    req.destination = args->paths.back();
    RenderOptions render = args->render;
    render.sync = true;
    render.dry_run = req.options.dry_run;
    render.verb = "synced";
    context().exit_code = run_transfer_with_ui(req, render);
  });
}

}  // namespace xfer::cli
