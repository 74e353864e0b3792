// Job records, <state>/jobs/<id>/job.json (jobs.hpp): written atomically
// (temp + rename), read by `xfer jobs` and `xfer resume`. One engine at a
// time writes a job (it holds the job's lock file).

#include "xfer/engine/jobs.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "xfer/core/checksum.hpp"
#include "xfer/core/files.hpp"
#include "xfer/core/names.hpp"
#include "xfer/core/url.hpp"

namespace xfer {

// A job record lists its sources: large for a job of many sources, but a
// record of this size is damage, not a job.
constexpr std::size_t kMaxJobRecordBytes = 64 << 20;

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string absolute_if_local(const std::string& text) {
  auto url = parse_url(text);
  if (!url || !url->is_local()) return text;
  std::error_code ec;
  auto abs = fs::absolute(url->path, ec);
  if (ec) return text;
  std::string s = abs.lexically_normal().string();
  if (url->trailing_slash && (s.empty() || s.back() != '/')) s += '/';
  return s;
}

// job.json's layout: 2 since rates carry their unit ("30M/s").
constexpr int kJobRecordFormat = 2;

// The options `xfer resume` must run with again (kJob in options.inc), as
// their canonical text: the resumed run plans every file as this one did.
json options_json(const TransferOptions& o) {
  json j = json::object();
  for (auto& [name, text] : option_values(o, kJob)) j[name] = text;
  return j;
}

// A job record is ours, but it sits in a folder the user may edit: each
// value goes through the option table's checks like any other. Records
// before format 2 wrote a rate (--bwlimit) as a bare number of bytes,
// which now reads as KiB/s: such a number keeps its old meaning.
Status options_from_json(const json& j, TransferOptions& o, int format) {
  if (!j.is_object()) {
    return make_error(ErrorCode::kCorrupt, "read job", "", "options must be an object");
  }
  for (const auto& [name, value] : j.items()) {
    std::string text;
    if (value.is_string()) {
      text = value.get<std::string>();
    } else if (value.is_boolean()) {
      text = value.get<bool>() ? "true" : "false";
    } else if (value.is_number_unsigned()) {
      text = std::to_string(value.get<std::uint64_t>());
    } else {
      return make_error(ErrorCode::kCorrupt, "read job", name, "option value of the wrong type");
    }
    const OptionSpec* spec = find_option(name);
    if (format < 2 && spec != nullptr && spec->kind == OptionKind::kRate && !text.empty() &&
        text.find_first_not_of("0123456789") == std::string::npos) {
      text += "B";
    }
    Status s = set_option(o, name, text, kJob);
    if (!s.ok()) return make_error(ErrorCode::kCorrupt, "read job", name, s.error().detail);
  }
  return check_options(o);
}

}  // namespace

bool JobInfo::alive() const {
  return state == JobState::kRunning && pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

std::string default_state_root() {
  if (const char* p = std::getenv("XFER_STATE_DIR"); p && *p) return p;
  const std::string home = xdg_state_home();
  return (home.empty() ? std::string("/.local/state") : home) + "/xfer";
}

std::string job_dir(const std::string& state_root, const std::string& id) {
  return state_root + "/jobs/" + id;
}

std::string derive_job_id(const TransferRequest& request) {
  std::string key = "xfer-job-v1\n";
  for (const auto& s : request.sources) key += absolute_if_local(s) + "\n";
  key += "->" + absolute_if_local(request.destination) + "\n";
  key += fmt::format("r={} c={}", request.options.recursive, request.options.chunk_size);
  return fmt::format("{:016x}", xxh3_64(std::as_bytes(std::span(key.data(), key.size()))));
}

Status write_job(const std::string& state_root, const JobInfo& job) {
  std::string dir = job_dir(state_root, job.id);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return errno_error(ec.value(), "mkdir", dir);
  json j = {{"id", job.id},
            {"format", kJobRecordFormat},
            {"status", std::string(to_string(job.state))},
            {"sources", job.request.sources},
            {"destination", job.request.destination},
            {"options", options_json(job.request.options)},
            {"pid", job.pid},
            {"into_dir", job.into_dir},
            {"created_s", job.created_s},
            {"updated_s", job.updated_s},
            {"files_total", job.files_total},
            {"files_done", job.files_done},
            {"bytes_total", job.bytes_total},
            {"bytes_done", job.bytes_done}};
  return write_file_atomically(dir + "/job.json",
                               j.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

Result<JobInfo> read_job(const std::string& state_root, const std::string& id) {
  XFER_TRY(validate_id(id, "job id"));
  std::string dir = job_dir(state_root, id);
  auto text = read_small_file(dir + "/job.json", kMaxJobRecordBytes);
  if (!text) {
    if (text.error().code == ErrorCode::kNotFound) {
      return make_error(ErrorCode::kNotFound, "read job", id, "no such job");
    }
    return std::move(text).error();
  }
  JobInfo job;
  try {
    json j = json::parse(*text);
    job.id = j.at("id").get<std::string>();
    const auto state = parse_job_state(j.value("status", ""));
    if (!state) {
      return make_error(ErrorCode::kCorrupt, "read job", dir + "/job.json", "unknown status");
    }
    job.state = *state;
    job.request.sources = j.at("sources").get<std::vector<std::string>>();
    job.request.destination = j.at("destination").get<std::string>();
    if (j.contains("options")) {
      Status s = options_from_json(j["options"], job.request.options, j.value("format", 1));
      if (!s.ok()) {
        return make_error(ErrorCode::kCorrupt, "read job", dir + "/job.json", s.error().detail);
      }
    }
    job.pid = j.value("pid", 0);
    job.into_dir = j.value("into_dir", -1);
    job.created_s = j.value("created_s", std::int64_t{0});
    job.updated_s = j.value("updated_s", std::int64_t{0});
    job.files_total = j.value("files_total", std::uint64_t{0});
    job.files_done = j.value("files_done", std::uint64_t{0});
    job.bytes_total = j.value("bytes_total", std::uint64_t{0});
    job.bytes_done = j.value("bytes_done", std::uint64_t{0});
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kCorrupt, "read job", dir + "/job.json", e.what());
  }
  job.dir = dir;
  return job;
}

std::vector<JobInfo> list_jobs(const std::string& state_root) {
  std::vector<JobInfo> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(state_root + "/jobs", ec)) {
    if (!e.is_directory()) continue;
    auto job = read_job(state_root, e.path().filename().string());
    if (job) out.push_back(std::move(job).value());
  }
  std::sort(out.begin(), out.end(),
            [](const JobInfo& a, const JobInfo& b) { return a.updated_s > b.updated_s; });
  return out;
}

Status remove_job(const std::string& state_root, const std::string& id) {
  XFER_TRY(validate_id(id, "job id"));
  std::error_code ec;
  fs::remove_all(job_dir(state_root, id), ec);
  if (ec) return errno_error(ec.value(), "remove", job_dir(state_root, id));
  return ok_status();
}

}  // namespace xfer
