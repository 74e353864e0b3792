// The scanner (engine.hpp): resolves each SRC argument against DST with cp
// semantics, then walks the sources depth-first and hands files to the
// scheduler's bounded queue. resolve_roots runs on the thread that calls
// run(); scan() on the scanner thread, the only one that writes
// dir_fixups_ until it is joined.

#include "engine/engine.hpp"

#include <chrono>

#include "xfer/core/names.hpp"

namespace xfer::detail {

namespace {

// The attributes of an object store's folder, which has none of its own:
// as the store's stat() says (0755, now).
FileAttrs store_folder() {
  FileAttrs a;
  a.type = EntryType::kDirectory;
  a.mode = 0755;
  a.mtime_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  return a;
}

}  // namespace

// cp semantics (docs/cli.md): DST is a directory target when it exists as a
// directory, ends in '/', or there are several sources.
Status Engine::resolve_roots() {
  if (req_.sources.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "transfer", "", "no source given");
  }
  XFER_ASSIGN_OR_RETURN(Url dst_url, backends_registry_->parse(req_.destination));
  XFER_ASSIGN_OR_RETURN(Backend * dst, backend_for(dst_url, opt_.destination_endpoint));
  auto dst_attrs = dst->stat(dst_url.path);
  bool dst_exists = dst_attrs.ok();
  if (!dst_exists && dst_attrs.error().code != ErrorCode::kNotFound) return dst_attrs.error();
  if (dst_exists && dst_attrs->type == EntryType::kSymlink) {
    // A symlink to a directory counts as that directory, as with cp.
    std::error_code ec;
    if (dst_url.is_local() && std::filesystem::is_directory(dst_url.path, ec)) {
      dst_attrs->type = EntryType::kDirectory;
    }
  }
  bool dst_is_dir = dst_exists && dst_attrs->type == EntryType::kDirectory;
  bool into_dir = copies_into_destination(dst_is_dir, dst_url.trailing_slash, req_.sources.size());
  if (forced_into_dir_) into_dir = *forced_into_dir_;
  into_dir_ = into_dir;
  if (into_dir && dst_exists && !dst_is_dir) {
    return make_error(ErrorCode::kNotDirectory, "transfer", dst_url.path,
                      "destination is not a directory");
  }

  std::optional<Error> first_error;
  bool excluded_roots = false;
  for (const auto& src_text : req_.sources) {
    auto fail = [&](Error e) {
      if (!first_error) first_error = e;
      report(std::move(e));
    };
    auto src_url = backends_registry_->parse(src_text);
    if (!src_url) {
      fail(src_url.error());
      continue;
    }
    auto src = backend_for(*src_url, opt_.source_endpoint);
    if (!src) {
      fail(src.error());
      continue;
    }
    auto attrs = (*src)->stat(src_url->path);
    if (!attrs) {
      fail(attrs.error());
      continue;
    }
    if (attrs->type == EntryType::kDirectory && !opt_.recursive) {
      fail(make_error(ErrorCode::kIsDirectory, "transfer", src_url->path,
                      "is a directory (use -r)"));
      continue;
    }
    if (attrs->type == EntryType::kOther) {
      fail(make_error(ErrorCode::kUnsupported, "transfer", src_url->path,
                      "not a regular file, directory or symlink"));
      continue;
    }
    Root root;
    root.source = *src;
    root.destination = dst;
    root.source_path = src_url->path;
    root.source_attrs = *attrs;
    // rsync's rule: a folder written with a trailing '/' ("src/") puts its
    // contents into the destination, not a folder of its name; "src/."
    // does the same by cp's rule.
    const bool contents = src_url->trailing_slash && attrs->type == EntryType::kDirectory;
    root.destination_path =
        into_dir && !contents ? join_path(dst_url.path, base_name(src_url->path)) : dst_url.path;
    root.filter_path = contents ? std::string() : base_name(src_url->path);
    if (!root.filter_path.empty() &&
        filter_.excluded(root.filter_path, attrs->type == EntryType::kDirectory)) {
      excluded_roots = true;
      continue;  // the whole source is excluded, as rsync leaves it out
    }
    if (into_dir && !contents && base_name(src_url->path).empty()) {
      fail(make_error(ErrorCode::kInvalidArgument, "transfer", src_url->path,
                      "cannot copy the root directory into a directory by name"));
      continue;
    }
    if (src_url->is_local() && dst_url.is_local()) {
      std::error_code ec1, ec2;
      auto s = std::filesystem::weakly_canonical(root.source_path, ec1);
      auto d = std::filesystem::weakly_canonical(root.destination_path, ec2);
      if (!ec1 && !ec2) {
        auto ss = s.string(), ds = d.string();
        if (ds == ss) {
          fail(make_error(ErrorCode::kInvalidArgument, "transfer", root.source_path,
                          "source and destination are the same file"));
          continue;
        }
        if (attrs->type == EntryType::kDirectory && path_within(ds, ss)) {
          fail(make_error(ErrorCode::kInvalidArgument, "transfer", root.destination_path,
                          "destination is inside the source " + root.source_path));
          continue;
        }
      }
    }
    auto existing = dst->stat(root.destination_path);
    if (existing && attrs->type == EntryType::kDirectory &&
        existing->type != EntryType::kDirectory) {
      fail(make_error(ErrorCode::kNotDirectory, "transfer", root.destination_path,
                      "cannot overwrite a non-directory with a directory"));
      continue;
    }
    if (existing && attrs->type != EntryType::kDirectory &&
        existing->type == EntryType::kDirectory) {
      fail(make_error(ErrorCode::kIsDirectory, "transfer", root.destination_path,
                      "cannot overwrite a directory with a non-directory"));
      continue;
    }
    roots_.push_back(std::move(root));
  }
  if (roots_.empty() && (first_error || !excluded_roots)) {
    return first_error ? *first_error
                       : make_error(ErrorCode::kInvalidArgument, "transfer", "", "nothing to do");
  }
  if (into_dir && !dst_exists && !opt_.dry_run) XFER_TRY(dst->mkdir(dst_url.path, true));
  // Sync: --backup-dir is relative to the destination folder (DST, or the
  // folder of a DST file), and mtimes are compared as finely as both ends
  // keep them.
  destination_root_ =
      into_dir || roots_.empty() || roots_.front().source_attrs.type == EntryType::kDirectory
          ? dst_url.path
          : dir_name(dst_url.path);
  while (destination_root_.size() > 1 && destination_root_.back() == '/') {
    destination_root_.pop_back();
  }
  if (!opt_.backup_dir.empty()) backup_root_ = join_path(destination_root_, opt_.backup_dir);
  std::int64_t granularity = 1;
  for (const Root& r : roots_) {
    granularity = std::max({granularity, r.source->capabilities().mtime_granularity_ns,
                            r.destination->capabilities().mtime_granularity_ns});
  }
  window_ns_ =
      opt_.modify_window.count() > 0 ? opt_.modify_window.count() * 1'000'000 : granularity - 1;
  return ok_status();
}

PathList::Match Engine::selected(const Root& root, std::string_view name) const {
  if (files_from_.empty()) return PathList::Match::kIn;
  std::string_view below = name;
  if (!root.filter_path.empty()) {
    below = name.size() > root.filter_path.size() ? name.substr(root.filter_path.size() + 1)
                                                  : std::string_view();
  }
  return files_from_.match(below);
}

void Engine::scan() {
  if (opt_.sync) {
    sync_scan();
  } else {
    for (std::size_t i = 0; i < roots_.size() && !cancelled(); ++i) {
      const Root& root = roots_[i];
      if (root.source_attrs.type == EntryType::kDirectory) {
        if (root.source->capabilities().flat_listing) {
          scan_flat(i, root.source_path, root.destination_path);
        } else {
          scan_tree(i, root.source_path, root.destination_path);
        }
        continue;
      }
      counters_.files_total.fetch_add(1, std::memory_order_relaxed);
      if (!enqueue({i, root.source_path, root.destination_path, root.source_attrs.type})) break;
    }
  }
  if (req_.changes && !cancelled()) follow_changes();
  counters_.scan_complete.store(true, std::memory_order_relaxed);
  scheduler_.close_input();
}

// Depth-first walk with an explicit stack of directories. Only directory
// paths are held (never file entries), so memory is bounded by the tree's
// breadth of pending directories, not by its number of files.
void Engine::scan_tree(std::size_t root_index, std::string source, std::string destination) {
  const Root& root = roots_[root_index];
  struct Pending {
    std::string source;
    std::string destination;
    std::string filter_path;  // for the rules and --files-from; kept only when there are some
    bool all_in = false;      // --files-from: below a listed folder (everything is taken)
  };
  const bool named = !filter_.empty() || !files_from_.empty();
  std::vector<Pending> stack{{std::move(source), std::move(destination), root.filter_path,
                              selected(root, root.filter_path) == PathList::Match::kIn}};
  while (!stack.empty() && !cancelled()) {
    Pending dir = std::move(stack.back());
    stack.pop_back();
    // A folder of an object store has no attributes of its own, and its
    // stat() is a HEAD and a listing: the walk takes it as its listing
    // finds it (a folder gone meanwhile lists as kNotFound).
    Result<FileAttrs> attrs = root.source->capabilities().directories
                                  ? root.source->stat(dir.source)
                                  : Result<FileAttrs>(store_folder());
    if (!attrs) {
      report(attrs.error());
      continue;
    }
    if (!enter_folder(root_index, dir.source, dir.destination, *attrs)) continue;
    // Into an object store, a folder of more than kListAfter files is
    // listed at the destination once (a request per 1000 names) in place
    // of a HEAD per file; fewer cost fewer HEADs than the listing would.
    std::optional<DestinationListing> there;
    std::size_t files_here = 0;
    std::vector<Pending> subdirs;
    bool anything = false;  // an entry taken from this folder
    Status listed = root.source->list(dir.source, {}, [&](Entry&& e) -> Status {
      // The rules first: an excluded directory is not entered (rsync's rule).
      std::string rel;
      bool all_in = dir.all_in;
      if (named) {
        rel = dir.filter_path.empty() ? e.name : dir.filter_path + "/" + e.name;
        if (filter_.excluded(rel, e.type == EntryType::kDirectory)) return ok_status();
      }
      if (!all_in) {
        // --files-from: a listed path (and all below it), or a folder on
        // the way to one; nothing else.
        const PathList::Match m = selected(root, rel);
        if (m == PathList::Match::kOut) return ok_status();
        if (m == PathList::Match::kPassage && e.type != EntryType::kDirectory) return ok_status();
        all_in = m == PathList::Match::kIn;
      }
      anything = true;
      std::string src = join_path(dir.source, e.name);
      std::string dst = join_path(dir.destination, e.name);
      switch (e.type) {
        case EntryType::kDirectory:
          subdirs.push_back({std::move(src), std::move(dst), std::move(rel), all_in});
          break;
        case EntryType::kFile:
        case EntryType::kSymlink: {
          counters_.files_total.fetch_add(1, std::memory_order_relaxed);
          FileTask task{root_index, std::move(src), std::move(dst), e.type};
          if (++files_here == kListAfter && !opt_.dry_run && looks_at_destination()) {
            there = list_destination(root_index, dir.destination);
          }
          if (there && e.type == EntryType::kFile) {
            task.listed = there->of(e.name, root.destination->capabilities().listed_mtimes);
          }
          if (!enqueue(std::move(task))) {
            return make_error(ErrorCode::kCancelled, "scan", dir.source);
          }
          break;
        }
        case EntryType::kOther:
          counters_.files_skipped.fetch_add(1, std::memory_order_relaxed);
          if (observer_ != nullptr) {
            observer_->on_warning(fmt::format("skipping {}: not a regular file", src));
          }
          break;
      }
      return ok_status();
    });
    if (!listed.ok()) {
      if (listed.error().code == ErrorCode::kCancelled) return;
      report(listed.error());
    } else if (!anything) {
      keep_empty_folder(root_index, dir.source, dir.destination);
    }
    // Push in reverse so the walk visits subdirectories in listing order.
    for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) stack.push_back(std::move(*it));
  }
}

std::optional<Result<FileAttrs>> Engine::DestinationListing::of(const std::string& name,
                                                                bool listed_mtimes) const {
  auto it = files.find(name);
  if (it == files.end()) {
    if (others.count(name) != 0) return std::nullopt;  // a folder of that name: stat_file says
    return Result<FileAttrs>(make_error(ErrorCode::kNotFound, "stat", name, ""));
  }
  if (!listed_mtimes) return std::nullopt;  // its mtime is in metadata: a HEAD reads it
  return Result<FileAttrs>(it->second);
}

std::optional<Engine::DestinationListing> Engine::list_destination(std::size_t root_index,
                                                                   const std::string& destination) {
  Backend& b = *roots_[root_index].destination;
  if (b.capabilities().directories || !b.capabilities().network) return std::nullopt;
  DestinationListing l;
  Status listed = b.list(destination, {}, [&](Entry&& e) -> Status {
    if (l.files.size() + l.others.size() >= kMaxListedDestination) {
      return make_error(ErrorCode::kCancelled, "list", destination);  // too many to hold
    }
    if (e.type == EntryType::kFile && e.attrs) {
      l.files.emplace(std::move(e.name), *e.attrs);
    } else {
      l.others.insert(std::move(e.name));
    }
    return ok_status();
  });
  // A folder not there yet holds nothing (and listed nothing); any other
  // failure says nothing.
  if (!listed.ok() && listed.error().code != ErrorCode::kNotFound) return std::nullopt;
  return l;
}

bool Engine::enter_folder(std::size_t root_index, const std::string& source,
                          const std::string& destination, const FileAttrs& attrs) {
  const Root& root = roots_[root_index];
  if (opt_.dry_run) {
    if (observer_ != nullptr) observer_->on_planned(source + "/", destination + "/", 0);
    return true;
  }
  // An object store keeps no folders (Capabilities::directories): its
  // folders appear with the first object below them, and nothing is made
  // or fixed up here.
  if (!root.destination->capabilities().directories) return true;
  Status made = root.destination->mkdir(destination, false);
  if (!made.ok() && made.error().code != ErrorCode::kExists) {
    report(made.error());
    return false;  // nothing below can be written
  }
  if (!made.ok()) {
    auto existing = root.destination->stat(destination);
    if (!existing || existing->type != EntryType::kDirectory) {
      report(make_error(ErrorCode::kNotDirectory, "mkdir", destination,
                        "exists and is not a directory"));
      return false;
    }
  } else {
    counters_.dirs_created.fetch_add(1, std::memory_order_relaxed);
  }
  dir_fixups_.push_back({root_index, destination, attrs});
  return true;
}

void Engine::keep_empty_folder(std::size_t root_index, const std::string& source,
                               const std::string& destination) {
  const Root& root = roots_[root_index];
  const Capabilities& caps = root.destination->capabilities();
  if (caps.directories || opt_.dry_run) return;  // made by enter_folder()
  if (caps.folder_markers) {
    Status made = root.destination->mkdir(destination, false);
    if (!made.ok()) {
      report(made.error());
    } else {
      counters_.dirs_created.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }
  if (observer_ == nullptr) return;
  observer_->on_warning(
      fmt::format("skipping empty folder {}: {} keeps no empty folders (a folder there is the "
                  "prefix of the objects in it; the remote's directory_markers keeps them)",
                  source, root.destination->describe()));
}

// The walk of a source with a flat listing (an object store): one listing
// of every name below the root, in which the names below any folder come
// together. The folders from the root to the last name are held open;
// leaving one that took nothing is an empty folder. The filter rules and
// --files-from are asked once per folder, as the walk by folders asks them.
void Engine::scan_flat(std::size_t root_index, std::string source, std::string destination) {
  const Root& root = roots_[root_index];
  const bool named = !filter_.empty() || !files_from_.empty();
  struct Open {
    std::string name;  // the folder's own name ("" for the root)
    std::string source;
    std::string destination;
    std::string filter_path;
    bool all_in = false;
    bool skipped = false;  // excluded, not selected, or not made: nothing below is taken
    bool taken = false;    // something below was taken
  };
  const FileAttrs folder_attrs = store_folder();
  std::vector<Open> open;
  {
    Open top{"", source, destination, root.filter_path,
             selected(root, root.filter_path) == PathList::Match::kIn};
    if (!enter_folder(root_index, source, destination, folder_attrs)) return;
    open.push_back(std::move(top));
  }
  auto close_to = [&](std::size_t depth) {
    while (open.size() > depth) {
      const Open& o = open.back();
      if (!o.taken && !o.skipped) keep_empty_folder(root_index, o.source, o.destination);
      open.pop_back();
    }
  };
  // The folder below the innermost open one, entered (its rules asked,
  // made at the destination).
  auto enter = [&](std::string_view name) {
    Open& parent = open.back();
    Open o;
    o.name = std::string(name);
    o.source = join_path(parent.source, name);
    o.destination = join_path(parent.destination, name);
    o.skipped = parent.skipped;
    o.all_in = parent.all_in;
    if (!o.skipped && named) {
      o.filter_path = parent.filter_path.empty() ? o.name : parent.filter_path + "/" + o.name;
      o.skipped = filter_.excluded(o.filter_path, true);
    }
    if (!o.skipped && !o.all_in) {
      const PathList::Match m = selected(root, o.filter_path);
      o.skipped = m == PathList::Match::kOut;
      o.all_in = m == PathList::Match::kIn;
    }
    if (!o.skipped) {
      parent.taken = true;
      o.skipped = !enter_folder(root_index, o.source, o.destination, folder_attrs);
    }
    open.push_back(std::move(o));
  };
  std::string last;  // the last key listed: the keys come in byte order
  Status listed = root.source->list_tree(source, [&](Entry&& e) -> Status {
    if (cancelled()) return make_error(ErrorCode::kCancelled, "scan", source);
    // Out of order, a folder already left would be entered again (made
    // and fixed up once more, for each name): a store that does that is
    // refused, not followed.
    std::string key = e.type == EntryType::kDirectory ? e.name + "/" : e.name;
    if (!last.empty() && key <= last) {
      return make_error(ErrorCode::kCorrupt, "list", source,
                        fmt::format("the store listed '{}' after '{}': not in the order of their "
                                    "bytes",
                                    printable_name(key, 200), printable_name(last, 200)));
    }
    last = std::move(key);
    // The folders of e's path: those still open are kept, the rest closed,
    // the new ones entered.
    std::vector<std::string_view> parts;
    for (std::size_t at = 0;;) {
      const std::size_t slash = e.name.find('/', at);
      parts.push_back(std::string_view(e.name).substr(at, slash - at));
      if (slash == std::string::npos) break;
      at = slash + 1;
    }
    const std::size_t folders = e.type == EntryType::kDirectory ? parts.size() : parts.size() - 1;
    std::size_t keep = 1;
    while (keep < open.size() && keep - 1 < folders && open[keep].name == parts[keep - 1]) ++keep;
    close_to(keep);
    for (std::size_t i = keep - 1; i < folders; ++i) enter(parts[i]);
    if (e.type == EntryType::kDirectory) return ok_status();  // a marker: the folder, entered
    Open& dir = open.back();
    if (dir.skipped) return ok_status();
    std::string rel;
    if (named) {
      rel = dir.filter_path.empty() ? std::string(parts.back())
                                    : dir.filter_path + "/" + std::string(parts.back());
      if (filter_.excluded(rel, false)) return ok_status();
    }
    if (!dir.all_in && selected(root, rel) != PathList::Match::kIn) return ok_status();
    dir.taken = true;
    std::string src = join_path(dir.source, parts.back());
    std::string dst = join_path(dir.destination, parts.back());
    if (e.type == EntryType::kOther) {
      counters_.files_skipped.fetch_add(1, std::memory_order_relaxed);
      if (observer_ != nullptr) {
        observer_->on_warning(fmt::format("skipping {}: not a regular file", src));
      }
      return ok_status();
    }
    counters_.files_total.fetch_add(1, std::memory_order_relaxed);
    if (!enqueue({root_index, std::move(src), std::move(dst), e.type})) {
      return make_error(ErrorCode::kCancelled, "scan", source);
    }
    return ok_status();
  });
  if (!listed.ok()) {
    if (listed.error().code == ErrorCode::kCancelled) return;
    report(listed.error());
    return;  // what was not listed is not known to be empty
  }
  if (!cancelled()) close_to(0);
}

namespace {

// Releases a destination when the last holder of its task lets go.
struct ActiveGuard {
  Engine* engine;
  std::string key;
  FileTask task;  // without a guard: pushed again if it changed meanwhile
  ~ActiveGuard() { engine->release(key, std::move(task)); }
};

}  // namespace

bool Engine::enqueue(FileTask task) {
  if (!req_.changes) return scheduler_.push_file(std::move(task));
  std::string key = fmt::format("{}|{}", task.root, task.destination);
  {
    std::lock_guard lock(active_mu_);
    auto [it, fresh] = active_.try_emplace(key, false);
    if (!fresh) {
      it->second = true;  // copied again once the copy in flight ends
      return true;
    }
  }
  task.guard = std::make_shared<ActiveGuard>(ActiveGuard{this, std::move(key), task});
  return scheduler_.push_file(std::move(task));
}

void Engine::release(const std::string& key, FileTask task) {
  std::lock_guard lock(active_mu_);
  auto it = active_.find(key);
  if (it == active_.end()) return;
  if (it->second) redo_.push_back(std::move(task));
  active_.erase(it);
}

// After the first scan: the feed's events until it is closed, then until
// every copy it started (and every copy again of a path that changed while
// it was copied) has ended. Polls every 50 ms so a cancel is seen at once.
void Engine::apply_dir_fixups() {
  // Newest first (children before parents, as they were pushed in walk
  // order); a folder compared twice (a watch) gets its newest attributes
  // only.
  std::unordered_set<std::string> done;
  for (auto it = dir_fixups_.rbegin(); it != dir_fixups_.rend(); ++it) {
    if (!done.insert(std::to_string(it->root) + '\n' + it->destination).second) continue;
    Status s = roots_[it->root].destination->set_attrs(it->destination, it->attrs);
    if (!s.ok() && !(req_.changes && s.error().code == ErrorCode::kNotFound)) report(s.error());
  }
  dir_fixups_.clear();
}

void Engine::follow_changes() {
  for (;;) {
    if (cancelled()) return;
    std::vector<FileTask> redo;
    {
      std::lock_guard lock(active_mu_);
      redo.swap(redo_);
    }
    for (auto& t : redo) {
      if (!enqueue(std::move(t))) return;
    }
    if (auto event = req_.changes->next(std::chrono::milliseconds(50))) {
      apply_change(*event);
      continue;
    }
    if (!dir_fixups_.empty()) {
      // A quiet moment with no copy in flight: the folders' attributes,
      // which the end of a run would set (a watch has no end), children
      // first. A later copy into one of them moves its mtime again, until
      // the next quiet moment after a comparison of that folder.
      bool idle = false;
      {
        std::lock_guard lock(active_mu_);
        idle = active_.empty() && redo_.empty();
      }
      if (idle) apply_dir_fixups();
    }
    if (req_.changes->drained()) {
      std::lock_guard lock(active_mu_);
      if (active_.empty() && redo_.empty()) return;
    }
  }
}

void Engine::apply_change(const ChangeEvent& event) {
  if (event.root >= roots_.size()) {
    report(make_error(ErrorCode::kInvalidArgument, "change", event.path,
                      fmt::format("no source argument #{}", event.root)));
    return;
  }
  // The paths join a source and a destination folder: one validation of
  // each component, as for names from a peer.
  for (const std::string* path : {&event.path, &event.from}) {
    if (path == &event.from && event.kind != ChangeEvent::Kind::kRenamed) continue;
    if (Status ok = validate_relative_path(*path, "changed path", true); !ok.ok()) {
      report(make_error(ErrorCode::kInvalidArgument, "change", printable_name(*path),
                        ok.error().detail));
      return;
    }
    // PATH_MAX: a longer one is no path on this system, and its folders
    // would be compared one by one.
    if (path->size() > kMaxChangedPathBytes) {
      report(make_error(ErrorCode::kInvalidArgument, "change", printable_name(*path, 100),
                        "changed path longer than 4096 bytes"));
      return;
    }
    // xfer's own partials are never synced (a resume needs them).
    const std::string_view last = std::string_view(*path).substr(path->rfind('/') + 1);
    if (is_xfer_temporary(last)) return;
  }
  if (opt_.sync) {
    sync_change(event);
    return;
  }
  if (event.kind == ChangeEvent::Kind::kRemoved) return;  // a copy deletes nothing
  const Root& root = roots_[event.root];
  if (root.source_attrs.type != EntryType::kDirectory) {
    counters_.files_total.fetch_add(1, std::memory_order_relaxed);
    (void)enqueue({event.root, root.source_path, root.destination_path, root.source_attrs.type});
    return;
  }
  const std::string src = join_path(root.source_path, event.path);
  const std::string dst = join_path(root.destination_path, event.path);
  auto attrs = root.source->stat(src);
  if (!attrs) {
    if (attrs.error().code != ErrorCode::kNotFound) report(attrs.error());
    return;  // gone again: its removal is not a copy's to propagate
  }
  if (attrs->type == EntryType::kDirectory) {
    scan_tree(event.root, src, dst);
    return;
  }
  if (attrs->type == EntryType::kOther) return;
  // Its folder may be newer than the first scan.
  if (!opt_.dry_run) (void)root.destination->mkdir(dir_name(dst), true);
  counters_.files_total.fetch_add(1, std::memory_order_relaxed);
  (void)enqueue({event.root, src, dst, attrs->type});
}

}  // namespace xfer::detail
