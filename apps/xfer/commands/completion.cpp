// xfer completion bash|zsh|fish: prints a completion script for the shell,
// made from the command-line parser itself (cli_doc.hpp), so every command,
// alias and flag that parses is offered; remote names come from
// `xfer remote list` and job ids from `xfer jobs` when the script runs.
// Also xfer's hidden --help-man (its man page; the build installs it).
// Main thread only.

#include <fmt/format.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "../cli_doc.hpp"
#include "../common.hpp"

namespace xfer::cli {
namespace {

constexpr std::string_view kShells = "bash, zsh and fish";

// ---------------------------------------------------------------- what to offer

// What a flag's value or an operand completes to, as the scripts spell it:
// "files", "dirs", "paths" (files, and remote names as NAME:), "remotes",
// "jobs", "words:a b c", or "none".
using Kind = std::string;

// Flags whose value is no file although CLI11 calls it TEXT.
const std::map<std::string_view, std::string_view> kValueKinds = {
    {"--log-level", "words:trace debug info warn error off"},
    {"--token", "none"},
};

Kind flag_kind(const DocFlag& f) {
  for (const std::string& n : f.names) {
    if (auto it = kValueKinds.find(n); it != kValueKinds.end()) return Kind(it->second);
  }
  if (!f.choices.empty()) {
    std::string words;
    for (const std::string& c : f.choices) words += (words.empty() ? "" : " ") + c;
    return "words:" + words;
  }
  if (f.value != "TEXT") return "none";  // N, SIZE, RATE, DURATION, ...
  for (const std::string& n : f.names) {
    if (n.find("dir") != std::string::npos) return "dirs";
  }
  return "files";
}

Kind operand_kind(const DocCommand& cmd, const DocOperand& op) {
  const std::string where = cmd.name();
  if (op.name == "paths" || op.name == "from" || op.name == "to") return "paths";
  if (op.name == "id" || op.name == "ids") return "jobs";
  if (where.ends_with(" remote show") || where.ends_with(" remote remove")) return "remotes";
  if (where.ends_with(" completion")) return "words:bash zsh fish";
  if (where.ends_with(" remote add") && op.name == "type") {
    std::string words;
    for (const RemoteType& t : remote_types())
      words += (words.empty() ? "" : " ") + std::string(t.type);
    return "words:" + words;
  }
  return "none";
}

std::vector<const DocFlag*> flags_of(const DocCommand& cmd) {
  std::vector<const DocFlag*> out;
  for (const DocFlag& f : cmd.flags) out.push_back(&f);
  for (const DocFlag& f : cmd.inherited) out.push_back(&f);
  return out;
}

// 'text' for bash, zsh and fish alike (fish reads '\'' as well).
std::string sq(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

// ---------------------------------------------------------------- bash and zsh

// An ordered `case` arm list: patterns sharing one body are joined into
// one arm. A glob pattern must not move ahead of the arms added before it
// (the first match wins): `ordered` joins it only to the last arm.
class CaseArms {
 public:
  void add(const std::string& pattern, const std::string& body, bool ordered = false) {
    for (std::size_t i = ordered && !arms_.empty() ? arms_.size() - 1 : 0; i < arms_.size(); ++i) {
      if (arms_[i].second == body) {
        arms_[i].first.push_back(pattern);
        return;
      }
    }
    arms_.push_back({{pattern}, body});
  }
  std::string str(const std::string& indent) const {
    std::string out;
    for (const auto& [patterns, body] : arms_) {
      std::string joined;
      for (const std::string& p : patterns) joined += (joined.empty() ? "" : "|") + p;
      out += fmt::format("{}{}) {} ;;\n", indent, joined, body);
    }
    return out;
  }

 private:
  std::vector<std::pair<std::vector<std::string>, std::string>> arms_;
};

std::string dq(const std::string& s) {
  return "\"" + s + "\"";
}

// The helpers both shells share: plain `case` statements over the tree.
std::string shell_tables(const DocCommand& root, bool zsh) {
  const std::string p = root.name();
  CaseArms enter, value, flags, subs, operand, flag_help, sub_help;
  for (const DocCommand* cmd : all_commands(root)) {
    const std::string key = cmd->name();
    std::string sub_words, sub_specs;
    for (const DocCommand& sub : cmd->subcommands) {
      std::vector<std::string> names = {sub.path.back()};
      names.insert(names.end(), sub.aliases.begin(), sub.aliases.end());
      for (const std::string& n : names) {
        enter.add(dq(key + "/" + n), "REPLY=" + dq(sub.name()));
        sub_words += (sub_words.empty() ? "" : " ") + n;
        sub_specs += " " + sq(n + ":" + first_line(sub.help));
      }
    }
    if (!sub_words.empty()) {
      subs.add(dq(key), "REPLY=" + sq(sub_words));
      sub_help.add(dq(key), "reply=(" + sub_specs.substr(1) + ")");
    }
    std::string flag_words, flag_specs;
    for (const DocFlag* f : flags_of(*cmd)) {
      for (const std::string& n : f->names) {
        flag_words += (flag_words.empty() ? "" : " ") + n;
        flag_specs += " " + sq(n + ":" + first_line(f->help));
        if (!f->value.empty()) value.add(dq(key + "/" + n), "REPLY=" + sq(flag_kind(*f)));
      }
    }
    if (!flag_words.empty()) {
      flags.add(dq(key), "REPLY=" + sq(flag_words));
      flag_help.add(dq(key), "reply=(" + flag_specs.substr(1) + ")");
    }
    for (std::size_t i = 0; i < cmd->operands.size(); ++i) {
      const DocOperand& op = cmd->operands[i];
      const std::string body = "REPLY=" + sq(operand_kind(*cmd, op));
      // A repeating operand takes every word from its place on (the
      // arms before it win for the earlier places).
      operand.add(op.repeats ? dq(key + "/") + "*" : dq(fmt::format("{}/{}", key, i)), body, true);
    }
  }
  std::string out;
  auto fn = [&](std::string_view name, std::string_view what, std::string_view subject,
                const CaseArms& arms) {
    out += fmt::format("# {}\n_{}_{}() {{\n  case \"{}\" in\n{}    *) return 1 ;;\n  esac\n}}\n\n",
                       what, p, name, subject, arms.str("    "));
  };
  fn("enter", "The command that word $2 enters from command $1.", "$1/$2", enter);
  fn("value", "What the value of flag $2 of command $1 completes to; fails for a flag without one.",
     "$1/$2", value);
  fn("flags", "The flags command $1 takes (with those it takes from the commands above it).", "$1",
     flags);
  fn("subcommands", "The commands below command $1.", "$1", subs);
  fn("operand", "What operand $2 (from 0) of command $1 completes to.", "$1/$2", operand);
  if (zsh) {
    fn("flag_help", "Flags of command $1 with their help, for _describe.", "$1", flag_help);
    fn("subcommand_help", "Commands below command $1 with their help.", "$1", sub_help);
  }
  return out;
}

// Walks the words before the cursor: the command they reach, how many
// operands it has, and whether the last word is a flag waiting for its
// value. Same text for bash and zsh ($1: index of the first word after the
// program, $2: index of the word under the cursor, words in the array
// named by _P_words).
constexpr std::string_view kWalk =
    R"sh(# Sets _xfer_cmd, _xfer_n (operands so far), _xfer_kind (the pending flag's value,
# or "") and _xfer_dashdash from the words before the cursor.
_xfer_walk() {
  local i word glue=0
  _xfer_cmd=xfer _xfer_n=0 _xfer_kind="" _xfer_dashdash=0
  for ((i = $1; i < $2; i++)); do
    word=${_xfer_words[i]}
    if [[ $word == "=" ]]; then continue; fi  # bash splits --flag=value
    if [[ $word == ":" ]]; then glue=1; continue; fi  # and NAME:path
    if ((glue)); then glue=0; continue; fi
    if [[ -n $_xfer_kind ]]; then _xfer_kind=""; continue; fi
    if ((_xfer_dashdash)); then _xfer_n=$((_xfer_n + 1)); continue; fi
    case $word in
      --) _xfer_dashdash=1; continue ;;
      --*=*) continue ;;
      -*) if _xfer_value "$_xfer_cmd" "$word"; then _xfer_kind=$REPLY; fi; continue ;;
    esac
    if ((_xfer_n == 0)) && _xfer_enter "$_xfer_cmd" "$word"; then
      _xfer_cmd=$REPLY
    else
      _xfer_n=$((_xfer_n + 1))
    fi
  done
}

# Remote names (NAME:path) and job ids, asked of xfer itself.
_xfer_remotes() {
  local name rest
  command xfer remote list </dev/null 2>/dev/null | while read -r name rest; do
    printf '%s\n' "$name"
  done
}
_xfer_jobs() {
  local id rest
  command xfer jobs </dev/null 2>/dev/null | while read -r id rest; do
    [[ $id == ID ]] || printf '%s\n' "$id"
  done
}

)sh";

constexpr std::string_view kBashMain = R"sh(_xfer() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} REPLY
  local _xfer_cmd _xfer_n _xfer_kind _xfer_dashdash
  local -a _xfer_words=("${COMP_WORDS[@]}")
  COMPREPLY=()
  [[ $cur == "=" ]] && cur=""
  # A remote's path (NAME:path): not listed.
  [[ $cur == ":" || $prev == ":" ]] && return 0
  _xfer_walk 1 "$COMP_CWORD"
  if [[ -n $_xfer_kind ]]; then
    _xfer_complete "$_xfer_kind"
    return 0
  fi
  if [[ $cur == -* && $_xfer_dashdash == 0 ]]; then
    _xfer_flags "$_xfer_cmd" && mapfile -t COMPREPLY < <(compgen -W "$REPLY" -- "$cur")
    return 0
  fi
  local -a commands=()
  if ((_xfer_n == 0 && _xfer_dashdash == 0)) && _xfer_subcommands "$_xfer_cmd"; then
    mapfile -t commands < <(compgen -W "$REPLY" -- "$cur")
  fi
  if _xfer_operand "$_xfer_cmd" "$_xfer_n"; then _xfer_complete "$REPLY"; fi
  COMPREPLY=("${commands[@]}" "${COMPREPLY[@]}")
  return 0
}

# Fills COMPREPLY for the kind of value $1 (see _xfer_value).
_xfer_complete() {
  case $1 in
    files) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
    dirs) compopt -o filenames 2>/dev/null; mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
    paths)
      local -a remotes=()
      if [[ $cur != */* ]]; then
        local name
        while read -r name; do
          [[ $name == "$cur"* ]] && remotes+=("$name:")
        done < <(_xfer_remotes)
      fi
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      if ((${#remotes[@]} == 0)); then
        compopt -o filenames 2>/dev/null
      else
        # Not -o filenames, which would print NAME\: ; folders get their
        # slash here, and nothing is appended after NAME: or a folder.
        local i
        for i in "${!COMPREPLY[@]}"; do
          [[ -d ${COMPREPLY[i]} ]] && COMPREPLY[i]+=/
        done
        COMPREPLY+=("${remotes[@]}")
        compopt -o nospace 2>/dev/null
      fi
      ;;
    remotes) mapfile -t COMPREPLY < <(compgen -W "$(_xfer_remotes)" -- "$cur") ;;
    jobs) mapfile -t COMPREPLY < <(compgen -W "$(_xfer_jobs)" -- "$cur") ;;
    words:*) mapfile -t COMPREPLY < <(compgen -W "${1#words:}" -- "$cur") ;;
  esac
}

complete -F _xfer xfer
)sh";

constexpr std::string_view kZshMain = R"sh(_xfer() {
  local cur=${words[CURRENT]} REPLY
  local _xfer_cmd _xfer_n _xfer_kind _xfer_dashdash
  local -a reply _xfer_words
  _xfer_words=("${words[@]}")
  _xfer_walk 2 $CURRENT
  if [[ -n $_xfer_kind ]]; then
    _xfer_complete "$_xfer_kind"
    return
  fi
  if [[ $cur == --*=* && $_xfer_dashdash == 0 ]]; then
    if _xfer_value "$_xfer_cmd" "${cur%%=*}"; then
      compset -P '*='
      _xfer_complete "$REPLY"
    fi
    return
  fi
  if [[ $cur == -* && $_xfer_dashdash == 0 ]]; then
    _xfer_flag_help "$_xfer_cmd" && _describe -t options option reply
    return
  fi
  local ret=1
  if ((_xfer_n == 0 && _xfer_dashdash == 0)) && _xfer_subcommand_help "$_xfer_cmd"; then
    _describe -t commands command reply && ret=0
  fi
  if _xfer_operand "$_xfer_cmd" "$_xfer_n"; then _xfer_complete "$REPLY" && ret=0; fi
  return ret
}

_xfer_complete() {
  case $1 in
    files) _files ;;
    dirs) _files -/ ;;
    paths)
      [[ ${words[CURRENT]} == *:* ]] && return 1  # a remote's path: not listed
      local -a remotes
      remotes=(${(f)"$(_xfer_remotes)"})
      compadd -S: -Q -- ${remotes}
      _files
      ;;
    remotes) local -a remotes; remotes=(${(f)"$(_xfer_remotes)"}); compadd -- ${remotes} ;;
    jobs) local -a ids; ids=(${(f)"$(_xfer_jobs)"}); compadd -- ${ids} ;;
    words:*) compadd -- ${=1#words:} ;;
    *) return 1 ;;
  esac
}

if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then
  _xfer "$@"
else
  compdef _xfer xfer
fi
)sh";

// ---------------------------------------------------------------- fish

constexpr std::string_view kFishHead =
    R"sh(# The command the words before the cursor reach (__xfer_cmd), its operands
# so far (__xfer_n), computed once per command line.
function __xfer_state
    set -l line (commandline -pc)
    test "$line" = "$__xfer_line"; and return 0
    set -g __xfer_line $line
    set -g __xfer_cmd xfer
    set -g __xfer_n 0
    set -l pending 0
    set -l dashdash 0
    for word in (commandline -opc)[2..-1]
        if test $pending = 1
            set pending 0
        else if test $dashdash = 1
            set __xfer_n (math $__xfer_n + 1)
        else if test "x$word" = x--
            set dashdash 1
        else if string match -q -- '--*=*' $word
        else if string match -q -- '-*' $word
            __xfer_takes_value $__xfer_cmd $word; and set pending 1
        else if test $__xfer_n = 0; and set -l next (__xfer_enter $__xfer_cmd $word)
            set __xfer_cmd $next
        else
            set __xfer_n (math $__xfer_n + 1)
        end
    end
end

# __xfer_at CMD [N|N+]: the cursor is in command CMD (at operand N, or N on).
function __xfer_at
    __xfer_state
    test "$__xfer_cmd" = "$argv[1]"; or return 1
    set -q argv[2]; or return 0
    if string match -q -- '*+' $argv[2]
        test $__xfer_n -ge (string trim -r -c + -- $argv[2])
    else
        test $__xfer_n -eq $argv[2]
    end
end

function __xfer_remotes
    command xfer remote list </dev/null 2>/dev/null | string replace -r '\s.*' ''
end
function __xfer_jobs
    command xfer jobs </dev/null 2>/dev/null | string replace -r '\s.*' '' | string match -v ID
end

complete -c xfer -f
)sh";

std::string fish_flag(const DocFlag& f, const std::string& condition) {
  std::string line = "complete -c xfer -n " + sq(condition);
  for (const std::string& n : f.names) {
    if (n.starts_with("--")) {
      line += " -l " + n.substr(2);
    } else if (n.size() == 2) {
      line += " -s " + n.substr(1);
    } else {
      line += " -o " + n.substr(1);
    }
  }
  if (!f.value.empty()) {
    const Kind kind = flag_kind(f);
    if (kind == "files" || kind == "dirs") {
      line += " -r -F";
    } else if (kind.starts_with("words:")) {
      line += " -x -a " + sq(kind.substr(6));
    } else {
      line += " -x";
    }
  }
  return line + " -d " + sq(first_line(f.help)) + "\n";
}

std::string fish_script(const DocCommand& root) {
  std::string enter, takes_value, rules;
  for (const DocCommand* cmd : all_commands(root)) {
    const std::string key = cmd->name();
    for (const DocCommand& sub : cmd->subcommands) {
      std::vector<std::string> names = {sub.path.back()};
      names.insert(names.end(), sub.aliases.begin(), sub.aliases.end());
      for (const std::string& n : names) {
        enter += fmt::format("        case {}\n            echo {}\n", sq(key + "/" + n),
                             sq(sub.name()));
        rules +=
            fmt::format("complete -c xfer -n {} -a {} -d {}\n",
                        sq(fmt::format("__xfer_at '{}' 0", key)), sq(n), sq(first_line(sub.help)));
      }
    }
    const std::string in_cmd = fmt::format("__xfer_at '{}'", key);
    for (const DocFlag* f : flags_of(*cmd)) {
      rules += fish_flag(*f, in_cmd);
      for (const std::string& n : f->names) {
        if (!f->value.empty()) takes_value += " " + sq(key + "/" + n);
      }
    }
    for (std::size_t i = 0; i < cmd->operands.size(); ++i) {
      const DocOperand& op = cmd->operands[i];
      const std::string at = fmt::format("__xfer_at '{}' {}{}", key, i, op.repeats ? "+" : "");
      const Kind kind = operand_kind(*cmd, op);
      std::string what;
      if (kind == "paths") {
        what = "-F -a '(__xfer_remotes | string replace -r \\'$\\' :)'";
      } else if (kind == "remotes") {
        what = "-a '(__xfer_remotes)'";
      } else if (kind == "jobs") {
        what = "-a '(__xfer_jobs)'";
      } else if (kind.starts_with("words:")) {
        what = "-a " + sq(kind.substr(6));
      } else {
        continue;
      }
      rules += fmt::format("complete -c xfer -n {} {}\n", sq(at), what);
    }
  }
  std::string out;
  out += "function __xfer_enter\n    switch \"$argv[1]/$argv[2]\"\n" + enter;
  out += "        case '*'\n            return 1\n    end\nend\n\n";
  out += "function __xfer_takes_value\n    contains -- \"$argv[1]/$argv[2]\"" + takes_value +
         "\nend\n\n";
  out += std::string(kFishHead) + "\n" + rules;
  return out;
}

// ---------------------------------------------------------------- the scripts

std::string completion_script(const DocCommand& root, std::string_view shell) {
  const std::string p = root.name();
  const std::string head = fmt::format(
      "# {} completion for {}: made by `{} completion {}` from its command-line parser.\n", shell,
      p, p, shell);
  if (shell == "bash") {
    return head +
           fmt::format(
               "# Install: {0} completion bash > ~/.local/share/bash-completion/completions/{0}\n"
               "# (the package installs it for everyone), or: source <({0} completion bash)\n\n",
               p) +
           shell_tables(root, false) + std::string(kWalk) + std::string(kBashMain);
  }
  if (shell == "zsh") {
    return fmt::format("#compdef {}\n", p) + head +
           fmt::format(
               "# Install: {0} completion zsh > \"${{fpath[1]}}/_{0}\" (the package installs it "
               "for everyone),\n# or after compinit: source <({0} completion zsh)\n\n",
               p) +
           shell_tables(root, true) + std::string(kWalk) + std::string(kZshMain);
  }
  return head +
         fmt::format(
             "# Install: {0} completion fish > ~/.config/fish/completions/{0}.fish\n"
             "# (the package installs it for everyone)\n\n",
             p) +
         fish_script(root);
}

ManInfo xfer_man_info() {
  ManInfo info;
  info.program = "xfer";
  info.version = "xfer " XFER_VERSION;
  info.summary = "fast, verifiable file transfer";
  info.description =
      "xfer copies files and trees between local folders and xfer servers (xferd) over "
      "parallel streams, verifies what it wrote, and resumes an interrupted copy from where it "
      "stopped. A source or destination is a path, a URL (file://, xfer://host:port/path) or "
      "NAME:path for a remote configured with xfer remote add.\n\n"
      "Sizes and rates take units (K, M, G, T; 800Mbit); a bare --bwlimit number is KiB/s, as "
      "in rsync and rclone. The full guide is docs/cli.md in the source.";
  info.sections.push_back({"Exit status", kExitCodesHelp, {}});
  info.sections.push_back(
      {"Environment",
       "",
       {{"XFER_CONFIG", "The config file (default ~/.config/xfer/config.toml)."},
        {"XFER_CREDENTIALS",
         "Remotes and tokens (default ~/.config/xfer/credentials.toml, mode 0600)."},
        {"XFER_TOKEN", "Bearer token for xfer:// servers when --token is not given."},
        {"XFER_PASSPHRASE", "Passphrase of sealed secrets in credentials.toml."},
        {"XFER_STATE_DIR", "Job state: journals and records (default ~/.local/state/xfer)."}}});
  info.sections.push_back(
      {"Files",
       "",
       {{"~/.config/xfer/config.toml", "Defaults for the transfer options ([transfer] keys)."},
        {"~/.config/xfer/credentials.toml", "Named remotes and their secrets."},
        {"~/.local/state/xfer/jobs/", "One folder per resumable job (xfer jobs)."}}});
  info.sections.push_back({"See also", "xferd(1), rsync(1), rclone(1)", {}});
  return info;
}

}  // namespace

void register_completion(CLI::App& app) {
  auto shell = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "completion", "Print a completion script: bash, zsh or fish (installed by the package)");
  cmd->add_option("shell", *shell, "bash, zsh or fish")->required();
  cmd->callback([&app, shell] {
    if (*shell != "bash" && *shell != "zsh" && *shell != "fish") {
      print_error(fmt::format("unknown shell '{}': the shells are {}", *shell, kShells));
      context().exit_code = kExitUsage;
      return;
    }
    write_out(completion_script(describe_cli(app, "xfer"), *shell), true);
  });
  add_man_flag(app, xfer_man_info());
}

}  // namespace xfer::cli
