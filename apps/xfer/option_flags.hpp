#pragma once
// The transfer options' flags, made from the option table
// (include/xfer/engine/options.inc): each option that may be set from the
// command line becomes a flag (--x, and --no-x for a yes/no option) with its
// help and default. What the user typed is checked as it is parsed and kept
// as text until apply_flags lays it over the config file's values. Main
// thread only (CLI11 parsing).

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "xfer/engine/options.hpp"

namespace xfer::cli {

struct OptionFlags {
  // (option, text) in the order given; a later one wins.
  std::vector<std::pair<const OptionSpec*, std::string>> given;
};

// Adds a flag to `app` for each option marked `where` (kCli or kGlobal),
// except those named in `except`.
void add_option_flags(CLI::App& app, OptionFlags& flags, OptionWhere where,
                      std::vector<std::string_view> except = {});

// Sets what was given onto `options`. The values were checked when parsed.
void apply_flags(const OptionFlags& flags, TransferOptions& options);

// The command line's include/exclude rules (docs/filters.md): --include P,
// --exclude P, --filter RULE, --filter-from FILE, --include-from FILE and
// --exclude-from FILE, in the order given (the first match wins), as the
// `filter` option's text. Each is checked (and a FILE read) as it is
// parsed, so a bad rule is a usage error naming the flag, FILE:LINE.
struct FilterFlags {
  std::string rules;
  std::string files_from;  // --files-from FILE's paths, normalized (PathList)
};
void add_filter_flags(CLI::App& app, FilterFlags& flags);
// The rules of the command line first, then the config file's (`filter`
// in [transfer]): a flag wins over the file, as for every option.
void apply_filter_flags(const FilterFlags& flags, TransferOptions& options);

}  // namespace xfer::cli
