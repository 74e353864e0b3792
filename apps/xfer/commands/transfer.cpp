// xfer transfer (alias cp): flags -> TransferRequest -> libxfer, with a live
// progress line, JSON lines and a one-line summary.

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "../common.hpp"
#include "xfer/backend/xfer.hpp"
#include "xfer/core/names.hpp"
#include "xfer/core/units.hpp"
#include "xfer/metrics/streams.hpp"

namespace xfer::cli {
namespace {

using nlohmann::json;

class CliObserver final : public BisyncObserver {
 public:
  explicit CliObserver(const RenderOptions& r) : render_(r) {}

  // sync --bidirectional: the side the changes reported next are made on.
  void on_side(char side) override { side_.store(side); }
  void on_conflict(const std::string& path, const std::string& kept_as, char side) override {
    if (render_.json) {
      emit({{"event", "conflict"},
            {"path", path},
            {"kept_as", kept_as},
            {"side", std::string(1, side)}});
      return;
    }
    if (render_.quiet) return;
    // Stderr, as a warning is: it needs the user's eyes, and stdout keeps
    // the -i lines a script parses.
    print_warning(fmt::format(
        "conflict: {} changed on both sides since the last sync; {}'s version "
        "{} {}",
        printable_name(path, 4096), side, render_.dry_run ? "would be kept as" : "is kept as",
        printable_name(kept_as, 4096)));
  }

  void on_error(const Error& e) override {
    printed_errors_.fetch_add(1);
    print_error(e);
    if (render_.json)
      emit({{"event", "error"},
            {"path", e.path},
            {"operation", e.operation},
            {"code", std::string(to_string(e.code))},
            {"message", e.message()}});
  }
  void on_warning(const std::string& m) override {
    if (!render_.quiet) print_warning(m);
    if (render_.json) emit({{"event", "warning"}, {"message", m}});
  }
  void on_copied(const std::string& src, const std::string& dst, std::uint64_t size) override {
    if (render_.sync) return;  // a sync shows its changes (on_change)
    if (render_.json) {
      emit({{"event", "copied"}, {"source", src}, {"destination", dst}, {"size", size}});
    } else if (render_.verbose) {
      std::lock_guard lock(mu_);
      print_out("{} -> {} ({})\n", src, dst, format_bytes(static_cast<double>(size)));
    }
  }
  void on_change(std::string_view item, const std::string& name, const std::string& target,
                 std::uint64_t size) override {
    const char side = side_.load();
    if (render_.json) {
      json j = {{"event", "change"}, {"item", std::string(item)}, {"path", name}, {"size", size}};
      if (!target.empty()) j["target"] = target;
      if (side != 0) j["side"] = std::string(1, side);
      emit(std::move(j));
      return;
    }
    // Names and targets may come from a peer: control characters are
    // escaped, so a name can neither forge a line nor drive the terminal.
    const std::string shown_name = printable_name(name, 4096);
    const std::string shown_target = target.empty() ? "" : " -> " + printable_name(target, 4096);
    std::string line;
    if (render_.itemize) {
      // rsync's --itemize-changes: "%i %n", and " -> TARGET" for a symlink.
      line = side != 0 ? fmt::format("{} {} {}{}", side, item, shown_name, shown_target)
                       : fmt::format("{} {}{}", item, shown_name, shown_target);
    } else if (render_.verbose || render_.dry_run) {
      const bool deleting = !item.empty() && item[0] == '*';
      const bool created = item.find("+++") != std::string_view::npos;
      const bool attrs_only = !item.empty() && item[0] == '.';
      const char* what = deleting  ? (render_.dry_run ? "would delete" : "deleted")
                         : created ? (render_.dry_run ? "would create" : "created")
                         : attrs_only
                             ? (render_.dry_run ? "would set attributes of" : "set attributes of")
                             : (render_.dry_run ? "would update" : "updated");
      const std::string where = side != 0 ? fmt::format(" on {}", side) : "";
      line = size > 0 ? fmt::format("{} {}{} ({})", what, shown_name, where,
                                    format_bytes(static_cast<double>(size)))
                      : fmt::format("{} {}{}", what, shown_name, where);
    } else {
      return;
    }
    std::lock_guard lock(mu_);
    if (render_.dry_run) {
      planned_.push_back(std::move(line));  // sorted, at the end
    } else {
      print_out("{}\n", line);
    }
  }
  void on_planned(const std::string& src, const std::string& dst, std::uint64_t size) override {
    if (render_.sync) return;  // a sync's plan is its changes (on_change)
    if (render_.json) {
      emit({{"event", "planned"}, {"source", src}, {"destination", dst}, {"size", size}});
    } else {
      // Workers plan in any order: the lines are printed sorted, at the end.
      std::lock_guard lock(mu_);
      planned_.push_back(
          fmt::format("{} -> {} ({})", src, dst, format_bytes(static_cast<double>(size))));
    }
  }
  // The dry run's lines, sorted by source path.
  void print_planned() {
    std::lock_guard lock(mu_);
    std::sort(planned_.begin(), planned_.end());
    for (const auto& line : planned_) print_out("{}\n", line);
    planned_.clear();
  }
  // One JSON line; every event carries the schema version.
  void emit(json j) {
    j["schema"] = kJsonSchema;
    std::lock_guard lock(mu_);
    write_out(j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", true);
  }
  unsigned printed_errors() const { return printed_errors_.load(); }

 private:
  const RenderOptions& render_;
  std::atomic<char> side_{0};
  std::mutex mu_;
  std::vector<std::string> planned_;
  std::atomic<unsigned> printed_errors_{0};
};

json progress_json(const ProgressSnapshot& s) {
  return {{"event", "progress"},
          {"elapsed_s", s.elapsed_s},
          {"bytes", s.bytes_done},
          {"bytes_total", s.bytes_total},
          {"files", s.files_done},
          {"files_total", s.files_total},
          {"files_failed", s.files_failed},
          {"scan_complete", s.scan_complete},
          {"rate_bps", s.rate_bps},
          {"percent", s.percent},
          {"eta_s", s.eta_s}};
}

json streams_json() {
  json out = json::array();
  for (const auto& s : context().stats->snapshot("")) {
    out.push_back({{"endpoint", s.endpoint},
                   {"path", s.path},
                   {"index", s.index},
                   {"bytes_sent", s.bytes_sent},
                   {"bytes_received", s.bytes_received},
                   {"seconds", s.seconds},
                   {"throughput_bps", s.throughput_bps()},
                   {"rtt_ms", s.rtt_ms},
                   {"min_rtt_ms", s.min_rtt_ms},
                   {"cwnd", s.cwnd},
                   {"retransmits", s.retransmits},
                   {"delivery_rate_bps", s.delivery_rate_bps},
                   {"busy_s", s.busy_s},
                   {"rwnd_limited_s", s.rwnd_limited_s},
                   {"sndbuf_limited_s", s.sndbuf_limited_s}});
  }
  return out;
}

// "1 file", "3 files", "0 files".
std::string count_of(std::uint64_t n, std::string_view noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

json controller_json() {
  json out = json::array();
  for (const auto& e : context().stats->events()) {
    json event = {{"endpoint", e.endpoint},
                  {"t", e.seconds},
                  {"goodput_bps", e.goodput_bps},
                  {"action", e.action}};
    if (e.action == "chunk size") {
      event["chunk_size"] = e.chunk_size;
      event["rtt_ms"] = e.rtt_ms;
    } else {
      event["streams"] = e.streams;
      event["retransmit_pct"] = e.retransmit_pct;
    }
    if (e.moved > 0) event["moved"] = e.moved;
    out.push_back(std::move(event));
  }
  return out;
}

// --stats: the figures a user of rsync --stats looks for, one per line.
void print_stats(const TransferResult& r, const TransferCounters& c, double rate) {
  auto size = [](std::uint64_t b) {
    return b < 1024 ? count_of(b, "byte")
                    : fmt::format("{} ({} bytes)", format_bytes(static_cast<double>(b)), b);
  };
  const std::uint64_t copied =
      r.files_done - std::min(r.files_done, r.files_unchanged + r.files_resumed);
  fmt::print(stderr,
             "Files found:          {}\n"
             "Files copied:         {}\n"
             "Files unchanged:      {}, {}\n"
             "Files resumed:        {}\n"
             "Files failed:         {}\n"
             "Files skipped:        {}\n"
             "Bytes copied:         {}\n"
             "Bytes already there:  {}\n"
             "Bytes verified:       {}\n"
             "Retries:              {}\n"
             "Time:                 {:.2f} s\n"
             "Rate:                 {}/s\n",
             c.files_total.load(), copied, r.files_unchanged, size(r.bytes_unchanged),
             r.files_resumed, r.files_failed, r.files_skipped, size(r.bytes_done),
             size(r.bytes_resumed), size(c.bytes_verified.load()), r.retries, r.seconds,
             format_bytes(rate));
}

}  // namespace

void add_render_flags(CLI::App& cmd, RenderOptions& render) {
  cmd.set_help_flag("--help", "Print this help message and exit");
  cmd.add_flag("--json", render.json, "Emit JSON lines (progress, errors, summary) on stdout");
  cmd.add_flag_callback(
      "--no-progress", [&render] { render.progress = false; }, "No live progress line");
  cmd.add_flag_callback(
      "-P,--progress", [&render] { render.progress = true; },
      "The live progress line (the default on a terminal; partials are always "
      "kept, as rsync -P asks)");
  cmd.add_flag("-q,--quiet", render.quiet, "No progress, no summary (errors still print)");
  cmd.add_flag("-v,--verbose", render.verbose, "One line per file copied, as rsync -v");
  cmd.add_flag("--stats", render.stats, "Figures after the summary, as rsync --stats");
  cmd.add_flag("-h,--human-readable", render.human, "Sizes in the summary as 73.0 MiB");
}

namespace {

using Runner = std::function<Result<TransferResult>(const TransferRequest&, TransferCounters&,
                                                    BisyncObserver*, const std::atomic<bool>*)>;

int run_with_ui(const TransferRequest& asked, const RenderOptions& render,
                const std::atomic<bool>* cancel, const Runner& runner) {
  if (cancel == nullptr) cancel = &context().cancel;
  // This process's backends, and its one statistics board for every
  // endpoint (the --json summary reads it).
  TransferRequest request = asked;
  if (!request.backends) request.backends = context().backends;
  for (EndpointOptions* ep :
       {&request.options.source_endpoint, &request.options.destination_endpoint}) {
    if (!ep->stats_board) ep->stats_board = context().stats;
  }
  TransferCounters counters;
  CliObserver observer(render);
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  const bool live = render.progress && !render.quiet && tty;

  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread renderer;
  if (live || render.json) {
    renderer = std::thread([&] {
      ProgressMeter meter(counters);
      auto last_json = std::chrono::steady_clock::now();
      std::unique_lock lock(mu);
      while (!cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return done; })) {
        ProgressSnapshot s = meter.sample();
        if (live) print_progress(progress_line(s, terminal_width(STDERR_FILENO)));
        auto now = std::chrono::steady_clock::now();
        if (render.json && now - last_json >= std::chrono::seconds(1)) {
          json event = progress_json(s);
          // sync --watch: how long the changes take to land, as they land.
          if (const std::uint64_t n = counters.changes_propagated.load(); n > 0) {
            event["propagation"] = {
                {"changes", n},
                {"last_ms", static_cast<double>(counters.propagation_last_us.load()) / 1000.0},
                {"max_ms", static_cast<double>(counters.propagation_max_us.load()) / 1000.0}};
          }
          observer.emit(std::move(event));
          last_json = now;
        }
      }
      if (live) print_progress("");
    });
  }

  Result<TransferResult> result = runner(request, counters, &observer, cancel);
  {
    std::lock_guard lock(mu);
    done = true;
  }
  cv.notify_all();
  if (renderer.joinable()) renderer.join();
  observer.print_planned();

  // Interrupted before anything started (while the roots were resolved):
  // the error is the cancel's doing, not the user's to read.
  if (!result && cancel->load()) return kExitInterrupted;
  if (!result) {
    if (observer.printed_errors() == 0) {
      print_error(result.error());
      if (render.json) {
        observer.emit({{"event", "error"},
                       {"path", result.error().path},
                       {"message", result.error().message()}});
      }
    }
    if (render.json) {
      observer.emit({{"event", "summary"},
                     {"ok", false},
                     {"files", 0},
                     {"bytes", 0},
                     {"errors", std::max(1u, observer.printed_errors())}});
    }
    return kExitFailure;
  }
  const TransferResult& r = *result;
  // Errors a later rescan repaired (sync --watch) are reported, but the
  // run's outcome is what is still wrong.
  const std::uint64_t errors_all = counters.errors.load();
  const std::uint64_t errors = errors_all - std::min(errors_all, r.errors_repaired);
  double rate = r.seconds > 0 ? static_cast<double>(r.bytes_done) / r.seconds : 0;
  const int code = outcome_exit_code(r.cancelled, errors, r.files_done);
  const std::string limit = describe_limit(context().stats->snapshot(""));
  if (render.json) {
    json summary = {{"event", "summary"},
                    {"ok", code == kExitOk},
                    {"files", r.files_done},
                    {"files_failed", r.files_failed},
                    {"files_skipped", r.files_skipped},
                    {"bytes", r.bytes_done},
                    {"bytes_zero_copy", counters.bytes_zero_copy.load()},
                    {"bytes_verified", counters.bytes_verified.load()},
                    {"chunks", counters.chunks_done.load()},
                    {"retries", r.retries},
                    {"errors", errors},
                    {"errors_repaired", errors_all - errors},
                    {"seconds", r.seconds},
                    {"rate_bps", rate},
                    {"peak_buffer_bytes", r.peak_buffer_bytes},
                    {"cancelled", r.cancelled},
                    {"dry_run", request.options.dry_run},
                    {"job", r.job_id},
                    {"files_resumed", r.files_resumed},
                    {"streams", streams_json()},
                    {"controller", controller_json()},
                    {"limited_by", limit},
                    {"bytes_resumed", r.bytes_resumed},
                    {"files_unchanged", r.files_unchanged},
                    {"bytes_unchanged", r.bytes_unchanged},
                    {"files_deleted", r.files_deleted},
                    {"files_attrs_set", r.files_attrs_set},
                    {"files_hashed", counters.files_hashed.load()},
                    {"files_delta", counters.files_delta.load()},
                    {"files_renamed", counters.files_renamed.load()},
                    {"propagation",
                     {{"changes", r.propagated},
                      {"p50_ms", r.propagation_p50_ms},
                      {"p99_ms", r.propagation_p99_ms},
                      {"max_ms", r.propagation_max_ms}}},
                    {"bytes_matched", counters.bytes_matched.load()},
                    {"checkpoint",
                     {{"records", r.journal_records},
                      {"fsyncs", r.journal_fsyncs},
                      {"journal_bytes", r.journal_bytes},
                      {"done_index_bytes", r.done_index_bytes},
                      {"compactions", r.compactions},
                      {"snapshots", r.snapshots},
                      {"max_queue_depth", r.checkpoint_max_queue},
                      {"max_flush_lag_us", r.checkpoint_max_lag_us},
                      {"backpressure_waits", r.checkpoint_backpressure}}}};
    if (render.bidirectional) {
      summary["bidirectional"] = {
          {"first_run", r.bisync.first_run}, {"to_a", r.bisync.to_a},
          {"to_b", r.bisync.to_b},           {"deleted_a", r.bisync.deleted_a},
          {"deleted_b", r.bisync.deleted_b}, {"conflicts", r.bisync.conflicts},
          {"entries", r.bisync.entries}};
    }
    observer.emit(std::move(summary));
  }
  if (!render.quiet && r.bytes_resumed > 0) {
    const std::string whole =
        r.files_resumed > 0 ? fmt::format(", {} whole", count_of(r.files_resumed, "file")) : "";
    fmt::print(stderr, "xfer: resumed job {}: {} ({}) already there{}\n", r.job_id,
               format_bytes(static_cast<double>(r.bytes_resumed)),
               count_of(r.bytes_resumed, "byte"), whole);
  }
  if (!render.quiet) {
    std::string unchanged =
        r.files_unchanged > 0 ? fmt::format(", {} unchanged", r.files_unchanged) : "";
    if (r.files_deleted > 0) unchanged += fmt::format(", {} deleted", r.files_deleted);
    fmt::print(stderr, "xfer: {}{} {} ({}){} in {:.2f} s, {}/s, {}{}\n",
               request.options.dry_run ? "would have " : "", render.verb,
               count_of(r.files_done - std::min(r.files_done, r.files_unchanged), "file"),
               render.human ? format_bytes(static_cast<double>(r.bytes_done))
                            : count_of(r.bytes_done, "byte"),
               unchanged, r.seconds, format_bytes(rate),
               errors_all > errors ? fmt::format("{} ({} repaired by a later rescan)",
                                                 count_of(errors, "error"), errors_all - errors)
                                   : count_of(errors, "error"),
               r.cancelled ? " (interrupted)" : "");
    if (!limit.empty()) fmt::print(stderr, "xfer: limited by {}\n", limit);
    if (render.bidirectional) {
      const BisyncCounts& b = r.bisync;
      fmt::print(stderr, "xfer: both ways{}: {} to B, {} to A, {} deleted on B, {} on A, {}{}\n",
                 b.first_run ? " (first run: no state yet)" : "", count_of(b.to_b, "change"),
                 b.to_a, b.deleted_b, b.deleted_a, count_of(b.conflicts, "conflict"),
                 b.conflicts > 0 ? " (both versions kept)" : "");
    }
    if (r.propagated > 0) {
      fmt::print(stderr,
                 "xfer: {} propagated; from the first event to the commit: median {:.0f} ms, "
                 "p99 {:.0f} ms, max {:.0f} ms\n",
                 count_of(r.propagated, "change"), r.propagation_p50_ms, r.propagation_p99_ms,
                 r.propagation_max_ms);
    }
    if (const std::uint64_t matched = counters.bytes_matched.load(); matched > 0) {
      // What the delta saved: bytes_done counts the whole files.
      fmt::print(stderr,
                 "xfer: {} sent as deltas; {} of the bytes above came from the old copies\n",
                 count_of(counters.files_delta.load(), "file"),
                 format_bytes(static_cast<double>(matched)));
    }
    if (render.stats) print_stats(r, counters, rate);
    if (r.cancelled && !r.job_id.empty() && !request.options.dry_run) {
      // What a user needs after Ctrl-C: how to go on.
      const std::uint64_t there = r.bytes_done + r.bytes_resumed + r.bytes_unchanged;
      fmt::print(stderr,
                 "xfer: {} of {} are at the destination; run the same command again, or xfer "
                 "resume {}, to send the rest\n",
                 format_bytes(static_cast<double>(there)),
                 format_bytes(static_cast<double>(counters.bytes_total.load())), r.job_id);
    }
  }
  return code;
}

}  // namespace

int run_transfer_with_ui(const TransferRequest& request, const RenderOptions& render,
                         const std::atomic<bool>* cancel) {
  return run_with_ui(request, render, cancel,
                     [](const TransferRequest& r, TransferCounters& c, BisyncObserver* o,
                        const std::atomic<bool>* stop) { return run_transfer(r, c, o, stop); });
}

int run_bisync_with_ui(const BisyncRequest& bisync, const RenderOptions& render) {
  // The summary's view of the run: its options (a dry run, say).
  TransferRequest shown;
  shown.sources = {bisync.a};
  shown.destination = bisync.b;
  shown.options = bisync.options;
  return run_with_ui(shown, render, nullptr,
                     [&bisync](const TransferRequest& r, TransferCounters& c, BisyncObserver* o,
                               const std::atomic<bool>* stop) {
                       BisyncRequest with = bisync;
                       with.backends = r.backends;
                       with.options.source_endpoint = r.options.source_endpoint;
                       with.options.destination_endpoint = r.options.destination_endpoint;
                       return run_bisync(with, c, o, stop);
                     });
}

void register_transfer(CLI::App& app) {
  struct Args {
    std::vector<std::string> paths;
    OptionFlags flags;
    FilterFlags filters;
    RenderOptions render;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("cp", "Copy files and trees: SRC... DST");
  cmd->alias("transfer");
  cmd->footer(std::string(kRemoteFlagsHelp) + "\n" + kExitCodesHelp);
  cmd->add_option("paths", args->paths, "SRC... DST (paths or URLs)")->required()->expected(2, -1);
  add_option_flags(*cmd, args->flags, kCli);
  add_filter_flags(*cmd, args->filters);
  add_render_flags(*cmd, args->render);
  cmd->callback([args] {
    TransferRequest req;
    req.options = transfer_options(args->flags);
    apply_filter_flags(args->filters, req.options);
    req.sources.assign(args->paths.begin(), args->paths.end() - 1);
    req.destination = args->paths.back();
    context().exit_code = run_transfer_with_ui(req, args->render);
  });
}

}  // namespace xfer::cli
