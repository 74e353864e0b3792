// The front end's shared pieces (common.hpp): the process-wide CLI context
// (the SIGINT cancel flag), exit codes and message printing. Messages come
// from the main thread, the progress thread and engine workers (through the
// observer); printing is serialised.

#include "common.hpp"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>

#include "xfer/backend/registry.hpp"

namespace xfer::cli {

Context& context() {
  static Context ctx;
  return ctx;
}

namespace {
std::mutex g_print_mu;

// On a terminal, clear the progress line before printing a message.
const char* line_reset() {
  static const bool tty = ::isatty(STDERR_FILENO) == 1;
  return tty ? "\r\033[K" : "";
}

void on_signal(int) {
  context().cancel.store(true);
}
}  // namespace

void print_error(const Error& e) {
  print_error(e.message());
}

void print_error(const std::string& message) {
  std::lock_guard lock(g_print_mu);
  fmt::print(stderr, "{}xfer: error: {}\n", line_reset(), message);
}

void print_warning(const std::string& message) {
  std::lock_guard lock(g_print_mu);
  fmt::print(stderr, "{}xfer: warning: {}\n", line_reset(), message);
}

void print_progress(std::string_view line) {
  std::lock_guard lock(g_print_mu);
  fmt::print(stderr, "\r\033[K{}", line);
  std::fflush(stderr);
}

TransferOptions transfer_options(const OptionFlags& command_flags) {
  Context& ctx = context();
  TransferOptions options;
  Status configured = apply_config(ctx.config, options);  // checked at start-up too
  if (!configured.ok()) throw CLI::ValidationError("--config", configured.error().message());
  apply_flags(ctx.global_flags, options);
  apply_flags(command_flags, options);
  Status valid = check_options(options);
  if (!valid.ok()) throw CLI::ValidationError(valid.error().path, valid.error().detail);
  options.source_endpoint = ctx.endpoint;
  options.destination_endpoint = ctx.endpoint;
  return options;
}

Result<Endpoint> open_endpoint(const std::string& text) {
  XFER_ASSIGN_OR_RETURN(Url url, context().backends->parse(text));
  XFER_ASSIGN_OR_RETURN(auto backend, context().backends->create(url, context().endpoint));
  return Endpoint{std::move(url), std::move(backend)};
}

std::string mode_string(const FileAttrs& a) {
  std::string s(10, '-');
  switch (a.type) {
    case EntryType::kDirectory:
      s[0] = 'd';
      break;
    case EntryType::kSymlink:
      s[0] = 'l';
      break;
    case EntryType::kOther:
      s[0] = '?';
      break;
    default:
      break;
  }
  static constexpr const char* kRwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    if (a.mode & (1u << (8 - i))) s[1 + i] = kRwx[i];
  }
  if (a.mode & S_ISUID) s[3] = (a.mode & S_IXUSR) ? 's' : 'S';
  if (a.mode & S_ISGID) s[6] = (a.mode & S_IXGRP) ? 's' : 'S';
  if (a.mode & S_ISVTX) s[9] = (a.mode & S_IXOTH) ? 't' : 'T';
  return s;
}

std::string format_mtime(std::int64_t mtime_ns) {
  std::time_t t = static_cast<std::time_t>(mtime_ns / 1'000'000'000LL);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

void write_out(std::string_view text, bool flush) {
  const bool ok = std::fwrite(text.data(), 1, text.size(), stdout) == text.size() &&
                  (!flush || std::fflush(stdout) == 0);
  if (ok) return;
  const int err = errno;
  if (err == EPIPE) std::_Exit(kExitBrokenPipe);
  fmt::print(stderr, "xfer: error: cannot write to standard output: {}\n", std::strerror(err));
  std::_Exit(kExitFailure);
}

void end_on_signal() {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (context().cancel.load()) std::_Exit(kExitInterrupted);
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace xfer::cli
