#pragma once
// Shared pieces of the xfer front end: exit codes, error printing, and the
// progress renderer. Only this program prints; libxfer never does.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "option_flags.hpp"
#include "xfer/backend/backend.hpp"
#include "xfer/backend/credentials.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/core/config.hpp"
#include "xfer/engine/bisync.hpp"
#include "xfer/engine/outcome.hpp"
#include "xfer/engine/transfer.hpp"
#include "xfer/metrics/streams.hpp"

namespace xfer::cli {

// Exit codes: include/xfer/engine/outcome.hpp, documented in --help and
// docs/cli.md.

// The version of every JSON line xfer prints ("schema": 1): docs/cli.md,
// "JSON output". Raised when a field changes meaning or goes; new fields
// may appear within a version.
inline constexpr int kJsonSchema = 1;

// The flags for remote endpoints that xfer takes before or after any
// command, for the help of the commands that copy.
inline constexpr const char* kRemoteFlagsHelp =
    "Remote endpoints (xfer://, NAME:path; also before the command): --token T, --streams N, "
    "--streams-max N, --encrypt/--no-encrypt, --tls, --tls-ca FILE, --bind ADDRS, --cc NAME, "
    "--passphrase-file FILE (xfer --help).";

inline constexpr const char* kExitCodesHelp =
    "Exit codes: 0 success, 1 failure, 2 usage error, 3 partial failure (some files failed), "
    "130 interrupted, 141 standard output closed (as by SIGPIPE).";

// Process-wide context shared by the commands.
struct Context {
  Config config;
  std::atomic<bool> cancel{false};
  // The signal was the way to end the command (sync --watch), not an
  // interruption: the exit code stands as the command set it.
  bool signal_ends = false;
  int exit_code = kExitOk;
  // --token, --tls, --tls-ca: how to reach remote endpoints (xfer://).
  EndpointOptions endpoint;
  // The global transfer flags (--streams, --encrypt/--no-encrypt).
  OptionFlags global_flags;
  // --passphrase-file; the passphrase of sealed secrets comes from it, else
  // $XFER_PASSPHRASE, else the terminal.
  std::string passphrase_file;
  PassphraseSource passphrase_source;
  // credentials.toml ($XFER_CREDENTIALS), read on first use; the registry
  // below takes remotes and tokens from it.
  std::shared_ptr<Credentials> credentials;
  // The backends URLs may name, and where their data streams file their
  // statistics (--json summary, progress).
  std::shared_ptr<BackendRegistry> backends = BackendRegistry::with_client_backends();
  std::shared_ptr<StreamStatsBoard> stats = std::make_shared<StreamStatsBoard>();
};

Context& context();

// "xfer: error: <message>" on stderr.
// Standard output, for every command. When its reader has gone (EPIPE:
// `xfer ls -R | head -1`) the process ends at once, quietly, with
// kExitBrokenPipe, as a program killed by SIGPIPE would (SIGPIPE itself is
// ignored for the sockets' sake); a transfer ended so resumes as after
// any kill. Another write error (a full disk behind `> file`) is reported
// on stderr and ends the process with kExitFailure: output is never
// silently cut short. Any thread; `flush` for lines a reader waits on.
void write_out(std::string_view text, bool flush = false);
template <typename... T>
void print_out(fmt::format_string<T...> format, T&&... args) {
  write_out(fmt::format(format, std::forward<T>(args)...));
}

void print_error(const Error& e);
void print_error(const std::string& message);
void print_warning(const std::string& message);
// Redraws the live progress line on stderr (a terminal), serialised with
// the messages above so that none is printed into the middle of it; an
// empty line clears it.
void print_progress(std::string_view line);

// The live progress line for a terminal `width` columns wide: never wider
// than width - 1, from a full line with a bar down to the percentage alone
// (progress_line.cpp). terminal_width is the width of the terminal behind
// `fd` now (80 when it has none): asked at every redraw, so a resized
// window gets lines of its new width.
std::string progress_line(const ProgressSnapshot& snapshot, int width);
int terminal_width(int fd);

// The options of a transfer command: the defaults, then the config file's
// [transfer] keys, then the global flags, then the command's own flags.
// Throws CLI::ValidationError when they break a rule between options.
TransferOptions transfer_options(const OptionFlags& command_flags);

// Opens the backend for a URL or bare path.
struct Endpoint {
  Url url;
  std::unique_ptr<Backend> backend;
};
Result<Endpoint> open_endpoint(const std::string& text);

// "-rw-r--r--" style mode string.
std::string mode_string(const FileAttrs& attrs);
std::string format_mtime(std::int64_t mtime_ns);

// Installs SIGINT/SIGTERM handlers that set context().cancel.
void install_signal_handlers();
// For a command with nothing to save when stopped (ls, stat, mkdir, touch,
// mv, rm): SIGINT and SIGTERM end it at once, as they end ls(1) and rm(1)
// (the handlers above only set a flag such a command never reads; an
// `xfer rm -r` of an object store's folder went on to its end). Exits 130
// when a signal came before.
void end_on_signal();

// Command registration (one file each under commands/).
void register_transfer(CLI::App& app);
void register_list(CLI::App& app);
void register_stat(CLI::App& app);
void register_mkdir(CLI::App& app);
void register_touch(CLI::App& app);
void register_rename(CLI::App& app);
void register_move(CLI::App& app);
void register_rm(CLI::App& app);
void register_sync(CLI::App& app);
void register_jobs(CLI::App& app);
void register_resume(CLI::App& app);
void register_serve(CLI::App& app);
void register_remote(CLI::App& app);  // remote add|list|show|remove, credentials seal|...
// completion SHELL; also the hidden --help-man (the man page).
void register_completion(CLI::App& app);

// Runs a transfer with progress rendering and summary (shared by transfer and move).
struct RenderOptions {
  bool json = false;
  bool progress = true;  // live progress on a terminal
  bool quiet = false;
  bool verbose = false;        // -v: one line per file copied, as rsync -v
  bool stats = false;          // --stats: a block of figures after the summary
  bool human = false;          // -h: sizes in the summary as 73.0 MiB
  bool itemize = false;        // -i (sync): one line per change in rsync's format
  bool sync = false;           // the changes are the plan and -v's lines (xfer sync)
  bool dry_run = false;        // with sync: the changes are printed as a plan, sorted
  bool bidirectional = false;  // sync --bidirectional: the summary says what went which way
  std::string verb = "copied";
};
// The output flags of cp and mv: --json, --no-progress, -P/--progress,
// -q, -v, --stats, -h (help is --help there).
void add_render_flags(CLI::App& cmd, RenderOptions& render);

// Usage errors explained in the user's terms (hints.cpp): an unknown
// command is named with the commands there are, and a flag from rsync,
// rclone or scp gets what xfer does instead. True when it printed one
// (the caller exits with kExitUsage); false leaves it to CLI11.
bool explain_usage_error(const CLI::App& app, int argc, char** argv);
// Returns the exit code.
// `cancel` stops the transfer (default: the SIGINT flag, context().cancel).
int run_transfer_with_ui(const TransferRequest& request, const RenderOptions& render,
                         const std::atomic<bool>* cancel = nullptr);
// sync --bidirectional, with the same progress, lines and summary.
int run_bisync_with_ui(const BisyncRequest& request, const RenderOptions& render);

}  // namespace xfer::cli
