#pragma once
// Every transfer option, declared once in options.inc. This header turns
// that table into the members of TransferOptions and into the one reader
// and writer of option values that the CLI flags, the config file, the job
// record and a server's job request all go through (src/engine/options.cpp).
// Values travel as text ("16M", "true", "50ms", "auto"); each is checked
// against its option's kind and range before it is stored, so a value from
// a file or from a peer passes the same validation as one typed by the user.
// All functions are pure; the table is immutable.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xfer/backend/registry.hpp"
#include "xfer/core/config.hpp"
#include "xfer/core/file_attrs.hpp"
#include "xfer/core/result.hpp"

namespace xfer {

class ChangeFeed;  // xfer/engine/changes.hpp

// Where an option may be set.
enum OptionWhere : unsigned {
  kCli = 1u << 0,     // a flag of the transfer commands (cp, mv)
  kGlobal = 1u << 1,  // a flag of xfer itself, before or after the command
  kConfig = 1u << 2,  // a key of [transfer] in config.toml
  kJob = 1u << 3,     // saved in job.json: `xfer resume` runs with it again
  kRemote = 1u << 4,  // sent to the server that runs a third-party job
  kSync = 1u << 5,    // a flag of xfer sync only
};

enum class OptionKind {
  kFlag,       // bool: true/false (flags --x and --no-x)
  kSwitch,     // int -1/0/1: auto/false/true (flags --x and --no-x)
  kCount,      // unsigned decimal
  kSize,       // bytes: 4096, "64K", "16M", "1G"
  kRate,       // bytes per second, read by parse_rate: "500" (KiB/s), "30M", "800Mbit"
  kMillis,     // std::chrono::milliseconds: "50ms", "5s", "2m", or a number of ms
  kId,         // std::string checked by validate_id (letters, digits, '-', '_', '.')
  kAddresses,  // std::string: IP addresses separated by commas (parse_address_list)
  kFilter,     // std::string: include/exclude rules as --filter-from text (FilterSet)
  kPath,       // std::string: a relative path, each component checked as a name from a peer
  kPathList,   // std::string: relative paths, one per line (PathList, --files-from)
};

struct TransferOptions {
#define XFER_OPTION(name, kind, type, def, min, max, zero, where, names, help) type name = def;
#include "xfer/engine/options.inc"
#undef XFER_OPTION
  // Not options but places: where checkpoints live (empty:
  // default_state_root()), and how to reach each remote endpoint
  // (credentials, TLS, statistics board). The engine gives each backend
  // `streams` and `encrypt` from the options above.
  std::string state_root;
  EndpointOptions source_endpoint;
  EndpointOptions destination_endpoint;
};

struct TransferRequest {
  std::vector<std::string> sources;  // URLs or bare paths
  std::string destination;
  TransferOptions options;
  // The backends the URLs may name; null: the built-in ones
  // (BackendRegistry::with_builtins()).
  std::shared_ptr<const BackendRegistry> backends;
  // Set: after the first scan the transfer stays open and copies the paths
  // the feed reports as changed, until the feed is closed (changes.hpp).
  std::shared_ptr<ChangeFeed> changes;
  // Set (sync only): before the sync changes a destination entry it asks
  // this, with the path relative to the source root and the destination's
  // attributes as just listed (nullopt: nothing there); false leaves the
  // path alone, counted as skipped with a warning. sync --bidirectional
  // uses it so that a leg never overwrites what changed on the receiving
  // side after the plan was made. Called from the sync walk's threads.
  std::function<bool(const std::string& path, const std::optional<FileAttrs>& destination)>
      destination_guard;
};

// One row of the table.
struct OptionSpec {
  std::string_view name;
  OptionKind kind;
  unsigned where;
  std::uint64_t min;
  std::uint64_t max;
  std::string_view zero;  // what 0 means ("auto"), or ""
  std::string_view names;
  std::string_view help;
  // Parses and range-checks `text`, then stores it. The error names the
  // option and what it accepts; `options` is unchanged on error.
  Status (*set)(TransferOptions& options, std::string_view text);
  // The value in the canonical text that `set` reads back exactly.
  std::string (*get)(const TransferOptions& options);
};

std::span<const OptionSpec> option_table();
const OptionSpec* find_option(std::string_view name);

// "--chunk-size" for chunk_size.
std::string option_flag(const OptionSpec& spec);
// The default, as shown in --help: "8M", "auto", "true".
std::string option_default_text(const OptionSpec& spec);

// Sets option `name` from `text` if it may be set from `where`; otherwise a
// kInvalidArgument error naming the option ("unknown option", "cannot be set
// in a job request").
Status set_option(TransferOptions& options, std::string_view name, std::string_view text,
                  OptionWhere where);

// The options that may be set from `where`, as (name, canonical text) in
// table order. Reading them back with set_option yields equal options.
std::vector<std::pair<std::string, std::string>> option_values(const TransferOptions& options,
                                                               OptionWhere where);

// The config file's [transfer] keys onto `options`; an unknown key or a bad
// value is a kInvalidArgument error naming the file and line.
Status apply_config(const Config& config, TransferOptions& options);

// Rules between options (memory holds at least four I/O buffers).
Status check_options(const TransferOptions& options);

// Equal in every option settable from `where`.
bool same_options(const TransferOptions& a, const TransferOptions& b, OptionWhere where);

}  // namespace xfer
