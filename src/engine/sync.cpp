// xfer sync (engine.hpp): the scanner's walk when the `sync` option is set.
// Each folder is listed on both ends (one List call each, attributes
// included), the two listings are merged by name, and each name is decided
// once: copied (new, or changed by the quick check), left alone (unchanged;
// its mode and mtime set when only they differ), made way for (another type
// stands in its place), or deleted (--delete: once every copy is
// committed; --delete-before: in a first pass). Unchanged files never reach
// a worker, and no file is opened to learn that it is unchanged.
//
// Memory: one folder's two listings, the stack of folders still to visit
// and the deletions planned, never the tree's unchanged files.
//
// Threads: sync_scan and everything it calls run on the scanner thread;
// run_deletions for --delete on the thread of run(), after the workers
// joined; unchanged_content, announce and backup (for a replaced file) on
// workers.

#include <cstdlib>

#include "engine/engine.hpp"
#include "xfer/core/names.hpp"

namespace xfer::detail {
namespace {

constexpr std::string_view kNewFile = ">f+++++++++";
constexpr std::string_view kNewDir = "cd+++++++++";
constexpr std::string_view kNewLink = "cL+++++++++";
constexpr std::string_view kChangedLink = "cLc........";
constexpr std::string_view kDeleting = "*deleting  ";

// rsync's itemize code "YXcstpoguax" for an entry that exists on both ends:
// Y what happens ('>' data sent, '.' attributes only), X the type, then
// checksum, size, time and permissions; owner, group, ACLs and xattrs are
// not kept by xfer, so never marked.
std::string item_code(char y, char x, bool size, bool time, bool perms) {
  std::string code = fmt::format("{}{}...........", y, x).substr(0, 11);
  if (size) code[3] = 's';
  if (time) code[4] = 't';
  if (perms) code[5] = 'p';
  return code;
}

std::string join_name(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

// A folder as rsync names it: "sub/", and "./" for the transfer's root.
std::string folder_name(const std::string& name) {
  return name.empty() ? std::string("./") : name + "/";
}

bool perms_differ(const FileAttrs& a, const FileAttrs& b) {
  return (a.mode & 07777) != (b.mode & 07777);
}

}  // namespace

bool Engine::same_mtime(std::int64_t a, std::int64_t b) const {
  // In unsigned arithmetic: a peer's mtime may be INT64_MIN.
  const std::uint64_t diff = a > b ? static_cast<std::uint64_t>(a) - static_cast<std::uint64_t>(b)
                                   : static_cast<std::uint64_t>(b) - static_cast<std::uint64_t>(a);
  return diff <= static_cast<std::uint64_t>(window_ns_);
}

// rsync's order: --ignore-existing and --update keep what is there, even
// with -I; then the size; then --size-only, --checksum or the mtime.
Engine::Verdict Engine::compare(const FileAttrs& source, const FileAttrs& destination,
                                bool mtimes) const {
  if (opt_.ignore_existing) return Verdict::kKeep;
  if (opt_.update && mtimes && destination.mtime_ns > source.mtime_ns &&
      !same_mtime(source.mtime_ns, destination.mtime_ns)) {
    return Verdict::kKeep;
  }
  if (opt_.ignore_times) return Verdict::kCopy;
  if (source.size != destination.size) return Verdict::kCopy;
  if (opt_.size_only) return Verdict::kUnchanged;
  if (opt_.checksum) return Verdict::kCompareContent;
  return mtimes && same_mtime(source.mtime_ns, destination.mtime_ns) ? Verdict::kUnchanged
                                                                     : Verdict::kCopy;
}

void Engine::sync_scan() {
  if (opt_.delete_before) {
    for (std::size_t i = 0; i < roots_.size() && !cancelled(); ++i) {
      const Root& root = roots_[i];
      if (root.source_attrs.type != EntryType::kDirectory) continue;
      auto there = root.destination->stat(root.destination_path);
      if (!there || there->type != EntryType::kDirectory) continue;
      sync_tree(
          i, {root.source_path, root.destination_path, root.filter_path, root.source_attrs, *there},
          SyncPass::kDeletions);
    }
    if (!cancelled()) run_deletions(deletions_);
    deletions_.clear();
  }
  for (std::size_t i = 0; i < roots_.size() && !cancelled(); ++i) sync_root(i);
}

void Engine::sync_root(std::size_t i) {
  const Root& root = roots_[i];
  std::optional<Entry> theirs;
  if (auto there = root.destination->stat(root.destination_path)) {
    theirs = Entry{base_name(root.destination_path), there->type, *there};
  } else if (there.error().code != ErrorCode::kNotFound) {
    report(there.error());
    sync_io_error_.store(true);
    return;
  }
  if (root.source_attrs.type == EntryType::kDirectory) {
    std::optional<FileAttrs> dst_attrs;
    if (theirs) dst_attrs = theirs->attrs;
    sync_tree(
        i,
        {root.source_path, root.destination_path, root.filter_path, root.source_attrs, dst_attrs},
        SyncPass::kCopy);
    return;
  }
  const Entry ours{base_name(root.source_path), root.source_attrs.type, root.source_attrs};
  std::vector<SyncDir> none;
  sync_entry(i, root.source_path, root.destination_path, base_name(root.destination_path), &ours,
             theirs ? &*theirs : nullptr, SyncPass::kCopy, none);
}

// sync --watch: one event from the watcher (scanner thread). Each is
// applied by comparing the one path it names, both ends, as the walk
// would; a rescan compares everything again. Deletions are made at once,
// under the usual rules (none after a failure since the last rescan).
void Engine::sync_change(const ChangeEvent& e) {
  const Root& root = roots_[e.root];
  current_seen_ = e.seen;
  const std::uint64_t deleted_before = counters_.files_deleted.load();
  if (e.kind == ChangeEvent::Kind::kRescan || e.path.empty() ||
      root.source_attrs.type != EntryType::kDirectory) {
    // A fresh start for the failure rule: what failed before this
    // comparison is compared again now.
    sync_io_error_.store(false);
    failed_base_.store(counters_.files_failed.load());
    const std::uint64_t errors_before = counters_.errors.load();
    sync_root(e.root);
    // A comparison of the whole tree that met no error repairs what
    // failed before it (a server that was restarting, a file that was
    // busy): those errors no longer fail the run.
    if (!sync_io_error_.load() && counters_.errors.load() == errors_before) {
      std::uint64_t repaired = errors_repaired_.load();
      while (errors_before > repaired &&
             !errors_repaired_.compare_exchange_weak(repaired, errors_before)) {
      }
    }
  } else {
    if (e.kind == ChangeEvent::Kind::kRenamed && opt_.delete_extraneous && !opt_.dry_run) {
      // A rename is a rename at the destination too, when the old name is
      // gone at the source and the new one is free at the destination;
      // the comparison of the new name below then finds it current.
      const std::string to = join_path(root.destination_path, e.path);
      const std::string from = join_path(root.destination_path, e.from);
      auto source_from = root.source->stat(join_path(root.source_path, e.from));
      auto there = root.destination->stat(from);
      auto free = root.destination->stat(to);
      if (!source_from && source_from.error().code == ErrorCode::kNotFound && there && !free &&
          free.error().code == ErrorCode::kNotFound &&
          !excluded_path(e.root, e.from, there->type) &&
          !excluded_path(e.root, e.path, there->type)) {
        if (root.destination->rename(from, to).ok()) {
          counters_.files_renamed.fetch_add(1, std::memory_order_relaxed);
        }
      }
    }
    if (e.kind == ChangeEvent::Kind::kRenamed) sync_path(e.root, e.from);
    sync_path(e.root, e.path);
  }
  run_deletions(deletions_);
  deletions_.clear();
  if (counters_.files_deleted.load() > deleted_before && e.kind == ChangeEvent::Kind::kRemoved) {
    record_latency(e.seen);
  }
  current_seen_ = {};
}

bool Engine::excluded_path(std::size_t root_index, const std::string& rel, EntryType type) const {
  if (filter_.empty()) return false;
  const std::string name = join_name(roots_[root_index].filter_path, rel);
  // Every folder on the way: below an excluded folder nothing is synced.
  for (std::size_t slash = 0; (slash = name.find('/', slash)) != std::string::npos; ++slash) {
    if (filter_.excluded(name.substr(0, slash), true)) return true;
  }
  return filter_.excluded(name, type == EntryType::kDirectory);
}

void Engine::sync_path(std::size_t root_index, const std::string& rel) {
  const Root& root = roots_[root_index];
  const std::string name = join_name(root.filter_path, rel);
  const std::size_t slash = rel.rfind('/');
  if (slash != std::string::npos) {
    // The folder must be there first: if it is not, it is synced whole
    // (this path with it).
    const std::string parent = rel.substr(0, slash);
    auto there = root.destination->stat(join_path(root.destination_path, parent));
    if (!there || there->type != EntryType::kDirectory) {
      sync_path(root_index, parent);
      return;
    }
    if (excluded_path(root_index, parent, EntryType::kDirectory)) return;
  }
  const std::string src = join_path(root.source_path, rel);
  const std::string dst = join_path(root.destination_path, rel);
  auto entry = [&](Backend& b, const std::string& path) -> std::optional<Entry> {
    auto a = b.stat(path);
    if (a) return Entry{base_name(rel), a->type, *a};
    if (a.error().code != ErrorCode::kNotFound) {
      report(a.error());
      sync_io_error_.store(true);
    }
    return std::nullopt;
  };
  const std::optional<Entry> s = entry(*root.source, src);
  const std::optional<Entry> d = entry(*root.destination, dst);
  if (!s && !d) return;
  std::vector<SyncDir> subdirs;
  (void)sync_entry(root_index, src, dst, name, s ? &*s : nullptr, d ? &*d : nullptr,
                   SyncPass::kCopy, subdirs);
  for (auto& dir : subdirs) sync_tree(root_index, std::move(dir), SyncPass::kCopy);
}

void Engine::record_latency(Clock::time_point seen) {
  if (seen == Clock::time_point{}) return;
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - seen).count();
  const auto us = static_cast<std::uint64_t>(ms * 1000.0);
  counters_.propagation_last_us.store(us, std::memory_order_relaxed);
  std::uint64_t max = counters_.propagation_max_us.load(std::memory_order_relaxed);
  while (us > max && !counters_.propagation_max_us.compare_exchange_weak(max, us)) {
  }
  counters_.changes_propagated.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(latency_mu_);
  latency_max_ms_ = std::max(latency_max_ms_, ms);
  ++latency_count_;
  if (latencies_ms_.size() < kMaxLatencySamples) latencies_ms_.push_back(ms);
}

void Engine::sync_tree(std::size_t root_index, SyncDir top, SyncPass pass) {
  const Root& root = roots_[root_index];
  const Capabilities& caps = root.destination->capabilities();
  std::vector<SyncDir> stack;
  stack.push_back(std::move(top));
  while (!stack.empty() && !cancelled()) {
    SyncDir dir = std::move(stack.back());
    stack.pop_back();
    // A folder's mode and mtime are set at the end when they differ or
    // when something in it changes (which moves its mtime): an unchanged
    // folder costs no call.
    bool fix_attrs = false;
    if (pass == SyncPass::kCopy) {
      if (!dir.destination_attrs) {
        // A store without folders makes one with its first object (or,
        // with markers, one once its listing shows it empty: below).
        if (!opt_.dry_run && caps.directories) {
          Status made = root.destination->mkdir(dir.destination, false);
          if (!made.ok() && made.error().code != ErrorCode::kExists) {
            report(made.error());
            sync_io_error_.store(true);
            continue;  // nothing below can be written
          }
          if (made.ok()) {
            counters_.dirs_created.fetch_add(1, std::memory_order_relaxed);
          } else {
            // Something is there now that the listing did not show. Only
            // a folder (never a symlink to one: the files below would be
            // written through it) is walked, and then compared as one.
            auto there = root.destination->stat(dir.destination);
            if (!there || there->type != EntryType::kDirectory) {
              counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
              report(make_error(ErrorCode::kNotDirectory, "mkdir", dir.destination,
                                "exists and is not a folder"));
              sync_io_error_.store(true);
              if (dir.ahead) {
                (void)dir.ahead->get();
                --reading_ahead_;
              }
              continue;
            }
            dir.destination_attrs = *there;
            if (dir.ahead) {
              (void)dir.ahead->get();  // read without the destination: read again
              --reading_ahead_;
              dir.ahead.reset();
            }
          }
        }
        emit_change(kNewDir, folder_name(dir.name), "", 0);
        fix_attrs = caps.directories;
      } else if (caps.directories) {  // a prefix keeps no attributes
        const bool time =
            caps.mtime && !same_mtime(dir.source_attrs.mtime_ns, dir.destination_attrs->mtime_ns);
        const bool perms =
            caps.permissions && perms_differ(dir.source_attrs, *dir.destination_attrs);
        if (time || perms)
          emit_change(item_code('.', 'd', false, time, perms), folder_name(dir.name), "", 0);
        fix_attrs = time || perms;
      }
    }
    SyncListing listing;
    if (dir.ahead) {
      listing = dir.ahead->get();
      --reading_ahead_;
    } else {
      listing = list_both(root, dir);
    }
    if (!listing.source.ok() || !listing.destination.ok()) {
      if (cancelled()) return;
      report(!listing.source.ok() ? listing.source.error() : listing.destination.error());
      sync_io_error_.store(true);
      continue;
    }
    const std::vector<Entry>& ours = listing.ours;
    const std::vector<Entry>& theirs = listing.theirs;
    std::vector<SyncDir> subdirs;
    std::size_t i = 0;
    std::size_t j = 0;
    while ((i < ours.size() || j < theirs.size()) && !cancelled()) {
      const Entry* s = nullptr;
      const Entry* d = nullptr;
      if (j >= theirs.size() || (i < ours.size() && ours[i].name < theirs[j].name)) {
        s = &ours[i++];
      } else if (i >= ours.size() || theirs[j].name < ours[i].name) {
        d = &theirs[j++];
      } else {
        s = &ours[i++];
        d = &theirs[j++];
      }
      const std::string& entry = s != nullptr ? s->name : d->name;
      fix_attrs |=
          sync_entry(root_index, join_path(dir.source, entry), join_path(dir.destination, entry),
                     join_name(dir.name, entry), s, d, pass, subdirs);
    }
    if (pass == SyncPass::kCopy && fix_attrs && !opt_.dry_run) {
      dir_fixups_.push_back({root_index, dir.destination, dir.source_attrs});
    }
    if (pass == SyncPass::kCopy && !caps.directories && caps.folder_markers && !opt_.dry_run &&
        !dir.destination_attrs && ours.empty()) {
      Status made = root.destination->mkdir(dir.destination, false);  // its marker
      if (made.ok()) {
        counters_.dirs_created.fetch_add(1, std::memory_order_relaxed);
      } else {
        report(made.error());
        sync_io_error_.store(true);
      }
    }
    // In reverse, so the walk visits subfolders in name order.
    for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) stack.push_back(std::move(*it));
    // The next folders' listings are read ahead, kListAhead at most: over
    // xfer:// each is a round trip, and one after another they would add up
    // (1,000 folders, 1,000 round trips).
    // At most kListAhead in flight in all (a read-ahead buried under new
    // subfolders still counts), so a deep tree never means more threads.
    for (auto it = stack.rbegin(); it != stack.rend() && reading_ahead_ < kListAhead; ++it) {
      if (it->ahead) continue;
      SyncDir copy = *it;
      try {
        it->ahead = std::make_shared<std::future<SyncListing>>(std::async(
            std::launch::async, [this, &root, d = std::move(copy)] { return list_both(root, d); }));
        ++reading_ahead_;
      } catch (const std::system_error&) {
        break;  // no thread to spare: the folder is listed when its turn comes
      }
    }
  }
}

Engine::SyncListing Engine::list_both(const Root& root, const SyncDir& dir) const {
  SyncListing l;
  ListOptions with_attrs;
  with_attrs.want_attrs = true;
  // One folder's listings are held whole to be merged: a folder of more
  // than kMaxSyncFolderEntries names (a hostile endpoint's endless
  // listing) is an error, not an allocation without end.
  auto bounded = [](std::vector<Entry>& to, const std::string& path) {
    return [&to, &path](Entry&& e) -> Status {
      if (to.size() >= kMaxSyncFolderEntries) {
        return make_error(ErrorCode::kCorrupt, "list", path,
                          fmt::format("more than {} entries in one folder", kMaxSyncFolderEntries));
      }
      to.push_back(std::move(e));
      return ok_status();
    };
  };
  l.source = root.source->list(dir.source, with_attrs, bounded(l.ours, dir.source));
  if (l.source.ok() && dir.destination_attrs) {
    auto keep = bounded(l.theirs, dir.destination);
    l.destination = root.destination->list(dir.destination, with_attrs, [&](Entry&& e) -> Status {
      if (protected_name(dir.destination, e.name)) return ok_status();
      return keep(std::move(e));
    });
    if (!l.destination.ok() && l.destination.error().code == ErrorCode::kNotFound) {
      l.destination = ok_status();
      l.theirs.clear();
    }
  }
  auto by_name = [](const Entry& a, const Entry& b) { return a.name < b.name; };
  auto same_name = [](const Entry& a, const Entry& b) { return a.name == b.name; };
  std::sort(l.ours.begin(), l.ours.end(), by_name);
  std::sort(l.theirs.begin(), l.theirs.end(), by_name);
  // A name listed twice (a hostile or broken endpoint: a file and a
  // folder of one name) would be decided twice; the folder is not walked.
  if (l.source.ok() &&
      std::adjacent_find(l.ours.begin(), l.ours.end(), same_name) != l.ours.end()) {
    l.source = make_error(ErrorCode::kCorrupt, "list", dir.source, "a name is listed twice");
  }
  if (l.destination.ok() &&
      std::adjacent_find(l.theirs.begin(), l.theirs.end(), same_name) != l.theirs.end()) {
    l.destination =
        make_error(ErrorCode::kCorrupt, "list", dir.destination, "a name is listed twice");
  }
  return l;
}

bool Engine::sync_entry(std::size_t root_index, const std::string& src, const std::string& dst,
                        const std::string& name, const Entry* s, const Entry* d, SyncPass pass,
                        std::vector<SyncDir>& subdirs) {
  const Root& root = roots_[root_index];
  // The rules: a name they exclude is left alone on both ends, and so never
  // deleted (rsync's rule without --delete-excluded).
  // --backup-dir is never part of the sync, on either end: a source entry
  // of its name (a symlink out of the destination, say) is not made there.
  if (!backup_root_.empty() && dst == backup_root_) return false;
  const EntryType rule_type = s != nullptr ? s->type : d->type;
  if (!filter_.empty() && filter_.excluded(name, rule_type == EntryType::kDirectory)) {
    return false;
  }
  // --files-from: only listed paths, and what is below a listed folder,
  // are compared, copied or deleted; the folders on the way are entered.
  if (!files_from_.empty() && root.source_attrs.type == EntryType::kDirectory) {
    const PathList::Match m = selected(root, name);
    if (m == PathList::Match::kOut) return false;
    if (m == PathList::Match::kPassage && (s == nullptr || s->type != EntryType::kDirectory)) {
      return false;
    }
  }
  const bool deleting = opt_.delete_extraneous || opt_.delete_before;
  auto attrs_of = [&](const Entry& e, const std::string& path,
                      Backend& b) -> std::optional<FileAttrs> {
    if (e.attrs) return e.attrs;
    auto a = b.stat(path);  // a backend that lists without attributes
    if (!a) {
      report(a.error());
      sync_io_error_.store(true);
      return std::nullopt;
    }
    return *a;
  };

  if (pass == SyncPass::kDeletions) {
    if (s == nullptr) {
      collect_deletions(root_index, dst, name, d->type, deletions_);
    } else if (d != nullptr && s->type == EntryType::kDirectory &&
               d->type == EntryType::kDirectory) {
      auto sa = attrs_of(*s, src, *root.source);
      auto da = attrs_of(*d, dst, *root.destination);
      if (sa && da) subdirs.push_back({src, dst, name, *sa, *da});
    }
    return false;
  }
  if (s == nullptr) {
    if (deleting && !opt_.delete_before) {
      collect_deletions(root_index, dst, name, d->type, deletions_);
      return true;
    }
    return false;
  }
  if (s->type == EntryType::kOther) {
    counters_.files_skipped.fetch_add(1, std::memory_order_relaxed);
    if (observer_ != nullptr) {
      observer_->on_warning(fmt::format("skipping {}: not a regular file", src));
    }
    return false;
  }
  auto sa = attrs_of(*s, src, *root.source);
  if (!sa) return false;
  std::optional<FileAttrs> da;
  if (d != nullptr) {
    da = attrs_of(*d, dst, *root.destination);
    if (!da) return false;
    da->type = d->type;
  }
  // A side whose listing gives a store's write time, not the file's mtime
  // (S3): where the sizes agree, the file's own mtime decides, from one
  // look at it (a HEAD). Where they differ, the copy is decided already.
  if (da && s->type == EntryType::kFile && da->type == EntryType::kFile && sa->size == da->size) {
    for (auto [attrs, backend, path] :
         {std::tuple{&*sa, root.source, &src}, std::tuple{&*da, root.destination, &dst}}) {
      if (backend->capabilities().listed_mtimes) continue;
      auto own = backend->stat_file(*path);
      if (!own) {
        report(own.error());
        sync_io_error_.store(true);
        return false;
      }
      attrs->mtime_ns = own->mtime_ns;
    }
  }
  if (req_.destination_guard && !req_.destination_guard(name, da)) {
    counters_.files_skipped.fetch_add(1, std::memory_order_relaxed);
    if (observer_ != nullptr) {
      observer_->on_warning(
          fmt::format("{}: changed since this sync listed it; left for the next run", dst));
    }
    return false;
  }
  if (da && opt_.ignore_existing) {
    // Whatever is there stays, of any type; a folder that is not one
    // cannot take the source's entries (rsync fails them the same way).
    if (s->type == EntryType::kDirectory && da->type != EntryType::kDirectory) {
      counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
      report(make_error(ErrorCode::kNotDirectory, "sync", dst,
                        "is not a folder, and --ignore-existing keeps it"));
      return false;
    }
    if (s->type != EntryType::kDirectory) {
      counters_.files_total.fetch_add(1, std::memory_order_relaxed);
      counters_.files_opened.fetch_add(1, std::memory_order_relaxed);
      counters_.files_done.fetch_add(1, std::memory_order_relaxed);
      counters_.files_unchanged.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  }
  bool backup_old = false;
  if (da && da->type != s->type) {
    // Another type stands in the way. A file and a symlink replace each
    // other in one step (the commit, symlink()); a folder, or a folder's
    // place, needs the old entry gone first, as rsync does without --delete.
    const bool in_one_step = s->type != EntryType::kDirectory && da->type != EntryType::kDirectory;
    if (!in_one_step && !make_way(root_index, dst, name, da->type)) return true;
    backup_old = in_one_step && !backup_root_.empty();
    da.reset();
  }
  if (s->type == EntryType::kDirectory) {
    subdirs.push_back({src, dst, name, *sa, da});
    return !da.has_value();  // a new folder here
  }
  counters_.files_total.fetch_add(1, std::memory_order_relaxed);
  FileTask task{root_index, src, dst, s->type};
  task.name = name;
  task.seen = current_seen_;
  task.sync = kSyncDecided;
  if (backup_old || (da && !backup_root_.empty())) task.sync |= kSyncBackup;
  auto unchanged = [&](std::uint64_t size) {
    counters_.files_opened.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes_total.fetch_add(size, std::memory_order_relaxed);
    counters_.files_done.fetch_add(1, std::memory_order_relaxed);
    counters_.files_unchanged.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes_unchanged.fetch_add(size, std::memory_order_relaxed);
  };
  if (s->type == EntryType::kSymlink) {
    if (da && da->symlink_target == sa->symlink_target) {
      unchanged(0);
      return false;
    }
    task.item = da ? kChangedLink : kNewLink;
    (void)enqueue(std::move(task));
    return true;
  }
  if (!da) {
    task.item = kNewFile;
    (void)enqueue(std::move(task));
    return true;
  }
  const Capabilities& caps = root.destination->capabilities();
  const bool time = caps.mtime && !same_mtime(sa->mtime_ns, da->mtime_ns);
  const bool perms = caps.permissions && perms_differ(*sa, *da);
  switch (compare(*sa, *da, caps.mtime)) {
    case Verdict::kKeep:
      unchanged(sa->size);
      return false;
    case Verdict::kUnchanged:
      unchanged(sa->size);
      if (time || perms) {
        // The same file with other attributes (--size-only, or a chmod):
        // set, not sent, as rsync does.
        if (!opt_.dry_run) {
          if (Status set = root.destination->set_attrs(dst, *sa); !set.ok()) {
            report(set.error());
            return false;
          }
        }
        counters_.files_attrs_set.fetch_add(1, std::memory_order_relaxed);
        emit_change(item_code('.', 'f', false, time, perms), name, "", 0);
      }
      return false;
    case Verdict::kCompareContent:
      task.sync |= kSyncCompareContent;
      break;
    case Verdict::kCopy:
      break;
  }
  if (delta_allowed(root) && da->type == EntryType::kFile && da->size >= kDeltaMinSize &&
      sa->size >= kDeltaMinSize) {
    task.sync |= kSyncDelta;
    task.old_size = da->size;
  }
  task.item = item_code('>', 'f', sa->size != da->size, time, perms);
  // --checksum marks every update whose bytes differ; with another size
  // they differ without being read.
  if (opt_.checksum && sa->size != da->size) task.item[2] = 'c';
  (void)enqueue(std::move(task));
  return true;
}

bool Engine::make_way(std::size_t root_index, const std::string& path, const std::string& name,
                      EntryType type) {
  if (opt_.dry_run) return true;
  Backend& destination = *roots_[root_index].destination;
  if (type == EntryType::kDirectory) {
    if (opt_.delete_extraneous || opt_.delete_before) {
      std::vector<Deletion> tree;
      collect_deletions(root_index, path, name, type, tree);
      // These deletions cannot wait for the end, but they keep its rules:
      // none after an error, none past --max-delete (counting those made
      // and planned).
      const std::uint64_t planned =
          tree.size() + deletions_.size() + counters_.files_deleted.load();
      const char* held =
          sync_io_error_.load() || counters_.files_failed.load() > failed_base_.load()
              ? "a listing or a file failed, so nothing is deleted"
          : opt_.max_delete != 0 && planned > opt_.max_delete ? "it would pass --max-delete"
                                                              : nullptr;
      if (held != nullptr) {
        counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
        report(make_error(ErrorCode::kNotEmpty, "sync", path,
                          fmt::format("a folder stands in the way and is not deleted: {}", held)));
        return false;
      }
      // What was in it is itemized as deleted; the folder itself is shown
      // as what replaces it (rsync's lines).
      for (std::size_t i = 0; i < tree.size(); ++i)
        (void)remove_entry(tree[i], i + 1 < tree.size());
    } else {
      (void)destination.remove(path, false);  // an empty folder goes, as with rsync
    }
    auto left = destination.stat(path);
    if (left) {
      counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
      report(make_error(ErrorCode::kNotEmpty, "sync", path,
                        opt_.delete_extraneous || opt_.delete_before
                            ? "cannot delete non-empty directory (excluded files are kept in it)"
                            : "cannot delete non-empty directory (use --delete to replace it)"));
      return false;
    }
    return true;
  }
  Status gone = backup_root_.empty() ? destination.remove(path, false) : backup(root_index, path);
  if (!gone.ok()) {
    counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
    report(gone.error());
    return false;
  }
  return true;
}

void Engine::collect_deletions(std::size_t root_index, const std::string& path,
                               const std::string& name, EntryType type,
                               std::vector<Deletion>& out) {
  if (type != EntryType::kDirectory) {
    out.push_back({root_index, path, name, type});
    return;
  }
  // Children first, each folder after everything in it. Once more than
  // --max-delete are planned none will be made: no need to list on (a
  // hostile endpoint's endless tree ends here too).
  Backend& destination = *roots_[root_index].destination;
  auto enough = [&] {
    if (out.size() >= kMaxSyncFolderEntries * 4 && !sync_io_error_.exchange(true)) {
      report(make_error(ErrorCode::kCorrupt, "delete", path,
                        "more than 4,000,000 entries to delete: none is deleted"));
    }
    return cancelled() || sync_io_error_.load() ||
           (opt_.max_delete != 0 && out.size() > opt_.max_delete);
  };
  std::vector<std::pair<Deletion, bool>> stack;  // (folder, listed already)
  stack.push_back({{root_index, path, name, type}, false});
  while (!stack.empty()) {
    if (enough()) {
      // The plan is over the limit either way; say so once at the end.
      if (!cancelled()) out.push_back(std::move(stack.back().first));
      stack.pop_back();
      continue;
    }
    if (stack.back().second) {
      out.push_back(std::move(stack.back().first));
      stack.pop_back();
      continue;
    }
    stack.back().second = true;
    const Deletion folder = stack.back().first;
    std::vector<Entry> entries;
    Status listed = destination.list(folder.path, {}, [&](Entry&& e) -> Status {
      if (!protected_name(folder.path, e.name)) entries.push_back(std::move(e));
      return ok_status();
    });
    if (!listed.ok()) {
      report(listed.error());
      sync_io_error_.store(true);
      continue;
    }
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.name < b.name; });
    for (auto& e : entries) {
      const std::string child_name = join_name(folder.name, e.name);
      // Excluded names are kept, and so is the folder that holds them.
      if (!filter_.empty() && filter_.excluded(child_name, e.type == EntryType::kDirectory)) {
        continue;
      }
      Deletion child{root_index, join_path(folder.path, e.name), child_name, e.type};
      if (e.type == EntryType::kDirectory) {
        stack.push_back({std::move(child), false});
      } else {
        out.push_back(std::move(child));
      }
    }
  }
}

// --delete: only after a sync whose every listing and copy succeeded
// (rsync skips deletions after an I/O error, for the same reason: a file
// missing from a listing that failed is not a file to delete), and not at
// all when there are more than --max-delete.
void Engine::run_deletions(std::vector<Deletion>& deletions) {
  if (deletions.empty() || cancelled()) return;
  const std::uint64_t failed = counters_.files_failed.load() - failed_base_.load();
  if (sync_io_error_.load() || failed > 0) {
    if (observer_ != nullptr) {
      observer_->on_warning(
          fmt::format("{} deletion{} not done: {}; they are made by a sync without errors",
                      deletions.size(), deletions.size() == 1 ? "" : "s",
                      failed > 0 ? fmt::format("{} file{} failed", failed, failed == 1 ? "" : "s")
                                 : std::string("a listing failed")));
    }
    return;
  }
  if (opt_.max_delete != 0 && deletions.size() > opt_.max_delete) {
    report(make_error(ErrorCode::kInvalidArgument, "delete", destination_root_,
                      fmt::format("{} deletions planned, more than --max-delete {}: none done",
                                  deletions.size(), opt_.max_delete)));
    return;
  }
  for (const Deletion& d : deletions) {
    if (cancelled()) return;
    (void)remove_entry(d);
  }
}

bool Engine::remove_entry(const Deletion& d, bool shown_as_deleted) {
  const std::string shown = d.type == EntryType::kDirectory ? folder_name(d.name) : d.name;
  if (opt_.dry_run) {
    counters_.files_deleted.fetch_add(1, std::memory_order_relaxed);
    if (shown_as_deleted) emit_change(kDeleting, shown, "", 0);
    return true;
  }
  Backend& destination = *roots_[d.root].destination;
  Status s = !backup_root_.empty() && d.type != EntryType::kDirectory
                 ? backup(d.root, d.path)
                 : destination.remove(d.path, false);
  if (!s.ok()) {
    // A folder that keeps an excluded file stays, as with rsync.
    if (d.type == EntryType::kDirectory && s.error().code == ErrorCode::kNotEmpty) return false;
    if (s.error().code == ErrorCode::kNotFound) return true;  // gone already
    report(s.error());
    return false;
  }
  counters_.files_deleted.fetch_add(1, std::memory_order_relaxed);
  if (shown_as_deleted) emit_change(kDeleting, shown, "", 0);
  return true;
}

Status Engine::backup(std::size_t root_index, const std::string& path) {
  std::string rel;
  if (path.size() > destination_root_.size() && path_within(path, destination_root_)) {
    rel = path.substr(destination_root_.size());
    while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
  }
  if (rel.empty()) rel = base_name(path);
  const std::string target = join_path(backup_root_, rel);
  Backend& destination = *roots_[root_index].destination;
  // Every folder from the destination down to the target's must be a
  // folder, never a symlink: a rename through one would move the file out
  // of the destination.
  std::string at = destination_root_;
  const std::string below =
      dir_name(target).substr(std::min(dir_name(target).size(), destination_root_.size()));
  for (std::size_t start = 0; start < below.size();) {
    std::size_t slash = below.find('/', start);
    if (slash == std::string::npos) slash = below.size();
    if (slash > start) {
      at = join_path(at, below.substr(start, slash - start));
      auto there = destination.stat(at);
      if (!there) {
        if (there.error().code != ErrorCode::kNotFound) return there.error();
        Status made = destination.mkdir(at, false);
        // Another worker's backup may make it first: then it is looked at
        // again like one found there.
        if (!made.ok() && made.error().code != ErrorCode::kExists) return made;
        if (!made.ok()) there = destination.stat(at);
      }
      if (there && there->type != EntryType::kDirectory) {
        return make_error(ErrorCode::kNotDirectory, "backup", at,
                          "is not a folder (--backup-dir must not pass through a symlink)");
      }
    }
    start = slash + 1;
  }
  return destination.rename(path, target);
}

bool Engine::protected_name(const std::string& destination_path,
                            std::string_view entry_name) const {
  if (is_xfer_temporary(entry_name)) return true;
  return !backup_root_.empty() && join_path(destination_path, entry_name) == backup_root_;
}

void Engine::emit_change(std::string_view item, const std::string& name, const std::string& target,
                         std::uint64_t size) {
  if (observer_ != nullptr) observer_->on_change(item, name, target, size);
}

bool Engine::unchanged_content(FileTask& task, Source& source) {
  const FileAttrs& attrs = source.attrs();
  Backend& destination = *roots_[task.root].destination;
  auto same = same_content(task, source, attrs.size);
  if (!same || !*same) {
    if (task.item.size() > 2) task.item[2] = 'c';  // sent because the bytes differ
    return false;
  }
  counters_.files_done.fetch_add(1, std::memory_order_relaxed);
  counters_.files_unchanged.fetch_add(1, std::memory_order_relaxed);
  counters_.bytes_unchanged.fetch_add(attrs.size, std::memory_order_relaxed);
  const bool time = task.item.size() == 11 && task.item[4] == 't';
  const bool perms = task.item.size() == 11 && task.item[5] == 'p';
  if (time || perms) {
    if (!opt_.dry_run) {
      if (Status set = destination.set_attrs(task.destination, attrs); !set.ok()) {
        report(set.error());
        return true;
      }
    }
    counters_.files_attrs_set.fetch_add(1, std::memory_order_relaxed);
    emit_change(item_code('.', 'f', false, time, perms), task.name, "", 0);
  }
  return true;
}

void Engine::announce(const FileTask& task, std::uint64_t size, const std::string& target) {
  if (!opt_.dry_run) record_latency(task.seen);
  if (observer_ == nullptr) return;
  if (opt_.dry_run) {
    observer_->on_planned(task.source, task.destination, size);
  } else {
    observer_->on_copied(task.source, task.destination, size);
  }
  if (!task.item.empty()) observer_->on_change(task.item, task.name, target, size);
}

}  // namespace xfer::detail
