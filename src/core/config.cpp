// The CLI's config file, $XDG_CONFIG_HOME/xfer/config.toml or
// ~/.config/xfer/config.toml (config.hpp): TOML into key/value text; the
// option table checks the values. Read once, by the CLI's main thread.

#include "xfer/core/config.hpp"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <cstdlib>

#include "xfer/core/files.hpp"

namespace xfer {
namespace {

// A config file is a few lines; anything this large is not one.
constexpr std::size_t kMaxConfigBytes = 1 << 20;

// A [transfer] value as text; the option table reads it from there.
Result<std::string> value_text(const toml::node& n, std::string_view key,
                               const std::string& origin) {
  if (auto i = n.value_exact<std::int64_t>()) return fmt::format("{}", *i);
  if (auto b = n.value_exact<bool>()) return std::string(*b ? "true" : "false");
  if (auto s = n.value_exact<std::string>()) return *s;
  return make_error(ErrorCode::kInvalidArgument, "config", origin,
                    fmt::format("line {}: transfer.{} must be a number, a string or true/false",
                                n.source().begin.line, key));
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
  cfg.origin = origin;
  if (const toml::node* section = root.get("transfer")) {
    const toml::table* t = section->as_table();
    if (t == nullptr) {
      return make_error(ErrorCode::kInvalidArgument, "config", origin,
                        fmt::format("line {}: transfer must be a table ([transfer])",
                                    section->source().begin.line));
    }
    for (const auto& [key, node] : *t) {
      XFER_ASSIGN_OR_RETURN(std::string text, value_text(node, key.str(), origin));
      cfg.transfer.push_back(
          {std::string(key.str()), std::move(text), static_cast<int>(node.source().begin.line)});
    }
  }
  if (const toml::table* t = root["log"].as_table()) {
    if (auto lvl = (*t)["level"].value<std::string>()) cfg.log_level = *lvl;
  }
  return cfg;
}

Result<Config> load_config(const std::string& path, bool must_exist) {
  if (path.empty()) return Config{};  // no home folder: defaults
  auto text = read_small_file(path, kMaxConfigBytes);
  if (!text && must_exist && text.error().code == ErrorCode::kNotFound) {
    return make_error(ErrorCode::kNotFound, "config", path, "no such file");
  }
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
