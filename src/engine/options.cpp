// The option table (options.hpp) built from options.inc: one OptionSpec per
// XFER_OPTION line, with a reader and a writer per kind of value. Pure
// functions over immutable data; any thread.

#include "xfer/engine/options.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <charconv>

#include "xfer/core/names.hpp"
#include "xfer/core/units.hpp"
#include "xfer/core/url.hpp"
#include "xfer/engine/filter.hpp"

namespace xfer {
namespace {

Error bad_value(std::string_view name, std::string_view text, std::string_view why) {
  return make_error(ErrorCode::kInvalidArgument, "option", name,
                    fmt::format("{}: {} (got \"{}\")", name, why, printable_name(text, 80)));
}

bool parse_decimal(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

// Sizes print in the largest unit that keeps them exact, so the text reads
// back to the same number ("8M", "1536K", "1000").
std::string size_text(std::uint64_t v) {
  static constexpr std::array<std::pair<char, int>, 4> kUnits = {
      {{'T', 40}, {'G', 30}, {'M', 20}, {'K', 10}}};
  if (v != 0) {
    for (auto [unit, shift] : kUnits) {
      if (v % (1ull << shift) == 0) return fmt::format("{}{}", v >> shift, unit);
    }
  }
  return fmt::format("{}", v);
}

Result<std::uint64_t> parse_millis(std::string_view s) {
  std::size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  std::uint64_t n = 0;
  if (!parse_decimal(s.substr(0, digits), n) || n > (1ull << 40)) {
    return make_error(ErrorCode::kInvalidArgument, "parse", s, "not a duration");
  }
  const std::string_view unit = s.substr(digits);
  if (unit.empty() || unit == "ms") return n;
  if (unit == "s") return n * 1000;
  if (unit == "m") return n * 60'000;
  return make_error(ErrorCode::kInvalidArgument, "parse", s, "unknown unit (use ms, s or m)");
}

std::string millis_text(std::uint64_t ms) {
  if (ms != 0 && ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
  if (ms != 0 && ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

Result<bool> parse_bool(std::string_view s) {
  if (s == "true" || s == "1" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "0" || s == "no" || s == "off") return false;
  return make_error(ErrorCode::kInvalidArgument, "parse", s, "not true or false");
}

// A number in [min, max], or 0 when the option gives 0 a meaning.
Result<std::uint64_t> in_range(std::string_view name, std::string_view text, std::uint64_t v,
                               std::uint64_t min, std::uint64_t max, std::string_view zero,
                               bool sizes) {
  if (v == 0 && !zero.empty()) return v;
  if (v >= min && v <= max) return v;
  auto show = [&](std::uint64_t x) { return sizes ? size_text(x) : fmt::format("{}", x); };
  return bad_value(name, text,
                   fmt::format("must be {}..{}{}", show(min), show(max),
                               zero.empty() ? "" : fmt::format(" or 0 ({})", zero)));
}

// The readers and writers, one pair per kind.
template <OptionKind K>
struct Codec;

template <>
struct Codec<OptionKind::kFlag> {
  static Result<bool> read(std::string_view name, std::string_view text, std::uint64_t,
                           std::uint64_t, std::string_view) {
    auto b = parse_bool(text);
    if (!b) return bad_value(name, text, "must be true or false");
    return *b;
  }
  static std::string write(bool v, std::string_view) { return v ? "true" : "false"; }
};

template <>
struct Codec<OptionKind::kSwitch> {
  static Result<int> read(std::string_view name, std::string_view text, std::uint64_t,
                          std::uint64_t, std::string_view zero) {
    if (text == zero || text == "-1") return -1;
    auto b = parse_bool(text);
    if (!b) return bad_value(name, text, fmt::format("must be true, false or {}", zero));
    return *b ? 1 : 0;
  }
  static std::string write(int v, std::string_view zero) {
    return v < 0 ? std::string(zero) : v ? "true" : "false";
  }
};

template <>
struct Codec<OptionKind::kCount> {
  static Result<unsigned> read(std::string_view name, std::string_view text, std::uint64_t min,
                               std::uint64_t max, std::string_view zero) {
    std::uint64_t v = 0;
    if (!zero.empty() && text == zero) return 0u;
    if (!parse_decimal(text, v)) return bad_value(name, text, "must be a whole number");
    XFER_ASSIGN_OR_RETURN(v, in_range(name, text, v, min, max, zero, false));
    return static_cast<unsigned>(v);
  }
  static std::string write(unsigned v, std::string_view zero) {
    return v == 0 && !zero.empty() ? std::string(zero) : fmt::format("{}", v);
  }
};

template <>
struct Codec<OptionKind::kSize> {
  static Result<std::uint64_t> read(std::string_view name, std::string_view text, std::uint64_t min,
                                    std::uint64_t max, std::string_view zero) {
    if (!zero.empty() && text == zero) return std::uint64_t{0};
    auto v = parse_size(text);
    if (!v) return bad_value(name, text, v.error().detail);
    return in_range(name, text, *v, min, max, zero, true);
  }
  static std::string write(std::uint64_t v, std::string_view zero) {
    return v == 0 && !zero.empty() ? std::string(zero) : size_text(v);
  }
};

// Written with its unit, so the text never depends on how a bare number is
// read ("30M/s", "30000B/s").
template <>
struct Codec<OptionKind::kRate> {
  static Result<std::uint64_t> read(std::string_view name, std::string_view text, std::uint64_t min,
                                    std::uint64_t max, std::string_view zero) {
    if (!zero.empty() && (text == zero || text == "0")) return std::uint64_t{0};
    auto v = parse_rate(text);
    if (!v) return bad_value(name, text, v.error().detail);
    return in_range(name, text, *v, min, max, zero, true);
  }
  static std::string write(std::uint64_t v, std::string_view zero) {
    if (v == 0 && !zero.empty()) return std::string(zero);
    const std::string size = size_text(v);
    const bool bare = size.back() >= '0' && size.back() <= '9';
    return size + (bare ? "B/s" : "/s");
  }
};

template <>
struct Codec<OptionKind::kMillis> {
  static Result<std::chrono::milliseconds> read(std::string_view name, std::string_view text,
                                                std::uint64_t min, std::uint64_t max,
                                                std::string_view zero) {
    if (!zero.empty() && text == zero) return std::chrono::milliseconds(0);
    auto v = parse_millis(text);
    if (!v) return bad_value(name, text, "must be a duration (50ms, 5s, 2m)");
    XFER_ASSIGN_OR_RETURN(std::uint64_t ms, in_range(name, text, *v, min, max, zero, false));
    return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
  }
  static std::string write(std::chrono::milliseconds v, std::string_view zero) {
    if (v.count() == 0 && !zero.empty()) return std::string(zero);
    return millis_text(static_cast<std::uint64_t>(v.count()));
  }
};

template <>
struct Codec<OptionKind::kId> {
  static Result<std::string> read(std::string_view name, std::string_view text, std::uint64_t,
                                  std::uint64_t, std::string_view) {
    if (text.empty()) return std::string();  // unset: derived from the request
    XFER_TRY(validate_id(text, name));
    return std::string(text);
  }
  static std::string write(const std::string& v, std::string_view) { return v; }
};

template <>
struct Codec<OptionKind::kAddresses> {
  static Result<std::string> read(std::string_view name, std::string_view text, std::uint64_t,
                                  std::uint64_t, std::string_view) {
    auto list = parse_address_list(text);
    if (!list) {
      Error e = std::move(list).error();
      e.operation = fmt::format("check {}", name);
      return e;
    }
    return fmt::format("{}", fmt::join(*list, ","));
  }
  static std::string write(const std::string& v, std::string_view) { return v; }
};

// Rules as --filter-from text ("+ *.c\n- *\n"): parsed with FilterSet's
// bounds (they may come from a peer's job request) and written back in its
// normal form, so the job record holds exactly the rules that ran.
template <>
struct Codec<OptionKind::kFilter> {
  static Result<std::string> read(std::string_view name, std::string_view text, std::uint64_t,
                                  std::uint64_t, std::string_view) {
    FilterSet f;
    if (Status s = f.add_filter_text(text, name); !s.ok()) {
      Error e = std::move(s).error();
      e.operation = fmt::format("check {}", name);
      return e;
    }
    return f.to_text();
  }
  static std::string write(const std::string& v, std::string_view) { return v; }
};

// A relative path ("old/backups"): at most 1,024 bytes, each component a
// valid name (no "..", ".", empty names, NUL or newline), as a name from a
// peer is checked; it may come in a job request.
template <>
struct Codec<OptionKind::kPath> {
  static Result<std::string> read(std::string_view name, std::string_view text, std::uint64_t,
                                  std::uint64_t, std::string_view) {
    if (text.empty()) return std::string();
    if (text.size() > 1024) return bad_value(name, text, "longer than 1024 bytes");
    if (text.front() == '/') return bad_value(name, text, "must be relative to the destination");
    for (char c : text) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return bad_value(name, text, "holds a control character");
      }
    }
    std::string_view rest = text;
    while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    while (!rest.empty()) {
      const std::size_t slash = rest.find('/');
      const std::string_view part = rest.substr(0, slash);
      if (Status ok = validate_name_component(part, name); !ok.ok()) {
        return bad_value(name, text, ok.error().detail);
      }
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
    text = text.substr(0, text.find_last_not_of('/') + 1);
    return std::string(text);
  }
  static std::string write(const std::string& v, std::string_view) { return v; }
};

// Paths as --files-from text: checked and bounded by PathList (they may
// come in a job request) and written back in its normal form.
template <>
struct Codec<OptionKind::kPathList> {
  static Result<std::string> read(std::string_view name, std::string_view text, std::uint64_t,
                                  std::uint64_t, std::string_view) {
    auto normal = PathList::normalize(text, name);
    if (!normal) {
      Error e = std::move(normal).error();
      e.operation = fmt::format("check {}", name);
      return e;
    }
    return std::move(normal).value();
  }
  static std::string write(const std::string& v, std::string_view) { return v; }
};

constexpr std::array kTable = {
#define XFER_OPTION(name_, kind_, type_, def_, min_, max_, zero_, where_, names_, help_)      \
  OptionSpec{#name_,                                                                          \
             OptionKind::kind_,                                                               \
             static_cast<unsigned>(where_),                                                   \
             static_cast<std::uint64_t>(min_),                                                \
             static_cast<std::uint64_t>(max_),                                                \
             zero_,                                                                           \
             names_,                                                                          \
             help_,                                                                           \
             [](TransferOptions& o, std::string_view text) -> Status {                        \
               XFER_ASSIGN_OR_RETURN(                                                         \
                   o.name_, Codec<OptionKind::kind_>::read(#name_, text, min_, max_, zero_)); \
               return ok_status();                                                            \
             },                                                                               \
             [](const TransferOptions& o) -> std::string {                                    \
               return Codec<OptionKind::kind_>::write(o.name_, zero_);                        \
             }},
#include "xfer/engine/options.inc"
#undef XFER_OPTION
};

}  // namespace

std::span<const OptionSpec> option_table() {
  return kTable;
}

const OptionSpec* find_option(std::string_view name) {
  for (const auto& spec : kTable) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

std::string option_flag(const OptionSpec& spec) {
  std::string flag = "--" + std::string(spec.name);
  for (char& c : flag) {
    if (c == '_') c = '-';
  }
  return flag;
}

std::string option_default_text(const OptionSpec& spec) {
  return spec.get(TransferOptions{});
}

Status set_option(TransferOptions& options, std::string_view name, std::string_view text,
                  OptionWhere where) {
  const OptionSpec* spec = find_option(name);
  if (spec == nullptr) {
    return make_error(ErrorCode::kInvalidArgument, "option", name,
                      fmt::format("unknown option \"{}\"", printable_name(name, 64)));
  }
  if ((spec->where & where) == 0) {
    static constexpr std::array<std::pair<OptionWhere, std::string_view>, 6> kPlaces = {
        {{kCli, "on the command line"},
         {kSync, "on the command line"},
         {kGlobal, "on the command line"},
         {kConfig, "in the config file"},
         {kJob, "in a job record"},
         {kRemote, "in a job request"}}};
    std::string_view place = "here";
    for (auto [w, text_of] : kPlaces) {
      if (w == where) place = text_of;
    }
    return make_error(ErrorCode::kInvalidArgument, "option", name,
                      fmt::format("option \"{}\" cannot be set {}", name, place));
  }
  return spec->set(options, text);
}

std::vector<std::pair<std::string, std::string>> option_values(const TransferOptions& options,
                                                               OptionWhere where) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& spec : kTable) {
    if ((spec.where & where) != 0) out.emplace_back(std::string(spec.name), spec.get(options));
  }
  return out;
}

Status apply_config(const Config& config, TransferOptions& options) {
  for (const auto& v : config.transfer) {
    Status s = set_option(options, v.key, v.text, kConfig);
    if (!s.ok()) {
      return make_error(ErrorCode::kInvalidArgument, "config", config.origin,
                        fmt::format("line {}: {}", v.line, s.error().detail));
    }
  }
  return check_options(options);
}

Status check_options(const TransferOptions& options) {
  if (options.memory < 4 * options.io_size) {
    return make_error(ErrorCode::kInvalidArgument, "option", "memory",
                      fmt::format("memory ({}) must hold at least four I/O buffers of io_size ({})",
                                  size_text(options.memory), size_text(options.io_size)));
  }
  if (options.retry_cap < options.retry_base) {
    return make_error(ErrorCode::kInvalidArgument, "option", "retry_cap",
                      "retry_cap must not be shorter than retry_base");
  }
  return ok_status();
}

bool same_options(const TransferOptions& a, const TransferOptions& b, OptionWhere where) {
  for (const auto& spec : kTable) {
    if ((spec.where & where) != 0 && spec.get(a) != spec.get(b)) return false;
  }
  return true;
}

}  // namespace xfer
