// xfer sync: make DST a copy of SRC (docs/sync.md). The transfer engine's
// sync walk (src/engine/sync.cpp) does the work; this file is the command:
// its flags (cp's, and sync's own: --delete, --backup-dir, -i, ...) into a
// TransferRequest with the `sync` option set. Main thread only.

#include <atomic>
#include <chrono>
#include <thread>

#include "../common.hpp"
#include "../option_flags.hpp"
#include "xfer/core/url.hpp"
#include "xfer/engine/changes.hpp"

namespace xfer::cli {
namespace {

// --watch: one watch per SRC, by its backend (a local folder: inotify
// here; a folder on xferd: watched by the server, its changes streamed).
// The watch is declared after its backend: it stops first.
struct SourceWatch {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<ChangeWatch> watch;
};

Result<std::vector<SourceWatch>> start_watchers(TransferRequest& req) {
  if (req.options.dry_run) {
    return make_error(ErrorCode::kInvalidArgument, "sync", "",
                      "--watch and --dry-run do not go together");
  }
  auto feed = std::make_shared<ChangeFeed>();
  std::vector<SourceWatch> out;
  WatchOptions options;
  const std::string& with = req.options.watch_with;
  if (with == "auto") {
    options.mechanism = WatchMechanism::kAuto;
  } else if (with == "inotify") {
    options.mechanism = WatchMechanism::kInotify;
  } else if (with == "fanotify") {
    options.mechanism = WatchMechanism::kFanotify;
  } else {
    return make_error(ErrorCode::kInvalidArgument, "sync --watch", "",
                      fmt::format("--watch-with takes auto, inotify or fanotify, not '{}'", with));
  }
  options.debounce = req.options.watch_debounce;
  options.reconcile = req.options.watch_reconcile;
  const auto& registry = *context().backends;
  for (std::size_t i = 0; i < req.sources.size(); ++i) {
    XFER_ASSIGN_OR_RETURN(Url url, registry.parse(req.sources[i]));
    EndpointOptions endpoint = req.options.source_endpoint;
    if (!endpoint.stats_board) endpoint.stats_board = context().stats;
    XFER_ASSIGN_OR_RETURN(auto backend, registry.create(url, endpoint));
    auto attrs = backend->stat(url.path);
    if (!attrs) return attrs.error();
    if (attrs->type != EntryType::kDirectory) {
      return make_error(ErrorCode::kInvalidArgument, "sync --watch", req.sources[i],
                        "--watch needs a folder as each SRC");
    }
    SourceWatch w;
    XFER_ASSIGN_OR_RETURN(w.watch, backend->watch(url.path, i, feed, options));
    w.backend = std::move(backend);
    out.push_back(std::move(w));
  }
  req.changes = feed;
  return out;
}

// --bidirectional: the flags that have no meaning there are refused by
// name, rather than ignored.
Status check_bidirectional(const std::vector<std::string>& paths, const TransferOptions& o) {
  if (paths.size() != 2) {
    return make_error(ErrorCode::kInvalidArgument, "sync --bidirectional", "",
                      "takes exactly two folders: xfer sync --bidirectional A B");
  }
  struct Refused {
    bool set;
    const char* flag;
    const char* why;
  };
  const Refused refused[] = {
      {o.watch, "--watch", "not built yet for two-way syncs"},
      {o.delete_extraneous || o.delete_before, "--delete",
       "deletions on either side always go across (only of what the other side did not change)"},
      {!o.backup_dir.empty(), "--backup-dir", "a file changed on both sides is kept twice instead"},
      {!o.files_from.empty(), "--files-from", "use --include/--exclude"},
      {o.ignore_existing, "--ignore-existing", "changes are found against the last run's state"},
      {o.update, "--update", "changes are found against the last run's state"},
      {o.size_only, "--size-only", "changes are found against the last run's state"},
      {o.ignore_times, "--ignore-times", "changes are found against the last run's state"},
      {o.checksum, "--checksum",
       "changes are found against the last run's state; files of one size changed on both "
       "sides are always compared by content"},
  };
  for (const Refused& r : refused) {
    if (r.set) {
      return make_error(ErrorCode::kInvalidArgument, "sync --bidirectional", "",
                        fmt::format("{} does not apply: {}", r.flag, r.why));
    }
  }
  return ok_status();
}

}  // namespace

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
    if (req.options.resync && !req.options.bidirectional) {
      print_error("--resync goes with --bidirectional");
      context().exit_code = kExitUsage;
      return;
    }
    if (req.options.bidirectional) {
      if (Status ok = check_bidirectional(args->paths, req.options); !ok.ok()) {
        print_error(ok.error());
        context().exit_code = kExitUsage;
        return;
      }
      BisyncRequest bisync;
      bisync.a = args->paths[0];
      bisync.b = args->paths[1];
      bisync.options = req.options;
      RenderOptions render = args->render;
      render.sync = true;
      render.bidirectional = true;
      render.dry_run = req.options.dry_run;
      render.verb = "synced";
      context().exit_code = run_bisync_with_ui(bisync, render);
      return;
    }
    req.options.sync = true;
    req.options.recursive = true;
    if (req.options.delete_before) req.options.delete_extraneous = true;
    req.sources.assign(args->paths.begin(), args->paths.end() - 1);
    req.destination = args->paths.back();
    RenderOptions render = args->render;
    render.sync = true;
    render.dry_run = req.options.dry_run;
    render.verb = "synced";
    std::vector<SourceWatch> watchers;
    if (req.options.watch) {
      // The watchers start before the first comparison, so that nothing
      // changed meanwhile goes unseen; they queue until it is done.
      auto started = start_watchers(req);
      if (!started) {
        print_error(started.error());
        const ErrorCode code = started.error().code;
        context().exit_code = code == ErrorCode::kInvalidArgument || code == ErrorCode::kUnsupported
                                  ? kExitUsage
                                  : kExitFailure;
        return;
      }
      watchers = std::move(started).value();
    }
    if (watchers.empty()) {
      context().exit_code = run_transfer_with_ui(req, render);
      return;
    }
    // --watch ends with SIGINT/SIGTERM, which is then no interruption: the
    // watchers stop, what they reported is synced, and the run ends as
    // done. Copies still running 10 s later are cancelled (partials kept).
    std::atomic<bool> cancel{false};
    std::atomic<bool> ended{false};
    std::thread stopper([&] {
      while (!context().cancel.load() && !ended.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      for (auto& w : watchers) w.watch->stop();
      for (int i = 0; i < 200 && !ended.load(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (!ended.load()) cancel.store(true);
    });
    context().exit_code = run_transfer_with_ui(req, render, &cancel);
    ended.store(true);
    stopper.join();
    context().signal_ends = !cancel.load();
    // A watch that ended by itself (the folder moved or removed, a server
    // that refuses it for good) ended the sync: that is a failure.
    for (auto& w : watchers) {
      if (auto why = w.watch->failure()) {
        print_error(*why);
        if (context().exit_code == kExitOk) context().exit_code = kExitFailure;
      }
    }
  });
}

}  // namespace xfer::cli
