// Include/exclude rules with rsync's semantics (docs/filters.md): the
// `--include`, `--exclude`, `--filter-from`, `--include-from` and
// `--exclude-from` of cp and sync. A FilterSet is built once, before a
// transfer starts, and is then only read: excluded() is safe to call from
// any number of threads at once.
//
// The rules, as rsync has them:
// - the first rule whose pattern matches decides; no match includes;
// - a pattern is matched against a path relative to the transfer's root
//   ("dir/sub/f.txt", no leading '/'); a leading '/' anchors it there,
//   otherwise it may match the end of the path at any '/' boundary;
// - a pattern with no '/' (a trailing one aside) and no "**" is matched
//   against the last component only;
// - a trailing '/' matches directories only; "dir/***" matches dir and
//   everything under it;
// - '*' matches within one component, "**" across '/', '?' one character
//   but '/', "[...]" a class ("[!...]" or "[^...]" negated, ranges,
//   "[[:alpha:]]" and the other POSIX classes), '\' quotes the next
//   character;
// - an excluded directory is not descended into, so what is under it is
//   excluded whatever later rules say (the caller stops its walk there).
//
// Rules may come from a peer (a job submitted to xferd carries them): every
// parser here bounds its input (kMaxRules, kMaxPatternBytes) and matching is
// bounded in time (no exponential backtracking: see wildmatch in filter.cpp).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "xfer/core/result.hpp"

namespace xfer {

class FilterSet {
 public:
  static constexpr std::size_t kMaxRules = 10000;
  static constexpr std::size_t kMaxPatternBytes = 4096;

  // One rule as the user wrote it ("+ *.c", "- /build/").
  struct Rule {
    bool include = false;
    std::string pattern;  // as given (the text job records and requests carry)
    // Parsed from `pattern`:
    std::string glob;         // without the anchor and trailing '/'
    bool anchored = false;    // leading '/'
    bool dir_only = false;    // trailing '/'
    bool whole_path = false;  // has a '/' or "**": matched against the path, not the name
  };

  // --include P / --exclude P. An empty pattern or one over
  // kMaxPatternBytes, or past kMaxRules, is kInvalidArgument naming
  // `origin` (the flag, or FILE:LINE).
  Status add(bool include, std::string_view pattern, std::string_view origin);
  // A --filter-from file: one rule per line, "+ P", "- P", "include P" or
  // "exclude P"; blank lines and lines starting with '#' or ';' are
  // skipped; anything else is an error naming the line.
  Status add_filter_text(std::string_view text, std::string_view origin);
  // An --include-from / --exclude-from file: one pattern per line (blank
  // lines and '#', ';' comments skipped).
  Status add_pattern_text(bool include, std::string_view text, std::string_view origin);

  // True when `path` (relative to the transfer's root, '/'-separated, no
  // leading or trailing '/') is excluded.
  bool excluded(std::string_view path, bool is_dir) const;

  bool empty() const { return rules_.empty(); }
  const std::vector<Rule>& rules() const { return rules_; }
  // The rules as --filter-from text ("+ P\n- Q\n"): what a job record or a
  // request carries; add_filter_text of it gives the same set.
  std::string to_text() const;

 private:
  Status add_parsed(bool include, std::string_view pattern, std::string_view origin);
  std::vector<Rule> rules_;
};

// rsync's wildcard match of `text` against `pattern` ('*' stops at '/',
// "**" does not, '?', classes, '\' quoting); the whole of both must match.
// Exposed for its tests.
bool wildmatch(std::string_view pattern, std::string_view text);

// --files-from: the paths a transfer is limited to, relative to each SRC
// folder, as `rsync -r --files-from` has them: a listed file is taken, a
// listed folder with everything in it, and the folders on the way to a
// listed path are entered (and made) but bring nothing else. A sync
// deletes only inside listed folders. Built once from the option's text,
// then only read (any thread).
//
// The list may come from a peer's job request: parse() bounds it
// (kMaxPaths, kMaxPathBytes) and checks every component as a name from a
// peer; lines that are blank or start with '#' or ';' are skipped (rsync's
// rule), a leading "/" or "./" is dropped, and "." means everything.
class PathList {
 public:
  static constexpr std::size_t kMaxPaths = 1'000'000;
  static constexpr std::size_t kMaxPathBytes = 4096;

  // The text in its normal form ("a/b\nc\n"), or an error naming `origin`
  // and the line.
  static Result<std::string> normalize(std::string_view text, std::string_view origin);
  // Loads normalized text (normalize's output).
  void load(std::string_view normalized);

  enum class Match {
    kOut,      // not selected: left alone on both ends
    kPassage,  // a folder on the way to a listed path
    kIn,       // listed, or below a listed folder
  };
  // `path` relative to the SRC folder ("" is the folder itself).
  Match match(std::string_view path) const;
  bool empty() const { return listed_.empty() && !everything_; }

 private:
  bool everything_ = false;
  // Views into text_ (which never changes once loaded): a path and its
  // ancestors share its bytes, so a deep list costs a view per component,
  // not a copy of every prefix.
  std::string text_;
  std::unordered_set<std::string_view> listed_;
  std::unordered_set<std::string_view> passages_;  // every proper ancestor of a listed path
};

}  // namespace xfer
