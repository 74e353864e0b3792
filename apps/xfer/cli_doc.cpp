// Reads a CLI11 App into a DocCommand tree and writes it as a man page
// (cli_doc.hpp). Used by xfer (its man page, its completion scripts) and
// xferd (its man page). Main thread only, after the App is built.

#include "cli_doc.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>
#include <string_view>
#include <utility>

namespace xfer::cli {
namespace {

bool hidden(const CLI::App& app) {
  return app.get_group().empty();
}
bool hidden(const CLI::Option& opt) {
  return opt.get_group().empty();
}

// "TEXT:{text,json}" → value "TEXT", choices {text, json}.
void read_type(const CLI::Option& opt, DocFlag& flag) {
  if (opt.get_items_expected_max() == 0) return;  // a flag
  std::string type = opt.get_type_name();
  const std::size_t brace = type.find(":{");
  if (brace != std::string::npos && type.back() == '}') {
    const std::string list = type.substr(brace + 2, type.size() - brace - 3);
    std::size_t start = 0;
    while (start <= list.size()) {
      const std::size_t comma = std::min(list.find(',', start), list.size());
      if (comma > start) flag.choices.push_back(list.substr(start, comma - start));
      start = comma + 1;
    }
    type.resize(brace);
  }
  flag.value = type.empty() ? "VALUE" : type;
}

DocFlag read_flag(const CLI::Option& opt) {
  DocFlag flag;
  for (const std::string& s : opt.get_snames()) flag.names.push_back("-" + s);
  for (const std::string& l : opt.get_lnames()) flag.names.push_back("--" + l);
  read_type(opt, flag);
  flag.help = opt.get_description();
  const std::string def = opt.get_default_str();
  if (!def.empty() && !flag.value.empty() && flag.help.find("default") == std::string::npos) {
    flag.help += fmt::format(" (default: {})", def);
  }
  return flag;
}

bool is_help_or_version(const CLI::App& app, const CLI::Option* opt) {
  return opt == app.get_help_ptr() || opt == app.get_help_all_ptr() || opt == app.get_version_ptr();
}

std::vector<DocFlag> own_flags(const CLI::App& app) {
  std::vector<DocFlag> flags;
  for (const CLI::Option* opt : app.get_options()) {
    if (hidden(*opt) || !opt->nonpositional()) continue;
    flags.push_back(read_flag(*opt));
    flags.back().is_help = opt == app.get_help_ptr();
  }
  return flags;
}

void describe_into(const CLI::App& app, DocCommand& cmd, const DocCommand* parent) {
  cmd.help = app.get_description();
  cmd.needs_subcommand = app.get_require_subcommand_min() > 0;
  if (parent == nullptr || app.get_footer() != app.get_parent()->get_footer()) {
    cmd.footer = app.get_footer();
  }
  cmd.flags = own_flags(app);
  for (const CLI::Option* opt : app.get_options()) {
    if (hidden(*opt) || opt->nonpositional()) continue;
    DocOperand op;
    op.name = opt->get_name(true);
    op.help = opt->get_description();
    op.required = opt->get_required();
    op.repeats = opt->get_items_expected_max() > 1;
    cmd.operands.push_back(std::move(op));
  }
  if (parent != nullptr && app.get_fallthrough()) {
    std::set<std::string> taken;
    for (const DocFlag& f : cmd.flags) taken.insert(f.names.begin(), f.names.end());
    // The parent's own flags (less --help and --version), then what it
    // inherits in turn.
    const CLI::App& up = *app.get_parent();
    std::vector<DocFlag> candidates;
    for (const CLI::Option* opt : up.get_options()) {
      if (hidden(*opt) || !opt->nonpositional() || is_help_or_version(up, opt)) continue;
      candidates.push_back(read_flag(*opt));
    }
    candidates.insert(candidates.end(), parent->inherited.begin(), parent->inherited.end());
    for (DocFlag f : candidates) {
      std::erase_if(f.names, [&](const std::string& n) { return taken.count(n) != 0; });
      if (f.names.empty()) continue;
      taken.insert(f.names.begin(), f.names.end());
      cmd.inherited.push_back(std::move(f));
    }
  }
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (hidden(*sub)) continue;
    DocCommand child;
    child.path = cmd.path;
    child.path.push_back(sub->get_name());
    child.aliases = sub->get_aliases();
    describe_into(*sub, child, &cmd);
    cmd.subcommands.push_back(std::move(child));
  }
}

void collect(const DocCommand& cmd, std::vector<const DocCommand*>& out) {
  out.push_back(&cmd);
  for (const DocCommand& sub : cmd.subcommands) collect(sub, out);
}

// ---------------------------------------------------------------- roff

// Text for a roff text line: backslashes and hyphens escaped (a flag's
// hyphens are minus signs, as a reader copies them), no control character
// at the start.
std::string roff(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\') {
      out += "\\e";
    } else if (c == '-') {
      out += "\\-";
    } else {
      out += c;
    }
  }
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out.insert(0, "\\&");
  return out;
}

// Paragraphs (separated by an empty line) as roff text lines.
std::string roff_paragraphs(std::string_view text) {
  std::string out;
  bool first = true;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(' ') == std::string_view::npos) {
      if (!first) out += ".PP\n";
      first = true;
      continue;
    }
    line.remove_prefix(line.find_first_not_of(' '));
    out += roff(line) + "\n";
    first = false;
  }
  // A paragraph mark left at the end would only add space.
  while (out.size() >= 4 && out.ends_with(".PP\n")) out.resize(out.size() - 4);
  return out;
}

std::string bold(std::string_view s) {
  return "\\fB" + roff(s) + "\\fR";
}
std::string italic(std::string_view s) {
  return "\\fI" + roff(s) + "\\fR";
}

// "\fB\-r\fR, \fB\-\-recursive\fR \fIN\fR"
std::string flag_term(const DocFlag& f) {
  std::string term;
  for (const std::string& n : f.names) {
    if (!term.empty()) term += ", ";
    term += bold(n);
  }
  if (!f.choices.empty()) {
    std::string alts;
    for (const std::string& c : f.choices) alts += (alts.empty() ? "" : "|") + c;
    term += " " + italic(alts);
  } else if (!f.value.empty()) {
    term += " " + italic(f.value);
  }
  return term;
}

// The flags' list; a command's --help only on the root's (it is the same
// on every command).
std::string flags_block(const std::vector<DocFlag>& flags, bool with_help) {
  std::string out;
  for (const DocFlag& f : flags) {
    if (f.is_help && !with_help) continue;
    out += ".TP\n" + flag_term(f) + "\n";
    out += f.help.empty() ? std::string("\\&\n") : roff(f.help) + "\n";
  }
  return out;
}

// "[options] paths..." as roff text.
std::string usage_tail(const DocCommand& cmd) {
  std::string out;
  if (!cmd.flags.empty() || !cmd.inherited.empty()) out += "[" + italic("options") + "]";
  if (!cmd.subcommands.empty()) {
    out += std::string(out.empty() ? "" : " ") +
           (cmd.needs_subcommand ? italic("command") : "[" + italic("command") + "]");
  }
  for (const DocOperand& op : cmd.operands) {
    std::string word = italic(op.name) + (op.repeats ? "\\&..." : "");
    out += " " + (op.required ? word : "[" + word + "]");
  }
  return out;
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

void command_block(const DocCommand& cmd, std::string& out) {
  std::string title = cmd.name();
  for (const std::string& a : cmd.aliases) title += ", " + a;
  out += ".SS \"" + roff(title) + "\"\n";
  out += bold(cmd.name()) + " " + usage_tail(cmd) + "\n";
  if (!cmd.aliases.empty()) {
    std::string also;
    for (const std::string& a : cmd.aliases) {
      std::vector<std::string> p = cmd.path;
      p.back() = a;
      std::string n;
      for (const std::string& w : p) n += (n.empty() ? "" : " ") + w;
      also += (also.empty() ? "" : ", ") + bold(n);
    }
    out += ".br\nAlso: " + also + ".\n";
  }
  out += ".PP\n" + roff_paragraphs(cmd.help);
  if (!cmd.operands.empty()) {
    for (const DocOperand& op : cmd.operands) {
      out += ".TP\n" + italic(op.name) + "\n" + (op.help.empty() ? "\\&" : roff(op.help)) + "\n";
    }
  }
  out += flags_block(cmd.flags, false);
  if (!cmd.footer.empty()) out += ".PP\n" + roff_paragraphs(cmd.footer);
}

}  // namespace

std::string DocCommand::name() const {
  std::string n;
  for (const std::string& w : path) n += (n.empty() ? "" : " ") + w;
  return n;
}

DocCommand describe_cli(const CLI::App& app, const std::string& program) {
  DocCommand root;
  root.path = {program};
  describe_into(app, root, nullptr);
  return root;
}

std::vector<const DocCommand*> all_commands(const DocCommand& root) {
  std::vector<const DocCommand*> out;
  collect(root, out);
  return out;
}

std::string man_page(const DocCommand& root, const ManInfo& info) {
  std::string out;
  out += fmt::format(".\\\" Made by `{} --help-man` from its command-line parser; do not edit.\n",
                     info.program);
  out += fmt::format(".TH {} {} \"\" \"{}\" \"User Commands\"\n", upper(info.program), info.section,
                     roff(info.version));
  out += ".nh\n.ad l\n";  // no hyphenated flags, no stretched lines
  out += ".SH NAME\n" + roff(info.program) + " \\- " + roff(info.summary) + "\n";

  out += ".SH SYNOPSIS\n";
  out += bold(root.name()) + " " + usage_tail(root) + "\n";
  for (const DocCommand& sub : root.subcommands) {
    out += ".br\n" + bold(sub.name()) + " " + usage_tail(sub) + "\n";
  }

  out += ".SH DESCRIPTION\n" +
         roff_paragraphs(info.description.empty() ? root.help : info.description);
  if (!root.flags.empty()) {
    out += ".SH OPTIONS\n";
    if (!root.subcommands.empty() && !root.subcommands.front().inherited.empty()) {
      out += "These are accepted before or after the command.\n";
    }
    out += flags_block(root.flags, true);
  }
  if (!root.subcommands.empty()) {
    out += ".SH COMMANDS\n";
    std::vector<const DocCommand*> commands = all_commands(root);
    for (std::size_t i = 1; i < commands.size(); ++i) command_block(*commands[i], out);
  }
  for (const ManSection& s : info.sections) {
    out += ".SH " + upper(s.title) + "\n" + roff_paragraphs(s.text);
    for (const ManItem& item : s.items) {
      out += ".TP\n" + bold(item.term) + "\n" + roff(item.text) + "\n";
    }
  }
  if (!root.footer.empty() && info.sections.empty()) {
    out += ".SH NOTES\n" + roff_paragraphs(root.footer);
  }
  return out;
}

void add_man_flag(CLI::App& app, ManInfo info) {
  app.add_flag_callback(
         "--help-man",
         [&app, info = std::move(info)] {
           const std::string page = man_page(describe_cli(app, info.program), info);
           std::fwrite(page.data(), 1, page.size(), stdout);
           std::fflush(stdout);
           throw CLI::Success();
         },
         "Print the man page (roff) and exit")
      ->group("");
}

}  // namespace xfer::cli
