// FilterSet and wildmatch (include/xfer/engine/filter.hpp): the pattern
// rules by example, the parsers' errors and bounds, and rsync itself as
// the oracle: the same rules on the same tree must keep the same paths as
// `rsync -rn` does, for hand-picked rule sets and for generated ones.

#include "xfer/engine/filter.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace xfer {
namespace {

namespace fs = std::filesystem;

TEST(Wildmatch, StarsQuestionMarksAndClasses) {
  struct Case {
    const char* pattern;
    const char* text;
    bool match;
  };
  const Case cases[] = {
      {"*.c", "a.c", true},
      {"*.c", "dir/a.c", false},
      {"**.c", "dir/a.c", true},
      {"a/*/c", "a/b/c", true},
      {"a/*/c", "a/b/x/c", false},
      {"a/**/c", "a/b/x/c", true},
      {"a/**", "a/b", true},
      {"a/**", "a", false},
      {"?", "a", true},
      {"?", "/", false},
      {"[abc]x", "bx", true},
      {"[!abc]x", "bx", false},
      {"[^abc]x", "dx", true},
      {"[a-c]", "b", true},
      {"[a-c]", "d", false},
      {"[[:digit:]]*", "7up", true},
      {"[[:alpha:]]", "7", false},
      {"\\*", "*", true},
      {"\\*", "a", false},
      {"[", "[", true},
      {"a[", "a[", true},
      {"*", "", true},
      {"", "", true},
      {"", "a", false},
      {"***", "a/b", true},
      {"a*b*c", "aXbYc", true},
      {"a*b*c", "aXbY/c", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(wildmatch(c.pattern, c.text), c.match) << c.pattern << " vs " << c.text;
  }
}

// Stars arranged to make a backtracking matcher take exponential time:
// each (pattern, text) position is tried once, so this returns at once.
TEST(Wildmatch, HostileStarsAreBoundedInTime) {
  std::string pattern;
  for (int i = 0; i < 200; ++i) pattern += "*a";
  pattern += "b";
  const std::string text(3000, 'a');
  EXPECT_FALSE(wildmatch(pattern, text));
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "**/";
  deep += "x";
  EXPECT_FALSE(wildmatch(deep, std::string(4000, '/')));
}

TEST(FilterSet, FirstMatchWinsAndNoMatchIncludes) {
  FilterSet f;
  ASSERT_TRUE(f.add(true, "keep.o", "--include").ok());
  ASSERT_TRUE(f.add(false, "*.o", "--exclude").ok());
  EXPECT_FALSE(f.excluded("keep.o", false));
  EXPECT_TRUE(f.excluded("a.o", false));
  EXPECT_TRUE(f.excluded("src/a.o", false)) << "a name pattern matches at any depth";
  EXPECT_FALSE(f.excluded("a.c", false));
}

TEST(FilterSet, AnchorsSlashesAndDirectoryOnlyRules) {
  FilterSet f;
  ASSERT_TRUE(f.add(false, "/build", "-").ok());
  ASSERT_TRUE(f.add(false, "cache/", "-").ok());
  ASSERT_TRUE(f.add(false, "doc/*.tmp", "-").ok());
  EXPECT_TRUE(f.excluded("build", true));
  EXPECT_FALSE(f.excluded("src/build", true)) << "anchored at the root only";
  EXPECT_TRUE(f.excluded("x/cache", true));
  EXPECT_FALSE(f.excluded("x/cache", false)) << "a trailing / matches directories only";
  EXPECT_TRUE(f.excluded("doc/a.tmp", false));
  EXPECT_TRUE(f.excluded("p/q/doc/a.tmp", false)) << "unanchored: the end of the path";
  EXPECT_FALSE(f.excluded("xdoc/a.tmp", false)) << "only at a component boundary";
}

TEST(FilterSet, TripleStarTakesTheDirectoryAndAllUnderIt) {
  FilterSet f;
  ASSERT_TRUE(f.add(true, "/keep/***", "+").ok());
  ASSERT_TRUE(f.add(false, "*", "-").ok());
  EXPECT_FALSE(f.excluded("keep", true));
  EXPECT_FALSE(f.excluded("keep/a/b.txt", false));
  EXPECT_TRUE(f.excluded("other", true));
  EXPECT_EQ(f.to_text(), "+ /keep/***\n- *\n");
}

TEST(FilterSet, FilterFilesParseOrSayWhichLine) {
  FilterSet f;
  ASSERT_TRUE(f.add_filter_text("# comment\n; also\n\n+ *.c\ninclude /x\n- *.o\nexclude tmp/\n",
                                "rules.txt")
                  .ok());
  EXPECT_EQ(f.to_text(), "+ *.c\n+ /x\n- *.o\n- tmp/\n");
  FilterSet again;
  ASSERT_TRUE(again.add_filter_text(f.to_text(), "round trip").ok());
  EXPECT_EQ(again.to_text(), f.to_text());

  FilterSet bad;
  auto s = bad.add_filter_text("+ a\nmerge x\n", "rules.txt");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("rules.txt:2"), std::string::npos) << s.error().message();
  auto empty = bad.add_filter_text("+ \n", "rules.txt");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message().find("empty pattern"), std::string::npos);

  FilterSet cleared;
  ASSERT_TRUE(cleared.add_filter_text("- a\n!\n- b\n", "r").ok());
  EXPECT_EQ(cleared.to_text(), "- b\n");

  FilterSet patterns;
  ASSERT_TRUE(patterns.add_pattern_text(false, "*.o\n# c\nbuild/\n", "exclude-from").ok());
  EXPECT_EQ(patterns.to_text(), "- *.o\n- build/\n");
}

// What a peer can send is bounded: the number of rules, a pattern's
// length, a NUL or a newline inside one.
TEST(FilterSet, RulesAndPatternsAreBounded) {
  std::string many;
  for (std::size_t i = 0; i <= FilterSet::kMaxRules; ++i) many += "- x\n";
  FilterSet f;
  auto s = f.add_filter_text(many, "job");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("more than"), std::string::npos) << s.error().message();
  EXPECT_LE(f.rules().size(), FilterSet::kMaxRules);
  FilterSet g;
  EXPECT_FALSE(g.add(false, std::string(FilterSet::kMaxPatternBytes + 1, 'a'), "-").ok());
  EXPECT_FALSE(g.add(false, std::string("a\0b", 3), "-").ok());
  EXPECT_FALSE(g.add(false, "a\nb", "-").ok());
  EXPECT_TRUE(g.add(false, std::string(FilterSet::kMaxPatternBytes, 'a'), "-").ok());
}

// ------------------------------------------------------------ rsync

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "xfer-filter-XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The paths under `root` the rules keep, as rsync prints them ("dir/",
// "dir/f"): a walk that does not enter an excluded directory.
std::set<std::string> kept_by_xfer(const fs::path& root, const FilterSet& f) {
  std::set<std::string> out;
  std::vector<std::string> stack{""};
  while (!stack.empty()) {
    const std::string dir = stack.back();
    stack.pop_back();
    for (const auto& e : fs::directory_iterator(root / dir)) {
      const std::string rel =
          dir.empty() ? e.path().filename().string() : dir + "/" + e.path().filename().string();
      const bool is_dir = e.is_directory();
      if (f.excluded(rel, is_dir)) continue;
      out.insert(is_dir ? rel + "/" : rel);
      if (is_dir) stack.push_back(rel);
    }
  }
  return out;
}

// What `rsync -rn` lists for the same rules (written to a --filter-from
// file, so rsync reads exactly the rules FilterSet read).
std::set<std::string> kept_by_rsync(const fs::path& root, const std::string& rules,
                                    const fs::path& work) {
  const fs::path rules_file = work / "rules.txt";
  {
    std::ofstream r(rules_file);
    r << rules;
  }
  const fs::path out_file = work / "rsync.out";
  const std::string cmd = "rsync -rn --out-format='%n' --filter='merge " + rules_file.string() +
                          "' '" + root.string() + "/' '" + (work / "nowhere").string() + "/' > '" +
                          out_file.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << cmd;
  std::set<std::string> out;
  std::ifstream in(out_file);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line == "./") continue;
    out.insert(line);
  }
  return out;
}

void make_tree(const fs::path& root, const std::vector<std::string>& paths) {
  for (const std::string& p : paths) {
    if (p.back() == '/') {
      fs::create_directories(root / p);
    } else {
      fs::create_directories((root / p).parent_path());
      std::ofstream(root / p) << p;
    }
  }
}

const std::vector<std::string> kTree = {
    "a.c",        "a.o",        "b.txt",         "keep.o",      ".hidden",
    "build/",     "build/x.o",  "build/y.c",     "src/",        "src/main.c",
    "src/main.o", "src/build/", "src/build/z.o", "src/doc/",    "src/doc/a.tmp",
    "doc/",       "doc/a.tmp",  "doc/b.md",      "deep/a/b/c/", "deep/a/b/c/d.txt",
    "deep/a/x.c", "cache/",     "x/cache",       "[ab]x",       "ax",
    "sp ace.txt", "empty/",
};

TEST(FilterSetAgainstRsync, HandPickedRuleSetsKeepWhatRsyncKeeps) {
  ASSERT_EQ(std::system("rsync --version > /dev/null 2>&1"), 0)
      << "rsync is the oracle here (scripts/setup.sh installs it)";
  TempDir t;
  const fs::path root = t.path / "root";
  make_tree(root, kTree);
  const std::vector<std::string> sets = {
      "- *.o\n",
      "+ keep.o\n- *.o\n",
      "- /build\n",
      "- build/\n",
      "- build\n",
      "- cache/\n",
      "+ */\n+ *.c\n- *\n",
      "+ *.c\n- *\n",
      "- doc/*.tmp\n",
      "- /doc/*.tmp\n",
      "- **/b/**\n",
      "+ /deep/***\n- *\n",
      "- deep/a/**\n",
      "- a/b\n",
      "- [ab]x\n",
      "- \\[ab\\]x\n",
      "- .*\n",
      "- *\n",
      "+ src/\n+ src/*.c\n- *\n",
      "- sp ace.txt\n",
      "- ?.?\n",
      "+ *.txt\n- **/c/\n",
      "- /src/build/\n- *.tmp\n",
      "- **.o\n",
      "- src/**.o\n",
  };
  for (const std::string& rules : sets) {
    FilterSet f;
    ASSERT_TRUE(f.add_filter_text(rules, "rules").ok()) << rules;
    EXPECT_EQ(kept_by_xfer(root, f), kept_by_rsync(root, rules, t.path)) << rules;
  }
}

// Generated rules from pieces that stress the rules (stars, "**", classes,
// anchors, trailing slashes) on the same tree: rsync and FilterSet agree.
TEST(FilterSetAgainstRsync, GeneratedRuleSetsKeepWhatRsyncKeeps) {
  ASSERT_EQ(std::system("rsync --version > /dev/null 2>&1"), 0);
  TempDir t;
  const fs::path root = t.path / "root";
  make_tree(root, kTree);
  std::mt19937 rng(15);
  const std::vector<std::string> pieces = {"*",     "**",  "?",   "a",  "b", "c",  ".",    "o",
                                           "build", "doc", "src", "/",  "/", "x",  "[ab]", "[!a]",
                                           "deep",  "tmp", "*.",  ".c", "d", "*/", "t"};
  int disagreements = 0;
  for (int round = 0; round < 100; ++round) {
    std::string rules;
    const int n = 1 + static_cast<int>(rng() % 3);
    for (int i = 0; i < n; ++i) {
      std::string p = (rng() % 4 == 0) ? "/" : "";
      const int len = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < len; ++k) p += pieces[rng() % pieces.size()];
      if (p.find("//") != std::string::npos || p == "/") continue;
      if (rng() % 5 == 0 && p.back() != '/') p += '/';
      rules += (rng() % 3 == 0 ? "+ " : "- ") + p + "\n";
    }
    if (rules.empty()) continue;
    FilterSet f;
    ASSERT_TRUE(f.add_filter_text(rules, "rules").ok()) << rules;
    const auto ours = kept_by_xfer(root, f);
    const auto theirs = kept_by_rsync(root, rules, t.path);
    if (ours != theirs) ++disagreements;
    EXPECT_EQ(ours, theirs) << rules;
    if (disagreements > 3) break;
  }
}

}  // namespace
}  // namespace xfer
