// xfer sync --bidirectional A B (bisync.hpp; docs/sync.md "Bidirectional"):
// walk both trees, compare each path with the state of the last run, plan,
// make the conflict renames and the deletions, run the two one-way legs,
// walk again and write the new state.
//
// Safety rules, each the answer to a way bidirectional tools lose data:
// - a listing that fails stops the run before anything changes (a folder
//   that cannot be read must not look deleted);
// - a side that lost every entry the state had stops it too (an unmounted
//   disk looks like that);
// - a deletion is made only of what is still as it was listed (stat just
//   before), a folder only when empty;
// - a path changed on both sides is never overwritten: the loser is renamed
//   first, then both versions are copied across;
// - the state is written last, atomically; a path that did not end alike
//   on both sides keeps its old record, so the next run sees it again.
//
// Threads: the caller's; walk() uses kWalkThreads per side while listing.

#include "xfer/engine/bisync.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "xfer/core/checksum.hpp"
#include "xfer/core/files.hpp"
#include "xfer/core/names.hpp"
#include "xfer/core/url.hpp"
#include "xfer/engine/filter.hpp"
#include "xfer/engine/jobs.hpp"

namespace xfer {
namespace {

constexpr std::string_view kStateMagic = "xfer-bisync-v1";
// A tree larger than this is refused rather than held (each entry costs
// about 100 bytes three times: two listings and the state).
constexpr std::size_t kMaxEntries = 10'000'000;
constexpr std::size_t kMaxStateBytes = std::size_t{2} << 30;
constexpr unsigned kWalkThreads = 4;

std::string rel_join(const std::string& dir, std::string_view name) {
  return dir.empty() ? std::string(name) : dir + "/" + std::string(name);
}

// ---------------------------------------------------------------------------
// The state file's text.

// Bytes that would break a space-separated line: controls, space, '%', DEL.
std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c <= 0x20 || c == '%' || c == 0x7f) {
      out += fmt::format("%{:02X}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::optional<std::string> unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
    if (ec != std::errc() || p != s.data() + i + 3) return std::nullopt;
    out += static_cast<char>(v);
    i += 2;
  }
  return out;
}

char type_letter(EntryType t) {
  switch (t) {
    case EntryType::kDirectory:
      return 'd';
    case EntryType::kSymlink:
      return 'l';
    default:
      return 'f';
  }
}

// ---------------------------------------------------------------------------
// Walking one side.

// Lists the tree under `root` (a folder) with attributes, the rules
// applied as a one-way sync applies them (an excluded folder is not
// entered), xfer's temporaries and special files left out. Any listing
// error fails the walk: a folder that could not be read must not look
// empty. Sorted by path.
Result<std::vector<BisyncEntry>> walk(Backend& backend, const std::string& root,
                                      const FilterSet& filter, const std::atomic<bool>* cancel) {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> todo{std::string()};
  unsigned busy = 0;
  std::optional<Error> failed;       // under mu
  std::atomic<bool> failing{false};  // failed is set: read by listing callbacks without mu
  std::vector<BisyncEntry> out;
  auto stopped = [&] { return failing.load() || (cancel != nullptr && cancel->load()); };

  auto list_one = [&](const std::string& rel, std::vector<BisyncEntry>& found,
                      std::vector<std::string>& folders) -> Status {
    const std::string dir = rel.empty() ? root : join_path(root, rel);
    std::unordered_set<std::string> names;
    return backend.list(dir, ListOptions{true}, [&](Entry&& e) -> Status {
      if (stopped()) return make_error(ErrorCode::kCancelled, "list", dir, "stopped");
      XFER_TRY(validate_name_component(e.name, "listed name"));
      // The legs take their paths one per line: a name holding a line
      // break (or a carriage return, which a list's line may lose) could
      // name another path there. Refused, before anything changes.
      if (e.name.find_first_of("\r\n") != std::string::npos) {
        return make_error(ErrorCode::kInvalidArgument, "list", join_path(dir, e.name),
                          "a name holding a line break is not synced both ways (rename it)");
      }
      if (!names.insert(e.name).second) {
        return make_error(ErrorCode::kInvalidArgument, "list", join_path(dir, e.name),
                          "the name is listed twice");
      }
      if (is_xfer_temporary(e.name) || e.type == EntryType::kOther) return ok_status();
      std::string path = rel_join(rel, e.name);
      if (!filter.empty() && filter.excluded(path, e.type == EntryType::kDirectory)) {
        return ok_status();
      }
      FileAttrs attrs;
      if (e.attrs) {
        attrs = *e.attrs;
      } else {
        XFER_ASSIGN_OR_RETURN(attrs, backend.stat(join_path(dir, e.name)));
        if (attrs.type != e.type) {
          return make_error(ErrorCode::kChanged, "list", join_path(dir, e.name),
                            "changed type while listed");
        }
      }
      BisyncEntry b;
      b.path = path;
      b.type = e.type;
      if (e.type == EntryType::kFile) {
        b.size = attrs.size;
        b.mode = attrs.mode & 07777;
        b.mtime_ns = attrs.mtime_ns;
      } else if (e.type == EntryType::kSymlink) {
        b.target = attrs.symlink_target;
        b.mtime_ns = attrs.mtime_ns;
      }
      if (e.type == EntryType::kDirectory) folders.push_back(path);
      found.push_back(std::move(b));
      return ok_status();
    });
  };

  auto worker = [&] {
    std::unique_lock lock(mu);
    while (true) {
      cv.wait(lock, [&] { return stopped() || !todo.empty() || busy == 0; });
      if (stopped() || (todo.empty() && busy == 0)) {
        cv.notify_all();
        return;
      }
      std::string rel = std::move(todo.front());
      todo.pop_front();
      ++busy;
      lock.unlock();
      std::vector<BisyncEntry> found;
      std::vector<std::string> folders;
      Status s = list_one(rel, found, folders);
      lock.lock();
      --busy;
      if (!s.ok() && !failed) {
        failed = s.error();
        failing.store(true);
      } else if (s.ok()) {
        if (out.size() + found.size() > kMaxEntries) {
          failed = make_error(ErrorCode::kInvalidArgument, "list", root,
                              fmt::format("more than {} entries: too large for one "
                                          "bidirectional sync (sync its folders one by one)",
                                          kMaxEntries));
          failing.store(true);
        }
        for (auto& f : found) out.push_back(std::move(f));
        for (auto& f : folders) todo.push_back(std::move(f));
      }
      cv.notify_all();
    }
  };
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < kWalkThreads; ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (failed) return std::move(*failed);
  if (cancel != nullptr && cancel->load()) {
    return make_error(ErrorCode::kCancelled, "list", root, "interrupted");
  }
  std::sort(out.begin(), out.end(),
            [](const BisyncEntry& x, const BisyncEntry& y) { return x.path < y.path; });
  return out;
}

// ---------------------------------------------------------------------------
// Comparing.

bool same_as_record(const BisyncEntry& e, const BisyncRecord& r, bool side_a) {
  if (e.type != r.type) return false;
  switch (e.type) {
    case EntryType::kDirectory:
      return true;
    case EntryType::kSymlink:
      return e.target == r.target;
    default:
      return e.size == r.size && e.mode == r.mode && e.mtime_ns == (side_a ? r.mtime_a : r.mtime_b);
  }
}

struct Side {
  char name = 'A';
  std::string text;  // as the user gave it
  Url url;
  std::string root;  // the folder's path on its backend
  std::unique_ptr<Backend> backend;
  std::vector<BisyncEntry> entries;
  EndpointOptions endpoint;
  bool missing = false;  // the folder does not exist (yet)

  const BisyncEntry* find(std::string_view path) const {
    auto it = std::lower_bound(entries.begin(), entries.end(), path,
                               [](const BisyncEntry& e, std::string_view p) { return e.path < p; });
    return it != entries.end() && it->path == path ? &*it : nullptr;
  }
  std::string full(const std::string& rel) const { return join_path(root, rel); }
};

struct Conflict {
  std::string path;
  std::string renamed_to;
  int loser = 0;             // side index
  bool make_folder = false;  // the winner is a folder
};

struct Plan {
  std::vector<std::string> copy[2];           // to side i: paths to send from the other
  std::vector<const BisyncEntry*> remove[2];  // on side i
  std::vector<Conflict> conflicts;
};

class Bisync {
 public:
  Bisync(const BisyncRequest& r, TransferCounters& c, BisyncObserver* o,
         const std::atomic<bool>* cancel)
      : req_(r), counters_(c), observer_(o), cancel_(cancel) {}

  Result<TransferResult> run();

 private:
  bool cancelled() const { return cancel_ != nullptr && cancel_->load(); }
  Status open_side(Side& s, const std::string& text, const EndpointOptions& endpoint);
  Status walk_both();
  bool alike(const BisyncEntry& a, const BisyncEntry& b) const;
  Result<bool> same_content(const BisyncEntry& a, const BisyncEntry& b);
  Status plan(const std::vector<BisyncRecord>* state);
  std::string conflict_name(const std::string& path, char side);
  void report_plan();
  void apply_conflicts(TransferResult& total);
  void apply_deletions(int side, TransferResult& total);
  void run_leg(int to, TransferResult& total);
  std::vector<BisyncRecord> next_state(const std::vector<BisyncRecord>* old);
  void report(Error e, TransferResult& total) {
    counters_.errors.fetch_add(1, std::memory_order_relaxed);
    if (observer_ != nullptr) observer_->on_error(e);
    if (total.errors.size() < 100) total.errors.push_back(std::move(e));
  }

  const BisyncRequest& req_;
  TransferCounters& counters_;
  BisyncObserver* observer_;
  const std::atomic<bool>* cancel_;
  std::shared_ptr<const BackendRegistry> registry_;
  FilterSet filter_;
  Side sides_[2];
  std::int64_t window_ns_ = 0;
  std::string stamp_;
  Plan plan_;
  // Paths whose change failed this run (a rename or deletion): kept at
  // their old state.
  std::unordered_set<std::string> failed_;
  std::mutex failed_mu_;  // failed_, while a leg's guard adds to it
  // Paths renamed away by a conflict on side i: absent there now (or a
  // new folder when the winner is one).
  std::unordered_map<std::string, bool> moved_away_[2];
  // Does side `to` still hold at `path` what the plan saw (`now`, just
  // listed by a leg)? Otherwise it changed after the listing: the leg
  // leaves it, and the next run sees the change.
  bool as_planned(int to, const std::string& path, const std::optional<FileAttrs>& now) const;
};

Status Bisync::open_side(Side& s, const std::string& text, const EndpointOptions& endpoint) {
  s.text = text;
  s.endpoint = endpoint;
  XFER_ASSIGN_OR_RETURN(s.url, registry_->parse(text));
  s.root = s.url.path;
  if (s.url.is_local()) {
    std::error_code ec;
    s.root = std::filesystem::absolute(s.root, ec).lexically_normal().string();
    if (ec) return make_error(ErrorCode::kInvalidArgument, "sync", text, ec.message());
  }
  while (s.root.size() > 1 && s.root.back() == '/') s.root.pop_back();
  EndpointOptions options = endpoint;
  options.streams = req_.options.streams;
  options.encrypt = req_.options.encrypt;
  options.cc = req_.options.cc;
  options.bind = req_.options.bind;
  options.streams_max = req_.options.streams_max;
  XFER_ASSIGN_OR_RETURN(s.backend, registry_->create(s.url, options));
  auto attrs = s.backend->stat(s.root);
  if (!attrs) {
    if (attrs.error().code == ErrorCode::kNotFound) {
      s.missing = true;  // made on a first run; an error after (run())
      return ok_status();
    }
    return attrs.error();
  }
  if (attrs->type != EntryType::kDirectory) {
    return make_error(ErrorCode::kInvalidArgument, "sync --bidirectional", text,
                      "not a folder (--bidirectional keeps two folders alike)");
  }
  return ok_status();
}

Status Bisync::walk_both() {
  Result<std::vector<BisyncEntry>> listed[2] = {std::vector<BisyncEntry>{},
                                                std::vector<BisyncEntry>{}};
  std::thread other(
      [&] { listed[1] = walk(*sides_[1].backend, sides_[1].root, filter_, cancel_); });
  listed[0] = walk(*sides_[0].backend, sides_[0].root, filter_, cancel_);
  other.join();
  for (int i = 0; i < 2; ++i) {
    if (!listed[i]) return listed[i].error();
    sides_[i].entries = std::move(listed[i]).value();
  }
  return ok_status();
}

bool Bisync::alike(const BisyncEntry& a, const BisyncEntry& b) const {
  if (a.type != b.type) return false;
  switch (a.type) {
    case EntryType::kDirectory:
      return true;
    case EntryType::kSymlink:
      return a.target == b.target;
    default: {
      const std::uint64_t diff =
          a.mtime_ns > b.mtime_ns
              ? static_cast<std::uint64_t>(a.mtime_ns) - static_cast<std::uint64_t>(b.mtime_ns)
              : static_cast<std::uint64_t>(b.mtime_ns) - static_cast<std::uint64_t>(a.mtime_ns);
      return a.size == b.size && a.mode == b.mode && diff <= static_cast<std::uint64_t>(window_ns_);
    }
  }
}

// Two files of one size: hashed where each lives (xfer:// asks xferd).
Result<bool> Bisync::same_content(const BisyncEntry& a, const BisyncEntry& b) {
  XFER_ASSIGN_OR_RETURN(auto da,
                        sides_[0].backend->checksum(sides_[0].full(a.path), a.size, cancel_));
  XFER_ASSIGN_OR_RETURN(auto db,
                        sides_[1].backend->checksum(sides_[1].full(b.path), b.size, cancel_));
  return da.same_bytes(db);
}

std::string Bisync::conflict_name(const std::string& path, char side) {
  std::string base = fmt::format("{}.conflict-{}-{}", path, side, stamp_);
  std::string name = base;
  for (int n = 2; sides_[0].find(name) != nullptr || sides_[1].find(name) != nullptr; ++n) {
    name = fmt::format("{}-{}", base, n);
  }
  return name;
}

// Each path of either side or the state, in order, decided once.
Status Bisync::plan(const std::vector<BisyncRecord>* state) {
  struct Item {
    const BisyncEntry* e[2] = {nullptr, nullptr};
    const BisyncRecord* s = nullptr;
    bool changed[2] = {false, false};
  };
  std::vector<Item> items;
  std::size_t i0 = 0;
  std::size_t i1 = 0;
  std::size_t is = 0;
  const auto& e0 = sides_[0].entries;
  const auto& e1 = sides_[1].entries;
  static const std::vector<BisyncRecord> kNone;
  const auto& st = state != nullptr ? *state : kNone;
  while (i0 < e0.size() || i1 < e1.size() || is < st.size()) {
    std::string_view next;
    bool have = false;
    auto consider = [&](std::string_view p) {
      if (!have || p < next) next = p;
      have = true;
    };
    if (i0 < e0.size()) consider(e0[i0].path);
    if (i1 < e1.size()) consider(e1[i1].path);
    if (is < st.size()) consider(st[is].path);
    Item it;
    if (i0 < e0.size() && e0[i0].path == next) it.e[0] = &e0[i0++];
    if (i1 < e1.size() && e1[i1].path == next) it.e[1] = &e1[i1++];
    if (is < st.size() && st[is].path == next) it.s = &st[is++];
    for (int side = 0; side < 2; ++side) {
      it.changed[side] =
          it.s != nullptr ? it.e[side] == nullptr || !same_as_record(*it.e[side], *it.s, side == 0)
                          : it.e[side] != nullptr;
    }
    if (it.changed[0] || it.changed[1]) items.push_back(it);
  }
  // The folders holding a change on each side: replacing such a folder by
  // a file is a conflict, not a copy.
  std::unordered_set<std::string> dirty[2];
  for (const Item& it : items) {
    const std::string& path = it.e[0] ? it.e[0]->path : it.e[1] ? it.e[1]->path : it.s->path;
    for (int side = 0; side < 2; ++side) {
      if (!it.changed[side]) continue;
      for (std::size_t slash = path.rfind('/'); slash != std::string::npos && slash > 0;
           slash = path.rfind('/', slash - 1)) {
        if (!dirty[side].insert(path.substr(0, slash)).second) break;
      }
    }
  }
  auto copy_to = [&](int to, const std::string& path) { plan_.copy[to].push_back(path); };
  for (const Item& it : items) {
    if (cancelled()) return make_error(ErrorCode::kCancelled, "sync", "", "interrupted");
    const BisyncEntry* a = it.e[0];
    const BisyncEntry* b = it.e[1];
    const std::string& path = a ? a->path : b ? b->path : it.s->path;
    auto replaces_dirty_folder = [&](int to) {
      const BisyncEntry* there = it.e[to];
      const BisyncEntry* here = it.e[1 - to];
      return there != nullptr && there->type == EntryType::kDirectory && here != nullptr &&
             here->type != EntryType::kDirectory && dirty[to].count(path) > 0;
    };
    int from = -1;  // the side whose version goes across
    bool conflict = false;
    if (it.changed[0] != it.changed[1]) {
      from = it.changed[0] ? 0 : 1;
      if (it.e[from] == nullptr) {
        // Deleted on `from`, unchanged on the other: deleted there too.
        if (it.e[1 - from] != nullptr) plan_.remove[1 - from].push_back(it.e[1 - from]);
        continue;
      }
      if (replaces_dirty_folder(1 - from)) conflict = true;
    } else {
      // Changed on both sides.
      if (a == nullptr && b == nullptr) continue;  // deleted on both
      if (a != nullptr && b != nullptr && alike(*a, *b)) continue;
      if (a == nullptr || b == nullptr) {
        from = a != nullptr ? 0 : 1;  // an edit beats a deletion
        if (it.e[1 - from] == nullptr) {
          copy_to(1 - from, path);
          continue;
        }
      } else if (a->type == EntryType::kDirectory && b->type == EntryType::kDirectory) {
        continue;  // their contents decide
      } else if (a->type == EntryType::kFile && b->type == EntryType::kFile && a->size == b->size) {
        auto same = same_content(*a, *b);
        if (!same) return same.error();
        if (*same) {
          // One content, other attributes: the newer's go across.
          from = a->mtime_ns >= b->mtime_ns ? 0 : 1;
          copy_to(1 - from, path);
          continue;
        }
        conflict = true;
      } else {
        conflict = true;
      }
    }
    if (!conflict) {
      copy_to(1 - from, path);
      continue;
    }
    // Both kept: a folder keeps its name, else the newer file (A on a tie).
    int winner = 0;
    if (a->type == EntryType::kDirectory) {
      winner = 0;
    } else if (b->type == EntryType::kDirectory) {
      winner = 1;
    } else {
      winner = b->mtime_ns > a->mtime_ns ? 1 : 0;
    }
    const int loser = 1 - winner;
    Conflict c{path, conflict_name(path, sides_[loser].name), loser,
               it.e[winner]->type == EntryType::kDirectory};
    // A folder is made, not copied whole: what is in it has plans of its
    // own (the loser's side deleted some of it when it put a file there).
    if (!c.make_folder) copy_to(loser, path);
    copy_to(winner, c.renamed_to);
    plan_.conflicts.push_back(std::move(c));
  }
  for (auto& v : plan_.copy) std::sort(v.begin(), v.end());
  // Children before their folders.
  for (auto& v : plan_.remove) {
    std::sort(v.begin(), v.end(),
              [](const BisyncEntry* x, const BisyncEntry* y) { return x->path > y->path; });
  }
  return ok_status();
}

void Bisync::report_plan() {
  if (observer_ == nullptr) return;
  for (const Conflict& c : plan_.conflicts) {
    observer_->on_conflict(c.path, c.renamed_to, sides_[c.loser].name);
  }
  for (int to = 1; to >= 0; --to) {
    observer_->on_side(sides_[to].name);
    const Side& there = sides_[to];
    const Side& here = sides_[1 - to];
    for (const BisyncEntry* e : plan_.remove[to]) {
      observer_->on_change("*deleting  ",
                           e->type == EntryType::kDirectory ? e->path + "/" : e->path, "", 0);
    }
    for (const std::string& path : plan_.copy[to]) {
      const BisyncEntry* src = here.find(path);
      const BisyncEntry* dst = there.find(path);
      bool renamed = false;
      for (const Conflict& c : plan_.conflicts) {
        if (c.loser == to && c.path == path) renamed = true;
      }
      if (src == nullptr) {
        // A conflict's renamed version: it exists only once renamed.
        observer_->on_change(">f+++++++++", path, "", 0);
        continue;
      }
      if (renamed) dst = nullptr;
      const char x = src->type == EntryType::kDirectory ? 'd'
                     : src->type == EntryType::kSymlink ? 'L'
                                                        : 'f';
      std::string item;
      if (dst == nullptr || dst->type != src->type) {
        item = src->type == EntryType::kFile ? ">f+++++++++" : fmt::format("c{}+++++++++", x);
      } else {
        item = fmt::format(">{}.........", x).substr(0, 11);
        if (src->size != dst->size) item[3] = 's';
        if (src->mtime_ns != dst->mtime_ns) item[4] = 't';
        if (src->mode != dst->mode) item[5] = 'p';
        if (src->type == EntryType::kFile && src->size == dst->size &&
            src->mtime_ns == dst->mtime_ns) {
          item[0] = '.';
        }
      }
      observer_->on_change(item, src->type == EntryType::kDirectory ? path + "/" : path,
                           src->target, src->size);
    }
  }
}

// The loser of each conflict renamed on its side, if it is still as listed.
void Bisync::apply_conflicts(TransferResult& total) {
  for (Conflict& c : plan_.conflicts) {
    if (cancelled()) return;
    Side& side = sides_[c.loser];
    const BisyncEntry* listed = side.find(c.path);
    auto now = side.backend->stat(side.full(c.path));
    Status s = ok_status();
    if (!now) {
      s = now.error();
    } else if (listed == nullptr || now->type != listed->type ||
               (listed->type == EntryType::kFile &&
                (now->size != listed->size || now->mtime_ns != listed->mtime_ns))) {
      s = make_error(ErrorCode::kChanged, "sync", side.full(c.path),
                     "changed while the sync ran: left for the next run");
    } else {
      const std::string planned_name = c.renamed_to;
      // The name must be free on both sides, excluded names included
      // (rename replaces its target).
      for (int n = 2; sides_[0].backend->stat(sides_[0].full(c.renamed_to)).ok() ||
                      sides_[1].backend->stat(sides_[1].full(c.renamed_to)).ok();
           ++n) {
        const std::string base = c.renamed_to.substr(0, c.renamed_to.rfind(".conflict-"));
        c.renamed_to = fmt::format("{}.conflict-{}-{}-{}", base, side.name, stamp_, n);
      }
      if (c.renamed_to != planned_name) {
        std::replace(plan_.copy[1 - c.loser].begin(), plan_.copy[1 - c.loser].end(), planned_name,
                     c.renamed_to);
      }
      s = side.backend->rename(side.full(c.path), side.full(c.renamed_to));
      if (s.ok() && c.make_folder) s = side.backend->mkdir(side.full(c.path), false);
    }
    if (!s.ok()) {
      failed_.insert(c.path);
      failed_.insert(c.renamed_to);
      total.files_failed += 1;
      counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
      report(s.error(), total);
      continue;
    }
    moved_away_[c.loser][c.path] = c.make_folder;
    total.bisync.conflicts += 1;
    if (observer_ != nullptr) observer_->on_conflict(c.path, c.renamed_to, side.name);
  }
  // A failed rename: neither version of it goes across, nor anything
  // below it (a folder's contents would replace the loser's file on the
  // way).
  std::vector<std::string> held;
  for (const Conflict& c : plan_.conflicts) {
    if (failed_.count(c.path) > 0) held.push_back(c.path + "/");
  }
  for (auto& v : plan_.copy) {
    std::erase_if(v, [&](const std::string& p) {
      if (failed_.count(p) > 0) return true;
      for (const std::string& h : held) {
        if (p.compare(0, h.size(), h) == 0) return true;
      }
      return false;
    });
  }
}

// Deletions on `side` of what the other side deleted, each only if still as
// listed; a folder only when empty (what is left in it was changed here,
// and goes across).
void Bisync::apply_deletions(int index, TransferResult& total) {
  Side& side = sides_[index];
  for (const BisyncEntry* e : plan_.remove[index]) {
    if (cancelled()) return;
    const std::string full = side.full(e->path);
    auto now = side.backend->stat(full);
    if (!now) {
      if (now.error().code == ErrorCode::kNotFound) continue;
      failed_.insert(e->path);
      report(now.error(), total);
      continue;
    }
    if (now->type != e->type ||
        (e->type == EntryType::kFile && (now->size != e->size || now->mtime_ns != e->mtime_ns ||
                                         (now->mode & 07777) != e->mode)) ||
        (e->type == EntryType::kSymlink && now->symlink_target != e->target)) {
      failed_.insert(e->path);
      continue;  // changed since listed: the next run sees the change
    }
    Status s = side.backend->remove(full, false);
    if (!s.ok()) {
      if (e->type == EntryType::kDirectory && s.error().code == ErrorCode::kNotEmpty) continue;
      if (s.error().code == ErrorCode::kNotFound) continue;
      failed_.insert(e->path);
      total.files_failed += 1;
      counters_.files_failed.fetch_add(1, std::memory_order_relaxed);
      report(s.error(), total);
      continue;
    }
    (index == 0 ? total.bisync.deleted_a : total.bisync.deleted_b) += 1;
    total.files_deleted += 1;
    counters_.files_deleted.fetch_add(1, std::memory_order_relaxed);
    if (observer_ != nullptr) {
      observer_->on_change("*deleting  ",
                           e->type == EntryType::kDirectory ? e->path + "/" : e->path, "", 0);
    }
  }
}

// A leg's events, passed on, its changes counted (what went which way).
class LegObserver final : public TransferObserver {
 public:
  explicit LegObserver(TransferObserver* next) : next_(next) {}
  void on_error(const Error& e) override {
    if (next_ != nullptr) next_->on_error(e);
  }
  void on_warning(const std::string& m) override {
    if (next_ != nullptr) next_->on_warning(m);
  }
  void on_copied(const std::string& s, const std::string& d, std::uint64_t size) override {
    if (next_ != nullptr) next_->on_copied(s, d, size);
  }
  void on_change(std::string_view item, const std::string& name, const std::string& target,
                 std::uint64_t size) override {
    // A folder's attributes alone: the legs set them on the folders they
    // pass through, but folders' mtimes are not part of the state (each
    // side's change inside a folder moves them), so it is no change here.
    if (item.size() >= 2 && item[0] == '.' && item[1] == 'd') return;
    if (!item.empty() && item.front() != '*') changes.fetch_add(1, std::memory_order_relaxed);
    if (next_ != nullptr) next_->on_change(item, name, target, size);
  }
  void on_planned(const std::string& s, const std::string& d, std::uint64_t size) override {
    if (next_ != nullptr) next_->on_planned(s, d, size);
  }
  std::atomic<std::uint64_t> changes{0};

 private:
  TransferObserver* next_;
};

bool Bisync::as_planned(int to, const std::string& path,
                        const std::optional<FileAttrs>& now) const {
  if (auto it = moved_away_[to].find(path); it != moved_away_[to].end()) {
    return !now || (it->second && now->type == EntryType::kDirectory);
  }
  const BisyncEntry* listed = sides_[to].find(path);
  if (listed == nullptr) return !now;
  if (!now || now->type != listed->type) return false;
  if (listed->type == EntryType::kDirectory) return true;  // its entries are checked one by one
  return now->size == listed->size && now->mtime_ns == listed->mtime_ns;
}

// One one-way sync of the planned paths into side `to`.
void Bisync::run_leg(int to, TransferResult& total) {
  if (plan_.copy[to].empty() || cancelled()) return;
  const Side& from = sides_[1 - to];
  const Side& into = sides_[to];
  // PathList's normal form, written directly: normalize() would read a
  // leading '#' or ';' as a comment. Every path is a checked relative path
  // without line breaks (walk()).
  std::string list;
  for (const std::string& p : plan_.copy[to]) list += p + "\n";
  TransferRequest leg;
  std::string source = from.text;
  if (source.empty() || source.back() != '/') source += '/';
  leg.sources = {source};
  leg.destination = into.text;
  leg.options = req_.options;
  leg.options.sync = true;
  leg.options.recursive = true;
  leg.options.bidirectional = false;
  leg.options.resync = false;
  leg.options.dry_run = false;
  leg.options.delete_extraneous = false;
  leg.options.delete_before = false;
  leg.options.max_delete = 0;
  leg.options.files_from = std::move(list);
  // No job to resume: `xfer resume` of a leg would replay a stale copy
  // over a newer edit; the next bidirectional run plans again instead.
  leg.options.checkpoint = false;
  leg.options.job_id.clear();
  leg.options.source_endpoint = from.endpoint;
  leg.options.destination_endpoint = into.endpoint;
  leg.backends = registry_;
  // What the receiving side holds must still be what the plan saw: an
  // edit made there since is left alone (and found by the next run), not
  // overwritten. The window left is from this check to the copy's commit.
  leg.destination_guard = [this, to](const std::string& path, const std::optional<FileAttrs>& now) {
    if (as_planned(to, path, now)) return true;
    std::lock_guard lock(failed_mu_);
    failed_.insert(path);
    return false;
  };
  LegObserver counted(observer_);
  auto r = run_transfer(leg, counters_, &counted, cancel_);
  if (!r) {
    report(r.error(), total);
    for (const std::string& p : plan_.copy[to]) failed_.insert(p);
    return;
  }
  const TransferResult& x = *r;
  (to == 0 ? total.bisync.to_a : total.bisync.to_b) += counted.changes.load();
  total.files_done += x.files_done;
  total.files_failed += x.files_failed;
  total.files_skipped += x.files_skipped;
  total.bytes_done += x.bytes_done;
  total.retries += x.retries;
  total.files_unchanged += x.files_unchanged;
  total.bytes_unchanged += x.bytes_unchanged;
  total.files_attrs_set += x.files_attrs_set;
  total.files_resumed += x.files_resumed;
  total.bytes_resumed += x.bytes_resumed;
  total.peak_buffer_bytes = std::max(total.peak_buffer_bytes, x.peak_buffer_bytes);
  total.cancelled = total.cancelled || x.cancelled;
  for (const Error& e : x.errors) {
    if (total.errors.size() < 100) total.errors.push_back(e);
  }
}

// After the run: a path alike on both sides is recorded as it is now; one
// that is not (a failure, a change made meanwhile) keeps its old record, so
// the next run compares it with what both sides last agreed on.
std::vector<BisyncRecord> Bisync::next_state(const std::vector<BisyncRecord>* old) {
  std::vector<BisyncRecord> out;
  static const std::vector<BisyncRecord> kNone;
  const auto& st = old != nullptr ? *old : kNone;
  const auto& e0 = sides_[0].entries;
  const auto& e1 = sides_[1].entries;
  std::size_t i0 = 0;
  std::size_t i1 = 0;
  std::size_t is = 0;
  while (i0 < e0.size() || i1 < e1.size()) {
    std::string_view next;
    if (i0 < e0.size()) next = e0[i0].path;
    if (i1 < e1.size() && (i0 >= e0.size() || e1[i1].path < next)) next = e1[i1].path;
    const BisyncEntry* a = i0 < e0.size() && e0[i0].path == next ? &e0[i0++] : nullptr;
    const BisyncEntry* b = i1 < e1.size() && e1[i1].path == next ? &e1[i1++] : nullptr;
    while (is < st.size() && st[is].path < next) ++is;
    const BisyncRecord* s = is < st.size() && st[is].path == next ? &st[is] : nullptr;
    if (a != nullptr && b != nullptr && alike(*a, *b) && failed_.count(a->path) == 0) {
      out.push_back({a->path, a->type, a->size, a->mode, a->mtime_ns, b->mtime_ns, a->target});
    } else if (s != nullptr) {
      out.push_back(*s);
    }
  }
  return out;
}

Result<TransferResult> Bisync::run() {
  const auto start = std::chrono::steady_clock::now();
  registry_ = req_.backends ? req_.backends : BackendRegistry::with_builtins();
  if (!req_.options.filter.empty())
    XFER_TRY(filter_.add_filter_text(req_.options.filter, "filter"));
  sides_[0].name = 'A';
  sides_[1].name = 'B';
  XFER_TRY(open_side(sides_[0], req_.a, req_.options.source_endpoint));
  XFER_TRY(open_side(sides_[1], req_.b, req_.options.destination_endpoint));
  if (sides_[0].url.to_string() == sides_[1].url.to_string() && sides_[0].root == sides_[1].root) {
    return make_error(ErrorCode::kInvalidArgument, "sync --bidirectional", req_.a,
                      "A and B are the same folder");
  }
  std::int64_t granularity = 1;
  for (const Side& s : sides_) {
    granularity = std::max(granularity, s.backend->capabilities().mtime_granularity_ns);
  }
  window_ns_ = req_.options.modify_window.count() > 0
                   ? req_.options.modify_window.count() * 1'000'000
                   : granularity - 1;

  // The pair's state, and its lock: one run of a pair at a time.
  const std::string state_root =
      req_.options.state_root.empty() ? default_state_root() : req_.options.state_root;
  const std::string file =
      bisync_state_file(state_root, sides_[0].url.is_local() ? sides_[0].root : req_.a,
                        sides_[1].url.is_local() ? sides_[1].root : req_.b);
  std::error_code ec;
  std::filesystem::create_directories(dir_name(file), ec);
  if (ec) return errno_error(ec.value(), "mkdir", dir_name(file));
  const int lock_fd = ::open((file + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return errno_error(errno, "open", file + ".lock");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{lock_fd};
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    return make_error(ErrorCode::kUnavailable, "sync --bidirectional", file,
                      "another xfer sync --bidirectional of these two folders is running");
  }
  std::optional<std::vector<BisyncRecord>> state;
  if (!req_.options.resync) {
    if (std::filesystem::exists(file, ec)) {
      auto text = read_small_file(file, kMaxStateBytes);
      if (!text) return text.error();
      auto parsed = parse_bisync_state(*text, file);
      if (!parsed) {
        Error e = parsed.error();
        return make_error(e.code, "sync --bidirectional", file,
                          e.message() +
                              " (the state of the last run cannot be read: --resync "
                              "starts over, keeping both versions of what differs)");
      }
      state = std::move(parsed).value();
    }
  }

  // A side that is not there: made on a first run (as a one-way sync makes
  // its destination); after one, the same alarm as an emptied side.
  for (Side& side : sides_) {
    if (!side.missing) continue;
    if (state) {
      return make_error(ErrorCode::kNotFound, "sync --bidirectional", side.text,
                        fmt::format("no such folder, but it was synced before: nothing is "
                                    "deleted on {} (an unmounted disk looks like this); "
                                    "--resync copies everything back",
                                    sides_[side.name == 'A' ? 1 : 0].name));
    }
    if (!req_.options.dry_run) XFER_TRY(side.backend->mkdir(side.root, true));
  }
  if (sides_[0].missing && sides_[1].missing) {
    return make_error(ErrorCode::kNotFound, "sync --bidirectional", req_.a,
                      "neither folder exists");
  }
  bool walked = false;
  for (int i = 0; i < 2 && req_.options.dry_run && !walked; ++i) {
    // A folder a dry run did not make is listed as empty.
    if (!sides_[i].missing) continue;
    Side& other = sides_[1 - i];
    auto listed = walk(*other.backend, other.root, filter_, cancel_);
    if (!listed) return listed.error();
    other.entries = std::move(listed).value();
    walked = true;
  }
  if (!walked) XFER_TRY(walk_both());
  TransferResult total;
  total.bisync.first_run = !state.has_value();
  // A side that lost everything it had: an unmounted disk, a wrong path.
  if (state && !state->empty()) {
    for (int i = 0; i < 2; ++i) {
      if (sides_[i].entries.empty()) {
        return make_error(
            ErrorCode::kInvalidArgument, "sync --bidirectional", sides_[i].text,
            fmt::format("is empty, but held {} entries at the last sync: nothing is deleted on "
                        "{} (an unmounted disk looks like this). To delete them there too, "
                        "delete them by hand; --resync copies them back.",
                        state->size(), sides_[1 - i].name));
      }
    }
  }
  {
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
    stamp_ = buf;
  }
  XFER_TRY(plan(state ? &*state : nullptr));
  for (int i = 0; i < 2; ++i) {
    if (req_.options.max_delete != 0 && plan_.remove[i].size() > req_.options.max_delete) {
      return make_error(
          ErrorCode::kInvalidArgument, "sync --bidirectional", sides_[i].text,
          fmt::format("{} deletions planned on {}, more than --max-delete {}: "
                      "nothing done",
                      plan_.remove[i].size(), sides_[i].name, req_.options.max_delete));
    }
  }
  if (req_.options.dry_run) {
    report_plan();
    total.bisync.conflicts = plan_.conflicts.size();
    for (int i = 0; i < 2; ++i) {
      (i == 0 ? total.bisync.to_a : total.bisync.to_b) = plan_.copy[i].size();
      (i == 0 ? total.bisync.deleted_a : total.bisync.deleted_b) = plan_.remove[i].size();
    }
    total.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return total;
  }
  apply_conflicts(total);
  for (int to = 1; to >= 0 && !cancelled(); --to) {
    if (observer_ != nullptr) observer_->on_side(sides_[to].name);
    apply_deletions(to, total);
    run_leg(to, total);
  }
  if (cancelled()) {
    total.cancelled = true;
  } else if (Status again = walk_both(); !again.ok()) {
    // The copies stand; the state stays as it was, so the next run
    // finds them alike and records them.
    report(again.error(), total);
  } else {
    std::vector<BisyncRecord> next = next_state(state ? &*state : nullptr);
    total.bisync.entries = next.size();
    Status saved =
        write_file_atomically(file, format_bisync_state(sides_[0].text, sides_[1].text, next));
    if (!saved.ok()) report(saved.error(), total);
  }
  total.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return total;
}

}  // namespace

std::string bisync_state_file(const std::string& state_root, const std::string& a,
                              const std::string& b) {
  const std::string key = fmt::format("{}\n{}\n{}\n", kStateMagic, a, b);
  return fmt::format("{}/bisync/{:016x}.state", state_root,
                     xxh3_64(std::as_bytes(std::span(key.data(), key.size()))));
}

std::string format_bisync_state(const std::string& a, const std::string& b,
                                const std::vector<BisyncRecord>& records) {
  std::string out = fmt::format("{}\n# a {}\n# b {}\n", kStateMagic, escape(a), escape(b));
  for (const BisyncRecord& r : records) {
    out += fmt::format("{} {} {:o} {} {} {}", type_letter(r.type), r.size, r.mode, r.mtime_a,
                       r.mtime_b, escape(r.path));
    if (r.type == EntryType::kSymlink) out += " " + escape(r.target);
    out += '\n';
  }
  return out;
}

Result<std::vector<BisyncRecord>> parse_bisync_state(std::string_view text,
                                                     std::string_view origin) {
  std::vector<BisyncRecord> out;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  auto bad = [&](std::string_view why) {
    return make_error(ErrorCode::kInvalidArgument, "read state",
                      fmt::format("{}:{}", origin, line_no), std::string(why));
  };
  while (pos < text.size()) {
    const std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      ++line_no;
      return bad("the last line is cut short");
    }
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line_no == 1) {
      if (line != kStateMagic) return bad("not a state file of this xfer");
      continue;
    }
    if (line.empty() || line.front() == '#') continue;
    std::vector<std::string_view> f;
    std::size_t s = 0;
    while (s <= line.size() && f.size() < 8) {
      const std::size_t sp = line.find(' ', s);
      f.push_back(line.substr(s, sp == std::string_view::npos ? std::string_view::npos : sp - s));
      if (sp == std::string_view::npos) break;
      s = sp + 1;
    }
    if (f.size() < 6 || f[0].size() != 1) return bad("a record has too few fields");
    BisyncRecord r;
    switch (f[0][0]) {
      case 'f':
        r.type = EntryType::kFile;
        break;
      case 'd':
        r.type = EntryType::kDirectory;
        break;
      case 'l':
        r.type = EntryType::kSymlink;
        break;
      default:
        return bad("unknown entry type");
    }
    if (f.size() != (r.type == EntryType::kSymlink ? 7u : 6u)) return bad("wrong field count");
    auto number = [](std::string_view t, auto& v, int base) {
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v, base);
      return ec == std::errc() && p == t.data() + t.size();
    };
    if (!number(f[1], r.size, 10) || !number(f[2], r.mode, 8) || r.mode > 07777 ||
        !number(f[3], r.mtime_a, 10) || !number(f[4], r.mtime_b, 10)) {
      return bad("a bad number");
    }
    auto path = unescape(f[5]);
    if (!path) return bad("a bad escape in the path");
    r.path = std::move(*path);
    if (Status ok = validate_relative_path(r.path, "path in the state"); !ok.ok()) {
      return bad(ok.error().message());
    }
    if (!out.empty() && !(out.back().path < r.path)) return bad("records out of order");
    if (r.type == EntryType::kSymlink) {
      auto target = unescape(f[6]);
      if (!target) return bad("a bad escape in the target");
      r.target = std::move(*target);
    }
    if (out.size() >= kMaxEntries) return bad("too many records");
    out.push_back(std::move(r));
  }
  if (line_no == 0) return bad("empty");
  return out;
}

Result<TransferResult> run_bisync(const BisyncRequest& request, TransferCounters& counters,
                                  BisyncObserver* observer, const std::atomic<bool>* cancel) {
  Bisync b(request, counters, observer, cancel);
  return b.run();
}

}  // namespace xfer
