// xfer move (alias mv): a rename where it can; across devices or endpoints a
// full copy (attributes preserved), and the source is removed only after the
// copy of that source fully succeeded.
//
// Main thread only (CLI11 callbacks); each copy runs the engine with its threads.

#include <fmt/format.h>

#include "../common.hpp"

namespace xfer::cli {

void register_move(CLI::App& app) {
  struct Args {
    std::vector<std::string> paths;
    OptionFlags flags;
    RenderOptions render;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("mv", "Move or rename: SRC... DST (like mv)");
  cmd->alias("move");
  cmd->footer(std::string(kRemoteFlagsHelp) + "\n" + kExitCodesHelp);
  cmd->add_option("paths", a->paths, "SRC... DST")->required()->expected(2, -1);
  // A move always takes whole trees, and its renames cannot be dry-run.
  add_option_flags(*cmd, a->flags, kCli, {"recursive", "dry_run"});
  a->render.verb = "moved";
  add_render_flags(*cmd, a->render);
  cmd->callback([a] {
    TransferOptions options = transfer_options(a->flags);
    // A move takes everything: include/exclude rules (the config file's
    // filter) would leave part of the source behind, or worse, delete it
    // uncopied after a copying move.
    options.filter.clear();
    std::vector<std::string> sources(a->paths.begin(), a->paths.end() - 1);
    const std::string& dst_text = a->paths.back();
    auto dst = open_endpoint(dst_text);
    if (!dst) {
      print_error(dst.error());
      context().exit_code = kExitFailure;
      return;
    }
    auto dst_attrs = dst->backend->stat(dst->url.path);
    const bool into_dir =
        copies_into_destination(dst_attrs && dst_attrs->type == EntryType::kDirectory,
                                dst->url.trailing_slash, sources.size());
    if (into_dir && !dst_attrs) {
      print_error(make_error(ErrorCode::kNotFound, "move", dst->url.path,
                             "target directory does not exist"));
      context().exit_code = kExitFailure;
      return;
    }
    unsigned ok = 0, failed = 0;
    for (const auto& s : sources) {
      auto src = open_endpoint(s);
      if (!src) {
        print_error(src.error());
        ++failed;
        continue;
      }
      auto src_attrs = src->backend->stat(src->url.path);
      if (!src_attrs) {
        print_error(src_attrs.error());
        ++failed;
        continue;
      }
      std::string target =
          into_dir ? join_path(dst->url.path, base_name(src->url.path)) : dst->url.path;
      bool same_endpoint = src->url.scheme == dst->url.scheme && src->url.host == dst->url.host &&
                           src->url.port == dst->url.port;
      if (same_endpoint) {
        Status r = src->backend->rename(src->url.path, target);
        if (r.ok()) {
          ++ok;
          continue;
        }
        if (r.error().code != ErrorCode::kCrossDevice) {
          print_error(r.error());
          ++failed;
          continue;
        }
      }
      // Copy, then delete the source only if everything arrived.
      TransferRequest req;
      req.sources = {s};
      req.destination = dst->url.with_path(target).to_string();
      req.options = options;
      req.options.recursive = true;
      int code = run_transfer_with_ui(req, a->render);
      if (code != kExitOk) {
        ++failed;
        if (code == kExitInterrupted) {
          context().exit_code = code;
          return;
        }
        continue;
      }
      Status rm = src->backend->remove(src->url.path, true);
      if (!rm.ok()) {
        print_error(rm.error());
        ++failed;
        continue;
      }
      ++ok;
    }
    context().exit_code = outcome_exit_code(false, failed, ok);
  });
}

}  // namespace xfer::cli
