#pragma once
// The backend contract: one endpoint (URL scheme + authority). The engine sees
// only this interface; it never learns which protocol it talks to.
//
// Threading: a Backend is shared by all workers of a transfer and every method
// is safe to call concurrently. A Source may be read concurrently at disjoint
// or overlapping offsets (positional reads). A Sink may be written
// concurrently at disjoint offsets when capabilities().parallel_writers is
// set; commit()/abort() are called once, by the per-file finalizer, after all
// writes of that file returned (the engine's fence).
//
// Paths are the path part of the endpoint's URL, '/'-separated. No method
// retries on its own: errors carry a RetryClass and the scheduler decides.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xfer/core/cdc.hpp"
#include "xfer/core/checksum.hpp"
#include "xfer/core/file_attrs.hpp"
#include "xfer/core/result.hpp"
#include "xfer/core/types.hpp"
#include "xfer/core/url.hpp"

namespace xfer {

// One entry produced by list(). `attrs` is set when the listing could get it
// cheaply or when ListOptions::want_attrs asked for it; `type` is always set.
struct Entry {
  std::string name;  // a single path component
  EntryType type = EntryType::kOther;
  std::optional<FileAttrs> attrs;
};

struct ListOptions {
  bool want_attrs = false;  // stat every entry (costs one call per entry locally)
};

// list() pushes entries here one at a time, so huge directories never sit in
// memory. Returning an error stops the listing and list() returns that error.
using EntrySink = std::function<Status(Entry&&)>;

// Stated up front and read by the planner. A backend never fakes what it
// cannot do: an operation outside its capabilities returns kUnsupported,
// with the operation and the path in the Error, and leaves nothing behind.
// For each of these flags, a backend without it behaves as follows:
//   random_writes     a Sink takes its bytes in order: each write_at must
//                     start where the bytes it accepted so far end. A write
//                     at any other offset is refused (kUnsupported,
//                     "write_at") and changes nothing; the sink stays usable.
//   parallel_writers  the caller makes one write_at at a time on a Sink (the
//                     planner writes such a file whole, from one worker).
//   resume            open_sink with a non-empty SinkOptions::resume_name is
//                     refused (kUnsupported, "open_sink") and creates
//                     nothing; suspend() and destruction discard.
//   symlinks          symlink() is refused (kUnsupported, "symlink") and
//                     creates nothing.
//   zero_copy_send    Source::native_handle() is -1.
// whole_parts lets a sink without random_writes take a chunked file: each
// chunk of the SinkOptions layout is written in order from its start (a
// write at a chunk's start begins it anew), chunks concurrently and in any
// order, and a chunk counts only once whole (an object store's part: no
// resume inside a chunk).
// tests/conformance/ runs a backend without these five flags
// (reduced_backend.hpp) through the same suite as the real ones.
struct Capabilities {
  bool random_writes = false;     // write_at at any offset, in any order
  bool parallel_writers = false;  // concurrent write_at on one Sink
  bool resume = false;            // a partial sink survives and can be reopened
  bool symlinks = false;
  bool permissions = false;  // mode bits are stored
  bool mtime = false;        // modification times are stored
  // How finely they are stored: sync counts mtimes this close as equal
  // (--modify-window auto). 1 ns for file systems and xferd; 1 s for a
  // store that keeps whole seconds.
  std::int64_t mtime_granularity_ns = 1;
  bool server_side_copy = false;  // copy_from() can copy within the endpoint
  // The endpoint's bytes cross a network to reach this process: sync sends
  // a changed large file as a delta (docs/sync.md, "Delta") unless told
  // --whole-file. False for file systems on this machine.
  bool network = false;
  // Sink::copy_basis works: sync's delta can rebuild a file from its old
  // version where it lives. Without it a changed file is sent whole.
  bool basis_copy = false;
  bool whole_parts = false;  // chunks written whole, each in order, in parallel (above)
  // Folders exist of themselves. False for an object store, where a folder
  // is only the common prefix of the names below it: mkdir() succeeds and
  // makes nothing (but see folder_markers), a folder with nothing in it
  // does not exist (stat and list say kNotFound), set_attrs() on a folder
  // does nothing, and a tree copy skips an empty source folder with a
  // notice.
  bool directories = true;
  // Without directories: an empty folder can be kept by a marker, a
  // zero-byte object named "folder/" (rclone's directory_markers). mkdir()
  // writes one, and a tree copy or sync asks mkdir() for each folder that
  // has nothing in it (a folder with objects below exists by them).
  bool folder_markers = false;
  // list_tree() works: every object below a folder in one listing, a page
  // per thousand names, where list() is a request per folder. A tree copy
  // from such a source walks it with list_tree().
  bool flat_listing = false;
  // list() gives each file's own mtime. False where a listing gives only
  // the store's write time (S3's LastModified; the mtime is metadata a
  // HEAD returns): sync then asks stat_file() where the sizes agree.
  bool listed_mtimes = true;
  bool zero_copy_send = false;      // Source exposes a file descriptor for sendfile/copy_file_range
  std::uint64_t min_part_size = 0;  // smallest chunk except the last (S3: 5 MiB)
  std::uint64_t max_parts = 0;      // 0 = unlimited
  bool needs_size = false;          // open_sink must be told the final size (xfer://)
  std::uint64_t preferred_chunk_size = 16ull << 20;
  unsigned max_concurrency = 64;  // concurrent requests the endpoint tolerates
};

// Positional reader of one file. Opened by Backend::open_source.
class Source {
 public:
  virtual ~Source() = default;
  // Attributes seen when the source was opened.
  virtual const FileAttrs& attrs() const = 0;
  // Reads up to buf.size() bytes at `offset`; returns the count, 0 at EOF.
  // Short reads happen only at end of file.
  virtual Result<std::size_t> read_at(Offset offset, std::span<std::byte> buf) = 0;
  // kChanged (RetryFile) when size or mtime differ from attrs(): the file was
  // modified while it was being copied.
  virtual Status check_unchanged() = 0;
  // Native file descriptor for zero-copy paths, or -1.
  virtual int native_handle() const { return -1; }
  // A hint: the calling thread reads [offset, offset + length) next, in
  // order, in read_at pieces. A network source may fetch it as one request
  // (an HTTP range) instead of one request per piece. Reads elsewhere stay
  // valid; a hint never read costs nothing but memory until the Source is
  // destroyed. The default ignores it.
  virtual void will_read(Offset offset, Length length) { (void)offset, (void)length; }
  // The next stretch of data at or after `offset`, [begin, end) with
  // offset <= begin <= end <= attrs().size: the bytes in [offset, begin)
  // are a hole (they read as zeros), and begin == end == size when only
  // holes follow. Sparse copies read only data extents. The default knows
  // no holes.
  struct Extent {
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
  };
  virtual Result<Extent> data_extent(Offset offset) {
    return Extent{offset.get(), std::max(offset.get(), attrs().size)};
  }
};

struct SinkOptions {
  // Final size (the sink preallocates it where it can); unknown when
  // !attrs.size_known: the file is then what was written.
  std::uint64_t size = 0;
  FileAttrs attrs;      // mode and mtime applied on commit
  bool sparse = false;  // source has holes: do not preallocate, let holes stay holes
  bool direct = false;  // O_DIRECT where supported
  bool fsync = false;   // make the data durable before publishing it
  // Resumable sinks (capabilities().resume): a non-empty resume_name names a
  // partial that survives the process (locally a hidden sibling file derived
  // from it). With resume_existing the partial is reopened as it is;
  // otherwise it starts empty. A backend without resume refuses a
  // resume_name (kUnsupported).
  std::string resume_name;
  bool resume_existing = false;
  // What the sink said of itself when the partial was begun (resume_note())
  // and of each chunk done (chunk_note(); "" for the others), as the
  // journal kept them: an object store's upload id and part ETags.
  std::string resume_note;
  std::vector<std::string> chunk_notes;
  // The layout the engine will write in, known before the first byte: a
  // chunked file arrives as `parts` chunks of `part_size` bytes (the last
  // may be shorter), each written whole by one worker, at offset
  // part * part_size. The planner honours capabilities().min_part_size and
  // max_parts, so an object store can map one chunk to one part (S3
  // multipart, Azure blocks). 0/0 for a file written whole, in order.
  std::uint64_t part_size = 0;
  std::uint64_t parts = 0;
  // Delta (sync): the file now under the final name is the basis the new
  // version is partly rebuilt from (Sink::copy_basis). The sink opens it
  // when it is opened, and refuses (kChanged) unless it is a regular file
  // of basis_size bytes and mtime basis_mtime_ns, as the signature saw it;
  // a basis that changes before commit fails the commit the same way.
  bool basis = false;
  std::uint64_t basis_size = 0;
  std::int64_t basis_mtime_ns = 0;
};

// Positional writer of one file that becomes visible atomically on commit().
// Destroying a Sink that was not committed aborts it (a resumable one is
// suspended): nothing is ever left under the final name, and no temporary
// file either unless it was opened as a resumable partial.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual Status write_at(Offset offset, std::span<const std::byte> data) = 0;
  // Zero-copy fast path: copy [offset, offset+length) from `source` into the
  // same offsets here without passing through user space. kUnsupported when
  // the pair cannot do it; the caller then falls back to read_at/write_at.
  virtual Result<std::uint64_t> copy_from(Source& source, Offset offset, Length length) {
    (void)source, (void)offset, (void)length;
    return make_error(ErrorCode::kUnsupported, "copy_from", "");
  }
  // Delta: copies [basis_offset, basis_offset + length) of the basis (the
  // file the sink replaces, SinkOptions::basis) to `offset`, where the
  // bytes live, without moving them through this process. kInvalidArgument
  // without a basis or outside it; kUnsupported where the backend cannot.
  virtual Status copy_basis(Offset offset, Offset basis_offset, Length length) {
    (void)offset, (void)basis_offset, (void)length;
    return make_error(ErrorCode::kUnsupported, "copy_basis", "");
  }
  // Reads back written bytes (for --verify); kUnsupported where impossible.
  virtual Result<std::size_t> read_back(Offset offset, std::span<std::byte> buf) {
    (void)offset, (void)buf;
    return make_error(ErrorCode::kUnsupported, "read_back", "");
  }
  // Applies attributes and publishes the file under its final name atomically.
  virtual Status commit() = 0;
  // Discards everything written. Idempotent.
  virtual Status abort() = 0;
  // Stops writing but keeps a resumable partial (cancellation). Sinks that are
  // not resumable discard instead.
  virtual Status suspend() { return abort(); }
  // True when open_sink reopened an existing partial (resume_existing).
  virtual bool resumed() const { return false; }
  // What a later run needs, beside the chunks' bytes, to reopen this
  // resumable partial (an S3 multipart upload's id), kept by the engine's
  // journal and given back in SinkOptions::resume_note; "" for nothing.
  // Known once open_sink returned.
  virtual std::string resume_note() const { return {}; }
  // Likewise for one chunk of the layout, once its bytes were written
  // whole (the ETag of its part); "" for nothing. Any thread.
  virtual std::string chunk_note(std::uint64_t chunk) const {
    (void)chunk;
    return {};
  }
};

// What a backend has measured of the path to its endpoint; the planner sizes
// how much is in flight from it. Zero when unknown or local.
struct LinkEstimate {
  double rtt_ms = 0;       // the smallest round trip seen so far
  double goodput_bps = 0;  // bytes per second the path carried while busy (0: not measured)
};

class ChangeFeed;     // engine/changes.hpp
struct WatchOptions;  // engine/changes.hpp

// A running Backend::watch. stop() ends it, closes its feed (the sync then
// finishes what is queued and ends) and returns once nothing more is
// pushed (idempotent; the destructor stops too). Any thread.
class ChangeWatch {
 public:
  virtual ~ChangeWatch() = default;
  virtual void stop() = 0;
  // Why the watch ended by itself (the watched folder moved or removed, a
  // server that refuses it for good); it closed its feed then. nullopt
  // while it runs or once stopped by stop().
  virtual std::optional<Error> failure() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const Capabilities& capabilities() const = 0;
  // The path's round trip as measured so far (may change as calls are
  // made); local backends know of none. Any thread.
  virtual LinkEstimate link_estimate() const { return {}; }
  // A short human description ("local", "xfer://host:port").
  virtual std::string describe() const = 0;
  // The transfer using this backend was cancelled: calls blocked on the
  // network return soon (with an error), and no new connection is opened.
  // Called once, from any thread, while other threads use the backend.
  // Local file-system calls do not block for long and need nothing.
  virtual void cancel() {}

  // Namespace operations.
  virtual Result<FileAttrs> stat(std::string_view path) = 0;
  // stat() of a path the caller expects to be a regular file (a copy's
  // look at its destination): the same answer for a file, kNotFound when
  // there is none. A backend whose stat() must look further to find a
  // folder (an object store: a HEAD, then a listing of the prefix, then the
  // bucket) may answer with its first look alone, and then says nothing of
  // a folder of that name: kNotFound, or kIsDirectory where it knows.
  virtual Result<FileAttrs> stat_file(std::string_view path) { return stat(path); }
  virtual Status list(std::string_view path, const ListOptions& options, const EntrySink& sink) = 0;
  // Every file below `path` at any depth (Capabilities::flat_listing),
  // named by its path below it ("a/b/c", checked by
  // validate_relative_path), in the store's order, in which the names below
  // any folder come together. A folder is not listed, but a folder's marker
  // is, as a kDirectory entry ("a/b"). Attributes as list() gives them.
  // kNotDirectory for a file, kNotFound for nothing there. Without
  // flat_listing: kUnsupported, and nothing is read.
  virtual Status list_tree(std::string_view path, const EntrySink& sink) {
    (void)sink;
    return make_error(ErrorCode::kUnsupported, "list_tree", path,
                      "lists one folder at a time (no flat listing)");
  }
  virtual Status mkdir(std::string_view path, bool parents) = 0;
  // Removes a file, symlink or empty directory; with `recursive`, a tree.
  virtual Status remove(std::string_view path, bool recursive) = 0;
  // Atomic rename inside this endpoint; kCrossDevice when it cannot be atomic.
  virtual Status rename(std::string_view from, std::string_view to) = 0;
  // Creates an empty file or sets the mtime of an existing entry to `mtime_ns`
  // (now when not given).
  virtual Status touch(std::string_view path, std::optional<std::int64_t> mtime_ns) = 0;
  // Creates (or atomically replaces) a symlink at `path` pointing to `target`.
  virtual Status symlink(std::string_view target, std::string_view path,
                         const FileAttrs& attrs) = 0;
  // Applies mode and mtime to an existing entry (directories after a tree copy).
  virtual Status set_attrs(std::string_view path, const FileAttrs& attrs) = 0;

  // A regular file's XXH3-128, computed where its bytes live: an xfer://
  // endpoint asks xferd (the Checksum RPC), so no content crosses the
  // network to compare (sync --checksum). The default reads the file
  // through open_source (digest_source). `size_hint` is the size the
  // caller expects (a remote call's patience grows with it); `cancel`
  // stops a long read.
  virtual Result<FileDigest> checksum(std::string_view path, std::uint64_t size_hint,
                                      const std::atomic<bool>* cancel);

  // A server-side copy: the file `from` of `source` becomes `to` here, its
  // bytes never passing through this process, published whole with
  // `attrs`' mtime (or not at all). kUnsupported when the two endpoints
  // cannot (another store, other credentials, a size the store copies only
  // in parts): the caller then streams it. The default refuses.
  virtual Status copy_from(Backend& source, std::string_view from, std::string_view to,
                           const FileAttrs& attrs) {
    (void)source, (void)from, (void)attrs;
    return make_error(ErrorCode::kUnsupported, "copy_from", to);
  }

  // A regular file's blocks (core/cdc.hpp) cut with `params`, computed where
  // its bytes live: xfer:// asks xferd (the Signature RPC). `size_hint`
  // as for checksum(); kChanged when the file changed while being read.
  // The default reads it through open_source (signature_source).
  virtual Result<Signature> signature(std::string_view path, const CdcParams& params,
                                      std::uint64_t size_hint, const std::atomic<bool>* cancel);

  // Follows the changes below the folder `path` (sync --watch) and pushes
  // them to `feed` as events of source root `root`, paths relative to
  // `path`, until stopped; returns once the folder is watched, so that a
  // comparison started after it misses nothing. A watch that loses track
  // pushes a rescan. Local folders: inotify (engine/watcher.hpp); xfer://:
  // the server watches its folder itself (the WatchChanges stream). The
  // default: kUnsupported.
  virtual Result<std::unique_ptr<ChangeWatch>> watch(std::string_view path, std::size_t root,
                                                     std::shared_ptr<ChangeFeed> feed,
                                                     const WatchOptions& options);

  // Data.
  virtual Result<std::unique_ptr<Source>> open_source(std::string_view path) = 0;
  // open_source() of a file the caller is about to read from its start
  // (a copy to where no such file is): a remote backend may fetch the first
  // bytes with the open, so a small file costs one request (an object
  // store: one ranged GET in place of a HEAD and a GET). The same Source.
  virtual Result<std::unique_ptr<Source>> open_source_to_read(std::string_view path) {
    return open_source(path);
  }
  virtual Result<std::unique_ptr<Sink>> open_sink(std::string_view path,
                                                  const SinkOptions& options) = 0;
};

// Reads `source` from its start to its end in 1 MiB pieces and returns its
// XXH3-128, with the attributes it was opened with; kChanged when the file
// changed meanwhile, kCancelled when `stop` says so (checked per piece).
Result<FileDigest> digest_source(Source& source, const std::function<bool()>& stop);
// Reads `source` likewise and cuts it into blocks with `params`; the
// whole-file digest comes with it. Each block goes to `on_block` as it is
// cut (xferd streams them), or into the Signature's list when it is null.
Result<Signature> signature_source(Source& source, const CdcParams& params,
                                   const std::function<bool()>& stop,
                                   const std::function<Status(const BlockSig&)>& on_block = {});

}  // namespace xfer
