#pragma once
// What a program's command line is, read from its CLI11 App after every
// command and flag was added: the commands, their flags with help text, and
// their operands. The man pages of xfer and xferd (`--help-man`, a hidden
// flag) and xfer's shell completion scripts (`xfer completion SHELL`) are
// made from it, so they list exactly what the parser accepts; the transfer
// flags reach the App from the option table (option_flags.cpp). Main thread
// only, after the App is built (CLI11 is not thread-safe).

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace xfer::cli {

struct DocFlag {
  std::vector<std::string> names;    // "-r", "--recursive": short ones first
  std::string value;                 // what it reads ("N", "TEXT"); "" for a flag
  std::vector<std::string> choices;  // the values it accepts, when the parser names them
  std::string help;
  bool is_help = false;  // the command's --help
};

struct DocOperand {
  std::string name;  // "paths", "id"
  std::string help;
  bool required = false;
  bool repeats = false;  // takes more than one word
};

struct DocCommand {
  std::vector<std::string> path;     // {"xfer", "jobs", "rm"}
  std::vector<std::string> aliases;  // other names of path.back() ("cp")
  std::string help;
  std::string footer;          // only when it differs from the parent's
  std::vector<DocFlag> flags;  // its own, in the order they were added
  // The flags of the commands above it that it accepts too (CLI11's
  // fallthrough), less --help, --version and names it has itself.
  std::vector<DocFlag> inherited;
  std::vector<DocOperand> operands;
  bool needs_subcommand = false;
  std::vector<DocCommand> subcommands;  // hidden ones left out

  // "xfer jobs rm"
  std::string name() const;
};

// Reads `app` (the root; `program` is its name as typed) into a tree.
// Hidden commands and flags (an empty group) are left out.
DocCommand describe_cli(const CLI::App& app, const std::string& program);

// Every command of the tree, the root first, depth first.
std::vector<const DocCommand*> all_commands(const DocCommand& root);

// The parts of a man page that the parser does not know.
struct ManItem {
  std::string term;  // set in bold
  std::string text;
};
struct ManSection {
  std::string title;  // "ENVIRONMENT"
  std::string text;   // paragraphs, separated by an empty line
  std::vector<ManItem> items;
};
struct ManInfo {
  std::string program;  // "xfer"
  std::string section = "1";
  std::string version;  // "xfer 0.1.0"
  std::string summary;  // the NAME line: "fast, verifiable file transfer"
  std::string description;
  std::vector<ManSection> sections;  // after COMMANDS: EXIT STATUS, FILES, ...
};

// The man page in roff (man(7) macros): NAME, SYNOPSIS, DESCRIPTION,
// OPTIONS (the root's), COMMANDS (each with its usage, help, operands and
// flags), then info.sections.
std::string man_page(const DocCommand& root, const ManInfo& info);

// Adds the hidden flag --help-man to `app`: it prints man_page() of the
// whole app to standard output and ends the parse with CLI::Success
// (the caller's usual `catch (const CLI::Success&)` exits 0). The build
// runs it to make the installed man pages.
void add_man_flag(CLI::App& app, ManInfo info);

}  // namespace xfer::cli
