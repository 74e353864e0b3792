// The sftp:// backend (include/xfer/backend/sftp.hpp, docs/sftp.md): the
// Backend contract on SFTP v3 over a pool of SSH connections
// (session.hpp). Every call leases one connection for its requests and
// gives it back; reads and writes of one call are pipelined (many
// requests in flight on the connection), and the calls of many workers
// spread over several connections. A file's SFTP handles belong to the
// connection they were opened on: Sources and Sinks keep one per
// connection they have used.
//
// Threading: the Backend, Sources and Sinks are safe to call from any
// thread (the Pool serialises each connection; a HandleSet has a mutex).
// Replies are a server's bytes: names pass validate_name_component, sizes
// are checked against what was asked, and every length was bounded by
// the codec before it got here.

#include "xfer/backend/sftp.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "backend/sftp/protocol.hpp"
#include "backend/sftp/session.hpp"
#include "xfer/backend/local.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"

namespace xfer {
namespace {

using sftp::Attrs;
using sftp::Connection;
using sftp::Pool;
using sftp::Reply;
using sftp::Type;

// Requests of one call in flight on its connection: enough to cover the
// channel's window (about 2 MiB) with 255 KiB pieces, and with OpenSSH's
// 32 KiB pieces for servers that state no limits.
constexpr std::size_t kWindowBytes = 4u << 20;
constexpr std::size_t kMaxInFlight = 64;
// A folder that never ends its listing is a broken (or hostile) server.
constexpr std::uint64_t kMaxEntriesPerFolder = 10'000'000;
// READDIR replies with no name in them before the end: a few are allowed
// (a server may skip entries it cannot stat), not an endless stream.
constexpr int kMaxEmptyBatches = 16;
// Folders below one remove -r.
constexpr int kMaxDepth = 256;
// SFTP v3 keeps times as 32-bit seconds.
constexpr std::int64_t kNs = 1'000'000'000;

Error unexpected(const Reply& r, std::string_view op, std::string_view path) {
  if (r.type == Type::kStatus) return sftp::status_error(r, op, path);
  return make_error(
      ErrorCode::kCorrupt, op, path,
      fmt::format("the server answered with a packet of type {}", static_cast<int>(r.type)));
}

FileAttrs to_file_attrs(const Attrs& a) {
  FileAttrs f;
  if (a.permissions) {
    f.type = entry_type_from_mode(*a.permissions);
    f.mode = *a.permissions & 07777;
  } else {
    f.type = a.size ? EntryType::kFile : EntryType::kOther;
  }
  f.size = a.size.value_or(0);
  f.mtime_ns = a.mtime ? static_cast<std::int64_t>(*a.mtime) * kNs : 0;
  return f;
}

// Whole seconds for SFTP's 32-bit times; nullopt outside 1970-2106.
std::optional<std::uint32_t> to_seconds(std::int64_t ns) {
  if (ns < 0) return std::nullopt;
  const std::int64_t s = ns / kNs;
  if (s > std::numeric_limits<std::uint32_t>::max()) return std::nullopt;
  return static_cast<std::uint32_t>(s);
}

Attrs times_of(std::uint32_t seconds) {
  Attrs a;
  a.atime = seconds;
  a.mtime = seconds;
  return a;
}

// The hidden sibling names of the local backend (local.hpp), so that
// every tool that skips xfer's partials skips these too.
std::string sibling(std::string_view path, std::string_view infix, std::string_view token) {
  std::string base = base_name(path);
  if (base.size() + infix.size() + token.size() + 1 > 255) {
    base = fmt::format("{:016x}", std::hash<std::string>{}(base));
  }
  return join_path(dir_name(path), fmt::format(".{}{}{}", base, infix, token));
}

// One request, its reply, on a leased connection.
template <typename Make>
Result<Reply> rpc(Connection& c, Make make) {
  const std::uint32_t id = c.next_id();
  return c.call(make(id), id);
}

// Several requests sent at once (one round trip); their replies in the
// order of the requests. The server handles them in that order (OpenSSH
// does; the draft requires it for requests on one handle).
using MakeRequest = std::function<std::string(std::uint32_t)>;
Result<std::vector<Reply>> calls(Connection& c, const std::vector<MakeRequest>& makes) {
  std::vector<std::uint32_t> ids;
  for (const MakeRequest& make : makes) {
    ids.push_back(c.next_id());
    XFER_TRY(c.send(make(ids.back())));
  }
  std::vector<Reply> replies(makes.size());
  std::vector<bool> got(makes.size(), false);
  for (std::size_t n = 0; n < makes.size(); ++n) {
    XFER_ASSIGN_OR_RETURN(Reply r, c.receive());
    const auto it = std::find(ids.begin(), ids.end(), r.id);
    const auto i = static_cast<std::size_t>(it - ids.begin());
    if (it == ids.end() || got[i]) {
      c.mark_broken();
      return make_error(ErrorCode::kCorrupt, "sftp", c.shown(),
                        "the server answered a request that is not in flight");
    }
    got[i] = true;
    replies[i] = std::move(r);
  }
  return replies;
}

bool is_ok(const Reply& r) {
  return r.type == Type::kStatus && r.status == sftp::Status::kOk;
}

Status expect_ok(const Result<Reply>& r, std::string_view op, std::string_view path) {
  if (!r.ok()) return r.error();
  if (r->type != Type::kStatus || r->status != sftp::Status::kOk) return unexpected(*r, op, path);
  return ok_status();
}

// A file's handles, one per connection it was used on.
class HandleSet {
 public:
  std::optional<std::string> on(std::uint64_t serial) {
    std::lock_guard lock(mu_);
    auto it = by_serial_.find(serial);
    if (it == by_serial_.end()) return std::nullopt;
    return it->second;
  }
  bool has(std::uint64_t serial) {
    std::lock_guard lock(mu_);
    return by_serial_.count(serial) != 0;
  }
  void add(std::uint64_t serial, std::string handle) {
    std::lock_guard lock(mu_);
    by_serial_[serial] = std::move(handle);
  }
  std::map<std::uint64_t, std::string> take() {
    std::lock_guard lock(mu_);
    return std::exchange(by_serial_, {});
  }

 private:
  std::mutex mu_;
  std::map<std::uint64_t, std::string> by_serial_;
};

// A reply to a READ of `asked` bytes: the bytes it brought (`got`; fewer
// than asked means the rest must be asked again), or the end of the file
// (`eof`, also for an empty DATA: no progress). More bytes than asked is
// kCorrupt and breaks the connection; any other reply is its error.
struct ReadReply {
  bool eof = false;
  std::size_t got = 0;
};
Result<ReadReply> read_reply(Connection& c, const Reply& r, std::uint32_t asked,
                             std::string_view path) {
  if (r.type == Type::kStatus && r.status == sftp::Status::kEof) return ReadReply{true, 0};
  if (r.type != Type::kData) return unexpected(r, "read", path);
  if (r.bytes.size() > asked) {
    c.mark_broken();
    return make_error(
        ErrorCode::kCorrupt, "read", path,
        fmt::format("the server sent {} bytes for a read of {}", r.bytes.size(), asked));
  }
  return ReadReply{r.bytes.empty(), r.bytes.size()};
}

// Short answers to READs asked again, at most this many per request of a
// call (and a few more): a server that answers a few bytes at a time is
// not followed for ever.
constexpr std::size_t kRestsPerRequest = 8;
Error few_bytes_error(std::string_view path) {
  return make_error(ErrorCode::kCorrupt, "read", path,
                    "the server answers reads a few bytes at a time");
}

// Reads [offset, offset + buf.size()) of an open handle with requests of
// at most max_read bytes, up to kWindowBytes in flight. A short DATA is
// asked again for its rest; EOF ends the file there. Returns the bytes
// read from `offset` on (short only at the end of the file).
Result<std::size_t> pipelined_read(Connection& c, const std::string& handle, std::uint64_t offset,
                                   std::span<std::byte> buf, std::string_view path) {
  struct Piece {
    std::uint64_t at;
    std::uint32_t len;
  };
  const std::uint32_t piece = c.info().max_read;
  std::deque<Piece> todo;
  for (std::uint64_t at = 0; at < buf.size(); at += piece) {
    todo.push_back(
        {at, static_cast<std::uint32_t>(std::min<std::uint64_t>(piece, buf.size() - at))});
  }
  std::unordered_map<std::uint32_t, Piece> flight;
  std::uint64_t eof = buf.size();  // relative to offset
  std::size_t rests_left = todo.size() * kRestsPerRequest + 64;
  std::optional<Error> failed;
  const std::size_t window = std::clamp<std::size_t>(kWindowBytes / piece, 4, kMaxInFlight);
  while (!todo.empty() || !flight.empty()) {
    while (!failed && !todo.empty() && flight.size() < window) {
      const Piece p = todo.front();
      todo.pop_front();
      if (p.at >= eof) continue;
      const std::uint32_t id = c.next_id();
      XFER_TRY(c.send(sftp::read_request(id, handle, offset + p.at, p.len)));
      flight.emplace(id, p);
    }
    if (flight.empty()) break;
    XFER_ASSIGN_OR_RETURN(Reply r, c.receive());
    auto it = flight.find(r.id);
    if (it == flight.end()) {
      c.mark_broken();
      return make_error(ErrorCode::kCorrupt, "read", path,
                        "the server answered a request that is not in flight");
    }
    const Piece p = it->second;
    flight.erase(it);
    auto got = read_reply(c, r, p.len, path);
    if (!got.ok()) {
      if (got.error().code == ErrorCode::kCorrupt) return got.error();
      if (!failed) failed = got.error();
      continue;
    }
    if (got->eof) {
      eof = std::min(eof, p.at);
      continue;
    }
    std::memcpy(buf.data() + p.at, r.bytes.data(), got->got);
    if (got->got < p.len) {
      if (rests_left == 0) {
        if (!failed) failed = few_bytes_error(path);
        continue;
      }
      --rests_left;
      todo.push_front({p.at + got->got, static_cast<std::uint32_t>(p.len - got->got)});
    }
  }
  if (failed) return *failed;
  return static_cast<std::size_t>(eof);
}

// Writes `data` at `offset` through an open handle, max_write per request,
// up to kWindowBytes in flight; returns once every write is acknowledged.
Status pipelined_write(Connection& c, const std::string& handle, std::uint64_t offset,
                       std::span<const std::byte> data, std::string_view path) {
  const std::uint32_t piece = c.info().max_write;
  const std::size_t window = std::clamp<std::size_t>(kWindowBytes / piece, 4, kMaxInFlight);
  std::size_t next = 0;
  // Each write is acknowledged once: an id answered twice, or never
  // asked, is a broken server (a write it never confirmed would be a hole).
  std::unordered_set<std::uint32_t> flight;
  std::optional<Error> failed;
  while (next < data.size() || !flight.empty()) {
    while (!failed && next < data.size() && flight.size() < window) {
      const std::size_t n = std::min<std::size_t>(piece, data.size() - next);
      const std::uint32_t id = c.next_id();
      XFER_TRY(c.send(sftp::write_request(id, handle, offset + next, data.subspan(next, n))));
      next += n;
      flight.insert(id);
    }
    if (flight.empty()) break;
    XFER_ASSIGN_OR_RETURN(Reply r, c.receive());
    if (flight.erase(r.id) == 0) {
      c.mark_broken();
      return make_error(ErrorCode::kCorrupt, "write", path,
                        "the server answered a request that is not in flight");
    }
    if (r.type != Type::kStatus || r.status != sftp::Status::kOk) {
      if (!failed) failed = unexpected(r, "write", path);
      next = data.size();  // send no more; collect what is in flight
    }
  }
  if (failed) return *failed;
  return ok_status();
}

class SftpBackend;

class SftpSource final : public Source {
 public:
  SftpSource(SftpBackend& b, std::string remote, std::string shown, FileAttrs attrs)
      : b_(b), remote_(std::move(remote)), shown_(std::move(shown)), attrs_(std::move(attrs)) {}
  ~SftpSource() override;
  const FileAttrs& attrs() const override { return attrs_; }
  Result<std::size_t> read_at(Offset offset, std::span<std::byte> buf) override;
  Status check_unchanged() override;
  void will_read(Offset offset, Length length) override;
  HandleSet& handles() { return handles_; }

 private:
  // A range one thread said it reads next, in order (will_read): that
  // thread keeps one connection for it and up to kStreamAhead bytes of
  // READ requests in flight ahead of what it has taken, so a long path
  // stays busy between its read_at calls. The connection goes back when
  // the range is done, when the thread reads elsewhere or calls anything
  // else on this Source, and when the Source goes.
  struct Stream {
    std::uint64_t pos = 0;   // the next byte read_at takes
    std::uint64_t sent = 0;  // the next byte to ask for
    std::uint64_t end = 0;   // the range's end
    std::uint64_t eof = std::numeric_limits<std::uint64_t>::max();
    Pool::Lease lease;
    std::string handle;
    struct Piece {
      std::uint64_t at;
      std::uint32_t len;
    };
    std::unordered_map<std::uint32_t, Piece> flight;
    std::map<std::uint64_t, std::string> ready;  // at -> bytes
    std::uint64_t in_flight = 0;
    std::size_t rests_left = 4096;
  };
  static constexpr std::uint64_t kStreamAhead = 4u << 20;
  Result<std::size_t> stream_read(Stream& s, std::uint64_t offset, std::span<std::byte> buf);
  // Collects what is still in flight on the thread's stream, so nothing
  // of it reaches the connection's next user, and gives the connection
  // back.
  void close_stream(std::unique_ptr<Stream>& s);
  void close_my_stream();

  SftpBackend& b_;
  std::string remote_;
  std::string shown_;
  FileAttrs attrs_;
  HandleSet handles_;
  std::mutex streams_mu_;
  std::map<std::thread::id, std::unique_ptr<Stream>> streams_;  // entries: their threads only
  std::map<std::thread::id, std::pair<std::uint64_t, std::uint64_t>> hints_;  // [begin, end)
};

class SftpSink final : public Sink {
 public:
  SftpSink(SftpBackend& b, std::string remote, std::string temp, std::string shown,
           SinkOptions opts, bool resumed)
      : b_(b),
        remote_(std::move(remote)),
        temp_(std::move(temp)),
        shown_(std::move(shown)),
        opts_(std::move(opts)),
        resumed_(resumed) {}
  ~SftpSink() override;
  Status write_at(Offset offset, std::span<const std::byte> data) override;
  Result<std::size_t> read_back(Offset offset, std::span<std::byte> buf) override;
  // SFTP v3 copies nothing on the server's side (capabilities().basis_copy
  // is false: sync sends changed files whole).
  Status copy_basis(Offset, Offset, Length) override {
    return make_error(ErrorCode::kUnsupported, "copy_basis", shown_);
  }
  Status commit() override;
  Status abort() override;
  Status suspend() override;
  bool resumed() const override { return resumed_; }
  HandleSet& handles() { return handles_; }

 private:
  Status close_handles(const sftp::Attrs* finish = nullptr);
  bool resumable() const { return !opts_.resume_name.empty(); }

  SftpBackend& b_;
  std::string remote_;
  std::string temp_;
  std::string shown_;
  SinkOptions opts_;
  bool resumed_;
  std::mutex mu_;
  bool done_ = false;
  HandleSet handles_;
};

class SftpBackend final : public Backend {
 public:
  SftpBackend(std::string describe, sftp::Target target, unsigned max)
      : describe_(std::move(describe)), pool_(std::move(target), max) {
    caps_.random_writes = true;
    caps_.parallel_writers = true;
    caps_.resume = true;
    caps_.symlinks = true;
    caps_.permissions = true;
    caps_.mtime = true;
    caps_.mtime_granularity_ns = kNs;
    caps_.network = true;
    caps_.preferred_chunk_size = 16ull << 20;
    caps_.max_concurrency = pool_.max();
  }
  Status start() { return pool_.connect_first(); }

  const Capabilities& capabilities() const override { return caps_; }
  LinkEstimate link_estimate() const override { return {pool_.rtt_ms(), 0}; }
  std::string describe() const override { return describe_; }
  void cancel() override { pool_.cancel(); }
  Pool& pool() { return pool_; }

  // The server's path of an endpoint path: "/~" and "/~/..." are the
  // login folder (as curl and rclone read them); a NUL is refused.
  Result<std::string> remote(std::string_view path) const {
    if (path.find('\0') != std::string_view::npos) {
      return make_error(ErrorCode::kInvalidArgument, "sftp", printable_name(path),
                        "a path holds a NUL byte");
    }
    if (path == "/~" || path.rfind("/~/", 0) == 0) {
      const std::string& home = pool_.info().home;
      if (home.empty()) {
        return make_error(ErrorCode::kUnsupported, "sftp", path,
                          "the server did not say where the login folder is");
      }
      return home + std::string(path.substr(2));
    }
    if (path.empty()) return std::string("/");
    return std::string(path);
  }

  Result<FileAttrs> stat(std::string_view path) override {
    XFER_ASSIGN_OR_RETURN(const std::string rp, remote(path));
    XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
    return lstat_on(*c, rp, path);
  }

  Result<FileAttrs> lstat_on(Connection& c, const std::string& rp, std::string_view shown) {
    XFER_ASSIGN_OR_RETURN(Reply r, rpc(c, [&](std::uint32_t id) {
                            return sftp::path_request(Type::kLstat, id, rp);
                          }));
    if (r.type != Type::kAttrs) return unexpected(r, "stat", shown);
    FileAttrs a = to_file_attrs(r.attrs);
    if (a.type == EntryType::kSymlink) {
      XFER_ASSIGN_OR_RETURN(a.symlink_target, readlink_on(c, rp, shown));
    }
    return a;
  }

  Result<std::string> readlink_on(Connection& c, const std::string& rp, std::string_view shown) {
    XFER_ASSIGN_OR_RETURN(Reply r, rpc(c, [&](std::uint32_t id) {
                            return sftp::path_request(Type::kReadlink, id, rp);
                          }));
    if (r.type != Type::kName || r.names.size() != 1) return unexpected(r, "readlink", shown);
    if (r.names[0].name.find('\0') != std::string::npos || r.names[0].name.empty()) {
      return make_error(ErrorCode::kCorrupt, "readlink", shown,
                        "the server sent an empty link target or one with a NUL");
    }
    return r.names[0].name;
  }

  Status list(std::string_view path, const ListOptions& options, const EntrySink& sink) override {
    XFER_ASSIGN_OR_RETURN(const std::string rp, remote(path));
    std::uint64_t serial = 0;
    std::string handle;
    {
      XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
      XFER_ASSIGN_OR_RETURN(Reply r, rpc(*c, [&](std::uint32_t id) {
                              return sftp::path_request(Type::kOpendir, id, rp);
                            }));
      if (r.type != Type::kHandle) {
        Error e = unexpected(r, "list", path);
        // Some servers say FAILURE for a file: say what it is.
        if (e.code != ErrorCode::kNotFound) {
          auto st = lstat_on(*c, rp, path);
          if (st.ok() && st->type != EntryType::kDirectory) {
            return make_error(ErrorCode::kNotDirectory, "list", path);
          }
        }
        return e;
      }
      serial = c->serial();
      handle = r.bytes;
    }
    auto close = [&] {
      if (auto c = pool_.acquire_serial(serial); c.ok()) {
        (void)rpc(**c, [&](std::uint32_t id) { return sftp::close_request(id, handle); });
      }
    };
    std::uint64_t seen = 0;
    int empty_batches = 0;
    for (;;) {
      std::vector<sftp::NameEntry> batch;
      {
        auto c = pool_.acquire_serial(serial);
        if (!c.ok()) return c.error();
        auto r = rpc(**c, [&](std::uint32_t id) {
          return sftp::handle_request(Type::kReaddir, id, handle);
        });
        if (!r.ok()) return r.error();
        if (r->type == Type::kStatus && r->status == sftp::Status::kEof) break;
        if (r->type != Type::kName) {
          Error e = unexpected(*r, "list", path);
          c->release();
          close();
          return e;
        }
        batch = std::move(r->names);
        // A reply with no name but "." and ".." brings the end no nearer.
        const bool nothing = std::all_of(batch.begin(), batch.end(), [](const auto& n) {
          return n.name == "." || n.name == "..";
        });
        empty_batches = nothing ? empty_batches + 1 : 0;
        seen += batch.size();
        if (empty_batches > kMaxEmptyBatches || seen > kMaxEntriesPerFolder) {
          c->release();
          close();
          return make_error(ErrorCode::kCorrupt, "list", path,
                            empty_batches > kMaxEmptyBatches
                                ? std::string("the server's listing never ends (replies "
                                              "without names)")
                                : fmt::format("the server listed more than {} entries in one "
                                              "folder",
                                              kMaxEntriesPerFolder));
        }
        if (options.want_attrs) {
          for (auto& e : batch) {
            if (!e.attrs.permissions || (*e.attrs.permissions & S_IFMT) != S_IFLNK) continue;
            if (e.name.find('/') != std::string::npos || e.name.find('\0') != std::string::npos) {
              continue;  // refused below
            }
            auto target = readlink_on(**c, join_path(rp, e.name), path);
            if (!target.ok()) {
              if (target.error().code == ErrorCode::kNotFound) continue;  // gone meanwhile
              c->release();
              close();
              return target.error();
            }
            e.longname = std::move(*target);  // carried to the entry below
          }
        }
      }
      for (auto& n : batch) {
        if (n.name == "." || n.name == "..") continue;
        if (Status v = validate_name_component(n.name, "name listed by the server"); !v.ok()) {
          close();
          Error e = v.error();
          e.code = ErrorCode::kCorrupt;
          e.operation = "list";
          e.path = std::string(path);
          return e;
        }
        Entry entry;
        entry.name = std::move(n.name);
        FileAttrs a = to_file_attrs(n.attrs);
        entry.type = a.type;
        if (a.type == EntryType::kSymlink && options.want_attrs) a.symlink_target = n.longname;
        entry.attrs = std::move(a);
        if (Status s = sink(std::move(entry)); !s.ok()) {
          close();
          return s;
        }
      }
    }
    close();
    return ok_status();
  }

  Status mkdir(std::string_view path, bool parents) override {
    XFER_ASSIGN_OR_RETURN(const std::string rp, remote(path));
    XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
    return mkdir_on(*c, rp, path, parents, 0);
  }

  Status mkdir_on(Connection& c, const std::string& rp, std::string_view shown, bool parents,
                  int depth) {
    Attrs mode;
    mode.permissions = 0777;  // the server's umask applies, as for mkdir(1)
    XFER_ASSIGN_OR_RETURN(
        Reply r, rpc(c, [&](std::uint32_t id) { return sftp::mkdir_request(id, rp, mode); }));
    if (r.type == Type::kStatus && r.status == sftp::Status::kOk) return ok_status();
    // SFTP v3 has no "exists": look.
    auto st = lstat_on(c, rp, shown);
    if (st.ok()) {
      if (st->type == EntryType::kDirectory && parents) return ok_status();
      return make_error(ErrorCode::kExists, "mkdir", shown);
    }
    if (st.error().code != ErrorCode::kNotFound) return st.error();
    const std::string parent = dir_name(rp);
    if (!parents || parent == rp || depth > kMaxDepth) {
      Error e = unexpected(r, "mkdir", shown);
      if (e.code != ErrorCode::kPermission) e.code = ErrorCode::kNotFound;
      return e;
    }
    XFER_TRY(mkdir_on(c, parent, shown, true, depth + 1));
    return mkdir_on(c, rp, shown, false, depth + 1);
  }

  Status remove(std::string_view path, bool recursive) override {
    return remove_below(path, recursive, 0);
  }

  // Files go as the listing streams them; only the subfolders of one
  // folder are held, and the depth is bounded (a server listing a folder
  // in itself for ever is a broken one).
  Status remove_below(std::string_view path, bool recursive, int depth) {
    if (depth > kMaxDepth) {
      return make_error(ErrorCode::kCorrupt, "remove", path,
                        fmt::format("more than {} folders deep", kMaxDepth));
    }
    XFER_ASSIGN_OR_RETURN(const std::string rp, remote(path));
    FileAttrs a;
    {
      XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
      XFER_ASSIGN_OR_RETURN(a, lstat_on(*c, rp, path));
      if (a.type != EntryType::kDirectory) {
        return expect_ok(
            rpc(*c, [&](std::uint32_t id) { return sftp::path_request(Type::kRemove, id, rp); }),
            "remove", path);
      }
    }
    if (recursive) {
      std::vector<std::string> folders;
      XFER_TRY(list(path, {}, [&](Entry&& e) -> Status {
        if (e.type == EntryType::kDirectory) {
          folders.push_back(std::move(e.name));
          return ok_status();
        }
        const std::string child = join_path(rp, e.name);
        XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
        return expect_ok(
            rpc(*c, [&](std::uint32_t id) { return sftp::path_request(Type::kRemove, id, child); }),
            "remove", join_path(path, e.name));
      }));
      for (const std::string& f : folders) {
        XFER_TRY(remove_below(join_path(path, f), true, depth + 1));
      }
    }
    XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
    auto r = rpc(*c, [&](std::uint32_t id) { return sftp::path_request(Type::kRmdir, id, rp); });
    if (r.ok() && r->type == Type::kStatus && r->status == sftp::Status::kFailure) {
      c.release();
      bool any = false;
      (void)list(path, {}, [&](Entry&&) {
        any = true;
        return make_error(ErrorCode::kCancelled, "list", path);
      });
      if (any) return make_error(ErrorCode::kNotEmpty, "remove", path);
    }
    return expect_ok(r, "remove", path);
  }

  Status rename(std::string_view from, std::string_view to) override {
    XFER_ASSIGN_OR_RETURN(const std::string rf, remote(from));
    XFER_ASSIGN_OR_RETURN(const std::string rt, remote(to));
    XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
    return rename_on(*c, rf, rt, from);
  }

  // Replaces `rt` atomically with posix-rename@openssh.com; a server
  // without it gets SFTP's plain RENAME, which refuses an existing target:
  // that target is removed first (not atomic; docs/sftp.md).
  Status rename_on(Connection& c, const std::string& rf, const std::string& rt,
                   std::string_view shown) {
    if (c.info().posix_rename) {
      return expect_ok(
          rpc(c, [&](std::uint32_t id) { return sftp::posix_rename_request(id, rf, rt); }),
          "rename", shown);
    }
    auto r = rpc(c, [&](std::uint32_t id) { return sftp::rename_request(id, rf, rt); });
    if (r.ok() && r->type == Type::kStatus && r->status == sftp::Status::kFailure &&
        lstat_on(c, rf, shown).ok()) {
      auto target = lstat_on(c, rt, shown);
      if (target.ok() && target->type != EntryType::kDirectory) {
        (void)rpc(c, [&](std::uint32_t id) { return sftp::path_request(Type::kRemove, id, rt); });
        r = rpc(c, [&](std::uint32_t id) { return sftp::rename_request(id, rf, rt); });
      }
    }
    return expect_ok(r, "rename", shown);
  }

  Status touch(std::string_view path, std::optional<std::int64_t> mtime_ns) override {
    XFER_ASSIGN_OR_RETURN(const std::string rp, remote(path));
    const std::int64_t when =
        mtime_ns.value_or(std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count());
    const auto secs = to_seconds(when);
    if (!secs) return out_of_range("touch", path);
    XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
    auto st = lstat_on(*c, rp, path);
    if (!st.ok()) {
      if (st.error().code != ErrorCode::kNotFound) return st.error();
      XFER_ASSIGN_OR_RETURN(Reply h, rpc(*c, [&](std::uint32_t id) {
                              Attrs mode;
                              mode.permissions = 0666;
                              return sftp::open_request(id, rp,
                                                        sftp::kOpenWrite | sftp::kOpenCreate, mode);
                            }));
      if (h.type != Type::kHandle) return unexpected(h, "touch", path);
      XFER_TRY(
          expect_ok(rpc(*c, [&](std::uint32_t id) { return sftp::close_request(id, h.bytes); }),
                    "touch", path));
    }
    return expect_ok(
        rpc(*c, [&](std::uint32_t id) { return sftp::setstat_request(id, rp, times_of(*secs)); }),
        "touch", path);
  }

  Status symlink(std::string_view target, std::string_view path, const FileAttrs& attrs) override {
    XFER_ASSIGN_OR_RETURN(const std::string rp, remote(path));
    if (target.empty() || target.find('\0') != std::string_view::npos) {
      return make_error(ErrorCode::kInvalidArgument, "symlink", path, "an empty link target");
    }
    const std::string temp = sibling(rp, kLocalTmpInfix, "link");
    XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
    (void)rpc(*c, [&](std::uint32_t id) { return sftp::path_request(Type::kRemove, id, temp); });
    XFER_ASSIGN_OR_RETURN(Reply r, rpc(*c, [&](std::uint32_t id) {
                            return sftp::symlink_request(id, temp, target);
                          }));
    if (r.type != Type::kStatus || r.status != sftp::Status::kOk) {
      Error e = unexpected(r, "symlink", path);
      if (e.code == ErrorCode::kUnsupported) e.operation = "symlink";
      return e;
    }
    if (const auto secs = to_seconds(attrs.mtime_ns);
        secs && attrs.mtime_ns != 0 && c->info().lsetstat) {
      (void)rpc(
          *c, [&](std::uint32_t id) { return sftp::lsetstat_request(id, temp, times_of(*secs)); });
    }
    Status moved = rename_on(*c, temp, rp, path);
    if (!moved.ok()) {
      (void)rpc(*c, [&](std::uint32_t id) { return sftp::path_request(Type::kRemove, id, temp); });
    }
    return moved;
  }

  Status set_attrs(std::string_view path, const FileAttrs& attrs) override {
    XFER_ASSIGN_OR_RETURN(const std::string rp, remote(path));
    const auto secs = to_seconds(attrs.mtime_ns);
    XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
    if (attrs.type == EntryType::kSymlink) {
      // SETSTAT follows links; lsetstat@openssh.com does not (times only:
      // Linux keeps no mode on a symlink).
      if (!secs || !c->info().lsetstat) return ok_status();
      return expect_ok(
          rpc(*c,
              [&](std::uint32_t id) { return sftp::lsetstat_request(id, rp, times_of(*secs)); }),
          "set_attrs", path);
    }
    Attrs a = secs ? times_of(*secs) : Attrs{};
    a.permissions = attrs.mode & 07777;
    return expect_ok(rpc(*c, [&](std::uint32_t id) { return sftp::setstat_request(id, rp, a); }),
                     "set_attrs", path);
  }

  Result<std::unique_ptr<Source>> open_source(std::string_view path) override {
    XFER_ASSIGN_OR_RETURN(const std::string rp, remote(path));
    XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
    XFER_ASSIGN_OR_RETURN(Reply h, rpc(*c, [&](std::uint32_t id) {
                            return sftp::open_request(id, rp, sftp::kOpenRead, {});
                          }));
    if (h.type != Type::kHandle) {
      Error e = unexpected(h, "open", path);
      auto st = lstat_on(*c, rp, path);
      if (st.ok() && st->type == EntryType::kDirectory) {
        return make_error(ErrorCode::kIsDirectory, "open", path);
      }
      return e;
    }
    auto fst =
        rpc(*c, [&](std::uint32_t id) { return sftp::handle_request(Type::kFstat, id, h.bytes); });
    auto close = [&] {
      (void)rpc(*c, [&](std::uint32_t id) { return sftp::close_request(id, h.bytes); });
    };
    if (!fst.ok()) return fst.error();
    if (fst->type != Type::kAttrs) {
      close();
      return unexpected(*fst, "open", path);
    }
    FileAttrs a = to_file_attrs(fst->attrs);
    if (a.type != EntryType::kFile) {
      close();
      if (a.type == EntryType::kDirectory) return make_error(ErrorCode::kIsDirectory, "open", path);
      return make_error(ErrorCode::kUnsupported, "open", path, "not a regular file");
    }
    auto src = std::make_unique<SftpSource>(*this, rp, std::string(path), std::move(a));
    src->handles().add(c->serial(), h.bytes);
    return std::unique_ptr<Source>(std::move(src));
  }

  Result<std::unique_ptr<Sink>> open_sink(std::string_view path,
                                          const SinkOptions& options) override {
    XFER_ASSIGN_OR_RETURN(const std::string rp, remote(path));
    const bool resumable = !options.resume_name.empty();
    if (resumable) XFER_TRY(validate_name_component(options.resume_name, "resume name"));
    const std::string temp = resumable ? sibling(rp, kLocalTempInfix, options.resume_name)
                                       : sibling(rp, kLocalTmpInfix, "file");
    XFER_ASSIGN_OR_RETURN(Pool::Lease c, pool_.acquire());
    if (options.basis) XFER_TRY(check_basis(lstat_on(*c, rp, path), options, path));
    bool resumed = false;
    if (resumable && options.resume_existing) {
      auto partial = lstat_on(*c, temp, path);
      resumed = partial.ok() && partial->type == EntryType::kFile;
    }
    Attrs mode;
    mode.permissions = 0600;  // the final mode is applied on commit
    std::uint32_t flags = sftp::kOpenRead | sftp::kOpenWrite;
    // A new hidden file is created exclusively, never opened through
    // whatever is under its name (a symlink planted to elsewhere); one in
    // the way (a killed run's, or planted) is removed first (REMOVE
    // unlinks a link itself) and the create tried once more.
    if (!resumed) flags |= sftp::kOpenCreate | sftp::kOpenExclusive;
    // The final name is looked at in the same round trip: a folder there
    // is refused now rather than at the commit.
    XFER_ASSIGN_OR_RETURN(
        std::vector<Reply> first,
        calls(*c, {[&](std::uint32_t id) { return sftp::path_request(Type::kLstat, id, rp); },
                   [&](std::uint32_t id) { return sftp::open_request(id, temp, flags, mode); }}));
    Reply h = std::move(first[1]);
    auto drop = [&] {
      (void)calls(*c,
                  {[&](std::uint32_t id) { return sftp::close_request(id, h.bytes); },
                   [&](std::uint32_t id) { return sftp::path_request(Type::kRemove, id, temp); }});
    };
    if (first[0].type == Type::kAttrs &&
        to_file_attrs(first[0].attrs).type == EntryType::kDirectory) {
      if (h.type == Type::kHandle) drop();
      return make_error(ErrorCode::kIsDirectory, "open_sink", path);
    }
    if (h.type != Type::kHandle && !resumed && h.type == Type::kStatus &&
        h.status == sftp::Status::kFailure) {
      XFER_ASSIGN_OR_RETURN(
          std::vector<Reply> again,
          calls(*c, {[&](std::uint32_t id) { return sftp::path_request(Type::kRemove, id, temp); },
                     [&](std::uint32_t id) { return sftp::open_request(id, temp, flags, mode); }}));
      h = std::move(again[1]);
    }
    if (h.type != Type::kHandle) return unexpected(h, "open_sink", path);
    auto sink = std::make_unique<SftpSink>(*this, rp, temp, std::string(path), options, resumed);
    sink->handles().add(c->serial(), h.bytes);
    return std::unique_ptr<Sink>(std::move(sink));
  }

  // Delta: the file under the final name must be what the signature saw.
  static Status check_basis(const Result<FileAttrs>& st, const SinkOptions& o,
                            std::string_view path) {
    if (!st.ok() || st->type != EntryType::kFile || st->size != o.basis_size ||
        st->mtime_ns != o.basis_mtime_ns) {
      return make_error(ErrorCode::kChanged, "open_sink", path,
                        "the file to rebuild from changed since its signature was taken",
                        RetryClass::kRetryFile);
    }
    return ok_status();
  }

  // A handle on the leased connection for a file opened with `flags`:
  // the one the file already has there, or a new one.
  Result<std::string> handle_on(Connection& c, HandleSet& set, const std::string& rp,
                                std::uint32_t flags, std::string_view shown) {
    if (auto h = set.on(c.serial())) return *h;
    XFER_ASSIGN_OR_RETURN(
        Reply h, rpc(c, [&](std::uint32_t id) { return sftp::open_request(id, rp, flags, {}); }));
    if (h.type != Type::kHandle) return unexpected(h, "open", shown);
    set.add(c.serial(), h.bytes);
    return h.bytes;
  }

  // Closes every handle of `set` on its connection; connections lost
  // meanwhile took theirs with them.
  void close_all(HandleSet& set) {
    for (const auto& entry : set.take()) {
      const std::string& handle = entry.second;
      auto c = pool_.acquire_serial(entry.first);
      if (!c.ok()) continue;
      (void)rpc(**c, [&](std::uint32_t id) { return sftp::close_request(id, handle); });
    }
  }

  static Error out_of_range(std::string_view op, std::string_view path) {
    return make_error(ErrorCode::kInvalidArgument, op, path,
                      "SFTP keeps times from 1970 to 2106 only");
  }

 private:
  std::string describe_;
  Pool pool_;
  Capabilities caps_;
};

// ---- Source

SftpSource::~SftpSource() {
  for (auto& [thread, s] : streams_) close_stream(s);
  b_.close_all(handles_);
}

void SftpSource::close_stream(std::unique_ptr<Stream>& s) {
  if (!s) return;
  while (!s->flight.empty()) {
    auto r = s->lease->receive();
    if (!r.ok()) break;  // the connection is broken: the pool drops it
    if (s->flight.erase(r->id) == 0) {
      s->lease->mark_broken();
      break;
    }
  }
  s.reset();
}

void SftpSource::close_my_stream() {
  std::unique_ptr<Stream> mine;
  {
    std::lock_guard lock(streams_mu_);
    hints_.erase(std::this_thread::get_id());
    auto it = streams_.find(std::this_thread::get_id());
    if (it == streams_.end()) return;
    mine = std::move(it->second);
    streams_.erase(it);
  }
  close_stream(mine);
}

void SftpSource::will_read(Offset offset, Length length) {
  close_my_stream();
  // A range of a few requests gains nothing from holding a connection.
  if (length.get() < 4ull * sftp::kMaxData) return;
  std::lock_guard lock(streams_mu_);
  hints_[std::this_thread::get_id()] = {offset.get(), offset.get() + length.get()};
}

Result<std::size_t> SftpSource::stream_read(Stream& s, std::uint64_t offset,
                                            std::span<std::byte> buf) {
  Connection& c = *s.lease;
  const std::uint32_t piece = c.info().max_read;
  std::size_t filled = 0;
  while (filled < buf.size()) {
    // Keep the range asked for ahead of what was taken.
    while (s.sent < s.end && s.sent < s.eof && s.in_flight < kStreamAhead) {
      const auto len = static_cast<std::uint32_t>(std::min<std::uint64_t>(piece, s.end - s.sent));
      const std::uint32_t id = c.next_id();
      XFER_TRY(c.send(sftp::read_request(id, s.handle, s.sent, len)));
      s.flight.emplace(id, Stream::Piece{s.sent, len});
      s.in_flight += len;
      s.sent += len;
    }
    const std::uint64_t at = offset + filled;
    if (at >= s.eof) break;
    if (auto it = s.ready.find(at); it != s.ready.end()) {
      const std::size_t n = std::min(it->second.size(), buf.size() - filled);
      std::memcpy(buf.data() + filled, it->second.data(), n);
      filled += n;
      if (n < it->second.size()) {
        std::string rest = it->second.substr(n);
        s.ready.erase(it);
        s.ready.emplace(at + n, std::move(rest));
      } else {
        s.ready.erase(it);
      }
      s.pos = offset + filled;
      continue;
    }
    if (s.flight.empty()) {
      // Nothing asked covers `at` (a read past the hinted range): the
      // rest comes the plain way.
      XFER_ASSIGN_OR_RETURN(std::size_t n,
                            pipelined_read(c, s.handle, at, buf.subspan(filled), shown_));
      filled += n;
      s.pos = offset + filled;
      break;
    }
    XFER_ASSIGN_OR_RETURN(Reply r, c.receive());
    auto it = s.flight.find(r.id);
    if (it == s.flight.end()) {
      c.mark_broken();
      return make_error(ErrorCode::kCorrupt, "read", shown_,
                        "the server answered a request that is not in flight");
    }
    const Stream::Piece p = it->second;
    s.flight.erase(it);
    s.in_flight -= p.len;
    XFER_ASSIGN_OR_RETURN(const ReadReply got, read_reply(c, r, p.len, shown_));
    if (got.eof) {
      s.eof = std::min(s.eof, p.at);
      continue;
    }
    if (got.got < p.len) {
      if (s.rests_left == 0) return few_bytes_error(shown_);
      --s.rests_left;
      const std::uint64_t rest_at = p.at + got.got;
      const auto rest_len = static_cast<std::uint32_t>(p.len - got.got);
      const std::uint32_t id = c.next_id();
      XFER_TRY(c.send(sftp::read_request(id, s.handle, rest_at, rest_len)));
      s.flight.emplace(id, Stream::Piece{rest_at, rest_len});
      s.in_flight += rest_len;
    }
    s.ready.emplace(p.at, std::move(r.bytes));
  }
  return filled;
}

Result<std::size_t> SftpSource::read_at(Offset offset, std::span<std::byte> buf) {
  if (buf.empty()) return std::size_t{0};
  const auto me = std::this_thread::get_id();
  std::unique_ptr<Stream> mine;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> hint;
  {
    std::lock_guard lock(streams_mu_);
    if (auto it = streams_.find(me); it != streams_.end()) {
      mine = std::move(it->second);
      streams_.erase(it);
    }
    if (auto it = hints_.find(me); it != hints_.end()) hint = it->second;
  }
  if (mine && mine->pos != offset.get()) close_stream(mine);  // it reads elsewhere now
  if (!mine && hint && hint->first == offset.get()) {
    // The start of the hinted range: take a connection for it.
    {
      std::lock_guard lock(streams_mu_);
      hints_.erase(me);
    }
    auto s = std::make_unique<Stream>();
    XFER_ASSIGN_OR_RETURN(s->lease, b_.pool().acquire([&](const Connection& conn) {
      return handles_.has(conn.serial());
    }));
    XFER_ASSIGN_OR_RETURN(s->handle,
                          b_.handle_on(*s->lease, handles_, remote_, sftp::kOpenRead, shown_));
    s->pos = s->sent = hint->first;
    s->end = hint->second;
    mine = std::move(s);
  }
  if (mine) {
    auto got = stream_read(*mine, offset.get(), buf);
    if (!got.ok() || mine->pos >= mine->end || mine->pos >= mine->eof) {
      close_stream(mine);  // done with the range, or broken
    } else {
      std::lock_guard lock(streams_mu_);
      streams_[me] = std::move(mine);
    }
    return got;
  }
  XFER_ASSIGN_OR_RETURN(Pool::Lease c, b_.pool().acquire([&](const Connection& conn) {
    return handles_.has(conn.serial());
  }));
  XFER_ASSIGN_OR_RETURN(const std::string h,
                        b_.handle_on(*c, handles_, remote_, sftp::kOpenRead, shown_));
  return pipelined_read(*c, h, offset.get(), buf, shown_);
}

Status SftpSource::check_unchanged() {
  close_my_stream();
  XFER_ASSIGN_OR_RETURN(Pool::Lease c, b_.pool().acquire());
  XFER_ASSIGN_OR_RETURN(Reply r, rpc(*c, [&](std::uint32_t id) {
                          return sftp::path_request(Type::kStat, id, remote_);
                        }));
  if (r.type != Type::kAttrs) {
    Error e = unexpected(r, "stat", shown_);
    if (e.code == ErrorCode::kNotFound) {
      return make_error(ErrorCode::kChanged, "read", shown_, "file removed while being copied",
                        RetryClass::kRetryFile);
    }
    return e;
  }
  const FileAttrs now = to_file_attrs(r.attrs);
  if (now.size != attrs_.size || now.mtime_ns != attrs_.mtime_ns) {
    return make_error(ErrorCode::kChanged, "read", shown_, "file changed while being copied",
                      RetryClass::kRetryFile);
  }
  return ok_status();
}

// ---- Sink

SftpSink::~SftpSink() {
  bool done = false;
  {
    std::lock_guard lock(mu_);
    done = done_;
  }
  if (done) return;
  if (resumable()) {
    (void)suspend();
  } else {
    (void)abort();
  }
}

Status SftpSink::write_at(Offset offset, std::span<const std::byte> data) {
  if (data.empty()) return ok_status();
  XFER_ASSIGN_OR_RETURN(Pool::Lease c, b_.pool().acquire([&](const Connection& conn) {
    return handles_.has(conn.serial());
  }));
  XFER_ASSIGN_OR_RETURN(
      const std::string h,
      b_.handle_on(*c, handles_, temp_, sftp::kOpenRead | sftp::kOpenWrite, shown_));
  return pipelined_write(*c, h, offset.get(), data, shown_);
}

Result<std::size_t> SftpSink::read_back(Offset offset, std::span<std::byte> buf) {
  if (buf.empty()) return std::size_t{0};
  XFER_ASSIGN_OR_RETURN(Pool::Lease c, b_.pool().acquire([&](const Connection& conn) {
    return handles_.has(conn.serial());
  }));
  XFER_ASSIGN_OR_RETURN(
      const std::string h,
      b_.handle_on(*c, handles_, temp_, sftp::kOpenRead | sftp::kOpenWrite, shown_));
  return pipelined_read(*c, h, offset.get(), buf, shown_);
}

// Closes the file's handles. With `finish` (commit), the first live one
// gets the final attributes (FSETSTAT: on the file xfer opened, never on
// whatever the hidden name points at by then) and, when asked, an fsync
// before it is closed; when every connection that had a handle is gone,
// the file is opened once more for that.
Status SftpSink::close_handles(const Attrs* finish) {
  auto all = handles_.take();
  Status first = ok_status();
  bool finished = finish == nullptr;
  // FSETSTAT (and FSYNC) and the CLOSE of one handle, in one round trip.
  auto finish_on = [&](Connection& c, const std::string& handle) -> Status {
    std::vector<MakeRequest> makes = {
        [&](std::uint32_t id) { return sftp::fsetstat_request(id, handle, *finish); }};
    if (opts_.fsync && c.info().fsync) {
      makes.emplace_back([&](std::uint32_t id) { return sftp::fsync_request(id, handle); });
    } else if (opts_.fsync) {
      log().warn("{}: the server cannot fsync (no fsync@openssh.com); published without it",
                 shown_);
    }
    makes.emplace_back([&](std::uint32_t id) { return sftp::close_request(id, handle); });
    XFER_ASSIGN_OR_RETURN(std::vector<Reply> r, calls(c, makes));
    for (const Reply& one : r) {
      if (!is_ok(one)) return unexpected(one, "commit", shown_);
    }
    return ok_status();
  };
  for (const auto& entry : all) {
    const std::string& handle = entry.second;
    auto c = b_.pool().acquire_serial(entry.first);
    if (!c.ok()) continue;  // the server closed it with the connection
    if (!finished) {
      Status s = finish_on(**c, handle);  // closes it too
      if (!s.ok() && first.ok()) first = s;
      finished = true;
      continue;
    }
    Status s =
        expect_ok(rpc(**c, [&](std::uint32_t id) { return sftp::close_request(id, handle); }),
                  "close", shown_);
    if (!s.ok() && first.ok()) first = s;
  }
  if (!finished) {
    XFER_ASSIGN_OR_RETURN(Pool::Lease c, b_.pool().acquire());
    XFER_ASSIGN_OR_RETURN(Reply h, rpc(*c, [&](std::uint32_t id) {
                            return sftp::open_request(id, temp_, sftp::kOpenWrite, {});
                          }));
    if (h.type != Type::kHandle) return unexpected(h, "commit", shown_);
    Status s = finish_on(*c, h.bytes);
    if (!s.ok() && first.ok()) first = s;
  }
  return first;
}

Status SftpSink::commit() {
  std::lock_guard lock(mu_);
  if (done_) {
    return make_error(ErrorCode::kInvalidArgument, "commit", shown_,
                      "the file was already committed or aborted");
  }
  // The attributes first, on the hidden file; a file written sparse (its
  // zero blocks skipped) gets its full size here.
  Attrs a;
  if (opts_.attrs.size_known) a.size = opts_.size;
  a.permissions = opts_.attrs.mode & 07777;
  if (const auto secs = to_seconds(opts_.attrs.mtime_ns)) {
    a.atime = *secs;
    a.mtime = *secs;
  }
  // The common case of a small file in one round trip: its one handle,
  // nothing to make durable or to check, and posix-rename: FSETSTAT,
  // CLOSE and the rename go together. Only for a file written without
  // holes, whose size is already final: the attributes cannot fail in a
  // way that leaves the bytes short, so the rename never publishes less
  // than was written.
  if (!opts_.fsync && !opts_.basis && !opts_.sparse) {
    auto all = handles_.take();
    if (all.size() == 1) {
      auto c = b_.pool().acquire_serial(all.begin()->first);
      if (c.ok() && (*c)->info().posix_rename) {
        const std::string handle = all.begin()->second;
        XFER_ASSIGN_OR_RETURN(
            std::vector<Reply> r,
            calls(**c, {[&](std::uint32_t id) { return sftp::fsetstat_request(id, handle, a); },
                        [&](std::uint32_t id) { return sftp::close_request(id, handle); },
                        [&](std::uint32_t id) {
                          return sftp::posix_rename_request(id, temp_, remote_);
                        }}));
        if (is_ok(r[2])) done_ = true;  // published, whatever the other two said
        for (const Reply& one : r) {
          if (!is_ok(one)) {
            auto there = b_.lstat_on(**c, remote_, shown_);
            if (!done_ && there.ok() && there->type == EntryType::kDirectory) {
              return make_error(ErrorCode::kIsDirectory, "commit", shown_);
            }
            return unexpected(one, "commit", shown_);
          }
        }
        return ok_status();
      }
    }
    for (auto& [serial, handle] : all) handles_.add(serial, std::move(handle));
  }
  XFER_TRY(close_handles(&a));
  XFER_ASSIGN_OR_RETURN(Pool::Lease c, b_.pool().acquire());
  if (opts_.basis) {
    XFER_TRY(SftpBackend::check_basis(b_.lstat_on(*c, remote_, shown_), opts_, shown_));
  }
  Status moved = b_.rename_on(*c, temp_, remote_, shown_);
  if (!moved.ok()) {
    auto there = b_.lstat_on(*c, remote_, shown_);
    if (there.ok() && there->type == EntryType::kDirectory) {
      return make_error(ErrorCode::kIsDirectory, "commit", shown_);
    }
    return moved;
  }
  done_ = true;
  return ok_status();
}

Status SftpSink::abort() {
  std::lock_guard lock(mu_);
  if (done_) return ok_status();
  (void)close_handles();
  done_ = true;
  XFER_ASSIGN_OR_RETURN(Pool::Lease c, b_.pool().acquire());
  auto r = rpc(*c, [&](std::uint32_t id) { return sftp::path_request(Type::kRemove, id, temp_); });
  if (r.ok() && r->type == Type::kStatus && r->status == sftp::Status::kNoSuchFile) {
    return ok_status();
  }
  return expect_ok(r, "abort", shown_);
}

Status SftpSink::suspend() {
  if (!resumable()) return abort();
  std::lock_guard lock(mu_);
  if (done_) return ok_status();
  done_ = true;
  return close_handles();
}

}  // namespace

Result<std::unique_ptr<Backend>> make_sftp_backend(const Url& url, const Profile& profile,
                                                   const EndpointOptions& options) {
  if (url.host.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "open endpoint", url.to_string(),
                      "an sftp URL names a host: sftp://[user@]host[:port]/path");
  }
  sftp::Target t;
  t.alias = url.host;
  // A remote's host is the one to reach; an alias of ~/.ssh/config is
  // resolved by libssh's own reading of the config.
  if (profile.origins.count("host") != 0 && profile.origins.at("host") != "~/.ssh/config") {
    t.host = profile.get("host");
  }
  const std::string port =
      profile.get("port", url.port != 0 ? std::to_string(url.port) : std::string());
  if (!port.empty()) {
    char* end = nullptr;
    const long p = std::strtol(port.c_str(), &end, 10);
    if (end == port.c_str() || *end != '\0' || p < 1 || p > 65535) {
      return make_error(ErrorCode::kInvalidArgument, "open endpoint", url.to_string(),
                        fmt::format("invalid port '{}'", printable_name(port, 20)));
    }
    t.port = static_cast<int>(p);
  }
  t.user = profile.get("user", url.user);
  t.key_file = profile.get("key_file");
  t.key_passphrase = profile.get("key_passphrase");
  t.password = profile.get("password");
  t.known_hosts = profile.get("known_hosts");
  t.ambient = options.ambient_credentials;
  if (t.ambient) {
    if (const char* home = std::getenv("HOME")) t.home = home;
    t.agent = profile.get("agent");
  }
  if (!t.home.empty() && t.key_file.rfind("~/", 0) == 0) t.key_file = t.home + t.key_file.substr(1);
  if (!t.home.empty() && t.known_hosts.rfind("~/", 0) == 0) {
    t.known_hosts = t.home + t.known_hosts.substr(1);
  }
  t.accept_new = options.ssh_accept_new;
  const unsigned max = options.streams != 0
                           ? options.streams
                           : std::min(options.streams_max, kSftpDefaultConnections);
  std::string shown = "sftp://" + (url.user.empty() ? "" : url.user + "@") + url.host +
                      (url.port != 0 ? fmt::format(":{}", url.port) : "");
  auto backend = std::make_unique<SftpBackend>(std::move(shown), std::move(t), max);
  XFER_TRY(backend->start());
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace xfer
