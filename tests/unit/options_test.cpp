// The option table (include/xfer/engine/options.inc): every option walks
// every place it may be set — a CLI flag, the config file, the job record,
// a server's job request — and comes out as it went in; bad values are
// refused with the option's name; a resumed job plans as its first run did.
// Compiled twice: also as xfer_option_extra_test with XFER_TEST_EXTRA_OPTION,
// where options.inc has one more line and nothing else changes.

#include <gtest/gtest.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/planner.hpp"
#include "option_flags.hpp"
#include "xfer/core/config.hpp"
#include "xfer/core/files.hpp"
#include "xfer/engine/jobs.hpp"
#include "xfer/engine/options.hpp"
#include "xfer/v1/xfer.pb.h"

namespace xfer {
namespace {

namespace fs = std::filesystem;

// A value for `spec` that differs from its default, as the user would type it.
std::string test_value(const OptionSpec& spec) {
  const std::string def = option_default_text(spec);
  switch (spec.kind) {
    case OptionKind::kFlag:
      return def == "true" ? "false" : "true";
    case OptionKind::kSwitch:
      return "true";
    case OptionKind::kCount:
      return std::to_string(spec.max);
    case OptionKind::kSize:
      return std::to_string(spec.max / 2);
    case OptionKind::kRate:  // a bare number is KiB/s
      return std::to_string(spec.max / 2048);
    case OptionKind::kMillis:  // between the retry defaults (50ms..5s): keeps base <= cap
      return std::to_string(std::min<std::uint64_t>(spec.max, 4000)) + "ms";
    case OptionKind::kId:
      return "test-job_1";
    case OptionKind::kAddresses:
      return "10.0.1.1,fd00::2";
    case OptionKind::kFilter:
      return "+ keep.o\n- *.o\n- /build/\n";
    case OptionKind::kPath:
      return "old/backups";
    case OptionKind::kPathList:
      return "docs/\n./src/main.c\n# a comment\n";
  }
  return {};
}

std::string canonical(const OptionSpec& spec, const std::string& text) {
  TransferOptions o;
  Status s = spec.set(o, text);
  EXPECT_TRUE(s.ok()) << spec.name << ": " << s.error().message();
  return spec.get(o);
}

// Parses `args` as the transfer command's and xfer's own flags would.
TransferOptions from_cli(std::vector<std::string> args) {
  CLI::App app;
  cli::OptionFlags global, command;
  app.fallthrough();  // before the command is added, as in apps/xfer/main.cpp
  cli::add_option_flags(app, global, kGlobal);
  CLI::App* cmd = app.add_subcommand("sync");  // sync takes every flag cp does, and its own
  cli::add_option_flags(*cmd, command, static_cast<OptionWhere>(kCli | kSync));
  args.insert(args.begin(), "sync");
  std::reverse(args.begin(), args.end());  // CLI11 takes argv-style, last first
  app.parse(args);
  TransferOptions o;
  cli::apply_flags(global, o);
  cli::apply_flags(command, o);
  return o;
}

std::vector<std::string> cli_args(const OptionSpec& spec, const std::string& value) {
  const std::string flag = option_flag(spec);
  if (spec.kind == OptionKind::kFlag || spec.kind == OptionKind::kSwitch) {
    return {value == "true" ? flag : "--no-" + flag.substr(2)};
  }
  return {flag, value};
}

std::string toml_value(const OptionSpec& spec, const std::string& text) {
  if (spec.kind == OptionKind::kFlag) return text;
  if (spec.kind == OptionKind::kCount) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '\n') {
      quoted += "\\n";  // filter rules are lines
    } else {
      if (c == '"' || c == '\\') quoted += '\\';
      quoted += c;
    }
  }
  return quoted + "\"";
}

TEST(OptionTable, EveryOptionIsDeclaredOnceAndReachable) {
  std::vector<std::string_view> names;
  for (const auto& spec : option_table()) {
    EXPECT_EQ(std::count(names.begin(), names.end(), spec.name), 0) << spec.name;
    names.push_back(spec.name);
    EXPECT_NE(spec.where & (kCli | kSync | kGlobal | kConfig), 0u)
        << spec.name << " cannot be set by anyone";
    EXPECT_FALSE(spec.help.empty()) << spec.name;
    EXPECT_EQ(find_option(spec.name), &spec);
    // The default reads back as itself.
    TransferOptions o;
    ASSERT_TRUE(spec.set(o, option_default_text(spec)).ok()) << spec.name;
    EXPECT_TRUE(same_options(o, TransferOptions{}, static_cast<OptionWhere>(~0u))) << spec.name;
  }
}

// CLI -> config -> job record -> job request -> options, for every option,
// through each place it may be set.
TEST(OptionTable, EveryOptionRoundTripsThroughEveryPlace) {
  const fs::path state = fs::path(::testing::TempDir()) / ("options-" + std::to_string(::getpid()));
  for (const auto& spec : option_table()) {
    SCOPED_TRACE(std::string(spec.name));
    const std::string typed = test_value(spec);
    const std::string want = canonical(spec, typed);
    ASSERT_NE(want, option_default_text(spec)) << "the test value must not be the default";
    std::string text = typed;
    if (spec.where & (kCli | kSync | kGlobal)) {
      TransferOptions o = from_cli(cli_args(spec, typed));
      ASSERT_EQ(spec.get(o), want);
      text = spec.get(o);
    }
    if (spec.where & kConfig) {
      auto cfg = parse_config(
          "[transfer]\n" + std::string(spec.name) + " = " + toml_value(spec, text) + "\n",
          "test.toml");
      ASSERT_TRUE(cfg.ok()) << cfg.error().message();
      TransferOptions o;
      ASSERT_TRUE(apply_config(*cfg, o).ok());
      ASSERT_EQ(spec.get(o), want);
      text = spec.get(o);
    }
    if (spec.where & kJob) {
      JobInfo job;
      job.id = "roundtrip";
      job.state = JobState::kRunning;
      job.request.sources = {"/src"};
      job.request.destination = "/dst";
      ASSERT_TRUE(spec.set(job.request.options, text).ok());
      ASSERT_TRUE(write_job(state.string(), job).ok());
      auto back = read_job(state.string(), "roundtrip");
      ASSERT_TRUE(back.ok()) << back.error().message();
      ASSERT_EQ(spec.get(back->request.options), want);
      EXPECT_TRUE(same_options(back->request.options, job.request.options, kJob));
      text = spec.get(back->request.options);
    }
    if (spec.where & kRemote) {
      TransferOptions o;
      ASSERT_TRUE(spec.set(o, text).ok());
      v1::JobRequest req;
      for (auto& [name, value] : option_values(o, kRemote)) {
        (*req.mutable_options()->mutable_values())[name] = value;
      }
      v1::JobRequest wire;
      ASSERT_TRUE(wire.ParseFromString(req.SerializeAsString()));
      TransferOptions server;
      for (const auto& [name, value] : wire.options().values()) {
        ASSERT_TRUE(set_option(server, name, value, kRemote).ok()) << name;
      }
      ASSERT_EQ(spec.get(server), want);
      EXPECT_TRUE(same_options(server, o, kRemote));
    }
  }
  fs::remove_all(state);
}

TEST(OptionTable, BadValuesAreRefusedNamingTheOption) {
  for (const auto& spec : option_table()) {
    SCOPED_TRACE(std::string(spec.name));
    std::vector<std::string> bad = {"garbage", "-1x"};
    if (spec.kind == OptionKind::kCount) bad.push_back(std::to_string(spec.max + 1));
    if (spec.kind == OptionKind::kSize) bad.push_back(std::to_string(spec.max + 1024));
    if (spec.kind == OptionKind::kRate) bad.push_back(std::to_string(spec.max / 1024 + 1));
    if (spec.kind == OptionKind::kId) bad = {"../x", "a/b", "x y"};
    if (spec.kind == OptionKind::kAddresses) bad = {"10.0.0.1,host.example", "10.0.0.256", "[::1]"};
    if (spec.kind == OptionKind::kFilter) bad = {"garbage", "+ \n", "merge x\n"};
    if (spec.kind == OptionKind::kPathList) bad = {"../x\n", "a/../b\n", "ok\nb/..\n"};
    if (spec.kind == OptionKind::kPath) {
      bad = {"../x", "a/../b", "/abs", "a//b", "./a", std::string("a\nb"), std::string(1100, 'x')};
    }
    for (const auto& b : bad) {
      TransferOptions o;
      Status s = spec.set(o, b);
      ASSERT_FALSE(s.ok()) << b;
      EXPECT_NE(s.error().message().find(spec.name), std::string::npos) << s.error().message();
      EXPECT_TRUE(same_options(o, TransferOptions{}, static_cast<OptionWhere>(~0u)))
          << "a refused value must leave the options as they were";
    }
  }
  TransferOptions o;
  EXPECT_FALSE(set_option(o, "no_such_option", "1", kConfig).ok());
  // Not every option may come from everywhere: a server's job request may
  // not size the server's memory or threads.
  EXPECT_FALSE(set_option(o, "memory", "1T", kRemote).ok());
  EXPECT_FALSE(set_option(o, "workers", "1024", kRemote).ok());
  EXPECT_FALSE(set_option(o, "dry_run", "true", kConfig).ok());
}

TEST(OptionTable, CliFlagsParseAndConflict) {
  TransferOptions o = from_cli({"-r", "--chunk-size", "16M", "--no-zero-copy", "--encrypt"});
  EXPECT_TRUE(o.recursive);
  EXPECT_EQ(o.chunk_size, 16ull << 20);
  EXPECT_FALSE(o.zero_copy);
  EXPECT_EQ(o.encrypt, 1);
  EXPECT_THROW(from_cli({"--encrypt", "--no-encrypt"}), CLI::ValidationError);
  EXPECT_THROW(from_cli({"--chunk-size", "12Q"}), CLI::ValidationError);
  EXPECT_THROW(from_cli({"--workers", "0"}), CLI::ValidationError);
}

TEST(Config, ParsesAllFields) {
  auto cfg = parse_config(R"(
[transfer]
workers = 8
chunk_size = "32M"
memory = 4194304
bwlimit = "10M"
verify = true
fsync = false
small_file_threshold = "1M"
[log]
level = "debug"
)",
                          "test.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.error().message();
  TransferOptions o;
  ASSERT_TRUE(apply_config(*cfg, o).ok());
  EXPECT_EQ(o.workers, 8u);
  EXPECT_EQ(o.chunk_size, 32ull << 20);
  EXPECT_EQ(o.memory, 4194304u);
  EXPECT_EQ(o.bwlimit, 10ull << 20);
  EXPECT_EQ(o.verify, true);
  EXPECT_EQ(o.fsync, false);
  EXPECT_EQ(o.small_file_threshold, 1ull << 20);
  EXPECT_EQ(cfg->log_level, "debug");
}

TEST(Config, RejectsBadInputWithLocation) {
  auto bad_syntax = parse_config("[transfer\nworkers = 3", "c.toml");
  ASSERT_FALSE(bad_syntax.ok());
  EXPECT_NE(bad_syntax.error().message().find("line 1"), std::string::npos)
      << bad_syntax.error().message();
  auto applied = [](std::string_view text) {
    auto cfg = parse_config(text, "c.toml");
    if (!cfg) return Status(cfg.error());
    TransferOptions o;
    return apply_config(*cfg, o);
  };
  EXPECT_FALSE(applied("[transfer]\nworkers = 0").ok());
  EXPECT_FALSE(applied("[transfer]\nchunk_size = \"12Q\"").ok());
  EXPECT_FALSE(applied("[transfer]\nverify = 3").ok());
  EXPECT_FALSE(applied("[transfer]\nverify = 1.5").ok());
  EXPECT_FALSE(applied("[transfer]\nchunk_sise = \"1M\"").ok()) << "a misspelt key";
  EXPECT_FALSE(applied("[transfer]\nmemory = \"8M\"\nio_size = \"4M\"").ok())
      << "memory must hold four I/O buffers";
  Status s = applied("\n\n[transfer]\nworkers = 2000");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("line 4"), std::string::npos) << s.error().message();
  EXPECT_NE(s.error().message().find("workers"), std::string::npos) << s.error().message();
  EXPECT_TRUE(applied("").ok());
}

TEST(Config, MissingFileGivesDefaults) {
  auto cfg = load_config("/nonexistent/xfer/config.toml");
  ASSERT_TRUE(cfg.ok());
  EXPECT_TRUE(cfg->transfer.empty());
}

// A file the user named (--config) must exist: a typo is not the defaults.
TEST(Config, MissingNamedFileIsAnError) {
  auto cfg = load_config("/nonexistent/xfer/config.toml", true);
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.error().code, ErrorCode::kNotFound);
  EXPECT_NE(cfg.error().message().find("/nonexistent/xfer/config.toml"), std::string::npos)
      << cfg.error().message();
}

// The job record keeps every option the planner reads: a resumed job cuts
// each file into the same chunks as its first run.
TEST(OptionTable, ResumedJobPlansAsTheFirstRun) {
  const fs::path state = fs::path(::testing::TempDir()) / ("plan-" + std::to_string(::getpid()));
  JobInfo job;
  job.id = "plans";
  job.state = JobState::kCancelled;
  job.request.sources = {"/src"};
  job.request.destination = "/dst";
  TransferOptions& o = job.request.options;
  ASSERT_TRUE(set_option(o, "small_file_threshold", "1M", kCli).ok());
  ASSERT_TRUE(set_option(o, "chunk_size", "256K", kCli).ok());
  ASSERT_TRUE(set_option(o, "chunk_parallelism", "2", kCli).ok());
  ASSERT_TRUE(write_job(state.string(), job).ok());
  auto back = read_job(state.string(), "plans");
  ASSERT_TRUE(back.ok()) << back.error().message();
  Capabilities caps;
  caps.random_writes = true;
  caps.parallel_writers = true;
  for (std::uint64_t size : {512ull << 10, 1ull << 20, (1ull << 20) + 1, 3ull << 20, 1ull << 30}) {
    FilePlan first = plan_file(size, caps, caps, o);
    FilePlan resumed = plan_file(size, caps, caps, back->request.options);
    EXPECT_EQ(first.strategy, resumed.strategy) << size;
    EXPECT_EQ(first.chunk_size, resumed.chunk_size) << size;
    EXPECT_EQ(first.chunks, resumed.chunks) << size;
    EXPECT_EQ(first.parallelism, resumed.parallelism) << size;
  }
  // 3 MiB is chunked under these options and whole under the defaults: the
  // record carried them.
  EXPECT_EQ(plan_file(3ull << 20, caps, caps, back->request.options).strategy, Strategy::kChunked);
  fs::remove_all(state);
}

// --bwlimit: a bare number is KiB/s; the canonical text carries its unit,
// and a job record of before (format 1, bare bytes) keeps its meaning.
TEST(OptionTable, RatesReadAsRsyncAndOldJobRecordsKeepTheirBytes) {
  TransferOptions o;
  ASSERT_TRUE(set_option(o, "bwlimit", "30000", kCli).ok());
  EXPECT_EQ(o.bwlimit, 30000ull * 1024);
  ASSERT_TRUE(set_option(o, "bwlimit", "30000B", kCli).ok());
  EXPECT_EQ(o.bwlimit, 30000u);
  EXPECT_EQ(find_option("bwlimit")->get(o), "30000B/s");
  ASSERT_TRUE(set_option(o, "bwlimit", "800Mbit", kCli).ok());
  EXPECT_EQ(o.bwlimit, 100'000'000u);
  ASSERT_TRUE(set_option(o, "bwlimit", "30M", kCli).ok());
  EXPECT_EQ(find_option("bwlimit")->get(o), "30M/s");
  EXPECT_FALSE(set_option(o, "bwlimit", "1B", kCli).ok()) << "below the 1K floor";

  const fs::path state = fs::path(::testing::TempDir()) / ("rate-" + std::to_string(::getpid()));
  JobInfo job;
  job.id = "rates";
  job.state = JobState::kCancelled;
  job.request.sources = {"/src"};
  job.request.destination = "/dst";
  job.request.options.bwlimit = 30000;
  ASSERT_TRUE(write_job(state.string(), job).ok());
  auto back = read_job(state.string(), "rates");
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->request.options.bwlimit, 30000u);
  // The same record as a build of before wrote it: no format, bare bytes.
  const std::string path = (state / "jobs" / "rates" / "job.json").string();
  auto text = read_small_file(path, 1 << 20);
  ASSERT_TRUE(text.ok());
  std::string old = *text;
  old.replace(old.find("\"30000B/s\""), 10, "\"30000\"");
  old.erase(old.find("\"format\": 2,"), 12);
  ASSERT_TRUE(write_file_atomically(path, old).ok());
  back = read_job(state.string(), "rates");
  ASSERT_TRUE(back.ok()) << back.error().message() << "\n" << old;
  EXPECT_EQ(back->request.options.bwlimit, 30000u) << old;
  fs::remove_all(state);
}

// One job model: the CLI's job records and xferd's jobs end in the same
// states, by the same rule as the exit code, and read back what they wrote.
TEST(JobModel, StatesFollowTheExitCodeAndReadBack) {
  EXPECT_EQ(job_state_of(outcome_exit_code(false, 0, 5)), JobState::kDone);
  EXPECT_EQ(job_state_of(outcome_exit_code(false, 1, 5)), JobState::kPartial);
  EXPECT_EQ(job_state_of(outcome_exit_code(false, 1, 0)), JobState::kFailed);
  EXPECT_EQ(job_state_of(outcome_exit_code(true, 1, 5)), JobState::kCancelled);
  for (JobState s : {JobState::kRunning, JobState::kDone, JobState::kPartial, JobState::kFailed,
                     JobState::kCancelled}) {
    EXPECT_EQ(parse_job_state(to_string(s)), s);
  }
  EXPECT_EQ(parse_job_state("interrupted"), JobState::kCancelled) << "records of before";
  EXPECT_FALSE(parse_job_state("exploded").has_value());
  // A record with a status nobody wrote is refused, not guessed at.
  const fs::path state = fs::path(::testing::TempDir()) / ("model-" + std::to_string(::getpid()));
  JobInfo job;
  job.id = "model";
  job.state = JobState::kPartial;
  job.request.sources = {"/src"};
  job.request.destination = "/dst";
  ASSERT_TRUE(write_job(state.string(), job).ok());
  auto back = read_job(state.string(), "model");
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->state, JobState::kPartial);
  auto text = read_small_file((state / "jobs" / "model" / "job.json").string(), 1 << 20);
  ASSERT_TRUE(text.ok());
  std::string edited = *text;
  edited.replace(edited.find("\"partial\""), 9, "\"exploded\"");
  ASSERT_TRUE(write_file_atomically((state / "jobs" / "model" / "job.json").string(), edited).ok());
  EXPECT_FALSE(read_job(state.string(), "model").ok());
  fs::remove_all(state);
}

#ifdef XFER_DOCS_DIR
// docs/options.md has a row for every option (the recipe's last step).
TEST(OptionTable, DocsListEveryOption) {
  auto doc = read_small_file(std::string(XFER_DOCS_DIR) + "/options.md", 1 << 20);
  ASSERT_TRUE(doc.ok()) << doc.error().message();
  for (const auto& spec : option_table()) {
    EXPECT_NE(doc->find("| `" + std::string(spec.name) + "` |"), std::string::npos)
        << "docs/options.md has no row for " << spec.name;
  }
}
#endif

#ifdef XFER_TEST_EXTRA_OPTION
// The option that exists only in this build was added by one line in
// options.inc: it is a member, a flag, a config key, a job.json key and a
// job request option.
TEST(OptionTable, AnOptionAddedByOneLineReachesEveryPlace) {
  const OptionSpec* spec = find_option("test_extra");
  ASSERT_NE(spec, nullptr);
  TransferOptions o = from_cli({"--test-extra", "5M"});
  EXPECT_EQ(o.test_extra, 5ull << 20);
  auto cfg = parse_config("[transfer]\ntest_extra = \"7M\"\n", "t.toml");
  ASSERT_TRUE(cfg.ok());
  TransferOptions c;
  ASSERT_TRUE(apply_config(*cfg, c).ok());
  EXPECT_EQ(c.test_extra, 7ull << 20);
  bool in_job = false, in_request = false;
  for (auto& [name, text] : option_values(o, kJob)) in_job |= name == "test_extra" && text == "5M";
  for (auto& [name, text] : option_values(o, kRemote)) {
    in_request |= name == "test_extra" && text == "5M";
  }
  EXPECT_TRUE(in_job);
  EXPECT_TRUE(in_request);
}
#endif

}  // namespace
}  // namespace xfer
