// xfer jobs / xfer resume: the checkpointed transfers known on this machine.
//
// Main thread only (CLI11 callbacks).

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "../common.hpp"
#include "xfer/backend/local.hpp"
#include "xfer/checkpoint/checkpoint.hpp"
#include "xfer/core/units.hpp"
#include "xfer/engine/jobs.hpp"
#include "xfer/io/unique_fd.hpp"

namespace xfer::cli {
namespace {

using nlohmann::json;

// A "running" job whose process is gone was killed: show it as such.
std::string shown_status(const JobInfo& j) {
  if (j.state == JobState::kRunning && !j.alive()) return "killed";
  return std::string(to_string(j.state));
}

// What a job holds on disk: its state folder, and the partials of the
// files it had begun (known from its checkpoint; their sizes where the
// destination is local).
struct Held {
  std::uint64_t state_bytes = 0;
  std::vector<checkpoint::FileBegin> begun;
  std::uint64_t partial_bytes = 0;   // allocated, local partials only
  std::uint64_t recorded_bytes = 0;  // what the checkpoint vouches for (not while running)
  bool local = true;                 // the destination is this machine
};

Held held_by(const JobInfo& j) {
  Held h;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(j.dir, ec)) {
    std::error_code ec2;
    if (e.is_regular_file(ec2)) h.state_bytes += e.file_size(ec2);
  }
  auto url = context().backends->parse(j.request.destination);
  h.local = url && url->is_local();
  if (j.alive()) return h;  // its checkpoint is that process's to read
  checkpoint::Options o;
  o.dir = j.dir;
  auto ckpt = checkpoint::Checkpoint::open(o);
  if (!ckpt) return h;
  h.begun = (*ckpt)->active_files();
  h.recorded_bytes = (*ckpt)->recorded_bytes();
  if (h.local) {
    for (const auto& f : h.begun) {
      struct stat st {};
      const std::string partial = local_partial_path(f.destination, j.id.substr(0, 12));
      if (::lstat(partial.c_str(), &st) == 0) {
        h.partial_bytes += static_cast<std::uint64_t>(st.st_blocks) * 512;
      }
    }
  }
  return h;
}

std::string describe_held(const Held& h) {
  std::string partials = h.begun.empty() ? "no partial file"
                         : h.local       ? fmt::format("{} partial file{} ({})", h.begun.size(),
                                                 h.begun.size() == 1 ? "" : "s",
                                                       format_bytes(static_cast<double>(h.partial_bytes)))
                                         : fmt::format("{} partial file{} at the destination",
                                                       h.begun.size(), h.begun.size() == 1 ? "" : "s");
  return fmt::format("{}, state {}", partials, format_bytes(static_cast<double>(h.state_bytes)));
}

// Removes a job that no process runs: the partials of the files it had
// begun (through the destination's backend, so a server's too), then its
// state folder.
Status remove_whole_job(const std::string& root, const JobInfo& j, const Held& held) {
  const std::string lock_path = j.dir + "/lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CLOEXEC));
  if (j.alive() || (lock.valid() && ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)) {
    return make_error(ErrorCode::kUnavailable, "remove job", j.id,
                      fmt::format("it is running (pid {}): stop it first", j.pid));
  }
  if (!held.begun.empty()) {
    XFER_ASSIGN_OR_RETURN(Endpoint dst, open_endpoint(j.request.destination));
    for (const auto& f : held.begun) {
      SinkOptions so;
      so.size = f.size;
      so.resume_name = j.id.substr(0, 12);
      so.resume_existing = true;
      auto sink = dst.backend->open_sink(f.destination, so);
      if (!sink) return sink.error();
      XFER_TRY((*sink)->abort());
    }
  }
  return remove_job(root, j.id);
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
  struct Rm {
    std::vector<std::string> ids;
    bool failed = false, all = false;
    std::string state_root;
  };
  auto rm = std::make_shared<Rm>();
  CLI::App* rm_cmd = cmd->add_subcommand(
      "rm", "Remove jobs and what they hold: their partial files and their state");
  rm_cmd->add_option("ids", rm->ids, "Job ids (xfer jobs)");
  rm_cmd->add_flag("--failed", rm->failed, "Every failed, partial, cancelled or killed job");
  rm_cmd->add_flag("--all", rm->all, "Every job no process is running");
  rm_cmd->add_option("--state-dir", rm->state_root, "State folder (default ~/.local/state/xfer)");
  rm_cmd->callback([rm] {
    if (rm->ids.empty() == !(rm->failed || rm->all)) {
      throw CLI::ValidationError("jobs rm", "give job ids, or --failed, or --all");
    }
    const std::string root = rm->state_root.empty() ? default_state_root() : rm->state_root;
    std::vector<JobInfo> chosen;
    if (!rm->ids.empty()) {
      for (const auto& id : rm->ids) {
        auto job = read_job(root, id);
        if (!job) {
          print_error(job.error());
          context().exit_code = kExitFailure;
          continue;
        }
        chosen.push_back(std::move(job).value());
      }
    } else {
      for (auto& j : list_jobs(root)) {
        if (j.alive()) continue;
        if (rm->all || j.state != JobState::kDone) chosen.push_back(std::move(j));
      }
    }
    for (const auto& j : chosen) {
      const Held held = held_by(j);
      Status s = remove_whole_job(root, j, held);
      if (!s.ok()) {
        print_error(s.error());
        context().exit_code = kExitFailure;
        continue;
      }
      print_out("removed job {} ({}): {}\n", j.id, shown_status(j), describe_held(held));
    }
  });
  cmd->callback([a, cmd] {
    if (cmd->got_subcommand("rm")) return;
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
      print_out("{:<16}  {:<11}  {:>13}  {:>21}  {:>10}  {}\n", "ID", "STATUS", "FILES", "BYTES",
                "ON DISK", "TRANSFER");
    }
    for (const auto& j : jobs) {
      if (!a->all && j.state == JobState::kDone) continue;
      std::string what =
          fmt::format("{} -> {}", fmt::join(j.request.sources, " "), j.request.destination);
      const Held held = held_by(j);
      if (a->json) {
        json o = {{"schema", kJsonSchema},
                  {"id", j.id},
                  {"state_bytes", held.state_bytes},
                  {"partial_files", held.begun.size()},
                  {"partial_bytes", held.partial_bytes},
                  {"recorded_bytes", held.recorded_bytes},
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
        print_out("{:<16}  {:<11}  {:>13}  {:>21}  {:>10}  {}\n", j.id, shown_status(j),
                  fmt::format("{}/{}", j.files_done, j.files_total),
                  fmt::format("{}/{}",
                              format_bytes(
                                  static_cast<double>(std::max(j.bytes_done, held.recorded_bytes))),
                              format_bytes(static_cast<double>(j.bytes_total))),
                  format_bytes(static_cast<double>(held.state_bytes + held.partial_bytes)), what);
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
