// Shell completion, man pages and the .deb (issue 11, "Also expected by
// users of such tools"), through the real binaries: the scripts that
// `xfer completion SHELL` prints, run in bash, zsh and fish; the man pages
// the build made, checked against every flag `--help` lists and the option
// table, and rendered by man; the .deb that cpack makes from this build
// tree, unpacked by dpkg into a fresh root where `xfer --version` runs.
// Compile-time paths: XFER_SOURCE_DIR, XFER_BUILD_DIR, XFERD_PATH.

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;

const fs::path kSource = XFER_SOURCE_DIR;
const fs::path kBuild = XFER_BUILD_DIR;
const fs::path kGenerated = kBuild / "generated";

// A program on PATH, "" when there is none.
std::string which(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const fs::path p = fs::path(dir) / program;
    if (!dir.empty() && ::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return {};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : " ") + s;
  return out;
}

// A flag as roff spells it in the page: "\-\-recursive".
std::string roff_flag(const std::string& flag) {
  std::string out;
  for (char c : flag) out += c == '-' ? std::string("\\-") : std::string(1, c);
  return out;
}

// ---------------------------------------------------------------- --help

// One command as its --help shows it: the words that reach it and its flags.
struct HelpCommand {
  std::vector<std::string> words;  // {"jobs", "rm"}
  std::vector<std::string> flags;  // {"-h", "--help", "--failed", ...}
};

// Walks a program's --help and its commands' --help (CLI11's layout:
// option lines start "  -", a "Subcommands:" section names the commands).
void walk_help(const std::string& bin, const std::vector<std::string>& words,
               std::vector<HelpCommand>& out) {
  std::vector<std::string> argv = {bin};
  argv.insert(argv.end(), words.begin(), words.end());
  argv.push_back("--help");
  const RunResult r = run(argv, 30s);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  HelpCommand cmd;
  cmd.words = words;
  bool in_subcommands = false;
  std::vector<std::string> subs;
  for (const std::string& line : lines_of(r.out)) {
    if (!line.empty() && line[0] != ' ') in_subcommands = line.starts_with("Subcommands:");
    if (line.size() < 3 || line[0] != ' ' || line[1] != ' ' || line[2] == ' ') continue;
    const std::string first = line.substr(2, line.find(' ', 2) - 2);
    if (first.starts_with("-")) {
      std::stringstream names(first);
      std::string n;
      while (std::getline(names, n, ',')) cmd.flags.push_back(n);
    } else if (in_subcommands) {
      subs.push_back(first.substr(0, first.find(',')));
    }
  }
  out.push_back(cmd);
  for (const std::string& s : subs) {
    std::vector<std::string> next = words;
    next.push_back(s);
    walk_help(bin, next, out);
  }
}

std::vector<HelpCommand> help_commands(const std::string& bin) {
  std::vector<HelpCommand> out;
  walk_help(bin, {}, out);
  return out;
}

// ---------------------------------------------------------------- fixture

class Completion : public XferTest {
 protected:
  void SetUp() override {
    XferTest::SetUp();
    if (HasFatalFailure()) return;
    // A remote for the scripts to offer, in this test's credentials file.
    ::setenv("XFER_CREDENTIALS", (tmp() / "credentials.toml").c_str(), 1);
    ::setenv("XFER_CONFIG", (tmp() / "no-config.toml").c_str(), 1);
    const RunResult add = run_xfer({"remote", "add", "lab", "xfer", "host=127.0.0.1"});
    ASSERT_EQ(add.exit_code, 0) << add.describe();
    work_ = tmp() / "work";
    fs::create_directories(work_ / "adir");
    write_file(work_ / "afile", "x");
    script_ = tmp() / "xfer.completion";
  }
  void TearDown() override {
    ::unsetenv("XFER_CREDENTIALS");
    ::unsetenv("XFER_CONFIG");
    XferTest::TearDown();
  }

  // Writes `xfer completion SHELL` to script_.
  void make_script(const std::string& shell) {
    const RunResult r = run_xfer({"completion", shell});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    ASSERT_FALSE(r.out.empty());
    write_file(script_, r.out);
  }

  // PATH with xfer first: the scripts ask `xfer remote list`.
  std::string path_env() const {
    const char* path = std::getenv("PATH");
    return "PATH=" + fs::path(xfer_bin()).parent_path().string() + ":" + (path ? path : "");
  }

  // What bash's completion function offers for `words` (the last one is the
  // word under the cursor), sorted.
  std::vector<std::string> bash_complete(const std::vector<std::string>& words) {
    const fs::path driver = tmp() / "bash-driver.sh";
    write_file(driver,
               "source \"$1\"; shift\n"
               "COMP_WORDS=(\"$@\"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
               "COMP_LINE=\"$*\"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()\n"
               "_xfer\n"
               "printf '%s\\n' \"${COMPREPLY[@]}\" | sort\n");
    std::vector<std::string> out;
    for (const std::string& l : run_driver("bash", driver, words)) {
      if (!l.empty()) out.push_back(l);
    }
    return out;
  }

  // `SHELL driver script_ words...` in work_, with xfer on PATH: the lines
  // it prints (it must not fail nor complain).
  std::vector<std::string> run_driver(const std::string& shell, const fs::path& driver,
                                      const std::vector<std::string>& words) {
    std::vector<std::string> argv = {"env", path_env(), shell, driver.string(), script_.string()};
    argv.insert(argv.end(), words.begin(), words.end());
    const RunResult r = run(argv, 30s, {}, work_.string());
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_EQ(r.err, "") << r.describe();
    return lines_of(r.out);
  }

  fs::path work_;    // the folder completions run in: afile, adir/
  fs::path script_;  // the script under test
};

// ---------------------------------------------------------------- bash

TEST_F(Completion, BashScriptIsValidAndRegistersItself) {
  make_script("bash");
  const RunResult syntax = run({"bash", "-n", script_.string()});
  EXPECT_EQ(syntax.exit_code, 0) << syntax.describe();
  EXPECT_EQ(syntax.err, "");
  const RunResult reg =
      run({"bash", "-c", "source \"$1\" && complete -p xfer", "bash", script_.string()});
  EXPECT_EQ(reg.exit_code, 0) << reg.describe();
  EXPECT_EQ(reg.out, "complete -F _xfer xfer\n");
  // The build's copy (the one installed) is what the binary prints.
  EXPECT_EQ(read_file(kGenerated / "xfer.bash"), read_file(script_))
      << "build/generated/xfer.bash is stale: rebuild (target xfer_docs)";
}

TEST_F(Completion, BashCompletesCommandsFlagsValuesAndRemotes) {
  make_script("bash");
  using V = std::vector<std::string>;
  // Commands and aliases from the prefix; nested commands.
  EXPECT_EQ(bash_complete({"xfer", "c"}), (V{"completion", "cp", "credentials"}));
  EXPECT_EQ(bash_complete({"xfer", "jobs", ""}), (V{"rm"}));
  EXPECT_EQ(bash_complete({"xfer", "remote", "re"}), (V{"remove"}));
  // A command's flags, and the global ones it takes too (fallthrough).
  EXPECT_EQ(bash_complete({"xfer", "cp", "--rec"}), (V{"--recursive"}));
  EXPECT_EQ(bash_complete({"xfer", "cp", "-r", "afile", "--str"}),
            (V{"--streams", "--streams-max"}));
  EXPECT_EQ(bash_complete({"xfer", "jobs", "rm", "--f"}), (V{"--failed"}));
  EXPECT_EQ(bash_complete({"xfer", "jobs", "rm", "--cl"}), (V{"--clean"}))
      << "a flag of the command above is taken (fallthrough)";
  EXPECT_EQ(bash_complete({"xfer", "jobs", "rm", "--verb"}), (V{}))
      << "a flag of another command is not";
  // Flag values: words, files, nothing for a number; --flag=value.
  EXPECT_EQ(bash_complete({"xfer", "--log-level", "d"}), (V{"debug"}));
  EXPECT_EQ(bash_complete({"xfer", "--config", "af"}), (V{"afile"}));
  EXPECT_EQ(bash_complete({"xfer", "--config", "=", "af"}), (V{"afile"}));
  EXPECT_EQ(bash_complete({"xfer", "cp", "--workers", ""}), (V{}));
  // Operands: files and remote names (NAME:) for paths, remote names,
  // a remote's type, the shells.
  EXPECT_EQ(bash_complete({"xfer", "cp", ""}), (V{"adir/", "afile", "lab:"}));
  EXPECT_EQ(bash_complete({"xfer", "cp", "ad"}), (V{"adir"}));  // readline adds the slash
  EXPECT_EQ(bash_complete({"xfer", "cp", "--streams", "4", "afile", "l"}), (V{"lab:"}));
  EXPECT_EQ(bash_complete({"xfer", "remote", "show", ""}), (V{"lab"}));
  EXPECT_EQ(bash_complete({"xfer", "remote", "add", "new", "s"}), (V{"s3", "sftp"}));
  EXPECT_EQ(bash_complete({"xfer", "completion", ""}), (V{"bash", "fish", "zsh"}));
  // Past "--" a word with a dash is an operand.
  EXPECT_EQ(bash_complete({"xfer", "rm", "--", "-"}), (V{}));
}

TEST_F(Completion, BashOffersEveryFlagOfEveryCommand) {
  make_script("bash");
  const std::vector<HelpCommand> commands = help_commands(xfer_bin());
  ASSERT_GE(commands.size(), 15u);
  for (const HelpCommand& cmd : commands) {
    std::vector<std::string> words = {"xfer"};
    words.insert(words.end(), cmd.words.begin(), cmd.words.end());
    words.push_back("-");
    const std::vector<std::string> offered = bash_complete(words);
    for (const std::string& flag : cmd.flags) {
      EXPECT_TRUE(has(offered, flag)) << "xfer " << joined(cmd.words) << " " << flag
                                      << " is not offered; offered: " << joined(offered);
    }
  }
}

// ---------------------------------------------------------------- zsh, fish

// zsh: the script parses, and its function, run with zsh's completion
// builtins replaced by ones that print what they are given (driving the
// real completion system needs a terminal), offers what bash offers.
TEST_F(Completion, ZshScriptParsesAndCompletes) {
  if (which("zsh").empty()) GTEST_SKIP() << "zsh is not installed (scripts/setup.sh installs it)";
  make_script("zsh");
  const RunResult syntax = run({"zsh", "-n", script_.string()});
  EXPECT_EQ(syntax.exit_code, 0) << syntax.describe();
  EXPECT_TRUE(read_file(script_).starts_with("#compdef xfer\n"));
  const fs::path driver = tmp() / "zsh-driver.zsh";
  write_file(
      driver,
      "compdef() { print -r -- \"compdef $*\" }\n"
      "_describe() { print -rl -- \"${(@P)${@[-1]}}\" }\n"
      "compadd() { local a; for a in \"$@\"; do [[ $a == -* ]] || print -r -- \"$a\"; done }\n"
      "_files() { print -r -- \"<files $*>\" }\n"
      "compset() { : }\n"
      "source \"$1\"; shift\n"
      "words=(\"$@\"); CURRENT=$#words\n"
      "_xfer\n");
  auto complete = [&](std::vector<std::string> words) {
    std::vector<std::string> out;
    for (const std::string& l : run_driver("zsh", driver, words)) {
      if (!l.starts_with("compdef ")) out.push_back(l.substr(0, l.find(':')));
    }
    return out;
  };
  const auto top = complete({"xfer", "c"});
  EXPECT_TRUE(has(top, "cp") && has(top, "completion") && has(top, "credentials")) << joined(top);
  const auto flags = complete({"xfer", "cp", "--rec"});
  EXPECT_TRUE(has(flags, "--recursive") && has(flags, "--streams")) << joined(flags);
  EXPECT_EQ(complete({"xfer", "jobs", ""}), (std::vector<std::string>{"rm"}));
  EXPECT_EQ(complete({"xfer", "cp", ""}), (std::vector<std::string>{"lab", "<files >"}));
  EXPECT_EQ(complete({"xfer", "remote", "show", ""}), (std::vector<std::string>{"lab"}));
  EXPECT_EQ(complete({"xfer", "--config=af"}), (std::vector<std::string>{"<files >"}));
  EXPECT_TRUE(has(complete({"xfer", "--log-level", ""}), "debug"));
}

// fish: the script parses, and fish's own `complete -C` answers from it.
TEST_F(Completion, FishScriptParsesAndCompletes) {
  if (which("fish").empty()) GTEST_SKIP() << "fish is not installed (scripts/setup.sh installs it)";
  make_script("fish");
  const fs::path home = tmp() / "home";
  fs::create_directories(home);
  const std::string env_home = "HOME=" + home.string();
  const RunResult syntax = run({"env", env_home, "fish", "-n", script_.string()});
  EXPECT_EQ(syntax.exit_code, 0) << syntax.describe();
  auto complete = [&](const std::string& line) {
    const RunResult r =
        run({"env", env_home, "XDG_CONFIG_HOME=" + (home / "config").string(),
             "XDG_DATA_HOME=" + (home / "data").string(), path_env(), "XFER_LINE=" + line, "fish",
             "--no-config", "-c", "source $argv[1]; complete -C \"$XFER_LINE\"", script_.string()},
            30s, {}, work_.string());
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    std::vector<std::string> out;
    for (const std::string& l : lines_of(r.out)) out.push_back(l.substr(0, l.find('\t')));
    std::sort(out.begin(), out.end());
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(complete("xfer c"), (V{"completion", "cp", "credentials"}));
  EXPECT_EQ(complete("xfer jobs "), (V{"rm"}));
  EXPECT_EQ(complete("xfer cp --rec"), (V{"--recursive"}));
  EXPECT_EQ(complete("xfer cp -r afile --str"), (V{"--streams", "--streams-max"}));
  EXPECT_EQ(complete("xfer --log-level d"), (V{"debug"}));
  EXPECT_EQ(complete("xfer cp "), (V{"adir/", "afile", "lab:"}));
  EXPECT_EQ(complete("xfer remote show "), (V{"lab"}));
  EXPECT_EQ(complete("xfer completion "), (V{"bash", "fish", "zsh"}));
  EXPECT_EQ(complete("xfer cp --workers "), (V{}));
}

TEST_F(Completion, UnknownShellIsAUsageErrorNamingTheShells) {
  const RunResult r = run_xfer({"completion", "tcsh"});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("tcsh"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("bash, zsh and fish"), std::string::npos) << r.err;
  const RunResult none = run_xfer({"completion"});
  EXPECT_EQ(none.exit_code, 2) << none.describe();
}

// ---------------------------------------------------------------- man pages

class ManPage : public XferTest {};

// Every flag that --help lists for each command is in the page; the
// build's page is what the binary prints now.
void expect_every_flag_in_page(const std::string& bin, const fs::path& page) {
  const RunResult now = run({bin, "--help-man"}, 30s);
  ASSERT_EQ(now.exit_code, 0) << now.describe();
  const std::string text = read_file(page);
  EXPECT_EQ(text, now.out) << page << " is stale: rebuild (target xfer_docs)";
  std::size_t flags = 0;
  for (const HelpCommand& cmd : help_commands(bin)) {
    if (!cmd.words.empty()) {
      EXPECT_NE(text.find(".SS \"" + fs::path(bin).filename().string() + " " + joined(cmd.words)),
                std::string::npos)
          << "no section for command " << joined(cmd.words);
    }
    for (const std::string& flag : cmd.flags) {
      ++flags;
      EXPECT_NE(text.find("\\fB" + roff_flag(flag) + "\\fR"), std::string::npos)
          << joined(cmd.words) << " " << flag << " is not in " << page;
    }
  }
  EXPECT_GE(flags, 5u);
}

TEST_F(ManPage, XferPageHasEveryFlagOfEveryCommand) {
  expect_every_flag_in_page(xfer_bin(), kGenerated / "xfer.1");
}

TEST_F(ManPage, XferdPageHasEveryFlagOfEveryCommand) {
  expect_every_flag_in_page(XFERD_PATH, kGenerated / "xferd.1");
}

// The transfer options come from include/xfer/engine/options.inc: every
// one the command line takes (kCli, kGlobal) is in the page with its
// extra names.
TEST_F(ManPage, XferPageHasEveryOptionOfTheOptionTable) {
  const std::string page = read_file(kGenerated / "xfer.1");
  std::string table = read_file(kSource / "include/xfer/engine/options.inc");
  table.resize(std::min(table.size(), table.find("\n#if")));  // options of test builds only
  std::size_t seen = 0;
  std::size_t at = 0;
  while ((at = table.find("\nXFER_OPTION(", at)) != std::string::npos) {
    at += 13;
    const std::string decl = table.substr(at, table.find("\n", table.find("\")", at)) - at);
    const std::string name = decl.substr(0, decl.find(','));
    if (decl.find("kCli") == std::string::npos && decl.find("kGlobal") == std::string::npos) {
      continue;
    }
    ++seen;
    std::string flag = "--" + name;
    std::replace(flag.begin(), flag.end(), '_', '-');
    EXPECT_NE(page.find("\\fB" + roff_flag(flag) + "\\fR"), std::string::npos) << flag;
    // The extra names: the quoted field just before the help text.
    const std::size_t names_end = decl.rfind("\",");
    const std::size_t help_start = decl.rfind(", \"", names_end);
    if (names_end != std::string::npos && help_start != std::string::npos) {
      std::stringstream extra(decl.substr(help_start + 3, names_end - help_start - 3));
      std::string n;
      while (std::getline(extra, n, ',')) {
        if (n.starts_with("-")) {
          EXPECT_NE(page.find("\\fB" + roff_flag(n) + "\\fR"), std::string::npos) << n;
        }
      }
    }
  }
  EXPECT_GE(seen, 20u) << "options.inc's layout changed: this test no longer reads it";
}

// man renders both pages without a warning (lintian's check), or groff
// where man is missing.
TEST_F(ManPage, PagesRenderWithoutWarnings) {
  for (const char* page : {"xfer.1", "xferd.1"}) {
    const std::string file = (kGenerated / page).string();
    RunResult r;
    if (!which("man").empty()) {
      r = run({"env", "LC_ALL=C.UTF-8", "MANROFFSEQ=", "MANWIDTH=80", "man", "--warnings", "-E",
               "UTF-8", "-l", "-Tutf8", "-Z", file});
    } else if (!which("groff").empty()) {
      r = run({"groff", "-man", "-ww", "-z", "-Tutf8", file});
    } else {
      GTEST_SKIP() << "neither man nor groff is installed (scripts/setup.sh installs man-db)";
    }
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_EQ(r.err, "") << page << ": " << r.describe();
  }
  if (!which("man").empty()) {
    const RunResult text =
        run({"env", "MANWIDTH=100", "man", "-l", (kGenerated / "xfer.1").string()});
    EXPECT_NE(text.out.find("xfer completion"), std::string::npos) << text.describe();
  }
}

// ---------------------------------------------------------------- the .deb

class DebPackage : public XferTest {};

// cpack makes the .deb from this build tree; dpkg unpacks it into an empty
// root (its own database there, nothing of the machine's touched; --unpack
// runs no maintainer script, as they would run chrooted into a root that
// has no shell); the programs run from it.
TEST_F(DebPackage, InstallsIntoAFreshRootAndRuns) {
  for (const char* tool : {"cpack", "dpkg", "dpkg-deb"}) {
    ASSERT_FALSE(which(tool).empty()) << tool << " is missing (scripts/setup.sh installs it)";
  }
  const fs::path out = tmp() / "out";
  const RunResult pack =
      run({"cpack", "--config", (kBuild / "CPackConfig.cmake").string(), "-B", out.string()}, 240s);
  ASSERT_EQ(pack.exit_code, 0) << pack.describe();
  const fs::path deb = out / ("xfer_" XFER_VERSION "_" + [] {
                         const RunResult a = run({"dpkg", "--print-architecture"});
                         return a.out.substr(0, a.out.find('\n'));
                       }() + ".deb");
  ASSERT_TRUE(fs::exists(deb)) << deb << "\n" << pack.describe();
  RecordProperty("deb_bytes", std::to_string(fs::file_size(deb)));

  // The control fields.
  const RunResult fields =
      run({"dpkg-deb", "-f", deb.string(), "Package", "Version", "Maintainer", "Depends"});
  ASSERT_EQ(fields.exit_code, 0) << fields.describe();
  EXPECT_NE(fields.out.find("Package: xfer\n"), std::string::npos) << fields.out;
  EXPECT_NE(fields.out.find("Version: " XFER_VERSION "\n"), std::string::npos) << fields.out;
  EXPECT_NE(fields.out.find("Maintainer: "), std::string::npos) << fields.out;
  // Computed by dpkg-shlibdeps from the binaries.
  EXPECT_NE(fields.out.find("libc6 (>="), std::string::npos) << fields.out;
  EXPECT_NE(fields.out.find("libgrpc++"), std::string::npos) << fields.out;

  // What it holds.
  const RunResult contents = run({"dpkg-deb", "-c", deb.string()});
  ASSERT_EQ(contents.exit_code, 0) << contents.describe();
  const std::vector<std::string> files = {
      "./usr/bin/xfer",
      "./usr/bin/xferd",
      "./usr/share/man/man1/xfer.1.gz",
      "./usr/share/man/man1/xferd.1.gz",
      "./usr/share/bash-completion/completions/xfer",
      "./usr/share/zsh/vendor-completions/_xfer",
      "./usr/share/fish/vendor_completions.d/xfer.fish",
      "./usr/lib/systemd/system/xferd.service",
  };
  for (const std::string& f : files) {
    EXPECT_NE(contents.out.find(" " + f + "\n"), std::string::npos) << f << "\n" << contents.out;
  }
  EXPECT_EQ(contents.out.find("/usr/local"), std::string::npos) << contents.out;

  // The postinst (creates the xferd user) is a valid shell script.
  const fs::path control = tmp() / "control";
  ASSERT_EQ(run({"dpkg-deb", "-e", deb.string(), control.string()}).exit_code, 0);
  ASSERT_TRUE(fs::exists(control / "postinst"));
  EXPECT_EQ(get_mode(control / "postinst") & 0111, 0111u);
  EXPECT_EQ(run({"sh", "-n", (control / "postinst").string()}).exit_code, 0);

  // Into a fresh root.
  const fs::path root = tmp() / "root";
  for (const char* d : {"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"}) {
    fs::create_directories(root / d);
  }
  write_file(root / "var/lib/dpkg/status", "");
  const RunResult unpack = run({"dpkg", "--root=" + root.string(), "--force-not-root",
                                "--log=/dev/null", "--unpack", deb.string()});
  ASSERT_EQ(unpack.exit_code, 0) << unpack.describe();
  const RunResult status = run({"dpkg", "--root=" + root.string(), "-s", "xfer"});
  EXPECT_NE(status.out.find("Version: " XFER_VERSION), std::string::npos) << status.describe();
  for (const std::string& f : files) {
    EXPECT_TRUE(fs::exists(root / f.substr(2))) << f;
  }

  const RunResult version = run({(root / "usr/bin/xfer").string(), "--version"});
  EXPECT_EQ(version.exit_code, 0) << version.describe();
  EXPECT_EQ(version.out, "xfer " XFER_VERSION "\n");
  const RunResult dversion = run({(root / "usr/bin/xferd").string(), "--version"});
  EXPECT_EQ(dversion.exit_code, 0) << dversion.describe();
  EXPECT_EQ(dversion.out, "xferd " XFER_VERSION "\n");

  // The unit is docs/server.md's, ExecStart at /usr/bin; the completion
  // registers itself; man reads the compressed page.
  EXPECT_EQ(read_file(root / "usr/lib/systemd/system/xferd.service"),
            read_file(kSource / "packaging/xferd.service"));
  const RunResult reg = run({"bash", "-c", "source \"$1\" && complete -p xfer", "bash",
                             (root / "usr/share/bash-completion/completions/xfer").string()});
  EXPECT_EQ(reg.out, "complete -F _xfer xfer\n") << reg.describe();
  if (!which("man").empty()) {
    const RunResult man = run(
        {"env", "MANWIDTH=100", "man", "-l", (root / "usr/share/man/man1/xferd.1.gz").string()});
    EXPECT_EQ(man.exit_code, 0) << man.describe();
    EXPECT_NE(man.out.find("xferd token"), std::string::npos) << man.describe();
  }
}

// docs/server.md shows the unit the package installs, to the byte.
TEST(DebPackageDocs, ServerDocShowsTheInstalledUnit) {
  const std::string doc = read_file(kSource / "docs/server.md");
  const std::string unit = read_file(kSource / "packaging/xferd.service");
  const std::size_t section = doc.find("### A hardened service");
  ASSERT_NE(section, std::string::npos);
  const std::size_t start = doc.find("```ini\n", section);
  ASSERT_NE(start, std::string::npos);
  const std::size_t end = doc.find("```\n", start + 7);
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(doc.substr(start + 7, end - start - 7), unit)
      << "docs/server.md's unit and packaging/xferd.service differ";
}

}  // namespace
}  // namespace xfer_it
