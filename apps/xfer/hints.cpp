// Usage errors in the user's terms (common.hpp, explain_usage_error): an
// unknown command is named, and a flag typed from rsync, rclone or scp
// habit gets what xfer does instead of CLI11's generic "not expected".
// Main thread only, after CLI11 refused the command line.

#include <fmt/format.h>

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common.hpp"

namespace xfer::cli {
namespace {

struct Hint {
  std::string_view flags;  // space-separated names it answers
  std::string_view text;
};

constexpr std::string_view kKept =
    "modes, mtimes and symlinks are always kept (owners are not changed)";
constexpr std::string_view kPartial =
    "xfer always keeps the partial of an interrupted copy and resumes it: run the same command "
    "again, or xfer resume ID (xfer jobs lists them)";
constexpr std::string_view kSync =
    "is a flag of xfer sync (xfer sync --delete SRC/ DST mirrors SRC, docs/sync.md); xfer cp "
    "never deletes";

const std::array<Hint, 14> kHints = {{
    {"-z --compress --compress-level",
     "xfer does not compress yet; it moves data over parallel "
     "streams instead (--streams, --workers)"},
    {"--delete --delete-before --delete-after --delete-during --max-delete --backup-dir", kSync},
    {"-b --backup",
     "xfer sync --backup-dir DIR keeps every replaced or deleted file in DIR (no -b needed)"},
    {"--delete-excluded --existing",
     "not supported yet: --include/--exclude rules select files (docs/filters.md)"},
    {"-e --rsh",
     "xfer talks to xferd (xfer://host/path, docs/server.md), not through ssh; "
     "NAME:path names a configured remote (xfer remote add)"},
    {"--partial --partial-dir --append --append-verify --inplace", kPartial},
    {"-p -t -o -g -l -D --perms --times --owner --group --links --devices --specials", kKept},
    {"-W --whole-file",
     "cp always sends whole files; -W is a flag of xfer sync (which sends deltas of large changed "
     "files)"},
    {"--transfers",
     "rclone's --transfers is --workers N here (files and chunks in flight); "
     "--streams N sets the connections per server"},
    {"--checkers", "not needed: xfer compares sizes and mtimes as it copies"},
    {"--info --progress2",
     "the progress line is on by default on a terminal (-P forces it, "
     "--no-progress hides it); --stats prints the figures at the end"},
    {"-x --one-file-system", "not supported yet: xfer copies the whole tree below SRC"},
    {"--no-perms --no-times --chmod --chown --numeric-ids", kKept},
    {"-H --hard-links -A --acls -X --xattrs",
     "not supported yet: hard links are copied as "
     "separate files; ACLs and xattrs are not copied"},
}};

std::optional<std::string_view> hint_for(std::string_view flag) {
  const std::string_view name = flag.substr(0, flag.find('='));
  for (const Hint& h : kHints) {
    std::string_view rest = h.flags;
    while (!rest.empty()) {
      const std::size_t space = rest.find(' ');
      if (rest.substr(0, space) == name) return h.text;
      if (space == std::string_view::npos) break;
      rest.remove_prefix(space + 1);
    }
  }
  return std::nullopt;
}

// Is `name` ("-x", "--long") an option of `app` or of the app it falls
// through to? Sets *takes_value when it reads the next argument.
bool known(const CLI::App& app, std::string_view name, bool* takes_value) {
  for (const CLI::App* a = &app; a != nullptr; a = a->get_parent()) {
    const CLI::Option* opt = a->get_option_no_throw(std::string(name));
    if (opt != nullptr) {
      if (takes_value != nullptr) *takes_value = opt->get_items_expected_min() > 0;
      return true;
    }
    if (name == "--help" || name == "--version") return true;
  }
  return false;
}

std::string commands_of(const CLI::App& app) {
  std::string list;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_group().empty()) continue;  // hidden
    if (!list.empty()) list += ", ";
    list += sub->get_name();
    for (const auto& alias : sub->get_aliases()) list += "/" + alias;
  }
  return list;
}

const CLI::App* subcommand_named(const CLI::App& app, std::string_view word) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->check_name(std::string(word))) return sub;
  }
  return nullptr;
}

// "-z: xfer does not compress…", "--delete is part of xfer sync…".
void say(std::string_view flag, std::string_view text) {
  if (flag.empty()) {
    print_error(std::string(text));
  } else {
    print_error(fmt::format("{}{} {}", flag, text.starts_with("is ") ? "" : ":", text));
  }
}

}  // namespace

bool explain_usage_error(const CLI::App& app, int argc, char** argv) {
  const CLI::App* command = nullptr;
  std::string_view command_word;  // as typed: "cp", not "transfer"
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() > 1 && arg[0] == '-') {
      const CLI::App& scope = command != nullptr ? *command : app;
      const std::string_view name = arg.substr(0, arg.find('='));
      bool takes_value = false;
      if (known(scope, name, &takes_value)) {
        if (takes_value && arg.find('=') == std::string_view::npos) ++i;
        continue;
      }
      if (auto text = hint_for(arg)) {
        say(name, *text);
        return true;
      }
      // Short flags run together ("-avz"): the first letter xfer lacks.
      std::string unknown(name);
      if (arg[1] != '-' && arg.size() > 2) {
        for (std::size_t k = 1; k < arg.size(); ++k) {
          const std::string one = fmt::format("-{}", arg[k]);
          bool reads_value = false;
          if (known(scope, one, &reads_value)) {
            if (reads_value) break;  // "-j4": the rest is its value
            continue;
          }
          if (auto text = hint_for(one)) {
            say(one, *text);
            return true;
          }
          unknown = one;
          break;
        }
        if (unknown == name) continue;  // every letter is a flag: not this one
      }
      const std::string help = command != nullptr ? fmt::format("xfer {} --help", command_word)
                                                  : std::string("xfer --help");
      say(unknown, fmt::format("unknown flag ({} lists the flags)", help));
      return true;
    }
    if (command != nullptr) continue;  // an operand
    command = subcommand_named(app, arg);
    command_word = arg;
    if (command != nullptr) continue;
    if (arg == "copy" || arg == "copyto") {
      say("", fmt::format("'{}' is not an xfer command: xfer cp -r SRC/ DST is rclone copy SRC "
                          "DST (the trailing slash copies the contents); commands: {}",
                          arg, commands_of(app)));
    } else if (arg == "bisync") {
      say("", fmt::format("'bisync' is not an xfer command: xfer sync --bidirectional A B is "
                          "rclone bisync A B; commands: {}",
                          commands_of(app)));
    } else {
      say("", fmt::format("'{}' is not an xfer command; the commands are {} (xfer --help)", arg,
                          commands_of(app)));
    }
    return true;
  }
  return false;
}

}  // namespace xfer::cli
