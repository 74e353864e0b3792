// Namespace commands: list, stat, mkdir, touch, rename, rm. Each goes through
// the backend interface, so they work on every endpoint the registry knows.
//
// Main thread only (CLI11 callbacks).

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "../common.hpp"
#include "xfer/core/units.hpp"

namespace xfer::cli {
namespace {

using nlohmann::json;

json entry_json(const std::string& name, const std::string& path, const FileAttrs& a) {
  json j = {{"schema", kJsonSchema},  {"name", name},
            {"path", path},           {"type", std::string(to_string(a.type))},
            {"size", a.size},         {"mode", fmt::format("{:04o}", a.mode)},
            {"mtime_ns", a.mtime_ns}, {"mtime", format_mtime(a.mtime_ns)}};
  if (a.type == EntryType::kSymlink) j["target"] = a.symlink_target;
  return j;
}

void print_json(const json& j) {
  print_out("{}\n", j.dump(-1, ' ', false, json::error_handler_t::replace));
}

// `human`: sizes as "12.1 KiB" (ls -h) instead of the byte count.
std::string long_line(const std::string& name, const FileAttrs& a, bool human = false) {
  std::string shown = name;
  if (a.type == EntryType::kDirectory) shown += '/';
  if (a.type == EntryType::kSymlink) shown += " -> " + a.symlink_target;
  const std::string size =
      human ? format_bytes(static_cast<double>(a.size)) : std::to_string(a.size);
  return fmt::format("{} {:>12} {} {}", mode_string(a), size, format_mtime(a.mtime_ns), shown);
}

// Tracks failures of a multi-argument command: 0, 1 or 3 like the transfer.
struct Outcome {
  unsigned ok = 0, failed = 0;
  void fail(const Error& e) {
    print_error(e);
    ++failed;
  }
  int code() const { return outcome_exit_code(false, failed, ok); }
};

// Runs `op` on the backend of every path and records the outcome.
template <typename Op>
int for_each_endpoint(const std::vector<std::string>& paths, Op op) {
  Outcome out;
  for (const auto& p : paths) {
    auto ep = open_endpoint(p);
    Status s = ep ? op(*ep) : Status(ep.error());
    if (s.ok()) {
      ++out.ok;
    } else {
      out.fail(s.error());
    }
  }
  return out.code();
}

// How `xfer ls` shows a listing. Entries of each directory are sorted as
// ls(1) sorts them: by name (bytes, as LC_ALL=C), -t newest first, -S
// largest first, -U not at all (the backend's order, and no directory held
// in memory: for huge directories); -r reverses.
struct ListStyle {
  bool longf = false, recursive = false, json = false, human = false, reverse = false;
  bool by_time = false, by_size = false, unsorted = false;
};

void print_entry(const Entry& e, const std::string& dir, const std::string& shown,
                 const ListStyle& st) {
  if (st.json) {
    print_json(entry_json(e.name, join_path(dir, e.name), e.attrs.value_or(FileAttrs{})));
  } else if (st.longf && e.attrs) {
    print_out("{}\n", long_line(shown, *e.attrs, st.human));
  } else {
    print_out("{}{}\n", shown, e.type == EntryType::kDirectory ? "/" : "");
  }
}

Status list_one(Backend& b, const std::string& root, const std::string& rel, const ListStyle& st,
                Outcome& out) {
  std::string dir = rel.empty() ? root : join_path(root, rel);
  std::vector<std::string> subdirs;
  std::vector<Entry> entries;
  ListOptions lo;
  lo.want_attrs = st.longf || st.json || st.by_time || st.by_size;
  Status s = b.list(dir, lo, [&](Entry&& e) -> Status {
    if (st.unsorted) {
      const std::string shown = rel.empty() ? e.name : join_path(rel, e.name);
      print_entry(e, dir, shown, st);
      if (st.recursive && e.type == EntryType::kDirectory) subdirs.push_back(shown);
    } else {
      entries.push_back(std::move(e));
    }
    return ok_status();
  });
  if (!s.ok()) return s;
  if (!st.unsorted) {
    auto attrs = [](const Entry& e) { return e.attrs.value_or(FileAttrs{}); };
    std::sort(entries.begin(), entries.end(), [&](const Entry& x, const Entry& y) {
      if (st.by_time && attrs(x).mtime_ns != attrs(y).mtime_ns) {
        return attrs(x).mtime_ns > attrs(y).mtime_ns;
      }
      if (st.by_size && attrs(x).size != attrs(y).size) return attrs(x).size > attrs(y).size;
      return x.name < y.name;
    });
    if (st.reverse) std::reverse(entries.begin(), entries.end());
    for (const Entry& e : entries) {
      const std::string shown = rel.empty() ? e.name : join_path(rel, e.name);
      print_entry(e, dir, shown, st);
      if (st.recursive && e.type == EntryType::kDirectory) subdirs.push_back(shown);
    }
  }
  for (const auto& sub : subdirs) {
    Status r = list_one(b, root, sub, st, out);
    if (!r.ok()) out.fail(r.error());
  }
  return ok_status();
}

}  // namespace

void register_list(CLI::App& app) {
  struct Args {
    std::vector<std::string> paths;
    ListStyle style;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("ls", "List a directory (sorted by name, as ls)");
  cmd->alias("list");
  cmd->footer(kExitCodesHelp);
  // -h is ls's "human-readable" here (`xfer ls -lh`), so help is --help only.
  cmd->set_help_flag("--help", "Print this help message and exit");
  cmd->add_option("paths", a->paths, "Paths or URLs (default: .)");
  ListStyle& style = a->style;
  cmd->add_flag("-l,--long", style.longf, "Mode, size, mtime and name");
  cmd->add_flag("-R,--recursive", style.recursive, "Recurse into subdirectories");
  cmd->add_flag("--json", style.json, "One JSON object per entry");
  cmd->add_flag("-h,--human-readable", style.human, "Sizes as 12.1 KiB (with -l)");
  cmd->add_flag("-t", style.by_time, "Newest first");
  cmd->add_flag("-S", style.by_size, "Largest first");
  cmd->add_flag("-r,--reverse", style.reverse, "Reverse the order");
  cmd->add_flag("-U,--unsorted", style.unsorted,
                "The backend's order, nothing held in memory (huge directories)");
  cmd->callback([a] {
    end_on_signal();
    const ListStyle& st = a->style;
    if (a->paths.empty()) a->paths.push_back(".");
    Outcome out;
    for (const auto& p : a->paths) {
      auto ep = open_endpoint(p);
      if (!ep) {
        out.fail(ep.error());
        continue;
      }
      auto attrs = ep->backend->stat(ep->url.path);
      if (!attrs) {
        out.fail(attrs.error());
        continue;
      }
      // "link/" asks for what the link points to, as with ls(1): list it
      // (a server refuses to follow a link; that error is reported).
      const bool follow = ep->url.trailing_slash && attrs->type == EntryType::kSymlink;
      if (attrs->type != EntryType::kDirectory && !follow) {
        if (st.json) {
          print_json(entry_json(base_name(ep->url.path), ep->url.path, *attrs));
        } else if (st.longf) {
          print_out("{}\n", long_line(ep->url.path, *attrs, st.human));
        } else {
          print_out("{}\n", ep->url.path);
        }
        ++out.ok;
        continue;
      }
      if (a->paths.size() > 1 && !st.json) print_out("{}:\n", p);
      Status s = list_one(*ep->backend, ep->url.path, "", st, out);
      if (!s.ok()) {
        out.fail(s.error());
      } else {
        ++out.ok;
      }
    }
    context().exit_code = out.code();
  });
}

void register_stat(CLI::App& app) {
  struct Args {
    std::vector<std::string> paths;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("stat", "Show type, size, mode and mtime");
  cmd->footer(kExitCodesHelp);
  cmd->add_option("paths", a->paths, "Paths or URLs")->required();
  cmd->add_flag("--json", a->json, "JSON output");
  cmd->callback([a] {
    end_on_signal();
    Outcome out;
    for (const auto& p : a->paths) {
      auto ep = open_endpoint(p);
      if (!ep) {
        out.fail(ep.error());
        continue;
      }
      auto attrs = ep->backend->stat(ep->url.path);
      if (!attrs) {
        out.fail(attrs.error());
        continue;
      }
      ++out.ok;
      if (a->json) {
        print_json(entry_json(base_name(ep->url.path), ep->url.path, *attrs));
        continue;
      }
      print_out("path: {}\ntype: {}\nsize: {}\nmode: {:04o} ({})\nmtime: {} ({} ns)\n",
                ep->url.path, to_string(attrs->type), attrs->size, attrs->mode, mode_string(*attrs),
                format_mtime(attrs->mtime_ns), attrs->mtime_ns);
      if (attrs->type == EntryType::kSymlink) print_out("target: {}\n", attrs->symlink_target);
    }
    context().exit_code = out.code();
  });
}

void register_mkdir(CLI::App& app) {
  struct Args {
    std::vector<std::string> paths;
    bool parents = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("mkdir", "Create directories");
  cmd->footer(kExitCodesHelp);
  cmd->add_option("paths", a->paths, "Paths or URLs")->required();
  cmd->add_flag("-p,--parents", a->parents, "Create parents as needed; no error if it exists");
  cmd->callback([a] {
    end_on_signal();
    context().exit_code = for_each_endpoint(
        a->paths, [&](Endpoint& ep) { return ep.backend->mkdir(ep.url.path, a->parents); });
  });
}

void register_touch(CLI::App& app) {
  auto paths = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = app.add_subcommand("touch", "Create empty files or update their mtime");
  cmd->footer(kExitCodesHelp);
  cmd->add_option("paths", *paths, "Paths or URLs")->required();
  cmd->callback([paths] {
    end_on_signal();
    context().exit_code = for_each_endpoint(
        *paths, [](Endpoint& ep) { return ep.backend->touch(ep.url.path, std::nullopt); });
  });
}

void register_rename(CLI::App& app) {
  auto from = std::make_shared<std::string>();
  auto to = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("rename", "Atomically rename inside one endpoint");
  cmd->footer(kExitCodesHelp);
  cmd->add_option("from", *from, "Existing path")->required();
  cmd->add_option("to", *to, "New path")->required();
  cmd->callback([from, to] {
    end_on_signal();
    auto a = open_endpoint(*from);
    auto b = context().backends->parse(*to);
    if (!a || !b) {
      print_error(!a ? a.error() : b.error());
      context().exit_code = kExitFailure;
      return;
    }
    if (a->url.scheme != b->scheme || a->url.host != b->host || a->url.port != b->port) {
      print_error(make_error(ErrorCode::kCrossDevice, "rename", *from,
                             "both paths must be on the same endpoint (use move)"));
      context().exit_code = kExitFailure;
      return;
    }
    Status s = a->backend->rename(a->url.path, b->path);
    if (!s.ok()) {
      Error e = s.error();
      if (e.code == ErrorCode::kCrossDevice) e.detail += "; use 'xfer move' to copy across devices";
      print_error(e);
      context().exit_code = kExitFailure;
    }
  });
}

void register_rm(CLI::App& app) {
  struct Args {
    std::vector<std::string> paths;
    bool recursive = false, force = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("rm", "Remove files, symlinks and (with -r) trees");
  cmd->footer(kExitCodesHelp);
  cmd->add_option("paths", a->paths, "Paths or URLs")->required();
  cmd->add_flag("-r,--recursive", a->recursive, "Remove directories and their contents");
  cmd->add_flag("-f,--force", a->force, "Ignore missing paths");
  cmd->callback([a] {
    end_on_signal();
    Outcome out;
    for (const auto& p : a->paths) {
      auto ep = open_endpoint(p);
      if (!ep) {
        out.fail(ep.error());
        continue;
      }
      auto attrs = ep->backend->stat(ep->url.path);
      if (!attrs) {
        if (a->force && attrs.error().code == ErrorCode::kNotFound) {
          ++out.ok;
        } else {
          out.fail(attrs.error());
        }
        continue;
      }
      if (attrs->type == EntryType::kDirectory && !a->recursive) {
        out.fail(
            make_error(ErrorCode::kIsDirectory, "rm", ep->url.path, "is a directory (use -r)"));
        continue;
      }
      Status s = ep->backend->remove(ep->url.path, a->recursive);
      if (s.ok()) {
        ++out.ok;
      } else {
        out.fail(s.error());
      }
    }
    context().exit_code = out.code();
  });
}

}  // namespace xfer::cli
