// xfer jobs / xfer resume: the checkpointed transfers known on this machine.
//
// Main thread only (CLI11 callbacks).

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "../common.hpp"
#include "xfer/core/units.hpp"
#include "xfer/engine/jobs.hpp"

namespace xfer::cli {
namespace {

using nlohmann::json;

// A "running" job whose process is gone was killed: show it as such.
std::string shown_status(const JobInfo& j) {
  if (j.state == JobState::kRunning && !j.alive()) return "killed";
  return std::string(to_string(j.state));
}

}  // namespace

void register_jobs(CLI::App& app) {
  struct Args {
    bool json = false, all = false, clean = false;
    std::string state_root;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("jobs", "List unfinished transfer jobs (resumable)");
  cmd->footer(kExitCodesHelp);
  cmd->add_flag("--json", a->json, "One JSON object per job");
  cmd->add_flag("--all", a->all, "Include finished jobs");
  cmd->add_flag("--clean", a->clean, "Remove the state of finished jobs");
  cmd->add_option("--state-dir", a->state_root, "State folder (default ~/.local/state/xfer)");
  cmd->callback([a] {
    std::string root = a->state_root.empty() ? default_state_root() : a->state_root;
    auto jobs = list_jobs(root);
    if (a->clean) {
      unsigned removed = 0;
      for (const auto& j : jobs) {
        if (j.state != JobState::kDone) continue;
        Status s = remove_job(root, j.id);
        if (!s.ok()) {
          print_error(s.error());
          context().exit_code = kExitFailure;
        } else {
          ++removed;
        }
      }
      print_out("removed {} finished job(s)\n", removed);
      return;
    }
    if (!a->json) {
      print_out("{:<16}  {:<11}  {:>13}  {:>21}  {}\n", "ID", "STATUS", "FILES", "BYTES",
                "TRANSFER");
    }
    for (const auto& j : jobs) {
      if (!a->all && j.state == JobState::kDone) continue;
      std::string what =
          fmt::format("{} -> {}", fmt::join(j.request.sources, " "), j.request.destination);
      if (a->json) {
        json o = {{"id", j.id},
                  {"status", shown_status(j)},
                  {"sources", j.request.sources},
                  {"destination", j.request.destination},
                  {"files_done", j.files_done},
                  {"files_total", j.files_total},
                  {"bytes_done", j.bytes_done},
                  {"bytes_total", j.bytes_total},
                  {"updated_s", j.updated_s},
                  {"pid", j.pid}};
        print_out("{}\n", o.dump(-1, ' ', false, json::error_handler_t::replace));
      } else {
        print_out("{:<16}  {:<11}  {:>13}  {:>21}  {}\n", j.id, shown_status(j),
                  fmt::format("{}/{}", j.files_done, j.files_total),
                  fmt::format("{}/{}", format_bytes(static_cast<double>(j.bytes_done)),
                              format_bytes(static_cast<double>(j.bytes_total))),
                  what);
      }
    }
  });
}

void register_resume(CLI::App& app) {
  struct Args {
    std::string id, state_root;
    bool json = false, quiet = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("resume", "Resume an interrupted job by id (see xfer jobs)");
  cmd->footer(kExitCodesHelp);
  cmd->add_option("id", a->id, "Job id")->required();
  cmd->add_flag("--json", a->json, "JSON lines on stdout");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress, no summary");
  cmd->add_option("--state-dir", a->state_root, "State folder (default ~/.local/state/xfer)");
  cmd->callback([a] {
    std::string root = a->state_root.empty() ? default_state_root() : a->state_root;
    auto job = read_job(root, a->id);
    if (!job) {
      print_error(job.error());
      context().exit_code = kExitFailure;
      return;
    }
    // The job's own options (job.json), so every file is planned as in the
    // first run; how to reach the endpoints (--token, --tls) and the data
    // channel's global flags (--streams, --encrypt) come from this command.
    TransferRequest req = job->request;
    apply_flags(context().global_flags, req.options);
    req.options.source_endpoint = context().endpoint;
    req.options.destination_endpoint = context().endpoint;
    req.options.job_id = job->id;
    req.options.state_root = root;
    RenderOptions render;
    render.json = a->json;
    render.quiet = a->quiet;
    context().exit_code = run_transfer_with_ui(req, render);
  });
}

}  // namespace xfer::cli
