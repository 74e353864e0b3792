// The CLI's config file, $XDG_CONFIG_HOME/xfer/config.toml or
// ~/.config/xfer/config.toml, into option defaults (config.hpp). Read once,
// by the CLI's main thread.

#include "xfer/core/config.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <cstdlib>

#include "xfer/core/files.hpp"
#include "xfer/core/units.hpp"

namespace xfer {
namespace {

// A config file is a few lines; anything this large is not one.
constexpr std::size_t kMaxConfigBytes = 1 << 20;

// Sizes may be written as integers (bytes) or strings with units ("16M").
Result<std::optional<std::uint64_t>> size_field(const toml::table& t, std::string_view key,
                                                const std::string& origin) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return std::optional<std::uint64_t>{};
  if (auto i = n->value<std::int64_t>(); i && n->is_integer()) {
    if (*i < 0) {
      return make_error(ErrorCode::kInvalidArgument, "config", origin,
                        fmt::format("{} must not be negative", key));
    }
    return std::optional<std::uint64_t>{static_cast<std::uint64_t>(*i)};
  }
  if (auto s = n->value<std::string>()) {
    auto v = parse_size(*s);
    if (!v) {
      return make_error(ErrorCode::kInvalidArgument, "config", origin,
                        fmt::format("{}: {}", key, v.error().detail));
    }
    return std::optional<std::uint64_t>{*v};
  }
  return make_error(ErrorCode::kInvalidArgument, "config", origin,
                    fmt::format("{} must be a size (integer or string like \"16M\")", key));
}

}  // namespace

std::string default_config_path() {
  if (const char* p = std::getenv("XFER_CONFIG"); p && *p) return p;
  const std::string home = xdg_config_home();
  return home.empty() ? std::string() : home + "/xfer/config.toml";
}

Result<Config> parse_config(std::string_view toml_text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    return make_error(ErrorCode::kInvalidArgument, "config", origin,
                      fmt::format("line {}: {}", e.source().begin.line, e.description()));
  }
  Config cfg;
  if (const toml::table* t = root["transfer"].as_table()) {
    if (const toml::node* n = t->get("workers")) {
      auto w = n->value<std::int64_t>();
      if (!n->is_integer() || !w || *w <= 0 || *w > 1024) {
        return make_error(ErrorCode::kInvalidArgument, "config", origin,
                          "transfer.workers must be an integer in 1..1024");
      }
      cfg.workers = static_cast<unsigned>(*w);
    }
    XFER_ASSIGN_OR_RETURN(cfg.chunk_size, size_field(*t, "chunk_size", origin));
    XFER_ASSIGN_OR_RETURN(cfg.small_file_threshold, size_field(*t, "small_file_threshold", origin));
    XFER_ASSIGN_OR_RETURN(cfg.memory, size_field(*t, "memory", origin));
    XFER_ASSIGN_OR_RETURN(cfg.bwlimit, size_field(*t, "bwlimit", origin));
    if (const toml::node* n = t->get("verify")) {
      auto b = n->value<bool>();
      if (!n->is_boolean() || !b) {
        return make_error(ErrorCode::kInvalidArgument, "config", origin,
                          "transfer.verify must be true or false");
      }
      cfg.verify = *b;
    }
    if (const toml::node* n = t->get("fsync")) {
      auto b = n->value<bool>();
      if (!n->is_boolean() || !b) {
        return make_error(ErrorCode::kInvalidArgument, "config", origin,
                          "transfer.fsync must be true or false");
      }
      cfg.fsync = *b;
    }
  }
  if (const toml::table* t = root["log"].as_table()) {
    if (auto lvl = (*t)["level"].value<std::string>()) cfg.log_level = *lvl;
  }
  return cfg;
}

Result<Config> load_config(const std::string& path) {
  if (path.empty()) return Config{};  // no home folder: defaults
  auto text = read_small_file(path, kMaxConfigBytes);
  if (!text) {
    // No file, or one this user may not read (a tool run under another
    // uid with the same HOME): defaults, as before there was a file.
    if (text.error().code == ErrorCode::kNotFound || text.error().code == ErrorCode::kPermission) {
      return Config{};
    }
    return std::move(text).error();
  }
  return parse_config(*text, path);
}

}  // namespace xfer
