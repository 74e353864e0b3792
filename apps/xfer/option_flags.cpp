// Flags from the option table (option_flags.hpp). Main thread only.

#include "option_flags.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <memory>

#include "xfer/core/files.hpp"
#include "xfer/engine/filter.hpp"

namespace xfer::cli {
namespace {

// "-r,--recursive" (extra names first, as CLI11 lists them).
std::string flag_names(const OptionSpec& spec) {
  std::string names(spec.names);
  if (!names.empty()) names += ",";
  return names + option_flag(spec);
}

std::string help_with_default(const OptionSpec& spec) {
  const std::string def = option_default_text(spec);
  if (spec.kind == OptionKind::kFlag && def == "false") return std::string(spec.help);
  if (spec.kind == OptionKind::kId || spec.kind == OptionKind::kAddresses ||
      spec.kind == OptionKind::kPath) {
    return std::string(spec.help);
  }
  return fmt::format("{} (default: {})", spec.help, def);
}

const char* type_name(OptionKind kind) {
  switch (kind) {
    case OptionKind::kCount:
      return "N";
    case OptionKind::kSize:
      return "SIZE";
    case OptionKind::kRate:
      return "RATE";
    case OptionKind::kMillis:
      return "DURATION";
    case OptionKind::kId:
      return "ID";
    case OptionKind::kAddresses:
      return "ADDRS";
    case OptionKind::kPath:
      return "DIR";
    default:
      return "";
  }
}

}  // namespace

void add_option_flags(CLI::App& app, OptionFlags& flags, OptionWhere where,
                      std::vector<std::string_view> except) {
  for (const OptionSpec& spec : option_table()) {
    if ((spec.where & where) == 0) continue;
    if (std::find(except.begin(), except.end(), spec.name) != except.end()) continue;
    const OptionSpec* s = &spec;
    const std::string flag = option_flag(spec);
    if (spec.kind == OptionKind::kFlag || spec.kind == OptionKind::kSwitch) {
      // --x and --no-x; both at once is a usage error, not "the last wins".
      auto seen = std::make_shared<int>(0);
      auto record = [&flags, s, seen, flag](int which) {
        *seen |= which;
        if (*seen == 3) throw CLI::ValidationError(flag, "conflicts with --no-" + flag.substr(2));
        flags.given.emplace_back(s, which == 1 ? "true" : "false");
      };
      app.add_flag_callback(
          flag_names(spec), [record] { record(1); }, help_with_default(spec));
      // --no-x only where it can undo something: a default of true, auto,
      // or a value from the config file.
      if (option_default_text(spec) != "false" || (spec.where & kConfig) != 0) {
        app.add_flag_callback(
            "--no-" + flag.substr(2), [record] { record(2); }, fmt::format("Turn {} off", flag));
      }
      continue;
    }
    app.add_option_function<std::string>(
           flag_names(spec),
           [&flags, s, flag](const std::string& text) {
             // Checked now, so a bad value is a usage error naming the flag.
             TransferOptions scratch;
             Status ok = s->set(scratch, text);
             if (!ok.ok()) throw CLI::ValidationError(flag, ok.error().detail);
             flags.given.emplace_back(s, text);
           },
           help_with_default(spec))
        ->type_name(type_name(spec.kind));
  }
}

void apply_flags(const OptionFlags& flags, TransferOptions& options) {
  for (const auto& [spec, text] : flags.given) (void)spec->set(options, text);
}

namespace {

// A rules file named on the command line (1 MiB at most: 10,000 rules of
// a hundred bytes).
std::string read_rules_file(const std::string& flag, const std::string& path) {
  auto text = read_small_file(path, 1u << 20);
  if (!text) throw CLI::ValidationError(flag, text.error().message());
  return std::move(*text);
}

}  // namespace

void add_filter_flags(CLI::App& app, FilterFlags& flags) {
  // Each adds its rules in the order the flags were typed (trigger_on_parse
  // runs the callback at each occurrence, not once per flag at the end).
  auto add = [&app, &flags](const std::string& name, const std::string& type,
                            const std::string& help,
                            std::function<Status(FilterSet&, const std::string&)> parse) {
    app.add_option_function<std::string>(
           name,
           [&flags, name, parse](const std::string& value) {
             FilterSet f;
             if (Status s = f.add_filter_text(flags.rules, "rules"); !s.ok()) {
               throw CLI::ValidationError(name, s.error().detail);
             }
             if (Status s = parse(f, value); !s.ok()) {
               throw CLI::ValidationError(name, s.error().message());
             }
             flags.rules = f.to_text();
           },
           help)
        ->type_name(type)
        ->trigger_on_parse()
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  };
  add("--include", "PATTERN", "Include what PATTERN matches (rsync's rules: docs/filters.md)",
      [](FilterSet& f, const std::string& v) { return f.add(true, v, "--include"); });
  add("--exclude", "PATTERN", "Exclude what PATTERN matches (the first matching rule decides)",
      [](FilterSet& f, const std::string& v) { return f.add(false, v, "--exclude"); });
  add("--filter", "RULE", "One rule: '+ PATTERN' or '- PATTERN'",
      [](FilterSet& f, const std::string& v) { return f.add_filter_text(v, "--filter"); });
  add("--filter-from", "FILE", "Rules from FILE, one per line (+ PATTERN, - PATTERN, # comments)",
      [](FilterSet& f, const std::string& v) {
        return f.add_filter_text(read_rules_file("--filter-from", v), v);
      });
  add("--include-from", "FILE", "Include the patterns in FILE, one per line",
      [](FilterSet& f, const std::string& v) {
        return f.add_pattern_text(true, read_rules_file("--include-from", v), v);
      });
  app.add_option_function<std::string>(
         "--files-from",
         [&flags](const std::string& path) {
           // 1,000,000 paths of up to 4,096 bytes could be 4 GiB: 64 MiB is
           // a million paths of 64 bytes, and what a file list should hold.
           auto text = read_small_file(path, 64u << 20);
           if (!text) throw CLI::ValidationError("--files-from", text.error().message());
           auto normal = PathList::normalize(*text, path);
           if (!normal) throw CLI::ValidationError("--files-from", normal.error().message());
           flags.files_from = std::move(normal).value();
         },
         "Only the paths in FILE (one per line, relative to SRC; a folder brings everything "
         "in it), as rsync -r --files-from")
      ->type_name("FILE");
  add("--exclude-from", "FILE", "Exclude the patterns in FILE, one per line",
      [](FilterSet& f, const std::string& v) {
        return f.add_pattern_text(false, read_rules_file("--exclude-from", v), v);
      });
}

void apply_filter_flags(const FilterFlags& flags, TransferOptions& options) {
  if (!flags.files_from.empty()) {
    if (Status s = find_option("files_from")->set(options, flags.files_from); !s.ok()) {
      throw CLI::ValidationError("--files-from", s.error().message());
    }
  }
  if (flags.rules.empty()) return;
  const std::string combined = flags.rules + options.filter;
  if (Status s = find_option("filter")->set(options, combined); !s.ok()) {
    throw CLI::ValidationError("--filter", s.error().message());
  }
}

}  // namespace xfer::cli
