// FilterSet (include/xfer/engine/filter.hpp): parsing rsync's include and
// exclude rules and matching paths against them. Hand-written: no Debian
// library has rsync's wildcard rules ('*' within a component, "**" across,
// anchoring, directory-only rules); fnmatch(3) has no "**" (see
// docs/dependencies.md). Built on one thread, then read-only.

#include "xfer/engine/filter.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "xfer/core/names.hpp"

namespace xfer {
namespace {

// A pattern compiled to tokens, matched by following every token position
// at once over the text (no backtracking): |tokens| x |text| steps at most,
// however the stars are arranged.
struct Token {
  enum Kind { kChar, kAny, kClass, kStar, kStarStar } kind = kChar;
  char c = 0;
  std::string_view cls;  // kClass: the text between '[' and ']'
};

bool in_posix_class(std::string_view name, char ch) {
  const auto c = static_cast<unsigned char>(ch);
  const bool upper = c >= 'A' && c <= 'Z';
  const bool lower = c >= 'a' && c <= 'z';
  const bool digit = c >= '0' && c <= '9';
  if (name == "alpha") return upper || lower;
  if (name == "digit") return digit;
  if (name == "alnum") return upper || lower || digit;
  if (name == "upper") return upper;
  if (name == "lower") return lower;
  if (name == "space") return c == ' ' || (c >= '\t' && c <= '\r');
  if (name == "blank") return c == ' ' || c == '\t';
  if (name == "punct") return c > ' ' && c < 0x7f && !(upper || lower || digit);
  if (name == "xdigit") return digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  if (name == "print") return c >= ' ' && c < 0x7f;
  if (name == "graph") return c > ' ' && c < 0x7f;
  if (name == "cntrl") return c < ' ' || c == 0x7f;
  return false;
}

// Where the class starting at p[i] == '[' ends (the position after its
// ']'), or npos when it has none (then '[' is a literal). A ']' right after
// '[' or "[!" belongs to the class; "[:name:]" is one item.
std::size_t class_end(std::string_view p, std::size_t i) {
  std::size_t j = i + 1;
  if (j < p.size() && (p[j] == '!' || p[j] == '^')) ++j;
  if (j < p.size() && p[j] == ']') ++j;
  while (j < p.size() && p[j] != ']') {
    if (p[j] == '[' && j + 1 < p.size() && p[j + 1] == ':') {
      const std::size_t close = p.find(":]", j + 2);
      if (close != std::string_view::npos) {
        j = close + 2;
        continue;
      }
    }
    if (p[j] == '\\' && j + 1 < p.size()) ++j;
    ++j;
  }
  return j < p.size() ? j + 1 : std::string_view::npos;
}

bool class_matches(std::string_view cls, char ch) {
  std::size_t i = 0;
  bool negated = false;
  if (i < cls.size() && (cls[i] == '!' || cls[i] == '^')) {
    negated = true;
    ++i;
  }
  bool matched = false;
  const auto u = static_cast<unsigned char>(ch);
  for (bool first = true; i < cls.size(); first = false) {
    if (cls[i] == '[' && i + 1 < cls.size() && cls[i + 1] == ':') {
      const std::size_t close = cls.find(":]", i + 2);
      if (close != std::string_view::npos) {
        matched = matched || in_posix_class(cls.substr(i + 2, close - i - 2), ch);
        i = close + 2;
        continue;
      }
    }
    (void)first;
    char lo = cls[i];
    if (lo == '\\' && i + 1 < cls.size()) lo = cls[++i];
    ++i;
    char hi = lo;
    if (i + 1 < cls.size() && cls[i] == '-') {
      hi = cls[i + 1];
      i += 2;
      if (hi == '\\' && i < cls.size()) hi = cls[i++];
    }
    if (u >= static_cast<unsigned char>(lo) && u <= static_cast<unsigned char>(hi)) matched = true;
  }
  return matched != negated;
}

std::vector<Token> compile(std::string_view p) {
  std::vector<Token> out;
  for (std::size_t i = 0; i < p.size();) {
    Token t;
    if (p[i] == '*') {
      std::size_t n = 0;
      while (i < p.size() && p[i] == '*') {
        ++i;
        ++n;
      }
      t.kind = n >= 2 ? Token::kStarStar : Token::kStar;
    } else if (p[i] == '?') {
      t.kind = Token::kAny;
      ++i;
    } else if (p[i] == '[' && class_end(p, i) != std::string_view::npos) {
      const std::size_t e = class_end(p, i);
      t.kind = Token::kClass;
      t.cls = p.substr(i + 1, e - i - 2);
      i = e;
    } else {
      if (p[i] == '\\' && i + 1 < p.size()) ++i;
      t.c = p[i++];
    }
    out.push_back(t);
  }
  return out;
}

// Does the pattern match the whole of `text`, starting at position 0 or
// (`at_components`) at the start of any component?
bool run(const std::vector<Token>& tokens, std::string_view text, bool at_components) {
  const std::size_t n = tokens.size();
  std::vector<char> now(n + 1, 0);
  std::vector<char> next(n + 1, 0);
  // Adds state i and what stars let it skip to.
  auto enter = [&](std::vector<char>& set, std::size_t i) {
    for (; i <= n && !set[i]; ++i) {
      set[i] = 1;
      if (i == n || (tokens[i].kind != Token::kStar && tokens[i].kind != Token::kStarStar)) break;
    }
  };
  enter(now, 0);
  for (std::size_t k = 0; k < text.size(); ++k) {
    const char c = text[k];
    std::fill(next.begin(), next.end(), 0);
    bool any = false;
    for (std::size_t i = 0; i < n; ++i) {
      if (!now[i]) continue;
      const Token& t = tokens[i];
      switch (t.kind) {
        case Token::kStarStar:
          enter(next, i);
          break;
        case Token::kStar:
          if (c != '/') enter(next, i);
          break;
        case Token::kAny:
          if (c != '/') enter(next, i + 1);
          break;
        case Token::kClass:
          if (c != '/' && class_matches(t.cls, c)) enter(next, i + 1);
          break;
        case Token::kChar:
          if (c == t.c) enter(next, i + 1);
          break;
      }
    }
    if (at_components && c == '/') enter(next, 0);
    std::swap(now, next);
    for (std::size_t i = 0; i <= n && !any; ++i) any = now[i] != 0;
    if (!any && !at_components) return false;
  }
  return now[n] != 0;
}

// The lines of `text`, each without its '\n' (a last line without one
// counts), with their 1-based numbers; blank lines and comments skipped.
template <typename F>
Status for_each_line(std::string_view text, std::string_view origin, F&& f) {
  std::size_t line_no = 0;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    ++line_no;
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    XFER_TRY(f(line, fmt::format("{}:{}", origin, line_no)));
  }
  return ok_status();
}

}  // namespace

bool wildmatch(std::string_view pattern, std::string_view text) {
  return run(compile(pattern), text, false);
}

Status FilterSet::add(bool include, std::string_view pattern, std::string_view origin) {
  if (pattern.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "filter", origin, "empty pattern");
  }
  if (pattern.size() > kMaxPatternBytes) {
    return make_error(ErrorCode::kInvalidArgument, "filter", origin,
                      fmt::format("pattern longer than {} bytes", kMaxPatternBytes));
  }
  if (pattern.find_first_of(std::string_view("\0\n", 2)) != std::string_view::npos) {
    return make_error(ErrorCode::kInvalidArgument, "filter", origin,
                      "a pattern cannot hold a NUL or a newline");
  }
  // "dir/***" is "dir/" and "dir/**": the directory and all under it.
  if (pattern.size() > 4 && pattern.substr(pattern.size() - 4) == "/***") {
    XFER_TRY(add_parsed(include, pattern.substr(0, pattern.size() - 3), origin));
    rules_.back().pattern = std::string(pattern);
    XFER_TRY(add_parsed(include, pattern.substr(0, pattern.size() - 1), origin));
    rules_.back().pattern.clear();  // part of the one before; to_text skips it
    return ok_status();
  }
  return add_parsed(include, pattern, origin);
}

Status FilterSet::add_parsed(bool include, std::string_view pattern, std::string_view origin) {
  if (rules_.size() >= kMaxRules) {
    return make_error(ErrorCode::kInvalidArgument, "filter", origin,
                      fmt::format("more than {} rules", kMaxRules));
  }
  Rule r;
  r.include = include;
  r.pattern = std::string(pattern);
  std::string_view g = pattern;
  if (g.size() > 1 && g.back() == '/') {
    r.dir_only = true;
    g.remove_suffix(1);
  }
  if (!g.empty() && g.front() == '/') {
    r.anchored = true;
    g.remove_prefix(1);
  }
  r.whole_path =
      r.anchored || g.find('/') != std::string_view::npos || g.find("**") != std::string_view::npos;
  r.glob = std::string(g);
  rules_.push_back(std::move(r));
  return ok_status();
}

Status FilterSet::add_filter_text(std::string_view text, std::string_view origin) {
  return for_each_line(
      text, origin, [&](std::string_view line, const std::string& where) -> Status {
        if (line == "!") {
          rules_.clear();  // rsync's "clear the list"
          return ok_status();
        }
        for (const auto& [word, include] :
             {std::pair{"+ ", true}, std::pair{"- ", false}, std::pair{"include ", true},
              std::pair{"exclude ", false}}) {
          const std::string_view w(word);
          if (line.substr(0, w.size()) == w) return add(include, line.substr(w.size()), where);
        }
        return make_error(
            ErrorCode::kInvalidArgument, "filter", where,
            "a rule is '+ PATTERN', '- PATTERN', 'include PATTERN', 'exclude PATTERN' "
            "or '!'");
      });
}

Status FilterSet::add_pattern_text(bool include, std::string_view text, std::string_view origin) {
  return for_each_line(text, origin, [&](std::string_view line, const std::string& where) {
    return add(include, line, where);
  });
}

bool FilterSet::excluded(std::string_view path, bool is_dir) const {
  const std::size_t slash = path.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  for (const Rule& r : rules_) {
    if (r.dir_only && !is_dir) continue;
    const std::vector<Token> tokens = compile(r.glob);
    bool hit = false;
    if (!r.whole_path) {
      hit = run(tokens, name, false);
    } else {
      // Unanchored: the end of the path, starting at any component.
      hit = run(tokens, path, !r.anchored);
    }
    if (hit) return !r.include;
  }
  return false;
}

std::string FilterSet::to_text() const {
  std::string out;
  for (const Rule& r : rules_) {
    if (r.pattern.empty()) continue;  // the second half of a "dir/***"
    out += r.include ? "+ " : "- ";
    out += r.pattern;
    out += '\n';
  }
  return out;
}

Result<std::string> PathList::normalize(std::string_view text, std::string_view origin) {
  std::string out;
  std::size_t count = 0;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    auto bad = [&](std::string_view why) {
      return make_error(ErrorCode::kInvalidArgument, "files-from", origin,
                        fmt::format("line {}: {}", line_no, why));
    };
    if (line.size() > kMaxPathBytes) return bad("a path longer than 4096 bytes");
    if (++count > kMaxPaths) return bad("more than 1,000,000 paths");
    while (line.starts_with("./")) line.remove_prefix(2);
    while (!line.empty() && line.front() == '/') line.remove_prefix(1);
    while (!line.empty() && line.back() == '/') line.remove_suffix(1);
    if (line.empty() || line == ".") {
      out += ".\n";
      continue;
    }
    for (std::string_view rest = line; !rest.empty();) {
      const std::size_t slash = rest.find('/');
      if (Status ok = validate_name_component(rest.substr(0, slash), "path"); !ok.ok()) {
        return bad(ok.error().detail);
      }
      rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    }
    out.append(line);
    out += '\n';
  }
  return out;
}

void PathList::load(std::string_view text) {
  text_.assign(text);
  listed_.clear();
  passages_.clear();
  std::string_view normalized = text_;
  while (!normalized.empty()) {
    const std::size_t nl = normalized.find('\n');
    const std::string_view line = normalized.substr(0, nl);
    normalized = nl == std::string_view::npos ? std::string_view() : normalized.substr(nl + 1);
    if (line.empty()) continue;
    if (line == ".") {
      everything_ = true;
      continue;
    }
    listed_.emplace(line);
    for (std::size_t slash = line.find('/'); slash != std::string_view::npos;
         slash = line.find('/', slash + 1)) {
      passages_.emplace(line.substr(0, slash));
    }
  }
}

PathList::Match PathList::match(std::string_view path) const {
  if (everything_) return Match::kIn;
  if (path.empty()) return Match::kPassage;
  // Listed itself, or below a listed folder: each ancestor looked up.
  for (std::size_t end = path.find('/');; end = path.find('/', end + 1)) {
    if (listed_.count(path.substr(0, end)) != 0) return Match::kIn;
    if (end == std::string_view::npos) break;
  }
  return passages_.count(path) != 0 ? Match::kPassage : Match::kOut;
}

}  // namespace xfer
