// The first hour of a user coming from rsync, rclone or scp (issue 11),
// through the real binary: the progress line in a pseudo-terminal, the
// rate under --bwlimit, re-runs that send nothing, rsync's trailing slash.
// See docs/cli.md ("Coming from rsync, cp, rclone or scp").

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "harness.hpp"
#include "xferd_harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class FirstHour : public XferTest {};

std::string S(const fs::path& p) {
  return p.string();
}

// "would have copied 40 files (123456 bytes)": the bytes part.
std::string fmt_count(std::uint64_t bytes) {
  return "(" + std::to_string(bytes) + " bytes)";
}

// ------------------------------------------------------------ terminal

struct PtyRun {
  int exit_code = -1;
  // What the terminal received, in the pieces read, each with the second
  // (since the start) it arrived at.
  std::vector<std::pair<double, std::string>> pieces;
};

// Runs xfer on a pseudo-terminal `cols` wide (stdin, stdout and stderr
// all on it, as in a shell); `tick(master, seconds)` is called every
// ~20 ms to resize it. Killed after 60 s.
PtyRun run_in_pty(const std::vector<std::string>& args, int cols,
                  const std::function<void(int, double)>& tick = {}) {
  PtyRun out;
  winsize ws{};
  ws.ws_row = 24;
  ws.ws_col = static_cast<unsigned short>(cols);
  int master = -1;
  const std::string bin = xfer_bin();
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, &ws);
  if (pid == 0) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(bin.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  if (pid < 0) {
    ADD_FAILURE() << "forkpty failed";
    return out;
  }
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const double t =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (t > 60) {
      ::kill(pid, SIGKILL);
      ADD_FAILURE() << "xfer did not finish in 60 s";
      break;
    }
    if (tick) tick(master, t);
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(master, buf, sizeof buf);
    if (n <= 0) break;  // EIO: the terminal's last writer has gone
    out.pieces.emplace_back(t, std::string(buf, static_cast<size_t>(n)));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(master);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

// The progress lines drawn (each starts with "\r\033[K"), with the second
// their last byte arrived at.
std::vector<std::pair<double, std::string>> progress_lines(const PtyRun& run) {
  std::vector<std::pair<double, std::string>> lines;
  std::string pending;
  bool in_progress = false;
  for (const auto& [t, piece] : run.pieces) {
    for (std::size_t i = 0; i < piece.size(); ++i) {
      if (piece.compare(i, 4, "\r\033[K") == 0) {
        if (in_progress && !pending.empty()) lines.emplace_back(t, pending);
        pending.clear();
        in_progress = true;
        i += 3;
        continue;
      }
      if (in_progress && pending == "xfer:") in_progress = false;  // a message after a clear
      if (piece[i] == '\r' || piece[i] == '\n') {
        if (in_progress && !pending.empty()) lines.emplace_back(t, pending);
        pending.clear();
        in_progress = false;
        continue;
      }
      pending += piece[i];
    }
  }
  if (in_progress && !pending.empty()) lines.emplace_back(run.pieces.back().first, pending);
  return lines;
}

// The progress line fits the terminal at 60, 80 and 200 columns (a line
// as wide as the terminal wraps and leaves a stale line at each redraw),
// and follows a resize.
TEST_F(FirstHour, ProgressLineFitsTheTerminalAndFollowsAResize) {
  write_random_file(tmp() / "big.bin", 5, 6u << 20);
  for (int cols : {60, 80, 200}) {
    SCOPED_TRACE(cols);
    fs::remove(tmp() / "copy.bin");
    PtyRun r =
        run_in_pty({"cp", "--bwlimit", "6M", S(tmp() / "big.bin"), S(tmp() / "copy.bin")}, cols);
    ASSERT_EQ(r.exit_code, 0);
    auto lines = progress_lines(r);
    ASSERT_GE(lines.size(), 3u) << "a 1 s copy redraws every 200 ms";
    std::size_t widest = 0;
    for (const auto& [t, line] : lines) {
      EXPECT_LT(line.size(), static_cast<std::size_t>(cols)) << "'" << line << "'";
      widest = std::max(widest, line.size());
      EXPECT_NE(line.find('%'), std::string::npos) << line;
    }
    if (cols >= 80) {
      EXPECT_GE(widest, 60u) << "a wide terminal gets the full line";
      EXPECT_NE(lines.back().second.find("ETA"), std::string::npos) << lines.back().second;
    }
    EXPECT_TRUE(files_equal(tmp() / "big.bin", tmp() / "copy.bin"));
  }
  // 200 columns, then 50 after 0.8 s: the lines drawn after the resize
  // (and a redraw period) are the compact ones.
  fs::remove(tmp() / "copy.bin");
  bool resized = false;
  PtyRun r = run_in_pty({"cp", "--bwlimit", "3M", S(tmp() / "big.bin"), S(tmp() / "copy.bin")}, 200,
                        [&](int master, double t) {
                          if (resized || t < 0.8) return;
                          winsize ws{};
                          ws.ws_row = 24;
                          ws.ws_col = 50;
                          ::ioctl(master, TIOCSWINSZ, &ws);
                          resized = true;
                        });
  ASSERT_EQ(r.exit_code, 0);
  std::size_t before = 0, after = 0;
  for (const auto& [t, line] : progress_lines(r)) {
    if (t < 0.75) {
      before = std::max(before, line.size());
    } else if (t > 1.1) {
      ++after;
      EXPECT_LT(line.size(), 50u) << "'" << line << "' at " << t << " s";
    }
  }
  EXPECT_GT(before, 50u) << "the full line before the resize";
  EXPECT_GE(after, 3u);
}

// ------------------------------------------------------------ rate

std::vector<json> json_lines(const std::string& out) {
  std::vector<json> events;
  for (const auto& line : split_lines(out)) {
    if (!line.empty()) events.push_back(json::parse(line));
  }
  return events;
}

// --bwlimit reads a bare number as KiB/s (rsync, rclone); the rate shown
// is within 10% of the limit from the second second on, with no burst at
// the start; after a resume the bytes already there are progress but not
// rate, and the ETA converges on the time actually left.
TEST_F(FirstHour, RateUnderABandwidthLimitNeverPassesItNorCountsResumedBytes) {
  constexpr double kLimit = 4 << 20;  // --bwlimit 4096 (KiB/s)
  // In memory: what is measured is the limiter, not a disk the other tests
  // keep busy.
  const fs::path dir = make_temp_dir_under("/dev/shm");
  write_random_file(dir / "a.bin", 6, 14u << 20);
  auto r = run_xfer({"cp", "--json", "--bwlimit", "4096", S(dir / "a.bin"), S(dir / "b.bin")});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_TRUE(files_equal(dir / "a.bin", dir / "b.bin"));
  int checked = 0;
  json summary;
  for (const json& e : json_lines(r.out)) {
    if (e["event"] == "summary") summary = e;
    if (e["event"] != "progress") continue;
    const double rate = e["rate_bps"].get<double>();
    // Upper bounds only: a loaded machine makes the copy slower, never
    // faster, so these cannot fail by load; how close to the limit the
    // rate and the ETA stay is measured in bench/, not asserted here.
    EXPECT_LE(rate, kLimit * 1.10) << e.dump() << " (no burst at the start)";
    ++checked;
  }
  EXPECT_GE(checked, 2) << r.out;
  EXPECT_GE(summary["seconds"].get<double>(), 3.5 * 0.9) << "14 MiB at 4 MiB/s";

  // Interrupted once 6 MiB are written, then resumed: they are there.
  write_random_file(dir / "c.bin", 7, 24u << 20);
  const std::vector<std::string> args = {
      "cp",           "--json", "--bwlimit",      "4096",
      "--chunk-size", "1M",     S(dir / "c.bin"), S(dir / "d.bin")};
  auto interrupted = run_xfer_signal_when(
      args, SIGINT, [](pid_t pid) { return process_wchar(pid) >= (6u << 20); });
  const RunResult& first = interrupted.result;
  ASSERT_TRUE(interrupted.signalled) << first.describe();
  ASSERT_EQ(first.exit_code, 130) << first.describe();
  auto again = run_xfer(args);
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  ASSERT_TRUE(files_equal(dir / "c.bin", dir / "d.bin"));
  std::vector<json> progress;
  for (const json& e : json_lines(again.out)) {
    if (e["event"] == "summary") {
      EXPECT_GE(e["bytes_resumed"].get<std::uint64_t>(), 3u << 20) << e.dump();
    }
    if (e["event"] == "progress") progress.push_back(e);
  }
  ASSERT_FALSE(progress.empty()) << again.out;
  for (const json& e : progress) {
    EXPECT_LE(e["rate_bps"].get<double>(), kLimit * 1.10)
        << e.dump() << ": the resumed bytes are not a rate";
    // Nor time saved: the ETA is the bytes left at the (limited) rate, so
    // it is never shorter than they take at the limit.
    const double left = e["bytes_total"].get<double>() - e["bytes"].get<double>();
    if (e["eta_s"].get<double>() >= 0 && left > 0) {
      EXPECT_GE(e["eta_s"].get<double>() + 0.5, left / (kLimit * 1.10)) << e.dump();
    }
  }
}

// ------------------------------------------------------------ re-runs

std::uint64_t summary_field(const RunResult& r, const char* name) {
  for (const json& e : json_lines(r.out)) {
    if (e["event"] == "summary") return e[name].get<std::uint64_t>();
  }
  ADD_FAILURE() << "no summary: " << r.describe();
  return ~0ull;
}

// A re-run onto an identical tree copies 0 bytes and says "N unchanged",
// as rsync and `rclone copy` skip files of the same size and mtime; a file
// whose bytes changed under the same size and mtime is found by --checksum;
// --ignore-times copies everything. A re-run of `cp -r s d` does not nest
// d/s in the copy it made.
TEST_F(FirstHour, ReRunOntoAnIdenticalTreeCopiesNothing) {
  TreeSpec spec;
  spec.seed = 41;
  spec.files = 30;
  spec.max_size = 64 << 10;
  generate_tree(tmp() / "src", spec);
  const std::vector<std::string> copy = {"cp", "-r", "--json", S(tmp() / "src"), S(tmp() / "dst")};
  auto first = run_xfer(copy);
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  ASSERT_TRUE(compare_trees(tmp() / "src", tmp() / "dst"));
  EXPECT_EQ(summary_field(first, "files_unchanged"), 0u);

  auto again = run_xfer(copy);
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(summary_field(again, "bytes"), 0u) << again.out;
  EXPECT_EQ(summary_field(again, "files_unchanged"), 30u) << again.out;
  EXPECT_FALSE(fs::exists(tmp() / "dst" / "src")) << "the re-run nested a second copy";
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "dst"));
  auto human = run_xfer({"cp", "-r", S(tmp() / "src"), S(tmp() / "dst")});
  ASSERT_EQ(human.exit_code, 0) << human.describe();
  EXPECT_TRUE(icontains(human.err, "copied 0 files (0 bytes), 30 unchanged")) << human.err;

  // Same size, same mtime, other bytes: only --checksum sees it.
  const fs::path victim = tmp() / "src" / list_relative(tmp() / "src").back();
  ASSERT_TRUE(fs::is_regular_file(victim)) << victim;
  const struct timespec mtime = get_mtime(victim);
  std::string bytes = read_file(victim);
  ASSERT_FALSE(bytes.empty());
  bytes[0] = static_cast<char>(bytes[0] ^ 0x5a);
  write_file(victim, bytes);
  set_mtime(victim, mtime.tv_sec, mtime.tv_nsec);
  auto quick = run_xfer(copy);
  EXPECT_EQ(summary_field(quick, "bytes"), 0u) << "size and mtime match: skipped";
  auto checksum =
      run_xfer({"cp", "-r", "--json", "--checksum", S(tmp() / "src"), S(tmp() / "dst")});
  ASSERT_EQ(checksum.exit_code, 0) << checksum.describe();
  EXPECT_EQ(summary_field(checksum, "bytes"), bytes.size()) << checksum.out;
  EXPECT_EQ(summary_field(checksum, "files_unchanged"), 29u) << checksum.out;
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "dst"));
  auto forced = run_xfer({"cp", "-r", "--json", "-I", S(tmp() / "src"), S(tmp() / "dst")});
  ASSERT_EQ(forced.exit_code, 0) << forced.describe();
  EXPECT_EQ(summary_field(forced, "files_unchanged"), 0u) << forced.out;
  std::uint64_t tree_bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(tmp() / "src")) {
    if (e.is_regular_file()) tree_bytes += e.file_size();
  }
  EXPECT_EQ(summary_field(forced, "bytes"), tree_bytes) << forced.out;

  // A newer mtime is a change: the dry run lists that one file only.
  set_mtime(victim, mtime.tv_sec + 60, 0);
  auto dry = run_xfer({"cp", "-r", "-n", S(tmp() / "src"), S(tmp() / "dst")});
  ASSERT_EQ(dry.exit_code, 0) << dry.describe();
  auto planned = split_lines(dry.out);
  // Folders are listed too (they are made where missing): files only.
  std::erase_if(planned, [](const std::string& l) {
    return l.empty() || l.find("/ -> ") != std::string::npos;
  });
  ASSERT_EQ(planned.size(), 1u) << dry.out;
  EXPECT_NE(planned[0].find(victim.filename().string()), std::string::npos) << dry.out;
}

// A dry run lists its plan sorted (workers plan in any order) and counts
// the bytes it would move.
TEST_F(FirstHour, DryRunListsThePlanSortedWithItsBytes) {
  TreeSpec spec;
  spec.seed = 19;
  spec.files = 40;
  generate_tree(tmp() / "src", spec);
  auto dry = run_xfer({"cp", "-r", "-n", S(tmp() / "src"), S(tmp() / "dst")});
  ASSERT_EQ(dry.exit_code, 0) << dry.describe();
  auto lines = split_lines(dry.out);
  std::erase_if(lines, [](const std::string& l) { return l.empty(); });
  EXPECT_EQ(lines.size(), count_entries(tmp() / "src") + 1) << dry.out;  // and the root
  EXPECT_TRUE(std::is_sorted(lines.begin(), lines.end())) << dry.out;
  std::uint64_t bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(tmp() / "src")) {
    if (e.is_regular_file()) bytes += e.file_size();
  }
  EXPECT_TRUE(icontains(dry.err, fmt_count(bytes))) << dry.err;
  EXPECT_FALSE(fs::exists(tmp() / "dst"));
}

// rsync's trailing slash: `cp -r src/ dst` copies the contents of src into
// an existing dst; without the slash cp's rule puts dst/src.
TEST_F(FirstHour, TrailingSlashCopiesTheContentsAsRsyncDoes) {
  generate_tree(tmp() / "src", TreeSpec{.seed = 3, .dirs = 2, .files = 5});
  fs::create_directories(tmp() / "into");
  auto slash = run_xfer({"cp", "-r", S(tmp() / "src") + "/", S(tmp() / "into")});
  ASSERT_EQ(slash.exit_code, 0) << slash.describe();
  EXPECT_FALSE(fs::exists(tmp() / "into" / "src"));
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "into", {.compare_root = false}));
  fs::create_directories(tmp() / "nest");
  auto bare = run_xfer({"cp", "-r", S(tmp() / "src"), S(tmp() / "nest")});
  ASSERT_EQ(bare.exit_code, 0) << bare.describe();
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "nest" / "src"));
  // "src/." is the contents too, by cp's rule.
  fs::create_directories(tmp() / "dot");
  auto dot = run_xfer({"cp", "-r", S(tmp() / "src") + "/.", S(tmp() / "dot")});
  ASSERT_EQ(dot.exit_code, 0) << dot.describe();
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "dot", {.compare_root = false}));
}

// ------------------------------------------------------------ resume

// Ctrl-C says how to go on; the re-run says it resumed and how much was
// there, and sends only the rest (a chunk is resumed within: 16 MiB chunks,
// and at most the 1 MiB piece in flight per stream is sent twice).
TEST_F(FirstHour, InterruptedCopySaysHowToResumeAndTheReRunWhatWasThere) {
  constexpr std::uint64_t kSize = 48ull << 20;
  write_random_file(tmp() / "big.bin", 12, kSize);
  const std::vector<std::string> args = {"cp",
                                         "--json",
                                         "--bwlimit",
                                         "16M",
                                         "--chunk-size",
                                         "16M",
                                         "--chunk-parallelism",
                                         "4",
                                         S(tmp() / "big.bin"),
                                         S(tmp() / "copy.bin")};
  auto cut_run = run_xfer_signal_when(args, SIGINT,
                                      [](pid_t pid) { return process_wchar(pid) >= (16u << 20); });
  const RunResult& cut = cut_run.result;
  ASSERT_TRUE(cut_run.signalled) << cut.describe();
  ASSERT_EQ(cut.exit_code, 130) << cut.describe();
  EXPECT_TRUE(icontains(cut.err,
                        "are at the destination; run the same command again, or xfer "
                        "resume "))
      << cut.describe();
  EXPECT_FALSE(fs::exists(tmp() / "copy.bin"));
  auto again = run_xfer(args);
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_TRUE(icontains(again.err, "xfer: resumed job ")) << again.describe();
  EXPECT_TRUE(icontains(again.err, " already there")) << again.describe();
  const std::uint64_t moved = summary_field(cut, "bytes") + summary_field(again, "bytes");
  EXPECT_GT(summary_field(cut, "bytes"), 8u << 20) << cut.out;
  EXPECT_LE(moved, kSize + 4 * (1u << 20)) << cut.out << again.out;
  EXPECT_EQ(summary_field(again, "bytes") + summary_field(again, "bytes_resumed"), kSize);
  ASSERT_TRUE(files_equal(tmp() / "big.bin", tmp() / "copy.bin"));
}

// ------------------------------------------------------------ remote errors

// Errors from remote endpoints in the user's terms, one line each: the
// host that does not resolve, the port nothing listens on, the schemes
// there are, and where a missing token was looked for.
TEST_F(FirstHour, RemoteErrorsSayWhatToCheckInOneLine) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"ls", "xfer://nohost.invalid:1/"}, "cannot resolve the host name 'nohost.invalid'"},
      {{"ls", "xfer://127.0.0.1:1/"}, "nothing listens on 127.0.0.1:1 (is xferd running there"},
      {{"cp", "b2://bucket/x", "y"},
       "xfer cannot reach b2:// endpoints yet; it speaks az://, file://, gs://, http://, "
       "https://, s3://, sftp://, xfer://"},
      {{"ls", "s3://bucket/"}, "nothing listens on 127.0.0.1:1 (is the S3 server running there"},
      {{"ls", "sftp://nohost.invalid:1/"}, "cannot resolve the host name 'nohost.invalid'"},
      {{"ls", "sftp://127.0.0.1:1/"},
       "nothing listens on 127.0.0.1:1 (is the SSH server running there"},
      {{"ls", "http://nohost.invalid:1/"}, "cannot resolve the host name 'nohost.invalid'"},
      {{"ls", "http://127.0.0.1:1/"},
       "nothing listens on 127.0.0.1:1 (is the web server running there"},
  };
  // The s3 case: keys and an endpoint where nothing listens.
  ::setenv("AWS_ACCESS_KEY_ID", "k", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
  ::setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1", 1);
  for (const Case& c : cases) {
    auto r = run_xfer(c.args, 60s, nullptr, S(tmp()));
    EXPECT_EQ(r.exit_code, 1) << r.describe();
    EXPECT_TRUE(icontains(r.err, c.says)) << r.describe();
    EXPECT_EQ(split_lines(r.err).size(), 1u) << r.describe();
    EXPECT_FALSE(icontains(r.err, "C-ares")) << r.describe();
    EXPECT_FALSE(icontains(r.err, "ARES_")) << r.describe();
  }
  for (const char* name : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}) {
    ::unsetenv(name);
  }
  if (xferd_bin().empty()) GTEST_SKIP() << "XFERD_BIN not set";
  XferdProcess server(tmp() / "server");
  ASSERT_TRUE(server.start());
  const std::string url = server.url("/");  // xfer://127.0.0.1:PORT/
  const std::string host_port = url.substr(7, url.size() - 8);
  const std::string port = host_port.substr(host_port.find(':') + 1);
  const fs::path creds = tmp() / "credentials.toml";
  write_file(creds, "");
  ::chmod(creds.c_str(), 0600);
  ::setenv("XFER_CREDENTIALS", creds.c_str(), 1);
  ::unsetenv("XFER_TOKEN");
  auto r = run_xfer({"ls", "xfer://localhost:" + port + "/"});
  ::unsetenv("XFER_CREDENTIALS");
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_TRUE(icontains(r.err, "none was given: no --token, no $XFER_TOKEN, and " + S(creds) +
                                   " has no token for \"localhost:" + port + "\""))
      << r.describe();
  EXPECT_EQ(split_lines(r.err).size(), 1u) << r.describe();
}

// ------------------------------------------------------------ help, JSON

// `xfer cp --help` names the command as typed and lists the flags remote
// copies need; every JSON line carries the schema version, and progress
// and summary name the same things the same way.
TEST_F(FirstHour, HelpNamesTheCommandAndJsonHasOneVersionedSchema) {
  auto help = run_xfer({"cp", "--help"});
  ASSERT_EQ(help.exit_code, 0) << help.describe();
  EXPECT_TRUE(icontains(help.out, "Usage: ")) << help.out;
  EXPECT_TRUE(icontains(help.out, " cp [OPTIONS]")) << help.out;
  for (const char* flag : {"--token", "--streams", "--encrypt", "--tls", "--verify", "--bwlimit"}) {
    EXPECT_TRUE(icontains(help.out, flag)) << flag << "\n" << help.out;
  }
  write_random_file(tmp() / "a.bin", 3, 3u << 20);
  auto r =
      run_xfer({"cp", "--json", "-v", "--bwlimit", "2M", S(tmp() / "a.bin"), S(tmp() / "b.bin")});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  std::set<std::string> events;
  for (const json& e : json_lines(r.out)) {
    EXPECT_EQ(e.value("schema", 0), 1) << e.dump();
    events.insert(e["event"].get<std::string>());
    if (e["event"] == "progress" || e["event"] == "summary") {
      EXPECT_TRUE(e.contains("bytes") && e.contains("files")) << e.dump();
      EXPECT_FALSE(e.contains("bytes_done") || e.contains("files_done")) << e.dump();
    }
  }
  EXPECT_EQ(events, (std::set<std::string>{"progress", "copied", "summary"})) << r.out;
  auto ls = run_xfer({"ls", "--json", S(tmp())});
  ASSERT_EQ(ls.exit_code, 0) << ls.describe();
  for (const json& e : json_lines(ls.out)) EXPECT_EQ(e.value("schema", 0), 1) << e.dump();
}

// ------------------------------------------------------------ habits

// Flags typed from rsync, rclone or scp habit work or get a hint naming
// what xfer does instead; an unknown command is named with the commands.
TEST_F(FirstHour, RsyncAndRcloneHabitsWorkOrGetAHint) {
  generate_tree(tmp() / "src", TreeSpec{.seed = 8, .dirs = 2, .files = 6, .symlinks = 0});
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> refused = {
      {{"bisync", "src", "dst"}, "'bisync' is not an xfer command: xfer sync --bidirectional A B"},
      {{"sync", "-b", "src/", "dst"}, "-b: xfer sync --backup-dir DIR keeps"},
      {{"copy", "src", "dst"}, "'copy' is not an xfer command: xfer cp -r SRC/ DST is rclone copy"},
      {{"frob"}, "'frob' is not an xfer command; the commands are cp/transfer, sync, ls/list"},
      {{"cp", "-avz", "src", "dst"}, "-z: xfer does not compress"},
      {{"cp", "-r", "--delete", "src/", "dst"}, "--delete is a flag of xfer sync"},
      {{"cp", "-r", "--max-delete", "3", "src/", "dst"}, "--max-delete is a flag of xfer sync"},
      {{"cp", "-e", "ssh", "src", "host:dst"}, "-e: xfer talks to xferd"},
      {{"cp", "--partial", "src", "dst"}, "--partial: xfer always keeps the partial"},
      {{"cp", "--transfers", "8", "src", "dst"}, "--transfers: rclone's --transfers is --workers"},
      {{"cp", "--bogus", "src", "dst"}, "--bogus: unknown flag (xfer cp --help lists the flags)"},
      {{"ls", "-lQ", "src"}, "-Q: unknown flag (xfer ls --help lists the flags)"},
  };
  for (const Case& c : refused) {
    auto r = run_xfer(c.args, 60s, nullptr, S(tmp()));
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_TRUE(icontains(r.err, "xfer: error: " + c.says)) << r.describe();
    EXPECT_FALSE(icontains(r.err, "not expected")) << "CLI11's generic words\n" << r.describe();
    EXPECT_FALSE(fs::exists(tmp() / "dst")) << r.describe();
  }
  // -a is -r (modes, mtimes and symlinks are always kept); -v prints one
  // line per file copied; -P shows progress; --stats and -h as in rsync.
  auto a = run_xfer({"cp", "-avP", "--stats", "-h", "src", "dst"}, 60s, nullptr, S(tmp()));
  ASSERT_EQ(a.exit_code, 0) << a.describe();
  EXPECT_TRUE(compare_trees(tmp() / "src", tmp() / "dst"));
  std::size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(tmp() / "src"))
    files += e.is_regular_file();
  std::size_t lines = 0;
  for (const auto& line : split_lines(a.out)) lines += line.find(" -> ") != std::string::npos;
  EXPECT_EQ(lines, files) << a.describe();
  EXPECT_TRUE(icontains(a.err, "Files copied:         " + std::to_string(files))) << a.err;
  EXPECT_TRUE(icontains(a.err, " KiB) in ")) << "-h: a human size in the summary\n" << a.err;
  auto help = run_xfer({"cp", "--help"});
  EXPECT_TRUE(icontains(help.out, "-a,--archive")) << help.out;
  EXPECT_TRUE(icontains(help.out, "always kept")) << help.out;
  // Run again: nothing is copied, so -v prints nothing.
  auto again = run_xfer({"cp", "-av", "src", "dst"}, 60s, nullptr, S(tmp()));
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(again.out, "") << again.describe();
}

// ------------------------------------------------------ config, credentials

// Sets an environment variable for the scope, restoring its old value (or
// its absence) after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// The config file's [transfer] table sets options and a flag wins over it
// (docs/options.md, "Where a value comes from"); $XFER_CONFIG names the
// default place, where no file means the defaults; a file named with
// --config must exist: a typo is an error, nothing is copied.
TEST_F(FirstHour, ConfigFileSetsOptionsAFlagWinsAndANamedFileMustExist) {
  const fs::path src = tmp() / "src.bin";
  write_random_file(src, 41, 16u << 20);
  const fs::path cfg = tmp() / "config.toml";
  write_file(cfg, "[transfer]\nverify = true\nchunk_size = \"1M\"\n");

  auto a = run_xfer({"--config", S(cfg), "cp", "--json", S(src), S(tmp() / "a.bin")});
  ASSERT_EQ(a.exit_code, 0) << a.describe();
  EXPECT_TRUE(files_equal(src, tmp() / "a.bin"));
  EXPECT_EQ(summary_field(a, "bytes_verified"), 16u << 20) << "verify = true was not applied";
  EXPECT_EQ(summary_field(a, "chunks"), 16u) << "chunk_size = 1M was not applied";
  {
    ScopedEnv env("XFER_CONFIG", S(cfg));
    auto b = run_xfer({"cp", "--json", "--chunk-size", "4M", S(src), S(tmp() / "b.bin")});
    ASSERT_EQ(b.exit_code, 0) << b.describe();
    EXPECT_EQ(summary_field(b, "bytes_verified"), 16u << 20) << "$XFER_CONFIG was not read";
    EXPECT_EQ(summary_field(b, "chunks"), 4u) << "the flag must win over the file";
  }
  {
    ScopedEnv env("XFER_CONFIG", S(tmp() / "none.toml"));
    auto c = run_xfer({"cp", "--json", S(src), S(tmp() / "c.bin")});
    ASSERT_EQ(c.exit_code, 0) << c.describe();
    EXPECT_EQ(summary_field(c, "bytes_verified"), 0u) << "defaults: no verify";
  }
  auto d = run_xfer({"--config", S(tmp() / "typo.toml"), "cp", S(src), S(tmp() / "d.bin")});
  EXPECT_EQ(d.exit_code, 2) << d.describe();
  EXPECT_TRUE(icontains(d.err, S(tmp() / "typo.toml") + ": no such file")) << d.describe();
  EXPECT_FALSE(lexists(tmp() / "d.bin"));
}

// The token for xfer://HOST:PORT comes from the ["HOST:PORT"] table of the
// credentials file: $XFER_CREDENTIALS, else $XDG_CONFIG_HOME/xfer/, else
// ~/.config/xfer/ (docs/credentials.md). A wrong token there is refused,
// and nothing is written.
TEST_F(FirstHour, CredentialsFileGivesTheTokenForItsHostAndPort) {
  XferdProcess server(tmp() / "server");
  ASSERT_TRUE(server.start());
  const std::string url = server.url("/");  // xfer://127.0.0.1:PORT/
  const std::string key = url.substr(7, url.size() - 8);
  const fs::path f = tmp() / "f.bin";
  write_random_file(f, 42, 1u << 20);
  auto creds = [&](const fs::path& p, const std::string& token) {
    fs::create_directories(p.parent_path());
    write_file(p, "[\"" + key + "\"]\ntoken = \"" + token + "\"\n");
    ::chmod(p.c_str(), 0600);
  };
  ::unsetenv("XFER_TOKEN");
  const std::string token = server.token();

  creds(tmp() / "explicit.toml", token);
  {
    ScopedEnv env("XFER_CREDENTIALS", S(tmp() / "explicit.toml"));
    auto r = run_xfer({"cp", "--no-progress", S(f), url + "one.bin"});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_TRUE(files_equal(f, server.root() / "one.bin"));
  }
  // No $XFER_CREDENTIALS: $XDG_CONFIG_HOME, then $HOME/.config.
  const char* old_creds = std::getenv("XFER_CREDENTIALS");
  const std::optional<std::string> saved =
      old_creds ? std::optional<std::string>(old_creds) : std::nullopt;
  ::unsetenv("XFER_CREDENTIALS");
  creds(tmp() / "xdg" / "xfer" / "credentials.toml", token);
  {
    ScopedEnv env("XDG_CONFIG_HOME", S(tmp() / "xdg"));
    auto r = run_xfer({"cp", "--no-progress", S(f), url + "two.bin"});
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_TRUE(files_equal(f, server.root() / "two.bin"));
  }
  creds(tmp() / "home" / ".config" / "xfer" / "credentials.toml", token + "x");
  {
    ScopedEnv home("HOME", S(tmp() / "home"));
    const char* old_xdg = std::getenv("XDG_CONFIG_HOME");
    const std::optional<std::string> xdg =
        old_xdg ? std::optional<std::string>(old_xdg) : std::nullopt;
    ::unsetenv("XDG_CONFIG_HOME");
    auto r = run_xfer({"cp", "--no-progress", S(f), url + "three.bin"});
    if (xdg) ::setenv("XDG_CONFIG_HOME", xdg->c_str(), 1);
    EXPECT_EQ(r.exit_code, 1) << "the token of ~/.config/xfer/credentials.toml is wrong\n"
                              << r.describe();
    EXPECT_TRUE(icontains(r.err, "token")) << r.describe();
    EXPECT_FALSE(lexists(server.root() / "three.bin"));
    EXPECT_EQ(xfer_hidden_files(server.root()), std::vector<std::string>{});
  }
  if (saved) ::setenv("XFER_CREDENTIALS", saved->c_str(), 1);
}

// `xfer serve --config FILE` is xferd in the foreground: the same ready
// line, the same tokens, transfers both ways, SIGTERM ends it with 0.
TEST_F(FirstHour, XferServeRunsTheServer) {
  XferdOptions o;
  // The harness runs PREFIX xferd --config FILE: this shell turns that into
  // xfer serve --config FILE.
  o.command_prefix = {"/bin/sh", "-c", "exec \"$0\" serve \"$2\" \"$3\"", xfer_bin()};
  XferdProcess server(tmp() / "served", o);
  ASSERT_TRUE(server.start());
  const std::string token = server.token();
  const fs::path f = tmp() / "f.bin";
  write_random_file(f, 43, 12u << 20);
  auto up = run_xfer({"--token", token, "cp", "--no-progress", S(f), server.url("/f.bin")});
  ASSERT_EQ(up.exit_code, 0) << up.describe();
  EXPECT_TRUE(files_equal(f, server.root() / "f.bin"));
  auto down =
      run_xfer({"--token", token, "cp", "--no-progress", server.url("/f.bin"), S(tmp() / "g.bin")});
  ASSERT_EQ(down.exit_code, 0) << down.describe();
  EXPECT_TRUE(files_equal(f, tmp() / "g.bin"));
  auto none = run_xfer({"--token", "nope", "ls", server.url("/")});
  EXPECT_EQ(none.exit_code, 1) << "a bad token is refused by xfer serve too\n" << none.describe();
  const XferdExit e = server.stop(std::chrono::seconds(20));
  EXPECT_TRUE(e.exited && e.code == 0) << e.describe() << "\n" << server.log();
  EXPECT_FALSE(e.escalated) << e.describe();
}

// ------------------------------------------------------------ --verify

// The longest hidden partial in `dir`, or "" when there is none. Its size
// is how far its furthest write reached (the local backend preallocates
// without changing the size, so allocation says nothing).
fs::path partial_in(const fs::path& dir) {
  fs::path best;
  std::uint64_t most = 0;
  for (const auto& h : xfer_hidden_files(dir)) {
    const std::uint64_t n = lsize(dir / h);
    if (best.empty() || n > most) {
      best = dir / h;
      most = n;
    }
  }
  return best;
}

// Overwrites 4 KiB at `offset` of `p` with bytes the source never has.
void corrupt(const fs::path& p, std::uint64_t offset) {
  const int fd = ::open(p.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << p;
  const std::string junk(4096, '\x5a');
  ASSERT_EQ(::pwrite(fd, junk.data(), junk.size(), static_cast<off_t>(offset)), 4096) << p;
  ::close(fd);
}

// --verify through the binary: bytes that change at the destination while
// the copy runs (a bad disk, a stray writer) are found before the file is
// published, the file is copied again, and the right bytes end under the
// final name. The same fault without --verify is published as it is: the
// control that shows the fault lands.
TEST_F(FirstHour, VerifyCatchesBytesChangedAtTheDestination) {
  const fs::path src = tmp() / "src.bin";
  write_random_file(src, 44, 48u << 20);
  for (const bool verify : {true, false}) {
    SCOPED_TRACE(verify ? "--verify" : "no --verify");
    const fs::path out = tmp() / (verify ? "v" : "nv");
    fs::create_directories(out);
    // Checkpointed, so the partial has a name (an unnamed O_TMPFILE
    // otherwise).
    std::vector<std::string> args = {"cp",           "--json", "--bwlimit", "24M",
                                     "--chunk-size", "4M",     S(src),      S(out / "dst.bin")};
    if (verify) args.insert(args.begin() + 1, "--verify");
    bool corrupted = false;
    auto r = run_xfer_signal_when(args, 0, [&](pid_t) {
      // Once 16 MiB are written, the first piece of the file (long
      // written, not yet verified) is changed under the copy.
      const fs::path part = partial_in(out);
      if (corrupted || part.empty() || lsize(part) < (16u << 20)) return false;
      corrupt(part, 0);
      corrupted = true;
      return true;
    });
    ASSERT_TRUE(corrupted) << "the copy ended before the fault: " << r.result.describe();
    if (verify) {
      ASSERT_EQ(r.result.exit_code, 0) << r.result.describe();
      EXPECT_TRUE(files_equal(src, out / "dst.bin"));
      EXPECT_GE(summary_field(r.result, "retries"), 1u) << r.result.out;
      EXPECT_GE(summary_field(r.result, "bytes_verified"), 48u << 20) << r.result.out;
    } else {
      ASSERT_EQ(r.result.exit_code, 0) << r.result.describe();
      EXPECT_FALSE(files_equal(src, out / "dst.bin")) << "the fault did not land";
    }
    EXPECT_EQ(xfer_hidden_files(out), std::vector<std::string>{});
  }
}

// A resumed copy trusts the chunks the journal calls done; with --verify
// each is read back and checked first, and one whose bytes changed while
// no copy ran is sent again (docs/options.md, `verify`). The same resume
// without --verify keeps the changed bytes: the control.
TEST_F(FirstHour, VerifyRechecksResumedChunks) {
  const fs::path src = tmp() / "src.bin";
  write_random_file(src, 45, 32u << 20);
  for (const bool verify : {true, false}) {
    SCOPED_TRACE(verify ? "--verify" : "no --verify");
    const fs::path out = tmp() / (verify ? "v" : "nv");
    fs::create_directories(out);
    const std::string job = verify ? "checked" : "trusted";
    std::vector<std::string> args = {
        "cp", "--json", "--bwlimit", "16M",  "--chunk-size",    "2M", "--chunk-parallelism",
        "1",  "--job",  job,         S(src), S(out / "dst.bin")};
    if (verify) args.insert(args.begin() + 1, "--verify");
    // Interrupted (SIGINT: the journal is flushed) once 8 MiB are there:
    // with one chunk at a time, chunks 0 to 2 are done.
    auto first = run_xfer_signal_when(args, SIGINT, [&](pid_t) {
      const fs::path part = partial_in(out);
      return !part.empty() && lsize(part) >= (8u << 20);
    });
    ASSERT_TRUE(first.signalled) << first.result.describe();
    ASSERT_NE(first.result.exit_code, 0) << first.result.describe();
    const fs::path part = partial_in(out);
    ASSERT_FALSE(part.empty()) << "no partial kept";
    corrupt(part, 4096);  // inside chunk 0
    auto again = run_xfer(args);
    ASSERT_EQ(again.exit_code, 0) << again.describe();
    const std::uint64_t resumed = summary_field(again, "bytes_resumed");
    EXPECT_GT(resumed, 0u) << again.out;
    if (verify) {
      EXPECT_TRUE(files_equal(src, out / "dst.bin")) << "a changed resumed chunk was trusted";
      EXPECT_LE(resumed, (32u << 20) - (2u << 20)) << "chunk 0 must not count as resumed";
      // Found as the chunk was resumed, so only it is sent again; not by the
      // final read-back, which would copy the whole file once more.
      EXPECT_EQ(summary_field(again, "retries"), 0u) << again.out;
      EXPECT_LE(summary_field(again, "bytes"), (32u << 20) - resumed) << again.out;
    } else {
      EXPECT_FALSE(files_equal(src, out / "dst.bin")) << "the fault did not land";
    }
  }
}

}  // namespace
}  // namespace xfer_it
